"""benchmarks/training.py's logic (no timing): the limit it reports for the MNIST step, and its RESULTS.md section."""

import json
import sys

import numpy as np

from conftest import REPO

from cnncalc import guards
from cnncalc.cli import main
from cnncalc.kerasfiles.loader import model_from_layer_list, save_keras

sys.path.insert(0, str(REPO / "benchmarks"))
import training  # noqa: E402  (benchmarks/training.py)
from digits import batch  # noqa: E402


def test_the_mnist_step_is_reported_with_the_refusal_cnncalc_train_prints(tmp_path, capsys):
    reported = training.refusal("mnist_sgd")
    smallest = training.refusal("mnist_sgd", batch_size=1)
    assert reported["limit"] == guards.MAX_PLAN_CELLS
    assert reported["counted_cells"] > smallest["counted_cells"] > guards.MAX_PLAN_CELLS
    assert f"Received {reported['counted_cells']:,} cells" in reported["refused"]
    spec = json.loads((REPO / "benchmarks" / "specs" / "mnist_small.json").read_text())
    save_keras(model_from_layer_list(spec), tmp_path / "m.keras")
    images, labels = batch(training.BATCH)
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", np.eye(10)[labels])
    code = main(["train", str(tmp_path / "m.keras"), "--input", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
                 "--scale", "1/255", "--loss", "categorical_crossentropy", "--optimizer", "sgd", "--epochs", "1",
                 "--batch-size", str(training.BATCH), "-o", str(tmp_path / "m.xlsx")])
    assert code == 2 and not (tmp_path / "m.xlsx").exists()
    assert capsys.readouterr().err.strip() == reported["refused"]


def test_the_measured_cases_pass_the_limit_and_counting_leaves_it_as_it_was():
    limit = guards.MAX_PLAN_CELLS
    for case in ("chapter_fit", "lenet_sgd"):
        reported = training.refusal(case)
        assert reported["refused"] is None and 0 < reported["counted_cells"] <= limit
    assert guards.MAX_PLAN_CELLS == limit


def test_the_section_replaces_only_its_own(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\nprediction\n\n## Later\n\nkept\n")
    training.write_section(path, f"{training.SECTION}\n\nfirst\n")
    assert path.read_text() == f"# Benchmark results\n\nprediction\n\n## Later\n\nkept\n\n{training.SECTION}\n\nfirst\n"
    path.write_text(f"# Benchmark results\n\n{training.SECTION}\n\nold\n\n## Later\n\nkept\n")
    training.write_section(path, f"{training.SECTION}\n\nnew\n")
    assert path.read_text() == f"# Benchmark results\n\n{training.SECTION}\n\nnew\n\n## Later\n\nkept\n"
