"""Training as Keras's fit runs it, in numpy, with every intermediate of every step kept for the workbook.

`fit(model, x, y, loss, optimizer, epochs, batch_size)` is `model.fit(x, y, epochs=epochs, batch_size=batch_size,
shuffle=False)`: cnncalc never shuffles, so each epoch takes the batches in order (the last one may be smaller).
One step (`train_step`) is the forward pass in training mode (BatchNormalization on the batch's statistics,
Dropout with a mask), the loss averaged over the batch, backpropagation from dL/d(output) through every layer
(through its activation to its kernel, bias and input), then the optimizer's update, as Keras's jax trainer does it.

Dropout is random in Keras's fit, so `fit` asks how to drop (never silently): dropout="identity" (no unit dropped;
a note says so), an int seed (masks drawn by numpy: not Keras's draws; a note says so), or a function
masks(iteration, layer, shape) -> boolean array of `shape` (True = kept) that gives the masks, e.g. Keras's own.
"""

from dataclasses import dataclass, field
import copy

import numpy as np

from cnncalc.engine import losses, optimizers
from cnncalc.engine.layers import Dropout
from cnncalc.errors import CnncalcError


@dataclass
class LayerStep:
    """One layer in one step. Forward: its input x, pre-activation `pre` (None without an activation step), output
    `out` and `saved` (BatchNormalization: the batch's mean and variance; Dropout: its mask). Backward: d_out =
    dL/d(out), d_pre = dL/d(pre) (through the activation), d_x = dL/d(x), grads = {weight name: dL/d(weight)}."""

    layer: object
    x: np.ndarray
    pre: np.ndarray | None
    out: np.ndarray
    saved: dict
    d_out: np.ndarray | None = None
    d_pre: np.ndarray | None = None
    d_x: np.ndarray | None = None
    grads: dict = field(default_factory=dict)


@dataclass
class Step:
    """One optimizer step: which samples, the forward and backward pass of each layer, the loss, the gradients the
    optimizer receives ({(layer name, weight name): array}, and after its clipping), its state before and after,
    and every weight before and after ({layer name: {weight name: array}}, BatchNormalization's moving statistics too)."""

    epoch: int
    batch: int
    samples: np.ndarray
    x: np.ndarray
    y: np.ndarray
    layers: list
    loss: losses.LossValue
    weights_before: dict
    grads: dict
    applied_grads: dict
    state_before: optimizers.OptimizerState
    state_after: optimizers.OptimizerState
    weights_after: dict

    @property
    def y_pred(self):
        return self.layers[-1].out

    @property
    def iteration(self):
        """Keras's optimizer.iterations before this step (0 for the first step)."""
        return self.state_before.iterations


@dataclass
class Fit:
    """A whole run: the trained copy of the model, what it was trained with, one Step per optimizer step, and notes
    a reader must see (how Dropout was handled)."""

    model: object
    loss: losses.Loss
    optimizer: optimizers.Optimizer
    epochs: int
    batch_size: int
    initial_weights: dict
    steps: list
    notes: list

    @property
    def losses(self):
        """Each step's batch loss (Keras's progress bar shows their running mean over the epoch instead)."""
        return [step.loss.value for step in self.steps]


def fit(model, x, y, loss, optimizer, epochs=1, batch_size=32, dropout=None):
    """Train a copy of `model` as keras `model.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=False)`.

    loss and optimizer: names or Keras configs (see losses.get, optimizers.get) or objects; y: labels as
    loss.labels accepts them; dropout: see the module's docstring. The model passed in is not changed.
    """
    model = copy.deepcopy(model)
    loss, optimizer = losses.get(loss), optimizers.get(optimizer)
    x = model.check_input(x).astype(np.float64)
    y = loss.labels(y, model.output_shape)
    if len(y) != len(x):
        raise CnncalcError(f"Labels and inputs do not match. Expected one label per sample ({len(x)}). Received {len(y)} labels")
    for arg, value, least in (("epochs", epochs, 0), ("batch_size", batch_size, 1)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
            raise CnncalcError(f"Invalid value for argument `{arg}`. Expected an integer >= {least}. Received {arg}={value!r}")
    masks, notes = dropout_masks(model, dropout)
    initial = weights_of(model)
    state = optimizer.init_state(trainable_weights(model))
    steps = []
    for epoch in range(epochs):
        for batch, start in enumerate(range(0, len(x), batch_size)):
            samples = np.arange(start, min(start + batch_size, len(x)))
            given = None if masks is None else (lambda layer, shape, t=state.iterations: masks(t, layer, shape))
            step = train_step(model, x[samples], y[samples], loss, optimizer, state, given)
            step.epoch, step.batch, step.samples = epoch, batch, samples
            steps.append(step)
            state = step.state_after
    return Fit(model, loss, optimizer, int(epochs), int(batch_size), initial, steps, notes)


def train_step(model, x, y, loss, optimizer, state, masks=None):
    """One step on the batch (x, y): the Step record; the model's layers then hold the updated weights.

    masks(layer, shape) gives each active Dropout layer's mask (None: Dropout is the identity).
    """
    before = weights_of(model)
    trace, h = [], x
    for layer in model.layers:
        if isinstance(layer, Dropout):
            pre, out, saved = layer.call_train(h, masks(layer, layer.mask_shape(h.shape)) if masks and layer.rate > 0 else None)
        else:
            pre, out, saved = layer.call_train(h)
        trace.append(LayerStep(layer, h, pre, out, saved))
        h = out
    value = loss(y, h)
    d = value.grad
    for rec in reversed(trace):
        rec.d_out = d
        rec.d_pre, rec.d_x, rec.grads = rec.layer.backward(rec.x, rec.pre, rec.out, d, rec.saved)
        d = rec.d_x
    grads = {(rec.layer.name, n): rec.grads[n] for rec in trace for n in rec.layer.trainable_weight_names()}
    new, state_after, applied = optimizer.apply(state, {k: before[k[0]][k[1]] for k in grads}, grads)
    for rec in trace:
        rec.layer.weights = {**rec.layer.weights, **rec.layer.moving_updates(rec.saved),
                             **{n: new[(rec.layer.name, n)] for n in rec.layer.trainable_weight_names()}}
    return Step(0, 0, np.arange(len(x)), x, y, trace, value, before, grads, applied, state, state_after, weights_of(model))


def weights_of(model):
    """Every weight of the model: {layer name: {weight name: array}} (copies)."""
    return {layer.name: {n: w.copy() for n, w in layer.weights.items()} for layer in model.layers}


def trainable_weights(model):
    """The weights fit trains, in Keras's trainable_variables order: {(layer name, weight name): array}."""
    weights = {(layer.name, n): layer.weights[n] for layer in model.layers for n in layer.trainable_weight_names()}
    if not weights:
        raise CnncalcError("The model has no weights to train. Expected a layer with trainable weights (Conv2D, Dense, "
                           "BatchNormalization). Received only layers without weights, or frozen ones")
    return weights


def dropout_masks(model, dropout):
    """(masks(iteration, layer, shape) or None, notes) for fit's `dropout` argument."""
    active = [layer for layer in model.layers if isinstance(layer, Dropout) and layer.rate > 0]
    if not active:
        return None, []
    names = ", ".join(f"{layer.name!r} (rate {layer.rate:g})" for layer in active)
    if dropout is None:
        raise CnncalcError(f"The model has Dropout ({names}), which Keras's fit applies with random masks. Expected a choice: "
                           "dropout='identity' (drop nothing), a seed for numpy-drawn masks, or a function giving the masks. "
                           "Received dropout=None")
    if isinstance(dropout, str) and dropout == "identity":
        return None, [f"Dropout {names} drops nothing in this run (dropout='identity'); Keras's fit drops units at random."]
    if isinstance(dropout, (int, np.integer)) and not isinstance(dropout, bool):
        rng = np.random.default_rng(int(dropout))
        return (lambda t, layer, shape: rng.random(shape) < 1.0 - layer.rate), [
            f"Dropout {names} keeps each unit with probability 1 - rate, drawn by numpy with seed {int(dropout)} "
            "(not the units Keras's fit would drop)."]
    if callable(dropout):
        def given(t, layer, shape):
            mask = np.asarray(dropout(t, layer, shape))
            if mask.shape != tuple(shape) or mask.dtype != bool:
                raise CnncalcError(f"Invalid dropout mask for layer {layer.name!r} at step {t + 1}. Expected booleans of shape "
                                   f"{tuple(shape)}. Received {mask.dtype} of shape {mask.shape}")
            return mask
        return given, [f"Dropout {names} uses the masks given to fit."]
    raise CnncalcError(f"Invalid value for argument `dropout`. Expected 'identity', an integer seed or a function "
                       f"(iteration, layer, shape) -> mask. Received dropout={dropout!r}")
