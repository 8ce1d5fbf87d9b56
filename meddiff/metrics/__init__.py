"""meddiff.metrics"""
