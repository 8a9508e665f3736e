"""Evaluate the spreadsheet formulas cnncalc writes (and simple ones a student types), without a spreadsheet.

The subset: numbers, A1 references with sheet prefixes and $, ranges, + - * / ^, unary minus, a
postfix %, comparisons, and SUMPRODUCT SUM MAX MIN AVERAGE EXP LN SQRT ABS TANH ERF IF MATCH (and, for the
gradients of training workbooks, ERFC AND OR SIGN COUNTIF), with
Excel's precedence (unary minus binds tighter than ^: -2^2 = 4). A formula is parsed once into a
small tree of tuples, `evaluate` computes it over any `lookup(sheet, row, col)`, and `references`
lists the cells it reads. (cnncalc.sheets.steps writes a formula out with its numbers.)
"""

import math
import re

from cnncalc.sheets.cells import parse_a1


class Unsupported(Exception):
    """The formula uses syntax or a function outside the subset (a spreadsheet must compute it)."""


class Unknown(Exception):
    """A lookup has no value to give (an answer the student left empty or wrote as text); it stops the evaluation."""


class EvalError(Exception):
    """The formula has no value, as a spreadsheet shows #DIV/0!, #NUM! or #N/A."""


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<func>[A-Za-z_][A-Za-z0-9_.]*(?=\s*\())
  | (?P<ref>(?:(?:'(?:[^']|'')+'|[A-Za-z_][A-Za-z0-9_.]*)!)?\$?[A-Za-z]{1,3}\$?[0-9]+(?::\$?[A-Za-z]{1,3}\$?[0-9]+)?)
  | (?P<num>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)
  | (?P<op><>|<=|>=|[-+*/^(),%<>=])
""", re.VERBOSE)

_BINARY = {"=": 1, "<>": 1, "<": 1, ">": 1, "<=": 1, ">=": 1, "+": 2, "-": 2, "*": 3, "/": 3, "^": 4}


def tokens(text):
    pos, out = 0, []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise Unsupported(f"cannot read {text[pos:pos + 12]!r}")
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group()))
        pos = m.end()
    return out


def _ref(text, sheet):
    """'Weights!$B$6:$D$8' -> ("range", "Weights", 5, 1, 7, 3); 'B4' -> ("ref", sheet, 3, 1)."""
    if "!" in text:
        prefix, text = text.rsplit("!", 1)
        sheet = prefix[1:-1].replace("''", "'") if prefix.startswith("'") else prefix
    if ":" in text:
        (r0, c0), (r1, c1) = (parse_a1(t) for t in text.split(":"))
        return ("range", sheet, min(r0, r1), min(c0, c1), max(r0, r1), max(c0, c1))
    return ("ref", sheet, *parse_a1(text))


def parse(text, sheet):
    """The tree of a formula ('=' optional) written on `sheet`; raises Unsupported outside the subset."""
    toks = tokens(text[1:] if text.startswith("=") else text)
    pos = 0

    def peek():
        return toks[pos] if pos < len(toks) else (None, None)

    def take(value=None):
        nonlocal pos
        kind, tok = peek()
        if kind is None or (value is not None and tok != value):
            raise Unsupported(f"expected {value or 'more'} in {text!r}")
        pos += 1
        return kind, tok

    def expression(level=1):
        left = unary()
        while True:
            kind, tok = peek()
            if kind != "op" or tok not in _BINARY or _BINARY[tok] < level:
                return left
            take()
            right = expression(_BINARY[tok] + 1)  # left-associative, as Excel (2^3^2 = 64)
            left = ("bin", tok, left, right)

    def unary():
        kind, tok = peek()
        if kind == "op" and tok in "+-":
            take()
            node = unary()
            return ("neg", node) if tok == "-" else node
        node = primary()
        while peek() == ("op", "%"):
            take()
            node = ("bin", "/", node, ("num", 100.0))
        return node

    def primary():
        kind, tok = take()
        if kind == "num":
            return ("num", float(tok))
        elif kind == "ref":
            return _ref(tok, sheet)
        elif kind == "func":
            name = tok.upper()
            if name not in FUNCTIONS:
                raise Unsupported(f"function {name} is not in cnncalc's subset")
            take("(")
            args = []
            if peek() != ("op", ")"):
                args.append(expression())
                while peek() == ("op", ","):
                    take()
                    args.append(expression())
            take(")")
            return ("call", name, args)
        elif tok == "(":
            node = expression()
            take(")")
            return node
        raise Unsupported(f"unexpected {tok!r} in {text!r}")

    if not toks:
        raise Unsupported("empty formula")
    tree = expression()
    if pos != len(toks):
        raise Unsupported(f"unexpected {toks[pos][1]!r} in {text!r}")
    return tree


def nodes(tree):
    """Every node of a parsed formula, depth first, left to right."""
    yield tree
    kind = tree[0]
    if kind == "neg":
        yield from nodes(tree[1])
    elif kind == "bin":
        yield from nodes(tree[2])
        yield from nodes(tree[3])
    elif kind == "call":
        for arg in tree[2]:
            yield from nodes(arg)
    elif kind not in ("num", "ref", "range"):
        raise AssertionError(kind)


def references(tree):
    """Every cell (sheet, row, col) the formula reads, ranges expanded, in order."""
    out = []
    for node in nodes(tree):
        if node[0] == "ref":
            out.append(node[1:])
        elif node[0] == "range":
            _, sheet, r0, c0, r1, c1 = node
            out += [(sheet, r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)]
    return out


def numbers(tree):
    """Every number typed in the formula, as its ("num", value) nodes, in order."""
    return [node for node in nodes(tree) if node[0] == "num"]


def replace(tree, node, new):
    """The tree with one of its nodes (that very object, e.g. from numbers()) replaced by `new`."""
    if tree is node:
        return new
    kind = tree[0]
    if kind == "neg":
        return ("neg", replace(tree[1], node, new))
    elif kind == "bin":
        return ("bin", tree[1], replace(tree[2], node, new), replace(tree[3], node, new))
    elif kind == "call":
        return ("call", tree[1], [replace(arg, node, new) for arg in tree[2]])
    return tree


# ---------------------------------------------------------------- values


def _cells(tree, lookup):
    """A range (or one cell) as a list of rows of values (None for an empty cell)."""
    if tree[0] == "ref":
        tree = ("range", tree[1], tree[2], tree[3], tree[2], tree[3])
    _, sheet, r0, c0, r1, c1 = tree
    return [[lookup(sheet, r, c) for c in range(c0, c1 + 1)] for r in range(r0, r1 + 1)]


def _numbers(args, lookup):
    """The numbers of a function's arguments, as SUM and MAX see them: in a range or reference, empty cells and text skipped."""
    out = []
    for arg in args:
        if arg[0] in ("range", "ref"):
            out += [v for row in _cells(arg, lookup) for v in row if isinstance(v, (int, float)) and not isinstance(v, bool)]
        else:
            out.append(evaluate(arg, lookup))
    return out


def _scalar(v):
    if v is None:
        return 0.0  # an empty cell reads as 0
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise EvalError(f"#VALUE!: {v!r} is not a number")
    return float(v)


def _sumproduct(args, lookup):
    arrays = [_cells(a, lookup) if a[0] in ("range", "ref") else [[evaluate(a, lookup)]] for a in args]
    shape = (len(arrays[0]), len(arrays[0][0]))
    if any((len(a), len(a[0])) != shape for a in arrays):
        raise EvalError("#VALUE!: SUMPRODUCT of ranges of different sizes")
    total = 0.0
    for r in range(shape[0]):
        for c in range(shape[1]):
            p = 1.0
            for a in arrays:
                v = a[r][c]
                p *= float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0
            total += p
    return total


def _one(f):
    def call(args, lookup):
        if len(args) != 1:
            raise EvalError("#N/A: wrong number of arguments")
        try:
            return f(evaluate(args[0], lookup))
        except (ValueError, OverflowError, ZeroDivisionError) as e:
            raise EvalError(f"#NUM!: {e}") from None
    return call


def _average(args, lookup):
    values = _numbers(args, lookup)
    if not values:
        raise EvalError("#DIV/0!: AVERAGE of nothing")
    return sum(values) / len(values)


def _if(args, lookup):
    if len(args) not in (2, 3):
        raise EvalError("#N/A: IF takes 2 or 3 arguments")
    if evaluate(args[0], lookup):
        return evaluate(args[1], lookup)
    return evaluate(args[2], lookup) if len(args) == 3 else 0.0


def _match(args, lookup):
    if len(args) != 3 or args[1][0] not in ("range", "ref") or evaluate(args[2], lookup) != 0:
        raise Unsupported("only MATCH(value, range, 0) is in the subset")
    value = evaluate(args[0], lookup)
    for k, v in enumerate(v for row in _cells(args[1], lookup) for v in row):
        if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v) == value:
            return float(k + 1)
    raise EvalError("#N/A: MATCH found no equal value")


def _logical(name, combine):
    """AND / OR as Excel: numbers (0 is FALSE), a range's empty cells and text skipped, #VALUE! with no value at all."""
    def call(args, lookup):
        values = _numbers(args, lookup)
        if not values:
            raise EvalError(f"#VALUE!: {name} of no logical value")
        return float(combine(v != 0 for v in values))
    return call


def _countif(args, lookup):
    """COUNTIF(range, number): how many of the range's numbers equal it (a number criterion only: no text in the subset)."""
    if len(args) != 2 or args[0][0] not in ("range", "ref"):
        raise Unsupported("only COUNTIF(range, number) is in the subset")
    value = evaluate(args[1], lookup)
    return float(sum(1 for row in _cells(args[0], lookup) for v in row
                     if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v) == value))


def _sign(x):
    return float((x > 0) - (x < 0))


def _ln(x):
    if x <= 0:
        raise ValueError(f"LN({x}) of a number <= 0")
    return math.log(x)


FUNCTIONS = {
    "SUMPRODUCT": _sumproduct,
    "SUM": lambda args, lookup: math.fsum(_numbers(args, lookup)),
    "MAX": lambda args, lookup: max(_numbers(args, lookup), default=0.0),
    "MIN": lambda args, lookup: min(_numbers(args, lookup), default=0.0),
    "AVERAGE": _average,
    "EXP": _one(math.exp),
    "LN": _one(_ln),
    "SQRT": _one(math.sqrt),
    "ABS": _one(abs),
    "TANH": _one(math.tanh),
    "ERF": _one(math.erf),
    "IF": _if,
    "MATCH": _match,
    "ERFC": _one(math.erfc),
    "AND": _logical("AND", all),
    "OR": _logical("OR", any),
    "SIGN": _one(_sign),
    "COUNTIF": _countif,
}

_COMPARE = {"=": lambda a, b: a == b, "<>": lambda a, b: a != b, "<": lambda a, b: a < b, ">": lambda a, b: a > b,
            "<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}


def evaluate(tree, lookup):
    """The value of a parsed formula; lookup(sheet, row, col) gives a cell's value (None when empty)."""
    kind = tree[0]
    if kind == "num":
        return tree[1]
    elif kind == "ref":
        return _scalar(lookup(*tree[1:]))
    elif kind == "range":
        raise EvalError("#VALUE!: a range where one number is expected")
    elif kind == "neg":
        return -evaluate(tree[1], lookup)
    elif kind == "bin":
        op, a, b = tree[1], evaluate(tree[2], lookup), evaluate(tree[3], lookup)
        if op in _COMPARE:
            return float(_COMPARE[op](a, b))
        try:
            if op == "+":
                return a + b
            elif op == "-":
                return a - b
            elif op == "*":
                return a * b
            elif op == "/":
                return a / b
            elif op == "^":
                return float(a ** b)
        except (ZeroDivisionError, OverflowError, TypeError) as e:
            raise EvalError(f"#DIV/0! or #NUM!: {e}") from None
        raise AssertionError(op)
    elif kind == "call":
        return FUNCTIONS[tree[1]](tree[2], lookup)
    raise AssertionError(kind)
