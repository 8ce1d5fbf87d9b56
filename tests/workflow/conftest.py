"""Fixtures shared by the workflow tests."""

from test_workflow import tiny_run  # noqa: F401  (the tiny workflow, run once per session)
