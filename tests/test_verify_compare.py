"""verify's comparison and the Steps sheet without re-making text: the engine's values of a prediction's formula cells
come from its panels (no formula text made), the same cells and numbers as walking every cell; a cell LibreOffice
got wrong, or a formula turned into a constant, is still found and named."""

import json
import math
import sys

import numpy as np
import pytest

from cnncalc.companion.examples import get_example
from cnncalc.kerasfiles.loader import model_from_layer_list
from cnncalc.recalc.verify import Report, compare, formula_values
from cnncalc.sheets.cells import Placement, a1
from cnncalc.sheets.steps import Expander, expand
from cnncalc.sheets.workbook import plan_workbook

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from digits import colour, digit  # noqa: E402  (the benchmarks' synthetic pictures)


def plans():
    for name in ("cnn_simple_example", "padding_same", "rgb", "lenet_shapes", "flatten", "pool_avg"):
        ex = get_example(name)
        yield name, plan_workbook(ex.model, ex.raw, ex.scale, ex.title, ex.labels, steps=False)
    spec = json.loads((REPO / "benchmarks" / "specs" / "lenet_small.json").read_text())  # 'same' padding, softmax, argmax
    yield "lenet_small", plan_workbook(model_from_layer_list(spec), digit(7)[None, :, :, None], "1/255", steps=False)
    wide = {"input_shape": [12, 12, 3], "layers": [{"Conv2D": {"filters": 20, "kernel_size": 3, "padding": "same"}},  # maps in rows of 8
                                                   {"Flatten": {}}, {"Dense": {"units": 4, "activation": "log_softmax"}}]}
    yield "wide", plan_workbook(model_from_layer_list(wide), colour(3)[None, :12, :12], "1/255", steps=False)
    flat = {"input_shape": [6, 6], "layers": [{"Reshape": {"target_shape": [6, 6, 1]}}, {"Conv2D": {"filters": 2, "kernel_size": 3}},
                                              {"Flatten": {}}, {"Dense": {"units": 3, "activation": "softmax"}}]}
    yield "2-d input", plan_workbook(model_from_layer_list(flat), np.arange(72.0).reshape(2, 6, 6) / 72, None, steps=False)
    layers = {"input_shape": [7, 7, 3], "layers": [  # a ZeroPadding2D layer (its border is given zeros), and the layers after it
        {"Rescaling": {"scale": 0.5, "offset": -0.1}}, {"ZeroPadding2D": {"padding": [[1, 0], [2, 1]]}},
        {"Conv2D": {"filters": 2, "kernel_size": [3, 2], "strides": [2, 1], "activation": "relu6"}},
        {"BatchNormalization": {}}, {"MaxPooling2D": {"pool_size": 2, "padding": "same"}},
        {"AveragePooling2D": {"pool_size": 2, "strides": 1, "padding": "same"}}, {"GlobalAveragePooling2D": {}},
        {"Dense": {"units": 3, "activation": "softmax"}}]}
    yield "zero padding layer", plan_workbook(model_from_layer_list(layers), colour(4)[None, :7, :7], "1/255", steps=False)


def walked(sheet):
    """Every formula cell made as the writer makes it: [(row, col, value)], row-major."""
    return [(r, c, float(cell.value)) for r, row in sheet.rows() for c, cell in row if cell.formula is not None]


@pytest.mark.parametrize("name, plan", list(plans()), ids=lambda v: v if isinstance(v, str) else "")
def test_the_panels_give_the_same_formula_cells_as_walking_every_cell(name, plan):
    samples = [sheet for sheet in plan.sheets if getattr(sheet, "panels", None)]
    assert samples and all(p.formula is None or p.constants is not None for s in samples for p in s.panels)  # the fast way is taken
    for sheet in plan.sheets:
        rows, cols, values = formula_values(sheet)
        assert list(zip(rows.tolist(), cols.tolist(), values.tolist())) == walked(sheet), sheet.name
    given = [p for s in samples for p in s.panels if p.formula is not None and p.constants is not False]
    for p in given:  # zero padding: given numbers where its formula is None, and only there
        assert all((p.formula(idx) is None) == bool(p.constants[idx]) for idx in p.placement.indices())


def test_a_sheet_whose_panels_do_not_know_their_constants_is_walked_cell_by_cell():
    ex = get_example("padding_same")
    plan = plan_workbook(ex.model, ex.raw, ex.scale, steps=False)
    sheet = plan.sheet("Sample 1")
    for p in sheet.panels:
        p.constants = None  # as a training sheet's panels are
    rows, cols, values = formula_values(sheet)
    assert list(zip(rows.tolist(), cols.tolist(), values.tolist())) == walked(sheet)


def engine_values(plan):
    """({sheet: {(row, col): value}}, {sheet: {(row, col): formula}}) as a faithful recalculation would give them."""
    values, formulas = {}, {}
    for sheet in plan.sheets:
        values[sheet.name] = {(r, c): cell.value for r, row in sheet.rows() for c, cell in row}
        formulas[sheet.name] = {(r, c): cell.formula for r, row in sheet.rows() for c, cell in row if cell.formula is not None}
    return values, formulas


def test_compare_names_the_changed_cell_and_the_formula_made_a_constant():
    spec = json.loads((REPO / "benchmarks" / "specs" / "lenet_small.json").read_text())
    plan = plan_workbook(model_from_layer_list(spec), digit(7)[None, :, :, None], "1/255", steps=False)
    sheets = [s for s in plan.sheets if s.name != "Weights"]
    values, formulas = engine_values(plan)
    report = compare(Report("x"), sheets, values, formulas)
    assert report.checked == sum(len(walked(s)) for s in sheets) > 16_000 and not report.failures and not report.not_formulas
    assert report.max_abs_diff == 0 and len(report.worst) == 5

    sample = plan.sheet("Sample 1")
    (r, c, e), (r2, c2, _), (r3, c3, _) = [walked(sample)[k] for k in (5000, 9000, 12000)]
    values["Sample 1"][(r, c)] = e * (1 + 1e-6) + 1e-6  # a wrong number
    values["Sample 1"][(r2, c2)] = "#VALUE!"  # an error
    del formulas["Sample 1"][(r3, c3)]  # a formula replaced by its value
    report = compare(Report("x"), sheets, values, formulas)
    assert [d.address for d in report.failures] == [f"'Sample 1'!{a1(r, c)}", f"'Sample 1'!{a1(r2, c2)}"]
    assert report.failures[0].expected == e and math.isinf(report.failures[1].abs_diff)
    assert [d.address for d in report.not_formulas] == [f"'Sample 1'!{a1(r3, c3)}"] and report.not_formulas[0].formula is None
    assert report.worst[0].address == f"'Sample 1'!{a1(r2, c2)}" and report.worst[1].address == f"'Sample 1'!{a1(r, c)}"
    assert report.worst[0].formula == formulas["Sample 1"][(r2, c2)]
    assert not report.ok


@pytest.mark.parametrize("shape, layout, across", [((5, 4, 3), "grid", None), ((5, 4, 11), "grid", 4), ((3, 2), "grid", 8),
                                                    ((3, 2, 2, 3), "grid", 4), ((7,), "column", None), ((7,), "row", None),
                                                    ((3, 5), "matrix", None), ((3, 2, 4, 5), "kernel", None)])
def test_positions_are_where_pos_puts_each_element(shape, layout, across):
    p = Placement("S", 3, 2, shape, layout, across)
    rows, cols = p.positions()
    assert rows.shape == cols.shape == shape
    assert all((rows[idx], cols[idx]) == p.pos(idx) for idx in p.indices())


def test_one_expander_for_many_formulas_writes_what_expand_writes_for_each():
    """The Steps sheet's Expander remembers numbers, ranges and rewritten formulas: never a stale one."""

    def value(sheet, rc):
        return (rc[0] - 2 * rc[1]) / 4 if sheet == "Sample 1" else (-1) ** rc[1] * rc[0] / 8

    formulas = ["=SUMPRODUCT(B4:C5,Weights!$B$6:$C$7)+SUMPRODUCT(E4:F5,Weights!$E$6:$F$7)+Weights!$B$12",
                "=SUMPRODUCT(C4:D5,Weights!$B$6:$C$7)+SUMPRODUCT(F4:G5,Weights!$E$6:$F$7)+Weights!$B$12",
                "=MAX(0,H4)", "=MAX(0,H5)", "=MAX(B4:C5)", "=EXP(B4-MAX(B4:B9))", "=B4/SUM(B4:B9)", "=B4-C4-LN(SUM(B4:B9))",
                "=MATCH(MAX(B4:B9),B4:B9,0) - 1", "=AVERAGE(B4:C5)", "=IF(B4>0,B4,0.01*B4)"]
    shared = Expander(value)
    for f in formulas * 2:
        assert shared(f, "Sample 1") == expand(f, "Sample 1", value)
    assert shared(formulas[0], "Sample 1") == "0.25×(-0.625) + (-0.25)×0.625 + 0.5×(-0.75) + 0×0.75 + " \
                                              "(-1.25)×0.625 + (-1.75)×(-0.625) + (-1)×0.75 + (-1.5)×(-0.75) + (-1.375)"
    assert shared("=B4/SUM(B4:B9)", "Sample 1") == "0.25 / (0.25 + 0.5 + 0.75 + 1 + 1.25 + 1.5)"
    assert shared("=IF(B4>0,B4,0.01*B4)", "Sample 1") == "if(0.25>0, 0.25, 0.01×0.25)"


def test_a_tensor_read_from_calamines_rows_in_one_conversion_only_when_every_cell_is_a_number():
    """RowCells.numbers: the rectangle's numbers at the placement's cells; None (so the cell is named, row by row)
    for text, a bool, an empty cell or an int too big for a float."""
    from cnncalc.recalc.libreoffice import RowCells

    p = Placement("Weights", 3, 1, (2, 3), "matrix")
    rows, cols = p.positions()
    good = [["title"], [], ["input 0", 0.5, 1, -2.0, "x"], ["input 1", 3.0, 4.5, 5.0]]  # from row 1: rows 3 and 4 hold it
    assert RowCells(good, 1, 0).numbers(rows, cols).tolist() == [[0.5, 1.0, -2.0], [3.0, 4.5, 5.0]]
    for bad in ("", "1.5", True, 10 ** 400):
        cells = [row[:] for row in good]
        cells[3][2] = bad
        assert RowCells(cells, 1, 0).numbers(rows, cols) is None, bad
    assert RowCells(good[:3], 1, 0).numbers(rows, cols) is None  # a row missing
