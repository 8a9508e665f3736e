"""Known slips: each recomputes one answer cell the way a student who made that slip would.

`candidates(ctx)` yields a Slip for every slip that applies to one cell: its name and the value it gives (and,
where it tells slips apart, the cells it reads). `matches` keeps the slips whose value fits what the student
wrote, best first: the ones whose cells are the cells the student's own formula reads, then the closest. A slip
is a mistake in this cell alone, so it is recomputed from the cell's inputs as a world holds them: the
student's own earlier answers first, then the engine's.

SLIPS maps a panel's step to its slips, so a new kind of panel (a gradient, an update) adds its own there.
"""

from dataclasses import dataclass

import numpy as np

from cnncalc.classroom import evaluate
from cnncalc.engine.layers import (AveragePooling2D, Conv2D, Dense, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D,
                                   MaxPooling2D)
from cnncalc.engine.ops import padding_amounts
from cnncalc.sheets.training import SLOT_TITLES


@dataclass
class Context:
    """One answer cell in one world: the arrays of the panels it reads, and how to look any cell up."""

    answer: object  # practice.Answer
    correct: float  # the cell's value in this world (its formula over this world's inputs)
    inputs: list  # the same-sheet panels its formula reads, in order: [(panel, ndarray with NaN where unknown)]
    lookup: object  # lookup(sheet, row, col) in this world
    tree: tuple  # the parsed formula
    factor: float  # the input scale
    raw: np.ndarray  # this sample's raw input
    input_shape: tuple  # the layer's input shape before any zero padding
    scaled_input: bool  # the layer reads the scaled input (directly or through its zero padding)
    scale_text: str  # the scale as written, e.g. "1/8"
    extra: dict  # softmax steps: {"z": the logits}
    places: int | None = None  # decimals the student wrote (None: a formula, or nothing written)
    reads: frozenset | None = None  # the input panels' cells the student's own formula reads (None: no formula)

    @property
    def x(self):
        """The tensor the layer reads (its first input panel)."""
        return self.inputs[0][1]

    def cells(self, indices, panel=0):
        """The (sheet, row, col) of elements of an input panel: what a slip reads, to compare with a typed formula."""
        placement = self.inputs[panel][0].placement
        return frozenset((self.answer.sheet, *placement.pos(tuple(int(i) for i in idx))) for idx in indices)


@dataclass(frozen=True)
class Slip:
    """One way to get a cell wrong: `kind` names it the same in every cell (for counting a pattern, in a panel or a
    class), `text` says what it is in this cell, `value` what it gives (None where it does not apply)."""

    kind: str
    text: str
    value: float | None
    reads: frozenset | None = None  # the input cells this slip reads, where that tells it from other slips


def slip(kind, value, reads=None, text=None):
    return Slip(kind, text or kind, value, reads)


def unscaled(ctx, value):
    return slip("unscaled input used", value, text=f"unscaled input used (the raw numbers, not raw × {ctx.scale_text})")


def decimals_text(d):
    return f"{d} decimal" + ("" if d == 1 else "s")


SIDES = {(-1, 0): "one row up", (1, 0): "one row down", (0, -1): "one column left", (0, 1): "one column right"}


def conv_slips(ctx):
    layer, (i, j, f), x = ctx.answer.panel.layer, ctx.answer.idx, ctx.x
    kernel, bias = layer.weights["kernel"], layer.weights.get("bias")
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.strides, layer.dilation_rate

    def at(r0, c0, k=kernel, with_bias=True, xx=x, filt=f):
        """(value, cells read) of the window starting at (r0, c0) with kernel k; (None, None) off the input."""
        r1, c1 = r0 + (kh - 1) * dh + 1, c0 + (kw - 1) * dw + 1
        if r0 < 0 or c0 < 0 or r1 > xx.shape[0] or c1 > xx.shape[1]:
            return None, None
        z = float(np.sum(xx[r0:r1:dh, c0:c1:dw, :] * k[:, :, :, filt]))
        reads = ctx.cells((r, c, ch) for r in range(r0, r1, dh) for c in range(c0, c1, dw) for ch in range(xx.shape[2]))
        return z + (float(bias[filt]) if with_bias and bias is not None else 0.0), reads

    r, c = i * sh, j * sw
    if bias is not None:
        yield slip("bias forgotten", *at(r, c, with_bias=False))
    yield slip("kernel flipped", *at(r, c, kernel[::-1, ::-1]), text="kernel flipped: a true convolution, but Keras cross-correlates (no flip)")
    if ctx.scaled_input:
        yield unscaled(ctx, at(r, c, xx=x / ctx.factor)[0])
    if (sh, sw) != (1, 1):
        yield slip("stride misapplied", *at(i, j), text=f"stride misapplied: window moved by 1, not by the stride {sh}×{sw}")
    (top, _), (left, _) = layer.input_padding(ctx.input_shape)
    if top or left:
        yield slip("padding misapplied", *at(r + top, c + left), text="padding misapplied: the window taken from the input without its zero border")
    for d, side in SIDES.items():
        yield slip(f"window misplaced ({side})", *at(r + d[0], c + d[1]))
    for g in range(kernel.shape[3]):
        if g != f:
            yield slip("kernel of another filter used", *at(r, c, filt=g), text=f"kernel of filter {g} used instead of filter {f}")


def pool_slips(ctx):
    layer, idx, x = ctx.answer.panel.layer, ctx.answer.idx, ctx.x
    (r0, c0, ch), (r1, c1, _) = layer.window(idx, x.shape)
    other = np.mean if layer.mode == "max" else np.max
    name = "average instead of max" if layer.mode == "max" else "max instead of average"
    right = ctx.cells((a, b, ch) for a in range(r0, r1 + 1) for b in range(c0, c1 + 1))
    yield slip(f"{name} pooling", float(other(x[r0:r1 + 1, c0:c1 + 1, ch])), right)
    same = np.max if layer.mode == "max" else np.mean
    (ph, pw), (sh, sw) = layer.pool_size, layer.strides
    (top, _), (left, _) = padding_amounts(x.shape[:2], layer.pool_size, layer.strides, layer.padding)
    i, j = idx[0], idx[1]
    starts = [(i * sh - top + d[0], j * sw - left + d[1]) for d in SIDES]
    if (sh, sw) != (1, 1):
        starts.insert(0, (i - top, j - left))
    for a, b in starts:
        a0, b0, a1, b1 = max(a, 0), max(b, 0), min(a + ph, x.shape[0]), min(b + pw, x.shape[1])
        if a0 < a1 and b0 < b1 and (a0, b0, a1 - 1, b1 - 1) != (r0, c0, r1, c1):
            yield slip("pooling the wrong window", float(same(x[a0:a1, b0:b1, ch])),
                       text=(f"pooling the wrong window: rows {a0 + 1}–{a1}, columns {b0 + 1}–{b1} instead of rows {r0 + 1}–{r1 + 1}, "
                             f"columns {c0 + 1}–{c1 + 1}"),
                       reads=ctx.cells((p, q, ch) for p in range(a0, a1) for q in range(b0, b1)))


def dense_slips(ctx):
    layer, (j,), x = ctx.answer.panel.layer, ctx.answer.idx, ctx.x
    kernel, bias = layer.weights["kernel"], layer.weights.get("bias")
    n, units = kernel.shape
    b = float(bias[j]) if bias is not None else 0.0
    if bias is not None:
        yield slip("bias forgotten", float(x @ kernel[:, j]))
    if ctx.scaled_input:
        yield unscaled(ctx, float(x / ctx.factor @ kernel[:, j]) + b)
    if n == units:
        yield slip("kernel read transposed", float(x @ kernel[j, :]) + b,
                   text=f"kernel read transposed: row {j} of the kernel used as unit {j}'s weights, not column {j}")
    elif n > 1:  # a square kernel read row by row is the transposed one
        yield slip("kernel read row by row", float(x @ kernel.ravel()[j * n:(j + 1) * n]) + b,
                   text=f"kernel read row by row: unit {j}'s {n} weights taken across the kernel's rows, not down column {j}")
    for g in range(units):
        if g != j:
            yield slip("weights of another unit used", float(x @ kernel[:, g]) + (float(bias[g]) if bias is not None else 0.0),
                       text=f"weights of unit {g} used instead of unit {j} (wrong kernel column)")


def relu_applied(ctx):
    """A pre-activation (or a layer without ReLU) written as if ReLU had been applied."""
    if ctx.correct < 0:
        yield slip("ReLU applied too early", 0.0, text="ReLU applied where it should not be (this cell comes before any activation)")


def activation_slips(ctx):
    act = ctx.answer.panel.layer.activation
    z = float(ctx.x[ctx.answer.idx])
    yield slip("ReLU forgotten" if act == "relu" else f"{act} forgotten", z, ctx.cells([ctx.answer.idx]),
               text="ReLU forgotten (z copied, but negative values become 0)" if act == "relu" else f"{act} forgotten (z copied)")


FLATTEN_ORDERS = [  # (axes order of (row, column, channel), from the slowest; the slip's name; what it is)
    ((2, 0, 1), "flattened channel by channel", "flattened in the wrong order: channel by channel (Keras goes row by row, channel fastest)"),
    ((1, 0, 2), "flattened column by column", "flattened in the wrong order: column by column (Keras goes row by row, channel fastest)"),
    ((2, 1, 0), "flattened column-major", "flattened in the wrong order: column-major, rows fastest, then columns, then channels "
                                          "(Keras goes row by row, channel fastest)"),
]


def flatten_slips(ctx):
    x, (k,) = ctx.x, ctx.answer.idx
    if x.ndim != 3:
        return
    keras = np.arange(x.size).reshape(x.shape)
    seen = {tuple(keras.ravel())}  # an order that is Keras's, or one named already, for this shape (e.g. one channel)
    for axes, name, text in FLATTEN_ORDERS:
        order = np.transpose(keras, axes).ravel()
        if tuple(order) in seen:
            continue
        seen.add(tuple(order))
        source = np.unravel_index(order[k], x.shape)
        yield slip(name, float(x[source]), ctx.cells([source]), text=text)


def softmax_slips(ctx):
    step, (k,) = ctx.answer.panel.step, ctx.answer.idx
    if step == "softmax_exp":
        (_, z), (_, m) = ctx.inputs[0], ctx.inputs[1]
        yield slip("max not subtracted", float(np.exp(z[k])), text="max not subtracted: EXP(z) instead of EXP(z − m)")
        yield slip("not exponentiated", float(z[k] - m[0]), text="not exponentiated: z − m instead of EXP(z − m)")
    elif step == "softmax":
        e = ctx.inputs[0][1]
        yield slip("softmax not normalised", float(e[k]), text="softmax not normalised: e instead of e / Σ e")
        z = ctx.extra.get("z")
        if z is not None:
            yield slip("softmax not exponentiated", float(z[k] / np.sum(z)),
                       text="softmax not exponentiated: z / Σ z instead of EXP(z − m) / Σ EXP(z − m)")
            yield slip("softmax of EXP(z), not normalised", float(np.exp(z[k])), text="softmax not normalised: EXP(z) instead of EXP(z) / Σ EXP(z)")


def class_slips(ctx):
    p = ctx.x
    if ctx.answer.panel.step == "class":
        yield slip("class counted from 1", float(np.argmax(p) + 1), text="class counted from 1 (Keras counts classes from 0)")
        yield slip("the smallest output picked, not the largest", float(np.argmin(p)))


def scaled_slips(ctx):
    raw = float(ctx.raw[ctx.answer.idx])
    yield slip("input not scaled", raw, text="input not scaled (the raw number copied)")
    yield slip("scaled the wrong way", raw / ctx.factor, text=f"scaled the wrong way (raw ÷ {ctx.scale_text} instead of raw × {ctx.scale_text})")


def layer_slips(ctx):
    """A layer's own panel ("pre", or "output" of a layer without activation): slips of the layer's computation."""
    layer = ctx.answer.panel.layer
    if isinstance(layer, (Conv2D, Dense)) and (ctx.answer.panel.step == "pre" or getattr(layer, "activation", "linear") == "linear"):
        yield from relu_applied(ctx)
    if isinstance(layer, Conv2D):
        yield from conv_slips(ctx)
    elif isinstance(layer, Dense):
        yield from dense_slips(ctx)
    elif isinstance(layer, (MaxPooling2D, AveragePooling2D)):
        yield from pool_slips(ctx)
    elif isinstance(layer, Flatten):
        yield from flatten_slips(ctx)
    elif isinstance(layer, (GlobalMaxPooling2D, GlobalAveragePooling2D)):
        other = np.mean if layer.mode == "max" else np.max
        yield slip("average instead of max" if layer.mode == "max" else "max instead of average", float(other(ctx.x[:, :, ctx.answer.idx[-1]])))


def input_panel(ctx, *steps):
    """(panel, array) of the first panel the cell reads whose step is one of `steps`, or (None, None)."""
    return next(((p, a) for p, a in ctx.inputs if p.step in steps), (None, None))


def gradient_slips(ctx):
    """A gradient dL/d… of the backward pass: the ReLU mask, max pooling's one cell a window, the batch mean, the
    sign of p − y."""
    panel, idx = ctx.answer.panel, ctx.answer.idx
    layer, B = panel.layer, ctx.extra.get("batch", 1)
    _, g = input_panel(ctx, "gradient")
    if layer is not None and panel.title.startswith("dL/dz") and getattr(layer, "activation", None) == "relu" and g is not None:
        yield slip("ReLU mask forgotten", float(g[idx]), text="ReLU mask forgotten: dL/da copied, but where z <= 0 the gradient is 0")
    if isinstance(layer, (MaxPooling2D, GlobalMaxPooling2D)) and panel.title.startswith("dL/dx") and g is not None:
        if isinstance(layer, MaxPooling2D):  # dL/dx has the shape of the layer's input
            sent = sum(float(g[i, j, idx[2]]) for i in range(g.shape[0]) for j in range(g.shape[1])
                       if _inside(idx, layer.window((i, j, idx[2]), panel.placement.shape)))
        else:
            sent = float(g[(0, 0, idx[2]) if g.ndim == 3 else (idx[2],)])
        yield slip("max-pool gradient sent to every cell", sent,
                   text="max-pool gradient sent to every cell of the window (it goes to the window's largest cell only)")
    last = layer is None or getattr(layer, "activation", None) in ("softmax", "log_softmax") and panel.title.startswith("dL/dz")
    if last and B > 1 and not panel.title.startswith("Σ"):
        yield slip("batch mean forgotten", ctx.correct * B, text=f"batch mean forgotten: L is the mean of {B} samples' losses, so "
                   f"each sample's gradient carries 1/{B}")
    if last and (panel.title.startswith("dL/dz") or layer is None and panel.title == "dL/dp"):
        yield slip("p − y with the wrong sign", -ctx.correct, text="p − y with the wrong sign: y − p used (the gradient points uphill)")


def _inside(idx, window):
    (r0, c0, _), (r1, c1, _) = window
    return r0 <= idx[0] <= r1 and c0 <= idx[1] <= c1


def share_slips(ctx):
    """A sample's share of dL/dw: a conv kernel's gradient flipped (a true convolution's, turned 180°)."""
    panel, idx = ctx.answer.panel, ctx.answer.idx
    if isinstance(panel.layer, Conv2D) and len(idx) == 4:
        kh, kw = panel.placement.shape[:2]
        turned = (kh - 1 - idx[0], kw - 1 - idx[1], *idx[2:])
        if turned != tuple(idx):
            try:
                value = evaluate.evaluate(evaluate.parse(panel.formula(turned), ctx.answer.sheet), ctx.lookup)
            except (evaluate.Unknown, evaluate.EvalError):
                value = None
            yield slip("kernel gradient flipped", value, text="kernel gradient flipped: turned 180° (Keras cross-correlates: "
                       "dL/dkernel[a, b] = Σ x[i + a, j + b] × dL/dz[i, j])")


def update_slips(ctx):
    """The weight after the step: the update subtracted the wrong way, or without the learning rate."""
    _, used = input_panel(ctx, "used")
    if used is None:
        return
    w = float(used[ctx.answer.idx])
    yield slip("update with the wrong sign", 2 * w - ctx.correct, text="update with the wrong sign: w + step instead of w − step")
    lr = ctx.extra.get("learning_rate")
    if lr:
        yield slip("learning rate left out", w - (w - ctx.correct) / lr,
                   text=f"learning rate left out: w − step without × learning rate {lr:g}")


def no_slips(ctx):
    return iter(())  # copying into a zero border, z - m - LN(s): no slip known beyond rounding


SLIPS = {"pre": layer_slips, "output": layer_slips, "activation": activation_slips, "scaled": scaled_slips,
         "softmax_max": softmax_slips, "softmax_exp": softmax_slips, "softmax_sum": softmax_slips, "softmax": softmax_slips,
         "class": class_slips, "class_value": class_slips, "padded": no_slips, "log_softmax": no_slips,
         # a training step's backward pass (practice --train): every share column is one step, "share"
         "gradient": gradient_slips, "helper": no_slips, "share": share_slips, "sum": no_slips, "after": update_slips,
         **{slot: no_slips for slot in SLOT_TITLES}}


def rounding_slips(ctx):
    """The same formula over values rounded (half up) to 1-3 decimals before computing: the weights, the inputs, or both."""
    def rounded(d, which):
        def look(sheet, r, c):
            v = ctx.lookup(sheet, r, c)
            if isinstance(v, float) and (which == "all" or (which == "weights") == (sheet == "Weights")):
                return float(np.floor(v * 10 ** d + 0.5) / 10 ** d)
            return v
        return look

    what = {"weights": "weights", "inputs": "inputs", "all": "inputs and weights"}
    for d in (1, 2, 3):
        seen = set()  # one name a value: weights rounded over inputs that have no more decimals are not also "both rounded"
        for which in what:  # (the same value at another number of decimals stays: a panel's other cells tell them apart)
            try:
                value = evaluate.evaluate(ctx.tree, rounded(d, which))
            except (evaluate.EvalError, evaluate.Unsupported, evaluate.Unknown):
                continue
            if value not in seen:
                seen.add(value)
                yield slip(f"{what[which]} rounded to {decimals_text(d)}", value,
                           text=f"rounded too early: its {what[which]} rounded to {decimals_text(d)} before computing")


def digit_slips(ctx):
    """Two neighbouring digits swapped in writing the value down (0.4629 for 0.4692), at the decimals written."""
    if ctx.places is None or ctx.places > 12 or not np.isfinite(ctx.correct):
        return
    right = f"{ctx.correct:.{ctx.places}f}"
    for k in range(len(right) - 1):
        a, b = right[k], right[k + 1]
        if a.isdigit() and b.isdigit() and a != b:
            swapped = right[:k] + b + a + right[k + 2:]
            yield slip("two digits swapped", float(swapped), text=f"two digits swapped: {swapped.lstrip('-')} written for {right.lstrip('-')}")


def candidates(ctx):
    """Every slip that applies to this cell."""
    step = ctx.answer.panel.step
    step = "share" if step.startswith("share ") else step
    if step not in SLIPS:
        raise AssertionError(f"no slips for step {step!r}")
    yield from SLIPS[step](ctx)
    if step not in ("class", "padded"):
        yield from rounding_slips(ctx)
        yield from digit_slips(ctx)


def reads_rank(s, reads):
    """0: the slip reads exactly the cells the student's formula reads; 1: cannot tell; 2: it reads other cells."""
    if reads is None or s.reads is None:
        return 1
    return 0 if s.reads == reads else 2


def matches(ctx, given, tol):
    """[(reads_rank, closeness, Slip)] of the slips whose value is within `tol` of `given` (and not within `tol` of the
    right value), best first: by the cells they read against the student's formula, then by closeness, then in the
    order listed. A slip is never named unless its value fits what was written."""
    out = []
    for order, s in enumerate(candidates(ctx)):
        if s.value is None or not np.isfinite(s.value):
            continue
        off = abs(s.value - given)
        if abs(s.value - ctx.correct) > tol and off <= tol:
            close = 0.0 if off <= 1e-12 * max(1.0, abs(given)) else off  # float noise is an exact fit
            out.append((reads_rank(s, ctx.reads), close, order, s))
    out.sort(key=lambda m: m[:3])
    return [(rank, close, s) for rank, close, _, s in out]
