"""Scale: the fast paths of the sheet plan against their naive twins, the one-pass workbook reader against
openpyxl, and the chapter's MNIST CNN (Conv2D(10) → MaxPool → Dense(1000) → Dense(10)) exported, recalculated
by LibreOffice and compared with Keras."""

import json
import sys
import zipfile

import numpy as np
import openpyxl
import pytest

from cnncalc.recalc import libreoffice as recalc
from cnncalc.sheets.cells import Block, Cell, Placement, SheetPlan, cells_block
from cnncalc.errors import CnncalcError
from cnncalc.companion.examples import CATALOGUE, get_example
from cnncalc.kerasfiles.loader import model_from_layer_list, save_keras
from cnncalc.sheets.workbook import plan_workbook
from cnncalc.sheets.writer import write_plan

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from digits import digit  # noqa: E402  (the benchmarks' synthetic 28×28 digit)

SPECS = REPO / "benchmarks" / "specs"


def naive_rows(sheet):
    """SheetPlan.rows() as it was first written: every row from every block, cell by cell, then sorted."""
    blocks = sorted(sheet.blocks, key=lambda b: b.top)
    active, nxt = [], 0
    for r in range(sheet.extent[0]):
        while nxt < len(blocks) and blocks[nxt].top <= r:
            active.append(blocks[nxt])
            nxt += 1
        active = [b for b in active if b.bottom > r]
        row = [pair for b in active for pair in b.row_naive(r - b.top)]
        if row:
            row.sort(key=lambda pair: pair[0])
            yield r, row


def plans():
    for name in CATALOGUE:
        ex = get_example(name)
        yield name, plan_workbook(ex.model, ex.raw, ex.scale, ex.title, ex.labels)
    spec = json.loads((SPECS / "lenet_small.json").read_text())
    yield "lenet_small", plan_workbook(model_from_layer_list(spec), digit(7)[None, :, :, None], "1/255")


@pytest.mark.parametrize("name, plan", list(plans()), ids=lambda v: v if isinstance(v, str) else "")
def test_streamed_rows_are_the_same_as_the_naive_ones(name, plan):
    for sheet in plan.sheets:
        assert list(sheet.rows()) == list(naive_rows(sheet)), sheet.name


@pytest.mark.parametrize("shape, layout", [((4, 5, 3), "grid"), ((7,), "column"), ((6,), "row"), ((3, 4), "matrix"),
                                           ((3, 2, 4, 3), "kernel"), ((1, 1, 1), "grid"), ((2, 2, 1, 1), "kernel")])
def test_row_indices_agree_with_index_at(shape, layout):
    p = Placement("S", 5, 2, shape, layout)
    h, w = p.extent
    for r in range(h):
        naive = [(p.left + c, p.index_at(p.top + r, p.left + c)) for c in range(w)]
        assert p.row_indices(r) == [(c, idx) for c, idx in naive if idx is not None]
    b = p.block(lambda idx: Cell(float(sum(idx)), style="weight"))
    assert [b.row(r) for r in range(h)] == [b.row_naive(r) for r in range(h)]


@pytest.mark.parametrize("shape, layout", [((4, 5, 3), "grid"), ((7,), "column"), ((6,), "row"), ((3, 4), "matrix"),
                                           ((3, 2, 4, 3), "kernel"), ((1, 1, 1), "grid"), ((2, 2, 1, 1), "kernel")])
def test_constant_blocks_slice_the_same_cells_as_element_by_element(shape, layout):
    values = np.random.default_rng(0).normal(size=shape)
    p = Placement("S", 5, 2, shape, layout)
    fast, naive = p.constant_block(values, "weight"), p.block(lambda idx: Cell(float(values[idx]), style="weight"))
    h, _ = p.extent
    assert [fast.row(r) for r in range(h)] == [naive.row_naive(r) for r in range(h)] == [fast.row_naive(r) for r in range(h)]


def test_a_wrapped_cell_function_is_honoured():
    """practice.py blanks answer cells by wrapping block.cell: the fast row must then step aside."""
    p = Placement("S", 0, 0, (2, 3), "matrix")
    b = p.block(lambda idx: Cell(1.0))
    original = b.cell
    b.cell = lambda r, c: Cell(None, style="answer") if (r, c) == (1, 2) else original(r, c)
    assert b.row(1)[-1] == (2, Cell(None, style="answer"))
    assert b.row(0) == [(0, Cell(1.0)), (1, Cell(1.0)), (2, Cell(1.0))]


def test_hand_placed_cells_and_overlapping_blocks_stream_in_order():
    s = SheetPlan("S")
    s.add(cells_block({(0, 4): Cell("b"), (0, 1): Cell("a"), (2, 3): Cell("c")}))
    s.add(Block(1, 0, 3, 5, lambda r, c: Cell(r * 10 + c) if c % 2 else None))  # overlaps the first block's rectangle
    assert list(s.rows()) == list(naive_rows(s))
    assert [c for c, _ in dict(s.rows())[2]] == [1, 3, 3]
    below = SheetPlan("T")  # nothing on the first rows
    below.add(cells_block({(4, 2): Cell("x")}))
    assert list(below.rows()) == [(4, [(2, Cell("x"))])]


def test_value_grid_holds_the_numbers():
    s = SheetPlan("S")
    s.add(cells_block({(0, 0): Cell("label"), (1, 1): Cell(2.5), (2, 0): Cell(3), (2, 1): Cell(True)}))
    grid = s.value_grid()
    assert grid.shape == (3, 2) and grid[1, 1] == 2.5 and grid[2, 0] == 3
    assert np.isnan(grid[0, 0]) and np.isnan(grid[2, 1]) and np.isnan(grid[0, 1])


# ---------------------------------------------------------------- the one-pass reader against openpyxl


def same_as_openpyxl(path):
    values, formulas = recalc.read_cells(path)
    assert values == recalc.read_values(path)
    assert formulas == recalc.read_formulas(path)
    for sheet, cells in values.items():  # ints stay ints, floats floats, as openpyxl reads them
        expected = recalc.read_values(path, [sheet])[sheet]
        assert {k: type(v) for k, v in cells.items()} == {k: type(v) for k, v in expected.items()}
    return values, formulas


def test_read_cells_reads_an_xlsxwriter_file_as_openpyxl_does(tmp_path):
    ex = get_example("cnn_simple_example")
    path = write_plan(plan_workbook(ex.model, ex.raw, ex.scale, ex.title, ex.labels), tmp_path / "book.xlsx")
    values, formulas = same_as_openpyxl(path)
    assert formulas["Sample 1"][(3, 11)].startswith("=SUMPRODUCT(")


def test_read_cells_reads_an_openpyxl_file_with_every_kind_of_cell(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Bob's sheet"
    ws["A1"], ws["B1"], ws["C1"], ws["D1"] = "text & <tags>", 3, 2.5, True
    ws["A2"], ws["B2"], ws["C2"] = "=SUM(B1:C1)", '=IF(B1>0,"yes","no")', -1e-300
    ws["E5"] = 12345678901234
    wb.create_sheet("Other")["B3"] = "='Bob''s sheet'!B1*2"
    wb.save(tmp_path / "kinds.xlsx")
    values, formulas = same_as_openpyxl(tmp_path / "kinds.xlsx")
    assert values["Bob's sheet"][(0, 3)] is True and formulas["Other"][(2, 1)] == "='Bob''s sheet'!B1*2"


SHEET = """<?xml version="1.0" encoding="UTF-8"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>
<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c><c t="inlineStr"><is><t>in</t><r><t>line</t></r></is></c></row>
<row r="2"><c r="A2"><f t="shared" ref="A2:A4" si="0">B2*2</f><v>4</v></c><c r="B2"><v>2</v></c><c r="C2" t="b"><v>0</v></c><c r="D2" t="e"><v>#DIV/0!</v></c></row>
<row r="3"><c r="A3"><f t="shared" si="0"/><v>6</v></c><c r="B3"><v>3</v></c><c r="C3" t="str"><f>"a"&amp;"b"</f><v>ab</v></c></row>
<row><c r="A4"><f t="shared" si="0"/><v>8</v></c><c r="B4"><v>4.0E+00</v></c></row>
</sheetData></worksheet>"""
STRINGS = """<?xml version="1.0" encoding="UTF-8"?>
<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>plain</t></si>
<si><r><t>rich </t></r><r><t>text</t></r><rPh sb="0" eb="1"><t>phonetic</t></rPh></si></sst>"""


def hand_made_xlsx(path, sheet=SHEET):
    """A minimal workbook with what neither XlsxWriter nor LibreOffice writes: shared formulas, rows without addresses."""
    ns = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"'
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                   '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                   '<Default Extension="xml" ContentType="application/xml"/>'
                   '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
                   '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
                   '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
                   '</Types>')
        z.writestr("_rels/.rels", f'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                   f'<Relationship Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
        z.writestr("xl/workbook.xml", f'<?xml version="1.0"?><workbook {ns}><sheets><sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>')
        z.writestr("xl/_rels/workbook.xml.rels", f'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                   f'<Relationship Id="rId1" Type="{rel}/worksheet" Target="/xl/worksheets/sheet1.xml"/>'
                   f'<Relationship Id="rId2" Type="{rel}/sharedStrings" Target="sharedStrings.xml"/></Relationships>')
        z.writestr("xl/worksheets/sheet1.xml", sheet)
        z.writestr("xl/sharedStrings.xml", STRINGS)
    return path


def test_read_cells_reads_shared_formulas_and_strings_as_openpyxl_does(tmp_path):
    values, formulas = same_as_openpyxl(hand_made_xlsx(tmp_path / "hand.xlsx"))
    assert formulas["S"] == {(1, 0): "=B2*2", (2, 0): "=B3*2", (3, 0): "=B4*2", (2, 2): '="a"&"b"'}
    assert values["S"][(0, 1)] == "rich text" and values["S"][(0, 2)] == "inline" and values["S"][(3, 1)] == 4.0
    assert values["S"][(1, 2)] is False and values["S"][(1, 3)] == "#DIV/0!"


def test_read_cells_refuses_a_document_type_declaration(tmp_path):
    bomb = SHEET.replace('<worksheet', '<!DOCTYPE w [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><worksheet', 1)
    with pytest.raises(CnncalcError, match="document type declaration"):
        recalc.read_cells(hand_made_xlsx(tmp_path / "bomb.xlsx", bomb))
    with pytest.raises(CnncalcError, match="readable .xlsx"):
        recalc.read_cells(_not_a_zip(tmp_path / "x.xlsx"))


def _not_a_zip(path):
    path.write_bytes(b"not a zip")
    return path


@pytest.mark.libreoffice
def test_read_cells_reads_a_libreoffice_file_as_openpyxl_does(tmp_path, soffice):
    ex = get_example("two_filters")
    path = write_plan(plan_workbook(ex.model, ex.raw, ex.scale, ex.title, ex.labels), tmp_path / "book.xlsx")
    recalculated = recalc.recalculate(path, tmp_path / "recalc")
    values, formulas = same_as_openpyxl(recalculated)
    # verify reads the Weights sheet of LibreOffice's copy with calamine: the same numbers, and no formulas entry
    fast, fast_formulas = recalc.read_cells(recalculated, values_only=["Weights"])
    assert isinstance(fast["Weights"], recalc.RowCells), "calamine was not used"
    assert fast == values and len(fast["Weights"]) == len(values["Weights"]) > 20
    assert set(fast_formulas) == set(formulas) - {"Weights"} and fast_formulas["Sample 1"] == formulas["Sample 1"]


# ---------------------------------------------------------------- values only: python-calamine, and when expat reads instead

CELLS = '<row r="1"><c r="A1" t="inlineStr"><is><t>w</t></is></c><c r="B1"><v>0.5</v></c></row><row r="2"><c r="B2"><v>-2</v></c></row>'


def plain_sheet(cells=CELLS, dimension='<dimension ref="A1:B2"/>'):
    """A worksheet as LibreOffice writes one: a <dimension>, and every cell with its own address."""
    return f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">{dimension}<sheetData>{cells}</sheetData></worksheet>'


def read_values_only(path):
    return recalc.read_cells(path, values_only=["S"])


def test_a_plain_sheet_is_read_by_calamine(tmp_path):
    values, formulas = read_values_only(hand_made_xlsx(tmp_path / "plain.xlsx", plain_sheet()))
    cells = values["S"]
    assert isinstance(cells, recalc.RowCells) and formulas == {}
    assert dict(cells) == {(0, 0): "w", (0, 1): 0.5, (1, 1): -2.0} == recalc.read_cells(tmp_path / "plain.xlsx")[0]["S"]
    assert len(cells) == 3 and (1, 0) not in cells and cells.get((5, 9)) is None
    assert cells.row(1, [0, 1, 7]) == [None, -2.0, None] and cells.row(9, [1]) == [None] and recalc.row_of(cells, 0, [1]) == [0.5]


@pytest.mark.parametrize("why, sheet", [
    ("a cell past the dimension", plain_sheet(CELLS + '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>')),
    ("a cell past the last column", plain_sheet(CELLS.replace('r="B2"', 'r="C2"'))),
    ("a cell past the last row", plain_sheet(CELLS.replace('r="B2"', 'r="B3"'))),
    ("a cell without an address", plain_sheet(CELLS + '<row r="9"><c><v>1</v></c></row>')),
    ("an address after another attribute", plain_sheet(CELLS.replace('<c r="B2">', '<c s="0" r="B2">'))),
    ("a row 0", plain_sheet(CELLS.replace('r="B2"', 'r="B0"'))),
    ("a lower-case address", plain_sheet(CELLS.replace('r="B2"', 'r="b2"'))),
    ("a cell with a namespace prefix", plain_sheet(CELLS.replace("</row>", '<x:c r="A9"><x:v>1</x:v></x:c></row>', 1))),
    ("an error value", plain_sheet(CELLS.replace('<c r="B2"><v>-2</v>', '<c r="B2" t="e"><v>#DIV/0!</v>'))),
    ("no dimension", plain_sheet(dimension="")),
    ("a dimension of too many cells", plain_sheet(CELLS + '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>', '<dimension ref="A1:XFD1048576"/>')),
])
def test_expat_reads_a_sheet_calamine_could_lay_out_too_large_or_read_otherwise(why, sheet, tmp_path):
    path = hand_made_xlsx(tmp_path / "odd.xlsx", sheet)
    values, formulas = read_values_only(path)
    assert not isinstance(values["S"], recalc.RowCells), why
    assert values == recalc.read_cells(path)[0] and formulas == {}


def test_a_number_under_a_date_format_stays_a_number_and_no_calamine_stays_expat(tmp_path, monkeypatch):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "S"
    ws["A1"], ws["B2"] = 45000, 0.25
    ws["A1"].number_format = "yyyy-mm-dd"  # calamine would give a date
    wb.save(tmp_path / "date.xlsx")
    values, _ = read_values_only(tmp_path / "date.xlsx")
    assert values["S"] == {(0, 0): 45000, (1, 1): 0.25} and not isinstance(values["S"], recalc.RowCells)
    ws["A1"] = 0.5
    ws["A1"].number_format = "General"
    wb.save(tmp_path / "plain.xlsx")
    assert isinstance(read_values_only(tmp_path / "plain.xlsx")[0]["S"], recalc.RowCells)
    monkeypatch.setitem(sys.modules, "python_calamine", None)  # not installed: expat reads every sheet
    assert read_values_only(tmp_path / "plain.xlsx")[0]["S"] == {(0, 0): 0.5, (1, 1): 0.25}


def test_past_finds_exactly_the_columns_and_rows_after_the_last():
    import re

    from cnncalc.sheets.cells import col_letters

    for last in ["A", "B", "Z", "AZ", "ALM", "ZZ", "XFD"]:
        after = re.compile(b"(?:" + recalc._past(last, "A-Z") + b")$")
        assert [c for c in range(16384) if bool(after.match(col_letters(c).encode())) != (c > recalc._col_number(last))] == [], last
    for last in ["1", "9", "10", "2754", "99", "1048576"]:
        after = re.compile(b"(?:" + recalc._past(last, "0-9") + b")$")
        assert [n for n in range(1, 1_100_000, 7) if bool(after.match(str(n).encode())) != (n > int(last))] == [], last


@pytest.mark.parametrize("name, plan", list(plans()), ids=lambda v: v if isinstance(v, str) else "")
def test_the_sheets_verify_reads_for_values_only_hold_no_formula(name, plan):
    from cnncalc.recalc.verify import GIVENS_ONLY

    for sheet in GIVENS_ONLY:
        assert all(cell.formula is None for _, row in plan.sheet(sheet).rows() for _, cell in row), sheet


# ---------------------------------------------------------------- the chapter's MNIST CNN, end to end


@pytest.mark.libreoffice
@pytest.mark.keras
def test_mnist_small_exports_verifies_and_equals_keras(tmp_path, soffice, keras):
    """Conv2D(10, 3×3) → MaxPool(2) → Flatten → Dense(1000, relu) → Dense(10, softmax): 1.7 M weights, one digit."""
    from cnncalc.kerasfiles.loader import load_model
    from cnncalc.recalc.verify import verify

    save_keras(model_from_layer_list(json.loads((SPECS / "mnist_small.json").read_text())), tmp_path / "mnist_small.keras")
    model = load_model(tmp_path / "mnist_small.keras")  # as `cnncalc new` then `cnncalc build` do
    raw = digit(7)[None, :, :, None]
    book = write_plan(plan_workbook(model, raw, "1/255"), tmp_path / "mnist_small.xlsx", quiet=True)

    report = verify(book, keep=tmp_path / "recalculated.xlsx", quiet=True)
    assert report.ok, report.failures[:3]
    assert report.checked > 19_000 and report.per_sheet["Sample 1"] > 19_000

    theirs = np.asarray(keras.saving.load_model(tmp_path / "mnist_small.keras").predict(raw / 255, verbose=0))[0]
    values = recalc.read_cells(tmp_path / "recalculated.xlsx", sheets=["Summary"])[0]["Summary"]
    row = next(r for (r, c), v in values.items() if v == "Sample 1" and c == 0)
    mine = np.array([values[(row, 1 + j)] for j in range(10)])  # LibreOffice's probabilities, live from the sample sheet
    print("Mine  ", mine, "\nTheirs", theirs)
    np.testing.assert_allclose(mine, theirs, atol=1e-6)
