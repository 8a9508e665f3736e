"""Written expansions of cnncalc's own formulas, as the chapter writes them:
'=SUMPRODUCT(G4:I6,Weights!$B$6:$D$8)+Weights!$B$12' on its values becomes
'0.125×0.6502779 + 0.25×0.3674555 + … + (−0.1108655) = 0.4691745'.

Only the formula subset cnncalc writes is understood (references, ranges, SUMPRODUCT of two ranges,
MAX/MIN/SUM/AVERAGE of one range, the argmax MATCH, element-wise functions and arithmetic)."""

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


def cells_of(ref, sheet):
    """['Weights!B6:D8' from sheet 'Sample 1'] -> ('Weights', [(5, 1), (5, 2), ...]) in row-major order."""
    if "!" in ref:
        where, ref = ref.rsplit("!", 1)
        sheet = where[1:-1].replace("''", "'") if where.startswith("'") else where
    first, _, last = ref.replace("$", "").partition(":")
    r0, c0 = parse_a1(first)
    r1, c1 = parse_a1(last) if last else (r0, c0)
    return sheet, [(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]


def expand(formula, sheet, value):
    """The formula written out with numbers; value(sheet, (row, col)) gives a cell's value."""

    def values(ref):
        s, cells = cells_of(ref, sheet)
        return [value(s, rc) for rc in cells]

    def clip(terms, joiner, fmt):
        """Format at most MAX_TERMS terms (a Dense layer may have thousands) and say how many more there are."""
        shown = [fmt(t) for t in terms[:MAX_TERMS]]
        if len(terms) > MAX_TERMS:
            shown.append(f"… ({len(terms) - MAX_TERMS} more terms)")
        return joiner.join(shown)

    text = re.sub(r"(?<=[0-9A-Z)])([+\-/])", r" \1 ", formula.lstrip("="))  # binary operators, not 1e-05
    text = _SUMPRODUCT.sub(lambda m: clip(list(zip(values(m[1]), values(m[2]))), " + ", lambda ab: f"{signed(ab[0])}×{signed(ab[1])}"), text)
    text = _ARGMAX.sub(lambda m: f"position of the largest of ({clip(values(m[1]), ', ', num)}), counting from 0", text)

    def aggregate(m):
        vs = values(m[2])
        if m[1] == "SUM":
            return "(" + clip(vs, " + ", signed) + ")"
        if m[1] == "AVERAGE":
            return f"({clip(vs, ' + ', signed)}) / {len(vs)}"
        return f"{m[1].lower()}({clip(vs, ', ', num)})"

    text = _AGGREGATE.sub(aggregate, text)
    text = _SINGLE.sub(lambda m: signed(values(m[0])[0]), text)
    text = re.sub(r"\b(EXP|LN|SQRT|TANH|ERF|ABS|MAX|MIN|IF)\(", lambda m: m[1].lower() + "(", text)
    return re.sub(r",(?=\S)", ", ", text.replace("*", "×"))
