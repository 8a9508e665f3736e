"""The formula evaluator: every formula cell of real workbooks, evaluated on the engine's values of the cells
it reads, gives back the engine's value; Excel's precedence; errors and formulas outside the subset."""

import math

import pytest

from cnncalc.classroom import evaluate
from cnncalc.kerasfiles.loader import model_from_layer_list
from cnncalc.sheets.workbook import plan_workbook

import numpy as np

ZOO = {"input_shape": [5, 5, 2], "seed": 3, "layers": [
    {"Conv2D": {"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "relu"}},
    {"BatchNormalization": {}},
    {"AveragePooling2D": {"pool_size": 2, "strides": 1}},
    {"Flatten": {}},
    {"Dense": {"units": 4, "activation": "tanh"}},
    {"Dense": {"units": 4, "activation": "gelu"}},
    {"Dense": {"units": 4, "activation": "elu"}},
    {"Dense": {"units": 3, "activation": "sigmoid"}},
    {"Dense": {"units": 3}},
    {"Activation": {"activation": "log_softmax"}},
]}


ONE_UNIT = {"input_shape": [1], "seed": 1, "layers": [{"Dense": {"units": 1, "activation": "relu"}}, {"Dense": {"units": 1, "activation": "sigmoid"}}]}


def formula_cells(plan):
    for sheet in plan.sheets:
        for (r, c), cell in sheet.cells().items():
            if cell.formula:
                yield sheet.name, (r, c), cell


def engine_lookup(plan):
    values = {(s.name, r, c): cell.value for s in plan.sheets for (r, c), cell in s.cells().items()}
    return lambda sheet, r, c: values.get((sheet, r, c))


def chapter_plan(chapter):
    return plan_workbook(chapter.model, chapter.raw, chapter.scale, chapter.title, chapter.labels)


def zoo_plan():
    model = model_from_layer_list(ZOO)
    raw = np.random.default_rng(0).integers(-4, 5, size=(2, 5, 5, 2))
    return plan_workbook(model, raw, "1/4")


def one_unit_plan():
    """One input, one unit, one output: SUMPRODUCT and MATCH over single cells, not ranges."""
    return plan_workbook(model_from_layer_list(ONE_UNIT), np.array([[3.0], [-2.0]]))


@pytest.mark.parametrize("make, count", [(chapter_plan, 100), (lambda chapter: zoo_plan(), 100), (lambda chapter: one_unit_plan(), 10)],
                         ids=["chapter", "strided-padded-bn-activations", "one-unit"])
def test_every_formula_cell_evaluates_to_the_engines_value(make, count, chapter):
    plan = make(chapter)
    lookup = engine_lookup(plan)
    checked = 0
    for sheet, pos, cell in formula_cells(plan):
        got = evaluate.evaluate(evaluate.parse(cell.formula, sheet), lookup)
        assert got == pytest.approx(float(cell.value), rel=1e-12, abs=1e-14), f"{sheet}!{pos} {cell.formula}: mine {got}, engine {cell.value}"
        checked += 1
    assert checked > count


@pytest.mark.parametrize("text, value", [
    ("-2^2", 4.0), ("2^3^2", 64.0), ("1-2-3", -4.0), ("2+3*4", 14.0), ("(2+3)*4", 20.0), ("8/4/2", 1.0),
    ("47%", 0.47), ("-47%", -0.47), ("1/(1+EXP(-0))", 0.5), ("IF(1>2,3,4)", 4.0), ("IF(2>=2,3)", 3.0),
    ("MAX(0,-1.5)", 0.0), ("MIN(3,1,2)", 1.0), ("ABS(-2)+SQRT(9)", 5.0), ("LN(EXP(1.5))", 1.5), ("TANH(0)", 0.0),
    ("ERF(0)", 0.0), ("1<>2", 1.0), ("1E-3*2", 0.002), (".5+.5", 1.0), ("=0.125*0.65+0.25*0.37", 0.125 * 0.65 + 0.25 * 0.37),
])
def test_arithmetic_follows_excel(text, value):
    assert evaluate.evaluate(evaluate.parse(text, "S"), lambda *a: None) == pytest.approx(value, rel=1e-15)


def test_references_ranges_sheets_and_empty_cells():
    cells = {("Sample 1", 0, 0): 2.0, ("Sample 1", 0, 1): 3.0, ("It's", 1, 1): 10.0, ("Weights", 5, 1): 0.5, ("Weights", 6, 1): 0.25}
    look = lambda s, r, c: cells.get((s, r, c))  # noqa: E731
    tree = evaluate.parse("=SUMPRODUCT(A1:B1,A1:B1)+'It''s'!$B$2-Weights!B6", "Sample 1")
    assert evaluate.evaluate(tree, look) == 4 + 9 + 10 - 0.5
    assert evaluate.references(tree) == [("Sample 1", 0, 0), ("Sample 1", 0, 1), ("Sample 1", 0, 0), ("Sample 1", 0, 1), ("It's", 1, 1), ("Weights", 5, 1)]
    assert evaluate.evaluate(evaluate.parse("C1+1", "Sample 1"), look) == 1.0  # an empty cell reads as 0
    assert evaluate.evaluate(evaluate.parse("AVERAGE(A1:C1)", "Sample 1"), look) == 2.5  # ... and is skipped by AVERAGE
    assert evaluate.evaluate(evaluate.parse("MATCH(MAX(A1:B1),A1:B1,0)-1", "Sample 1"), look) == 1.0
    assert evaluate.evaluate(evaluate.parse("SUMPRODUCT(Weights!B6:B7,Weights!B6:B7)", "x"), look) == pytest.approx(0.3125)
    assert evaluate.evaluate(evaluate.parse("MATCH(MAX(B1),B1,0)-1", "Sample 1"), look) == 0.0  # one cell, as a one-unit layer writes it
    words = lambda s, r, c: "word" if (r, c) == (0, 0) else 2.0  # noqa: E731
    assert evaluate.evaluate(evaluate.parse("SUM(A1,B1)+MAX(A1)", "S"), words) == 2.0  # as Excel: text in a reference is skipped


@pytest.mark.parametrize("text", ["=ROUND(1.5,0)", "=1+", "=A1 B1", "=SUM(A1", "", "=\"text\"", "=A1:B2!"])
def test_outside_the_subset_is_unsupported(text):
    with pytest.raises(evaluate.Unsupported):
        evaluate.evaluate(evaluate.parse(text, "S"), lambda *a: 1.0)


@pytest.mark.parametrize("text", ["=1/0", "=LN(0)", "=SQRT(-1)", "=A1*2", "=AVERAGE(B1:B2)", "=MATCH(5,A1:A2,0)", "=A1:A2"])
def test_spreadsheet_errors_are_eval_errors(text):
    look = lambda s, r, c: "word" if (r, c) == (0, 0) else None  # noqa: E731
    with pytest.raises(evaluate.EvalError):
        evaluate.evaluate(evaluate.parse(text, "S"), look)


def test_an_unknown_value_stops_the_evaluation():
    def look(s, r, c):
        raise evaluate.Unknown((s, r, c))

    with pytest.raises(evaluate.Unknown):
        evaluate.evaluate(evaluate.parse("=MAX(0,A1)", "S"), look)
    assert math.isclose(evaluate.evaluate(evaluate.parse("=IF(1>0,2,A1)", "S"), look), 2.0)  # IF computes one branch only
