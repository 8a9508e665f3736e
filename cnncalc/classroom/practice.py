"""Practice workbooks: the worked example's layout with the answer cells left empty for a student to fill.

`plan_practice` builds on `plan_workbook`: every computed cell of a blanked step becomes an empty,
unlocked answer cell; the given cells (inputs, weights, and the computed cells of steps left as
worked formulas) stay, on protected sheets (no password). The "Read me" sheet becomes "Instructions",
with a cell for the student's name. The hidden _cnncalc sheet records that this is a practice
workbook (rows 5-10: "practice" and its format version, the blanked steps as JSON, the seed, a
checksum of the given numbers, the name cell, and a fingerprint of the whole exercise),
so `cnncalc check` can rebuild every answer from the file alone, and tell when the exercise was changed.
"""

from dataclasses import dataclass
import hashlib
import json
import textwrap

import numpy as np

from cnncalc.classroom import evaluate
from cnncalc.sheets.cells import Cell, cells_block, sheet_prefix, a1
from cnncalc.errors import CnncalcError, shown
from cnncalc.sheets.workbook import MAPS_ACROSS, META_SHEET, WEIGHTS_SHEET, plan_workbook, sample_sheet_name

PRACTICE_VERSION = 1
META_ROW = 5  # the practice rows of the _cnncalc sheet, below the worked example's rows 0-3
INSTRUCTIONS = "Instructions"
NAME_CELL = (2, 1)  # Instructions!B3
SCALED, PREDICTION = "scaled", "prediction"
EXERCISE_ROW = META_ROW + 5  # the exercise's fingerprint; workbooks made before it was introduced have none
MAX_SEED = 2 ** 53  # a seed is stored in a cell: a spreadsheet keeps whole numbers exactly only up to 2**53
NOTE_WIDTH = 100  # characters a line of the notes under the panels holds
STEP_WORDS = {"scaled": "scaled", "padded": "zero-padded"}  # what a step the red frame moves back through does


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


def plan_practice(model, raw, scale=None, blank=None, seed=None, title=None, labels=None, maps_across=MAPS_ACROSS, recorded_in=None):
    """The practice WorkbookPlan; `plan.answers` lists the answer cells, `plan.reference` the worked example's
    cells ({sheet: {(row, col): Cell}}) of the sample and Weights sheets, for grading. `maps_across` as in
    plan_workbook (check re-plans a workbook with what its _cnncalc sheet records); `recorded_in`, the practice
    workbook whose hidden sheet `blank` was read from (check), so that an unknown step is reported as its edit."""
    raw = model.check_input(np.asarray(raw, dtype=np.float64))
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
            raise CnncalcError(f"Invalid value for --seed. Expected a whole number from 0 to {MAX_SEED:,}. Received {shown(seed)}")
        raw = draw_inputs(raw, seed)
    plan = plan_workbook(model, raw, scale, title, labels, steps=False, maps_across=maps_across)  # Steps would write every answer out
    valid = groups(plan)
    chosen = valid if not blank else list(dict.fromkeys(blank))
    unknown = [name for name in chosen if name not in valid]
    if unknown:
        count = f"{len(unknown):,} steps " if len(unknown) > 1 else ""
        names, received = shown(", ".join(map(repr, unknown))), shown(" ".join(blank))
        if recorded_in is not None:
            raise CnncalcError(f"{shown(recorded_in)}: the steps to compute listed on its hidden {META_SHEET} sheet name {count or 'a step '}"
                               f"this model does not have ({names}): the sheet was edited after the workbook was made. "
                               f"Expected step names of this model: {', '.join(valid)}. Received {received}")
        raise CnncalcError(f"Cannot blank {count}{names}. Expected step names of this model: {', '.join(valid)}. Received --blank {received}")
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
        frame = _frames(sheet, blanks)
        sheet.charts = [c for c in sheet.charts if not _covers(c["values"], blanks | stale)]  # a chart of empty cells is an empty chart
        sheet.protect = True
        _note(sheet, frame)
    weights = plan.sheet(WEIGHTS_SHEET)
    weights.protect = True
    _retext(weights, (0, 0), "Weights, as keras Model.get_weights() returns them (given: this sheet is protected in a practice workbook)")
    summary = plan.sheet("Summary")
    answered = {a.sheet for a in plan.answers}
    cells, stale = summary.cells(), set()
    while True:  # the cells that read an answer, or such a cell (the predicted class reads the outputs beside it)
        more = {pos for pos, cell in cells.items() if cell.formula and pos not in stale and _reads(cell.formula, summary.name, answered, stale)}
        if not more:
            break
        stale |= more
    _override(summary, set(), stale, guard=True)
    summary.protect = True
    _instructions(plan, model)
    _meta(plan, model, raw)
    return plan


def _reads(formula, sheet, sheets, cells=()):
    """Whether a formula reads a cell of one of `sheets`, or one of `cells` (row, col) of its own sheet (there, its
    cached value could give an answer away)."""
    return any(s in sheets or (s == sheet and (r, c) in cells) for s, r, c in evaluate.references(evaluate.parse(formula, sheet)))


def _override(sheet, blanks, stale, guard=False):
    """Answer cells become empty and unlocked; `stale` formula cells keep their formula but lose their cached value
    (`guard`: they also show nothing until every cell they read holds a number, see _guarded)."""
    if not blanks and not stale:
        return
    for block in sheet.blocks:
        def cell(r, c, block=block, make=block.cell):
            pos = (block.top + r, block.left + c)
            original = make(r, c)
            if pos in blanks:
                return Cell(None, style="answer")
            if pos in stale and original is not None and original.formula:
                if guard:
                    return Cell("", _guarded(original.formula, sheet.name), original.style)
                return Cell(None, original.formula, original.style)  # written with 0 cached: a spreadsheet recalculates it
            return original
        block.cell = cell


MAX_GUARDED = 200  # cells a guard counts (a function takes at most 255 arguments)


def _guarded(formula, sheet):
    """'=MATCH(MAX(B9:C9),B9:C9,0)-1' -> '=IF(COUNT(B9,C9)<2,"",MATCH(MAX(B9:C9),B9:C9,0)-1)': blank until every cell it
    reads holds a number, so a practice workbook's Summary shows no prediction (0.000000, class 0) of empty cells."""
    refs = list(dict.fromkeys(evaluate.references(evaluate.parse(formula, sheet))))
    if not refs or len(refs) > MAX_GUARDED:
        return formula
    cells = ",".join(sheet_prefix(s, sheet) + a1(r, c) for s, r, c in refs)
    return f'=IF(COUNT({cells})<{len(refs)},"",{formula[1:]})'


def _covers(rect, cells):
    r0, c0, r1, c1 = rect
    return any(r0 <= r <= r1 and c0 <= c <= c1 for r, c in cells)


def _retext(sheet, pos, text):
    """The text of one given cell replaced (its style kept)."""
    for block in sheet.blocks:
        if block.top <= pos[0] < block.bottom and block.left <= pos[1] < block.right:
            original = block.cell(pos[0] - block.top, pos[1] - block.left)
            if original is not None:
                def cell(r, c, block=block, make=block.cell, new=Cell(text, style=original.style)):
                    return new if (block.top + r, block.left + c) == pos else make(r, c)
                block.cell = cell
                return
    raise AssertionError(f"no cell at {pos} of {sheet.name}")


def _frames(sheet, blanks):
    """Keep the red frames (sheet.outlines: the first conv window, and its output cell) off answer cells, whose border
    is the answer style's blue: a window of cells the student computes moves to the given cells they are computed
    from one to one (the raw input, behind a scaled input or a zero border), and a frame that cannot moves goes.

    Returns (layer name, address of the conv cell the window is read by, the steps it moved back through, last first),
    or None without a frame."""
    if not sheet.outlines:
        return None
    where = {panel.placement.pos(idx): (panel, idx) for panel in sheet.panels for idx in panel.placement.indices()}
    r, c, *_ = sheet.outlines[-1]  # the conv's output cell, framed last
    conv = where[(r, c)][0]
    kept, through = [], []
    for r0, c0, r1, c1 in sheet.outlines[:-1]:
        cells = {(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)}
        while cells and cells & blanks:  # follow each cell back through its one-reference formula
            back = set()
            for pos in cells:
                panel, idx = where[pos]
                f = panel.formula(idx) if panel.formula else None
                if f is None:
                    continue  # a zero of the border: not in the input
                refs = evaluate.references(evaluate.parse(f, sheet.name))
                if len(refs) != 1 or refs[0][0] != sheet.name or refs[0][1:] not in where:
                    back = set()
                    break
                back.add(refs[0][1:])
            step = where[next(iter(cells))][0].step
            through += [] if step in through else [step]
            cells = back
        if cells:
            rows, cols = [p[0] for p in cells], [p[1] for p in cells]
            kept.append((min(rows), min(cols), max(rows), max(cols)))
    if (r, c) not in blanks:
        kept.append((r, c, r, c))
    sheet.outlines = kept
    return (conv.layer.name, a1(r, c), through) if kept else None


def _note(sheet, frame):
    """Lines under the panels: what to do on this sheet, what the red frame shows, what the prediction is."""
    lines = ["Practice: type your answer in each empty cell with a blue border, as a number (e.g. 0.4692). The captions say "
             "how each step is computed. When done, save and run: cnncalc check THIS_FILE.xlsx"]
    if frame:
        layer, cell, through = frame
        done = " and ".join(STEP_WORDS.get(step, step) for step in reversed(through))
        lines.append(f"Red frame: the first window of {layer}, shown on the given numbers: its first cell ({cell}) is Σ window × kernel + bias, "
                     f"the window being these numbers once {done} (yours to compute)." if through else
                     f"Red frame: the first window of {layer} and its first cell ({cell}) = Σ framed numbers × kernel + bias; "
                     "the next cell to the right reads the window one column to the right.")
    if any(p.step == "class" for p in sheet.panels):
        lines.append("Prediction: class = the position of the largest output of the last layer, counted from 0; "
                     "output = that largest value (the model's probability for the class, after a softmax).")
    lines = [part for line in lines for part in textwrap.wrap(line, NOTE_WIDTH)]  # each line prints on the sheet's first page
    row = sheet.extent[0] + 1
    sheet.add(cells_block({(row + k, 1): Cell(text, style="caption") for k, text in enumerate(lines)}))


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
        ("   Prediction: class = MATCH(MAX(p), p, 0) − 1, the position of the largest output; output = MAX(p), that largest value.", "text"),
        ("The red frame on a Sample sheet marks the first window of the convolution: the numbers its first cell reads.", "text"),
        ("Steps to compute: " + ", ".join(plan.blank) + ".", "text"),
        ("Write at least 4 decimals; you may carry more. A value is judged at the precision you write it (0.47 means 0.465 to 0.475).", "text"),
        ("", None),
        ("How it is marked", "subtitle"),
        ("cnncalc check THIS_FILE.xlsx marks each cell right, wrong or missing, and also against your own earlier answers,", "text"),
        ("so one early slip does not make every later cell wrong. A wrong cell that matches a common slip is named (e.g. bias forgotten).", "text"),
    ]
    write_instructions(sheet, lines)


def write_instructions(sheet, lines):
    """The Instructions sheet's cells: [(text, style)] one a row (style None: an empty row) and the name cell."""
    cells = {(i, 0): Cell(text, style=style) for i, (text, style) in enumerate(lines) if style}
    cells[NAME_CELL] = Cell(None, style="answer_text")
    sheet.add(cells_block(cells))
    sheet.col_widths.update({0: 14, 1: 40})
    sheet.protect = True


def _meta(plan, model, raw, row=META_ROW):
    """The practice rows of the hidden _cnncalc sheet from `row` (verify.read_meta reads rows 0-4 and ignores these;
    a training exercise has them below its training row, practice_train.TRAIN_META_ROW)."""
    name_cell = sheet_prefix(INSTRUCTIONS, None) + a1(*NAME_CELL)
    rows = [("practice", PRACTICE_VERSION), ("blank", json.dumps(plan.blank)), ("seed", "none" if plan.seed is None else int(plan.seed)),
            ("given", json.dumps(fingerprint(model, raw))), ("name cell", name_cell)]
    cells = {}
    for i, (key, value) in enumerate(rows):
        cells[(row + i, 0)] = Cell(key, style="text")
        cells[(row + i, 1)] = Cell(value, style="int" if isinstance(value, int) else "text")
    sheet = plan.sheet(META_SHEET)
    sheet.add(cells_block(cells))
    digest = exercise_digest({pos: cell.value for pos, cell in sheet.cells().items()}, row + 5)
    sheet.add(cells_block({(row + 5, 0): Cell("exercise", style="text"), (row + 5, 1): Cell(digest, style="text")}))


def exercise_digest(meta, exercise_row=EXERCISE_ROW):
    """A SHA-256 fingerprint of the exercise: every cell of the hidden _cnncalc sheet ({(row, col): value}) but the
    fingerprint's own row, i.e. the model, scale and sample count, the steps to compute, the seed and the checksum of
    the given numbers. Numbers are taken as a spreadsheet keeps them (12.0 is 12), so a file saved again by Excel
    or LibreOffice keeps its fingerprint; an edit of the hidden sheet does not. Not a secret (anyone who reads
    this function can recompute it): `cnncalc check` also compares the steps listed with the answer cells the file has.
    """
    h = hashlib.sha256(b"cnncalc practice exercise\n")
    for (r, c), value in sorted(meta.items()):
        if r == exercise_row or value is None or value == "":
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        h.update(json.dumps([r, c, value if isinstance(value, (int, float, str)) else str(value)]).encode() + b"\n")
    return h.hexdigest()


def read_practice_meta(meta, path, row=META_ROW):
    """{blank, seed, given, name_cell, digest, exercise_row} from the _cnncalc sheet's values ({(row, col): value}), the
    practice rows starting at `row`; digest is None for a workbook made before practice workbooks carried one. A worked
    example gets a clear error."""
    if meta.get((row, 0)) != "practice":
        raise CnncalcError(f"{path} is a cnncalc worked example, not a practice workbook. Expected a workbook made by "
                           "`cnncalc practice`. Received one without practice rows on its _cnncalc sheet")
    if meta.get((row, 1)) != PRACTICE_VERSION:
        raise CnncalcError(f"{path}: unknown practice format. Expected version {PRACTICE_VERSION}. Received {shown(repr(meta.get((row, 1))))}")
    try:
        blank = json.loads(meta[(row + 1, 1)])
        seed = meta.get((row + 2, 1))
        digest = meta.get((row + 5, 1)) if meta.get((row + 5, 0)) == "exercise" else None
        return {"blank": [str(b) for b in blank], "seed": None if seed == "none" else seed,
                "given": json.loads(meta.get((row + 3, 1)) or "[]"), "name_cell": str(meta.get((row + 4, 1), "")),
                "digest": None if digest is None else str(digest), "exercise_row": row + 5}
    except (KeyError, ValueError, TypeError) as e:
        raise CnncalcError(f"{path}: the {META_SHEET} sheet is damaged. Expected the practice rows (blank steps as JSON). "
                           f"Received an unreadable value ({shown(e)})") from None


def steps_left_out(plan, formulas):
    """The steps the plan gives as worked formulas whose cells in the file hold no formula (empty, or a typed value):
    a file that leaves them to the student while its hidden list of steps to compute does not name them.

    `formulas` is the file's {sheet: {(row, col): '=...'}}. Any formula counts (a spreadsheet may write the worked
    one differently when it saves), so only a given step that was emptied or overwritten is found.
    """
    out = []
    for sheet in plan.sheets:
        if not sheet.name.startswith("Sample "):
            continue
        held = formulas.get(sheet.name, {})
        for panel in sheet.panels:
            group = group_of(panel) if panel.formula is not None else None
            if group is None or group in plan.blank or group in out:
                continue
            if any(panel.formula(idx) is not None and panel.placement.pos(idx) not in held for idx in panel.placement.indices()):
                out.append(group)
    return out
