"""Known slips: each recomputes one answer cell the way a student who made that slip would.

`candidates(ctx)` yields (name, value) pairs for one cell; `diagnose` names the first whose value
matches what the student wrote. A slip is a mistake in this cell alone, so it is recomputed from the
cell's inputs as a world holds them: the student's own earlier answers first, then the engine's.
"""

from dataclasses import dataclass

import numpy as np

from cnncalc.classroom import evaluate
from cnncalc.engine.layers import (AveragePooling2D, Conv2D, Dense, Flatten, GlobalAveragePooling2D, GlobalMaxPooling2D,
                            MaxPooling2D)
from cnncalc.engine.ops import padding_amounts


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

    @property
    def x(self):
        """The tensor the layer reads (its first input panel)."""
        return self.inputs[0][1]


def _side(d):
    return {(-1, 0): "one row up", (1, 0): "one row down", (0, -1): "one column left", (0, 1): "one column right"}[d]


SHIFTS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def conv_slips(ctx):
    layer, (i, j, f), x = ctx.answer.panel.layer, ctx.answer.idx, ctx.x
    kernel, bias = layer.weights["kernel"], layer.weights.get("bias")
    (kh, kw), (sh, sw), (dh, dw) = layer.kernel_size, layer.strides, layer.dilation_rate

    def at(r0, c0, k=kernel, with_bias=True, xx=x, filt=f):
        r1, c1 = r0 + (kh - 1) * dh + 1, c0 + (kw - 1) * dw + 1
        if r0 < 0 or c0 < 0 or r1 > xx.shape[0] or c1 > xx.shape[1]:
            return None
        z = float(np.sum(xx[r0:r1:dh, c0:c1:dw, :] * k[:, :, :, filt]))
        return z + (float(bias[filt]) if with_bias and bias is not None else 0.0)

    r, c = i * sh, j * sw
    if bias is not None:
        yield "bias forgotten", at(r, c, with_bias=False)
    yield "kernel flipped: a true convolution, but Keras cross-correlates (no flip)", at(r, c, kernel[::-1, ::-1])
    if ctx.scaled_input:
        yield f"unscaled input used (the raw numbers, not raw × {ctx.scale_text})", at(r, c, xx=x / ctx.factor)
    if (sh, sw) != (1, 1):
        yield f"stride misapplied: window moved by 1, not by the stride {sh}×{sw}", at(i, j)
    (top, _), (left, _) = layer.input_padding(ctx.input_shape)
    if top or left:
        yield "padding misapplied: the window taken from the input without its zero border", at(r + top, c + left)
    for d in SHIFTS:
        yield f"window misplaced ({_side(d)})", at(r + d[0], c + d[1])
    for g in range(kernel.shape[3]):
        if g != f:
            yield f"kernel of filter {g} used instead of filter {f}", at(r, c, filt=g)


def pool_slips(ctx):
    layer, idx, x = ctx.answer.panel.layer, ctx.answer.idx, ctx.x
    (r0, c0, ch), (r1, c1, _) = layer.window(idx, x.shape)
    other = np.mean if layer.mode == "max" else np.max
    name = "average instead of max" if layer.mode == "max" else "max instead of average"
    yield f"{name} pooling", float(other(x[r0:r1 + 1, c0:c1 + 1, ch]))
    same = np.max if layer.mode == "max" else np.mean
    (ph, pw), (sh, sw) = layer.pool_size, layer.strides
    (top, _), (left, _) = padding_amounts(x.shape[:2], layer.pool_size, layer.strides, layer.padding)
    i, j = idx[0], idx[1]
    starts = [(i * sh - top + d[0], j * sw - left + d[1]) for d in SHIFTS]
    if (sh, sw) != (1, 1):
        starts.insert(0, (i - top, j - left))
    for a, b in starts:
        a0, b0, a1, b1 = max(a, 0), max(b, 0), min(a + ph, x.shape[0]), min(b + pw, x.shape[1])
        if a0 < a1 and b0 < b1 and (a0, b0, a1 - 1, b1 - 1) != (r0, c0, r1, c1):
            yield (f"pooling the wrong window: rows {a0 + 1}–{a1}, columns {b0 + 1}–{b1} instead of rows {r0 + 1}–{r1 + 1}, "
                   f"columns {c0 + 1}–{c1 + 1}"), float(same(x[a0:a1, b0:b1, ch]))


def dense_slips(ctx):
    layer, (j,), x = ctx.answer.panel.layer, ctx.answer.idx, ctx.x
    kernel, bias = layer.weights["kernel"], layer.weights.get("bias")
    b = float(bias[j]) if bias is not None else 0.0
    if bias is not None:
        yield "bias forgotten", float(x @ kernel[:, j])
    if ctx.scaled_input:
        yield f"unscaled input used (the raw numbers, not raw × {ctx.scale_text})", float(x / ctx.factor @ kernel[:, j]) + b
    for g in range(kernel.shape[1]):
        if g != j:
            yield f"weights of unit {g} used instead of unit {j} (wrong kernel column)", float(x @ kernel[:, g]) + (float(bias[g]) if bias is not None else 0.0)


def relu_applied(ctx):
    """A pre-activation (or a layer without ReLU) written as if ReLU had been applied."""
    if ctx.correct < 0:
        yield "ReLU applied where it should not be (this cell comes before any activation)", 0.0


def activation_slips(ctx):
    act = ctx.answer.panel.layer.activation
    z = float(ctx.x[ctx.answer.idx])
    yield ("ReLU forgotten (z copied, but negative values become 0)" if act == "relu" else f"{act} forgotten (z copied)"), z


def flatten_slips(ctx):
    x, (k,) = ctx.x, ctx.answer.idx
    if x.ndim == 3:
        yield "flattened in the wrong order: channel by channel (Keras goes row by row, channel fastest)", float(np.transpose(x, (2, 0, 1)).ravel()[k])
        yield "flattened in the wrong order: column by column (Keras goes row by row, channel fastest)", float(np.transpose(x, (1, 0, 2)).ravel()[k])


def softmax_slips(ctx):
    step, (k,) = ctx.answer.panel.step, ctx.answer.idx
    if step == "softmax_exp":
        (_, z), (_, m) = ctx.inputs[0], ctx.inputs[1]
        yield "max not subtracted: EXP(z) instead of EXP(z − m)", float(np.exp(z[k]))
        yield "not exponentiated: z − m instead of EXP(z − m)", float(z[k] - m[0])
    elif step == "softmax":
        (_, e), (_, s) = ctx.inputs[0], ctx.inputs[1]
        yield "softmax not normalised: e instead of e / Σ e", float(e[k])
        z = ctx.extra.get("z")
        if z is not None:
            yield "softmax not exponentiated: z / Σ z instead of EXP(z − m) / Σ EXP(z − m)", float(z[k] / np.sum(z))
            yield "softmax not normalised: EXP(z) instead of EXP(z) / Σ EXP(z)", float(np.exp(z[k]))


def class_slips(ctx):
    p = ctx.x
    if ctx.answer.panel.step == "class":
        yield "class counted from 1 (Keras counts classes from 0)", float(np.argmax(p) + 1)
        yield "the smallest output picked, not the largest", float(np.argmin(p))


def scaled_slips(ctx):
    raw = float(ctx.raw[ctx.answer.idx])
    yield "input not scaled (the raw number copied)", raw
    yield f"scaled the wrong way (raw ÷ {ctx.scale_text} instead of raw × {ctx.scale_text})", raw / ctx.factor


def rounding_slips(ctx):
    """The same formula over values rounded (half up) to 1-3 decimals before computing."""
    def rounded(d, which):
        def look(sheet, r, c):
            v = ctx.lookup(sheet, r, c)
            is_weight = sheet == "Weights"
            if isinstance(v, float) and (which == "all" or (which == "weights") == is_weight):
                return float(np.floor(v * 10 ** d + 0.5) / 10 ** d)
            return v
        return look

    what = {"all": "inputs and weights", "inputs": "inputs", "weights": "weights"}
    for d in (1, 2, 3):
        for which in ("inputs", "all", "weights"):
            try:
                yield f"rounded too early: its {what[which]} rounded to {d} decimals before computing", evaluate.evaluate(ctx.tree, rounded(d, which))
            except (evaluate.EvalError, evaluate.Unsupported, evaluate.Unknown):
                continue


def candidates(ctx):
    """(name, value) of every slip that applies to this cell."""
    step, layer = ctx.answer.panel.step, ctx.answer.panel.layer
    if step in ("pre", "output") and (step == "pre" or getattr(layer, "activation", "linear") == "linear"):
        if isinstance(layer, (Conv2D, Dense)):
            yield from relu_applied(ctx)
    if step in ("pre", "output"):
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
            name = "average instead of max" if layer.mode == "max" else "max instead of average"
            yield name, float(other(ctx.x[:, :, ctx.answer.idx[-1]]))
    elif step == "activation":
        yield from activation_slips(ctx)
    elif step.startswith("softmax"):
        yield from softmax_slips(ctx)
    elif step in ("class", "class_value"):
        yield from class_slips(ctx)
    elif step == "scaled":
        yield from scaled_slips(ctx)
    elif step in ("padded", "log_softmax"):
        pass  # copying into a zero border, and z - m - LN(s): no slip known beyond rounding
    else:
        raise AssertionError(f"no slips for step {step!r}")
    if step not in ("class", "padded"):
        yield from rounding_slips(ctx)


def diagnose(ctx, given, tol):
    """The name of the first slip whose value matches `given` within `tol` (and differs from the right value), else None."""
    for name, value in candidates(ctx):
        if value is None or not np.isfinite(value):
            continue
        if abs(value - ctx.correct) > tol and abs(value - given) <= tol:
            return name
    return None
