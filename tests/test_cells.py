"""A1 addressing (checked against XlsxWriter's own helpers), placements, and the sheet plan's row order."""

import pytest
from xlsxwriter.utility import xl_rowcol_to_cell

from cnncalc.sheets import formulas
from cnncalc.sheets.cells import Block, Cell, Placement, SheetPlan, a1, a1_range, parse_a1, sheet_prefix
from cnncalc.errors import CnncalcError


@pytest.mark.parametrize("row, col", [(0, 0), (3, 1), (0, 25), (0, 26), (9, 701), (99, 702), (1_048_575, 16_383)])
def test_a1_matches_xlsxwriter(row, col):
    assert a1(row, col) == xl_rowcol_to_cell(row, col)
    assert a1(row, col, absolute=True) == xl_rowcol_to_cell(row, col, True, True)
    assert parse_a1(a1(row, col)) == (row, col)


def test_ranges_and_sheet_prefixes():
    assert a1_range(3, 6, 5, 8) == "G4:I6"
    assert a1_range(3, 6, 3, 6) == "G4"
    assert sheet_prefix("Weights", "Sample 1") == "Weights!"
    assert sheet_prefix("Sample 1", "Summary") == "'Sample 1'!"
    assert sheet_prefix("Bob's", "x") == "'Bob''s'!"
    assert sheet_prefix("Weights", "Weights") == ""


def test_out_of_range_is_refused():
    with pytest.raises(CnncalcError, match="Received col=16384"):
        a1(0, 16_384)


@pytest.mark.parametrize("shape, layout", [((4, 4, 3), "grid"), ((10,), "column"), ((5,), "row"), ((3, 4), "matrix"), ((3, 2, 2, 3), "kernel")])
def test_placement_round_trips(shape, layout):
    p = Placement("S", 5, 2, shape, layout)
    seen = set()
    for idx in p.indices():
        pos = p.pos(idx)
        assert p.index_at(*pos) == idx
        seen.add(pos)
    h, w = p.extent
    assert len(seen) == len(list(p.indices()))
    assert all(5 <= r < 5 + h and 2 <= c < 2 + w for r, c in seen)


def test_grid_channels_sit_side_by_side_with_a_gap():
    p = Placement("S", 3, 1, (4, 4, 2), "grid")
    assert p.ref((0, 0, 0), "S") == "B4" and p.ref((0, 0, 1), "S") == "G4"
    assert p.span((0, 0, 1), (2, 2, 1), "T") == "S!G4:I6"
    assert p.index_at(3, 5) is None  # the gap column


def test_rows_come_in_order_from_overlapping_blocks():
    s = SheetPlan("S")
    s.add(Block(2, 5, 2, 1, lambda r, c: Cell(f"b{r}")))
    s.add(Block(0, 0, 3, 2, lambda r, c: Cell(r * 10 + c)))
    rows = list(s.rows())
    assert [r for r, _ in rows] == [0, 1, 2, 3]
    assert [c for c, _ in rows[2][1]] == [0, 1, 5]


def test_sheet_limits_are_checked_before_writing():
    with pytest.raises(CnncalcError, match="Excel's limits"):
        SheetPlan("S").add(Block(1_048_570, 0, 10, 1, lambda r, c: None))


@pytest.mark.parametrize("factor, expected", [(0.125, "B4/8"), (1 / 255, "B4/255"), (1.0, "B4"), (0.3, "B4*0.3"), (2.0, "B4*2")])
def test_scale_formula(factor, expected):
    assert formulas.scale("B4", factor) == expected


def test_formula_builders():
    assert formulas.add(["SUMPRODUCT(A1:B2,C1:D2)", "E1"]) == "SUMPRODUCT(A1:B2,C1:D2)+E1"
    assert formulas.add(["A1", "-B1"]) == "A1-B1"
    assert formulas.sumproduct("G4:I6", "Weights!$B$6:$D$8") == "SUMPRODUCT(G4:I6,Weights!$B$6:$D$8)"
    assert formulas.sumproduct("U4", "Weights!$B$17") == "U4*Weights!$B$17"  # one input: a product (pycel reads it)
    assert formulas.sumproduct("'Sample 1'!U4", "Weights!$B$17") == "'Sample 1'!U4*Weights!$B$17"
    assert formulas.sumproduct("U4", "Weights!$B$17:$B$17") == "SUMPRODUCT(U4,Weights!$B$17:$B$17)"
    assert formulas.activation("relu", "L4") == "MAX(0,L4)"
    assert formulas.argmax("A1:A3") == "MATCH(MAX(A1:A3),A1:A3,0)-1"
    assert formulas.number(8.0) == "8" and formulas.number(0.1) == "0.1"
    with pytest.raises(CnncalcError, match="Received 'swish'"):
        formulas.activation("swish", "A1")
