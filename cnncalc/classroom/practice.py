"""Practice workbooks: the worked example's layout with the answer cells left empty for a student to fill.

`plan_practice` builds on `plan_workbook`: every computed cell of a blanked step becomes an empty,
unlocked answer cell; the given cells (inputs, weights, and the computed cells of steps left as
worked formulas) stay, on protected sheets (no password). The "Read me" sheet becomes "Instructions",
with a cell for the student's name. The hidden _cnncalc sheet records that this is a practice
workbook (rows 5-9: "practice" and its format version, the blanked steps as JSON, the seed, a
checksum of the given numbers, the name cell),
so `cnncalc check` can rebuild every answer from the file alone.
"""

from dataclasses import dataclass
import json

import numpy as np

from cnncalc.classroom import evaluate
from cnncalc.sheets.cells import Block, Cell, cells_block, sheet_prefix, a1
from cnncalc.errors import CnncalcError
from cnncalc.sheets.workbook import META_SHEET, WEIGHTS_SHEET, plan_workbook, sample_sheet_name

PRACTICE_VERSION = 1
META_ROW = 5  # the practice rows of the _cnncalc sheet, below the worked example's rows 0-3
INSTRUCTIONS = "Instructions"
NAME_CELL = (2, 1)  # Instructions!B3
SCALED, PREDICTION = "scaled", "prediction"


@dataclass
class Answer:
    """One cell the student computes: where it is, which step, and the engine's value and formula for it."""

    sheet: str
    pos: tuple  # (row, col), 0-based
    group: str  # the step's name in --blank: a layer name, "scaled" or "prediction"
    panel: object  # the workbook.Panel it belongs to
    idx: tuple  # the element of the panel's tensor
    expected: float
    formula: str  # '=...' as the worked example has it

    @property
    def address(self):
        return sheet_prefix(self.sheet, None) + a1(*self.pos)


def group_of(panel):
    """The name a step answers to in --blank and in the per-layer marks."""
    if panel.layer is not None:
        return panel.layer.name
    elif panel.step == "scaled":
        return SCALED
    elif panel.step in ("class", "class_value"):
        return PREDICTION
    elif panel.step == "input":
        return "input"
    raise AssertionError(f"panel step {panel.step!r} without a layer")


def groups(plan):
    """The steps a student can be asked to compute, in the order the network flows."""
    names = []
    for panel in plan.sheet(sample_sheet_name(0)).panels:
        if panel.formula is not None and group_of(panel) not in names:
            names.append(group_of(panel))
    return names


def draw_inputs(raw, seed):
    """A new integer input for every sample, uniform over floor(min)..ceil(max) of the given input (inclusive).

    The same seed gives the same numbers, so `--seed 7` is one student's own exercise.
    """
    lo, hi = int(np.floor(raw.min())), int(np.ceil(raw.max()))
    rng = np.random.default_rng(seed)
    return rng.integers(lo, max(hi, lo + 1), size=raw.shape, endpoint=True).astype(np.float64)


def fingerprint(model, raw):
    """A checksum of the given numbers (inputs, then weights): two weighted sums, to notice a later edit.

    Sums rather than a hash, because a file need not keep a number's 17th digit: `same_given` compares them
    with a tolerance.
    """
    flat = np.concatenate([np.ravel(raw)] + [np.ravel(w) for layer in model.layers for w in layer.weights.values()])
    k = np.arange(flat.size)
    return [float(np.sum(flat * (1 + 0.5 * np.sin(k + 1)))), float(np.sum(flat * (1 + 0.5 * np.cos(1.7 * k))))]


def same_given(a, b, size):
    """Whether two fingerprints agree within what rounding in a file can change."""
    return len(a) == len(b) == 2 and all(abs(x - y) <= 1e-9 * (1 + size) for x, y in zip(a, b))


def plan_practice(model, raw, scale=None, blank=None, seed=None, title=None, labels=None):
    """The practice WorkbookPlan; `plan.answers` lists the answer cells, `plan.reference` the worked example's
    cells ({sheet: {(row, col): Cell}}) of the sample and Weights sheets, for grading."""
    raw = model.check_input(np.asarray(raw, dtype=np.float64))
    if seed is not None:
        raw = draw_inputs(raw, seed)
    plan = plan_workbook(model, raw, scale, title, labels, steps=False)  # Steps would write every answer out
    valid = groups(plan)
    chosen = valid if not blank else list(dict.fromkeys(blank))
    unknown = [name for name in chosen if name not in valid]
    if unknown:
        raise CnncalcError(f"Cannot blank {', '.join(map(repr, unknown))}. Expected step names of this model: {', '.join(valid)}. "
                           f"Received --blank {' '.join(blank)}")
    # Only the sheets a practice workbook knows: any other (such as Steps, every cell written out) gives answers away.
    plan.sheets = [s for s in plan.sheets if s.name in ("Read me", "Summary", WEIGHTS_SHEET, META_SHEET) or s.name.startswith("Sample ")]
    plan.reference = {s.name: s.cells() for s in plan.sheets if s.name.startswith("Sample ") or s.name == WEIGHTS_SHEET}
    plan.answers, plan.blank, plan.seed, plan.raw = [], [name for name in valid if name in chosen], seed, raw
    samples = [plan.sheet(sample_sheet_name(n)) for n in range(raw.shape[0])]
    for sheet in samples:
        blanks, stale = set(), set()  # answer cells; formula cells whose cached value would give an answer away
        first = next((k for k, p in enumerate(sheet.panels) if group_of(p) in plan.blank and p.formula is not None), len(sheet.panels))
        for k, panel in enumerate(sheet.panels):
            for idx in panel.placement.indices():
                f = panel.formula(idx) if panel.formula else None
                if f is None:
                    continue
                pos = panel.placement.pos(idx)
                if group_of(panel) in plan.blank:
                    blanks.add(pos)
                    plan.answers.append(Answer(sheet.name, pos, group_of(panel), panel, idx, plan.reference[sheet.name][pos].value, "=" + f))
                elif k > first:
                    stale.add(pos)
        _override(sheet, blanks, stale)
        sheet.protect = True
        _note(sheet)
    plan.sheet(WEIGHTS_SHEET).protect = True
    summary = plan.sheet("Summary")
    answered = {a.sheet for a in plan.answers}
    stale = {pos for pos, cell in summary.cells().items() if cell.formula and _reads(cell.formula, summary.name, answered)}
    _override(summary, set(), stale)
    summary.protect = True
    _instructions(plan, model)
    _meta(plan, model, raw)
    return plan


def _reads(formula, sheet, sheets):
    """Whether a formula reads a cell of one of `sheets` (there, its cached value could give an answer away)."""
    return any(ref[0] in sheets for ref in evaluate.references(evaluate.parse(formula, sheet)))


def _override(sheet, blanks, stale):
    """Answer cells become empty and unlocked; `stale` formula cells keep their formula but lose their cached value."""
    if not blanks and not stale:
        return
    for block in sheet.blocks:
        def cell(r, c, block=block, make=block.cell):
            pos = (block.top + r, block.left + c)
            original = make(r, c)
            if pos in blanks:
                return Cell(None, style="answer")
            if pos in stale and original is not None and original.formula:
                return Cell(None, original.formula, original.style)  # written with 0 cached: a spreadsheet recalculates it
            return original
        block.cell = cell


def _note(sheet):
    """One line under the panels: what to do on this sheet."""
    row = sheet.extent[0] + 1
    sheet.add(cells_block({(row, 1): Cell("Practice: type your answer in each empty cell with a blue border, as a number "
                                          "(e.g. 0.4692). The captions say how each step is computed. "
                                          "When done, save and run: cnncalc check THIS_FILE.xlsx", style="caption")}))


def _instructions(plan, model):
    """The "Read me" sheet becomes "Instructions": the student's name, the steps to compute, how it is marked."""
    sheet = plan.sheet("Read me")
    sheet.name = INSTRUCTIONS
    sheet.blocks.clear()
    lines = [
        (f"Practice: compute {model.name} by hand, as Keras does", "title"),
        ("", None),
        ("Your name:", "subtitle"),
        ("", None),
        ("What to do", "subtitle"),
        ("On each Sample sheet the network flows left to right. Yellow cells are the input, blue cells (Weights sheet) the weights.", "text"),
        ("Empty cells with a blue border are yours: type the value each one should hold (a number, or a formula of your own).", "text"),
        ("Each panel's caption says how its cells are computed; the Read me of the worked example (cnncalc example) explains more.", "text"),
        ("   Conv2D: z = Σ window × kernel + bias (cross-correlation, as Keras: the kernel is not flipped); then a = MAX(0, z) for ReLU.", "text"),
        ("   Pooling: the MAX (or AVERAGE) of each window. Flatten: row by row, channel fastest. Dense: z = Σ input × kernel column + bias.", "text"),
        ("   Softmax: m = MAX(z), e = EXP(z − m), s = Σ e, p = e / s. The predicted class is the position of the largest p, counted from 0.", "text"),
        ("Steps to compute: " + ", ".join(plan.blank) + ".", "text"),
        ("Write at least 4 decimals; you may carry more. A value is judged at the precision you write it (0.47 means 0.465 to 0.475).", "text"),
        ("", None),
        ("How it is marked", "subtitle"),
        ("cnncalc check THIS_FILE.xlsx marks each cell right, wrong or missing, and also against your own earlier answers,", "text"),
        ("so one early slip does not make every later cell wrong. A wrong cell that matches a common slip is named (e.g. bias forgotten).", "text"),
    ]
    cells = {(i, 0): Cell(text, style=style) for i, (text, style) in enumerate(lines) if style}
    cells[NAME_CELL] = Cell(None, style="answer_text")
    sheet.add(cells_block(cells))
    sheet.col_widths.update({0: 14, 1: 40})
    sheet.protect = True


def _meta(plan, model, raw):
    """The practice rows of the hidden _cnncalc sheet (verify.read_meta reads rows 0-3 and ignores these)."""
    name_cell = sheet_prefix(INSTRUCTIONS, None) + a1(*NAME_CELL)
    rows = [("practice", PRACTICE_VERSION), ("blank", json.dumps(plan.blank)), ("seed", "none" if plan.seed is None else int(plan.seed)),
            ("given", json.dumps(fingerprint(model, raw))), ("name cell", name_cell)]
    cells = {}
    for i, (key, value) in enumerate(rows):
        cells[(META_ROW + i, 0)] = Cell(key, style="text")
        cells[(META_ROW + i, 1)] = Cell(value, style="int" if isinstance(value, int) else "text")
    plan.sheet(META_SHEET).add(cells_block(cells))


def read_practice_meta(meta, path):
    """{blank, seed, given, name_cell} from the _cnncalc sheet's values; a worked example gets a clear error."""
    if meta.get((META_ROW, 0)) != "practice":
        raise CnncalcError(f"{path} is a cnncalc worked example, not a practice workbook. Expected a workbook made by "
                           "`cnncalc practice`. Received one without practice rows on its _cnncalc sheet")
    if meta.get((META_ROW, 1)) != PRACTICE_VERSION:
        raise CnncalcError(f"{path}: unknown practice format. Expected version {PRACTICE_VERSION}. Received {meta.get((META_ROW, 1))!r}")
    try:
        blank = json.loads(meta[(META_ROW + 1, 1)])
        seed = meta.get((META_ROW + 2, 1))
        return {"blank": [str(b) for b in blank], "seed": None if seed == "none" else seed,
                "given": json.loads(meta.get((META_ROW + 3, 1)) or "[]"), "name_cell": str(meta.get((META_ROW + 4, 1), ""))}
    except (KeyError, ValueError, TypeError) as e:
        raise CnncalcError(f"{path}: the {META_SHEET} sheet is damaged. Expected the practice rows (blank steps as JSON). Received an unreadable value ({e})") from None
