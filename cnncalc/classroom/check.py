"""Grade a student's filled-in practice workbook, cell by cell, the way a teacher marks a paper.

Each answer cell is marked correct / wrong / missing / not a number against the engine, and also
against the student's own earlier answers ("carry-forward": what the cell should be, given their
values), so one early slip does not make every later cell wrong. A wrong cell whose value matches a
known slip (bias forgotten, kernel flipped, ...) gets the slip's name.

Tolerance: by default a number is judged at the precision it is written, half a unit of its last
decimal (0.47 -> ±0.005, 0.4692 -> ±0.00005), never looser than 2 decimals (±0.005); a formula the
student typed is judged at 2 decimals; a fixed absolute tolerance replaces the rule. The rounding a
student carries from their own earlier answers is added (each earlier answer the cell reads moved by
its rounding error, or by its tolerance when it is wrong, the changes summed), so an answer computed
from unrounded earlier values is not marked down for the digits written earlier.
"""

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
import math
import re
import shutil

import numpy as np

from cnncalc.classroom import evaluate
from cnncalc.recalc import libreoffice as recalc
from cnncalc.sheets.cells import a1, sheet_prefix
from cnncalc.errors import CnncalcError
from cnncalc.companion.explain import num
from cnncalc.classroom.practice import INSTRUCTIONS, NAME_CELL, fingerprint, groups, plan_practice, read_practice_meta, same_given
from cnncalc.classroom.slips import Context, diagnose
from cnncalc.sheets.steps import expand
from cnncalc.recalc.verify import read_back, read_meta
from cnncalc.sheets.workbook import META_SHEET

STATUSES = ("correct", "wrong", "missing", "not a number")
MAX_TOLERANCE = 0.005  # the loosest default: 2 decimals' worth
FORMULA_DECIMALS = 2  # a typed formula shows no digits, so it is judged as if written to 2 decimals
REL_FLOOR = 1e-9  # never tighter than this (relative), so float noise never fails a right answer
MAX_SPREAD_REFS = 256  # past this many inputs, the carried rounding is not computed (tolerance only)


# ---------------------------------------------------------------- reading what a student wrote

_NUMBER = re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")


def decimals(text):
    """Digits after the decimal point as written: '0.47' -> 2, '12' -> 0, '1e-05' -> 5."""
    try:
        return max(0, -Decimal(text).as_tuple().exponent)
    except (InvalidOperation, TypeError):
        return None


def read_number(value):
    """(number, decimals written) from what a cell holds: a number, or text such as '0.47', '0,47', '47%', '−0.5'.

    Raises ValueError when it is not a number (a word, a date, TRUE, an error such as #DIV/0!).
    """
    if isinstance(value, bool):
        raise ValueError(f"{value} is a truth value")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError("not finite")
        return float(value), (0 if isinstance(value, int) else decimals(repr(float(value))))
    if not isinstance(value, str):
        raise ValueError(f"{type(value).__name__} is not a number")
    text = re.sub(r"[\s\u00a0\u202f']", "", value).replace("\u2212", "-")
    percent = text.endswith("%")
    text = text[:-1] if percent else text
    if "," in text and "." in text:  # 1,234.5 or 1.234,5: the last separator is the decimal point
        text = text.replace(",", "") if text.rfind(".") > text.rfind(",") else text.replace(".", "").replace(",", ".")
    elif text.count(",") == 1:  # a decimal comma
        text = text.replace(",", ".")
    if not _NUMBER.match(text):
        raise ValueError(f"{value!r} is not a number")
    number, places = float(text), decimals(text)
    if percent:
        number, places = number / 100, places + 2
    return number, places


def tolerance(places, expected, fixed=None):
    """Half a unit of the last decimal written, at most MAX_TOLERANCE; or the fixed tolerance when given."""
    if fixed is not None:
        return fixed
    tol = MAX_TOLERANCE if places is None else min(0.5 * 10.0 ** -places, MAX_TOLERANCE)
    return max(tol, REL_FLOOR * max(1.0, abs(expected)))


@dataclass
class Entry:
    """One answer cell as written: what it holds (`typed`) and the number read from it."""

    typed: object = None  # a number, text, or the formula text ('=...')
    given: float | None = None
    places: int | None = None
    status: str = "missing"  # "answered", "missing", "not a number", or "pending" (a formula LibreOffice must compute)
    note: str = ""


# ---------------------------------------------------------------- worlds: every cell's value under some answers


class World:
    """Every cell's value: the cells in `answers` from `answer(key)` (no answers: the engine's values everywhere),
    every other formula cell its formula over this world, constants as given, cells outside the plan from `outside`."""

    def __init__(self, reference, answers=(), answer=None, outside=None):
        self.reference, self.answers, self.answer, self.outside = reference, answers, answer, outside
        self.memo, self.trees, self.arrays = {}, {}, {}

    def tree(self, sheet, pos):
        key = (sheet, pos)
        if key not in self.trees:
            self.trees[key] = evaluate.parse(self.reference[sheet][pos].formula, sheet)
        return self.trees[key]

    def lookup(self, sheet, r, c):
        cell = self.reference.get(sheet, {}).get((r, c))
        if cell is None:
            return self.outside(sheet, r, c) if self.outside else None
        if not self.answers or cell.formula is None:
            return cell.value
        key = (sheet, r, c)
        if key not in self.memo:
            self.memo[key] = evaluate.Unknown(f"{key} depends on itself")
            try:
                self.memo[key] = self.answer(key) if key in self.answers else self.formula_value(sheet, (r, c))
            except (evaluate.Unknown, evaluate.EvalError) as e:
                self.memo[key] = e
        v = self.memo[key]
        if isinstance(v, Exception):
            raise v
        return v

    def formula_value(self, sheet, pos, override=None):
        """The cell's reference formula over this world (an override {key: value} replaces some inputs)."""
        look = self.lookup if not override else (lambda s, r, c: override.get((s, r, c)) if (s, r, c) in override else self.lookup(s, r, c))
        return evaluate.evaluate(self.tree(sheet, pos), look)

    def array(self, sheet, panel):
        """The panel's tensor in this world, NaN where a value is unknown."""
        key = (sheet, id(panel))
        if key not in self.arrays:
            out = np.full(panel.placement.shape, np.nan)
            for idx in panel.placement.indices():
                try:
                    v = self.lookup(sheet, *panel.placement.pos(idx))
                    out[idx] = v if isinstance(v, (int, float)) else np.nan
                except (evaluate.Unknown, evaluate.EvalError):
                    pass
            self.arrays[key] = out
        return self.arrays[key]


# ---------------------------------------------------------------- marks


@dataclass
class Mark:
    """The mark of one answer cell."""

    answer: object  # practice.Answer
    status: str  # one of STATUSES
    typed: object = None
    given: float | None = None
    tolerance: float | None = None
    own: float | None = None  # what the cell should be, given the student's own earlier answers
    consistent: bool | None = None  # given matches own (None: cannot tell, an earlier answer is missing)
    slip: str | None = None
    expansion: str = ""  # how the expected value is computed, with the numbers written in
    own_expansion: str | None = None  # the same with the student's own earlier values, when they differ
    note: str = ""

    @property
    def address(self):
        return self.answer.address

    @property
    def carried(self):
        """Wrong against the engine, but right given the student's own earlier answers (carry-forward credit)."""
        return self.status == "wrong" and bool(self.consistent)

    @property
    def credit(self):
        return self.status == "correct" or self.carried


@dataclass
class Grade:
    path: str
    name: str | None
    model: str
    marks: list
    groups: list
    fixed_tolerance: float | None = None
    warnings: list = field(default_factory=list)

    @property
    def total(self):
        return len(self.marks)

    @property
    def score(self):
        return sum(m.credit for m in self.marks)

    def count(self, status):
        return sum(m.status == status for m in self.marks)

    @property
    def ok(self):
        return self.total > 0 and self.count("correct") == self.total

    def per_group(self):
        """One row a step: counts of each status, carried forward, consistent with own work, marks."""
        rows = []
        for g in self.groups:
            ms = [m for m in self.marks if m.answer.group == g]
            if ms:
                rows.append({"step": g, "answers": len(ms), **{s: sum(m.status == s for m in ms) for s in STATUSES},
                             "carried forward": sum(m.carried for m in ms), "consistent": sum(bool(m.consistent) for m in ms),
                             "marks": sum(m.credit for m in ms)})
        return rows


def check(path, fixed_tolerance=None, timeout=900):
    """Grade the practice workbook at `path`; returns a Grade. Raises CnncalcError for a file that is not one."""
    try:
        return _check(str(path), fixed_tolerance, timeout)
    except (CnncalcError, KeyboardInterrupt):
        raise
    except Exception as e:  # a student's file must never crash the grading of a class; --traceback shows the cause
        raise CnncalcError(f"{path} could not be graded. Expected a practice workbook cnncalc can read. "
                           f"Received a file that made the grader fail ({type(e).__name__}: {e}); run with --traceback to report it") from e


def _check(path, fixed_tolerance, timeout):
    if fixed_tolerance is not None and not (math.isfinite(fixed_tolerance) and fixed_tolerance >= 0):
        raise CnncalcError(f"Invalid value for --tolerance. Expected a number >= 0. Received {fixed_tolerance!r}")
    arch, scale, n = read_meta(path)
    values = recalc.read_values(path)
    info = read_practice_meta(values.get(META_SHEET, {}), path)
    model, raw = read_back(path, values, arch, scale, n)
    plan = plan_practice(model, raw, scale, blank=info["blank"])
    formulas = recalc.read_formulas(path)
    grade = Grade(path, _name(values), arch.get("name", "sequential"), [], groups(plan), fixed_tolerance)
    size = float(np.sum(np.abs(raw)) + sum(np.sum(np.abs(w)) for layer in model.layers for w in layer.weights.values()))
    if info["given"] and not same_given(info["given"], fingerprint(model, raw), size):
        grade.warnings.append("the given numbers (inputs or weights) were changed after the workbook was made; "
                              "the answers are checked against the numbers now in the file")
    entries = read_entries(plan, values, formulas, path, timeout, grade.warnings)
    extra = _extra_cells(plan, values)
    if extra:
        grade.warnings.append(f"{len(extra)} cell(s) outside the answer cells hold something (ignored), e.g. {extra[0]}")
    grader = Grader(plan, entries, values, scale, fixed_tolerance)
    grade.marks = [grader.mark(a) for a in plan.answers]
    return grade


def _name(values):
    name = values.get(INSTRUCTIONS, {}).get(NAME_CELL)
    return str(name).strip() or None if name is not None else None


def _extra_cells(plan, values):
    """Addresses of non-empty cells on the sample sheets that the practice workbook left empty."""
    out = []
    for sheet in plan.sheets:
        if sheet.name in plan.reference and sheet.name.startswith("Sample "):
            planned = sheet.cells()
            out += [sheet_prefix(sheet.name, None) + a1(*pos) for pos in sorted(values.get(sheet.name, {})) if pos not in planned]
    return out


def read_entries(plan, values, formulas, path, timeout, warnings):
    """{(sheet, row, col): Entry} for every answer cell; formulas without a cached value are computed here,
    or by LibreOffice (once, for the whole file) when they go beyond cnncalc's formula subset."""
    keys = {(a.sheet, *a.pos) for a in plan.answers}
    entries = {}
    for sheet, r, c in keys:
        f = formulas.get(sheet, {}).get((r, c))
        v = values.get(sheet, {}).get((r, c))
        if f is not None and (v is None or isinstance(v, str) and v.startswith("=")):
            entries[(sheet, r, c)] = Entry(f, status="pending")
        else:
            entries[(sheet, r, c)] = _entry(f if f is not None else v, v, FORMULA_DECIMALS if f is not None else None)
    pending = [k for k, e in entries.items() if e.status == "pending"]
    if pending:
        _compute_formulas(plan, entries, pending, values, formulas)
    unsupported = [k for k, e in entries.items() if e.status == "pending"]
    if unsupported:
        out = recalc.recalculate(path, timeout=timeout)
        try:
            again = recalc.read_values(out)
        finally:
            shutil.rmtree(out.parent, ignore_errors=True)
        for key in unsupported:
            e = entries[key]
            entries[key] = _entry(e.typed, again.get(key[0], {}).get(key[1:]), FORMULA_DECIMALS)
        warnings.append(f"LibreOffice computed {len(unsupported)} formula(s) you typed, e.g. {sheet_prefix(unsupported[0][0], None)}{a1(*unsupported[0][1:])}")
    return entries


def _entry(typed, value, places=None):
    if value is None or (isinstance(value, str) and not value.strip()):
        return Entry(typed, status="missing")
    try:
        number, written = read_number(value)
    except ValueError as e:
        return Entry(typed, status="not a number", note=str(e))
    return Entry(typed, number, written if places is None else places, "answered")


def _compute_formulas(plan, entries, pending, values, formulas):
    """Evaluate the student's own formulas (without a cached value) where cnncalc's evaluator can."""
    busy = set()

    def resolve(key):
        e = entries[key]
        if e.status != "pending":
            return e
        if key in busy:
            raise evaluate.EvalError("a circular reference")
        busy.add(key)
        try:
            v = evaluate.evaluate(evaluate.parse(e.typed, key[0]), student_lookup)
            entries[key] = _entry(e.typed, v, FORMULA_DECIMALS)
        except evaluate.EvalError as err:
            entries[key] = Entry(e.typed, status="not a number", note=f"the formula gives an error ({err})")
        except (evaluate.Unsupported, evaluate.Unknown, RecursionError):
            raise evaluate.Unsupported(key)
        finally:
            busy.discard(key)
        return entries[key]

    def answer(key):
        e = resolve(key)
        if e.status != "answered":
            raise evaluate.Unknown(key)
        return e.given

    def outside(sheet, r, c):  # a cell of the student's own (scratch work): its formula, else its value
        f = formulas.get(sheet, {}).get((r, c))
        if f is not None:
            return evaluate.evaluate(evaluate.parse(f, sheet), student_lookup)
        return values.get(sheet, {}).get((r, c))

    world = World(plan.reference, entries, answer, outside)

    def student_lookup(sheet, r, c):
        key = (sheet, r, c)
        if key in entries:  # as a spreadsheet reads it: empty is 0, text is #VALUE!
            e = resolve(key)
            if e.status == "missing":
                return None
            if e.status != "answered":
                raise evaluate.EvalError("#VALUE!")
            return e.given
        return world.lookup(sheet, r, c)

    for key in pending:
        try:
            resolve(key)
        except evaluate.Unsupported:
            pass  # stays pending: LibreOffice computes it


class Grader:
    """Marks answer cells: against the engine, against the student's own work, and for known slips."""

    def __init__(self, plan, entries, values, scale, fixed):
        self.plan, self.entries, self.fixed = plan, entries, fixed
        self.scale_text, self.factor = scale, plan_factor(scale)
        self.reference = World(plan.reference)

        def answer(key):
            e = entries[key]
            if e.status != "answered":
                raise evaluate.Unknown(key)
            return e.given

        def outside(sheet, r, c):
            v = values.get(sheet, {}).get((r, c))
            return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

        self.own = World(plan.reference, entries, answer, outside)
        self.panels = {}  # (sheet, row, col) -> panel, to find which panels a formula reads
        for sheet in plan.sheets:
            for panel in getattr(sheet, "panels", []):
                for idx in panel.placement.indices():
                    self.panels[(sheet.name, *panel.placement.pos(idx))] = panel

    def mark(self, a):
        key = (a.sheet, *a.pos)
        e = self.entries[key]
        m = Mark(a, e.status if e.status != "answered" else "wrong", e.typed, e.given, note=e.note)
        tree = self.reference.tree(a.sheet, a.pos)
        m.expansion = _expansion(a.formula, a.sheet, self.reference.lookup, a.expected)
        try:
            m.own = self.own.formula_value(a.sheet, a.pos)
        except (evaluate.Unknown, evaluate.EvalError):
            m.own = None
        if m.own is not None and abs(m.own - a.expected) > 1e-9 * max(1.0, abs(a.expected)):
            m.own_expansion = _expansion(a.formula, a.sheet, self.own.lookup, m.own)
        if e.status != "answered":
            m.tolerance = tolerance(None, a.expected, self.fixed)
            return m
        spread = self.spread(a, tree) if a.panel.step != "class" else 0.0
        m.tolerance = tolerance(e.places, a.expected, self.fixed) + spread
        slack = m.tolerance * (1 + 1e-9)
        if abs(e.given - a.expected) <= slack:
            m.status = "correct"
        if m.own is not None:
            m.consistent = abs(e.given - m.own) <= slack
        if m.status == "wrong" and not m.consistent:
            m.slip = self.diagnose(a, tree, e.given, m.tolerance, m.own)
        return m

    def spread(self, a, tree):
        """How far the student's own rounding carries into this cell: each earlier answer it reads is moved by its
        rounding (|given - expected| when it is right, as they may carry the unrounded value; its tolerance when
        it is wrong), and the changes are summed."""
        refs = [k for k in dict.fromkeys(evaluate.references(tree)) if k in self.entries and self.entries[k].status == "answered"]
        if not refs or len(refs) > MAX_SPREAD_REFS or self.fixed is not None:
            return 0.0
        try:
            base = self.own.formula_value(a.sheet, a.pos)
            total = 0.0
            for k in refs:
                e, expected = self.entries[k], float(self.plan.reference[k[0]][k[1:]].value)
                off, tol = abs(e.given - expected), tolerance(e.places, expected)
                total += abs(self.own.formula_value(a.sheet, a.pos, {k: e.given + (off if off <= tol else tol)}) - base)
            return total
        except (evaluate.Unknown, evaluate.EvalError):
            return 0.0

    def diagnose(self, a, tree, given, tol, own):
        """The first known slip that explains `given`, recomputed over the student's own values, then the engine's."""
        worlds = ([(self.own, own)] if own is not None else []) + [(self.reference, a.expected)]
        for world, correct in worlds:
            ctx = self.context(a, tree, world, correct)
            name = diagnose(ctx, given, tol)
            if name:
                return name
        return None

    def context(self, a, tree, world, correct):
        inputs = self.inputs(a.sheet, tree)
        arrays = [(p, world.array(a.sheet, p)) for p in inputs]
        extra = {}
        if a.panel.step == "softmax":
            exp = next((p for p in self.plan.sheet(a.sheet).panels if p.layer is a.panel.layer and p.step == "softmax_exp"), None)
            if exp is not None:
                z_panel = self.inputs(a.sheet, evaluate.parse(exp.formula((0,)), a.sheet))[0]
                extra["z"] = world.array(a.sheet, z_panel)
        first = inputs[0] if inputs else None
        source = self._padded_source(a.sheet, first) if first is not None and first.step == "padded" else first
        shape = source.placement.shape if source is not None else None
        raw = self.plan.sheet(a.sheet).panels[0].values
        return Context(a, correct, arrays, world.lookup, tree, self.factor, raw, shape,
                       source is not None and source.step == "scaled", self.scale_text, extra)

    def inputs(self, sheet, tree):
        """The same-sheet panels a formula reads, in the order it reads them."""
        out = []
        for s, r, c in evaluate.references(tree):
            p = self.panels.get((s, r, c)) if s == sheet else None
            if p is not None and all(p is not q for q in out):
                out.append(p)
        return out

    def _padded_source(self, sheet, padded):
        """The panel a zero-padded panel copies (the layer's input before padding)."""
        for idx in padded.placement.indices():
            f = padded.formula(idx)
            if f is not None:
                return self.inputs(sheet, evaluate.parse(f, sheet))[0]
        raise AssertionError(f"zero-padded panel {padded.title!r} copies nothing")


def plan_factor(scale):
    from cnncalc.inputs import parse_scale

    return parse_scale(None if scale in (None, "1") else scale)


def _expansion(formula, sheet, lookup, value):
    """'0.125×0.6502779 + … + (−0.1108655) = 0.4691745': the formula with a world's numbers written in."""
    try:
        return f"{expand(formula, sheet, lambda s, rc: lookup(s, *rc))} = {num(value)}"
    except (evaluate.Unknown, evaluate.EvalError, TypeError, ValueError):
        return ""


# ---------------------------------------------------------------- reports


def _num(v):
    return "" if v is None else num(v)


def _given(m):
    if m.status == "missing":
        return "(empty)"
    if m.status == "not a number":
        return repr(m.typed) if not isinstance(m.typed, str) else f'"{m.typed}"'
    return _num(m.given) + (f"  ({m.typed})" if isinstance(m.typed, str) else "")


def _consistent(m):
    return "—" if m.consistent is None else "yes" if m.consistent else "no"


def format_grade(grade, cells=25):
    """The report a student (or teacher) reads: per-step table, score, then each cell to look at again."""
    from tabulate import tabulate

    who = grade.name or "(no name written)"
    rule = f"±{grade.fixed_tolerance:g}" if grade.fixed_tolerance is not None else "at the precision you wrote each number (at most ±0.005)"
    lines = [f"checked {grade.path}: {who}, {grade.total} answer cells of {grade.model}, judged {rule}"]
    for w in grade.warnings:
        lines.append(f"note: {w}")
    rows = [(r["step"], r["answers"], r["correct"], r["carried forward"], r["wrong"] - r["carried forward"], r["missing"],
             r["not a number"], r["consistent"], f"{r['marks']}/{r['answers']}") for r in grade.per_group()]
    lines.append(tabulate(rows, headers=["step", "cells", "correct", "carried fwd", "wrong", "missing", "not a number",
                                         "consistent w/ own work", "marks"], disable_numparse=True))
    c = grade.count("correct")
    lines.append(f"score: {grade.score}/{grade.total} ({100 * grade.score / max(grade.total, 1):.0f}%) with carry-forward credit; "
                 f"{c}/{grade.total} match the reference")
    bad = [m for m in grade.marks if not m.credit]
    if bad:
        lines.append("cells to look at again:")
        table = [(m.address, m.answer.group, _num(m.answer.expected), _given(m), _consistent(m), m.slip or m.note) for m in bad[:cells]]
        lines.append(tabulate(table, headers=["cell", "step", "expected", "given", "consistent w/ own work", "slip"], disable_numparse=True))
        if len(bad) > cells:
            lines.append(f"… and {len(bad) - cells} more (--json lists every cell)")
    carried = [m.address for m in grade.marks if m.carried]
    if carried:
        shown = ", ".join(carried[:8]) + (f", … ({len(carried) - 8} more)" if len(carried) > 8 else "")
        lines.append(f"carried forward: {len(carried)} cell(s) differ from the reference only because of an earlier answer, "
                     f"and are right from your own earlier answers: {shown}")
    lines.append("OK: every answer is right" if grade.ok else
                 f"{grade.count('wrong')} wrong ({sum(m.carried for m in grade.marks)} of them carried forward), "
                 f"{grade.count('missing')} missing, {grade.count('not a number')} not a number")
    return "\n".join(lines)


def grade_dict(grade):
    """The same data for --json."""
    def jsonable(v):
        return v if v is None or isinstance(v, (int, float, str, bool)) else str(v)

    return {
        "file": grade.path, "name": grade.name, "model": grade.model, "answers": grade.total, "score": grade.score,
        "correct": grade.count("correct"), "ok": grade.ok, "tolerance": grade.fixed_tolerance, "warnings": grade.warnings,
        "steps": grade.per_group(),
        "cells": [{"cell": m.address, "step": m.answer.group, "kind": m.answer.panel.step, "index": list(m.answer.idx),
                   "status": m.status, "expected": m.answer.expected, "given": m.given, "typed": jsonable(m.typed),
                   "tolerance": m.tolerance, "own": m.own, "consistent": m.consistent, "carried_forward": m.carried,
                   "slip": m.slip, "how": m.expansion, "how_with_your_values": m.own_expansion, "note": m.note or None}
                  for m in grade.marks],
    }


# ---------------------------------------------------------------- the graded copy

FILLS = {"correct": "C6EFCE", "carried": "FFEB9C", "wrong": "FFC7CE", "missing": "F4CCCC", "not a number": "FFC7CE"}


def comment_text(m):
    """What the comment on a cell says: expected, given, own-work check, slip, and how it is computed."""
    lines = [f"Expected {_num(m.answer.expected)}", f"You wrote {_given(m)}" + (f" ({m.note})" if m.note else "")]
    if m.consistent is True:
        lines.append(f"Consistent with your own earlier answers (they give {_num(m.own)}): carried forward")
    elif m.consistent is False:
        lines.append(f"Your own earlier answers give {_num(m.own)}")
    if m.slip:
        lines.append(f"Slip: {m.slip}")
    if m.expansion:
        lines.append(f"How: {m.expansion}")
    if m.own_expansion and m.status != "missing":
        lines.append(f"With your values: {m.own_expansion}")
    return "\n".join(lines)


def write_graded(grade, out, force=False):
    """A copy of the student's file with green/amber/red fills on the answer cells, a comment on each one not
    right, and a "Grade" sheet in front; written atomically, never over an existing file without force."""
    import openpyxl
    from openpyxl.comments import Comment
    from openpyxl.styles import PatternFill

    from cnncalc.files import atomic_output

    with atomic_output(out, force) as tmp:
        try:
            wb = openpyxl.load_workbook(grade.path)
        except Exception as e:  # openpyxl raises many kinds for a damaged file
            raise CnncalcError(f"Cannot copy {grade.path} for grading. Expected an .xlsx openpyxl can read. Received ({type(e).__name__}: {e})") from None
        for m in grade.marks:
            cell = wb[m.answer.sheet].cell(m.answer.pos[0] + 1, m.answer.pos[1] + 1)
            color = FILLS["carried" if m.carried else m.status]
            cell.fill = PatternFill("solid", start_color=color, end_color=color)
            if m.status != "correct":
                text = comment_text(m)
                cell.comment = Comment(text, "cnncalc check", width=420, height=40 + 18 * text.count("\n") + len(text) // 4)
        ws = wb.create_sheet("Grade", 0)
        for row in grade_rows(grade):
            ws.append(row)
        for row in ws.iter_rows():  # openpyxl makes any "=..." a formula: a student's name must stay text
            for cell in row:
                if cell.data_type == "f":
                    cell.data_type = "s"
        ws.column_dimensions["A"].width = 28
        wb.active = 0
        for sheet in wb.worksheets[1:]:
            sheet.sheet_view.tabSelected = False
        wb.save(tmp)
    return out


def grade_rows(grade):
    """The Grade sheet: who, score, then the per-step table."""
    rows = [["cnncalc check"], ["name", grade.name or ""], ["score", grade.score, "of", grade.total],
            ["match the reference", grade.count("correct")], [],
            ["step", "cells", "correct", "carried forward", "wrong", "missing", "not a number", "marks"]]
    for r in grade.per_group():
        rows.append([r["step"], r["answers"], r["correct"], r["carried forward"], r["wrong"] - r["carried forward"],
                     r["missing"], r["not a number"], r["marks"]])
    rows += [[], ["green: right; amber: wrong, but right from your own earlier answers; red: wrong or empty."],
             ["Each cell not right has a comment: the expected value, how it is computed, and the slip if one is recognised."]]
    return rows


# ---------------------------------------------------------------- a class at once


@dataclass
class Result:
    """One file of a class: its grade, or why it could not be graded."""

    path: str
    grade: Grade | None = None
    error: str | None = None

    @property
    def exit_code(self):
        return 2 if self.error else 0 if self.grade.ok else 1


def check_files(paths, fixed_tolerance=None):
    """Grade every file; a file that cannot be graded is reported in its Result, and the rest go on."""
    results = []
    for path in paths:
        try:
            results.append(Result(str(path), check(path, fixed_tolerance)))
        except CnncalcError as e:
            results.append(Result(str(path), error=str(e)))
    return results


def class_table(results):
    """(headers, rows): name, file, score, answers, %, correct, each step's marks, error."""
    steps = list(dict.fromkeys(g for r in results if r.grade for g in r.grade.groups))
    headers = ["name", "file", "score", "answers", "percent", "match reference", *steps, "error"]
    rows = []
    for r in results:
        if r.error:
            rows.append(["", r.path, "", "", "", "", *([""] * len(steps)), r.error])
            continue
        g = r.grade
        marks = {row["step"]: f"{row['marks']}/{row['answers']}" for row in g.per_group()}
        rows.append([g.name or "", r.path, g.score, g.total, f"{100 * g.score / max(g.total, 1):.0f}", g.count("correct"),
                     *(marks.get(s, "") for s in steps), ""])
    return headers, rows


def write_csv(results, path, force=False):
    import csv

    from cnncalc.files import atomic_output

    headers, rows = class_table(results)
    with atomic_output(path, force) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(headers)
            w.writerows([[_csv_text(v) for v in row] for row in rows])
    return path


def _csv_text(value):
    """Text a spreadsheet would take for a formula (=, +, -, @ first) gets a leading ' so it stays text (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
