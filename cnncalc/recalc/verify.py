"""Verify a cnncalc workbook: rebuild the model from the file's own cells, recalculate the file in
LibreOffice, and compare every formula cell with the engine."""

from dataclasses import dataclass, field
import json
import math
import shutil
import time

import numpy as np

from cnncalc import guards
from cnncalc.recalc import libreoffice as recalc
from cnncalc.sheets.cells import a1, sheet_prefix
from cnncalc.errors import CnncalcError, quoted, shown
from cnncalc.files import atomic_output, check_input, check_output
from cnncalc.inputs import MAX_SAMPLES
from cnncalc.kerasfiles.loader import skeleton
from cnncalc.sheets.workbook import META_SHEET, STEPS_SHEET, WEIGHTS_SHEET, plan_workbook, read_layout

REL_TOL = 1e-9
ABS_TOL = 1e-12  # for values that cancel to about zero, where a relative test means nothing
GIVENS_ONLY = (WEIGHTS_SHEET,)  # sheets without formula cells: read for their values only (a million weights), not compared


@dataclass
class Difference:
    address: str  # "'Sample 1'!L4"
    expected: float
    got: object
    formula: str | None = None

    @property
    def abs_diff(self):
        try:
            return abs(float(self.got) - self.expected)
        except (TypeError, ValueError):
            return math.inf


@dataclass
class Report:
    path: str
    checked: int = 0
    per_sheet: dict = field(default_factory=dict)
    max_abs_diff: float = 0.0
    max_rel_diff: float = 0.0
    worst: list = field(default_factory=list)  # the largest differences, passing or not
    failures: list = field(default_factory=list)
    not_formulas: list = field(default_factory=list)  # cells that should hold a formula but hold a constant
    seconds: dict = field(default_factory=dict)

    @property
    def ok(self):
        return self.checked > 0 and not self.failures and not self.not_formulas


def read_meta(path):
    """(architecture dict, scale text, sample count, maps across) from the hidden sheet cnncalc writes."""
    values = recalc.read_values(path, sheets=[META_SHEET]) if META_SHEET in sheet_names(path) else None
    if not values:
        raise CnncalcError(f"{path} is not a cnncalc workbook. Expected a sheet named {META_SHEET!r} (written by cnncalc). Received a workbook without it")
    meta = values[META_SHEET]
    maps_across = read_layout(meta, path)  # format 1 or 2; refuses any other
    chunks, c = [], 1
    while (3, c) in meta:  # the JSON is split over cells: one cell holds at most 32,767 characters
        chunks.append(str(meta[(3, c)]))
        c += 1
    text = "".join(chunks)
    damaged = f"{path}: the {META_SHEET} sheet is damaged. Expected the model architecture as JSON"
    try:
        arch = guards.check_json(json.loads(text), f"the architecture in {META_SHEET}")
    except ValueError as e:
        raise CnncalcError(f"{damaged}. Received an unreadable value ({_short(str(e))})") from None
    except RecursionError:
        raise CnncalcError(f"{damaged}. Received JSON nested too deeply") from None
    if not isinstance(arch, dict):
        raise CnncalcError(f"{damaged}. Received {_short(arch)}")
    n = meta.get((2, 1))
    if isinstance(n, float) and n.is_integer():
        n = int(n)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_SAMPLES:
        raise CnncalcError(f"{path}: the {META_SHEET} sheet is damaged. Expected the number of samples (1 to {MAX_SAMPLES:,}) "
                           f"at {META_SHEET}!B3. Received {_short(n)}")
    return arch, str(meta.get((1, 1), "1")), n, maps_across


def refuse_exercise(path):
    """A practice workbook or a graded copy has empty (or a student's) answer cells: verify would report every one
    as a difference, so it is refused with a pointer to `cnncalc check` (export refuses them too: not a model)."""
    kind = workbook_kind(path)
    if kind in ("practice", "graded"):
        made = "cnncalc practice" if kind == "practice" else "cnncalc check --graded"
        raise CnncalcError(f"{quoted(path)} is a {'graded ' if kind == 'graded' else ''}practice workbook ({made}): its answer cells "
                           "are a student's to fill. Expected a worked example made by cnncalc build or cnncalc example. "
                           f"Received an exercise: grade it with `cnncalc check {shown(path)}`")


GRADE_SHEET = "Grade"  # the sheet `cnncalc check --graded` puts in front of a graded copy


def workbook_kind(path):
    """'practice', 'graded' or 'prediction', from the workbook's sheets and its _cnncalc sheet's practice rows."""
    from cnncalc.classroom.practice import META_ROW

    meta, _ = recalc.read_cells(path, [META_SHEET])
    if meta[META_SHEET].get((META_ROW, 0)) != "practice":
        return "prediction"
    return "graded" if GRADE_SHEET in sheet_names(path) else "practice"


def sheet_names(path):
    """The workbook's sheet names; a file that is not an .xlsx, or whose parts claim absurd sizes, is refused first."""
    import openpyxl
    import zipfile

    check_input(path, "an .xlsx workbook written by cnncalc")  # a pipe or a device is refused, never opened
    try:
        with zipfile.ZipFile(path) as zf:
            guards.check_zip(zf, str(path), guards.MAX_XLSX_MEMBER_BYTES, guards.MAX_XLSX_BYTES)
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise CnncalcError(f"Cannot open {quoted(path)}. Expected an .xlsx workbook (a zip archive). "
                           f"Received a file that is not a zip archive ({_short(str(e))})") from None
    try:
        wb = openpyxl.load_workbook(path, read_only=True)
    except Exception as e:  # openpyxl raises many kinds for a file that is not an xlsx
        raise CnncalcError(f"Cannot open {path}. Expected an .xlsx workbook. Received a file openpyxl cannot read ({type(e).__name__}: {_short(str(e))})") from None
    try:
        return wb.sheetnames
    finally:
        wb.close()


def _short(value, limit=120):
    text = " ".join((value if isinstance(value, str) else repr(value)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number(values, sheet, pos, what):
    v = values.get(sheet, {}).get(pos)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise CnncalcError(f"{what} at {sheet_prefix(sheet, None)}{a1(*pos)} is not a number. Expected a finite number. Received {_short(repr(v))}")
    return float(v)


def check_arch(path, arch, n):
    """(the model the hidden sheet describes, without weights; its parameter count), refused when the layers are
    unknown or the workbook they imply is absurdly large: checked before LibreOffice opens the file or anything is laid out."""
    model = skeleton(arch, f"{path} ({META_SHEET} sheet)")
    params = sum(math.prod(s) for layer, shape in zip(model.layers, model.shapes) for s in layer.weight_shapes(shape).values())
    planned = params + n * (math.prod(model.input_shape) + guards.trace_values(model))
    if planned > guards.MAX_PLAN_CELLS:
        raise guards.too_large(f"{path}: the workbook its {META_SHEET} sheet describes", guards.MAX_PLAN_CELLS, planned, " cells")
    return model, params


def read_back(path, values, arch, scale, n, maps_across):
    """The model and raw inputs as the workbook's own weight and input cells hold them now.

    The architecture comes from the file, so it is checked like a model file's config: known layers,
    sane sizes, and no more weights and inputs than the workbook has cells, before anything is laid out.
    """
    model, params = check_arch(path, arch, n)
    given = params + n * math.prod(model.input_shape)
    present = sum(len(cells) for cells in values.values())
    if given > present:
        raise CnncalcError(f"{path}: the {META_SHEET} sheet describes {params:,} weights and {n:,} input(s) of shape {model.input_shape}, "
                           f"{given:,} numbers in all. Expected a workbook holding them. Received a workbook of {present:,} cells")
    for layer, shape in zip(model.layers, model.shapes):
        layer.set_weights([np.zeros(s) for s in layer.weight_shapes(shape).values()], shape)
    layout = plan_workbook(model, np.zeros((n, *model.input_shape)), scale, steps=False, maps_across=maps_across)
    for layer, shape in zip(model.layers, model.shapes):
        arrays = [read_tensor(values, layout.weights[(layer.name, wname)], lambda idx: f"Weight {layer.name}/{wname}{list(idx)}")
                  for wname in layer.weights]
        layer.set_weights(arrays, shape)
    raw = np.zeros((n, *model.input_shape))
    for s, p in enumerate(layout.inputs):
        raw[s] = read_tensor(values, p, lambda idx: f"Input {list(idx)} of {p.sheet}")
    return model, raw


def read_tensor(values, p, what):
    """The tensor at placement p as the cells hold it, a row of cells at a time (a Dense kernel has a million); a cell
    that holds no finite number is refused as _number refuses it, named by what(idx)."""
    cells = values.get(p.sheet, {})
    if isinstance(cells, recalc.RowCells):  # a Weights sheet read by calamine: the whole tensor in one conversion
        arr = cells.numbers(*p.positions())
        if arr is not None and np.isfinite(arr).all():
            return arr
    arr = np.zeros(p.shape)
    order = np.arange(arr.size).reshape(p.shape)  # laid out by row_values: which element each cell of a row holds
    for r in range(p.extent[0]):
        pairs = p.row_indices(r)
        if not pairs:  # a blank row between two filters
            continue
        row = recalc.row_of(cells, p.top + r, [col for col, _ in pairs])
        try:
            numbers = np.array(row, dtype=float) if set(map(type, row)) <= {float, int} else None  # not a bool, not text
        except OverflowError:  # an int too big for a float
            numbers = None
        if numbers is None or not np.isfinite(numbers).all():
            numbers = [_number(values, p.sheet, (p.top + r, col), what(idx)) for col, idx in pairs]
        arr.flat[p.row_values(order, r)] = numbers
    return arr


def rebuild_plan(path, values, arch, scale, n, maps_across):
    """The workbook's plan as its given cells hold them now: a training workbook's (`cnncalc train`, rebuilt by
    sheets/training.py from its initial weights, data and hyperparameters), else a prediction workbook's."""
    from cnncalc.sheets import training

    settings = training.read_settings(values.get(META_SHEET, {}), path)
    if settings is not None:
        return training.plan_training(read_back_job(path, values, arch, scale, n, maps_across, settings), maps_across)
    model, raw = read_back(path, values, arch, scale, n, maps_across)
    return plan_workbook(model, raw, scale, steps=False, maps_across=maps_across)  # the Steps sheet holds text, not formulas


def read_back_job(path, values, arch, scale, n, maps_across, settings):
    """A training workbook's run (model, data, labels, hyperparameters) as its given cells hold them now."""
    from cnncalc.sheets import training

    model, _ = check_arch(path, arch, n)
    return training.read_back_training(path, values, model, scale if scale != "1" else None, n, maps_across, settings)


def formula_values(sheet):
    """(rows, cols, the engine's values) of every formula cell of a planned sheet, in row-major order.

    A sheet whose panels all know their given cells (Panel.constants: a prediction's sample sheet, where every
    formula belongs to a panel) gives them from the panels' values and placements, without making any formula's
    text; any other sheet is walked cell by cell, as the writer makes it."""
    panels = getattr(sheet, "panels", None)
    if panels and all(p.formula is None or p.constants is not None for p in panels):
        parts = []
        for p in panels:
            if p.formula is None:
                continue
            rows, cols = p.placement.positions()
            values = np.asarray(p.values, dtype=np.float64)
            if p.step == "class":  # the writer writes int(value): the same as float for any index
                values = values.astype(np.int64).astype(np.float64)
            keep = np.ones(p.placement.shape, dtype=bool) if p.constants is False else ~np.asarray(p.constants, dtype=bool)
            parts.append((rows[keep], cols[keep], values[keep]))
        if not parts:
            return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
        rows, cols, values = (np.concatenate(part) for part in zip(*parts))
        order = np.lexsort((cols, rows))
        return rows[order], cols[order], values[order]
    cells = [(r, c, float(cell.value)) for r, row in sheet.rows() for c, cell in row if cell.formula is not None]
    return (np.array([t[0] for t in cells], dtype=int), np.array([t[1] for t in cells], dtype=int),
            np.array([t[2] for t in cells], dtype=np.float64))


def compare(report, sheets, values, formulas, rel_tol=REL_TOL, abs_tol=ABS_TOL):
    """Compare every formula cell of the planned `sheets` with LibreOffice's `values`; a cell without a `formulas` entry
    holds a constant. Fills the report's counts, failures, not_formulas (sheet by sheet, row-major) and its five largest
    differences; the address text of a cell is made only for a Difference the report keeps."""
    import heapq

    everyone = []  # (-abs diff, order, sheet's position, row, col, engine's value, LibreOffice's): for the largest five
    for n, sheet in enumerate(sheets):
        got_sheet, formula_sheet = values.get(sheet.name, {}), formulas.get(sheet.name, {})
        rows, cols, expected = formula_values(sheet)
        for r, c, e in zip(rows.tolist(), cols.tolist(), expected.tolist()):
            got = got_sheet.get((r, c))
            if isinstance(got, bool) or not isinstance(got, (int, float)):
                ok, diff = False, Difference("", e, got).abs_diff
            else:
                ok, diff = math.isclose(got, e, rel_tol=rel_tol, abs_tol=abs_tol), abs(float(got) - e)
            formula = formula_sheet.get((r, c))
            if formula is None or not ok:
                d = Difference(sheet_prefix(sheet.name, None) + a1(r, c), e, got, formula)
                if formula is None:
                    report.not_formulas.append(d)
                if not ok:
                    report.failures.append(d)
            if ok:
                report.max_abs_diff = max(report.max_abs_diff, diff)
                if e:
                    report.max_rel_diff = max(report.max_rel_diff, diff / abs(e))
            everyone.append((-diff, len(everyone), n, r, c, e, got))
        if len(rows):
            report.per_sheet[sheet.name] = len(rows)
        report.checked += len(rows)
    report.worst = [Difference(sheet_prefix(sheets[n].name, None) + a1(r, c), e, got, formulas.get(sheets[n].name, {}).get((r, c)))
                    for _, _, n, r, c, e, got in heapq.nsmallest(5, everyone, key=lambda t: t[:2])]
    return report


def verify(path, rel_tol=REL_TOL, abs_tol=ABS_TOL, keep=None, timeout=900, quiet=False):
    """Recalculate `path` in LibreOffice and compare every formula cell with the engine. Returns a Report.

    report.seconds holds each step's time: recalculate (LibreOffice), read (its values and formulas, the Weights sheet's values only),
    plan (the model and workbook rebuilt from the file's weight and input cells), compare, and the total.
    A job longer than a second shows a progress bar when stderr is a terminal, unless `quiet`.
    """
    from cnncalc.progress import Progress

    path = str(path)
    report = Report(path)
    t0 = last = time.perf_counter()

    def lap(step):
        nonlocal last
        now = time.perf_counter()
        report.seconds[step], last = now - last, now

    with Progress(f"verify {path}: recalculating in LibreOffice", quiet=quiet) as bar:
        if keep:
            check_output(keep)  # before LibreOffice runs: an existing file is never overwritten
        arch, scale, n, maps_across = read_meta(path)
        refuse_exercise(path)
        check_arch(path, arch, n)
        with bar.ticking():  # LibreOffice says nothing while it works: the bar shows the time
            recalculated = recalc.recalculate(path, timeout=timeout)
        try:
            lap("recalculate")
            # Formulas come from LibreOffice's copy too: it keeps every formula of the file, and a cell that
            # holds a constant in the file holds one there.
            sheets = [name for name in sheet_names(path) if name != STEPS_SHEET]  # text for the reader: never read back
            values, formulas = recalc.read_cells(recalculated, sheets, progress=lambda sheet: bar.stage(f"verify {path}: reading {sheet}"),
                                                 values_only=GIVENS_ONLY,
                                                 shown_as=f"LibreOffice's recalculated copy of {quoted(path)}")
            lap("read")
            if keep:
                with atomic_output(keep) as tmp:
                    shutil.copyfile(recalculated, tmp)
        finally:
            shutil.rmtree(recalculated.parent, ignore_errors=True)
        bar.stage(f"verify {path}: rebuilding the model and its workbook")
        plan = rebuild_plan(path, values, arch, scale, n, maps_across)
        lap("plan")
        compared = [sheet for sheet in plan.sheets if sheet.name not in GIVENS_ONLY]  # a million weights: no formula to see
        bar.stage(f"verify {path}: comparing", total=len(compared))
        compare(report, compared, values, formulas, rel_tol, abs_tol)
        bar.advance(len(compared))
        lap("compare")
    report.seconds["total"] = time.perf_counter() - t0
    return report


def format_report(report):
    """The verify table a person reads (text from the file, such as a formula, with its control characters escaped)."""
    from tabulate import tabulate

    from cnncalc.errors import shown as safe

    lines = [f"verified {safe(report.path)}: {report.checked} formula cells recalculated by LibreOffice and compared with the engine"]
    lines.append(tabulate(sorted(report.per_sheet.items()), headers=["sheet", "formula cells"]))
    lines.append(f"max abs difference {report.max_abs_diff:.3g}, max rel difference {report.max_rel_diff:.3g} "
                 f"(tolerance {REL_TOL:g} relative, {ABS_TOL:g} absolute)")
    shown = report.failures[:10] or report.worst

    def fmt(v):
        return f"{v:.15g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else safe(repr(v), 80)

    if shown:
        title = "cells that differ" if report.failures else "largest differences"
        lines.append(title + ":")
        lines.append(tabulate([(d.address, fmt(d.expected), fmt(d.got), f"{d.abs_diff:.3g}", safe(d.formula, 80) if d.formula else "(not a formula)")
                               for d in shown],
                              headers=["cell", "engine", "LibreOffice", "abs diff", "formula in the file"], disable_numparse=True))
    if report.not_formulas:
        lines.append(f"{len(report.not_formulas)} cell(s) should hold a live formula but hold a constant, e.g. {report.not_formulas[0].address}")
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
    lines.append(f"time: {timing}")
    lines.append("OK: every formula cell agrees with the engine" if report.ok else
                 f"FAILED: {len(report.failures)} cell(s) differ, {len(report.not_formulas)} formula(s) replaced by constants")
    return "\n".join(lines)
