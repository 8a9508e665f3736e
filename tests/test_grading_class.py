"""A class of simulated students, each with a realistic mistake, graded by `cnncalc check` and by a teacher.

The teacher here is independent of cnncalc: it reads the weights and the inputs from the practice workbook's own
cells (openpyxl, by the layout the README describes), computes the network with plain numpy, lets each student make
their mistake and carry on carefully from the values they wrote, and gives its own verdict for every cell: right
(within the rounding the student carries), carried forward (wrong, but right from the student's own earlier values),
or wrong, with the slip's name. `check` must agree on every cell, name the same slips, and report the class.
(cnncalc's practice plan is used only to know which cell holds which element of which step.)
"""

import csv
import json
import re
import subprocess

import numpy as np
import openpyxl
import pytest

from cnncalc.classroom.check import FILLS, check, format_grade
from cnncalc.classroom.practice import plan_practice
from cnncalc.cli import main
from cnncalc.kerasfiles.loader import model_from_layer_list
from cnncalc.sheets.writer import write_plan

from conftest import DATA

MODEL2 = {"input_shape": [6, 6, 1], "seed": 0, "layers": [  # two filters, a square Dense (8 x 8), a Dense of 8 x 3
    {"Conv2D": {"filters": 2, "kernel_size": 3, "activation": "relu"}}, {"MaxPooling2D": {"pool_size": 2}},
    {"Flatten": {}}, {"Dense": {"units": 8, "activation": "relu"}}, {"Dense": {"units": 3, "activation": "softmax"}}]}
STEPS = [("scaled", "scaled"), ("pre", "conv2d"), ("activation", "conv2d"), ("output", "max_pooling2d"), ("output", "flatten"),
         ("pre", "dense"), ("activation", "dense"), ("pre", "dense_1"), ("softmax_max", "dense_1"), ("softmax_exp", "dense_1"),
         ("softmax_sum", "dense_1"), ("softmax", "dense_1"), ("class", "prediction"), ("class_value", "prediction")]


# ---------------------------------------------------------------- the teacher: the workbook's numbers, plain numpy


def read_weights(ws):
    """{"conv2d/kernel": (array, {index: (row, col)})} from the Weights sheet: each weight under its label
    'layer/name   shape (…)', from two rows below it in column B; a kernel one kh×kw grid per (input channel,
    filter), channels across, filters down, one blank row and column between; a matrix inputs down, units across."""
    cells = {(c.row - 1, c.column - 1): c.value for row in ws.iter_rows() for c in row if c.value is not None}
    out = {}
    for (r, c), text in cells.items():
        m = re.fullmatch(r"(\S+/\w+)\s+shape \(([\d, ]*)\)", str(text)) if c == 0 else None
        if not m:
            continue
        shape = tuple(int(n) for n in m.group(2).split(",") if n.strip())
        top, arr, where = r + 2, np.zeros(shape), {}
        for idx in np.ndindex(*shape):
            if len(shape) == 4:
                a, b, ch, f = idx
                pos = (top + f * (shape[0] + 1) + a, 1 + ch * (shape[1] + 1) + b)
            elif len(shape) == 2:
                pos = (top + idx[0], 1 + idx[1])
            else:
                pos = (top, 1 + idx[0])
            arr[idx], where[idx] = cells[pos], pos
        out[m.group(1)] = (arr, where)
    return out


def read_exercise(path, n_samples):
    """(weights, raw inputs, scale) as the practice workbook holds them."""
    wb = openpyxl.load_workbook(path)
    weights = read_weights(wb["Weights"])
    num, den = str(wb["_cnncalc"]["B2"].value).split("/")
    c = weights["conv2d/kernel"][0].shape[2]  # input channels: maps side by side, one blank column between
    raws = []
    for n in range(n_samples):
        ws = wb[f"Sample {n + 1}"]
        size = ws.max_row  # the raw input panel starts at B4; its height is the input's
        side = next(r for r in range(4, size + 2) if ws.cell(r, 2).value is None) - 4
        raws.append(np.array([[[ws.cell(4 + i, 2 + ch * (side + 1) + j).value for ch in range(c)] for j in range(side)]
                              for i in range(side)], dtype=float))
    return {k: v[0] for k, v in weights.items()}, {k: v[1] for k, v in weights.items()}, raws, float(num) / float(den)


def conv(x, k, b, at=None):
    """Keras's Conv2D (valid, stride 1): z[i, j, f] = Σ x[i + a, j + b, c] k[a, b, c, f] + b[f]."""
    kh, kw, _, filters = k.shape
    out = np.zeros((x.shape[0] - kh + 1, x.shape[1] - kw + 1, filters))
    for i, j, f in np.ndindex(*out.shape):
        out[i, j, f] = np.sum(x[i:i + kh, j:j + kw, :] * k[:, :, :, f]) + b[f]
    return out


def maxpool(x):
    return np.array([[[x[2 * i:2 * i + 2, 2 * j:2 * j + 2, c].max() for c in range(x.shape[2])] for j in range(x.shape[1] // 2)]
                     for i in range(x.shape[0] // 2)])


def right_step(key, W, v, raw, scale):
    """The right value of one step, computed from the values the student holds for the steps before it."""
    step, group = key
    if key == ("scaled", "scaled"):
        return raw * scale
    if key == ("pre", "conv2d"):
        return conv(v[("scaled", "scaled")], W["conv2d/kernel"], W["conv2d/bias"])
    if step == "activation":
        return np.maximum(v[("pre", group)], 0)
    if key == ("output", "max_pooling2d"):
        return maxpool(v[("activation", "conv2d")])
    if key == ("output", "flatten"):
        return v[("output", "max_pooling2d")].ravel()
    if key == ("pre", "dense"):
        return v[("output", "flatten")] @ W["dense/kernel"] + W["dense/bias"]
    if key == ("pre", "dense_1"):
        return v[("activation", "dense")] @ W["dense_1/kernel"] + W["dense_1/bias"]
    z = v.get(("pre", "dense_1"))
    if step == "softmax_max":
        return np.array([z.max()])
    if step == "softmax_exp":
        return np.exp(z - v[("softmax_max", "dense_1")][0])
    if step == "softmax_sum":
        return np.array([v[("softmax_exp", "dense_1")].sum()])
    if step == "softmax":
        return v[("softmax_exp", "dense_1")] / v[("softmax_sum", "dense_1")][0]
    if step == "class":
        return np.array([np.argmax(v[("softmax", "dense_1")])])
    if step == "class_value":
        return np.array([v[("softmax", "dense_1")].max()])
    raise AssertionError(key)


class Student:
    """One student: the decimals they write, their slips {(sample, step key): slip(W, right, own) -> (written array,
    the cells it changes, the slip's words, whether they carry on from what they wrote)}, the formulas they type
    (formulas(exercise) -> {(sample, step key, idx): (text, value(own values so far), the slip's words)}), text they type instead of
    numbers ({(sample, step key): number -> text}), the rounding they carry (noise), and the teacher's fixed tolerance."""

    def __init__(self, name, decimals=7, slips=None, formulas=None, text=None, noise=2e-6, tolerance=None):
        self.name, self.decimals, self.slips = name, decimals, slips or {}
        self.formulas, self.text = formulas or (lambda ex: {}), text or {}
        self.noise, self.tolerance = noise, tolerance


def simulate(student, ex):
    """{address: (what is typed, the teacher's verdict, the slip's words)} for every answer cell of the exercise."""
    W, raws, scale = ex.W, ex.raws, ex.scale
    formulas = student.formulas(ex)
    typed, verdicts = {}, {}
    for n, raw in enumerate(raws):
        truth, own_values = {}, {}
        for key in STEPS:
            truth[key] = right_step(key, W, truth, raw, scale)
            right = right_step(key, W, own_values, raw, scale)  # from what the student wrote before
            written, changed, words, carry = right, set(), None, True
            if (n, key) in student.slips:
                written, changed, words, carry = student.slips[(n, key)](W, right, own_values)
            if key[0] == "class":
                shown = written.astype(int)
            else:
                shown = np.round(written, student.decimals)
            for idx in np.ndindex(*right.shape):
                address = ex.address[(n, key, idx)]
                value = float(shown[idx])
                slipped, named = idx in changed, words
                if (n, key, idx) in formulas:
                    text, value_of, named = formulas[(n, key, idx)]
                    typed[address], value = text, value_of(own_values)
                    shown[idx], slipped = value, abs(value - right[idx]) > 1e-9
                else:
                    typed[address] = student.text.get((n, key), lambda v: v)(int(value) if key[0] == "class" else value)
                verdicts[address] = verdict(student, value, float(truth[key][idx]), float(right[idx]), slipped, named, address)
            own_values[key] = shown if carry else np.round(right, student.decimals)
    return typed, verdicts


def verdict(student, given, truth, own, slipped, words, address):
    """The teacher's verdict by the marking rule: right within the rounding the student carries (or the fixed
    tolerance), else carried forward when it is right from the student's own values, else wrong (the slip named)."""
    if student.tolerance is not None:
        near = student.tolerance
        assert all(abs(abs(d) - near) > near / 100 for d in (given - truth, given - own)), (student.name, address, "on the edge of the tolerance")
    else:
        near = student.noise
        assert not near / 3 < abs(given - truth) < 3 * near, (student.name, address, given, truth, "neither clearly right nor clearly wrong")
    if abs(given - truth) <= near:
        return ("right", None)
    if abs(given - own) <= near:
        return ("carried", None)
    assert slipped, (student.name, address, given, own, "wrong without a slip")
    return ("wrong", words)


class Exercise:
    """A practice workbook as the teacher reads it: weights, inputs, and where each element of each step is typed."""

    def __init__(self, model, raw, scale, path):
        self.plan = plan_practice(model, raw, scale)
        self.path = write_plan(self.plan, path)
        self.W, self.where, self.raws, self.scale = read_exercise(path, raw.shape[0])
        self.address = {(int(a.sheet.split()[-1]) - 1, (a.panel.step, a.group), a.idx): a.address for a in self.plan.answers}
        self.pos = {a.address: (a.sheet, a.pos) for a in self.plan.answers}

    def weight_ref(self, name, first, last=None):
        """'Weights!$B$6:$D$8': the cells of a weight the student's formula reads."""
        from openpyxl.utils import get_column_letter

        def ref(idx):
            r, c = self.where[name][idx]
            return f"${get_column_letter(c + 1)}${r + 1}"
        return "Weights!" + ref(first) + (":" + ref(last) if last else "")

    def cell(self, n, key, idx):
        return self.address[(n, key, idx)].split("!")[1]

    def fill(self, student, folder):
        typed, verdicts = simulate(student, self)
        wb = openpyxl.load_workbook(self.path)
        for address, value in typed.items():
            sheet, (r, c) = self.pos[address]
            wb[sheet].cell(r + 1, c + 1).value = value
        wb["Instructions"]["B3"] = student.name
        path = folder / f"{student.name.lower()}.xlsx"
        wb.save(path)
        return path, verdicts


# ---------------------------------------------------------------- the students


def only(cells):
    """A slip in some cells of a step: the written array differs there."""
    def slip(fn, words, carry=True):
        def apply(W, right, own):
            written = right.copy()
            for idx in cells:
                written[idx] = fn(W, own, idx)
            changed = {idx for idx in cells if abs(written[idx] - right[idx]) > 1e-9}
            return written, changed, words, carry
        return apply
    return slip


def everywhere(fn, words):
    def apply(W, right, own):
        written = fn(W, own, right)
        return written, {idx for idx in np.ndindex(*right.shape) if abs(written[idx] - right[idx]) > 1e-9}, words, True
    return apply


def window(W, x, i, j, f, di=0, dj=0, kernel=None):
    k = W["conv2d/kernel"] if kernel is None else kernel
    return float(np.sum(x[i + di:i + di + 3, j + dj:j + dj + 3, :] * k[:, :, :, f]) + W["conv2d/bias"][f])


def swap_digits(text, k):
    return text[:k] + text[k + 1] + text[k] + text[k + 2:]


def formula_left_window(n, i, j):
    """The conv cell (i, j) of filter 0 typed as a formula reading the window one column to the left."""
    def make(ex):
        first, last = ex.cell(n, ("scaled", "scaled"), (i, j - 1, 0)), ex.cell(n, ("scaled", "scaled"), (i + 2, j + 1, 0))
        text = f"=SUMPRODUCT({first}:{last},{ex.weight_ref('conv2d/kernel', (0, 0, 0, 0), (2, 2, 0, 0))})+{ex.weight_ref('conv2d/bias', (0,))}"
        return {(n, ("pre", "conv2d"), (i, j, 0)): (text, lambda own: window(ex.W, own[("scaled", "scaled")], i, j, 0, dj=-1),
                                                    "window misplaced (one column left)")}
    return make


def relu_forgotten(n, units):
    """Every ReLU cell of `dense` typed as a formula copying its pre-activation: =X4 (ReLU forgotten)."""
    def make(ex):
        return {(n, ("activation", "dense"), (j,)): (f"={ex.cell(n, ('pre', 'dense'), (j,))}", lambda own, j=j: float(own[("pre", "dense")][j]),
                                                     "ReLU forgotten") for j in range(units)}
    return make


CHAPTER_STUDENTS = [
    Student("Ada"),
    Student("Bob", slips={(0, ("pre", "conv2d")): only([(1, 1, 0)])(lambda W, own, idx: window(W, own[("scaled", "scaled")], 1, 1, 0)
                                                                        - W["conv2d/bias"][0], "bias forgotten")}),
    Student("Cy", slips={(0, ("pre", "conv2d")): everywhere(
        lambda W, own, right: conv(own[("scaled", "scaled")], W["conv2d/kernel"][::-1, ::-1], W["conv2d/bias"]), "kernel flipped")}),
    Student("Dee", formulas=formula_left_window(1, 1, 1)),  # the cell: 'Sample 2'!M5 reading G5:I7
    Student("Fay", slips={(0, ("pre", "dense")): everywhere(
        lambda W, own, right: own[("output", "flatten")] @ np.round(W["dense/kernel"], 2) + np.round(W["dense/bias"], 2),
        "weights rounded to 2 decimals")}),
    Student("Gus", decimals=4, noise=5e-4, slips={(0, ("pre", "conv2d")): only([(1, 0, 0)])(
        lambda W, own, idx: float(swap_digits(f"{window(W, own[('scaled', 'scaled')], 1, 0, 0):.4f}", 3)), "two digits swapped", carry=False)}),
    Student("Kim", text={(0, ("scaled", "scaled")): lambda v: f"{v}".replace(".", ","), (0, ("softmax", "dense_1")): lambda v: f"{v * 100:.5f}%"}),
]


@pytest.fixture(scope="module")
def chapter(tmp_path_factory):
    from cnncalc.companion.examples import chapter_example

    ex = chapter_example()
    return Exercise(ex.model, ex.raw, ex.scale, tmp_path_factory.mktemp("chapter") / "practice.xlsx")


@pytest.fixture(scope="module")
def second(tmp_path_factory):
    """MODEL2, with the first Dense's unit 2 made to give z = −0.0001 on sample 1 (where "=X6" for ReLU matters), and a
    second sample whose input is constant along each anti-diagonal (so the window one row up equals the one column left)."""
    model = model_from_layer_list(MODEL2)
    W = {f"conv2d/{k}": v for k, v in model.layers[0].weights.items()}
    for seed in range(1000):  # a first sample with a conv cell where the window one column left and the flipped kernel
        raw = np.random.default_rng(seed).integers(0, 9, size=(2, 6, 6, 1)).astype(float)  # both fit the left one's 2 decimals
        close = [cell for cell in np.ndindex(4, 3, 2) if both_fit(W, raw[0] / 8, cell[0], cell[1] + 1, cell[2])]
        if close:
            break
    raw[1, :, :, 0] = np.add.outer(np.arange(6), np.arange(6)) % 5
    trace = model.trace(raw / 8)
    z = trace[3].pre[0, 2]
    model.layers[3].weights["bias"][2] -= z + 0.0001
    ex = Exercise(model, raw, "1/8", tmp_path_factory.mktemp("second") / "practice.xlsx")
    ex.close = (close[0][0], close[0][1] + 1, close[0][2])
    return ex


def both_fit(W, x, i, j, f):
    """Whether the window one column left, written at 2 decimals, also fits the flipped kernel (within ±0.005), the
    left one fitting closer, and both far from the right value."""
    left, flipped = window(W, x, i, j, f, dj=-1), window(W, x, i, j, f, kernel=W["conv2d/kernel"][::-1, ::-1])
    right, typed = window(W, x, i, j, f), round(left, 2)
    return abs(typed - flipped) <= 0.0045 and abs(typed - left) + 0.0005 < abs(typed - flipped) and min(abs(left - right), abs(flipped - right)) > 0.02


def second_students(ex):
    i, j, f = ex.close
    x1 = ex.raws[0] * ex.scale
    left = window(ex.W, x1, i, j, f, dj=-1)
    assert both_fit(ex.W, x1, i, j, f)  # as the workbook holds the numbers: both fit 2 decimals, the closer must win
    return [
        Student("Eve", noise=1e-6, formulas=relu_forgotten(0, 8)),
        Student("Hal", slips={(0, ("output", "flatten")): everywhere(lambda W, own, right: own[("output", "max_pooling2d")].ravel(order="F"),
                                                                     "column-major")}),
        Student("Ivy", slips={(0, ("pre", "dense")): everywhere(lambda W, own, right: own[("output", "flatten")] @ W["dense/kernel"].T + W["dense/bias"],
                                                                "kernel read transposed")}),
        Student("Jo", slips={(0, ("pre", "dense_1")): everywhere(
            lambda W, own, right: own[("activation", "dense")] @ W["dense_1/kernel"].ravel().reshape(3, 8).T + W["dense_1/bias"],
            "kernel read row by row")}),
        Student("Max", slips={(0, ("pre", "conv2d")): only([(i, j, f)])(lambda W, own, idx: round(left, 2), "window misplaced (one column left)")}),
        Student("Ned", formulas=formula_left_window(1, 2, 2)),
    ]


@pytest.fixture(scope="module")
def cls(chapter, second, tmp_path_factory):
    """Every student's file, the teacher's verdicts, and check's grade: {name: (path, verdicts, grade, student)}."""
    folder = tmp_path_factory.mktemp("class")
    out = {}
    for ex, students in ((chapter, CHAPTER_STUDENTS), (second, second_students(second))):
        for s in students:
            path, verdicts = ex.fill(s, folder)
            out[s.name] = (path, verdicts, check(path, s.tolerance), s)
    return out


# ---------------------------------------------------------------- check agrees with the teacher, cell by cell


WORDS = {"Bob": "bias forgotten", "Cy": "kernel flipped", "Dee": "window misplaced (one column left)", "Eve": "ReLU forgotten",
         "Fay": "weights rounded to 2 decimals", "Gus": "two digits swapped", "Hal": "column-major", "Ivy": "kernel read transposed",
         "Jo": "kernel read row by row", "Max": "window misplaced (one column left)", "Ned": "window misplaced (one column left)"}


@pytest.mark.parametrize("name", ["Ada", "Bob", "Cy", "Dee", "Eve", "Fay", "Gus", "Hal", "Ivy", "Jo", "Kim", "Max", "Ned"])
def test_check_agrees_with_the_teacher_on_every_cell_and_names_the_slip(cls, name):
    path, verdicts, grade, student = cls[name]
    disagree = []
    for m in grade.marks:
        want, words = verdicts[m.address]
        mine = "right" if m.status == "correct" else "carried" if m.carried else m.status
        if mine != want or (want == "wrong" and words not in (m.slip_kind or "")):
            disagree.append(f"{m.address}: teacher {want} {words or ''} (given {m.given}, expected {m.answer.expected}); "
                            f"check {mine} {m.slip_kind!r} (tolerance {m.tolerance:.2g}, own {m.own})")
    assert not disagree, f"{name}:\n" + "\n".join(disagree)
    wrong = [v for v in verdicts.values() if v[0] == "wrong"]
    assert bool(wrong) == (name in WORDS) and all(words == WORDS[name] for _, words in wrong)
    assert grade.ok == (not wrong)


def test_a_formula_is_judged_at_full_precision(cls):
    """=X6 where ReLU was needed and z = −0.0001: wrong (a hand-typed −0.0001 would be wrong too), named ReLU forgotten."""
    _, verdicts, grade, _ = cls["Eve"]
    tiny = [m for m in grade.marks if m.answer.group == "dense" and m.answer.panel.step == "activation" and -0.001 < (m.given or 0) < 0]
    assert len(tiny) == 1 and tiny[0].status == "wrong" and tiny[0].slip.startswith("ReLU forgotten") and tiny[0].tolerance < 1e-6
    positives = [m for m in grade.marks if m.answer.group == "dense" and m.answer.panel.step == "activation" and (m.given or 0) > 0]
    assert positives and all(m.status == "correct" for m in positives)


def test_the_slip_that_fits_best_is_named_and_the_formulas_references_decide_a_tie(cls):
    # the window one column left, typed as a formula: its value equals the left window's exactly, and the flipped kernel's
    # is 0.0007 away (so at ±0.005, as formulas were judged before, "kernel flipped" fit too, and was named)
    dee = next(m for m in cls["Dee"][2].marks if m.status == "wrong" and not m.consistent)
    assert dee.address == "'Sample 2'!M5" and dee.typed.startswith("=SUMPRODUCT(G5:I7,")
    assert dee.slip == "window misplaced (one column left)" and [s.kind for *_, s in dee.matches] == [dee.slip] and dee.tolerance < 1e-6
    # typed at 2 decimals, where the flipped kernel also fits: the closer fit, the left window, is named
    max_ = next(m for m in cls["Max"][2].marks if m.slip)
    assert max_.slip == "window misplaced (one column left)" and len(max_.matches) >= 2
    assert any(s.kind.startswith("kernel flipped") for *_, s in max_.matches)  # it fit too, and was not preferred
    # the window one row up has the same value as the one column left (an anti-diagonal input): the formula reads the left one
    ned = next(m for m in cls["Ned"][2].marks if m.slip)
    kinds = [s.kind for *_, s in ned.matches]
    assert "window misplaced (one row up)" in kinds and ned.slip == "window misplaced (one column left)"


def test_a_slip_is_never_named_when_its_value_does_not_fit(chapter, tmp_path):
    """A value no slip gives: wrong, without a name (the nearest slips are far off at 7 decimals)."""
    typed, _ = simulate(Student("Una"), chapter)
    address = chapter.address[(0, ("pre", "conv2d"), (0, 0, 0))]
    typed[address] = typed[address] + 0.0123457
    wb = openpyxl.load_workbook(chapter.path)
    for a, value in typed.items():
        sheet, (r, c) = chapter.pos[a]
        wb[sheet].cell(r + 1, c + 1).value = value
    wb.save(tmp_path / "una.xlsx")
    m = {m.address: m for m in check(tmp_path / "una.xlsx").marks}[address]
    assert m.status == "wrong" and m.slip is None and not m.matches


def test_a_repeated_slip_is_named_once_per_panel(cls):
    _, verdicts, grade, _ = cls["Cy"]
    patterns = grade.patterns()
    wrong = [a for a, v in verdicts.items() if v[0] == "wrong"]
    assert len(patterns) == 1 and patterns[0]["cells"] == wrong and len(wrong) >= 3
    report = format_grade(grade)
    assert report.count("kernel flipped") == 1 and f"{len(wrong)} cells" in report
    _, verdicts, grade, _ = cls["Hal"]  # column-major flatten: one name for the panel, not "channel by channel" in some cells
    assert {m.slip_kind for m in grade.marks if m.slip} == {m.slip_kind for m in grade.marks if m.slip and "column-major" in m.slip_kind}
    assert len(grade.patterns()) == 1


def test_rounding_names_the_decimals_it_found(cls):
    _, _, grade, _ = cls["Fay"]
    slips = {m.slip for m in grade.marks if m.slip}
    assert slips == {"rounded too early: its weights rounded to 2 decimals before computing"}


def test_text_read_as_numbers_is_said(cls, capsys):
    path, _, grade, _ = cls["Kim"]
    assert grade.ok
    note = next(w for w in grade.warnings if "read as numbers" in w)
    assert '"0,125" read as 0.125' in note and "typed as text" in note
    assert main(["check", str(path)]) == 0
    assert "read as numbers" in capsys.readouterr().out


def test_every_answer_with_credit_passes_and_says_what_is_carried(chapter, tmp_path, capsys):
    """Two decimals everywhere, graded at ±0.01: later cells drift past 0.01 from the reference, but each is right from
    the student's own values. Every answer gets credit, so exit 0, and the summary says how many are carried."""
    lee = Student("Lee", decimals=2, tolerance=0.01)
    path, verdicts = chapter.fill(lee, tmp_path)
    carried = sum(v[0] == "carried" for v in verdicts.values())
    assert carried >= 2 and not any(v[0] == "wrong" for v in verdicts.values())
    grade = check(path, 0.01)
    assert grade.ok and grade.carried == carried and grade.score == grade.total
    assert main(["check", str(path), "--tolerance", "0.01"]) == 0
    out = capsys.readouterr().out
    assert f"OK: every answer gets credit: {grade.total - carried} right, {carried} carried forward, 0 wrong" in out
    assert main(["check", str(path), "--tolerance", "0.01", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["carried_forward"] == carried and data["wrong"] == 0


def test_numbers_and_replace_find_and_move_the_numbers_typed_in_a_formula():
    from cnncalc.classroom.evaluate import evaluate, numbers, parse, replace

    tree = parse("=0.125*B4+MAX(0,-2.5)", "S")
    found = numbers(tree)
    assert [n[1] for n in found] == [0.125, 0.0, 2.5]
    moved = replace(tree, found[0], ("num", 0.25))
    assert evaluate(moved, lambda s, r, c: 4.0) == 1.0 and evaluate(tree, lambda s, r, c: 4.0) == 0.5


# ---------------------------------------------------------------- the class: CSV, tally, report workbook


def test_the_class_report_tallies_the_slips(cls, tmp_path, capsys):
    files = [str(cls[name][0]) for name in sorted(cls)]
    grades, report = tmp_path / "grades.csv", tmp_path / "class.xlsx"
    assert main(["check", *files, "--csv", str(grades), "--report", str(report)]) == 1
    out = capsys.readouterr().out
    print(out)
    tally = out[out.index("slips named in the class"):]
    for name, words in WORDS.items():
        assert words in tally, words
    line = next(l for l in tally.splitlines() if l.startswith("window misplaced (one column left)"))
    assert re.match(r"window misplaced \(one column left\)\s+3\s+3\s+conv2d \(3\)", line), line
    rows = {r["name"]: r for r in csv.DictReader(grades.open(encoding="utf-8"))}
    assert rows["Bob"]["slips"] == "bias forgotten (conv2d, 1 cell)" and rows["Ada"]["slips"] == ""
    assert rows["Cy"]["slips"].startswith("kernel flipped") and "conv2d, 4 cells" in rows["Cy"]["slips"]
    wb = openpyxl.load_workbook(report)
    assert wb.sheetnames == ["Class", "Slips"]
    slips = wb["Slips"]
    values = [[c.value for c in row] for row in slips.iter_rows()]
    assert ["window misplaced (one column left)", 3, 3, "conv2d (3)"] == values[next(i for i, r in enumerate(values) if r[0] == "window misplaced (one column left)")][:4]
    steps = [r[0] for r in values if isinstance(r[0], str) and r[0].startswith("step ")]
    assert steps == [f"step {s}: students per slip" for s in ["scaled", "conv2d", "max_pooling2d", "flatten", "dense", "dense_1", "prediction"]]
    quiet = sum(r[0] == "every answer right or carried forward" for r in values)  # a step without a chart
    assert len(slips._charts) == len(steps) - quiet >= 4
    assert {c.value for c in wb["Class"]["A"]} >= {"Ada", "Bob", "Cy"}


def test_the_report_is_checked_before_anything_is_written(cls, tmp_path, capsys):
    ada = str(cls["Ada"][0])
    report, grades = tmp_path / "class.xlsx", tmp_path / "grades.csv"
    report.write_bytes(b"not mine")
    assert main(["check", ada, "--csv", str(grades), "--report", str(report)]) == 2
    assert "--force" in capsys.readouterr().err and not grades.exists() and report.read_bytes() == b"not mine"
    assert main(["check", ada, "--report", ada]) == 2  # one of the inputs
    assert main(["check", ada, "--report", str(tmp_path / "class.csv")]) == 2  # not a workbook's name
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("cnncalc: error: ") for e in errors)
    assert main(["check", ada, "--report", str(report), "--force"]) == 0 and openpyxl.load_workbook(report).sheetnames == ["Class", "Slips"]


@pytest.mark.libreoffice
def test_libreoffice_opens_the_class_report(cls, tmp_path, soffice, capsys):
    from cnncalc.recalc import libreoffice as recalc

    report = tmp_path / "class.xlsx"
    assert main(["check", *[str(cls[n][0]) for n in ("Ada", "Bob", "Cy")], "--report", str(report)]) == 1
    capsys.readouterr()
    values = recalc.read_values(recalc.recalculate(report, tmp_path / "lo"))
    assert values["Class"][(3, 0)] == "Ada" and values["Slips"][(3, 0)] in ("bias forgotten", "kernel flipped")


# ---------------------------------------------------------------- what a student sees


def render(book, folder, soffice):
    """Every printed page of a workbook as PNG (LibreOffice headless to PDF, then pdftoppm): [PIL images]."""
    from PIL import Image

    from cnncalc.recalc.libreoffice import _seed_profile

    profile = folder / "profile"
    _seed_profile(profile)
    subprocess.run([soffice, f"-env:UserInstallation=file://{profile}", "--headless", "--norestore", "--convert-to", "pdf",
                    "--outdir", str(folder), str(book)], check=True, capture_output=True, timeout=300)
    pdf = folder / (book.stem + ".pdf")
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(folder / "page")], check=True)
    return [Image.open(p).convert("RGB") for p in sorted(folder.glob("page*.png"))]


def colours(image):
    return {"%02X%02X%02X" % rgb for _, rgb in image.getcolors(maxcolors=1 << 20)}


def test_the_graded_copy_shows_every_mark(cls, tmp_path, capsys):
    """No colour scale over an answer cell (a spreadsheet paints it over the fills), empty cells lavender, the Grade
    sheet one landscape page with the colours and the slips."""
    path = cls["Bob"][0]
    wb = openpyxl.load_workbook(path)
    wb["Sample 2"]["L4"] = None
    wb.save(tmp_path / "bob.xlsx")
    graded = tmp_path / "bob-graded.xlsx"
    assert main(["check", str(tmp_path / "bob.xlsx"), "--graded", str(graded)]) == 1
    capsys.readouterr()
    copy = openpyxl.load_workbook(graded)
    ws = copy["Sample 1"]
    assert [str(cf.sqref) for cf in ws.conditional_formatting] == ["B4:E7"]  # the raw input keeps its scale; the answers' panels lost theirs
    assert ws["M5"].fill.start_color.rgb.endswith(FILLS["wrong"]) and ws["P5"].fill.start_color.rgb.endswith(FILLS["carried"])
    assert copy["Sample 2"]["L4"].fill.start_color.rgb.endswith(FILLS["missing"]) and FILLS["missing"] != FILLS["wrong"]
    grade = copy["Grade"]
    assert grade.page_setup.orientation == "landscape" and grade.sheet_properties.pageSetUpPr.fitToPage
    assert grade.page_setup.fitToWidth == 1 and grade.page_setup.fitToHeight == 1
    texts = [c.value for row in grade.iter_rows() for c in row if isinstance(c.value, str)]
    assert "lavender: empty" in texts and any("bias forgotten" in t for t in texts)
    swatches = {grade.cell(r, 1).fill.start_color.rgb[-6:] for r in range(1, grade.max_row + 1) if grade.cell(r, 1).fill.fill_type}
    assert swatches == {FILLS[k] for k in ("correct", "carried", "wrong", "missing")}


@pytest.mark.libreoffice
def test_the_graded_copy_rendered_shows_its_marks_and_the_grade_sheet_is_one_page(cls, tmp_path, soffice, capsys):
    wb = openpyxl.load_workbook(cls["Bob"][0])
    wb["Sample 1"]["R4"] = None
    wb.save(tmp_path / "bob.xlsx")
    graded = tmp_path / "bob-graded.xlsx"
    assert main(["check", str(tmp_path / "bob.xlsx"), "--graded", str(graded)]) == 1
    capsys.readouterr()
    pages = render(graded, tmp_path, soffice)
    sheet1 = next(p for p in pages[1:] if "F4B183" in colours(p) or FILLS["correct"] in colours(p))
    seen = set().union(*(colours(p) for p in pages[1:]))
    assert {FILLS["wrong"], FILLS["carried"], FILLS["missing"], FILLS["correct"]} <= seen, sorted(seen)[:20]
    assert sheet1 is not None
    only = openpyxl.load_workbook(graded)
    for name in only.sheetnames[1:]:
        del only[name]
    only.save(tmp_path / "grade-only.xlsx")
    (tmp_path / "g").mkdir()
    assert len(render(tmp_path / "grade-only.xlsx", tmp_path / "g", soffice)) == 1


def test_a_graded_copy_of_the_previous_release_is_graded_again(tmp_path):
    """tests/data/graded_release1.xlsx: practice_release1.xlsx filled in (conv2d's first cell without its bias,
    Sample 2's pooling left empty) and graded by the release before this one (commit 23d74bc)."""
    grade = check(DATA / "graded_release1.xlsx")
    marks = {m.address: m for m in grade.marks}
    assert grade.total == 112 and grade.score == 110
    assert marks["'Sample 1'!L4"].slip == "bias forgotten" and marks["'Sample 2'!R4"].status == "missing"
    from cnncalc.classroom.check import write_graded

    write_graded(grade, tmp_path / "again.xlsx")
    again = openpyxl.load_workbook(tmp_path / "again.xlsx")
    assert again.worksheets[0]["B3"].value == 110 and again["Sample 1"]["L4"].fill.start_color.rgb.endswith(FILLS["wrong"])


# ---------------------------------------------------------------- printing


def test_page_starts_end_pages_between_panels():
    from cnncalc.sheets.writer import page_starts

    assert page_starts([10] * 9, {3}, 45) == [4, 8]
    assert page_starts([10] * 6, {1, 4}, 35) == [2, 5]  # each page ends at the last gap that fits
    assert page_starts([100, 10, 10], set(), 45) == [1]  # a panel wider than a page is cut where it must be
    assert page_starts([10] * 3, set(), 45) == []


def printed(ws):
    """(orientation, pages wide when fitted else None, scale when not, column breaks, title rows)."""
    fitted = bool(ws.sheet_properties.pageSetUpPr and ws.sheet_properties.pageSetUpPr.fitToPage)
    return (ws.page_setup.orientation, (ws.page_setup.fitToWidth or 1) if fitted else None, None if fitted else ws.page_setup.scale,
            [b.id for b in ws.col_breaks.brk], ws.print_title_rows)


def test_every_sheet_of_every_workbook_prints_readably(cls, tmp_path, capsys):
    """Landscape; one page wide when that stays readable, else 75 % with pages ending between panels; titles atop
    every page; the Steps sheet's calculations wrapped so their results show; the Read me title inside its column."""
    assert main(["example", "-o", str(tmp_path / "worked.xlsx")]) == 0
    assert main(["check", str(cls["Bob"][0]), "--graded", str(tmp_path / "graded.xlsx"), "--report", str(tmp_path / "class.xlsx")]) == 1
    capsys.readouterr()
    for name in ("worked.xlsx", "graded.xlsx", "class.xlsx"):
        for ws in openpyxl.load_workbook(tmp_path / name).worksheets:
            if ws.sheet_state == "hidden":
                continue
            orientation, wide, scale, breaks, titles = printed(ws)
            assert orientation == "landscape", (name, ws.title)
            assert wide == 1 or (scale == 75 and breaks), (name, ws.title, wide, scale, breaks)
            if ws.title.startswith("Sample"):
                assert titles == "$1:$3" and scale == 75 and len(breaks) >= 2, (name, ws.title, titles, breaks)
    graded = openpyxl.load_workbook(tmp_path / "graded.xlsx")["Grade"]
    assert graded.page_setup.fitToHeight == 1 and graded.page_setup.fitToWidth == 1
    book = openpyxl.load_workbook(tmp_path / "worked.xlsx")
    steps = book["Steps"]
    assert printed(steps)[1] == 1 and printed(steps)[4] == "$1:$3"
    long_rows = [c.row for c in steps["D"] if isinstance(c.value, str) and len(c.value) > 140]
    assert long_rows and all(steps[f"D{r}"].alignment.wrap_text and steps.row_dimensions[r].height >= 45 for r in long_rows)
    readme = book["Read me"]
    assert readme.column_dimensions["A"].width >= 1.5 * len(readme["A1"].value)
