"""Grading filled-in practice workbooks, as students fill them: typed numbers, text, decimal commas, percents,
formulas; each kind of slip named; one early slip carried forward; a class at once; a graded copy LibreOffice opens.

The slipped values are computed here with numpy from the model's weights, independently of the grader."""

import csv
import json

import numpy as np
import openpyxl
import pytest

from cnncalc.recalc import libreoffice as recalc
from cnncalc.classroom.check import check, read_number, tolerance
from cnncalc.cli import main
from cnncalc.errors import CnncalcError
from cnncalc.kerasfiles.loader import model_from_layer_list
from cnncalc.classroom.practice import plan_practice
from cnncalc.sheets.workbook import plan_workbook
from cnncalc.sheets.writer import write_plan

STRIDED = {"input_shape": [5, 5, 2], "seed": 5, "layers": [
    {"Conv2D": {"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "relu"}},
    {"MaxPooling2D": {"pool_size": 2, "strides": 1}},
    {"Flatten": {}},
    {"Dense": {"units": 4, "activation": "relu"}},
    {"Dense": {"units": 3, "activation": "softmax"}},
]}


class Practice:
    """A practice workbook on disk and its plan: the answers, by address."""

    def __init__(self, model, raw, scale, path):
        self.model, self.raw, self.scale = model, raw, scale
        self.plan = plan_practice(model, raw, scale)
        self.path = write_plan(self.plan, path)
        self.answers = {a.address: a for a in self.plan.answers}

    def at(self, sheet, step, idx, layer=None):
        """The address of a panel's element: e.g. at("Sample 1", "pre", (0, 0, 0), "conv2d")."""
        for a in self.plan.answers:
            if a.sheet == sheet and a.panel.step == step and a.idx == tuple(idx) and (layer is None or a.group == layer):
                return a.address
        raise KeyError((sheet, step, idx, layer))

    def fill(self, out, changes=(), name="Ada Lovelace", digits=7):
        """A copy with every answer typed in as a number (rounded to `digits`), then `changes` {address: what to type}."""
        wb = openpyxl.load_workbook(self.path)
        typed = {address: round(a.expected, digits) for address, a in self.answers.items()}
        typed.update(dict(changes))
        for address, value in typed.items():
            a = self.answers[address]
            wb[a.sheet].cell(a.pos[0] + 1, a.pos[1] + 1).value = value
        wb["Instructions"]["B3"] = name
        wb.save(out)
        return out


@pytest.fixture(scope="module")
def chapter_practice(tmp_path_factory):
    from cnncalc.companion.examples import chapter_example

    ex = chapter_example()
    return Practice(ex.model, ex.raw, ex.scale, tmp_path_factory.mktemp("chapter") / "practice.xlsx")


@pytest.fixture(scope="module")
def strided_practice(tmp_path_factory):
    model = model_from_layer_list(STRIDED)
    raw = np.random.default_rng(1).integers(-4, 5, size=(1, 5, 5, 2)).astype(float)
    return Practice(model, raw, "1/4", tmp_path_factory.mktemp("strided") / "practice.xlsx")


def marks(grade):
    return {m.address: m for m in grade.marks}


# ---------------------------------------------------------------- reading what a student wrote


@pytest.mark.parametrize("typed, number, places", [
    (0.47, 0.47, 2), (3, 3.0, 0), ("0.47", 0.47, 2), (" 0,4692 ", 0.4692, 4), ("47%", 0.47, 2), ("−0.5", -0.5, 1),
    ("1,234.5", 1234.5, 1), ("1.234,5", 1234.5, 1), ("1e-05", 1e-05, 5), ("-.25", -0.25, 2), ("0.470", 0.47, 3),
])
def test_numbers_are_read_as_students_write_them(typed, number, places):
    assert read_number(typed) == (pytest.approx(number, rel=1e-15), places)


@pytest.mark.parametrize("typed", ["abc", "", "1/8", "0.4.7", "1,2,3", "#DIV/0!", True, float("nan"), "inf", "1_000"])
def test_what_is_not_a_number_is_refused(typed):
    with pytest.raises(ValueError):
        read_number(typed)


@pytest.mark.parametrize("places, fixed, tol", [(2, None, 0.005), (4, None, 0.00005), (1, None, 0.005), (0, None, 0.005),
                                                 (None, None, 0.005), (15, None, 1e-9), (1, 0.05, 0.05)])
def test_tolerance_is_the_precision_written_at_most_two_decimals(places, fixed, tol):
    assert tolerance(places, 0.4691745, fixed) == pytest.approx(tol)


# ---------------------------------------------------------------- right answers, written every way


def test_the_worked_examples_values_pass_with_exit_0(chapter_practice, tmp_path, capsys):
    """Fill the practice workbook with the values the worked example's own cells hold."""
    assert main(["example", "-o", str(tmp_path / "worked.xlsx")]) == 0
    worked = recalc.read_values(tmp_path / "worked.xlsx")
    p = chapter_practice
    filled = p.fill(tmp_path / "filled.xlsx", {ad: worked[a.sheet][a.pos] for ad, a in p.answers.items()})
    capsys.readouterr()
    assert main(["check", str(filled)]) == 0
    out = capsys.readouterr().out
    assert "Ada Lovelace" in out and "score: 112/112 (100%)" in out and "OK: every answer is right" in out


def test_answers_typed_as_text_commas_percent_formulas_all_count(chapter_practice, tmp_path):
    p = chapter_practice
    changes = {
        "'Sample 1'!G4": "0.125",  # text
        "'Sample 1'!H4": "0,25",  # a decimal comma
        "'Sample 1'!I4": " 0.375 ",  # spaces
        "'Sample 1'!L4": "=0.125*0.6502779+0.25*0.3674555+0.375*-0.04364061+0.25*0.8205539+0.375*0.5735873"
                         "+0.5*0.13939373+0.625*-0.1292512+0.75*0.05793982+0.875*-0.03353929-0.11086546",  # a typed formula
        "'Sample 1'!O4": "=MAX(0,L4)",  # a formula over their own cells
        "'Sample 1'!AJ4": "89.06642%",  # percent as text
        "'Sample 1'!AJ5": 0.47 - 0.3606642,  # plain number
        "'Sample 1'!L5": 1.2215,  # fewer decimals: judged at 4
        "'Sample 1'!M5": 1.51,  # 2 decimals: 1.5057 counts as right at 2 decimals
        "'Sample 2'!O5": "−0",  # a real minus sign
    }
    filled = p.fill(tmp_path / "typed.xlsx", changes)
    wb = openpyxl.load_workbook(filled)
    wb["Sample 2"]["AJ4"].number_format = "0.00%"  # a percent-formatted cell holds 0.267774 (shown as 26.78%)
    wb["Sample 1"]["B30"] = "my scratch work: 0.125*0.65"  # an extra cell, ignored
    wb.save(filled)
    grade = check(filled)
    m = marks(grade)
    assert all(x.status == "correct" for x in grade.marks), [(x.address, x.typed, x.given) for x in grade.marks if x.status != "correct"]
    assert m["'Sample 1'!H4"].given == 0.25 and m["'Sample 1'!AJ4"].given == pytest.approx(0.8906642)
    assert m["'Sample 1'!M5"].tolerance >= 0.005 and m["'Sample 1'!L4"].given == pytest.approx(0.4691745, abs=1e-7)
    assert any("outside the answer cells" in w and "'Sample 1'!B30" in w for w in grade.warnings)
    assert grade.ok


def test_missing_and_not_a_number_are_marked_and_exit_1(chapter_practice, tmp_path, capsys):
    p = chapter_practice
    filled = p.fill(tmp_path / "gaps.xlsx", {"'Sample 1'!R4": None, "'Sample 2'!R4": "about 0.1", "'Sample 1'!M5": 1.5})
    grade = check(filled)
    m = marks(grade)
    assert m["'Sample 1'!R4"].status == "missing" and m["'Sample 2'!R4"].status == "not a number"
    assert m["'Sample 1'!M5"].status == "wrong"  # 1.5 has 1 decimal, but never looser than ±0.005: 1.5057 is not 1.5
    assert m["'Sample 1'!U4"].consistent is None  # it reads the empty R4: cannot tell
    assert main(["check", str(filled)]) == 1
    out = capsys.readouterr().out
    assert "(empty)" in out and '"about 0.1"' in out and "1 missing, 1 not a number" in out
    assert main(["check", str(filled), "--tolerance", "0.01"]) == 1  # 1.5 is now right, the gaps are not
    assert "0 wrong" in capsys.readouterr().out


# ---------------------------------------------------------------- slips, each named


def chapter_slips(ex):
    """{address: (value the slip gives, words the diagnosis must contain)}, computed with numpy."""
    k = ex.model.layers[0].weights["kernel"][:, :, 0, 0]
    b = ex.model.layers[0].weights["bias"][0]
    x1, x2 = ex.x[0, :, :, 0], ex.x[1, :, :, 0]
    t1 = ex.model.trace(ex.x)
    z1, z2 = t1[-1].pre[0], t1[-1].pre[1]  # dense_1 logits
    e1 = np.exp(z1 - z1.max())
    dense = ex.model.layers[3]
    flat1 = t1[2].out[0]
    return {
        "'Sample 1'!G4": (ex.raw[0, 0, 0, 0], "input not scaled"),
        "'Sample 1'!L4": (np.sum(x1[0:3, 0:3] * k), "bias forgotten"),
        "'Sample 1'!M4": (np.sum(x1[0:3, 1:4] * k[::-1, ::-1]) + b, "kernel flipped"),
        "'Sample 1'!L5": (np.sum(ex.raw[0, 1:4, 0:3, 0] * k) + b, "unscaled input used"),
        "'Sample 2'!M4": (np.sum(x2[1:4, 1:4] * k) + b, "window misplaced (one row down)"),
        "'Sample 2'!L5": (0.0, "ReLU applied where it should not be"),
        "'Sample 2'!O5": (t1[0].pre[1, 1, 0, 0], "ReLU forgotten"),
        "'Sample 1'!R4": (np.mean(t1[0].out[0]), "average instead of max"),
        "'Sample 1'!X4": (np.floor(flat1[0] * 100 + 0.5) / 100 * dense.weights["kernel"][0, 0] + dense.weights["bias"][0], "rounded too early"),
        "'Sample 1'!X6": (flat1[0] * dense.weights["kernel"][0, 2], "bias forgotten"),
        "'Sample 1'!AD5": (0.0, "ReLU applied where it should not be"),
        "'Sample 1'!AG5": (np.exp(z1[1]), "max not subtracted"),
        "'Sample 2'!AG4": (z2[0] - z2.max(), "not exponentiated: z − m"),
        "'Sample 1'!AJ4": (e1[0], "softmax not normalised"),
        "'Sample 2'!AJ5": (z2[1] / z2.sum(), "softmax not exponentiated"),
        "'Sample 2'!AM4": (2, "class counted from 1"),
    }


def test_each_slip_on_the_chapter_model_is_named(chapter_practice, tmp_path):
    from cnncalc.companion.examples import chapter_example

    p = chapter_practice
    slips = chapter_slips(chapter_example())
    filled = p.fill(tmp_path / "slips.xlsx", {ad: round(float(v), 7) for ad, (v, _) in slips.items()})
    m = marks(check(filled))
    for address, (value, words) in slips.items():
        got = m[address]
        assert got.status == "wrong" and got.slip and words in got.slip, f"{address}: mine {got.slip!r} (given {got.given}, expected {got.answer.expected}), theirs {words!r}"


def strided_slips(p):
    """Slips of stride, padding, pooling window, filter and flatten order on the strided, padded, 2-channel model."""
    conv = p.model.layers[0]
    k, b = conv.weights["kernel"], conv.weights["bias"]
    x = np.pad(p.raw[0] / 4, ((1, 1), (1, 1), (0, 0)))  # 'same' padding: one row/column of zeros all round
    trace = p.model.trace(p.raw / 4)
    a = trace[0].out[0]  # conv after ReLU, (3, 3, 3)
    pooled = trace[1].out[0]  # (2, 2, 3)
    sheet = "Sample 1"
    return {
        p.at(sheet, "pre", (1, 1, 0)): (np.sum(x[1:4, 1:4] * k[:, :, :, 0]) + b[0], "stride misapplied"),
        p.at(sheet, "pre", (1, 0, 1)): (np.sum(x[3:6, 1:4] * k[:, :, :, 1]) + b[1], "padding misapplied"),
        p.at(sheet, "pre", (0, 1, 2)): (np.sum(x[0:3, 2:5] * k[::-1, ::-1, :, 2]) + b[2], "kernel flipped"),
        p.at(sheet, "pre", (2, 2, 0)): (np.sum(x[4:7, 4:7] * k[:, :, :, 1]) + b[1], "kernel of filter 1 used"),
        p.at(sheet, "output", (0, 0, 1), "max_pooling2d"): (a[1:3, 0:2, 1].max(), "pooling the wrong window"),
        p.at(sheet, "output", (1,), "flatten"): (np.transpose(pooled, (2, 0, 1)).ravel()[1], "flattened in the wrong order"),
    }


def test_stride_padding_pooling_window_and_flatten_slips_on_a_strided_padded_model(strided_practice, tmp_path):
    p = strided_practice
    slips = strided_slips(p)
    filled = p.fill(tmp_path / "slips.xlsx", {ad: round(float(v), 7) for ad, (v, _) in slips.items()})
    m = marks(check(filled))
    for address, (value, words) in slips.items():
        got = m[address]
        assert got.status == "wrong" and got.slip and words in got.slip, f"{address}: mine {got.slip!r} (given {got.given}, expected {got.answer.expected}), theirs {words!r}"


def test_right_answers_on_the_strided_model_pass(strided_practice, tmp_path):
    grade = check(strided_practice.fill(tmp_path / "right.xlsx", digits=6))
    # scaled 50, zero-padded 50 (the zeros are given), conv pre and relu 27 + 27, pool 12, flatten 12, dense 4 + 4,
    # dense_1 3, softmax e 3, m 1, s 1, p 3, class and its value 2
    assert grade.total == 199 and grade.ok and grade.score == grade.total and not grade.warnings


# ---------------------------------------------------------------- carry-forward


def cascade(ex, p):
    """Sample 1 with the bias forgotten in the conv cell that wins the pooling, and every later step
    computed right from that wrong value (with the engine's own layers): what a careful student with one slip writes."""
    model, x = ex.model, ex.x[:1]
    t = model.trace(x)
    pre = t[0].pre.copy()
    pre[0, 1, 1, 0] -= model.layers[0].weights["bias"][0]
    values = {("pre", (1, 1, 0), "conv2d"): pre[0, 1, 1, 0]}
    out = np.maximum(pre, 0)
    values[("activation", (1, 1, 0), "conv2d")] = out[0, 1, 1, 0]
    for layer in model.layers[1:]:
        z, out = layer.call(out)
        step = "output" if z is None else "pre"
        for idx in np.ndindex(*out.shape[1:]):
            values[(step, idx, layer.name)] = (out if z is None else z)[(0, *idx)]
            if z is not None and layer.activation == "relu":
                values[("activation", idx, layer.name)] = out[(0, *idx)]
    e = np.exp(z[0] - z[0].max())
    for j in range(2):
        values[("softmax_exp", (j,), "dense_1")] = e[j]
        values[("softmax", (j,), "dense_1")] = e[j] / e.sum()
    values[("softmax_max", (0,), "dense_1")] = z[0].max()
    values[("softmax_sum", (0,), "dense_1")] = e.sum()
    values[("class_value", (0,), None)] = out[0].max()
    return {p.at("Sample 1", step, idx, layer): round(float(v), 7) for (step, idx, layer), v in values.items()}


def test_one_early_slip_is_carried_forward(chapter_practice, tmp_path, capsys):
    from cnncalc.companion.examples import chapter_example

    p = chapter_practice
    changes = cascade(chapter_example(), p)
    first = p.at("Sample 1", "pre", (1, 1, 0), "conv2d")
    filled = p.fill(tmp_path / "cascade.xlsx", changes)
    grade = check(filled)
    m = marks(grade)
    assert m[first].status == "wrong" and m[first].consistent is False and m[first].slip == "bias forgotten"
    later = [m[ad] for ad in changes if ad != first and abs(changes[ad] - m[ad].answer.expected) > 0.001]
    assert len(later) >= 10  # the slip really cascades: pooling, flatten, dense, softmax all change
    for x in later:
        assert x.status == "wrong" and x.consistent is True and x.carried and x.slip is None, (x.address, x.given, x.own)
    assert all(x.consistent is not False for x in grade.marks if x.address != first)
    assert grade.score == grade.total - 1 and grade.count("correct") == grade.total - 1 - len(later)
    assert main(["check", str(filled)]) == 1
    out = capsys.readouterr().out
    assert f"score: {grade.total - 1}/{grade.total}" in out and "carried forward" in out and "bias forgotten" in out


# ---------------------------------------------------------------- output, graded copy, class, bad files


def test_json_report_lists_every_cell(chapter_practice, tmp_path, capsys):
    filled = chapter_practice.fill(tmp_path / "j.xlsx", {"'Sample 1'!L4": 0.5800399})
    assert main(["check", str(filled), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "Ada Lovelace" and data["answers"] == 112 and data["score"] == 111 and not data["ok"]
    cell = next(c for c in data["cells"] if c["cell"] == "'Sample 1'!L4")
    assert cell["status"] == "wrong" and cell["slip"] == "bias forgotten" and cell["consistent"] is False
    assert cell["how"].startswith("0.125×0.6502779 + 0.25×0.3674555") and cell["how"].endswith("= 0.4691745")
    assert {s["step"] for s in data["steps"]} >= {"conv2d", "dense_1", "prediction"}


@pytest.mark.libreoffice
def test_typed_formulas_beyond_the_subset_are_recalculated_and_the_graded_copy_opens_in_libreoffice(chapter_practice, tmp_path, soffice, capsys):
    p = chapter_practice
    filled = p.fill(tmp_path / "round.xlsx", {"'Sample 1'!L4": "=ROUND(0.5800399,7)", "'Sample 1'!M4": "=ROUND(0.7695216,7)",
                                              "'Sample 2'!R4": None})
    graded = tmp_path / "graded.xlsx"
    assert main(["check", str(filled), "--graded", str(graded)]) == 1
    out = capsys.readouterr().out
    assert "LibreOffice computed 2 formula(s)" in out and "bias forgotten" in out and f"wrote the graded copy {graded}" in out
    wb = openpyxl.load_workbook(graded)
    assert wb.sheetnames[0] == "Grade"
    l4, m4, r4 = wb["Sample 1"]["L4"], wb["Sample 1"]["M4"], wb["Sample 2"]["R4"]
    assert l4.fill.start_color.rgb.endswith("FFC7CE") and m4.fill.start_color.rgb.endswith("C6EFCE") and m4.comment is None
    assert "Expected 0.4691745" in l4.comment.text and "Slip: bias forgotten" in l4.comment.text and "How: 0.125×0.6502779" in l4.comment.text
    assert r4.comment is not None and "(empty)" in r4.comment.text
    opened = recalc.recalculate(graded, tmp_path / "lo")  # LibreOffice opens it and saves it again
    assert opened.is_file() and "Grade" in openpyxl.load_workbook(opened, read_only=True).sheetnames
    # ... and the file LibreOffice saved (cached results of the typed formulas, a Grade sheet in front) grades the same
    again = check(opened)
    assert not any("LibreOffice computed" in w for w in again.warnings)
    assert [(x.address, x.status) for x in again.marks] == [(x.address, x.status) for x in check(filled).marks]
    assert main(["check", str(filled), "--graded", str(graded)]) == 2  # never overwrites without --force
    assert "--force" in capsys.readouterr().err


def test_a_class_at_once_with_one_bad_file(chapter_practice, tmp_path, capsys):
    p = chapter_practice
    good = p.fill(tmp_path / "ada.xlsx")
    slip = p.fill(tmp_path / "bob.xlsx", {"'Sample 1'!L4": 0.5800399}, name="Bob")
    bad = tmp_path / "carl.xlsx"
    bad.write_text("not a workbook")
    grades = tmp_path / "grades.csv"
    graded = tmp_path / "graded"
    graded.mkdir()
    assert main(["check", str(good), str(bad), str(slip), "--csv", str(grades), "--graded", str(graded)]) == 2
    captured = capsys.readouterr()
    assert "carl.xlsx" in captured.err and captured.err.count("cnncalc: error:") == 1
    rows = list(csv.DictReader(grades.open()))
    assert [r["name"] for r in rows] == ["Ada Lovelace", "", "Bob"]
    assert rows[0]["score"] == "112" and rows[0]["conv2d"] == "16/16" and rows[2]["conv2d"] == "15/16" and rows[2]["score"] == "111"
    assert "carl.xlsx" in rows[1]["error"] and rows[0]["error"] == ""
    assert sorted(f.name for f in graded.iterdir()) == ["ada-graded.xlsx", "bob-graded.xlsx"]
    assert main(["check", str(good), str(slip)]) == 1


@pytest.mark.parametrize("make, words", [
    (lambda tmp: openpyxl.Workbook().save(tmp / "plain.xlsx") or tmp / "plain.xlsx", "not a cnncalc workbook"),
    (lambda tmp: main(["example", "-o", str(tmp / "worked.xlsx")]) == 0 and tmp / "worked.xlsx", "not a practice workbook"),
    (lambda tmp: (tmp / "text.xlsx").write_text("hello") and tmp / "text.xlsx", "Expected an .xlsx workbook"),
    (lambda tmp: tmp / "missing.xlsx", "missing.xlsx"),
])
def test_files_that_are_not_practice_workbooks_get_one_clear_line(make, words, tmp_path, capsys):
    path = make(tmp_path)
    capsys.readouterr()
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnncalc: error: ") and words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_edited_given_cells_are_noticed_and_a_broken_weight_is_an_error(chapter_practice, tmp_path):
    p = chapter_practice
    filled = p.fill(tmp_path / "edited.xlsx")
    wb = openpyxl.load_workbook(filled)
    wb["Sample 1"]["B4"] = 2  # the raw input, changed: grading follows the file, and says so
    wb.save(filled)
    grade = check(filled)
    assert any("were changed after the workbook was made" in w for w in grade.warnings)
    assert marks(grade)["'Sample 1'!G4"].status == "wrong"  # 0.125 is no longer 2/8
    wb["Weights"]["B6"] = "zero point six"
    wb.save(filled)
    with pytest.raises(CnncalcError, match=r"Weight conv2d/kernel\[0, 0, 0, 0\] .* is not a number"):
        check(filled)


def test_check_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    assert "Example:" in capsys.readouterr().out


def test_worked_example_plan_is_unchanged_by_practice(chapter_practice):
    """plan_practice changes its own plan only: a new worked-example plan still has every formula and cached value."""
    from cnncalc.companion.examples import chapter_example

    ex = chapter_example()
    book = plan_workbook(ex.model, ex.raw, ex.scale)
    assert book.sheet("Sample 1").cells()[(3, 11)].formula == "=SUMPRODUCT(G4:I6,Weights!$B$6:$D$8)+Weights!$B$12"


def test_a_one_unit_model_grades(tmp_path):
    """One input, one unit, one output: its formulas read single cells, not ranges (MATCH(MAX(X4),X4,0)-1)."""
    spec = {"input_shape": [1], "seed": 1, "layers": [{"Dense": {"units": 1, "activation": "relu"}}, {"Dense": {"units": 1, "activation": "sigmoid"}}]}
    p = Practice(model_from_layer_list(spec), np.array([[3.0], [-2.0]]), None, tmp_path / "one.xlsx")
    z = p.model.trace(p.raw)[1].pre[0, 0]
    cell = p.at("Sample 1", "activation", (0,), "dense_1")
    grade = check(p.fill(tmp_path / "filled.xlsx", {cell: round(float(z), 7)}))
    m = marks(grade)
    assert grade.total == 2 * 6 and m[cell].status == "wrong" and m[cell].slip == "sigmoid forgotten (z copied)"
    assert all(x.status == "correct" for x in grade.marks if x.address != cell)
