"""Excel's limits are checked before any file is written: a model past one is refused with the limit named,
and nothing (no workbook, no temporary file) is left in the folder."""

import numpy as np
import pytest

from cnncalc.sheets import limits
from cnncalc.sheets.cells import Cell, WorkbookPlan, cells_block
from cnncalc.cli import main
from cnncalc.errors import CnncalcError
from cnncalc.kerasfiles.loader import model_from_layer_list, save_keras
from cnncalc.sheets.workbook import plan_workbook
from cnncalc.sheets.writer import write_plan


@pytest.mark.parametrize("formula, expected", [
    ("=SUMPRODUCT(A1:B2,C1:D2)+MAX(0,E1)", [("SUMPRODUCT", 2), ("MAX", 2)]),
    ("MATCH(MAX(B4:B13),B4:B13,0)-1", [("MAX", 1), ("MATCH", 3)]),
    ("=PI()*2", [("PI", 0)]),
    ("=SUM((A1,B1),C1)", [("SUM", 2)]),  # the inner parentheses only group: their comma is not SUM's
    ("='a, (b'!A1+MAX('x)''y'!B2,\"s,(\",1)", [("MAX", 3)]),  # commas and parentheses inside quotes do not count
    ("=IF(A1>0,MIN(A1,6),0.2*A1)", [("MIN", 2), ("IF", 3)]),
])
def test_function_arguments_are_counted_like_excel(formula, expected):
    assert limits.function_arguments(formula) == expected


def test_corner_indices():
    assert limits.corner_indices((3, 5)) == [(0, 0), (0, 4), (2, 0), (2, 4)]
    assert limits.corner_indices((1,)) == [(0,)]


def test_a_long_formula_and_too_many_arguments_are_refused():
    limits.check_formula("=" + "+".join(["A1"] * 2730), "x")  # 8,190 characters with the "=": fits
    with pytest.raises(CnncalcError, match=r"would be 8,193 characters. Expected at most 8,192 \(Excel's limit"):
        limits.check_formula("+".join(["A1"] * 2731), "x")
    limits.check_formula("MAX(" + ",".join(["A1"] * 255) + ")", "x")
    with pytest.raises(CnncalcError, match=r"calls MAX with 256 arguments. Expected at most 255"):
        limits.check_formula("MAX(" + ",".join(["A1"] * 256) + ")", "x")


def test_check_plan_finds_a_bad_formula_in_a_hand_made_sheet(tmp_path):
    plan = WorkbookPlan()
    plan.add_sheet("Summary").add(cells_block({(0, 0): Cell("t"), (3, 2): Cell(1.0, "=MAX(" + ",".join(["B1"] * 300) + ")")}))
    with pytest.raises(CnncalcError, match=r"Summary!C4 calls MAX with 300 arguments"):
        limits.check_plan(plan)
    with pytest.raises(CnncalcError):
        write_plan(plan, tmp_path / "book.xlsx")
    assert list(tmp_path.iterdir()) == []


def test_a_text_longer_than_a_cell_holds_is_refused():
    plan = WorkbookPlan()
    plan.add_sheet("Read me").add(cells_block({(0, 0): Cell("x" * 32_767), (1, 0): Cell("y" * 32_768)}))
    with pytest.raises(CnncalcError, match=r"text at 'Read me'!A2 would be 32,768 characters. Expected at most 32,767"):
        limits.check_plan(plan)


def model(input_shape, *layers, seed=0):
    return model_from_layer_list({"input_shape": list(input_shape), "layers": list(layers)}, seed)


# (what breaks, the model, the words the error must have)
REFUSED = {
    "columns of a sample sheet (one map wider than a sheet)": (
        model((2, 16_390, 1), {"GlobalMaxPooling2D": {}}),
        ["'Sample 1'", "columns for panel 'Input (raw)'", "16,391 columns", "Expected at most 16,384 columns (Excel's limit)"]),
    "rows of a sample sheet (one map taller than a sheet)": (
        model((1_048_600, 1, 1), {"GlobalMaxPooling2D": {}}),
        ["'Sample 1'", "rows for panel 'Input (raw)'", "1,048,603 rows", "Expected at most 1,048,576 rows (Excel's limit)"]),
    "columns of the Weights sheet": (
        model((2,), {"Dense": {"units": 16_400}}),
        ["'Weights'", "dense/kernel", "16,401 columns", "Expected at most 16,384 columns (Excel's limit)"]),
    "rows of the Weights sheet": (
        model((1025, 1025, 1), {"Flatten": {}}, {"Dense": {"units": 1}}),
        ["'Weights'", "dense/kernel", "rows", "Expected at most 1,048,576 rows (Excel's limit)"]),
    "formula length (many input channels)": (
        model((5, 5, 300), {"Conv2D": {"filters": 1, "kernel_size": 3}}),
        ["formula of conv2d (Conv2D)", "'Sample 1'!", "characters. Expected at most 8,192 (Excel's limit on a formula)"]),
    "formula length (a dilated kernel)": (
        model((9, 9, 50), {"Conv2D": {"filters": 1, "kernel_size": 3, "dilation_rate": 2}}),  # 9 products a channel
        ["formula of conv2d (Conv2D)", "characters. Expected at most 8,192"]),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_model_past_a_limit_is_refused_before_any_file_is_written(case, tmp_path):
    m, words = REFUSED[case]
    raw = np.ones((1, *m.input_shape))
    with pytest.raises(CnncalcError) as e:
        write_plan(plan_workbook(m, raw), tmp_path / "book.xlsx")
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert list(tmp_path.iterdir()) == []


def test_the_command_line_refuses_with_one_line_and_writes_nothing(tmp_path, capsys):
    save_keras(REFUSED["formula length (many input channels)"][0], tmp_path / "wide.keras")
    np.save(tmp_path / "x.npy", np.ones((1, 5, 5, 300)))
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["build", str(tmp_path / "wide.keras"), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "book.xlsx")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("cnncalc: error: ") and "8,192" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_just_under_the_limits_is_written(tmp_path):
    m = model((9, 9, 40), {"Conv2D": {"filters": 1, "kernel_size": 3, "dilation_rate": 2}})  # dilated, ~6,700 characters
    write_plan(plan_workbook(m, np.ones((1, *m.input_shape))), tmp_path / "book.xlsx")
    assert (tmp_path / "book.xlsx").exists()
