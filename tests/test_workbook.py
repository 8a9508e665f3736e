"""The chapter's workbook: live formulas recalculated by real LibreOffice reproduce the engine and the book;
verify catches a broken formula and accepts an edited weight; the committed workbook reproduces byte for byte."""

import shutil

import numpy as np
import openpyxl
import pytest

from cnncalc.recalc import libreoffice as recalc
from cnncalc.sheets.cells import parse_a1
from cnncalc.recalc.verify import verify
from cnncalc.sheets.workbook import plan_workbook
from cnncalc.sheets.writer import write_plan

from conftest import REPO

pytestmark = pytest.mark.libreoffice


@pytest.fixture
def plan(chapter):
    return plan_workbook(chapter.model, chapter.raw, chapter.scale, chapter.title, chapter.labels)


@pytest.fixture
def book_path(plan, tmp_path):
    return write_plan(plan, tmp_path / "chapter.xlsx")


@pytest.fixture
def recalculated(book_path, soffice, tmp_path):
    out = recalc.recalculate(book_path, tmp_path / "recalc")
    return recalc.read_values(out)


def test_every_formula_cell_recalculates_to_the_engine(plan, recalculated):
    checked = 0
    for sheet in plan.sheets:
        for r, row in sheet.rows():
            for c, cell in row:
                if cell.formula:
                    got = recalculated[sheet.name][(r, c)]
                    assert got == pytest.approx(cell.value, rel=1e-9, abs=1e-12), (sheet.name, r, c, cell.formula)
                    checked += 1
    assert checked >= 110


def find(plan, sheet, title):
    """The placement of the panel whose title row holds `title`."""
    cells = plan.sheet(sheet).cells()
    for (r, c), cell in cells.items():
        if r == 0 and cell.value == title:
            return c
    raise AssertionError(f"no panel {title!r} on {sheet}")


def values_at(recalculated, sheet, top_left, shape):
    r0, c0 = parse_a1(top_left)
    return np.array([[recalculated[sheet][(r0 + i, c0 + j)] for j in range(shape[1])] for i in range(shape[0])])


def test_the_books_numbers_appear_where_they_belong(plan, recalculated, book):
    """Read LibreOffice's results at the panels' addresses and compare with the book's values."""
    exp0 = book["expected"]["sample0_float64_as_the_book_workbook_computes_it"]
    exp1 = book["expected"]["sample1_float64"]
    s1, s2 = "Sample 1", "Sample 2"
    conv_col = find(plan, s1, "conv2d (Conv2D) pre-activation")
    np.testing.assert_allclose([[recalculated[s1][(3 + i, conv_col + j)] for j in range(2)] for i in range(2)], exp0["conv_L4_M5"], rtol=1e-12)
    np.testing.assert_allclose([[recalculated[s2][(3 + i, conv_col + j)] for j in range(2)] for i in range(2)], exp1["conv_pre"], rtol=1e-12)
    relu_col = find(plan, s2, "conv2d (Conv2D) relu")
    np.testing.assert_allclose([[recalculated[s2][(3 + i, relu_col + j)] for j in range(2)] for i in range(2)], exp1["conv_relu"], rtol=1e-12)
    pool_col = find(plan, s1, "max_pooling2d (MaxPooling2D)")
    assert recalculated[s1][(3, pool_col)] == pytest.approx(exp0["pool_M8"], rel=1e-12)
    assert recalculated[s2][(3, pool_col)] == pytest.approx(exp1["pool"], rel=1e-12)
    for title, key in [("dense (Dense) pre-activation", "hidden_pre_O12_O21"), ("dense (Dense) relu", "hidden_relu_Q12_Q21"),
                       ("dense_1 (Dense) pre-activation", "logits_W13_X13"), ("dense_1 (Dense) softmax", "softmax_AC13_AD13")]:
        col = find(plan, s1, title) + 1  # the value column, right of the index column
        got = [recalculated[s1][(3 + k, col)] for k in range(len(exp0[key]))]
        np.testing.assert_allclose(got, exp0[key], rtol=1e-12, atol=1e-15, err_msg=title)
    col = find(plan, s2, "dense_1 (Dense) softmax") + 1
    assert recalculated[s2][(3, col)] == pytest.approx(0.2677739663373801, rel=1e-12)
    assert recalculated[s1][(3, col)] == pytest.approx(0.8906642160356466, rel=1e-12)
    pred = find(plan, s1, "Prediction") + 1
    assert recalculated[s1][(3, pred)] == 0 and recalculated[s2][(3, pred)] == 1


def test_formula_cells_carry_the_engines_cached_value(book_path):
    wb = openpyxl.load_workbook(book_path, data_only=True)  # the cached results, as a viewer shows them
    ws = wb["Sample 1"]
    values = [c for row in ws.iter_rows(values_only=True) for c in row if isinstance(c, float)]
    assert any(v == pytest.approx(0.8906642160356466, rel=1e-12) for v in values)


def test_scaled_input_is_a_formula_and_weights_are_labelled(book_path):
    wb = openpyxl.load_workbook(book_path)
    ws = wb["Sample 1"]
    formulas = [c.value for row in ws.iter_rows() for c in row if isinstance(c.value, str) and c.value.startswith("=")]
    assert "=B4/8" in formulas
    assert any(f.startswith("=SUMPRODUCT(G4:I6,Weights!$B$") for f in formulas)
    labels = [c.value for row in wb["Weights"].iter_rows() for c in row if isinstance(c.value, str)]
    for name in ["conv2d/kernel   shape (3, 3, 1, 1)", "conv2d/bias   shape (1,)", "dense/kernel   shape (1, 10)",
                 "dense/bias   shape (10,)", "dense_1/kernel   shape (10, 2)", "dense_1/bias   shape (2,)"]:
        assert name in labels
    # no function outside the set every spreadsheet engine has
    used = {f.split("(")[0].lstrip("=") for f in formulas if "(" in f}
    assert used <= {"SUMPRODUCT", "MAX", "EXP", "SUM", "MATCH"}, used


def test_verify_passes_on_the_generated_workbook(book_path, soffice):
    report = verify(book_path)
    assert report.ok and report.checked >= 110 and report.max_rel_diff < 1e-9


def edit(path, sheet, address, value, out):
    wb = openpyxl.load_workbook(path)
    wb[sheet][address] = value
    wb.save(out)
    return out


def test_verify_catches_a_broken_formula(book_path, soffice, tmp_path):
    broken = edit(book_path, "Sample 1", "L4", "=SUMPRODUCT(G4:I6,Weights!$B$6:$D$8)", tmp_path / "broken.xlsx")  # bias forgotten
    report = verify(broken)
    assert not report.ok
    assert [d.address for d in report.failures][:1] == ["'Sample 1'!L4"]


def test_verify_catches_a_formula_replaced_by_a_constant(book_path, soffice, tmp_path):
    wb = openpyxl.load_workbook(book_path, data_only=True)
    value = wb["Sample 1"]["L4"].value
    report = verify(edit(book_path, "Sample 1", "L4", value, tmp_path / "const.xlsx"))
    assert not report.ok and [d.address for d in report.not_formulas] == ["'Sample 1'!L4"]


def test_verify_accepts_an_edited_weight_saved_by_libreoffice(book_path, soffice, tmp_path, chapter):
    edited = edit(book_path, "Weights", "B6", 0.9, tmp_path / "edited.xlsx")  # conv2d/kernel[0, 0, 0, 0]
    saved = recalc.recalculate(edited, tmp_path / "saved")  # as if opened and saved in LibreOffice
    report = verify(saved)
    assert report.ok, report.failures[:3]
    # ... and the edit changed what the workbook computes
    values = recalc.read_values(saved)
    before = chapter.model.trace(chapter.x)[0].pre[0, 0, 0, 0]
    assert values["Sample 1"][(3, 11)] == pytest.approx(before + (0.9 - 0.6502779) * 0.125, rel=1e-12)


def test_committed_workbook_is_reproducible(tmp_path):
    from cnncalc.cli import main

    committed = REPO / "workbooks" / "cnn_simple_example.xlsx"
    assert main(["example", "-o", str(tmp_path / "again.xlsx")]) == 0
    assert (tmp_path / "again.xlsx").read_bytes() == committed.read_bytes(), "regenerate with: cnncalc example -o workbooks/cnn_simple_example.xlsx --force"
