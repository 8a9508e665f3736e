"""`cnncalc practice --train`: one training step of the chapter's model to compute by hand, graded by `check`.

The students are simulated by a generator of this file's own: plain numpy over the numbers the workbook gives
(its Data, Weights and Training sheets, read with openpyxl), one backprop slip each. The teacher's verdict is
made the same way: the cells a slip changes are wrong (and named), every cell after them that follows the
student's own values gets carry-forward credit. Also: the formula functions the gradients use, evaluated as a
spreadsheet does, and a workbook filled with the right answers recalculated by LibreOffice.
"""

import json
import math
import shutil

import numpy as np
import openpyxl
import pytest

from cnncalc.classroom import evaluate
from cnncalc.classroom.check import check
from cnncalc.classroom.practice_train import panel_groups, plan_practice_train
from cnncalc.cli import main
from cnncalc.companion.examples import chapter_fit
from cnncalc.sheets.training import plan_training, TrainingJob
from cnncalc.engine import losses, optimizers

B = 2  # the chapter's two samples, one batch


# ---------------------------------------------------------------- the workbook and its given numbers

@pytest.fixture(scope="module")
def exercise(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    path = folder / "practice.xlsx"
    assert main(["practice", "--train", "-o", str(path)]) == 0
    plan = plan_practice_train(chapter_fit().training)
    return path, plan


def read(ws, placement):
    """A tensor of given cells, as the plan lays it out (where), read from the file (what)."""
    out = np.zeros(placement.shape)
    for idx in placement.indices():
        r, c = placement.pos(idx)
        out[idx] = ws.cell(r + 1, c + 1).value
    return out


def given(path, plan):
    wb = openpyxl.load_workbook(path)
    names = {"conv2d": "K1", "dense": "K2", "dense_1": "K3"}
    w = {}
    for (layer, wname), p in plan.weights.items():
        w[names[layer] if wname == "kernel" else "b" + names[layer][1]] = read(wb[p.sheet], p)
    x = np.stack([read(wb[p.sheet], p) for p in plan.inputs])
    y = np.stack([read(wb[p.sheet], p) for p in plan.labels])
    hyper = {wb["Training"].cell(r, 1).value: wb["Training"].cell(r, 2).value for r in range(4, 8)}
    return x, y, w, hyper


# ---------------------------------------------------------------- the student: plain numpy, one slip at a time

def student(x_raw, y, w, hyper, slip=None):
    """{(title, layer name or None, sample): array} and {(weight, column): array}: what a student computes, with one slip."""
    out = {}
    K1, b1, K2, b2, K3, b3 = (w[k] for k in ("K1", "b1", "K2", "b2", "K3", "b3"))
    shares = {k: [] for k in ("conv2d/kernel", "conv2d/bias", "dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias")}
    for n in range(B):
        x = x_raw[n] / 8.0  # --scale 1/8
        z1 = np.array([[np.sum(x[i:i + 3, j:j + 3, 0] * K1[:, :, 0, 0]) + b1[0] for j in range(2)] for i in range(2)])
        a1 = np.maximum(z1, 0)
        flat = [a1[0, 0], a1[0, 1], a1[1, 0], a1[1, 1]]
        first = int(np.argmax(flat))  # the first largest cell, in reading order
        f = np.array([a1.max()])
        z2 = f @ K2 + b2
        a2 = np.maximum(z2, 0)
        z3 = a2 @ K3 + b3
        e = np.exp(z3 - z3.max())
        p = e / e.sum()
        s = p.sum()
        u = p / s
        q = np.clip(u, 1e-7, 1 - 1e-7)
        dq = -y[n] / q
        du = dq
        S = np.sum(du * u)
        dp = (du - S) / s / (1 if slip == "batch mean forgotten" else B)
        Sp = np.sum(p * dp)
        dz3 = p * (dp - Sp)
        if slip == "p − y with the wrong sign":
            dz3 = -dz3
        dx3 = K3 @ dz3
        dz2 = dx3 if slip == "ReLU mask forgotten" else dx3 * (z2 > 0)
        dx2 = K2 @ dz2
        dpool = np.zeros((2, 2))
        if slip == "max-pool gradient sent to every cell":
            dpool[:] = dx2[0]
        else:
            dpool[divmod(first, 2)] = dx2[0]
        dz1 = dpool * (z1 > 0)
        for title, layer, v in [("dl/dq", None, dq), ("dl/du", None, du), ("Σ dl/du · u", None, [S]), ("dL/dp", None, dp),
                                ("Σ p·dL/dp", None, [Sp]), ("dL/dz dense_1 (Dense)", "dense_1", dz3), ("dL/dz as a row", "dense_1", dz3),
                                ("dL/dx dense_1 (Dense)", "dense_1", dx3), ("dL/dz dense (Dense)", "dense", dz2),
                                ("dL/dz as a row", "dense", dz2), ("dL/dx dense (Dense)", "dense", dx2),
                                ("dL/dx flatten (Flatten)", "flatten", dx2.reshape(1, 1, 1)),
                                ("dL/dx max_pooling2d (MaxPooling2D)", "max_pooling2d", dpool.reshape(2, 2, 1)),
                                ("dL/dz conv2d (Conv2D)", "conv2d", dz1.reshape(2, 2, 1))]:
            out[(title, layer, n)] = np.asarray(v, dtype=float)
        dK1 = np.array([[np.sum(x[a:a + 2, b:b + 2, 0] * dz1) for b in range(3)] for a in range(3)])
        if slip == "kernel gradient flipped":
            dK1 = dK1[::-1, ::-1]
        shares["conv2d/kernel"].append(dK1.reshape(3, 3, 1, 1))
        shares["conv2d/bias"].append(np.array([dz1.sum()]))
        shares["dense/kernel"].append(np.outer(f, dz2))
        shares["dense/bias"].append(dz2)
        shares["dense_1/kernel"].append(np.outer(a2, dz3))
        shares["dense_1/bias"].append(dz3)
    lr, b1_, b2_, eps = hyper["learning_rate"], hyper["beta_1"], hyper["beta_2"], hyper["epsilon"]
    alpha = lr * math.sqrt(1 - b2_) / (1 - b1_)
    used = {"conv2d/kernel": K1, "conv2d/bias": b1, "dense/kernel": K2, "dense/bias": b2, "dense_1/kernel": K3, "dense_1/bias": b3}
    for key, parts in shares.items():
        g = parts[0] + parts[1]
        m, v = (1 - b1_) * g, (1 - b2_) * g * g
        step = alpha * m / (np.sqrt(v) + eps)
        after = used[key] + step if slip == "update with the wrong sign" else used[key] - (step / lr if slip == "learning rate left out" else step)
        for k in range(B):
            out[(key, f"share {k}")] = parts[k]
        out[(key, "sum")], out[(key, "momentum")], out[(key, "velocity")], out[(key, "after")] = g, m, v, after
    return out


def answer_keys(plan):
    """{(sheet, row, col): (key of student(), idx)} of every answer cell."""
    step = plan.sheet("Step 1")
    seen, keys = {}, {}
    for panel in step.panels:
        if id(panel) not in panel_groups(step):
            continue
        if panel.step.startswith("share ") or panel.step in ("sum", "momentum", "velocity", "after"):
            key = (panel.title.split(":")[0], panel.step)
        else:
            layer = panel.layer.name if panel.layer is not None else None
            n = seen[(panel.title, layer)] = seen.get((panel.title, layer), -1) + 1
            key = (panel.title, layer, n)
        keys[id(panel)] = key
    return {(a.sheet, *a.pos): (keys[id(a.panel)], a.idx) for a in plan.answers}


def fill(path, plan, values, out):
    wb = openpyxl.load_workbook(path)
    for (sheet, r, c), (key, idx) in answer_keys(plan).items():
        wb[sheet].cell(r + 1, c + 1).value = float(values[key][idx])
    wb.save(out)
    return out


def differs(a, b):
    return abs(a - b) > 1e-9 * max(1.0, abs(b))


# ---------------------------------------------------------------- the tests

def test_every_gradient_formula_evaluates_as_a_spreadsheet_does():
    """Every formula of a training workbook (two losses, Adam and SGD with momentum) evaluated on the engine's values of the
    cells it reads gives back the engine's value: the evaluator knows every function the gradients use."""
    base = chapter_fit().training
    jobs = [TrainingJob(base.model, base.raw, base.labels, base.loss, base.optimizers, 1, 2, base.scale),
            TrainingJob(base.model, base.raw, base.labels, losses.get("mse"), [optimizers.get("sgd", momentum=0.9)], 2, 1, base.scale)]
    for job in jobs:
        plan = plan_training(job)
        values = {(s.name, r, c): cell.value for s in plan.sheets for (r, c), cell in s.cells().items()}
        checked = 0
        for s in plan.sheets:
            for pos, cell in s.cells().items():
                if cell.formula:
                    got = evaluate.evaluate(evaluate.parse(cell.formula, s.name), lambda sh, r, c: values.get((sh, r, c)))
                    assert got == pytest.approx(float(cell.value), rel=1e-12, abs=1e-14), (s.name, pos, cell.formula)
                    checked += 1
        assert checked > 500


@pytest.mark.parametrize("text, value", [
    ("ERFC(0)", 1.0), ("ERFC(1)", math.erfc(1)), ("AND(1,2>1)", 1.0), ("AND(1,0)", 0.0), ("OR(0,0)", 0.0), ("OR(0,-3)", 1.0),
    ("SIGN(-2.5)", -1.0), ("SIGN(0)", 0.0), ("SIGN(4)", 1.0), ("COUNTIF(A1:C1,2)", 2.0), ("COUNTIF(A1:C1,7)", 0.0),
    ("AND(A1:D1)", 1.0), ("OR(D1,0)", 0.0),
])
def test_gradient_functions_follow_excel(text, value):
    cells = {(0, 0): 2.0, (0, 1): 2.0, (0, 2): 3.0, (0, 3): None}  # D1 empty: AND/OR and COUNTIF skip it
    assert evaluate.evaluate(evaluate.parse(text, "S"), lambda s, r, c: cells.get((r, c))) == pytest.approx(value, rel=1e-15)


@pytest.mark.parametrize("text", ["=AND(D1)", "=ERFC(A1)"])
def test_gradient_functions_errors(text):
    look = lambda s, r, c: "word" if (r, c) == (0, 0) else None  # noqa: E731
    with pytest.raises(evaluate.EvalError):
        evaluate.evaluate(evaluate.parse(text, "S"), look)


def test_the_exercise_leaves_the_backward_pass_to_the_student(exercise):
    path, plan = exercise
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames[:5] == ["Instructions", "Training", "Data", "Weights", "Step 1"] and "Gradient check" not in wb.sheetnames
    assert plan.blank == ["loss", "dense_1", "dense", "flatten", "max_pooling2d", "conv2d", "shares", "sum", "update"]
    for a in plan.answers:
        assert wb[a.sheet].cell(a.pos[0] + 1, a.pos[1] + 1).value is None
    assert len(plan.answers) == 416


def test_a_correct_student_passes(exercise, tmp_path, capsys):
    path, plan = exercise
    x, y, w, hyper = given(path, plan)
    values = student(x, y, w, hyper)
    for (sheet, r, c), (key, idx) in answer_keys(plan).items():  # the student's numpy agrees with the engine
        assert values[key][idx] == pytest.approx(plan.reference[sheet][(r, c)].value, rel=1e-9, abs=1e-15), key
    filled = fill(path, plan, values, tmp_path / "ok.xlsx")
    assert main(["check", str(filled)]) == 0
    assert "416/416" in capsys.readouterr().out


SLIP_NAMES = ["ReLU mask forgotten", "max-pool gradient sent to every cell", "batch mean forgotten", "kernel gradient flipped",
              "p − y with the wrong sign", "update with the wrong sign", "learning rate left out"]


@pytest.mark.parametrize("slip", SLIP_NAMES)
def test_each_backprop_slip_is_marked_as_a_teacher_would(exercise, tmp_path, slip, capsys):
    """The cells the slip itself changes: wrong, with the slip named; every later cell that follows the student's own
    (slipped) values: carried forward; the rest right."""
    path, plan = exercise
    x, y, w, hyper = given(path, plan)
    right, slipped = student(x, y, w, hyper), student(x, y, w, hyper, slip)
    keys = answer_keys(plan)
    changed = {cell for cell, (key, idx) in keys.items() if differs(slipped[key][idx], right[key][idx])}
    origin = {cell for cell in changed if slip_origin(slip, keys[cell][0])}
    assert origin, "the slip changes no cell of this exercise"
    filled = fill(path, plan, slipped, tmp_path / "slip.xlsx")
    assert main(["check", str(filled)]) == 1
    grade = check(filled)
    marks = {(m.answer.sheet, *m.answer.pos): m for m in grade.marks}
    wrong = {cell for cell, m in marks.items() if m.status == "wrong" and not m.carried}
    carried = {cell for cell, m in marks.items() if m.carried}
    assert wrong == origin
    assert carried <= changed - origin  # carried forward: only cells the slip changed, after it
    assert all(marks[cell].credit for cell in changed - origin)  # each one credited (a round number such as 0.5 typed is
    # judged at its written precision, ±0.005, so a cell after it may be right within that rather than carried)
    assert len(carried) >= len(changed - origin) // 2
    assert {marks[cell].slip_kind for cell in origin} == {slip}
    report = json.loads(_json(filled, capsys))
    cells = {c["cell"]: c for c in report["cells"]}
    for cell in origin:
        entry = cells[marks[cell].address]
        assert entry["status"] == "wrong" and entry["slip"].startswith(slip.split(":")[0][:10]) and entry["step"] == marks[cell].answer.group


def _json(path, capsys):
    capsys.readouterr()
    main(["check", "--json", str(path)])
    return capsys.readouterr().out


ORIGIN = {  # the tensor each slip is made in (the student's first wrong step)
    "ReLU mask forgotten": lambda key: key[:2] == ("dL/dz dense (Dense)", "dense"),
    "max-pool gradient sent to every cell": lambda key: key[0] == "dL/dx max_pooling2d (MaxPooling2D)",
    "batch mean forgotten": lambda key: key[0] == "dL/dp",
    "kernel gradient flipped": lambda key: key[0] == "conv2d/kernel" and key[1].startswith("share"),
    "p − y with the wrong sign": lambda key: key[:2] == ("dL/dz dense_1 (Dense)", "dense_1"),
    "update with the wrong sign": lambda key: key[1] == "after",
    "learning rate left out": lambda key: key[1] == "after",
}


def slip_origin(slip, key):
    return ORIGIN[slip](key)


def test_blank_chooses_the_steps_and_unknown_steps_are_refused(tmp_path, capsys):
    out = tmp_path / "update.xlsx"
    assert main(["practice", "--train", "--blank", "sum", "update", "-o", str(out)]) == 0
    assert "208 answer cells" in capsys.readouterr().out
    assert main(["practice", "--train", "--blank", "dense_2", "-o", str(tmp_path / "x.xlsx")]) == 2
    err = capsys.readouterr().err
    assert "cnncalc: error:" in err and "dense_2" in err and "shares" in err and not (tmp_path / "x.xlsx").exists()
    assert main(["practice", "--loss", "mse", "-o", str(tmp_path / "y.xlsx")]) == 2
    assert "--train" in capsys.readouterr().err


@pytest.mark.libreoffice
def test_right_answers_recalculate_to_the_engine_in_libreoffice(exercise, tmp_path):
    """A practice --train workbook filled with the right answers (typed as numbers): LibreOffice's recalculated cells that
    read them, and the answers themselves, equal the engine's values."""
    from cnncalc.recalc import libreoffice as recalc

    path, plan = exercise
    x, y, w, hyper = given(path, plan)
    filled = fill(path, plan, student(x, y, w, hyper), tmp_path / "ok.xlsx")
    out = recalc.recalculate(filled)
    try:
        values = recalc.read_values(out)
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    compared = 0
    for sheet, cells in plan.reference.items():
        for pos, cell in cells.items():
            if cell.formula or (sheet, *pos) in answer_keys(plan):
                assert values[sheet][pos] == pytest.approx(float(cell.value), rel=1e-9, abs=1e-12), (sheet, pos, cell.formula)
                compared += 1
    assert compared > 500  # 416 answers and the formulas around them


def test_verify_refuses_the_exercise_and_an_edited_hidden_sheet_is_reported(exercise, tmp_path, capsys):
    path, plan = exercise
    assert main(["verify", str(path)]) == 2
    assert "practice workbook" in capsys.readouterr().err
    wb = openpyxl.load_workbook(path)
    ws = wb["_cnncalc"]
    row = next(r for r in range(1, 40) if ws.cell(r, 1).value == "blank" and r > 10)
    ws.cell(row, 2).value = json.dumps(["update"])  # a student leaves only the update to compute
    wb.save(tmp_path / "edited.xlsx")
    grade = check(tmp_path / "edited.xlsx")
    assert grade.exercise == "changed" and "leaves out" in grade.exercise_note and not grade.ok
    assert {m.answer.group for m in grade.marks} == set(plan.blank)  # every step the file leaves empty is still graded


def test_a_model_file_with_its_inputs_labels_loss_and_optimizer(tmp_path, capsys):
    """practice --train MODEL --input X --labels Y --loss --optimizer --learning-rate: a strided conv, average pooling and SGD
    with momentum; the right answers pass, and `check --json` keeps the per-cell fields for the backward cells."""
    from cnncalc.kerasfiles.loader import model_from_layer_list, save_keras

    spec = {"input_shape": [5, 5, 1], "seed": 2, "layers": [
        {"Conv2D": {"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "relu"}},
        {"AveragePooling2D": {"pool_size": 2, "strides": 1}}, {"Flatten": {}}, {"Dense": {"units": 2, "activation": "sigmoid"}}]}
    save_keras(model_from_layer_list(spec), tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", np.random.default_rng(1).integers(0, 9, size=(3, 5, 5, 1)).astype(float))
    np.save(tmp_path / "y.npy", np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    out = tmp_path / "p.xlsx"
    assert main(["practice", "--train", str(tmp_path / "m.keras"), "--input", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
                 "--loss", "mse", "--optimizer", "sgd", "--learning-rate", "0.5", "--momentum", "0.9", "-o", str(out)]) == 0
    wb = openpyxl.load_workbook(out)
    assert wb["Training"]["B4"].value == 0.5
    grade = check(out)
    assert grade.count("missing") == grade.total > 100
    for m in grade.marks:
        wb[m.answer.sheet].cell(m.answer.pos[0] + 1, m.answer.pos[1] + 1).value = float(m.answer.expected)
    wb.save(tmp_path / "ok.xlsx")
    capsys.readouterr()
    assert main(["check", "--json", str(tmp_path / "ok.xlsx")]) == 0
    cells = json.loads(capsys.readouterr().out)["cells"]
    assert {c["step"] for c in cells} == {"loss", "dense", "flatten", "average_pooling2d", "conv2d", "shares", "sum", "update"}
    assert all({"cell", "step", "expected", "status", "slip"} <= set(c) and c["status"] == "correct" for c in cells)
