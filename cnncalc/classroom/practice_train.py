"""Practice workbooks of one training step (`cnncalc practice --train`): backprop by hand.

`plan_practice_train` builds on sheets/training.py's `plan_training`, run for one epoch of one batch (every
sample): the step sheet's forward pass and loss stay given, and the cells of the chosen backward steps become
empty, unlocked answer cells, as `plan_practice` does for a prediction. The steps a student can be asked for:
"loss" (dL/d output, in Keras's steps), each layer by name (its dL/dz and dL/dx, and the helper rows they read),
"shares" (each sample's share of dL/dw), "sum" (the batch's dL/dw) and "update" (the optimizer's slots and the
weights after the step). A given cell that reads an answer keeps its formula without a cached value.

The hidden _cnncalc sheet keeps the training row of a training workbook (so the job is read back from the
workbook's own given cells, as `verify` does) and the practice rows below it, from TRAIN_META_ROW; row META_ROW
holds the "practice" marker alone, so that `verify` refuses the file as it refuses any practice workbook.
"""

from dataclasses import replace

import numpy as np

from cnncalc.classroom import evaluate
from cnncalc.classroom.practice import (INSTRUCTIONS, META_ROW, PRACTICE_VERSION, Answer, _meta, _override, _retext,
                                        write_instructions)
from cnncalc.errors import CnncalcError, shown
from cnncalc.sheets.cells import Cell, cells_block
from cnncalc.sheets.training import (DATA_SHEET, SLOT_TITLES, TRAINING_ROW, TRAINING_SHEET, plan_training,
                                     step_sheet_name)
from cnncalc.sheets.workbook import META_SHEET, WEIGHTS_SHEET

TRAIN_META_ROW = TRAINING_ROW + 5  # the practice rows, below the training row of the hidden sheet
STEP_SHEET = step_sheet_name(1, 1)
LOSS, SHARES, SUM, UPDATE = "loss", "shares", "sum", "update"
GIVEN_WEIGHTS = "Weights before the step, as keras Model.get_weights() returns them (given: this sheet is protected in a practice workbook)"
VECTOR_SUMS = ("Σ p·dL/dp", "Σ dL/dy")  # a softmax layer's Σ cell (no layer of its own): part of that layer's step


def one_step(job):
    """The job as one training step: one epoch of one batch holding every sample, one learning rate."""
    if len(job.optimizers) != 1:
        raise CnncalcError(f"A training exercise takes one learning rate. Expected one value for --learning-rate. "
                           f"Received {len(job.optimizers)}")
    return replace(job, epochs=1, batch_size=len(job.raw), checks=[], _fits=None)


def step_group(panel):
    """The step a backward panel belongs to in --blank; None for a given panel (the forward pass, the loss, the
    weights used)."""
    step = panel.step
    if step in ("gradient", "helper"):
        return panel.layer.name if panel.layer is not None else LOSS
    if step.startswith("share "):
        return SHARES
    if step == SUM:
        return SUM
    if step == "after" or step in SLOT_TITLES:
        return UPDATE
    return None


def panel_groups(sheet):
    """{id(panel): step} of the step sheet's backward panels; a softmax's Σ cell goes with its layer's next panel."""
    out, waiting = {}, []
    for panel in sheet.panels:
        group = step_group(panel)
        if group == LOSS and panel.title in VECTOR_SUMS:
            waiting.append(panel)
            continue
        if group is not None:
            out[id(panel)] = group
            for p in waiting:
                out[id(p)] = group
            waiting = []
    return out


def train_groups(sheet):
    groups = panel_groups(sheet)
    return list(dict.fromkeys(groups[id(p)] for p in sheet.panels if id(p) in groups))


def given_numbers(job):
    """The given numbers a training exercise's fingerprint covers besides the weights: inputs, labels, hyperparameters."""
    opt = job.optimizers[0]
    return np.concatenate([np.ravel(job.raw), np.ravel(np.asarray(job.labels, dtype=float)),
                           [float(getattr(opt, h)) for h in opt.hyperparameters()]])


def plan_practice_train(job, blank=None, maps_across=None, recorded_in=None):
    """The practice WorkbookPlan of one training step of `job` (a sheets/training.py TrainingJob); `plan.answers`,
    `plan.reference`, `plan.blank` and `plan.groups` as plan_practice has them, for check."""
    job = one_step(job)
    plan = plan_training(job, **({} if maps_across is None else {"maps_across": maps_across}))
    plan.sheets = [s for s in plan.sheets if s.name in ("Read me", TRAINING_SHEET, DATA_SHEET, WEIGHTS_SHEET, STEP_SHEET, META_SHEET)]
    step = plan.sheet(STEP_SHEET)
    valid = train_groups(step)
    chosen = valid if not blank else list(dict.fromkeys(blank))
    unknown = [name for name in chosen if name not in valid]
    if unknown:
        names, received = shown(", ".join(map(repr, unknown))), shown(" ".join(blank))
        where = (f"{shown(recorded_in)}: the steps to compute listed on its hidden {META_SHEET} sheet name steps this exercise does not "
                 "have" if recorded_in is not None else f"Cannot blank {names}")
        raise CnncalcError(f"{where}. Expected step names of this training step: {', '.join(valid)}. Received {received}")
    plan.reference = {s.name: s.cells() for s in plan.sheets if s.name != META_SHEET}
    plan.blank, plan.groups, plan.seed, plan.raw = [g for g in valid if g in chosen], valid, None, job.raw
    plan.learning_rate = float(job.optimizers[0].learning_rate)
    groups = panel_groups(step)
    plan.answers, blanks = [], set()
    for panel in step.panels:
        if groups.get(id(panel)) not in plan.blank or panel.formula is None:
            continue
        for idx in panel.placement.indices():
            f = panel.formula(idx)
            if f is not None:
                pos = panel.placement.pos(idx)
                blanks.add(pos)
                plan.answers.append(Answer(step.name, pos, groups[id(panel)], panel, idx, plan.reference[step.name][pos].value, "=" + f))
    stale = readers(plan, {(step.name, *pos) for pos in blanks})
    for sheet in plan.sheets:
        _override(sheet, blanks if sheet is step else set(), {tuple(pos) for s, *pos in stale if s == sheet.name})
        sheet.protect = sheet.name != META_SHEET
    for sheet, pos, text in ((TRAINING_SHEET, (2, 0), "hyperparameter (given)"), (WEIGHTS_SHEET, (0, 0), GIVEN_WEIGHTS),
                             (DATA_SHEET, (0, 0), "The training data: each sample's input (as given, before --scale) and its label (given)")):
        _retext(plan.sheet(sheet), pos, text)  # given cells are protected in an exercise: no "edit any"
    step.add(cells_block({(step.extent[0] + 1, 1): Cell(
        "Practice: type your answer in each empty cell with a blue border (a number, e.g. -0.0123, or a formula). When done, "
        "save and run: cnncalc check THIS_FILE.xlsx", style="caption")}))
    _instructions(plan, job)
    plan.sheet(META_SHEET).add(cells_block({(META_ROW, 0): Cell("practice", style="text"), (META_ROW, 1): Cell(PRACTICE_VERSION, style="int")}))
    _meta(plan, job.model, given_numbers(job), TRAIN_META_ROW)  # (the marker above: where verify looks for a practice workbook)
    return plan


def train_steps_left_out(plan, formulas):
    """The backward steps the plan gives as worked formulas whose cells in the file hold no formula: a file that leaves
    them to the student while its hidden list of steps to compute does not name them (as practice.steps_left_out)."""
    step = plan.sheet(STEP_SHEET)
    held, groups, out = formulas.get(step.name, {}), panel_groups(step), []
    for panel in step.panels:
        group = groups.get(id(panel))
        if group is None or group in plan.blank or group in out or panel.formula is None:
            continue
        if any(panel.formula(idx) is not None and panel.placement.pos(idx) not in held for idx in panel.placement.indices()):
            out.append(group)
    return out


def readers(plan, answers):
    """The (sheet, row, col) of the formula cells that read an answer cell, directly or through such a cell: in a
    practice workbook their cached values would give answers away."""
    read_by = {}
    for sheet in plan.sheets:
        for pos, cell in sheet.cells().items():
            if cell.formula:
                for ref in set(evaluate.references(evaluate.parse(cell.formula, sheet.name))):
                    read_by.setdefault(ref, []).append((sheet.name, *pos))
    out, todo = set(), list(answers)
    while todo:
        for key in read_by.get(todo.pop(), ()):
            if key not in out and key not in answers:
                out.add(key)
                todo.append(key)
    return out


def _instructions(plan, job):
    """The "Read me" sheet becomes "Instructions": the student's name, the steps to compute, how it is marked."""
    sheet = plan.sheet("Read me")
    sheet.name = INSTRUCTIONS
    sheet.blocks.clear()
    opt, loss, n = job.optimizers[0], job.loss, len(job.raw)
    softmax_ce = "categorical" in loss.name and not loss.from_logits and getattr(job.model.layers[-1], "activation", None) == "softmax"
    lines = [
        (f"Practice: one training step of {job.model.name} by hand (backprop), as Keras's fit computes it", "title"),
        ("", None),
        ("Your name:", "subtitle"),
        ("", None),
        ("What to do", "subtitle"),
        (f"The sheet {STEP_SHEET!r} holds one step of fit on a batch of {n} sample(s) (Data sheet), loss {loss.name}, optimizer "
         f"{opt.name} (Training sheet). The forward pass and each sample's loss are given.", "text"),
        ("Empty cells with a blue border are yours: each gradient sits a fixed number of rows below its value; the batch band "
         "(right) holds each sample's share of dL/dw, their sum and the update.", "text"),
        (f"   L is the mean of the {n} samples' losses, so each sample's gradient carries 1/{n}." + (
            f" Softmax with cross-entropy: dL/dz = (p − y) / {n}." if softmax_ce else ""), "text"),
        ("   ReLU: dL/dz = dL/da where z > 0, else 0. Max pooling: each window's gradient goes to its (first) largest cell only.", "text"),
        ("   Dense: dL/dkernel[i, j] = x[i] × dL/dz[j]; Conv2D: dL/dkernel = Σ window × dL/dz (not flipped); dL/dbias = Σ dL/dz.", "text"),
        ("   Update: w after = w − learning rate × (the optimizer's step), as each caption says.", "text"),
        ("Steps to compute: " + ", ".join(plan.blank) + ".", "text"),
        ("Write at least 4 significant decimals; you may carry more. A value is judged at the precision you write it.", "text"),
        ("", None),
        ("How it is marked", "subtitle"),
        ("cnncalc check THIS_FILE.xlsx marks each cell right, wrong or missing, and also against your own earlier answers,", "text"),
        ("so one early slip does not make every later cell wrong. A wrong cell that matches a common slip is named", "text"),
        ("(e.g. ReLU mask forgotten, batch mean forgotten, update with the wrong sign).", "text"),
    ]
    write_instructions(sheet, lines)


def is_training_practice(meta):
    """Whether the hidden sheet's values ({(row, col): value}) are a training exercise's."""
    return meta.get((TRAINING_ROW, 0)) == "training" and meta.get((TRAIN_META_ROW, 0)) == "practice"

