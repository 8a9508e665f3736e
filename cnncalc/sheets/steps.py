"""Written expansions of cnncalc's own formulas, as the chapter writes them:
'=SUMPRODUCT(G4:I6,Weights!$B$6:$D$8)+Weights!$B$12' on its values becomes
'0.125×0.6502779 + 0.25×0.3674555 + … + (−0.1108655) = 0.4691745'.

Only the formula subset cnncalc writes is understood (references, ranges, SUMPRODUCT of two ranges,
MAX/MIN/SUM/AVERAGE of one range, the argmax MATCH, element-wise functions and arithmetic)."""

import math
import re

from cnncalc.sheets.cells import parse_a1
from cnncalc.companion.explain import num, signed

MAX_TERMS = 60  # longer expansions show their first terms and say how many more there are

_REF = r"(?:(?:'(?:[^']|'')+'|[A-Za-z_][A-Za-z0-9_.]*)!)?\$?[A-Z]{1,3}\$?[0-9]+"
_RANGE = rf"{_REF}(?::\$?[A-Z]{{1,3}}\$?[0-9]+)?"
_SUMPRODUCT = re.compile(rf"SUMPRODUCT\(({_RANGE}),({_RANGE})\)")
_ARGMAX = re.compile(rf"MATCH\(MAX\(({_RANGE})\),\1,0\) - 1")
_AGGREGATE = re.compile(rf"(MAX|MIN|SUM|AVERAGE)\(({_RANGE})\)")
_SINGLE = re.compile(_RANGE)


def cells_of(ref, sheet, limit=None):
    """['Weights!B6:D8' from sheet 'Sample 1'] -> ('Weights', [(5, 1), (5, 2), ...], 9): the range's cells in
    row-major order (only the first `limit` of them when given: a Dense column has thousands) and how many it has."""
    if "!" in ref:
        where, ref = ref.rsplit("!", 1)
        sheet = where[1:-1].replace("''", "'") if where.startswith("'") else where
    first, _, last = ref.replace("$", "").partition(":")
    r0, c0 = parse_a1(first)
    r1, c1 = parse_a1(last) if last else (r0, c0)
    width, count = c1 - c0 + 1, (r1 - r0 + 1) * (c1 - c0 + 1)
    return sheet, [(r0 + k // width, c0 + k % width) for k in range(count if limit is None else min(count, limit))], count


def expand(formula, sheet, value):
    """The formula written out with numbers; value(sheet, (row, col)) gives a cell's value."""
    return Expander(value)(formula, sheet)


_OPERATOR = re.compile(r"(?<=[0-9A-Z)])([+\-/])")  # binary operators, not 1e-05
_FUNCTION = re.compile(r"\b(EXP|LN|SQRT|TANH|ERF|ABS|MAX|MIN|IF)\(")
_COMMA = re.compile(r",(?=\S)")
_HOLE = "\x00"  # where a written-out range goes back in, once the rest of the formula is rewritten


class Expander:
    """expand() for many formulas over the same cells (the Steps sheet): each cell's number is written as text once,
    and each range's terms once (a convolution's formulas name the same kernel at every position).

    The ranges of SUMPRODUCT, the argmax and MAX/MIN/SUM/AVERAGE are written out first and set aside, so the rest of the
    rewriting (single references, function names, commas) reads the short formula, not thousands of written numbers;
    what is set aside holds nothing it would change (numbers, lowercase words, ', ' and '×').
    """

    def __init__(self, value):
        self.value = value
        self.numbers = {}  # (sheet, (row, col)) -> (num text, signed text)
        self.ranges = {}  # (the formula's sheet, range text) -> (num texts, signed texts of its first MAX_TERMS cells, cell count)
        self.rest = {}  # (the formula's sheet, its text with the written-out ranges set aside) -> that text rewritten

    def number(self, sheet, rc):
        key = (sheet, rc)
        got = self.numbers.get(key)
        if got is None:
            x = self.value(sheet, rc)
            got = self.numbers[key] = (num(x), signed(x))
        return got

    def terms(self, ref, sheet):
        """(num texts, signed texts, how many cells): only the shown terms are looked up (a Dense column has thousands)."""
        key = (sheet, ref)
        got = self.ranges.get(key)
        if got is None:
            s, cells, count = cells_of(ref, sheet, MAX_TERMS)
            texts = [self.number(s, rc) for rc in cells]
            got = self.ranges[key] = ([t[0] for t in texts], [t[1] for t in texts], count)
        return got

    def __call__(self, formula, sheet):
        held = []  # the written-out ranges, in order

        def hold(text):
            held.append(text)
            return _HOLE

        def clip(shown, count, joiner):
            """At most MAX_TERMS terms (a Dense layer may have thousands), saying how many more there are."""
            if count > MAX_TERMS:
                return joiner.join([*shown, f"… ({count - MAX_TERMS} more terms)"])
            return joiner.join(shown)

        def products(m):
            _, a, na = self.terms(m[1], sheet)
            _, b, nb = self.terms(m[2], sheet)
            return hold(clip(list(map("×".join, zip(a, b))), min(na, nb), " + "))

        def argmax(m):
            nums, _, count = self.terms(m[1], sheet)
            return hold(f"position of the largest of ({clip(nums, count, ', ')}), counting from 0")

        def aggregate(m):
            nums, signs, count = self.terms(m[2], sheet)
            if m[1] == "SUM":
                return hold("(" + clip(signs, count, " + ") + ")")
            if m[1] == "AVERAGE":
                return hold(f"({clip(signs, count, ' + ')}) / {count}")
            return hold(f"{m[1].lower()}({clip(nums, count, ', ')})")

        def single(m):
            s, cells, _ = cells_of(m[0], sheet, 1)
            return self.number(s, cells[0])[1]

        text = _OPERATOR.sub(r" \1 ", formula.lstrip("="))
        if "SUMPRODUCT(" in text:
            text = _SUMPRODUCT.sub(products, text)
        if "MATCH(" in text:
            text = _ARGMAX.sub(argmax, text)
        if "MAX(" in text or "MIN(" in text or "SUM(" in text or "AVERAGE(" in text:
            text = _AGGREGATE.sub(aggregate, text)
        key = (sheet, text)  # a layer's formulas often differ only in their ranges: the rest is rewritten once
        rest = self.rest.get(key)
        if rest is None:
            rest = _SINGLE.sub(single, text)
            rest = _FUNCTION.sub(lambda m: m[1].lower() + "(", rest)
            rest = self.rest[key] = _COMMA.sub(", ", rest.replace("*", "×"))
        text = rest
        if not held:
            return text
        parts = text.split(_HOLE)
        return "".join([p for pair in zip(parts, held) for p in pair] + parts[len(held):])


def value_lookup(sheet):
    """value(rc) of one cell of a sheet plan (NaN where it holds no number), each row made only when first asked for:
    for a sheet too big to make whole, such as a Weights sheet of a million numbers, of which few are shown."""
    rows = {}  # row -> {col: number}

    def value(rc):
        r, c = rc
        if r not in rows:
            rows[r] = {col: cell.value for b in sheet.blocks if b.top <= r < b.bottom for col, cell in b.row(r - b.top)
                       if isinstance(cell.value, (int, float)) and not isinstance(cell.value, bool)}
        return rows[r].get(c, math.nan)

    return value
