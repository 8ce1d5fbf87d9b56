"""meddiff.reporting"""
