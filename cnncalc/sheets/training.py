"""Plan a training workbook (`cnncalc train`): every step of Keras's fit as live formulas. Pure data, written by
sheets/writer.py's write_plan.

Sheets: "Read me"; "Training" (the hyperparameters of each run, given, and the loss of every step with its chart);
"History" (every weight after every step, for a small model); "Gradient check" (step 1's gradients again by finite
differences); "Data" (the inputs and labels, given); "Weights" (the initial weights, given); one sheet per step
("Step 1", or "Run 2 · Step 1" with several learning rates); a hidden "_cnncalc" sheet holding the architecture and
the run's settings, so that `verify` rebuilds the run from the workbook's own given cells (read_back_training).

A step sheet:
  * one band per sample of the batch, top to bottom: its forward pass left to right, as on a prediction workbook's
    sample sheet (workbook.plan_layers), then the loss in Keras's steps; below it every gradient dL/d(value) at the
    same columns as its value, D rows down, so the backward pass reads right to left; then a row of helper panels
    that keep every formula a SUMPRODUCT over rectangles (a conv's dL/dz spread with zeros, a Dense's dL/dz as a row);
  * right of the bands, the batch: the batch loss, the optimizer's numbers of the step (t, α, ...) and, per weight
    tensor, one row of tensors in the Weights sheet's layouts: the weight used in this step, each sample's share of
    its gradient, their sum (the batch's dL/dw), the optimizer's slots and the weight after the step, which the next
    step reads. L is the batch loss, the mean of the samples' losses l (Keras's "sum_over_batch_size"), so each
    sample's gradients carry the factor 1/B and the batch gradient is their sum, as Keras's fit computes it.
  * a BatchNormalization layer in training mode: each band holds x − μ, x̂ and x̂·γ + β; the batch band holds, per
    channel, the batch's μ and σ² over all the bands, the two means dL/dx needs, and the moving statistics (the next
    step reads them). A Dropout layer that drops units (a seed, or masks given to fit): its mask, given cells (1 kept,
    0 dropped) in each band, which the output and its gradient read; verify reads them back (read_masks).

The cell formulas are rendered where their numpy is: each layer's `formula_backward`, `formula_weight_gradient` and
`formula_deactivate` (engine/layers/*), each loss's *_CELLS (engine/losses.py), each optimizer's `formula_update`
(engine/optimizers.py). The cached values are the engine's (engine/training.py's fit and the layers' backward).
"""

from dataclasses import dataclass, field
import json
import math

import numpy as np

from cnncalc import guards
from cnncalc.engine import losses, ops, optimizers, training
from cnncalc.engine.layers import BatchNormalization, Conv2D, Dense, Dropout
from cnncalc.engine.model import LayerTrace
from cnncalc.errors import CnncalcError
from cnncalc.inputs import parse_scale
from cnncalc.sheets import formulas
from cnncalc.sheets.cells import MAX_COLS, Block, Cell, Placement, WorkbookPlan, a1, cells_block, col_letters, sheet_prefix
from cnncalc.sheets.workbook import (MAPS_ACROSS, META_SHEET, TOP, WEIGHTS_SHEET, Panel, SamplePlanner,
                                     fit_widths, input_note, plan_layers, plan_meta, plan_weights)

TRAINING_SHEET, HISTORY_SHEET, DATA_SHEET = "Training", "History", "Data"
TRAINING_ROW = 7  # the _cnncalc sheet's row "training" and its settings as JSON (below the practice rows 5-6)
TRAINING_VERSION = 1
BAND_TOP = 3  # a step sheet: title row 0, caption row 1, the first sample band from row 3
MAX_HISTORY = 2_000  # weights: past this the History sheet is left out (one row a weight)
MAX_STEP_SHEETS = 2_000  # one sheet a step of a run: spreadsheets slow down past a few thousand sheets
GRADIENT_CHECK_H = 1e-3  # central differences: an error ~h² from the curve, ~1e-16 / h from the two losses' rounding
CHECK_SHEET = "Gradient check"
MIN_CHECKED_GRADIENT = 1e-2
MAX_CHECK_CELLS = 100_000  # the check repeats every sample's forward pass twice a weight tensor: past this it is left out


def step_sheet_name(run, step, runs=1):
    """'Step 3', or 'Run 2 · Step 3' when the workbook holds several runs (both counted from 1)."""
    return f"Step {step}" if runs == 1 else f"Run {run} · Step {step}"


def history_sheet_name(run, runs=1):
    return HISTORY_SHEET if runs == 1 else f"Run {run} · History"


@dataclass
class TrainingJob:
    """What `cnncalc train` trains: the model (its initial weights), the raw inputs (N, *input_shape) and their
    --scale, the labels as given (class indices, one-hot rows or values), the loss, one optimizer per run (engine
    objects: several learning rates are several runs), epochs and batch size."""

    model: object
    raw: np.ndarray
    labels: np.ndarray
    loss: object
    optimizers: list
    epochs: int
    batch_size: int
    scale: str | None = None
    title: str | None = None
    dropout: object = "identity"  # "identity", an int seed, masks(iteration, layer, shape), or a list of those (one a run)
    checks: list | None = None  # [((layer, weight), index)] the gradient check nudges; None: chosen from step 1's gradients
    _fits: list | None = field(default=None, repr=False, compare=False)

    @property
    def x(self):
        return self.raw * parse_scale(self.scale)

    def fits(self):
        """One engine fit per run (cnncalc.engine.training.fit: Keras's fit with shuffle=False), computed once."""
        if self._fits is None:
            self._fits = [training.fit(self.model, self.x, self.labels, self.loss, opt, self.epochs, self.batch_size,
                                       self.dropout[r] if isinstance(self.dropout, list) else self.dropout)
                          for r, opt in enumerate(self.optimizers)]
        return self._fits


def check_size(model, samples, epochs, batch_size, optimizers_, where="the training workbook"):
    """Refuse, before any training, a workbook of more cells than cnncalc lays out (guards.MAX_PLAN_CELLS): per step,
    each sample's forward pass, gradients and helpers, and per weight the batch's columns (used, one share a sample,
    the sum, the optimizer's slots, after)."""
    runs, batch = len(optimizers_), min(batch_size, samples)
    steps = epochs * -(-samples // batch_size)
    per_sample = 3 * (math.prod(model.input_shape) + guards.trace_values(model))
    weights = sum(math.prod(s) for layer, shape in zip(model.layers, model.shapes) for s in layer.weight_shapes(shape).values())
    cells = sum(steps * (batch * per_sample + weights * (batch + 3 + len(opt.slot_names()))) for opt in optimizers_)
    if cells > guards.MAX_PLAN_CELLS:
        raise guards.too_large(f"{where} ({runs} run(s) of {steps:,} steps, {weights:,} weights in {batch + 3}+ columns of the "
                               "batch each step)", guards.MAX_PLAN_CELLS, cells, " cells")
    if runs * steps > MAX_STEP_SHEETS:
        raise guards.too_large(f"{where}'s step sheets ({runs} run(s) of {steps:,} steps)", MAX_STEP_SHEETS, runs * steps, " sheets")


def check_supported(opt):
    """Refuse what the workbook does not draw (the engine follows it, but there are no cells for it)."""
    for arg in ("weight_decay", "clipnorm", "clipvalue", "global_clipnorm"):
        if getattr(opt, arg):
            raise CnncalcError(f"The optimizer uses {arg}={getattr(opt, arg)}. Expected no {arg} in a training workbook "
                               f"(cnncalc has no cells for it yet). Received an optimizer with {arg}")


# ---------------------------------------------------------------- where a gradient sits (each layer's, loss's and
# optimizer's cell formulas sit next to their numpy: engine/layers/*, engine/losses.py, engine/optimizers.py)

def below_cell(p, row):
    """A one-cell column `row` rows below the last element of column p (as a softmax's m and s cells)."""
    return Placement(p.sheet, p.top + p.shape[0] + row, p.left, (1,), "column")


def shifted(p, rows):
    """The same tensor layout `rows` further down: where the gradient of each element of p sits."""
    return Placement(p.sheet, p.top + rows, p.left, p.shape, p.layout, p.across if p.layout == "grid" else None)


def loss_label(loss):
    return {"categorical_crossentropy": "categorical cross-entropy", "sparse_categorical_crossentropy": "sparse categorical cross-entropy",
            "binary_crossentropy": "binary cross-entropy", "mean_squared_error": "mean squared error",
            "mean_absolute_error": "mean absolute error"}[loss.name]


SLOT_TITLES = {"momentum": "m (momentum)", "velocity": "v (velocity)", "velocity_hat": "v̂ = max of the v so far",
               "average_gradient": "average gradient", "accumulator": "accumulator"}


# ---------------------------------------------------------------- the plan

def plan_training(job, maps_across=MAPS_ACROSS):
    """The WorkbookPlan of `job`: every step of every run as live formulas, with the engine's values cached."""
    check_trainable(job.model)
    check_size(job.model, len(job.raw), job.epochs, job.batch_size, job.optimizers)
    fits = job.fits()
    for fit in fits:
        check_supported(fit.optimizer)
    runs, model = len(fits), job.model
    plan = WorkbookPlan()
    readme = plan.add_sheet("Read me")
    train_sheet = plan.add_sheet(TRAINING_SHEET)
    small = count_weights(model) <= MAX_HISTORY and len(fits[0].steps) < MAX_COLS - 2
    history = [plan.add_sheet(history_sheet_name(r + 1, runs), freeze=(3, 2)) for r in range(runs)] if small else []
    check = (plan.add_sheet(CHECK_SHEET) if fits[0].steps and check_cells(model, fits[0]) <= MAX_CHECK_CELLS
             and not batch_normalizations(model) else None)  # a nudged pass would need its own batch statistics
    plan.inputs, plan.labels = plan_data(plan.add_sheet(DATA_SHEET), job, fits[0].loss, model.output_shape)
    plan.weights = plan_weights(plan.add_sheet(WEIGHTS_SHEET), model)
    hyper = plan_hyperparameters(train_sheet, [fit.optimizer for fit in fits], fits[0].loss)
    plan.runs = []
    for r, fit in enumerate(fits):
        planner = RunPlanner(job, fit, plan.inputs, plan.labels, hyper[r], maps_across, plan.weights)
        used = dict(plan.weights)
        slots = {key: {n: None for n in fit.optimizer.slot_names()} for key in trainable_weights(model)}
        steps = []
        for s, step in enumerate(fit.steps):
            sheet = plan.add_sheet(step_sheet_name(r + 1, s + 1, runs), freeze=(BAND_TOP, 0))
            result = planner.plan_step(sheet, s, step, used, slots)
            result["step"] = step
            used, slots = {**used, **result["after"]}, result["slots"]
            steps.append(result)
        plan.runs.append(steps)
        if check is not None and r == 0:
            job.checks = chosen_checks(fit) if job.checks is None else job.checks
            plan_gradient_check(check, planner, fit, steps[0], job.checks)
        if history:
            plan_history(history[r], model, plan.weights, steps)
    plan_loss_table(train_sheet, fits, plan.runs)
    plan_training_readme(readme, job, fits, bool(history), check is not None)
    meta = plan.add_sheet(META_SHEET, hidden=True)
    plan_meta(meta, model, job.scale, len(job.raw), 2, maps_across)
    meta.add(cells_block({(TRAINING_ROW, 0): Cell("training", style="text"),
                          (TRAINING_ROW, 1): Cell(json.dumps(training_settings(job, fits), separators=(",", ":")), style="text")}))
    return plan


def check_cells(model, fit):
    """About how many cells the gradient check lays out: two forward passes of the first batch per weight tensor."""
    per_sample = math.prod(model.input_shape) + guards.trace_values(model)
    return 2 * len(fit.steps[0].grads) * len(fit.steps[0].samples) * (per_sample + 20)


def trainable_weights(model):
    return [(layer.name, w) for layer in model.layers for w in layer.trainable_weight_names()]


def check_trainable(model):
    """Refuse a model with nothing to train."""
    if not trainable_weights(model):
        raise CnncalcError("The model has no weights to train. Expected a Conv2D or Dense layer. Received none")


def count_weights(model):
    return sum(w.size for layer in model.layers for w in layer.weights.values())


def training_settings(job, fits):
    """What the _cnncalc sheet records so verify can rebuild the run: the loss, the optimizer as written (the Training
    sheet's cells override its hyperparameters), epochs, batch size, runs, how labels are held, the checked weights."""
    opt = fits[0].optimizer
    config = opt.get_config()  # as written; the Training sheet's cells override the hyperparameters
    loss = fits[0].loss
    loss_config = {k: v for k, v in loss.get_config().items() if k != "name"}
    return {"version": TRAINING_VERSION, "loss": {"class_name": loss.class_name, "config": loss_config},
            "optimizer": {"class_name": opt.name, "config": config},
            "epochs": job.epochs, "batch_size": job.batch_size, "runs": len(fits), "labels": label_kind(fits[0].loss),
            "dropout": dropout_setting(job, fits),
            "checks": [[key[0], key[1], list(idx)] for key, idx in job.checks or []]}


def dropout_setting(job, fits):
    """How the run drops units: "identity", or {"masks": "cells", "seed": N} when the step sheets hold the masks as
    given cells (verify reads them back; the seed only lays out the sheets again)."""
    masked = any(rec.saved.get("mask") is not None for step in fits[0].steps for rec in step.layers)
    if not masked:
        return "identity" if isinstance(job.dropout, str) else None
    return {"masks": "cells", "seed": int(job.dropout) if isinstance(job.dropout, (int, np.integer)) else 0}


def label_kind(loss):
    """How the Data sheet holds each label: a class index (sparse) or one number per output."""
    return "index" if loss.name == "sparse_categorical_crossentropy" else "values"


def plan_hyperparameters(sheet, opts, loss):
    """The given hyperparameter cells, one column per run; returns [{name: absolute reference}] per run."""
    names = opts[0].hyperparameters()
    cells = {(0, 0): Cell(f"Training: {opts[0].name}, {loss_label(loss)}", style="title"),
             (2, 0): Cell("hyperparameter (edit any: every step follows)", style="header")}
    refs = [{} for _ in opts]
    for r, opt in enumerate(opts):
        cells[(2, 1 + r)] = Cell(f"run {r + 1}", style="header")
        for i, name in enumerate(names):
            cells[(3 + i, 0)] = Cell(name, style="index")
            cells[(3 + i, 1 + r)] = Cell(float(getattr(opt, name)), style="input")
            refs[r][name] = sheet_prefix(sheet.name, None) + a1(3 + i, 1 + r, absolute=True)
    sheet.add(cells_block(cells))
    sheet.hyper_rows = 3 + len(names)
    return refs


def plan_data(sheet, job, loss, output_shape):
    """Each sample's raw input and label, given cells; returns ([input Placement], [label Placement]) per sample."""
    model = job.model
    y = loss.labels(job.labels, output_shape)
    cells = {(0, 0): Cell("The training data: each sample's input (as given, before --scale) and its label. Edit any: every step follows.", style="title")}
    inputs, labels = [], []
    top = 2
    for n in range(len(job.raw)):
        layout = "grid" if len(model.input_shape) >= 2 else "column"
        p = Placement(sheet.name, top + 2, 1, model.input_shape, layout, MAPS_ACROSS if layout == "grid" else None)
        lab_shape = () if label_kind(loss) == "index" else y.shape[1:]
        lp = Placement(sheet.name, top + 2, 1 + p.extent[1] + 1, lab_shape or (1,), "column")
        cells[(top, 0)] = Cell(f"Sample {n + 1}", style="subtitle")
        cells[(top + 1, 1)] = Cell("input", style="header")
        cells[(top + 1, lp.left)] = Cell("label" if label_kind(loss) == "index" else "label y", style="header")
        sheet.add(p.constant_block(job.raw[n], "input"))
        sheet.add(lp.constant_block(np.reshape(y[n], lp.shape), "input"))
        inputs.append(p)
        labels.append(lp)
        top += 2 + max(p.extent[0], lp.extent[0]) + 2
    sheet.add(cells_block(cells))
    sheet.col_widths[0] = 12
    return inputs, labels


# ---------------------------------------------------------------- a step sheet

def layer_traces(model, step):
    """The step's forward pass as the prediction planner takes it (LayerTrace per layer, batch first)."""
    return [LayerTrace(rec.layer, model.shapes[i], model.shapes[i + 1], rec.pre, rec.out) for i, rec in enumerate(step.layers)]


def needs_input_gradient(model, i):
    """dL/dx of layer i is computed for every layer but the first (Keras does not differentiate the input)."""
    return i > 0


class BatchBand:
    """Where the batch band's cells sit, from (top, col0): the scalar table (label, value) and, per weight tensor, one
    row of tensors in the Weights sheet's layouts: the weight used, (a conv kernel turned 180°), each sample's share of
    the gradient, their sum, the optimizer's slots, the weight after the step."""

    def __init__(self, sheet_name, top, col0, model, fit, samples, scalar_rows):
        self.top, self.col0, self.samples = top, col0, samples
        self.keys = [(layer.name, w) for layer in model.layers for w in layer.trainable_weight_names()]
        self.layers = {layer.name: layer for layer in model.layers}
        rotate = {(layer.name, "kernel") for i, layer in enumerate(model.layers) if isinstance(layer, Conv2D) and needs_input_gradient(model, i)}
        self.columns = (["used"] + (["rotated"] if rotate else []) + [f"share {k}" for k in range(samples)] + ["sum"]
                        + list(fit.optimizer.slot_names()) + ["after"])
        shapes = {key: self.layers[key[0]].weights[key[1]].shape for key in self.keys}
        layouts = {key: self.layers[key[0]].weight_layouts()[key[1]] for key in self.keys}
        rot_shapes = {key: (*self.layers[key[0]].dilated_extent(), *shapes[key][2:]) for key in rotate}

        def extent(shape, layout):
            return Placement(sheet_name, 0, 0, shape, layout).extent

        width = max([extent(shapes[k], layouts[k])[1] for k in self.keys] + [extent(s, "kernel")[1] for s in rot_shapes.values()])
        self.width = width
        self.scalar_top = top + 1
        row = self.scalar_top + scalar_rows + 1
        self.groups, self.at = [], {name: {} for name in self.columns}
        for key in self.keys:
            height = max(extent(shapes[key], layouts[key])[0], extent(rot_shapes[key], "kernel")[0] if key in rot_shapes else 0)
            self.groups.append((key, row))
            for c, name in enumerate(self.columns):
                if name == "rotated" and key not in rot_shapes:
                    continue
                shape, layout = (rot_shapes[key], "kernel") if name == "rotated" else (shapes[key], layouts[key])
                self.at[name][key] = Placement(sheet_name, row + 2, self.left(c), shape, layout)
            row += 2 + height + 1
        self.stats, self.stat_tops = {}, {}  # BatchNormalization layer name -> {row name: Placement (C,)}; its title row
        for layer in batch_normalizations(model):
            self.stat_tops[layer.name] = row
            channels = layer.weights["moving_mean"].shape
            self.stats[layer.name] = {name: Placement(sheet_name, row + 1 + j, self.left(0), channels, "row")
                                      for j, name in enumerate(STAT_ROWS)}
            row += 1 + len(STAT_ROWS) + 1
        self.bottom = row
        self.right = max([self.left(len(self.columns))] + [p.left + p.extent[1] for st in self.stats.values() for p in st.values()])

    def left(self, c):
        """The first column of tensor column c (labels sit in col0)."""
        return self.col0 + 1 + c * (self.width + 1)


def batch_normalizations(model):
    """The BatchNormalization layers that train on the batch's statistics (a frozen one runs as at inference)."""
    return [layer for layer in model.layers if isinstance(layer, BatchNormalization) and layer.trainable]


STAT_ROWS = {  # a BatchNormalization layer's rows in the batch band, one cell per channel
    "mean": "batch mean μ = Σ x / n (n = batch × height × width)",
    "variance": "batch variance σ² = Σ (x − μ)² / n (biased, as Keras)",
    "mean_g": "mean of g = dL/dx̂ over the batch",
    "mean_gx": "mean of g × x̂ over the batch",
    "moving_mean used": "moving mean before the step",
    "moving_mean after": "moving mean after: × momentum + μ × (1 − momentum)",
    "moving_variance used": "moving variance before the step",
    "moving_variance after": "moving variance after: × momentum + σ² × (1 − momentum)",
}


COLUMN_TITLES = {"used": "w used in this step", "rotated": "kernel turned 180° (for dL/dx)", "sum": "dL/dw = Σ of the shares",
                 "after": "w after the step"}


def column_title(name):
    if name.startswith("share "):
        return f"dL/dw: share of sample {int(name.split()[1]) + 1}"
    return COLUMN_TITLES.get(name) or SLOT_TITLES.get(name, name)


class Band:
    """One sample's band: its forward panels (SamplePlanner), the offset D of its gradients, its helper row."""

    def __init__(self, sheet, top, k, n, maps_across):
        self.sheet, self.top, self.k, self.n = sheet, top, k, n
        self.sp = SamplePlanner(sheet, maps_across)
        self.sp.top, self.sp.col = top + 1 + TOP, 1
        self.gp = SamplePlanner(sheet, maps_across)  # adds the gradient panels, whose placements are given
        self.hp = SamplePlanner(sheet, maps_across)  # the helper row, below the gradients
        self.D = None
        self.bb = None  # the step's BatchBand (the weights used, the kernels turned 180°)
        self.for_weights = {}  # layer name -> (dL/dz Placement, input Placement, helpers): its weight gradients' inputs
        self.grad = {}  # id(forward Placement) -> Placement of its gradient
        self.helpers = {}  # layer name -> {"grid": Placement, "row": Placement}
        self.layer_panels = {}  # layer name -> {step: Placement}
        self.loss_cell = None  # Placement of the sample's loss l
        self.masks = {}  # Dropout layer name -> Placement of its mask cells (when the step drops units)
        self.bn = {}  # BatchNormalization layer name -> {"x", "centered", "xhat", "dxhat": Placement} (training mode)

    def below(self, p):
        return shifted(p, self.D)

    def add_gradient(self, forward, title, caption, values, formula, layer=None, step="gradient"):
        """A gradient panel D rows below the forward placement `forward` (a Placement or a Panel's)."""
        g = self.below(forward)
        self.gp.add(Panel(title, caption, g, values, formula, step=step, layer=layer))
        self.grad[id(forward)] = g
        return g

    def add_helper(self, left, shape, title, caption, values, formula, layer, step):
        """A helper panel in the row below the gradients, starting at column `left` or further right."""
        self.hp.col = max(self.hp.col, left)
        p = self.hp.place(shape)
        self.hp.add(Panel(title, caption, p, values, formula, step=step, layer=layer))
        return p


INPUT_GRADIENT_CAPTIONS = {
    "Conv2D": "= Σ over filters of SUMPRODUCT(spread dL/dz window, kernel turned 180°)",
    "Dense": "= SUMPRODUCT(kernel row, dL/dz)",
    "MaxPooling2D": "each window's gradient goes to its (first) largest cell",
    "AveragePooling2D": "each window's gradient, shared over its cells",
    "SumPooling2D": "each window's gradient, to every cell",
    "GlobalMaxPooling2D": "to the channel's largest cell (shared among ties)",
    "GlobalAveragePooling2D": "shared over the channel's cells",
    "Flatten": "the same numbers, back in the input's shape",
    "Reshape": "the same numbers, back in the input's shape",
    "ZeroPadding2D": "the padded gradient without its border",
    "Dropout": "identity (nothing dropped)",
    "SpatialDropout2D": "identity (nothing dropped)",
}


def label_values(loss, step, k):
    """The label of sample k of the step as the loss compares it: one-hot for a class index, smoothed if asked."""
    p = step.y_pred[k]
    y = step.y[k] if label_kind(loss) == "values" else losses.one_hot(step.y[k], p.shape[-1])
    if loss.label_smoothing:
        y = y * (1.0 - loss.label_smoothing) + (0.5 * loss.label_smoothing if loss.name == "binary_crossentropy"
                                                else loss.label_smoothing / p.shape[-1])
    return np.asarray(y, dtype=np.float64)


# ---------------------------------------------------------------- one run: its step sheets

class RunPlanner:
    """Plans the step sheets of one run (one learning rate)."""

    def __init__(self, job, fit, inputs, labels, hyper, maps_across, initial=None):
        self.job, self.fit, self.inputs, self.labels, self.hyper, self.maps_across = job, fit, inputs, labels, hyper, maps_across
        self.initial = initial or {}  # {(layer, weight): Placement} of the Weights sheet
        self.model, self.opt, self.loss = fit.model, fit.optimizer, fit.loss
        self.factor = parse_scale(job.scale)
        self.samples_max = min(job.batch_size, len(job.raw))
        self.band_height = None

    # -------------------------------------------------------- the sheet

    def plan_step(self, sheet, s, step, used_before, prev_slots):
        """One step sheet. used_before: {key: Placement of the weights the step starts from}; prev_slots: {key:
        {slot: Placement, or None before the first step}}. Returns {"after", "slots", "loss": Placement of L}."""
        t = step.iteration + 1
        scalar_rows = 2 + len(self.hyper) + len(self.opt.formula_scalars(t))
        if self.band_height is None:  # measured once on a scratch sheet: every step's bands have the same size
            scratch = WorkbookPlan().add_sheet(sheet.name)
            self.plan_band(scratch, step, 0, BAND_TOP, BatchBand(sheet.name, 0, 0, self.model, self.fit, self.samples_max, scalar_rows))
            self.band_height, self.band_width = scratch.extent[0] - BAND_TOP + 1, scratch.extent[1]
        # The batch band sits right of the sample bands (its columns keep their own widths), or below them past Excel's last column
        bb = BatchBand(sheet.name, BAND_TOP, self.band_width + 1, self.model, self.fit, self.samples_max, scalar_rows)
        if bb.right > MAX_COLS:
            bb = BatchBand(sheet.name, BAND_TOP + self.samples_max * self.band_height, 0, self.model, self.fit, self.samples_max, scalar_rows)
        numbers = ", ".join(str(int(n) + 1) for n in step.samples)
        sheet.add(cells_block({
            (0, 0): Cell(f"Step {s + 1}: epoch {step.epoch + 1}, batch {step.batch + 1}, samples {numbers} (in order: cnncalc "
                         "does not shuffle, as fit(shuffle=False))", style="title"),
            (1, 0): Cell(f"One band per sample: its forward pass left to right, every gradient dL/d… below its value. Then the batch "
                         f"({'from column ' + col_letters(bb.col0) if bb.col0 else 'from row ' + str(bb.top + 1)}): L = the "
                         f"{'mean' if self.loss.reduction == 'sum_over_batch_size' else 'sum'} of the samples' losses, dL/dw = the sum "
                         f"of their shares, the {self.opt.name} update.",
                         style="caption")}))
        bands = []
        for k in range(len(step.samples)):
            bands.append(self.plan_band(sheet, step, k, BAND_TOP + k * self.band_height, bb))
            if sheet.extent[0] > BAND_TOP + (k + 1) * self.band_height:
                raise AssertionError("a sample band is taller than the first one")
        result = self.plan_batch(sheet, step, bands, bb, used_before, prev_slots, t)
        result["masks"] = [band.masks for band in bands]
        sheet.panels = [p for band in bands for p in band.sp.panels + band.gp.panels + band.hp.panels] + result["panels"]
        return result

    # -------------------------------------------------------- one sample's band

    def plan_band(self, sheet, step, k, top, bb):
        """Sample k of the batch: forward panels, the loss, every gradient D rows below its value, the helpers."""
        band = self.plan_forward(sheet, step, k, top, bb.at["used"], stats=bb.stats)
        band.bb = bb
        forward_bottom = sheet.extent[0]
        band.D = forward_bottom - top
        sheet.add(cells_block({(forward_bottom, 0): Cell(f"Sample {band.n + 1}: backward pass. Each gradient sits {band.D} rows below "
                                                         "the value it belongs to: read it right to left", style="subtitle")}))
        band.hp.top, band.hp.col = forward_bottom + band.D + 1 + TOP, 1
        self.plan_loss_backward(band, step, k, band.out_p, band.loss_panels)
        self.plan_backward(band, step, k)
        return band

    def plan_forward(self, sheet, step, k, top, weights, title="forward pass", masks=None, stats=None):
        """Sample k's forward pass and loss l, left to right from row `top`, with the weights at `weights`
        ({(layer, weight): Placement}): a Band whose gradients are still to come. A Dropout layer that drops units
        reads its mask from given cells it lays out, or from `masks` ({layer name: Placement}) when given; a
        BatchNormalization layer in training mode reads its batch's statistics from `stats` (BatchBand.stats)."""
        n = int(step.samples[k])
        band = Band(sheet, top, k, n, self.maps_across)
        sp, name = band.sp, sheet.name
        data = self.inputs[n]
        caption = "= the Data sheet's input" + (f" × {self.job.scale}" if self.factor != 1.0 else "")
        band.x0 = sp.add(Panel(f"Input x (sample {n + 1})", caption, sp.place(self.model.input_shape), step.x[k],
                               lambda idx: formulas.scale(data.ref(idx, name), self.factor), step="scaled"))
        traces, x, start = layer_traces(self.model, step), band.x0, 0
        weights = {**self.initial, **weights}  # a frozen layer's weights stay those of the Weights sheet
        for i, rec in enumerate(step.layers):
            if isinstance(rec.layer, Dropout) and rec.saved.get("mask") is not None:
                x = plan_layers(sp, traces[start:i], k, x, weights)
                x = self.plan_dropout(band, rec, k, x, (masks or {}).get(rec.layer.name))
                start = i + 1
            elif isinstance(rec.layer, BatchNormalization) and "mean" in rec.saved:
                if stats is None:
                    raise AssertionError("a BatchNormalization layer in training mode needs the batch band's statistics")
                x = plan_layers(sp, traces[start:i], k, x, weights)
                x = self.plan_batch_normalization(band, rec, k, x, weights, stats[rec.layer.name])
                start = i + 1
        plan_layers(sp, traces[start:], k, x, weights)
        for panel in sp.panels[1:]:
            band.layer_panels.setdefault(panel.layer.name, {})[panel.step] = panel.placement
        band.out_p = self.output_of(band, len(step.layers) - 1)
        band.loss_panels = self.plan_loss_forward(band, step, k, band.out_p)
        sheet.add(cells_block({(top, 0): Cell(f"Sample {n + 1}: {title}", style="subtitle")}))
        return band

    def plan_dropout(self, band, rec, k, x, mask_p=None):
        """A Dropout layer that drops units, for sample k: its mask as given cells (1 kept, 0 dropped; or mask_p, cells
        laid out already), then its output x × mask / (1 − rate) (the layer's formula_train)."""
        layer, sp, name = rec.layer, band.sp, band.sheet.name
        mask = rec.saved["mask"]
        if mask.shape[0] != len(rec.x):
            raise CnncalcError(f"Layer {layer.name!r} ({layer.class_name}) draws one mask for the whole batch (noise_shape "
                               f"{layer.noise_shape}). Expected a mask per sample (noise_shape None or starting with None) in a "
                               "training workbook. Received a fixed batch axis")
        label = f"{layer.name} ({layer.class_name})"
        if mask_p is None:
            m = mask[k].astype(np.float64)
            mask_p = sp.add(Panel(f"{label} mask: 1 kept, 0 dropped (given)",
                                  f"this step's mask (type 0 or 1: every step follows); kept units are scaled by 1/(1 − {layer.rate:g})",
                                  sp.place(m.shape), m, None, style="input", step="mask", layer=layer))
        band.masks[layer.name] = mask_p
        place = sp.place(x.shape)
        return sp.add(Panel(f"{label} output", f"= x × mask / (1 − {layer.rate:g})" + input_note(sp, x, place), place,
                            rec.out[k], lambda idx: layer.formula_train(idx, x, mask_p, name), step="output", layer=layer))

    def plan_batch_normalization(self, band, rec, k, x, weights, stats):
        """A BatchNormalization layer in training mode, for sample k: x − μ, x̂ = (x − μ) / √(σ² + ε) and the output
        x̂ × γ + β, with μ and σ² the batch's, per channel, in the batch band (stats)."""
        layer, sp, name = rec.layer, band.sp, band.sheet.name
        label = f"{layer.name} ({layer.class_name})"
        w = {n: weights[(layer.name, n)] for n in ("gamma", "beta") if n in layer.weights}
        mean, variance = rec.saved["mean"], rec.saved["variance"]
        centered = rec.x[k] - mean
        xhat = centered / np.sqrt(variance + layer.epsilon)
        where = f" (the batch band, {layer.name})"
        place = sp.place(x.shape)
        c_p = sp.add(Panel(f"{label}: x − μ", "μ: the batch mean of the channel" + where + input_note(sp, x, place),
                           place, centered, lambda idx: layer.formula_centered(idx, x, stats["mean"], name),
                           step="bn_centered", layer=layer))
        h_p = sp.add(Panel(f"{label}: x̂ = (x − μ) / √(σ² + ε)", f"σ²: the batch variance{where}, ε = {layer.epsilon:g}",
                           sp.place(x.shape), xhat, lambda idx: layer.formula_normalized(idx, c_p, stats["variance"], name),
                           step="bn_normalized", layer=layer))
        out = sp.add(Panel(f"{label} output", "= x̂" + (" × γ" if "gamma" in w else "") + (" + β" if "beta" in w else ""),
                           sp.place(x.shape), rec.out[k], lambda idx: layer.formula_scaled(idx, h_p, w, name), step="output", layer=layer))
        band.bn[layer.name] = {"x": x, "centered": c_p, "xhat": h_p, "w": w}
        return out

    def output_of(self, band, i):
        """The placement of layer i's output on the band (the input panel for i = -1)."""
        if i < 0:
            return band.x0
        panels = band.layer_panels[self.fit.model.layers[i].name]
        for step in ("softmax", "log_softmax", "activation", "pre", "output"):
            if step in panels:
                return panels[step]
        raise AssertionError(panels)

    # -------------------------------------------------------- the loss

    def column(self, band, title, caption, values, formula, placement=None, step="loss"):
        """A column panel on the band's forward row (at `placement` when it was taken already)."""
        p = placement or band.sp.place(np.shape(values))
        return band.sp.add(Panel(title, caption, p, np.asarray(values, dtype=float), formula, step=step))

    def cell(self, band, c, label, value, formula, step="loss"):
        """One labelled cell at the one-element column placement c (as the softmax's m and s)."""
        band.sheet.add(cells_block({(c.top, c.left - 1): Cell(label, style="index")}))
        band.sp.add_cells(Panel(label, "", c, np.reshape(value, (1,)), lambda idx: formula, step=step))
        return c

    def label_formula(self, band, j):
        """The label y[j] the loss compares with (as Keras receives it): a Data cell, one-hot of an index, or smoothed."""
        lab, name = self.labels[band.n], band.sheet.name
        if label_kind(self.loss) == "index":
            return f"IF({lab.ref((0,), name)}={j},1,0)"
        ref, s = lab.ref((j,), name), self.loss.label_smoothing
        if not s:
            return ref
        if self.loss.name == "binary_crossentropy":
            return f"{ref}*{formulas.number(1.0 - s)}+{formulas.number(0.5 * s)}"
        return f"{ref}*{formulas.number(1.0 - s)}+{formulas.number(s / lab.shape[0])}"

    def plan_loss_forward(self, band, step, k, out_p):
        """The sample's loss l, in the steps Keras takes, each a column of cells (engine/losses.py's *_CELLS and
        numpy); returns the placements by step name."""
        loss, name = self.loss, band.sheet.name
        p = step.y_pred[k]
        y = label_values(loss, step, k)
        K = p.shape[0]
        if len(p.shape) != 1:
            raise CnncalcError(f"The model's output has shape {p.shape}. Expected a vector (units,) for a training workbook. "
                               "Received an output a loss panel cannot lay out: add a Flatten or GlobalAveragePooling2D")

        def r(key, j):
            return (out_p if key == "p" else at[key]).ref((j,), name)

        def span(key):
            return (out_p if key == "p" else at[key]).span((0,), (K - 1,), name)

        at = {"y": self.column(band, "label y", "as fit receives it" + (" (one-hot of the Data sheet's class)" if label_kind(loss) == "index" else ""),
                               y, lambda idx: self.label_formula(band, idx[0]))}
        categorical = loss.name in ("categorical_crossentropy", "sparse_categorical_crossentropy")
        if categorical and not loss.from_logits:
            cells = losses.CATEGORICAL_CELLS
            s = p.sum()
            u = p / s
            q, _ = losses.clip_steps(u)
            terms = y * np.log(q)
            u_p = band.sp.place((K,))
            s_ref = below_cell(u_p, 1).ref((0,), name, absolute=True)
            at["u"] = self.column(band, "u = p / s", "Keras divides by the sum (1 after a softmax)", u, lambda idx: cells["u"](r("p", idx[0]), s_ref), u_p)
            at["s"] = self.cell(band, below_cell(u_p, 1), "s = Σ p", s, cells["s"](span("p")))
            at["q"] = self.column(band, "q = clip(u, ε, 1 − ε)", f"ε = {losses.EPSILON:g}: log never sees 0", q, lambda idx: cells["q"](r("u", idx[0])))
            at["terms"] = self.column(band, "y · ln q", "", terms, lambda idx: cells["term"](r("y", idx[0]), r("q", idx[0])))
            value = -terms.sum()
        elif categorical:  # from logits: the log-softmax in steps
            cells = losses.CATEGORICAL_LOGITS_CELLS
            m, e, s, log_p = ops.log_softmax_steps(p)
            terms = y * log_p
            e_p = band.sp.place((K,))
            m_ref, s_ref = below_cell(e_p, 1).ref((0,), name, absolute=True), below_cell(e_p, 2).ref((0,), name, absolute=True)
            at["e"] = self.column(band, "e = exp(z − m)", "the log-softmax of the logits z, in steps", e,
                                  lambda idx: formulas.softmax_exp(r("p", idx[0]), m_ref), e_p)
            at["m"] = self.cell(band, below_cell(e_p, 1), "m = max z", m[0], formulas.softmax_max(span("p")))
            at["s"] = self.cell(band, below_cell(e_p, 2), "s = Σ e", s[0], formulas.softmax_sum(span("e")))
            at["log_p"] = self.column(band, "log p = z − m − ln s", "", log_p, lambda idx: formulas.log_softmax(r("p", idx[0]), m_ref, s_ref))
            at["terms"] = self.column(band, "y · log p", "", terms, lambda idx: cells["term"](r("y", idx[0]), r("log_p", idx[0])))
            value = -terms.sum()
        elif loss.name == "binary_crossentropy" and not loss.from_logits:
            cells = losses.BINARY_CELLS
            q, _ = losses.clip_steps(p)
            terms = -(y * np.log(q) + (1.0 - y) * np.log(1.0 - q))
            at["q"] = self.column(band, "q = clip(p, ε, 1 − ε)", f"ε = {losses.EPSILON:g}", q, lambda idx: cells["q"](r("p", idx[0])))
            at["terms"] = self.column(band, "−(y ln q + (1 − y) ln(1 − q))", "", terms, lambda idx: cells["term"](r("y", idx[0]), r("q", idx[0])))
            value = terms.mean()
        elif loss.name == "binary_crossentropy":
            cells = losses.BINARY_LOGITS_CELLS
            terms = y * ops.softplus(-p) + (1.0 - y) * ops.softplus(p)
            at["terms"] = self.column(band, "y·softplus(−z) + (1 − y)·softplus(z)", "binary cross-entropy of the logits z", terms,
                                      lambda idx: cells["term"](r("y", idx[0]), r("p", idx[0])))
            value = terms.mean()
        elif loss.name in ("mean_squared_error", "mean_absolute_error"):
            cells = losses.MSE_CELLS if loss.name == "mean_squared_error" else losses.MAE_CELLS
            terms = np.square(y - p) if loss.name == "mean_squared_error" else np.abs(y - p)
            at["terms"] = self.column(band, "(y − p)²" if loss.name == "mean_squared_error" else "|y − p|", "", terms,
                                      lambda idx: cells["term"](r("y", idx[0]), r("p", idx[0])))
            value = terms.mean()
        else:
            raise AssertionError(loss.name)
        at["l"] = self.cell(band, below_cell(at["terms"], 1), "l = −Σ" if categorical else "l = mean", value, cells["loss"](span("terms")))
        band.loss_cell = at["l"]
        return at

    def plan_loss_backward(self, band, step, k, out_p, at):
        """dl/d… of the loss's steps below them, and dL/dp below the model's output p (engine/losses.py's *_CELLS)."""
        loss, name, B = self.loss, band.sheet.name, len(step.samples)
        batch = B if loss.reduction == "sum_over_batch_size" else None
        p = step.y_pred[k]
        K = p.shape[0]
        y = label_values(loss, step, k)
        d_out = step.layers[-1].d_out[k]

        def r(key, j):
            return (out_p if key == "p" else at[key]).ref((j,), name)

        share = f"the batch loss L is the mean of {B} samples' losses, so each carries 1/{B}" if batch else "L is the sum of the samples' losses"
        per = f" / {B}" if batch else ""
        categorical = loss.name in ("categorical_crossentropy", "sparse_categorical_crossentropy")
        if categorical and not loss.from_logits:
            cells = losses.CATEGORICAL_CELLS
            u = p / p.sum()
            q, slope = losses.clip_steps(u)
            d_q = -y / q
            d_u = d_q * slope
            dq_p = band.add_gradient(at["q"], "dl/dq", "= −y / q", d_q, lambda idx: cells["d_q"](r("y", idx[0]), r("q", idx[0])))
            du_p = band.add_gradient(at["u"], "dl/du", "= dl/dq where u is not clipped (× 1/2 exactly at ε or 1 − ε), else 0", d_u,
                                     lambda idx: cells["d_u"](r("u", idx[0]), dq_p.ref(idx, name)))
            sigma = band.below(at["s"])
            sigma_ref, s_ref = sigma.ref((0,), name, absolute=True), at["s"].ref((0,), name, absolute=True)
            self.gradient_cell(band, sigma, "Σ dl/du · u", (d_u * u).sum(),
                               cells["sigma"](du_p.span((0,), (K - 1,), name), at["u"].span((0,), (K - 1,), name)))
            band.add_gradient(out_p, "dL/dp", f"= (dl/du − Σ dl/du·u) / s{per}: {share}", d_out,
                              lambda idx: cells["d_y"](du_p.ref(idx, name), sigma_ref, s_ref, batch))
        elif categorical:
            s_ref, y_span = at["s"].ref((0,), name, absolute=True), at["y"].span((0,), (K - 1,), name)
            band.add_gradient(out_p, "dL/dz", f"= (softmax(z) · Σy − y){per}, softmax(z) = e / s: {share}", d_out,
                              lambda idx: losses.CATEGORICAL_LOGITS_CELLS["d_y"](r("e", idx[0]), s_ref, y_span, r("y", idx[0]), batch))
        elif loss.name == "binary_crossentropy" and not loss.from_logits:
            cells = losses.BINARY_CELLS
            q, _ = losses.clip_steps(p)
            d_q = -(y / q - (1.0 - y) / (1.0 - q))
            dq_p = band.add_gradient(at["q"], "dl/dq × D", "= −(y / q − (1 − y) / (1 − q))", d_q,
                                     lambda idx: cells["d_q"](r("y", idx[0]), r("q", idx[0])))
            band.add_gradient(out_p, "dL/dp", f"= that where p is not clipped, / {K} outputs{per}: {share}", d_out,
                              lambda idx: cells["d_y"](r("p", idx[0]), dq_p.ref(idx, name), K, batch))
        elif loss.name == "binary_crossentropy":
            band.add_gradient(out_p, "dL/dz", f"= ((1 − y)·sigmoid(z) − y·sigmoid(−z)) / {K}{per}: {share}", d_out,
                              lambda idx: losses.BINARY_LOGITS_CELLS["d_y"](r("y", idx[0]), r("p", idx[0]), K, batch))
        elif loss.name in ("mean_squared_error", "mean_absolute_error"):
            cells = losses.MSE_CELLS if loss.name == "mean_squared_error" else losses.MAE_CELLS
            what = "2 (p − y)" if loss.name == "mean_squared_error" else "sign(p − y) (−1 where p = y)"
            band.add_gradient(out_p, "dL/dp", f"= {what} / {K}{per}: {share}", d_out,
                              lambda idx: cells["d_y"](r("y", idx[0]), r("p", idx[0]), K, batch))
        else:
            raise AssertionError(loss.name)

    def gradient_cell(self, band, c, label, value, formula):
        """One labelled cell of the backward row (the Σ of a softmax or a cross-entropy)."""
        band.sheet.add(cells_block({(c.top, c.left - 1): Cell(label, style="index")}))
        band.gp.add_cells(Panel(label, "", c, np.reshape(value, (1,)), lambda idx: formula, step="gradient"))
        return c

    # -------------------------------------------------------- the layers, last to first

    def plan_backward(self, band, step, k):
        name = band.sheet.name
        for i in reversed(range(len(step.layers))):
            rec = step.layers[i]
            layer = rec.layer
            panels = band.layer_panels.get(layer.name, {})
            out_p, in_p = self.output_of(band, i), self.output_of(band, i - 1)
            x_p = panels.get("padded", in_p)
            g_out = band.grad[id(out_p)]
            g_pre = g_out
            label = f"{layer.name} ({layer.class_name})"
            if layer.name in band.bn:
                self.batch_normalization_backward(band, step, rec, k, i, in_p, g_out, label)
                continue
            vector = layer.activation in ops.VECTOR_ACTIVATIONS
            if "activation" in panels:  # an element-wise activation: dL/dz = dL/da × its slope at z
                z, a = panels["pre"], panels["activation"]
                g_pre = band.add_gradient(z, f"dL/dz {label}", f"= dL/da × {layer.activation}'(z)", rec.d_pre[k],
                                          lambda idx, z=z, a=a, g=g_out, layer=layer: layer.formula_deactivate(idx, g, z, a, name), layer)
            elif vector and layer.class_name != "Activation":
                g_pre = self.vector_backward(band, layer, panels, panels["pre"], g_out, rec.out[k], rec.d_out[k], rec.d_pre[k])
            d_pre = rec.d_pre[k] if rec.d_pre is not None else rec.d_out[k]
            helpers = self.plan_helpers(band, i, layer, x_p, g_pre, d_pre, panels)
            band.for_weights[layer.name] = (g_pre, x_p, helpers)
            if i == 0:
                continue  # Keras does not differentiate the input
            if vector and layer.class_name == "Activation":
                self.vector_backward(band, layer, panels, in_p, g_out, rec.out[k], rec.d_out[k], rec.d_x[k])
                continue
            formula = self.input_gradient_formula(band, layer, in_p, out_p, g_pre, helpers)
            caption = ("= dL/d(out) × mask / (1 − rate)" if layer.name in band.masks
                       else INPUT_GRADIENT_CAPTIONS.get(layer.class_name, "dL/d(input)"))
            band.add_gradient(in_p, f"dL/dx {label}", caption, rec.d_x[k], formula, layer)

    def batch_normalization_backward(self, band, step, rec, k, i, in_p, g_out, label):
        """A BatchNormalization layer in training mode: dL/dx̂ = dL/dy × γ below x̂; dL/dγ and dL/dβ read dL/dy and x̂
        (the batch band's shares); dL/dx below x, through the batch's statistics (their means of g and g × x̂ sit in
        the batch band)."""
        layer, name, bn = rec.layer, band.sheet.name, band.bn[rec.layer.name]
        gamma = step.weights_before[layer.name].get("gamma")
        g = rec.d_out[k] if gamma is None else rec.d_out[k] * gamma
        bn["dxhat"] = band.add_gradient(bn["xhat"], f"dL/dx̂ {label}", "= dL/dy" + (" × γ" if gamma is not None else ""), g,
                                        lambda idx: layer.formula_xhat_gradient(idx, g_out, bn["w"], name), layer)
        band.for_weights[layer.name] = (g_out, bn["xhat"], {})
        if i == 0:
            return  # Keras does not differentiate the input
        stats = band.bb.stats[layer.name]
        w = {"dxhat": bn["dxhat"], "xhat": bn["xhat"], **{n: stats[n] for n in ("variance", "mean_g", "mean_gx")}}
        band.add_gradient(in_p, f"dL/dx {label}", "= (dL/dx̂ − mean g − x̂ × mean g·x̂) / √(σ² + ε), g = dL/dx̂: through the "
                          "batch's μ and σ² (means in the batch band)", rec.d_x[k],
                          lambda idx: layer.formula_backward(idx, g_out, in_p, None, w, name), layer)

    def vector_backward(self, band, layer, panels, target, g_out, p, d_out, values):
        """Softmax: dL/dz = p (dL/dp − Σ p·dL/dp); log_softmax: dL/dz = dL/dy − softmax(z) Σ dL/dy; the Σ in a cell below m."""
        name, K = band.sheet.name, p.shape[0]
        out = panels.get("softmax") or panels.get("log_softmax")
        S = band.below(panels["softmax_max"])
        S_ref = S.ref((0,), name, absolute=True)
        g_span = g_out.span((0,), (K - 1,), name)
        if layer.activation == "softmax":
            self.gradient_cell(band, S, "Σ p·dL/dp", (d_out * p).sum(), f"SUMPRODUCT({g_span},{out.span((0,), (K - 1,), name)})")
            return band.add_gradient(target, f"dL/dz {layer.name} ({layer.class_name})", "= p × (dL/dp − Σ p·dL/dp)", values,
                                     lambda idx: f"{out.ref(idx, name)}*({g_out.ref(idx, name)}-{S_ref})", layer)
        e, s_ref = panels["softmax_exp"], panels["softmax_sum"].ref((0,), name, absolute=True)
        self.gradient_cell(band, S, "Σ dL/dy", d_out.sum(), f"SUM({g_span})")
        return band.add_gradient(target, f"dL/dz {layer.name} ({layer.class_name})", "= dL/dy − (e / s) × Σ dL/dy", values,
                                 lambda idx: f"{g_out.ref(idx, name)}-{e.ref(idx, name)}/{s_ref}*{S_ref}", layer)

    def plan_helpers(self, band, i, layer, x_p, g_pre, d_pre, panels):
        """The helper panels a layer's gradients need: a conv's dL/dz spread over the input's grid (for dL/dx, and for
        dL/dkernel with strides); a Dense's dL/dz as a row (for dL/dx)."""
        name = band.sheet.name
        left = (panels.get("pre") or panels.get("output") or x_p).left
        if isinstance(layer, Conv2D) and (i > 0 or layer.strides != (1, 1)):
            (eh, ew), (sh, sw) = layer.dilated_extent(), layer.strides
            grid = layer.spread_gradient(x_p.shape, d_pre)
            return {"grid": band.add_helper(left, grid.shape, f"{layer.name}: dL/dz spread",
                                            f"dL/dz[i, j] at row {eh - 1} + i·{sh}, column {ew - 1} + j·{sw}; zeros around and between",
                                            grid, lambda idx: layer.formula_spread(idx, g_pre, name), layer, "helper")}
        if isinstance(layer, Dense) and i > 0 and layer.units > 1:
            p = Placement(name, band.hp.top, max(band.hp.col, left), (layer.units,), "row")
            band.sheet.add(cells_block({(p.top - TOP, p.left): Cell(f"{layer.name}: dL/dz as a row", style="title"),
                                        (p.top - TOP + 1, p.left): Cell("for dL/dx = SUMPRODUCT(kernel row, this row)", style="caption")}))
            band.hp.add_cells(Panel("dL/dz as a row", "", p, d_pre, lambda idx: g_pre.ref(idx, name), step="helper", layer=layer))
            band.hp.col = p.left + layer.units + 1
            return {"row": p}
        return {}

    def input_gradient_formula(self, band, layer, in_p, out_p, g, helpers):
        """idx -> the formula of dL/dx[idx] (layer.formula_backward); Conv2D reads its spread gradient and turned
        kernel, Dense its kernel and dL/dz as a row."""
        name, w = band.sheet.name, {}
        if isinstance(layer, Conv2D):
            g, w = helpers["grid"], {"kernel": band.bb.at["rotated"][(layer.name, "kernel")]}
        elif isinstance(layer, Dense):
            g, w = helpers.get("row", g), {"kernel": band.bb.at["used"][(layer.name, "kernel")]}
        elif layer.name in band.masks:
            w = {"mask": band.masks[layer.name]}
        elif isinstance(layer, BatchNormalization):  # frozen: its weights stay those of the Weights sheet
            w = {n: self.initial[(layer.name, n)] for n in ("gamma", "moving_variance") if n in layer.weights}
        return lambda idx: layer.formula_backward(idx, g, in_p, out_p, w, name)


    # -------------------------------------------------------- the batch band

    def plan_batch(self, sheet, step, bands, bb, used_before, prev_slots, t):
        """The batch loss, the hyperparameters and the optimizer's numbers of the step, then one row of tensors per
        weight: used, (turned 180°), each sample's share of dL/dw, their sum, the optimizer's slots, the weight after."""
        name, opt, B = sheet.name, self.opt, len(step.samples)
        planner = SamplePlanner(sheet, self.maps_across)
        cells = {(bb.top, bb.col0): Cell(f"The batch: L, and for every weight its gradient, the {opt.name} update and the weight "
                                         "after the step (the next step starts from the last column)", style="subtitle")}
        row, ref = bb.scalar_top, {}
        l_cells = ",".join(band.loss_cell.ref((0,), name) for band in bands)
        mean = self.loss.reduction == "sum_over_batch_size"
        scalars = [("L", f"batch loss L = {'mean' if mean else 'sum'} of the samples' l", f"{'AVERAGE' if mean else 'SUM'}({l_cells})",
                    step.loss.value),
                   ("B", "B = samples in this batch", None, B)]
        scalars += [(h, f"{h} (Training sheet)", self.hyper[h], getattr(opt, h)) for h in self.hyper]
        for key, label, formula, value in scalars:
            row = self.scalar(sheet, planner, cells, row, bb.col0, ref, key, label, formula, value)
        for key, label, formula, value in opt.formula_scalars(t):  # they refer to the cells above them
            row = self.scalar(sheet, planner, cells, row, bb.col0, ref, key, label, formula and formula(ref), value)
        sheet.col_widths[bb.col0] = max(sheet.col_widths.get(bb.col0, 0), 40)
        for key, top in bb.groups:
            layer = bb.layers[key[0]]
            cells[(top, bb.col0)] = Cell(f"{key[0]}/{key[1]}   shape {tuple(layer.weights[key[1]].shape)}", style="subtitle")
            for c, column in enumerate(bb.columns):
                if key in bb.at[column]:
                    cells[(top + 1, bb.left(c))] = Cell(column_title(column), style="header")
        for lname, top in bb.stat_tops.items():
            cells[(top, bb.col0)] = Cell(f"{lname}: the batch's statistics, one column per channel", style="subtitle")
            for j, label in enumerate(STAT_ROWS.values()):
                cells[(top + 1 + j, bb.col0)] = Cell(label, style="index")
        for c, column in enumerate(bb.columns):
            fit_widths(sheet, bb.left(c), bb.width, len(column_title(column)))
        sheet.add(cells_block(cells))
        shares = {key: self.shares(step, key) for key in bb.keys}
        for key in bb.keys:
            layer = bb.layers[key[0]]
            for c, column in enumerate(bb.columns):
                p = bb.at[column].get(key)
                if p is None or (column.startswith("share ") and int(column.split()[1]) >= B):
                    continue
                values, formula = self.batch_cells(step, bands, bb, key, layer, column, shares, used_before, prev_slots, ref)
                planner.add_cells(Panel(f"{key[0]}/{key[1]}: {column_title(column)}", "", p, values, formula, step=column, layer=layer))
        after = dict(bb.at["after"])
        for lname, st in bb.stats.items():
            for row, (values, formula) in self.statistics(step, bands, bb.layers[lname], st, used_before).items():
                planner.add_cells(Panel(f"{lname}: {STAT_ROWS[row]}", "", st[row], values, formula, step="statistics", layer=bb.layers[lname]))
            after.update({(lname, n): st[f"{n} after"] for n in ("moving_mean", "moving_variance")})
        return {"used": dict(bb.at["used"]), "sum": dict(bb.at["sum"]), "after": after,
                "slots": {key: {n: bb.at[n][key] for n in opt.slot_names()} for key in bb.keys},
                "loss": Placement(name, bb.scalar_top, bb.col0 + 1, (1,), "column"), "panels": planner.panels}

    def scalar(self, sheet, planner, cells, row, col, ref, key, label, formula, value):
        """One row of the batch band's table: a label in `col` and a cell right of it (a formula, or a given number
        when formula is None)."""
        cells[(row, col)] = Cell(label, style="index")
        p = Placement(sheet.name, row, col + 1, (1,), "column")
        if formula is None:
            cells[(row, col + 1)] = Cell(value, style="int")
        else:
            planner.add_cells(Panel(label, "", p, np.array([value], dtype=float), lambda idx, f=formula: f, step="scalar"))
        ref[key] = p.ref((0,), sheet.name, absolute=True)
        return row + 1

    def statistics(self, step, bands, layer, st, used_before):
        """{row of STAT_ROWS: (values, idx -> formula)} of a BatchNormalization layer in training mode: the batch's mean
        and variance over every sample's x, the means of g = dL/dx̂ and g × x̂ (for dL/dx), the moving statistics."""
        name, lname = st["mean"].sheet, layer.name
        rec = next(rec for rec in step.layers if rec.layer is layer)
        axes, count = tuple(range(rec.x.ndim - 1)), math.prod(rec.x.shape[:-1])
        mean, variance = rec.saved["mean"], rec.saved["variance"]
        gamma = step.weights_before[lname].get("gamma")
        g = rec.d_out if gamma is None else rec.d_out * gamma
        xhat = (rec.x - mean) / np.sqrt(variance + layer.epsilon)
        at = {part: [band.bn[lname][part] for band in bands] for part in ("x", "centered", "xhat", "dxhat")}
        rows = {"mean": (mean, lambda c: layer.formula_batch_mean(c, at["x"], count, name)),
                "variance": (variance, lambda c: layer.formula_batch_variance(c, at["centered"], count, name)),
                "mean_g": (g.mean(axis=axes), lambda c: layer.formula_batch_mean_product(c, at["dxhat"], None, count, name)),
                "mean_gx": ((g * xhat).mean(axis=axes), lambda c: layer.formula_batch_mean_product(c, at["dxhat"], at["xhat"], count, name))}
        for n, batch in (("moving_mean", "mean"), ("moving_variance", "variance")):
            rows[f"{n} used"] = (step.weights_before[lname][n], lambda c, n=n: used_before[(lname, n)].ref((c,), name))
            rows[f"{n} after"] = (step.weights_after[lname][n], lambda c, n=n, b=batch: layer.formula_moving(c, st[f"{n} used"], st[b], name))
        return {row: (np.asarray(values, dtype=np.float64), lambda idx, f=f: f(idx[0])) for row, (values, f) in rows.items()}

    def shares(self, step, key):
        """Each sample's share of dL/dw for weight `key`: its layer's backward on that sample alone (with its d_out)."""
        i = next(i for i, rec in enumerate(step.layers) if rec.layer.name == key[0])
        rec = step.layers[i]
        return [rec.layer.backward(rec.x[k:k + 1], None if rec.pre is None else rec.pre[k:k + 1], rec.out[k:k + 1],
                                   rec.d_out[k:k + 1], rec.saved)[2][key[1]] for k in range(len(step.samples))]

    def batch_cells(self, step, bands, bb, key, layer, column, shares, used_before, prev_slots, ref):
        """(values, idx -> formula) of one tensor of the batch band."""
        name, opt = bb.at["used"][key].sheet, self.opt
        lname, wname = key
        if column == "used":
            return step.weights_before[lname][wname], lambda idx: used_before[key].ref(idx, name)
        if column == "rotated":
            used = bb.at["used"][key]
            return layer.turned_kernel(step.weights_before[lname][wname]), lambda idx: layer.formula_turned(idx, used, name)
        if column.startswith("share "):
            k = int(column.split()[1])
            g, x, helpers = bands[k].for_weights[lname]
            return shares[key][k], lambda idx: layer.formula_weight_gradient(wname, idx, g, x, name, spread=helpers.get("grid"))
        if column == "sum":
            parts = [bb.at[f"share {k}"][key] for k in range(len(step.samples))]
            return step.grads[key], lambda idx: formulas.add(p.ref(idx, name) for p in parts)

        def update(idx):
            prev = {n: (None if p is None else p.ref(idx, name)) for n, p in prev_slots[key].items()}
            slots, w = opt.formula_update(bb.at["used"][key].ref(idx, name), bb.at["sum"][key].ref(idx, name), prev, ref)
            local = {n: bb.at[n][key].ref(idx, name) for n in slots}
            text = w if column == "after" else slots[column]
            for n, r in local.items():
                text = text.replace("{" + n + "}", r)
            return text

        if column == "after":
            return step.weights_after[lname][wname], update
        return step.state_after.slots[key][column], update


# ---------------------------------------------------------------- the Training, History and Read me sheets

def plan_history(sheet, model, weights, steps):
    """One row per weight: its initial value (Weights sheet), then its value after every step (live references)."""
    cells = {(0, 0): Cell("Every weight after every step (live: each cell reads the step sheet's last column)", style="title"),
             (2, 0): Cell("weight", style="header"), (2, 1): Cell("initial", style="header")}
    for s in range(len(steps)):
        cells[(2, 2 + s)] = Cell(f"step {s + 1}", style="header")
    sheet.add(cells_block(cells))
    row = 3
    for key in trainable_weights(model):
        layer = next(layer for layer in model.layers if layer.name == key[0])
        indices = list(weights[key].indices())
        where = [weights[key]] + [result["after"][key] for result in steps]
        values = [layer.weights[key[1]]] + [result["step"].weights_after[key[0]][key[1]] for result in steps]

        def cell(r, c, key=key, indices=indices, where=where, values=values):
            idx = indices[r]
            if c == 0:
                return Cell(f"{key[0]}/{key[1]}[{', '.join(map(str, idx))}]", style="index")
            return Cell(float(values[c - 1][idx]), "=" + where[c - 1].ref(idx, sheet.name), "value")

        sheet.add(Block(row, 0, len(indices), 2 + len(steps), cell))
        row += len(indices)
    sheet.col_widths.update({0: 30, **{c: 11 for c in range(1, 2 + len(steps))}})


def plan_loss_table(sheet, fits, runs):
    """Below the hyperparameters: the batch loss of every step of every run (live), and a line chart of them."""
    top = sheet.hyper_rows + 2
    steps = fits[0].steps
    cells = {(top, 0): Cell("The batch loss L of every step (before its update), live from the step sheets", style="subtitle")}
    for c, head in enumerate(["step", "epoch", "batch"] + [f"run {r + 1}: lr {fit.optimizer.learning_rate:g}" for r, fit in enumerate(fits)]):
        cells[(top + 1, c)] = Cell(head, style="header")
    for s, step in enumerate(steps):
        for c, number in enumerate((s + 1, step.epoch + 1, step.batch + 1)):
            cells[(top + 2 + s, c)] = Cell(number, style="int")
        for r, fit in enumerate(fits):
            where = runs[r][s]["loss"]
            cells[(top + 2 + s, 3 + r)] = Cell(float(fit.steps[s].loss.value), "=" + where.ref((0,), sheet.name), "value")
    sheet.add(cells_block(cells))
    sheet.col_widths.update({0: 42, 1: 14, 2: 14, **{3 + r: 14 for r in range(len(fits))}})
    if steps:
        last = top + 1 + len(steps)
        sheet.charts.append({
            "type": "line", "title": "The batch loss per step" + (", one line per learning rate" if len(fits) > 1 else ""),
            "x_axis": "step", "y_axis": "batch loss L", "anchor": (2, 4 + len(fits)), "size": {"width": 720, "height": 400},
            "categories": (top + 2, 0, last, 0), "interval": max(1, len(steps) // 10),
            "series": [{"name": f"lr {fit.optimizer.learning_rate:g}", "values": (top + 2, 3 + r, last, 3 + r)} for r, fit in enumerate(fits)],
        })


def plan_training_readme(sheet, job, fits, history, check):
    opt, loss = fits[0].optimizer, fits[0].loss
    n, steps = len(job.raw), len(fits[0].steps)
    runs = len(fits)
    lines = [
        (job.title or f"cnncalc training workbook: {job.model.name}", "title"),
        ("", None),
        ("What this is", "subtitle"),
        (f"Keras's model.fit(x, y, epochs={job.epochs}, batch_size={job.batch_size}, shuffle=False) with loss {loss.name!r} and "
         f"optimizer {opt.name}, computed cell by cell with live formulas: {steps} steps, each on a batch of up to "
         f"{job.batch_size} of the {n} samples"
         + (f", once for each of {runs} learning rates" if runs > 1 else "") + ".", "text"),
        ("cnncalc does not shuffle: every epoch takes the samples in order, in batches of the batch size (the last one may be smaller).", "text"),
        ("Every computed cell holds a formula over the cells before it: edit a weight, an input, a label or a hyperparameter and "
         "every step follows.", "text"),
        ("", None),
        ("How to read it", "subtitle"),
        ("Training: the hyperparameters (given, one column per run), and the batch loss L of every step with its chart.", "text"),
    ]
    if history:
        lines.append(("History: every weight, one row each: its initial value, then its value after every step.", "text"))
    if check:
        lines.append((f"Gradient check: step 1's largest dL/dw of each weight tensor, computed again as the book computes a "
                      f"gradient, by finite differences: the whole forward pass with the weight nudged by ±h, "
                      f"(L(w + h) − L(w − h)) / 2h (h = {GRADIENT_CHECK_H:g}), beside the backpropagated dL/dw.", "text"))
    lines += [
        ("Data: each sample's input and label, as given. Weights: the initial weights, as on a prediction workbook.", "text"),
        ((f"Step 1 … Step {steps}" if runs == 1 else f"Run 1 · Step 1 … Run {runs} · Step {steps}")
         + ": one sheet per optimizer step, read top to bottom:", "text"),
        ("   a band per sample of the batch: its forward pass left to right (input, each layer's pre-activation z and "
         "activation a, the loss's steps), then, below, every gradient dL/d… at the same columns as the value it belongs to: "
         "the backward pass, read right to left.", "text"),
        ("   L is the batch loss, the mean of the samples' losses l, so every gradient of a sample carries the factor 1/B "
         "(B samples in the batch), as in Keras's fit.", "text"),
        ("   Dense: dL/dz = dL/da × the activation's slope; dL/dkernel[i, j] = x[i] × dL/dz[j]; dL/dbias = dL/dz; "
         "dL/dx[i] = SUMPRODUCT(kernel row i, dL/dz).", "text"),
        ("   Conv2D: dL/dkernel[a, b, c, f] = SUMPRODUCT(the input window tap (a, b) sees, dL/dz of filter f); dL/dbias[f] = SUM(dL/dz "
         "of filter f); dL/dx = the full correlation of dL/dz (spread, with zeros) with the kernel turned 180°.", "text"),
        ("   MaxPooling2D: each window's gradient goes to its largest cell (the first in reading order on ties, as Keras/jax).", "text"),
        ("   The batch, right of the bands: per weight tensor, one row of tensors laid out as on the Weights sheet: the weight used "
         "in this step, each sample's share of dL/dw, their sum dL/dw, the optimizer's slots and the weight after the step. "
         "The next step starts from that last column.", "text"),
        (OPTIMIZER_NOTES[opt.name], "text"),
        *((note, "text") for note in fits[0].notes),
        *([("   Dropout: each step's mask is given cells on the step sheet (yellow: 1 kept, 0 dropped; type over them and every "
            "step follows); the output is x × mask / (1 − rate), and dL/dx = dL/d(out) × mask / (1 − rate).", "text")]
          if isinstance(dropout_setting(job, fits), dict) else []),
        *([("   BatchNormalization trains on the batch's statistics: per channel, the batch band holds the batch mean μ and "
            "(biased) variance σ² over every sample of the batch; each sample's band then has x − μ, x̂ = (x − μ) / √(σ² + ε) and "
            "x̂ × γ + β. Backward: dL/dx̂ = dL/dy × γ, dL/dγ = Σ dL/dy × x̂, dL/dβ = Σ dL/dy, and dL/dx = (dL/dx̂ − mean dL/dx̂ − x̂ × "
            "mean(dL/dx̂ × x̂)) / √(σ² + ε). The moving mean and variance move as Keras moves them: moving × momentum + batch "
            "value × (1 − momentum); the next step reads them. No gradient check (a nudged pass needs its own batch statistics).",
            "text")] if batch_normalizations(job.model) else []),
        ("", None),
        ("Colours", "subtitle"),
        ("Yellow cells are given (inputs, labels, hyperparameters), blue cells are the initial weights: type over them. "
         "White cells are formulas.", "text"),
        ("", None),
        ("Checking it", "subtitle"),
        ("cnncalc verify THIS.xlsx recalculates the workbook in LibreOffice and compares every formula cell with cnncalc's engine, "
         "which equals Keras's fit. It reads the given cells from this file, so it also checks a workbook you edited.", "text"),
    ]
    sheet.add(cells_block({(i, 0): Cell(text, style=style) for i, (text, style) in enumerate(lines) if style}))
    sheet.col_widths[0] = 130


OPTIMIZER_NOTES = {
    "SGD": "SGD: w ← w − lr × dL/dw; with momentum: m ← momentum × m − lr × dL/dw, w ← w + m (nesterov: w ← w + momentum × m − lr × dL/dw).",
    "Adam": "Adam (as Keras): m ← m + (g − m)(1 − β1); v ← v + (g² − v)(1 − β2); α = lr √(1 − β2^t) / (1 − β1^t) (the bias "
            "correction folded into the step size); w ← w − m α / (√v + ε), ε outside the square root.",
    "RMSprop": "RMSprop: v ← ρ v + (1 − ρ) g²; w ← w − lr g / √(v + ε) (centered: v − (mean g)² under the root; momentum: a running sum of the steps).",
    "Adagrad": "Adagrad: the accumulator starts at initial_accumulator_value and adds g² every step; w ← w − lr g / √(accumulator + ε).",
}


# ---------------------------------------------------------------- reading a training workbook back (verify, export)

def read_settings(meta, path):
    """The run's settings from the _cnncalc sheet's values {(row, col): value}, or None for a workbook that is not a
    training workbook. A damaged row is refused, naming it."""
    if meta.get((TRAINING_ROW, 0)) != "training":
        return None
    damaged = f"{path}: the {META_SHEET} sheet is damaged. Expected the training settings as JSON at {META_SHEET}!B{TRAINING_ROW + 1}"
    try:
        settings = guards.check_json(json.loads(str(meta.get((TRAINING_ROW, 1)))), f"the training settings in {META_SHEET}")
    except (ValueError, RecursionError) as e:
        raise CnncalcError(f"{damaged}. Received an unreadable value ({str(e)[:80]})") from None
    keys = {"version", "loss", "optimizer", "epochs", "batch_size", "runs", "labels"}
    if not isinstance(settings, dict) or not keys <= set(settings) or settings["version"] != TRAINING_VERSION:
        raise CnncalcError(f"{damaged} of version {TRAINING_VERSION} ({', '.join(sorted(keys))}). Received {str(settings)[:120]}")
    for arg, least in (("epochs", 1), ("batch_size", 1), ("runs", 1)):
        value = settings[arg]
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise CnncalcError(f"{damaged}: {arg} must be an integer >= {least}. Received {arg}={str(value)[:40]}")
    return settings


def read_back_training(path, values, model, scale, n, maps_across, settings):
    """The TrainingJob a training workbook's given cells hold now: the initial weights (Weights sheet), the inputs
    and labels (Data sheet) and each run's hyperparameters (Training sheet); the rest from its settings."""
    from cnncalc.recalc.verify import _number

    loss = losses.get(settings["loss"])
    opt = optimizers.get(settings["optimizer"])
    check_size(model, n, settings["epochs"], settings["batch_size"], [opt] * settings["runs"], f"{path}: the run its {META_SHEET} sheet describes")
    for layer, shape in zip(model.layers, model.shapes):
        layer.set_weights([np.zeros(s) for s in layer.weight_shapes(shape).values()], shape)
    weights = plan_weights(WorkbookPlan().add_sheet(WEIGHTS_SHEET), model)
    for layer, shape in zip(model.layers, model.shapes):
        arrays = []
        for wname in layer.weights:
            p = weights[(layer.name, wname)]
            arrays.append(read_tensor(values, p, f"Weight {layer.name}/{wname}"))
        layer.set_weights(arrays, shape)
    kind = settings["labels"]
    dummy = np.zeros((n,)) if kind == "index" else np.zeros((n, *model.output_shape))
    dropout = settings.get("dropout") or "identity"
    masked = isinstance(dropout, dict)
    job = TrainingJob(model, np.zeros((n, *model.input_shape)), dummy, loss, [], settings["epochs"], settings["batch_size"], scale,
                      dropout=read_seed(dropout, path) if masked else "identity")
    inputs, labels = plan_data(WorkbookPlan().add_sheet(DATA_SHEET), job, loss, model.output_shape)
    job.raw = np.stack([read_tensor(values, p, f"Input of sample {i + 1}") for i, p in enumerate(inputs)])
    job.labels = np.stack([read_tensor(values, p, f"Label of sample {i + 1}") for i, p in enumerate(labels)])
    if kind == "index":
        job.labels = job.labels[:, 0]
    job.checks = read_checks(settings.get("checks") or [], model, path)
    opts = [opt] * settings["runs"]
    refs = plan_hyperparameters(WorkbookPlan().add_sheet(TRAINING_SHEET), opts, loss)
    config = opt.get_config()
    for r in range(settings["runs"]):
        given = {name: _number(values, TRAINING_SHEET, cell_of(ref), f"Hyperparameter {name} of run {r + 1}") for name, ref in refs[r].items()}
        job.optimizers.append(optimizers.get({"class_name": opt.name, "config": {**config, **given}}))
        if opt.slot_names() != job.optimizers[-1].slot_names():  # a momentum of 0 has no slot, any other one has
            raise CnncalcError(f"{path}: the momentum of run {r + 1} is {given.get('momentum')} at {refs[r].get('momentum')}. Expected a "
                               f"momentum > 0: the workbook was made with momentum, and its steps have a momentum slot. Received 0 "
                               "(make a new workbook with `cnncalc train --momentum 0` for none)")
    if masked:
        job.dropout = read_masks(values, plan_training(job, maps_across), path)
        job._fits = None
    return job


def read_seed(dropout, path):
    seed = dropout.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise CnncalcError(f"{path}: the {META_SHEET} sheet is damaged. Expected the dropout settings as {{\"masks\": \"cells\", "
                           f"\"seed\": a whole number >= 0}}. Received {str(dropout)[:80]}")
    return seed


def read_masks(values, plan, path):
    """One masks(iteration, layer, shape) per run, giving the masks the step sheets' given mask cells hold now (plan: the
    workbook laid out again, for where they are). A mask cell must hold 0 (dropped) or 1 (kept)."""
    runs = []
    for steps in plan.runs:
        held = []
        for result in steps:
            arrays = {}
            for name in result["masks"][0] if result["masks"] else {}:
                per_sample = []
                for k, masks in enumerate(result["masks"]):
                    m = read_tensor(values, masks[name], f"Dropout mask of {name}, sample {int(result['step'].samples[k]) + 1}, ")
                    if not np.all((m == 0) | (m == 1)):
                        bad = masks[name].ref(tuple(np.argwhere((m != 0) & (m != 1))[0]), None)
                        raise CnncalcError(f"{path}: the Dropout mask cell {bad} is not 0 or 1. Expected 1 (kept) or 0 (dropped). "
                                           f"Received {m[(m != 0) & (m != 1)][0]:g}")
                    per_sample.append(m == 1)
                arrays[name] = np.stack(per_sample)
            held.append(arrays)
        runs.append(lambda t, layer, shape, held=held: held[t][layer.name])
    return runs


def read_checks(checks, model, path):
    """The gradient check's weights as the settings record them, each checked against the model."""
    shapes = {(layer.name, n): w.shape for layer in model.layers for n, w in layer.weights.items()}
    out = []
    for entry in checks:
        ok = isinstance(entry, list) and len(entry) == 3 and tuple(entry[:2]) in shapes and isinstance(entry[2], list)
        idx = tuple(entry[2]) if ok else ()
        if not ok or len(idx) != len(shapes[tuple(entry[:2])]) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < n for i, n in zip(idx, shapes[tuple(entry[:2])])):
            raise CnncalcError(f"{path}: the {META_SHEET} sheet is damaged. Expected the gradient check's weights as "
                               f"[layer, weight, index] of the model's weights. Received {str(entry)[:80]}")
        out.append((tuple(entry[:2]), idx))
    return out


def read_tensor(values, p, what):
    """A tensor read from the cells of placement p (a cell that is not a finite number is refused, naming it)."""
    from cnncalc.recalc.verify import _number

    arr = np.zeros(p.shape)
    for idx in p.indices():
        arr[idx] = _number(values, p.sheet, p.pos(idx), f"{what}{list(idx)}")
    return arr


def cell_of(ref):
    """'Training!$B$4' -> (3, 1)."""
    from cnncalc.sheets.cells import parse_a1

    return parse_a1(ref.rsplit("!", 1)[-1])


# ---------------------------------------------------------------- the gradient check (finite differences, in formulas)

def chosen_checks(fit):
    """The weights the gradient check nudges: each tensor's largest dL/dw of step 1, if at least MIN_CHECKED_GRADIENT
    (a small gradient's difference quotient is mostly the two losses' rounding, ~1e-16 / h: not worth reading)."""
    checks = [(key, tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(g)), g.shape))) for key, g in fit.steps[0].grads.items()]
    return [(key, idx) for key, idx in checks if abs(fit.steps[0].grads[key][idx]) >= MIN_CHECKED_GRADIENT]


def plan_gradient_check(sheet, planner, fit, first, checks, h=GRADIENT_CHECK_H):
    """Step 1's gradient of a few weights (checks: [((layer, weight), index)]), checked as the book computes a gradient:
    the whole forward pass again with the weight nudged by +h and by −h, and (L(w + h) − L(w − h)) / 2h beside dL/dw.

    first: step 1's placements (plan_step's result). Each nudged pass is the engine's (training.train_step on a copy).
    """
    import copy

    step, name = fit.steps[0], sheet.name
    step_masks = {rec.layer.name: rec.saved["mask"] for rec in step.layers if rec.saved.get("mask") is not None}
    heads = ["weight", "dL/dw (Step 1)", "L(w + h)", "L(w − h)", "(L(w + h) − L(w − h)) / 2h"]
    cells = {(0, 0): Cell(f"Gradient check: each tensor's largest dL/dw of step 1 (of at least {MIN_CHECKED_GRADIENT:g}), by finite "
                          f"differences with h = {h:g}: the whole forward pass again with the weight nudged, as the book computes "
                          "gradients", style="title"),
             **{(2, c): Cell(text, style="header") for c, text in enumerate(heads)}}
    panels, summary, top = [], [], 4 + len(checks)
    for row, (key, idx) in enumerate(checks, start=3):
        losses_at = {}
        for sign in (1, -1):
            model = copy.deepcopy(fit.model)
            for layer in model.layers:
                layer.weights = {n: w.copy() for n, w in step.weights_before[layer.name].items()}
            layer = next(layer for layer in model.layers if layer.name == key[0])
            layer.weights[key[1]][idx] += sign * h
            values = layer.weights[key[1]].copy()  # train_step updates the copy's weights after its forward pass
            nudged = training.train_step(model, step.x, step.y, fit.loss, fit.optimizer, step.state_before,
                                         (lambda layer, shape: step_masks[layer.name]) if step_masks else None)
            label = f"{key[0]}/{key[1]}[{', '.join(map(str, idx))}] {'+' if sign > 0 else '−'} h"
            sheet.add(cells_block({(top, 0): Cell(f"Every sample's forward pass with {label}", style="subtitle"),
                                   (top + 1, 1): Cell(f"{key[0]}/{key[1]} with {label}", style="header")}))
            used = first["used"][key]
            p = Placement(name, top + 2, 1, used.shape, used.layout)
            panels.append(Panel(label, "", p, values,
                                lambda i, used=used, s=sign, at=idx: used.ref(i, name) + (f"{'+' if s > 0 else '-'}{formulas.number(h)}" if i == at else "")))
            SamplePlanner(sheet).add_cells(panels[-1])
            bands = []
            for k in range(len(step.samples)):
                bands.append(planner.plan_forward(sheet, nudged, k, sheet.extent[0] + 1, {**first["used"], key: p}, f"forward pass, {label}",
                                                  first["masks"][k]))
                panels += bands[-1].sp.panels
            L = Placement(name, sheet.extent[0] + 1, 1, (1,), "column")
            l_cells = ",".join(band.loss_cell.ref((0,), name) for band in bands)
            mean = fit.loss.reduction == "sum_over_batch_size"
            sheet.add(cells_block({(L.top, 0): Cell(f"L with {label}", style="index")}))
            panels.append(Panel("L", "", L, np.array([nudged.loss.value]), lambda i, t=f"{'AVERAGE' if mean else 'SUM'}({l_cells})": t))
            SamplePlanner(sheet).add_cells(panels[-1])
            losses_at[sign] = (L.ref((0,), name, absolute=True), nudged.loss.value)
            top = sheet.extent[0] + 2
        (plus, lp), (minus, lm) = losses_at[1], losses_at[-1]
        fd = (lp - lm) / (2 * h)
        analytic = first["sum"][key]
        g = float(step.grads[key][idx])
        cells[(row, 0)] = Cell(f"{key[0]}/{key[1]}[{', '.join(map(str, idx))}]", style="index")
        texts = [analytic.ref(idx, name), plus, minus, f"({plus}-{minus})/(2*{formulas.number(h)})"]
        for c, (text, value) in enumerate(zip(texts, (g, lp, lm, fd)), start=1):
            summary.append(Panel(heads[c], "", Placement(name, row, c, (1,), "column"), np.array([value]), lambda i, t=text: t))
    if not checks:
        cells[(3, 0)] = Cell(f"No weight of step 1 has a gradient of at least {MIN_CHECKED_GRADIENT:g}: nothing to check", style="text")
    sheet.add(cells_block(cells))
    for panel in summary:
        SamplePlanner(sheet).add_cells(panel)
    sheet.panels = panels + summary
    sheet.col_widths.update({0: 42, 1: 16, 2: 16, 3: 16, 4: 26})
