"""A1 addressing and the sheet plan: what goes in which cell, as plain data, before any file is written.

Inside cnncalc every address is a 0-based (row, col) pair, as in XlsxWriter; this module is the one
place that turns it into "A1" text. A sheet plan is a list of rectangular blocks whose cells are made
on demand, row by row, so a workbook with millions of cells never has to sit in memory at once.
"""

from dataclasses import dataclass, field
from functools import lru_cache, partial
from itertools import product, repeat
import math
import re
from typing import NamedTuple

import numpy as np

from cnncalc.errors import CnncalcError

MAX_ROWS = 1_048_576
MAX_COLS = 16_384


@lru_cache(maxsize=None)  # at most 16,384 entries; a big workbook asks for the same columns a million times
def col_letters(col):
    """0 -> 'A', 25 -> 'Z', 26 -> 'AA'."""
    if not 0 <= col < MAX_COLS:
        raise CnncalcError(f"Column out of range. Expected 0 to {MAX_COLS - 1}. Received col={col}")
    letters = ""
    col += 1
    while col:
        col, rem = divmod(col - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def a1(row, col, absolute=False):
    """(0, 0) -> 'A1'; absolute=True -> '$A$1'."""
    if not 0 <= row < MAX_ROWS:
        raise CnncalcError(f"Row out of range. Expected 0 to {MAX_ROWS - 1}. Received row={row}")
    d = "$" if absolute else ""
    return f"{d}{col_letters(col)}{d}{row + 1}"


def a1_range(r0, c0, r1, c1, absolute=False):
    """Inclusive rectangle -> 'A1:B2', or 'A1' when it is one cell."""
    if (r0, c0) == (r1, c1):
        return a1(r0, c0, absolute)
    return f"{a1(r0, c0, absolute)}:{a1(r1, c1, absolute)}"


_A1 = re.compile(r"^\$?([A-Z]{1,3})\$?([0-9]+)$")


def parse_a1(text):
    """'B3' or '$B$3' -> (2, 1)."""
    m = _A1.match(text.upper())
    if not m:
        raise CnncalcError(f"Not a cell address. Expected something like 'B3'. Received {text!r}")
    col = 0
    for ch in m.group(1):
        col = col * 26 + ord(ch) - 64
    return int(m.group(2)) - 1, col - 1


def sheet_prefix(sheet, from_sheet):
    """'' on the same sheet, else "Weights!" or "'Sample 1'!" (quoted when the name needs it)."""
    if sheet == from_sheet:
        return ""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", sheet):
        return f"{sheet}!"
    return "'" + sheet.replace("'", "''") + "'!"


# ---------------------------------------------------------------- cell records


class Cell(NamedTuple):
    """One cell: a constant (`formula` None) or a formula with its cached result in `value`.

    A NamedTuple rather than a frozen dataclass: a big workbook makes millions of them, and a tuple is made
    about twice as fast.
    """

    value: object
    formula: str | None = None
    style: str = "value"


class Block:
    """A rectangle of cells on one sheet; `cell(r, c)` (local coordinates) makes each one or returns None.

    `row_cells(r)`, when given, is a faster twin of `cell` for a whole local row: [(absolute col, Cell), ...],
    left to right, the same cells `cell` makes. It is used only while `cell` is the function the block was made
    with, so code that wraps `block.cell` (e.g. to blank some cells) is always honoured.
    """

    def __init__(self, top, left, height, width, cell, row_cells=None):
        self.top, self.left, self.height, self.width, self.cell = top, left, height, width, cell
        self.row_cells, self._made_with = row_cells, cell

    @property
    def bottom(self):
        return self.top + self.height

    @property
    def right(self):
        return self.left + self.width

    def row(self, r):
        """[(col, Cell), ...] of local row r, absolute columns, left to right."""
        if self.row_cells is not None and self.cell is self._made_with:
            return self.row_cells(r)
        return self.row_naive(r)

    def row_naive(self, r):
        """`row` through `cell`, one column at a time (the reference for `row_cells`)."""
        pairs = []
        for c in range(self.width):
            cell = self.cell(r, c)
            if cell is not None:
                pairs.append((self.left + c, cell))
        return pairs


def cells_block(cells):
    """A Block from a dict {(row, col): Cell} of absolute addresses (for small, hand-placed content)."""
    cells = dict(cells)  # a snapshot: both ways of reading the block see the same cells
    rows = [r for r, _ in cells]
    cols = [c for _, c in cells]
    top, left = min(rows), min(cols)
    by_row = {}
    for (r, c), cell in sorted(cells.items(), key=lambda item: item[0]):
        if cell is not None:
            by_row.setdefault(r - top, []).append((c, cell))
    return Block(top, left, max(rows) - top + 1, max(cols) - left + 1, lambda r, c: cells.get((top + r, left + c)),
                 lambda r: by_row.get(r, []))


@dataclass
class SheetPlan:
    """Everything one worksheet holds: blocks of cells plus presentation (widths, merges, colour scales)."""

    name: str
    blocks: list = field(default_factory=list)
    col_widths: dict = field(default_factory=dict)  # col -> width
    merges: list = field(default_factory=list)  # (r0, c0, r1, c1, Cell)
    color_scales: list = field(default_factory=list)  # (r0, c0, r1, c1)
    freeze: tuple | None = None
    hidden: bool = False
    tab_color: str | None = None
    protect: bool = False  # locked cells read-only (no password); unlocked styles stay editable
    outlines: list = field(default_factory=list)  # (r0, c0, r1, c1): a thick frame around these cells
    charts: list = field(default_factory=list)  # dicts: title, values and categories (r0, c0, r1, c1), anchor (row, col)
    print_titles: tuple | None = None  # (first, last) rows printed atop every page; None: the frozen rows, if any
    row_heights: dict = field(default_factory=dict)  # row -> height in points, e.g. a row of wrapped text

    def add(self, block):
        if block.bottom > MAX_ROWS or block.right > MAX_COLS:
            raise CnncalcError(
                f"Sheet {self.name!r} would exceed Excel's limits. Expected at most {MAX_ROWS:,} rows and "
                f"{MAX_COLS:,} columns. Received a block reaching row {block.bottom:,}, column {block.right:,}"
            )
        self.blocks.append(block)
        return block

    @property
    def extent(self):
        """(rows, cols) used."""
        return (max((b.bottom for b in self.blocks), default=0), max((b.right for b in self.blocks), default=0))

    def rows(self):
        """Yield (row, [(col, Cell), ...]) in row order, columns ascending: the order a streaming writer needs."""
        blocks = sorted(self.blocks, key=lambda b: b.top)
        active, nxt = [], 0
        by_left, disjoint = [], True
        for r in range(self.extent[0]):
            changed = False
            while nxt < len(blocks) and blocks[nxt].top <= r:
                active.append(blocks[nxt])
                nxt += 1
                changed = True
            if any(b.bottom <= r for b in active):
                active = [b for b in active if b.bottom > r]
                changed = True
            if changed:  # side by side, the blocks' rows join in order; overlapping ones need a sort
                by_left = sorted(active, key=lambda b: b.left)
                disjoint = all(a.right <= b.left for a, b in zip(by_left, by_left[1:]))
            if disjoint:
                row = [pair for b in by_left for pair in b.row(r - b.top)]
            else:
                row = [pair for b in active for pair in b.row(r - b.top)]
                row.sort(key=lambda pair: pair[0])
            if row:
                yield r, row

    def cells(self):
        """{(row, col): Cell} of the whole sheet; for tests and small sheets."""
        return {(r, c): cell for r, row in self.rows() for c, cell in row}

    def value_grid(self):
        """The sheet's numbers as a float array of its extent, NaN where a cell holds no number.

        For reading a big sheet (a million weights): the array takes 8 bytes a cell, a dict of Cells twenty times more.
        """
        grid = np.full(self.extent, np.nan)
        for r, row in self.rows():
            for c, cell in row:
                if isinstance(cell.value, (int, float)) and not isinstance(cell.value, bool):
                    grid[r, c] = cell.value
        return grid


@dataclass
class WorkbookPlan:
    sheets: list = field(default_factory=list)

    def sheet(self, name):
        for s in self.sheets:
            if s.name == name:
                return s
        raise KeyError(name)

    def add_sheet(self, name, **kw):
        s = SheetPlan(name, **kw)
        self.sheets.append(s)
        return s


# ---------------------------------------------------------------- where a tensor sits


class Placement:
    """Where each element of a tensor sits on a sheet.

    Layouts (shape -> cells):
      "grid"   (H, W, C): one H x W map per channel, `across` maps side by side with one blank column between
               them, then the next row of maps below, two rows down (a blank row, then the maps' headers);
               across=None puts every map in one row. (H, W) is one map; (H, W, C1, C2, ...) has C1 x C2 x ...
               maps, in row-major order.
      "column" (D,):      D cells going down
      "row"    (D,):      D cells going right
      "matrix" (R, K):    R rows x K columns
      "kernel" (kh, kw, cin, cout): one kh x kw grid per (cin, cout): input channels across, filters down
    """

    GAP = 1
    MAP_ROW_GAP = 2  # rows between two rows of maps: a blank one, then the headers of the maps below

    def __init__(self, sheet, top, left, shape, layout, across=None):
        self.sheet, self.top, self.left, self.shape, self.layout = sheet, top, left, tuple(shape), layout
        expected = {"column": 1, "row": 1, "matrix": 2, "kernel": 4}
        if layout != "grid" and layout not in expected:
            raise ValueError(f"unknown layout {layout!r}")
        if layout == "grid" and len(self.shape) < 2 or layout in expected and len(self.shape) != expected[layout]:
            raise ValueError(f"layout {layout!r} needs a {expected.get(layout, '2-d or more')}-d shape, got {self.shape}")
        if across is not None and (not isinstance(across, int) or across < 1):
            raise ValueError(f"maps across must be a positive int or None, got {across!r}")
        if layout == "grid":
            self.maps = math.prod(self.shape[2:])  # 1 for (H, W)
            self.across = self.maps if across is None else min(across, self.maps)
            self.map_rows = -(-self.maps // self.across)
            self.pitch = (self.shape[0] + self.MAP_ROW_GAP, self.shape[1] + self.GAP)  # from one map to the next

    def map_of(self, idx):
        """The number of the map (channel) that element idx of a grid lies in, row-major over the axes after (H, W)."""
        n = len(idx)
        return idx[2] if n == 3 else 0 if n == 2 else int(np.ravel_multi_index(idx[2:], self.shape[2:]))

    def map_index(self, k):
        """The axes after (H, W) of map k: (k,) for (H, W, C), () for (H, W)."""
        n = len(self.shape)
        return (k,) if n == 3 else () if n == 2 else tuple(int(i) for i in np.unravel_index(k, self.shape[2:]))

    def map_origin(self, k):
        """Absolute (row, col) of the top-left cell of map k."""
        mr, mc = divmod(k, self.across)
        return self.top + mr * self.pitch[0], self.left + mc * self.pitch[1]

    @property
    def extent(self):
        """(height, width) of the cells the tensor covers."""
        s, g = self.shape, self.GAP
        if self.layout == "grid":
            return self.map_rows * self.pitch[0] - self.MAP_ROW_GAP, self.across * self.pitch[1] - g
        elif self.layout == "column":
            return s[0], 1
        elif self.layout == "row":
            return 1, s[0]
        elif self.layout == "matrix":
            return s
        elif self.layout == "kernel":
            return s[3] * (s[0] + g) - g, s[2] * (s[1] + g) - g
        raise AssertionError(self.layout)

    def pos(self, idx):
        """Absolute (row, col) of element idx (a tuple)."""
        s, g = self.shape, self.GAP
        if self.layout == "grid":  # the hot path of every conv formula: kept to plain arithmetic
            mr, mc = divmod(idx[2] if len(idx) == 3 else self.map_of(idx), self.across)
            return self.top + mr * self.pitch[0] + idx[0], self.left + mc * self.pitch[1] + idx[1]
        elif self.layout == "column":
            return self.top + idx[0], self.left
        elif self.layout == "row":
            return self.top, self.left + idx[0]
        elif self.layout == "matrix":
            return self.top + idx[0], self.left + idx[1]
        elif self.layout == "kernel":
            a, b, c, f = idx
            return self.top + f * (s[0] + g) + a, self.left + c * (s[1] + g) + b
        raise AssertionError(self.layout)

    def indices(self):
        return product(*(range(n) for n in self.shape))

    def positions(self):
        """(rows, cols): two int arrays of the tensor's shape, the absolute (row, col) of every element, as pos gives them."""
        s, g = self.shape, self.GAP
        if self.layout == "grid":
            i, j, k = np.ogrid[:s[0], :s[1], :self.maps]
            mr, mc = np.divmod(k, self.across)
            rows, cols = self.top + mr * self.pitch[0] + i + 0 * j, self.left + mc * self.pitch[1] + j + 0 * i
            return rows.reshape(s), cols.reshape(s)
        elif self.layout in ("column", "row"):
            line = np.arange(s[0])
            return (self.top + line, np.full(s, self.left)) if self.layout == "column" else (np.full(s, self.top), self.left + line)
        elif self.layout == "matrix":
            i, j = np.ogrid[:s[0], :s[1]]
            return self.top + i + 0 * j, self.left + j + 0 * i
        elif self.layout == "kernel":
            a, b, c, f = np.ix_(*(np.arange(n) for n in s))
            return np.broadcast_to(self.top + f * (s[0] + g) + a, s), np.broadcast_to(self.left + c * (s[1] + g) + b, s)
        raise AssertionError(self.layout)

    def index_at(self, row, col):
        """The element index at absolute (row, col), or None for a gap or a cell outside."""
        r, c = row - self.top, col - self.left
        h, w = self.extent
        if not (0 <= r < h and 0 <= c < w):
            return None
        s, g = self.shape, self.GAP
        if self.layout == "grid":
            (mr, i), (mc, j) = divmod(r, self.pitch[0]), divmod(c, self.pitch[1])
            k = mr * self.across + mc
            return None if i >= s[0] or j >= s[1] or k >= self.maps else (i, j, *self.map_index(k))
        elif self.layout == "column":
            return (r,)
        elif self.layout == "row":
            return (c,)
        elif self.layout == "matrix":
            return (r, c)
        elif self.layout == "kernel":
            f, a = divmod(r, s[0] + g)
            ci, b = divmod(c, s[1] + g)
            return None if a >= s[0] or b >= s[1] else (a, b, ci, f)
        raise AssertionError(self.layout)

    def ref(self, idx, from_sheet, absolute=False):
        """A1 reference of one element, prefixed with the sheet when it lives elsewhere."""
        return sheet_prefix(self.sheet, from_sheet) + a1(*self.pos(idx), absolute)

    def span(self, first, last, from_sheet, absolute=False):
        """A1 range from element `first` to element `last` (they must bound a rectangle of this tensor)."""
        return sheet_prefix(self.sheet, from_sheet) + a1_range(*self.pos(first), *self.pos(last), absolute)

    def row_indices(self, r):
        """[(col, idx), ...] of the elements on local row r, left to right: index_at for a whole row at once."""
        s, g, left = self.shape, self.GAP, self.left
        if self.layout == "grid":
            mr, i = divmod(r, self.pitch[0])
            if i >= s[0]:  # the rows between two rows of maps
                return []
            first = mr * self.across
            maps = [(left + (k - first) * self.pitch[1], self.map_index(k)) for k in range(first, min(first + self.across, self.maps))]
            return [(c0 + j, (i, j, *m)) for c0, m in maps for j in range(s[1])]
        elif self.layout == "column":
            return [(left, (r,))]
        elif self.layout == "row":
            return [(left + c, (c,)) for c in range(s[0])]
        elif self.layout == "matrix":
            return [(left + c, (r, c)) for c in range(s[1])]
        elif self.layout == "kernel":
            f, a = divmod(r, s[0] + g)
            if a >= s[0]:  # the blank row between two filters
                return []
            return [(left + ci * (s[1] + g) + b, (a, b, ci, f)) for ci in range(s[2]) for b in range(s[1])]
        raise AssertionError(self.layout)

    def row_values(self, values, r):
        """values[idx] for the elements on local row r, in row_indices order, as Python numbers: one numpy slice."""
        s, g = self.shape, self.GAP
        if self.layout == "grid":
            mr, i = divmod(r, self.pitch[0])
            if i >= s[0]:
                return []
            first = mr * self.across  # (W, maps) -> the maps of this row, one after the other
            return values[i].reshape(s[1], self.maps)[:, first:first + self.across].T.ravel().tolist()
        elif self.layout == "column":
            return [values[r].item()]
        elif self.layout == "row":
            return values.tolist()
        elif self.layout == "matrix":
            return values[r].tolist()
        elif self.layout == "kernel":
            f, a = divmod(r, s[0] + g)
            return [] if a >= s[0] else values[a, :, :, f].T.ravel().tolist()  # (kw, cin) -> input channel by channel
        raise AssertionError(self.layout)

    def constant_block(self, values, style):
        """A Block of given numbers (weights): element idx holds float(values[idx]) in `style`.

        Its rows are sliced from the array rather than made element by element: a big model's Weights sheet
        has millions of cells, and this is most of the time it takes to write them.
        """
        values = np.asarray(values, dtype=np.float64)
        block = self.block(lambda idx: Cell(float(values[idx]), None, style))
        columns = [col for col, _ in self.row_indices(0)]  # every row's columns start so (a grid's last row of maps may stop sooner)

        make = partial(tuple.__new__, Cell)  # Cell(v, None, style) without a Python call per cell: millions of weights

        def row_cells(r):
            return list(zip(columns, map(make, zip(self.row_values(values, r), repeat(None), repeat(style)))))

        block.row_cells = row_cells
        return block

    def block(self, cell):
        """A Block covering this tensor whose cells come from cell(idx) (gaps stay empty)."""
        h, w = self.extent

        def local(r, c):
            idx = self.index_at(self.top + r, self.left + c)
            return None if idx is None else cell(idx)

        def row_cells(r):
            pairs = []
            for col, idx in self.row_indices(r):
                made = cell(idx)
                if made is not None:
                    pairs.append((col, made))
            return pairs

        return Block(self.top, self.left, h, w, local, row_cells)
