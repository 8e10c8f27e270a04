"""Shared test set-up: headless matplotlib, smoke mode unless a test says otherwise."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _clean_course_env(monkeypatch, tmp_path):
    """Each test starts without COURSE_MODE / NBGRADER_EXECUTION and with its own results file."""
    monkeypatch.delenv("COURSE_MODE", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv("COURSE_RESULTS", raising=False)
    yield
