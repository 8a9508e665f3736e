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
from cnncalc.errors import CnncalcError
from cnncalc.files import atomic_output, check_output
from cnncalc.inputs import MAX_SAMPLES
from cnncalc.kerasfiles.loader import skeleton
from cnncalc.sheets.workbook import FORMAT_VERSION, META_SHEET, plan_workbook

REL_TOL = 1e-9
ABS_TOL = 1e-12  # for values that cancel to about zero, where a relative test means nothing


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
    """(architecture dict, scale text, sample count) from the hidden sheet cnncalc writes."""
    values = recalc.read_values(path, sheets=[META_SHEET]) if META_SHEET in sheet_names(path) else None
    if not values:
        raise CnncalcError(f"{path} is not a cnncalc workbook. Expected a sheet named {META_SHEET!r} (written by cnncalc). Received a workbook without it")
    meta = values[META_SHEET]
    if meta.get((0, 0)) != "cnncalc workbook" or meta.get((0, 1)) != FORMAT_VERSION:
        raise CnncalcError(f"{path}: unknown cnncalc workbook format. Expected format {FORMAT_VERSION}. Received {_short(meta.get((0, 1)))}")
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
    return arch, str(meta.get((1, 1), "1")), n


def sheet_names(path):
    """The workbook's sheet names; a file that is not an .xlsx, or whose parts claim absurd sizes, is refused first."""
    import openpyxl
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            guards.check_zip(zf, str(path), guards.MAX_XLSX_MEMBER_BYTES, guards.MAX_XLSX_BYTES)
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise CnncalcError(f"Cannot open {path}. Expected an .xlsx workbook (a zip archive). "
                           f"Received a file that is not one ({type(e).__name__}: {_short(str(e))})") from None
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


def read_back(path, values, arch, scale, n):
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
    layout = plan_workbook(model, np.zeros((n, *model.input_shape)), scale, steps=False)
    for layer, shape in zip(model.layers, model.shapes):
        arrays = []
        for wname in layer.weights:
            p = layout.weights[(layer.name, wname)]
            arr = np.zeros(p.shape)
            for idx in p.indices():
                arr[idx] = _number(values, p.sheet, p.pos(idx), f"Weight {layer.name}/{wname}{list(idx)}")
            arrays.append(arr)
        layer.set_weights(arrays, shape)
    raw = np.zeros((n, *model.input_shape))
    for s, p in enumerate(layout.inputs):
        for idx in p.indices():
            raw[(s, *idx)] = _number(values, p.sheet, p.pos(idx), f"Input {list(idx)} of {p.sheet}")
    return model, raw


def verify(path, rel_tol=REL_TOL, abs_tol=ABS_TOL, keep=None, timeout=900, quiet=False):
    """Recalculate `path` in LibreOffice and compare every formula cell with the engine. Returns a Report.

    report.seconds holds each step's time: recalculate (LibreOffice), read (its values and formulas, in one pass),
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
        arch, scale, n = read_meta(path)
        check_arch(path, arch, n)
        with bar.ticking():  # LibreOffice says nothing while it works: the bar shows the time
            recalculated = recalc.recalculate(path, timeout=timeout)
        try:
            lap("recalculate")
            # Formulas come from LibreOffice's copy too: it keeps every formula of the file, and a cell that
            # holds a constant in the file holds one there.
            values, formulas = recalc.read_cells(recalculated, progress=lambda sheet: bar.stage(f"verify {path}: reading {sheet}"))
            lap("read")
            if keep:
                with atomic_output(keep) as tmp:
                    shutil.copyfile(recalculated, tmp)
        finally:
            shutil.rmtree(recalculated.parent, ignore_errors=True)
        bar.stage(f"verify {path}: rebuilding the model and its workbook")
        model, raw = read_back(path, values, arch, scale, n)
        plan = plan_workbook(model, raw, scale, steps=False)  # the Steps sheet holds text, not formulas
        lap("plan")
        bar.stage(f"verify {path}: comparing", total=sum(sheet.extent[0] for sheet in plan.sheets))
        diffs = []
        for sheet in plan.sheets:
            got_sheet, formula_sheet = values.get(sheet.name, {}), formulas.get(sheet.name, {})
            count = 0
            for r, row in sheet.rows():
                bar.advance()
                for c, cell in row:
                    if cell.formula is None:
                        continue
                    count += 1
                    got = got_sheet.get((r, c))
                    d = Difference(sheet_prefix(sheet.name, None) + a1(r, c), float(cell.value), got, formula_sheet.get((r, c)))
                    if d.formula is None:
                        report.not_formulas.append(d)
                    if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isclose(got, d.expected, rel_tol=rel_tol, abs_tol=abs_tol):
                        report.failures.append(d)
                    else:
                        report.max_abs_diff = max(report.max_abs_diff, d.abs_diff)
                        if d.expected:
                            report.max_rel_diff = max(report.max_rel_diff, d.abs_diff / abs(d.expected))
                    diffs.append(d)
            if count:
                report.per_sheet[sheet.name] = count
            report.checked += count
        diffs.sort(key=lambda d: -d.abs_diff)
        report.worst = diffs[:5]
        lap("compare")
    report.seconds["total"] = time.perf_counter() - t0
    return report


def format_report(report):
    """The verify table a person reads."""
    from tabulate import tabulate

    lines = [f"verified {report.path}: {report.checked} formula cells recalculated by LibreOffice and compared with the engine"]
    lines.append(tabulate(sorted(report.per_sheet.items()), headers=["sheet", "formula cells"]))
    lines.append(f"max abs difference {report.max_abs_diff:.3g}, max rel difference {report.max_rel_diff:.3g} "
                 f"(tolerance {REL_TOL:g} relative, {ABS_TOL:g} absolute)")
    shown = report.failures[:10] or report.worst

    def fmt(v):
        return f"{v:.15g}" if isinstance(v, (int, float)) and not isinstance(v, bool) else repr(v)

    if shown:
        title = "cells that differ" if report.failures else "largest differences"
        lines.append(title + ":")
        lines.append(tabulate([(d.address, fmt(d.expected), fmt(d.got), f"{d.abs_diff:.3g}", d.formula or "(not a formula)") for d in shown],
                              headers=["cell", "engine", "LibreOffice", "abs diff", "formula in the file"], disable_numparse=True))
    if report.not_formulas:
        lines.append(f"{len(report.not_formulas)} cell(s) should hold a live formula but hold a constant, e.g. {report.not_formulas[0].address}")
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
    lines.append(f"time: {timing}")
    lines.append("OK: every formula cell agrees with the engine" if report.ok else
                 f"FAILED: {len(report.failures)} cell(s) differ, {len(report.not_formulas)} formula(s) replaced by constants")
    return "\n".join(lines)
