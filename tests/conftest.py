"""Shared fixtures. Under tests/run.sh (CNNCALC_REQUIRE_ALL=1) a missing Keras or LibreOffice fails
the run instead of skipping, so CI cannot go green without the real references."""

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent


def unavailable(what, why):
    """Skip (or, under tests/run.sh, fail) when a real reference is missing."""
    message = f"{what} is not available: {why}"
    if os.environ.get("CNNCALC_REQUIRE_ALL"):
        pytest.fail(message + " (tests/run.sh installs it; CNNCALC_REQUIRE_ALL forbids skipping)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def keras():
    try:
        import keras
    except ImportError as e:
        unavailable("Keras", e)
    if keras.backend.backend() != "jax":
        unavailable("Keras with the jax backend", f"backend is {keras.backend.backend()}")
    return keras


@pytest.fixture(scope="session")
def soffice():
    from cnncalc.errors import RecalcUnavailable
    from cnncalc.recalc.libreoffice import find_soffice

    try:
        return find_soffice()
    except RecalcUnavailable as e:
        unavailable("LibreOffice", e)


@pytest.fixture(scope="session")
def book():
    """The book's facts: weights, inputs, and the values its workbook and Keras print (an independent reference)."""
    return json.loads((DATA / "book_cnn_simple_example.json").read_text())


@pytest.fixture
def chapter():
    from cnncalc.companion.examples import chapter_example

    return chapter_example()


def pytest_terminal_summary(terminalreporter):
    """Print how many mutated or hostile files the fuzz tests tried (tests/fuzzing.py collects the counts)."""
    import sys

    fuzzing = sys.modules.get("fuzzing")
    if fuzzing is None or not fuzzing.COUNTS:
        return
    terminalreporter.section("fuzz cases")
    failed = [r for r in terminalreporter.stats.get("failed", []) if "fuzz" in r.nodeid]
    for line in fuzzing.summary_lines(len(failed)):
        terminalreporter.write_line(line)
