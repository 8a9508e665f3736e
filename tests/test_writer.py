"""The writer's shortcut past XlsxWriter's formula preparation: every formula comes out exactly as XlsxWriter's own
preparation makes it (a newer function still gets its "_xlfn." prefix), and whole workbooks are the same bytes."""

from itertools import islice
import json
import sys
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from xlsxwriter.worksheet import Worksheet

from cnncalc.companion.examples import CATALOGUE, get_example
from cnncalc.engine import ops
from cnncalc.kerasfiles.loader import model_from_layer_list
from cnncalc.sheets import formulas, writer
from cnncalc.sheets.cells import Cell, WorkbookPlan, cells_block
from cnncalc.sheets.workbook import plan_workbook
from cnncalc.sheets.writer import PLAIN_FUNCTIONS, PlainFormulaWorksheet, plain, write_plan

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from digits import digit  # noqa: E402  (the benchmarks' synthetic 28×28 digit)

X = "'Sample 1'!B4"


def plan_formulas(plan, limit=None):
    """The formula text of every formula cell of a plan (at most `limit` a sheet)."""
    found = []
    for sheet in plan.sheets:
        found += islice((cell.formula for _, row in sheet.rows() for _, cell in row if cell.formula is not None), limit)
    return found


def cnncalc_formulas():
    """What cnncalc writes: every worked example's formulas, a deep conv model's, and every element-wise builder's."""
    found = []
    for name in CATALOGUE:
        ex = get_example(name)
        found += plan_formulas(plan_workbook(ex.model, ex.raw, ex.scale, ex.title, ex.labels, steps=False))
    spec = json.loads((REPO / "benchmarks" / "specs" / "deep_cifar.json").read_text())
    rgb = np.random.default_rng(0).integers(0, 256, size=(1, 32, 32, 3))
    found += plan_formulas(plan_workbook(model_from_layer_list(spec), rgb, "1/255", steps=False), limit=2000)
    found += ["=" + formulas.activation(name, X) for name in formulas.ELEMENTWISE]
    found += ["=" + formulas.relu(X, 0.3, 6.0, 0.5), "=" + formulas.batch_normalization(X, "Weights!$B$3", "Weights!$C$3", 1e-3, "Weights!$D$3", "Weights!$E$3"),
              "=" + formulas.rescale(X, 1 / 255, -1.0), "=" + formulas.log_softmax(X, "$C$20", "$C$21"), "=" + formulas.argmax("B4:B13"),
              "=" + formulas.softmax_exp(X, "$C$20"), "=" + formulas.gelu(X, approximate=True), f"={ops.SELU_SCALE!r}*{X}"]
    return sorted(set(found))


@pytest.fixture(scope="module")
def corpus():
    return cnncalc_formulas()


SHEETS = {PlainFormulaWorksheet: PlainFormulaWorksheet(), Worksheet: Worksheet()}


def prepared(sheet_class, formula, expand=False):
    return SHEETS[sheet_class]._prepare_formula(formula, expand)


def test_every_formula_cnncalc_writes_takes_the_shortcut_and_comes_out_as_xlsxwriter_makes_it(corpus):
    assert len(corpus) > 3000
    not_plain = [f for f in corpus if not plain(f)]
    assert not not_plain, f"formulas that would take XlsxWriter's slow path: {not_plain[:5]}"
    for f in corpus:
        assert prepared(PlainFormulaWorksheet, f) == prepared(Worksheet, f) == f[1:]
        assert prepared(PlainFormulaWorksheet, f, True) == prepared(Worksheet, f, True)


@pytest.mark.parametrize("formula", [
    "=SWITCH(A1,1,2)",                  # a newer function: "_xlfn.SWITCH("
    "=SUM(A1:A3)+XLOOKUP(A1,B1:B3,C1:C3)",
    "=X.SUM(A1)", "=SUMX(A1)", "=XSINGLE(A1)",  # not a plain function, whatever it ends with
    "=_xlfn.SWITCH(A1,1,2)", "{=SUM(A1:A3)}", "=SUM(A1:A3)}", '=IF(A1>0,"SORT(",1)', "=A1#", "=@A1",
    "SUM(A1)", "=éSORT(A1)", "=SUM(A1)\n+SORT(A2)",
])
def test_anything_else_takes_xlsxwriters_own_path(formula):
    assert not plain(formula)
    for expand in (False, True):
        assert prepared(PlainFormulaWorksheet, formula, expand) == prepared(Worksheet, formula, expand)


TOKENS = sorted(PLAIN_FUNCTIONS) + ["SORT", "SWITCH", "SINGLE", "INGLE", "XLOOKUP", "UNIQUE", "ERF.PRECISE", "STDEV.S", "_xlfn.",
                                    "(", ")", ",", ".", "+", "-", "*", "/", "^", ">", "=", "$", ":", "!", "'", '"', " ", "{", "}",
                                    "#", "@", "é", "A1", "B4:C5", "Weights", "X", "1e-05", "\n"]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=12))
def test_any_text_comes_out_as_xlsxwriter_makes_it(tokens):
    formula = "=" + "".join(tokens)
    for expand in (False, True):
        assert prepared(PlainFormulaWorksheet, formula, expand) == prepared(Worksheet, formula, expand)


def sheet_xml(path, n=1):
    with zipfile.ZipFile(path) as z:
        return z.read(f"xl/worksheets/sheet{n}.xml").decode()


def one_sheet_plan(cells):
    plan = WorkbookPlan()
    plan.add_sheet("S").add(cells_block(cells))
    return plan


def test_a_newer_function_in_a_plan_still_gets_its_prefix(tmp_path):
    plan = one_sheet_plan({(0, 0): Cell(1.0), (1, 0): Cell(2.0), (2, 0): Cell(3.0, "=SUM(A1:A2)"),
                           (3, 0): Cell(0.0, "=SWITCH(A1,1,2)"), (4, 0): Cell(0.0, "=UNIQUE(A1:A2)")})
    xml = sheet_xml(write_plan(plan, tmp_path / "b.xlsx", quiet=True))
    assert "<f>SUM(A1:A2)</f>" in xml and ">_xlfn.SWITCH(A1,1,2)</f>" in xml and ">_xlfn.UNIQUE(A1:A2)</f>" in xml


def test_an_xlsxwriter_that_prefixes_a_plain_function_is_followed(tmp_path, monkeypatch):
    """If XlsxWriter ever prepared TANH (or anything cnncalc calls) differently, the shortcut must step aside."""
    real = Worksheet._prepare_formula
    monkeypatch.setattr(Worksheet, "_prepare_formula", lambda self, f, expand=False: real(self, f, expand).replace("TANH(", "_xlfn.TANH("))
    plan = one_sheet_plan({(0, 0): Cell(1.0), (1, 0): Cell(0.76, "=TANH(A1)"), (2, 0): Cell(2.0, "=SUM(A1,A1)")})
    xml = sheet_xml(write_plan(plan, tmp_path / "b.xlsx", quiet=True))
    assert "<f>_xlfn.TANH(A1)</f>" in xml and "<f>SUM(A1,A1)</f>" in xml


def test_the_shortcut_skips_xlsxwriters_preparation(tmp_path, monkeypatch):
    """Only the probe goes through XlsxWriter's preparation (twice a sheet); cnncalc's own formulas do not."""
    seen = []
    real = Worksheet._prepare_formula
    monkeypatch.setattr(Worksheet, "_prepare_formula", lambda self, f, expand=False: seen.append(f) or real(self, f, expand))
    ex = get_example("cnn_simple_example")
    write_plan(plan_workbook(ex.model, ex.raw, ex.scale, ex.title, ex.labels), tmp_path / "b.xlsx", quiet=True)
    assert seen and set(seen) == {writer._PROBE}


def plans():
    for name in ("cnn_simple_example", "rgb", "lenet_shapes", "two_filters"):
        ex = get_example(name)
        yield name, plan_workbook(ex.model, ex.raw, ex.scale, ex.title, ex.labels)
    spec = json.loads((REPO / "benchmarks" / "specs" / "lenet_small.json").read_text())
    yield "lenet_small", plan_workbook(model_from_layer_list(spec), digit(7)[None, :, :, None], "1/255")


@pytest.mark.parametrize("name, plan", list(plans()), ids=lambda v: v if isinstance(v, str) else "")
def test_workbooks_are_the_same_bytes_as_through_xlsxwriters_own_worksheet(name, plan, tmp_path, monkeypatch):
    fast = write_plan(plan, tmp_path / "fast.xlsx", quiet=True).read_bytes()
    monkeypatch.setattr(writer, "PlainFormulaWorksheet", Worksheet)
    assert write_plan(plan, tmp_path / "public.xlsx", quiet=True).read_bytes() == fast


# ---------------------------------------------------------------- the Steps sheet: made from numbers the plan already has


def test_a_long_sum_is_written_out_from_its_first_terms_only():
    """A Dense column of thousands shows MAX_TERMS terms; only the cells shown are looked up (that keeps Steps cheap)."""
    from cnncalc.sheets.steps import MAX_TERMS, expand

    asked = []

    def value(sheet, rc):
        asked.append((sheet, rc))
        return 1.0 if sheet == "Weights" else 2.0

    text = expand("=SUMPRODUCT(B4:B103,Weights!$C$2:$C$101)+Weights!$D$1", "Sample 1", value)
    assert text.startswith("2×1 + 2×1") and text.endswith(f"… ({100 - MAX_TERMS} more terms) + 1") and text.count("×") == MAX_TERMS
    assert len(asked) == 2 * MAX_TERMS + 1
    assert expand("=AVERAGE(B4:B103)", "S", value).endswith(f"… ({100 - MAX_TERMS} more terms)) / 100")
    assert expand("=MATCH(MAX(B4:B7),B4:B7,0) - 1", "S", value) == "position of the largest of (2, 2, 2, 2), counting from 0"


def test_the_steps_sheet_is_what_the_sheets_cells_say():
    """plan_steps reads the panels' numbers and looks weights up on demand: the same text as from every cell made whole."""
    from cnncalc.companion.explain import num
    from cnncalc.sheets.cells import a1
    from cnncalc.sheets.steps import expand, value_lookup

    spec = json.loads((REPO / "benchmarks" / "specs" / "lenet_small.json").read_text())
    plan = plan_workbook(model_from_layer_list(spec), digit(7)[None, :, :, None], "1/255")
    samples = [s for s in plan.sheets if s.name.startswith("Sample")]
    values = {s.name: {rc: c.value for rc, c in s.cells().items()} for s in samples}
    weights = plan.sheet("Weights").value_grid()
    lookup = value_lookup(plan.sheet("Weights"))
    rows, cols = weights.shape
    for r in range(0, rows, 7):
        for c in range(cols):
            assert lookup((r, c)) == weights[r, c] or np.isnan(weights[r, c]) and np.isnan(lookup((r, c)))

    def value(sheet, rc):
        return values[sheet][rc] if sheet in values else weights.item(rc)

    expected = [(s.name, a1(r, c), p.title, f"{expand(p.formula(idx), s.name, value)} = {num(values[s.name][(r, c)])}", values[s.name][(r, c)])
                for s in samples for p in s.panels if p.formula is not None for idx in p.placement.indices()
                if p.formula(idx) is not None for r, c in [p.placement.pos(idx)]]
    written = [tuple(cell.value for _, cell in row) for r, row in plan.sheet("Steps").rows() if r >= 3]
    assert len(written) == len(expected) > 16_000 and written == expected
