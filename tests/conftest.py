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


@pytest.fixture
def keras64(keras, monkeypatch):
    """Keras computing in float64 (jax_enable_x64, floatx float64) during one test; float32 again afterwards.

    Keras's type promotion maps a float64 result to float32 on the jax backend even under floatx float64
    (BIT64_TO_BIT32_DTYPE in keras/src/backend/common/dtypes.py), so ops.mean (the mean-based losses,
    GlobalAveragePooling2D) and BatchNormalization would quietly compute in float32; that one entry is
    lifted here so that every Keras formula runs in float64.
    """
    import jax
    from keras.src.backend.common import dtypes

    monkeypatch.setitem(dtypes.BIT64_TO_BIT32_DTYPE, "float64", "float64")
    x64, floatx = jax.config.jax_enable_x64, keras.config.floatx()
    jax.config.update("jax_enable_x64", True)
    keras.config.set_floatx("float64")
    keras.backend.clear_session()
    yield keras
    keras.backend.clear_session()
    keras.config.set_floatx(floatx)
    jax.config.update("jax_enable_x64", x64)


def pytest_collection_modifyitems(config, items):
    """Tests marked slow (minutes each) run only with CNNCALC_SLOW=1, so CI stays within its time."""
    if os.environ.get("CNNCALC_SLOW"):
        return
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="slow: set CNNCALC_SLOW=1 to run it"))


FUZZ_COUNTS = {}  # worker (or "main") -> the latest fuzz counts it reported


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Send the fuzz counts so far with each test's report, so that they reach the main process from xdist workers."""
    import sys

    outcome = yield
    fuzzing = sys.modules.get("fuzzing")
    if call.when == "call" and fuzzing is not None and fuzzing.COUNTS:
        outcome.get_result().user_properties.append(("fuzz_counts", {t: dict(c) for t, c in fuzzing.COUNTS.items()}))


def pytest_runtest_logreport(report):
    for key, value in getattr(report, "user_properties", ()):
        if key == "fuzz_counts":
            FUZZ_COUNTS[getattr(getattr(getattr(report, "node", None), "gateway", None), "id", "main")] = value


def pytest_terminal_summary(terminalreporter):
    """Print how many mutated or hostile files the fuzz tests tried (tests/fuzzing.py counts them in each worker)."""
    from collections import Counter, defaultdict

    import fuzzing

    if not FUZZ_COUNTS:
        return
    counts = defaultdict(Counter)
    for worker in FUZZ_COUNTS.values():
        for target, c in worker.items():
            counts[target].update(c)
    terminalreporter.section("fuzz cases")
    failed = [r for r in terminalreporter.stats.get("failed", []) if "fuzz" in r.nodeid]
    for line in fuzzing.summary_lines(len(failed), counts):
        terminalreporter.write_line(line)
