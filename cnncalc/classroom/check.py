"""Grade a student's filled-in practice workbook, cell by cell, the way a teacher marks a paper.

Each answer cell is marked correct / wrong / missing / not a number against the engine, and also
against the student's own earlier answers ("carry-forward": what the cell should be, given their
values), so one early slip does not make every later cell wrong. A wrong cell whose value matches a
known slip (bias forgotten, kernel flipped, ...) gets the slip's name: the slip that fits best, and the
same one through a panel where one slip explains many cells.

Tolerance: by default a number is judged at the precision it is written, half a unit of its last
decimal (0.47 -> ±0.005, 0.4692 -> ±0.00005), never looser than 2 decimals (±0.005); a formula the
student typed has full precision, so it is judged by the rounding of the numbers it holds and reads
(each moved by half a unit of its last decimal, the changes summed); a fixed absolute tolerance replaces
the rule. The rounding a student carries from their own earlier answers is added (each earlier answer the
cell reads moved by its rounding error, or by its tolerance when it is wrong, the changes summed), so an
answer computed from unrounded earlier values is not marked down for the digits written earlier.

A cell wrong against the engine but right from the student's own earlier answers is "carried forward"
and gets the credit; a student whose every answer gets credit passes (exit 0).
"""

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
import math
import os
import re
import shutil

import numpy as np

from cnncalc.classroom import evaluate
from cnncalc.recalc import libreoffice as recalc
from cnncalc.sheets.cells import a1, sheet_prefix
from cnncalc.errors import CnncalcError, shown
from cnncalc.companion.explain import num
from cnncalc.classroom.practice import (INSTRUCTIONS, NAME_CELL, exercise_digest, fingerprint, groups, plan_practice, read_practice_meta,
                                        same_given, steps_left_out)
from cnncalc.classroom.slips import Context, matches
from cnncalc.sheets.steps import expand
from cnncalc.recalc.verify import check_arch, read_back, read_meta
from cnncalc.classroom.practice_train import (TRAIN_META_ROW, given_numbers, is_training_practice, plan_practice_train,
                                              train_steps_left_out)
from cnncalc.sheets.training import read_back_training, read_settings
from cnncalc.sheets.workbook import META_SHEET

STATUSES = ("correct", "wrong", "missing", "not a number")
MAX_TOLERANCE = 0.005  # the loosest default: 2 decimals' worth
REL_FLOOR = 1e-9  # never tighter than this (relative), so float noise never fails a right answer
TRAIN_UNIT = 1e-6  # a training step's floor: REL_FLOOR × max(1e-6, |expected|), as Adam's v is often ~1e-10
MAX_SPREAD_REFS = 256  # past this many inputs, the carried rounding is not computed (tolerance only)
MAX_MERGED_CELLS = 100_000  # openpyxl makes an object for every merged cell when it opens a workbook to copy it
AS_MADE, CHANGED, NOT_CHECKED = "as made", "changed", "not checked"  # Grade.exercise: whether the exercise is the one set


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


def tolerance(places, expected, fixed=None, unit=1.0):
    """Half a unit of the last decimal written, at most MAX_TOLERANCE; or the fixed tolerance when given. Never below
    REL_FLOOR × max(unit, |expected|): a training step's small gradients take a smaller unit (TRAIN_UNIT)."""
    if fixed is not None:
        return fixed
    tol = MAX_TOLERANCE if places is None else min(0.5 * 10.0 ** -places, MAX_TOLERANCE)
    return max(tol, REL_FLOOR * max(unit, abs(expected)))


@dataclass
class Entry:
    """One answer cell as written: what it holds (`typed`) and the number read from it."""

    typed: object = None  # a number, text, or the formula text ('=...')
    given: float | None = None
    places: int | None = None  # decimals written (None for a formula: its value has full precision)
    status: str = "missing"  # "answered", "missing", "not a number", or "pending" (a formula LibreOffice must compute)
    note: str = ""
    formula: bool = False  # typed is a formula the student wrote
    read_as: str = ""  # text read as a number, e.g. '"0,47" read as 0.47'


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
    slip: str | None = None  # the slip named, as it is in this cell
    slip_kind: str | None = None  # the same slip in general (Slip.kind), for counting a pattern
    matches: list = field(default_factory=list, repr=False)  # every slip that fits, best first (slips.matches)
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
    exercise: str = AS_MADE  # AS_MADE, CHANGED (what the hidden sheet records was edited) or NOT_CHECKED (an older file)
    exercise_note: str = ""  # what was found, for CHANGED and NOT_CHECKED
    merged: dict = field(default_factory=dict)  # {sheet: [(top, left, bottom, right), ...]} merged areas, 0-based

    @property
    def total(self):
        return len(self.marks)

    @property
    def score(self):
        return sum(m.credit for m in self.marks)

    def count(self, status):
        return sum(m.status == status for m in self.marks)

    @property
    def carried(self):
        return sum(m.carried for m in self.marks)

    @property
    def ok(self):
        """Every answer gets credit (right, or carried forward from the student's own earlier answers), in the
        exercise that was set."""
        return self.total > 0 and self.score == self.total and self.exercise != CHANGED

    def tally(self):
        """The verdicts in words: '110 right, 1 carried forward, 1 wrong, 0 missing, 0 not a number'."""
        return (f"{self.count('correct')} right, {self.carried} carried forward, {self.count('wrong') - self.carried} wrong, "
                f"{self.count('missing')} missing, {self.count('not a number')} not a number")

    def patterns(self):
        """The slips named, one a pattern: [{sheet, step, panel, kind, slip, cells}] where `cells` are the addresses of a
        panel's cells that slip was named in, and `slip` its words in them (its general name, `kind`, where they differ)."""
        out = {}
        for m in self.marks:
            if m.slip:
                key = (m.answer.sheet, id(m.answer.panel), m.slip_kind)
                if key not in out:
                    out[key] = {"sheet": m.answer.sheet, "step": m.answer.group, "panel": m.answer.panel.title, "kind": m.slip_kind,
                                "slip": m.slip, "cells": []}
                elif out[key]["slip"] != m.slip:  # its words differ from cell to cell (e.g. the window's rows): its general name
                    out[key]["slip"] = m.slip_kind
                out[key]["cells"].append(m.address)
        return list(out.values())

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
    arch, scale, n, maps_across = read_meta(path)
    values = recalc.read_values(path)
    meta = values.get(META_SHEET, {})
    formulas = recalc.read_formulas(path)
    if is_training_practice(meta):  # a training step (practice --train): the job read back as verify does
        info = read_practice_meta(meta, path, TRAIN_META_ROW)
        model, _ = check_arch(path, arch, n)
        job = read_back_training(path, values, model, scale if scale != "1" else None, n, maps_across, read_settings(meta, path))
        plan = plan_practice_train(job, info["blank"], maps_across, recorded_in=path)
        raw, left_out = given_numbers(job), train_steps_left_out(plan, formulas)
        if left_out:  # the hidden list was shortened: grade every step the file leaves to the student
            plan = plan_practice_train(job, plan.blank + left_out, maps_across)
    else:
        info = read_practice_meta(meta, path)
        model, raw = read_back(path, values, arch, scale, n, maps_across)
        plan = plan_practice(model, raw, scale, blank=info["blank"], maps_across=maps_across, recorded_in=path)
        left_out = steps_left_out(plan, formulas)
        if left_out:  # the hidden list was shortened: grade every step the file leaves to the student
            plan = plan_practice(model, raw, scale, blank=plan.blank + left_out, maps_across=maps_across)
    grade = Grade(path, _name(values), str(arch.get("name", "sequential")), [], getattr(plan, "groups", None) or groups(plan), fixed_tolerance)
    grade.exercise, grade.exercise_note = exercise_status(info, meta, left_out)
    size = float(np.sum(np.abs(raw)) + sum(np.sum(np.abs(w)) for layer in model.layers for w in layer.weights.values()))
    if info["given"] and not same_given(info["given"], fingerprint(model, raw), size):
        grade.warnings.append("the given numbers (inputs or weights) were changed after the workbook was made; "
                              "the answers are checked against the numbers now in the file")
    entries = read_entries(plan, values, formulas, path, timeout, grade.warnings)
    grade.merged = merged_areas(path)
    _note_merged(grade, entries)
    extra = _extra_cells(plan, values)
    if extra:
        grade.warnings.append(f"{len(extra)} cell(s) outside the answer cells hold something (ignored), e.g. {extra[0]}")
    grader = Grader(plan, entries, values, scale, fixed_tolerance)
    grade.marks = [grader.mark(a) for a in plan.answers]
    name_patterns(grade.marks)
    texts = [(a.address, entries[(a.sheet, *a.pos)].read_as) for a in plan.answers if entries[(a.sheet, *a.pos)].read_as]
    if texts:
        grade.warnings.append(f"{len(texts)} answer(s) typed as text were read as numbers, e.g. {texts[0][0]} {texts[0][1]}"
                              + (f", {texts[1][0]} {texts[1][1]}" if len(texts) > 1 else "")
                              + ": type numbers as numbers (0.47, not '0,47' or 47%), so that a spreadsheet computes with them")
    return grade


def _name(values):
    name = values.get(INSTRUCTIONS, {}).get(NAME_CELL)
    return str(name).strip() or None if name is not None else None


def exercise_status(info, meta, left_out):
    """(Grade.exercise, note): whether the exercise in the file is the one that was set. Two checks: the fingerprint
    of the hidden sheet (practice.exercise_digest), and the answer cells against the hidden list of steps to compute
    (`left_out`: given steps the file leaves empty). A workbook made before fingerprints has only the second."""
    notes = []
    if left_out:
        notes.append(f"its hidden list of steps to compute leaves out {', '.join(left_out)}, whose cells are empty or typed in "
                     "this file; they are graded as asked")
    if info["digest"] is not None and info["digest"] != exercise_digest(meta, info["exercise_row"]):
        notes.append(f"what its hidden {META_SHEET} sheet records (the steps to compute, the seed, the model) was edited after "
                     "the workbook was made")
    if notes:
        return CHANGED, "; ".join(notes)
    if info["digest"] is None:
        return NOT_CHECKED, ("made by an earlier cnncalc, without a fingerprint of the exercise: an edit of its hidden sheet "
                             "could not be checked (its answer cells match its list of steps to compute)")
    return AS_MADE, ""


def merged_areas(path):
    """{sheet: [(top, left, bottom, right), ...]}, 0-based and inclusive, of every merged area in the workbook.

    Read from each sheet's XML (<mergeCell ref="L4:M5"/>) in one streamed pass, because openpyxl's read-only mode,
    which reads the cells, leaves merges out.
    """
    import pyexpat
    import zipfile

    from openpyxl.utils.cell import range_boundaries

    out = {}
    with zipfile.ZipFile(path) as zf:  # sizes already checked (verify.sheet_names) before the cells were read
        for name, part in recalc._sheet_paths(zf):
            areas = []

            def start(tag, attrs, areas=areas):
                if tag.rpartition(":")[2].rpartition("}")[2] == "mergeCell":
                    try:
                        left, top, right, bottom = range_boundaries(attrs.get("ref", ""))
                    except (ValueError, TypeError):
                        return  # not a range: openpyxl ignores it too, or refuses the file when copying it
                    if None not in (left, top, right, bottom):
                        areas.append((top - 1, left - 1, bottom - 1, right - 1))

            def refuse(*_):
                raise ValueError("a document type declaration")  # entities could be declared there: never expanded

            parser = pyexpat.ParserCreate()
            parser.StartElementHandler = start
            parser.StartDoctypeDeclHandler = parser.EntityDeclHandler = refuse
            try:
                with zf.open(part) as stream:
                    parser.ParseFile(stream)
            except (pyexpat.ExpatError, ValueError, KeyError, OSError, zipfile.BadZipFile):
                pass  # the cells were read; a merge list that cannot be is left out here, and copying the file reports it
            if areas:
                out[name] = areas
    return out


def merged_cell_count(merged):
    return sum((b - t + 1) * (r - l + 1) for areas in merged.values() for t, l, b, r in areas)


def _note_merged(grade, entries):
    """Answer cells under a merged area keep their own mark (the cells a merge covers read as empty); each gets a
    note, and the grade one warning."""
    covers = []
    for sheet, areas in grade.merged.items():
        answers = {k[1:]: k for k in entries if k[0] == sheet}
        for top, left, bottom, right in areas:
            area = (bottom - top + 1) * (right - left + 1)
            inside = ([answers[(r, c)] for r in range(top, bottom + 1) for c in range(left, right + 1) if (r, c) in answers]
                      if area <= len(answers) else [k for pos, k in answers.items() if top <= pos[0] <= bottom and left <= pos[1] <= right])
            if not inside:
                continue
            ref = sheet_prefix(sheet, None) + a1(top, left) + ":" + a1(bottom, right)
            covers.append(ref)
            for key in inside:
                e = entries[key]
                where = (f"the first cell of the merged cells {ref}" if key[1:] == (top, left) else f"covered by the merged cells {ref}"
                         + (", so it reads as empty" if e.status == "missing" else ""))
                e.note = "; ".join(filter(None, [e.note, where]))
    if covers:
        grade.warnings.append(f"{len(covers)} merged area(s) cover answer cells, e.g. {covers[0]}: each answer cell is marked on its own "
                              "(the cells a merge covers read as empty), and the graded copy unmerges them")


def _extra_cells(plan, values):
    """Addresses of non-empty cells on the sample sheets (a training exercise's step sheet) that the practice workbook left empty."""
    out = []
    for sheet in plan.sheets:
        if sheet.name in plan.reference and sheet.name.startswith(("Sample ", "Step ")):
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
            entries[(sheet, r, c)] = Entry(f, status="pending", formula=True)
        else:
            entries[(sheet, r, c)] = _entry(f if f is not None else v, v, formula=f is not None)
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
            entries[key] = _entry(e.typed, again.get(key[0], {}).get(key[1:]), formula=True)
        warnings.append(f"LibreOffice computed {len(unsupported)} formula(s) you typed, e.g. {sheet_prefix(unsupported[0][0], None)}{a1(*unsupported[0][1:])}")
    return entries


def _entry(typed, value, formula=False):
    if value is None or (isinstance(value, str) and not value.strip()):
        return Entry(typed, status="missing", formula=formula)
    try:
        number, written = read_number(value)
    except ValueError as e:
        return Entry(typed, status="not a number", note=str(e), formula=formula)
    read_as = f'"{value}" read as {num(number)}' if isinstance(value, str) else ""
    return Entry(typed, number, None if formula else written, "answered", formula=formula, read_as=read_as)


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
            entries[key] = _entry(e.typed, v, formula=True)
        except evaluate.EvalError as err:
            entries[key] = Entry(e.typed, status="not a number", note=f"the formula gives an error ({err})", formula=True)
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
        self.unit = TRAIN_UNIT if hasattr(plan, "learning_rate") else 1.0  # a training step's gradients are small numbers
        self.reference = World(plan.reference)
        self.tolerances = {}  # (sheet, row, col) -> the tolerance a cell was marked with, for the cells that read it

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
        m = Mark(a, e.status if e.status != "answered" else "wrong", e.typed, e.given, note="; ".join(filter(None, [e.note, e.read_as])))
        tree = self.reference.tree(a.sheet, a.pos)
        m.expansion = _expansion(a.formula, a.sheet, self.reference.lookup, a.expected)
        try:
            m.own = self.own.formula_value(a.sheet, a.pos)
        except (evaluate.Unknown, evaluate.EvalError):
            m.own = None
        if m.own is not None and abs(m.own - a.expected) > 1e-9 * max(1.0, abs(a.expected)):
            m.own_expansion = _expansion(a.formula, a.sheet, self.own.lookup, m.own)
        if e.status != "answered":
            m.tolerance = tolerance(None, a.expected, self.fixed, self.unit)
            return m
        m.tolerance = self.tolerance(a, tree, e)
        self.tolerances[key] = m.tolerance
        slack = m.tolerance * (1 + 1e-9)
        if abs(e.given - a.expected) <= slack:
            m.status = "correct"
        if m.own is not None:
            m.consistent = abs(e.given - m.own) <= slack
        if m.status == "wrong" and not m.consistent:
            m.matches = self.matches(a, tree, e, m.tolerance, m.own)
            if m.matches:
                m.slip, m.slip_kind = m.matches[0][-1].text, m.matches[0][-1].kind
        return m

    def tolerance(self, a, tree, e):
        """The cell's tolerance: a fixed one, or the precision written (a formula: the rounding of the numbers it holds
        and reads) plus the rounding carried from earlier answers."""
        if self.fixed is not None:
            return self.fixed
        floor = tolerance(20, a.expected, unit=self.unit)  # float noise only
        if a.panel.step == "class":  # a class is a whole number: no rounding carries into it
            return tolerance(e.places, a.expected, unit=self.unit) if not e.formula else floor
        if e.formula:
            carried = self.formula_spread(a.sheet, e)
            if carried is not None:
                return floor + carried
            return tolerance(decimals(repr(e.given)), a.expected, unit=self.unit) + self.spread(a, tree)  # computed by LibreOffice
        return tolerance(e.places, a.expected, unit=self.unit) + self.spread(a, tree)

    def rounding(self, key):
        """How far an answered cell may be from the reference by rounding alone: its error when it is within its
        tolerance, else its tolerance."""
        e = self.entries[key]
        expected = float(self.plan.reference[key[0]][key[1:]].value)
        off = abs(e.given - expected)
        tol = self.tolerances.get(key, tolerance(e.places, expected, unit=self.unit))
        return off if off <= tol else tol

    def spread(self, a, tree):
        """How far the student's own rounding carries into this cell: each earlier answer it reads is moved by its
        rounding (|given - expected| when it is right, as they may carry the unrounded value; its tolerance when
        it is wrong), and the changes are summed."""
        refs = [k for k in dict.fromkeys(evaluate.references(tree)) if k in self.entries and self.entries[k].status == "answered"]
        if not refs or len(refs) > MAX_SPREAD_REFS:
            return 0.0
        try:
            base = self.own.formula_value(a.sheet, a.pos)
            return sum(abs(self.own.formula_value(a.sheet, a.pos, {k: self.entries[k].given + self.rounding(k)}) - base) for k in refs)
        except (evaluate.Unknown, evaluate.EvalError):
            return 0.0

    def typed_lookup(self, sheet, r, c):
        """A cell as the student's own formula reads it in a spreadsheet: an empty answer is 0, text is #VALUE!."""
        e = self.entries.get((sheet, r, c))
        if e is None:
            return self.own.lookup(sheet, r, c)
        if e.status == "missing":
            return None
        if e.status != "answered":
            raise evaluate.EvalError("#VALUE!")
        return e.given

    def formula_spread(self, sheet, e):
        """How far rounding carries into a formula the student typed: each number typed in it moved by half a unit of
        its last decimal, each answer it reads by its rounding, each other number it reads (scratch work) by half a unit
        of its last decimal; the changes summed. None when cnncalc's evaluator cannot compute it (LibreOffice did)."""
        try:
            tree = evaluate.parse(e.typed, sheet)
            base = evaluate.evaluate(tree, self.typed_lookup)
            nudged = []  # (tree, lookup) with one number moved
            for node in evaluate.numbers(tree):
                if not float(node[1]).is_integer():
                    nudged.append((evaluate.replace(tree, node, ("num", node[1] + half_unit(node[1]))), self.typed_lookup))
            for ref in dict.fromkeys(evaluate.references(tree)):
                if ref in self.entries and self.entries[ref].status == "answered":
                    moved = self.entries[ref].given + self.rounding(ref)
                elif ref not in self.entries and ref[0] not in self.plan.reference:
                    v = self.typed_lookup(*ref)
                    moved = v + half_unit(v) if isinstance(v, float) and not v.is_integer() else None
                else:
                    moved = None
                if moved is not None:
                    nudged.append((tree, lambda s, r, c, ref=ref, moved=moved: moved if (s, r, c) == ref else self.typed_lookup(s, r, c)))
            if len(nudged) > MAX_SPREAD_REFS:
                return None
            return sum(abs(evaluate.evaluate(t, look) - base) for t, look in nudged)
        except (evaluate.Unsupported, evaluate.Unknown, evaluate.EvalError, RecursionError, TypeError):
            return None

    def matches(self, a, tree, e, tol, own):
        """The known slips that fit the value written, best first ([(reads_rank, closeness, Slip)]), recomputed over
        the student's own values and over the engine's: a closer fit first, and the own values' on a tie."""
        reads = self.typed_reads(a.sheet, tree, e)
        worlds = ([(self.own, own)] if own is not None else []) + [(self.reference, a.expected)]
        found = []
        for w, (world, correct) in enumerate(worlds):
            ctx = self.context(a, tree, world, correct, e.places, reads)
            found += [(rank, close, w, k, s) for k, (rank, close, s) in enumerate(matches(ctx, e.given, tol))]
        found.sort(key=lambda f: f[:4])
        best, seen = [], set()
        for rank, close, _, _, s in found:
            if s.kind not in seen:
                seen.add(s.kind)
                best.append((rank, close, s))
        return best

    def typed_reads(self, sheet, tree, e):
        """The cells of the reference formula's input panels that the student's own formula reads, or None."""
        if not e.formula:
            return None
        try:
            refs = evaluate.references(evaluate.parse(e.typed, sheet))
        except evaluate.Unsupported:
            return None
        inputs = self.inputs(sheet, tree)
        return frozenset(ref for ref in refs if any(self.panels.get(ref) is p for p in inputs))

    def context(self, a, tree, world, correct, places=None, reads=None):
        inputs = self.inputs(a.sheet, tree)
        arrays = [(p, world.array(a.sheet, p)) for p in inputs]
        extra = {}
        if hasattr(self.plan, "learning_rate"):  # a training step: what its backprop slips need beyond the cell's inputs
            extra.update(learning_rate=self.plan.learning_rate, batch=len(self.plan.raw))
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
                       source is not None and source.step == "scaled", self.scale_text, extra, places, reads)

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


def name_patterns(marks):
    """One slip for one pattern: where a slip fits several wrong cells of a panel, each cell it fits is given it.
    Each cell takes, among the slips that fit it, one whose cells are the cells its formula reads, then the one that
    fits the most cells of its panel, then the closest."""
    panels = {}
    for m in marks:
        if m.matches:
            panels.setdefault((m.answer.sheet, id(m.answer.panel)), []).append(m)
    for ms in panels.values():
        fits = Counter(kind for m in ms for kind in {s.kind for *_, s in m.matches})
        for m in ms:
            _, best = min(enumerate(m.matches), key=lambda p: (p[1][0], -fits[p[1][-1].kind], p[0]))
            m.slip, m.slip_kind = best[-1].text, best[-1].kind


def half_unit(v):
    """Half a unit of the last decimal of a number as Python writes it: 0.4692 -> 0.00005."""
    return 0.5 * 10.0 ** -decimals(repr(float(v)))


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


def _safe_rows(rows):
    """Table rows for the terminal: text from a file (names, typed answers) with its control characters escaped."""
    return [[shown(v) if isinstance(v, str) else v for v in row] for row in rows]


def format_grade(grade, cells=25):
    """The report a student (or teacher) reads: per-step table, score, then each cell to look at again.

    Text from the file (the student's name and answers, model and step names) is shown with control characters
    escaped, so a file cannot retitle or clear the terminal it is printed on."""
    from tabulate import tabulate

    who = shown(grade.name) if grade.name else "(no name written)"
    rule = f"±{grade.fixed_tolerance:g}" if grade.fixed_tolerance is not None else "at the precision you wrote each number (at most ±0.005)"
    lines = [f"checked {shown(grade.path)}: {who}, {grade.total} answer cells of {shown(grade.model)}, judged {rule}"]
    if grade.exercise == CHANGED:
        lines.append(f"WARNING: the exercise was changed: {shown(grade.exercise_note, 1000)}")
    elif grade.exercise == NOT_CHECKED:
        lines.append(f"note: {shown(grade.exercise_note, 1000)}")
    for w in grade.warnings:
        lines.append(f"note: {shown(w, 1000)}")
    rows = [(r["step"], r["answers"], r["correct"], r["carried forward"], r["wrong"] - r["carried forward"], r["missing"],
             r["not a number"], r["consistent"], f"{r['marks']}/{r['answers']}") for r in grade.per_group()]
    lines.append(tabulate(_safe_rows(rows), headers=["step", "cells", "correct", "carried fwd", "wrong", "missing", "not a number",
                                                     "consistent w/ own work", "marks"], disable_numparse=True))
    c = grade.count("correct")
    lines.append(f"score: {grade.score}/{grade.total} ({100 * grade.score / max(grade.total, 1):.0f}%) with carry-forward credit; "
                 f"{c}/{grade.total} match the reference")
    bad = bad_rows(grade)
    if bad:
        lines.append("cells to look at again (a slip repeated in a panel is one row):")
        lines.append(tabulate(_safe_rows(bad[:cells]), headers=["cell", "step", "expected", "given", "consistent w/ own work", "slip"],
                              disable_numparse=True))
        if len(bad) > cells:
            lines.append(f"… and {len(bad) - cells} more rows (--json lists every cell)")
    carried = [m.address for m in grade.marks if m.carried]
    if carried:
        listed = ", ".join(carried[:8]) + (f", … ({len(carried) - 8} more)" if len(carried) > 8 else "")
        lines.append(f"carried forward: {len(carried)} cell(s) differ from the reference only because of an earlier answer, "
                     f"and are right from your own earlier answers: {listed}")
    if grade.ok:
        lines.append("OK: every answer is right" if not grade.carried else f"OK: every answer gets credit: {grade.tally()}")
    else:
        lines.append("NOT OK: " + ("the exercise was changed (see the warning above); " if grade.exercise == CHANGED else "") + grade.tally())
    return "\n".join(lines)


def bad_rows(grade):
    """(cells, step, expected, given, consistent, slip) for each answer without credit; the cells of one slip in one
    panel make one row ("'Sample 1'!L4, M4, L5, M5"), with the first cell's numbers."""
    patterns = {(p["sheet"], p["step"], p["kind"], p["cells"][0]): p for p in grade.patterns()}
    first = {cell: p for (*_, cell), p in patterns.items()}
    shown_cells = {cell for p in patterns.values() for cell in p["cells"][1:]}
    rows = []
    for m in grade.marks:
        if m.credit or m.address in shown_cells:
            continue
        p = first.get(m.address)
        cells, slip = m.address, m.slip or m.note
        if p is not None and len(p["cells"]) > 1:
            prefix = sheet_prefix(m.answer.sheet, None)
            more = [c[len(prefix):] for c in p["cells"][1:]]
            cells = ", ".join([m.address, *more[:3]]) + (f" (+{len(more) - 3} more)" if len(more) > 3 else "") + f": {len(p['cells'])} cells"
            slip = p["slip"]
        rows.append((cells, m.answer.group, _num(m.answer.expected), _given(m), _consistent(m), slip))
    return rows


def grade_dict(grade):
    """The same data for --json."""
    def jsonable(v):
        return v if v is None or isinstance(v, (int, float, str, bool)) else str(v)

    return {
        "file": grade.path, "name": grade.name, "model": grade.model, "answers": grade.total, "score": grade.score,
        "correct": grade.count("correct"), "carried_forward": grade.carried, "wrong": grade.count("wrong") - grade.carried,
        "missing": grade.count("missing"), "not_a_number": grade.count("not a number"),
        "ok": grade.ok, "tolerance": grade.fixed_tolerance, "warnings": grade.warnings,
        "exercise": grade.exercise, "exercise_note": grade.exercise_note or None,
        "steps": grade.per_group(), "slips": grade.patterns(),
        "cells": [{"cell": m.address, "step": m.answer.group, "kind": m.answer.panel.step, "index": list(m.answer.idx),
                   "status": m.status, "expected": m.answer.expected, "given": m.given, "typed": jsonable(m.typed),
                   "tolerance": m.tolerance, "own": m.own, "consistent": m.consistent, "carried_forward": m.carried,
                   "slip": m.slip, "slip_kind": m.slip_kind, "how": m.expansion, "how_with_your_values": m.own_expansion, "note": m.note or None}
                  for m in grade.marks],
    }


# ---------------------------------------------------------------- the graded copy

FILLS = {"correct": "C6EFCE", "carried": "FFEB9C", "wrong": "FFC7CE", "not a number": "FFC7CE", "missing": "E4DFEC"}
LEGEND = [("correct", "green: right"),
          ("carried", "amber: carried forward, right from your own earlier answers (full credit)"),
          ("wrong", "red: wrong, or not a number"),
          ("missing", "lavender: empty")]
GRADE_WIDTHS = [22, 13, 13, 13, 13, 13, 13, 13]  # the Grade sheet's columns: one landscape page
GRADE_TEXT = 70  # characters of a line of text on the Grade sheet that fit its columns B-H when printed
GRADE_SLIPS = 25  # slip rows the Grade sheet lists (the comments hold every one)


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
    right, and a "Grade" sheet in front; written atomically, never over an existing file without force.

    A merged area over answer cells is unmerged in the copy, so each answer cell gets its own colour and comment."""
    merged = merged_cell_count(grade.merged)
    if merged > MAX_MERGED_CELLS:  # openpyxl would make an object for each: A1:XFD1048576 alone is 17 billion
        raise CnncalcError(f"Cannot write a graded copy of {shown(grade.path)}: its merged areas cover {merged:,} cells. Expected at most "
                           f"{MAX_MERGED_CELLS:,} (a limit of cnncalc, in cnncalc/classroom/check.py). Received a file with "
                           f"{sum(map(len, grade.merged.values())):,} merged area(s); the grade itself is unaffected")
    from cnncalc.files import atomic_output

    try:
        with atomic_output(out, force) as tmp:
            _write_graded(grade, tmp)
    except (CnncalcError, KeyboardInterrupt):
        raise
    except Exception as e:  # a student's file must never crash a class run; --traceback shows the cause
        raise CnncalcError(f"Cannot write a graded copy of {shown(grade.path)}. Expected an .xlsx openpyxl can copy. "
                           f"Received a file it could not ({type(e).__name__}: {shown(e)}); the grade itself is unaffected") from e
    return out


def _write_graded(grade, tmp):
    import openpyxl
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.comments import Comment
    from openpyxl.styles import PatternFill

    try:
        wb = openpyxl.load_workbook(grade.path)
    except Exception as e:  # openpyxl raises many kinds for a damaged file
        raise CnncalcError(f"Cannot copy {shown(grade.path)} for grading. Expected an .xlsx openpyxl can read. "
                           f"Received ({type(e).__name__}: {shown(e)})") from None
    for sheet in {m.answer.sheet for m in grade.marks}:
        ws = wb[sheet]
        answers = {(m.answer.pos[0] + 1, m.answer.pos[1] + 1) for m in grade.marks if m.answer.sheet == sheet}
        for area in list(ws.merged_cells.ranges):
            if any(area.min_row <= r <= area.max_row and area.min_col <= c <= area.max_col for r, c in answers):
                ws.unmerge_cells(area.coord)
    for m in grade.marks:
        cell = wb[m.answer.sheet].cell(m.answer.pos[0] + 1, m.answer.pos[1] + 1)
        color = FILLS["carried" if m.carried else m.status]
        cell.fill = PatternFill("solid", start_color=color, end_color=color)
        if m.status != "correct":
            text = ILLEGAL_CHARACTERS_RE.sub("?", comment_text(m))
            cell.comment = Comment(text, "cnncalc check", width=420, height=40 + 18 * text.count("\n") + len(text) // 4)
    _uncover(wb, grade)
    ws = wb.create_sheet("Grade", 0)
    _grade_sheet(ws, grade, ILLEGAL_CHARACTERS_RE)
    wb.active = 0
    for sheet in wb.worksheets[1:]:
        sheet.sheet_view.tabSelected = False
    wb.save(tmp)


def _uncover(wb, grade):
    """Drop the colour scales over answer cells, which a spreadsheet paints over their fills (a wrong cell would look
    like its orange neighbours); a panel of given cells keeps its scale."""
    from openpyxl.formatting.formatting import ConditionalFormattingList

    for sheet in {m.answer.sheet for m in grade.marks}:
        ws = wb[sheet]
        answers = [(m.answer.pos[0] + 1, m.answer.pos[1] + 1) for m in grade.marks if m.answer.sheet == sheet]
        kept = ConditionalFormattingList()
        for cf in ws.conditional_formatting:
            covers = any(any(area.min_row <= r <= area.max_row and area.min_col <= c <= area.max_col for area in cf.sqref.ranges)
                         for r, c in answers)
            if not covers:
                for rule in cf.rules:
                    kept.add(str(cf.sqref), rule)
        ws.conditional_formatting = kept


def _grade_sheet(ws, grade, illegal):
    """The Grade sheet: grade_rows, styled, printed on one landscape page."""
    from openpyxl.styles import Alignment, Font, PatternFill

    for r, (row, style) in enumerate(grade_rows(grade), start=1):
        for c, v in enumerate(row, start=1):
            cell = ws.cell(r, c)
            cell.value = illegal.sub("?", v) if isinstance(v, str) else v
            if cell.data_type == "f":  # openpyxl makes any "=..." a formula: a student's name must stay text
                cell.data_type = "s"
            if style in ("title", "header", "table"):
                cell.font = Font(name="Calibri", bold=style != "table", size=12 if style == "title" else 11)
            if style in ("header", "table") and c > 1 and len(row) == len(GRADE_WIDTHS):
                cell.alignment = Alignment(horizontal="right")
        if style in FILLS:
            ws.cell(r, 1).fill = PatternFill("solid", start_color=FILLS[style], end_color=FILLS[style])
    for c, width in enumerate(GRADE_WIDTHS, start=1):
        ws.column_dimensions[chr(64 + c)].width = width
    ws.page_setup.orientation = "landscape"
    ws.page_setup.fitToWidth = ws.page_setup.fitToHeight = 1
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_area = f"A1:{chr(64 + len(GRADE_WIDTHS))}{ws.max_row}"


def grade_rows(grade):
    """The Grade sheet, as [(row, style)]: who and the score, the per-step table, the colours, and the slips named
    (one row a pattern). Style: "title", "header", "table" (the per-step rows), a FILLS key (a colour swatch in column A), or None."""
    import textwrap

    def wrapped(first, text, style=None, width=GRADE_TEXT):
        lines = textwrap.wrap(str(text), width) or [""]
        return [([first if k == 0 else "", line], style) for k, line in enumerate(lines)]

    rows = [(["cnncalc check"], "title"), (["name", grade.name or ""], None),
            (["score", grade.score, f"of {grade.total} ({100 * grade.score / max(grade.total, 1):.0f}%) with carry-forward credit"], None),
            (["match the reference", grade.count("correct")], None), *wrapped("verdicts", grade.tally()),
            *wrapped("exercise", grade.exercise + (f": {grade.exercise_note}" if grade.exercise_note else "")), ([], None),
            (["step", "cells", "correct", "carried fwd", "wrong", "missing", "not a number", "marks"], "header")]
    for r in grade.per_group():
        rows.append(([r["step"], r["answers"], r["correct"], r["carried forward"], r["wrong"] - r["carried forward"],
                      r["missing"], r["not a number"], f"{r['marks']}/{r['answers']}"], "table"))
    rows += [([], None), (["colours", "of the answer cells on the Sample sheets"], "header")]
    rows += [(["", text], key) for key, text in LEGEND]
    patterns = grade.patterns()
    if patterns:
        rows += [([], None), (["slips", "recognised (one row a pattern in a panel)"], "header")]
        for p in patterns[:GRADE_SLIPS]:
            cells = p["cells"][0] + (f" and {len(p['cells']) - 1} more" if len(p["cells"]) > 1 else "")
            rows += wrapped(p["step"], f"{cells}: {p['slip']}")
        if len(patterns) > GRADE_SLIPS:
            rows.append((["", f"… and {len(patterns) - GRADE_SLIPS} more (see the comments)"], None))
    rows += [([], None)] + wrapped("", "Each cell not right has a comment: the expected value, how it is computed, "
                                       "and the slip if one is recognised.")
    return rows


# ---------------------------------------------------------------- a class at once


@dataclass
class Result:
    """One file of a class: its grade, and why it could not be graded (no grade) or copied (a grade, no graded copy)."""

    path: str
    grade: Grade | None = None
    error: str | None = None

    @property
    def exit_code(self):
        return 2 if self.error else 0 if self.grade.ok else 1

    @property
    def status(self):
        return "not graded" if self.grade is None else "graded, no graded copy" if self.error else "graded"


def check_files(paths, fixed_tolerance=None):
    """Grade every file; a file that cannot be graded is reported in its Result, and the rest go on."""
    results = []
    for path in paths:
        try:
            results.append(Result(str(path), check(path, fixed_tolerance)))
        except CnncalcError as e:
            results.append(Result(str(path), error=str(e)))
    return results


def graded_paths(paths, folder):
    """One graded copy a file, in `folder`, no two alike (letter case aside) and none an input: 'x/s.xlsx' ->
    's-graded.xlsx'; files of one name from different folders take their folders' names, as many as tell them
    apart ('x/s.xlsx' -> 'x-s-graded.xlsx', 'y/s.xlsx' -> 'y-s-graded.xlsx'); any still alike (one file named
    twice) a number ('s-graded-2.xlsx'). The same command line always gives the same names."""
    full = [os.path.normpath(os.path.abspath(p)) for p in paths]
    parts = [f.split(os.sep)[1:] for f in full]
    parts = [[*dirs, os.path.splitext(last)[0]] for *dirs, last in parts]
    depth = [1] * len(paths)  # how many trailing parts (the file's stem, then its folders) name each copy

    def name(i):
        return "-".join(parts[i][-depth[i]:])

    while True:
        alike = {}
        for i in range(len(paths)):
            alike.setdefault(name(i).casefold(), []).append(i)
        grow = [i for group in alike.values() if len({full[j].casefold() for j in group}) > 1
                for i in group if depth[i] < len(parts[i])]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    taken = {f.casefold() for f in full}
    out = []
    for i in range(len(paths)):
        base, k = os.path.join(folder, name(i) + "-graded"), 1
        target = base + ".xlsx"
        while os.path.normpath(os.path.abspath(target)).casefold() in taken:
            k += 1
            target = f"{base}-{k}.xlsx"
        taken.add(os.path.normpath(os.path.abspath(target)).casefold())
        out.append(target)
    return out


def write_graded_copies(results, targets, force=False):
    """Write each graded file's copy to its target; a copy that cannot be written becomes that file's error
    (its grade stays), and the others are written."""
    for r, out in zip(results, targets):
        if r.grade is None:
            continue
        try:
            write_graded(r.grade, out, force=force)
        except CnncalcError as e:
            r.error = str(e)


def _exercise_cell(grade):
    return grade.exercise if grade.exercise == AS_MADE else f"{grade.exercise}: {grade.exercise_note}"


def class_table(results):
    """(headers, rows): name, file, status, score, answers, %, correct, each step's marks, slips, exercise, error."""
    steps = list(dict.fromkeys(g for r in results if r.grade for g in r.grade.groups))
    headers = ["name", "file", "status", "score", "answers", "percent", "match reference", *steps, "slips", "exercise", "error"]
    rows = []
    for r in results:
        g = r.grade
        if g is None:
            rows.append(["", r.path, r.status, "", "", "", "", *([""] * len(steps)), "", "", r.error])
            continue
        marks = {row["step"]: f"{row['marks']}/{row['answers']}" for row in g.per_group()}
        rows.append([g.name or "", r.path, r.status, g.score, g.total, f"{100 * g.score / max(g.total, 1):.0f}", g.count("correct"),
                     *(marks.get(s, "") for s in steps), student_slips(g), _exercise_cell(g), r.error or ""])
    return headers, rows


def student_slips(grade):
    """The slips named in one file, one a slip and step: 'bias forgotten (conv2d, 1 cell); …'."""
    counts = {}
    for p in grade.patterns():
        counts[(p["kind"], p["step"])] = counts.get((p["kind"], p["step"]), 0) + len(p["cells"])
    return "; ".join(f"{kind} ({step}, {n} cell{'s' if n > 1 else ''})" for (kind, step), n in counts.items())


NO_SLIP, GAPS = "wrong, no slip named", "empty or not a number"


def class_tally(results):
    """The slips named across a class, most students first: [{"slip", "students", "cells", "steps": {step: students}}]."""
    tally = {}
    for k, r in enumerate(results):
        for p in r.grade.patterns() if r.grade else []:
            t = tally.setdefault(p["kind"], {"slip": p["kind"], "students": set(), "cells": 0, "steps": {}})
            t["students"].add(k)
            t["cells"] += len(p["cells"])
            t["steps"].setdefault(p["step"], set()).add(k)
    out = [{**t, "students": len(t["students"]), "steps": {step: len(who) for step, who in t["steps"].items()}} for t in tally.values()]
    return sorted(out, key=lambda t: (-t["students"], -t["cells"], t["slip"]))


def step_tally(results):
    """{step: {what: students}} for every step of the class: each slip named there, then wrong cells no slip explains
    (NO_SLIP) and answers left empty or not a number (GAPS); a student counts once a row."""
    steps = {g: {} for r in results if r.grade for g in r.grade.groups}
    for k, r in enumerate(results):
        for m in r.grade.marks if r.grade else []:
            what = m.slip_kind if m.slip else GAPS if m.status in ("missing", "not a number") else NO_SLIP if not m.credit else None
            if what:
                steps[m.answer.group].setdefault(what, set()).add(k)
    return {step: {what: len(who) for what, who in sorted(rows.items(), key=lambda i: (i[0] in (NO_SLIP, GAPS), -len(i[1]), i[0]))}
            for step, rows in steps.items()}


def format_tally(results):
    """The class's slips for the terminal: which slip, how many students, how many cells, in which steps."""
    from tabulate import tabulate

    tally = class_tally(results)
    if not tally:
        return "no slips named in the class"
    rows = [(shown(t["slip"], 90), t["students"], t["cells"], shown(", ".join(f"{step} ({n})" for step, n in t["steps"].items()), 60))
            for t in tally]
    return "slips named in the class (students: how many made the slip; steps: where, with how many students):\n" + tabulate(
        rows, headers=["slip", "students", "cells", "steps"], disable_numparse=True)


def format_class(results):
    """The class table for the terminal: one row a file (the error column left out: errors go to stderr), text
    from the files with control characters escaped; then the class's slips."""
    from tabulate import tabulate

    headers, rows = class_table(results)
    rows = [[shown(v, 60) if isinstance(v, str) else v for v in row[:-1]] for row in rows]
    return tabulate(rows, headers=[shown(h, 60) for h in headers[:-1]], disable_numparse=True) + "\n" + format_tally(results)


def plan_report(results):
    """The class report as a workbook plan: the class table; the slips across the class; for each step, the
    students of each slip, with a chart. Text from the files is written as text (never a formula)."""
    from cnncalc.sheets.cells import Cell, WorkbookPlan, cells_block

    plan = WorkbookPlan()
    headers, rows = class_table(results)
    table = plan.add_sheet("Class", freeze=(3, 0))
    cells = {(0, 0): Cell("cnncalc check: the class", style="title"),
             (1, 0): Cell("score: answers with credit (right, or carried forward from the student's own earlier answers)", style="caption")}
    cells.update({(2, c): Cell(h, style="header") for c, h in enumerate(headers)})
    for r, row in enumerate(rows, start=3):
        cells.update({(r, c): Cell(v, style="int" if isinstance(v, int) else "text") for c, v in enumerate(row) if v != ""})
    table.add(cells_block(cells))
    table.col_widths.update({0: 24, 1: 30, 2: 12, **{c: 14 for c in range(3, len(headers) - 3)}, len(headers) - 3: 60})
    sheet = plan.add_sheet("Slips", freeze=(3, 0))
    tally = class_tally(results)
    cells = {(0, 0): Cell("Slips named in the class", style="title"),
             (1, 0): Cell("students: how many made the slip (anywhere); cells: in how many cells; steps: where, with how many students",
                          style="caption")}
    cells.update({(2, c): Cell(h, style="header") for c, h in enumerate(["slip", "students", "cells", "steps"])})
    for r, t in enumerate(tally, start=3):
        cells.update({(r, 0): Cell(t["slip"], style="text"), (r, 1): Cell(t["students"], style="int"), (r, 2): Cell(t["cells"], style="int"),
                      (r, 3): Cell(", ".join(f"{step} ({n})" for step, n in t["steps"].items()), style="text")})
    top = 3 + len(tally) + 2
    for step, whats in step_tally(results).items():
        cells[(top, 0)] = Cell(f"step {step}: students per slip", style="subtitle")
        cells[(top + 1, 0)], cells[(top + 1, 1)] = Cell("slip", style="header"), Cell("students", style="header")
        for k, (what, n) in enumerate(whats.items()):
            cells[(top + 2 + k, 0)], cells[(top + 2 + k, 1)] = Cell(what, style="text"), Cell(n, style="int")
        height = 110 + 40 * len(whats)  # pixels: a bar and its label for each row
        if whats:
            last = top + 1 + len(whats)
            sheet.charts.append({"type": "bar", "title": f"step {step}: students per slip", "anchor": (top, 3), "x_axis": "",  # never "=…"
                                 "num_format": "0", "values": (top + 2, 1, last, 1),
                                 "categories": (top + 2, 0, last, 0), "size": {"width": 640, "height": height}})
        else:
            cells[(top + 2, 0)] = Cell("every answer right or carried forward", style="caption")
        top += max(len(whats) + 4, 2 + -(-height // 20)) if whats else 4  # a row is 20 pixels high
    sheet.add(cells_block(cells))
    sheet.col_widths.update({0: 60, 1: 10, 2: 10, 3: 40})
    return plan


def write_report(results, path, force=False):
    """Write the class report workbook (plan_report) atomically, never over a file without force."""
    from cnncalc.sheets.writer import write_plan

    return write_plan(plan_report(results), path, force=force, quiet=True)


def write_csv(results, path, force=False):
    """The class table as CSV: every field quoted, and every text a spreadsheet could take for a formula (the
    header's step names too) made plain text (see csv_text)."""
    import csv

    from cnncalc.files import atomic_output

    headers, rows = class_table(results)
    with atomic_output(path, force) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, quoting=csv.QUOTE_ALL)  # quoted: a spreadsheet splitting at ; or tab keeps each field whole
            w.writerows([[csv_text(v) for v in row] for row in [headers, *rows]])
    return path


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0", "\uff1d", "\uff0b", "\uff0d", "\uff20")  # ＝＋－＠ too


def csv_text(value):
    """A field as a spreadsheet will read it as text: one whose first character (past spaces) could start a formula
    (= + - @, a tab, a line break, NUL, or their full-width forms) gets a leading ' (OWASP's rule against CSV
    injection): csv_text('=HYPERLINK("x")') -> "'=HYPERLINK(\"x\")". Numbers stay numbers."""
    if isinstance(value, str) and value.lstrip(" ").startswith(FORMULA_STARTS):
        return "'" + value
    return value
