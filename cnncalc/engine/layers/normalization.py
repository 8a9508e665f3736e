"""Keras BatchNormalization."""

import numpy as np

from cnncalc.sheets import formulas
from cnncalc.engine import ops
from cnncalc.engine.layers.base import Layer, _flag, _float, _is_int
from cnncalc.errors import CnncalcError


class BatchNormalization(Layer):
    """Keras BatchNormalization at inference, over the channels (last axis):
    out[..., c] = (x[..., c] - moving_mean[c]) / sqrt(moving_variance[c] + epsilon) * gamma[c] + beta[c].
    While training it normalizes with the batch's own mean and variance instead, and moves the moving statistics
    towards them: moving = moving * momentum + batch value * (1 - momentum).
    """

    weight_names = ("gamma", "beta", "moving_mean", "moving_variance")
    non_trainable_weights = ("moving_mean", "moving_variance")

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, momentum=0.99, name=None):
        super().__init__(name)
        if isinstance(axis, (list, tuple)) and len(axis) == 1:  # Keras 2 saved axis as [3]
            axis = axis[0]
        if not _is_int(axis):
            raise CnncalcError(f"Invalid value for argument `axis`. Expected -1 (the channels, last). Received axis={axis!r}")
        self.axis = int(axis)
        self.epsilon = _float(epsilon, "epsilon")
        if self.epsilon <= 0:
            raise CnncalcError(f"Invalid value for argument `epsilon`. Expected a number > 0. Received epsilon={epsilon!r}")
        self.center, self.scale = bool(center), bool(scale)
        self.momentum = _float(momentum, "momentum")

    @classmethod
    def from_config(cls, config):
        if config.get("renorm"):
            raise CnncalcError(f"Layer {config.get('name')!r} (BatchNormalization) uses renorm=True. Expected renorm=False. Received a batch renormalization layer, which cnncalc does not support")
        return cls(config.get("axis", -1), config.get("epsilon", 1e-3), _flag(config, "center", True), _flag(config, "scale", True),
                   config.get("momentum", 0.99), config.get("name"))

    def get_config(self):
        return {"name": self.name, "axis": self.axis, "epsilon": self.epsilon, "center": self.center, "scale": self.scale,
                "momentum": self.momentum}

    def weight_shapes(self, input_shape):
        names = [n for n in self.weight_names if (n != "gamma" or self.scale) and (n != "beta" or self.center)]
        return {n: (input_shape[-1],) for n in names}

    def weight_layouts(self):
        return {n: "row" for n in self.weight_names}

    def compute_output_shape(self, input_shape):
        if self.axis not in (-1, len(input_shape)):  # Keras counts the batch axis: (None, H, W, C) has C at 3
            raise CnncalcError(
                f"Invalid value for argument `axis` of layer {self.name!r} (BatchNormalization). Expected -1 or {len(input_shape)} "
                f"(the last axis, channels, of input (None, {', '.join(map(str, input_shape))})). Received axis={self.axis}"
            )
        return tuple(input_shape)

    def call(self, x):
        w = self._w(x)
        return None, ops.batch_normalization(x, w["moving_mean"], w["moving_variance"], w.get("gamma"), w.get("beta"), self.epsilon)

    def formula(self, idx, x, w, sheet):
        c = (idx[-1],)
        ref = {name: p.ref(c, sheet, absolute=True) for name, p in w.items()}
        return formulas.batch_normalization(x.ref(idx, sheet), ref["moving_mean"], ref["moving_variance"], self.epsilon,
                                            ref.get("gamma"), ref.get("beta"))

    def call_train(self, x):
        """Normalize with the batch's mean and variance (over batch, height and width); a frozen layer
        (trainable=False) normalizes with its moving statistics, as Keras does."""
        if not self.trainable:
            return (*self.call(x), {})
        w = self._w(x)
        mean, variance = ops.batch_moments(x)
        out = ops.batch_normalization(x, mean, variance, w.get("gamma"), w.get("beta"), self.epsilon)
        return None, out, {"mean": mean, "variance": variance}

    def backward(self, x, pre, out, d_out, saved):
        w = self._w(x)
        if "mean" not in saved:  # frozen: a fixed scale per channel, nothing to train
            return None, d_out * w.get("gamma", 1.0) / np.sqrt(w["moving_variance"] + self.epsilon), {}
        d_x, d_gamma, d_beta = ops.batch_normalization_backward(x, saved["mean"], saved["variance"], w.get("gamma"), d_out,
                                                                self.epsilon)
        grads = {"gamma": d_gamma, "beta": d_beta}
        return None, d_x, {name: grads[name] for name in ("gamma", "beta") if name in self.weights}

    # ------------------------------------------------------------ training formulas (a training workbook's cells)
    # Each sample's band holds x − μ, x̂ and the output; the batch band holds, per channel, μ, σ², the means of
    # g = dL/dx̂ and of g·x̂ over the batch, and the moving statistics. `channel(p, c, sheet)` is the rectangle of
    # channel c of placement p (one map of a grid, or one cell of a vector).

    def formula_centered(self, idx, x, mean, sheet):
        """x − μ of its channel (μ: the batch mean, a cell of the batch band)."""
        return f"{x.ref(idx, sheet)}-{mean.ref((idx[-1],), sheet, absolute=True)}"

    def formula_normalized(self, idx, centered, variance, sheet):
        """x̂ = (x − μ) / √(σ² + ε) (σ²: the batch's biased variance)."""
        return f"{centered.ref(idx, sheet)}/SQRT({variance.ref((idx[-1],), sheet, absolute=True)}+{formulas.number(self.epsilon)})"

    def formula_scaled(self, idx, xhat, w, sheet):
        """The output x̂ × γ + β (without γ or β when the layer has none)."""
        c = (idx[-1],)
        text = xhat.ref(idx, sheet) + (f"*{w['gamma'].ref(c, sheet, absolute=True)}" if "gamma" in w else "")
        return text + (f"+{w['beta'].ref(c, sheet, absolute=True)}" if "beta" in w else "")

    def formula_xhat_gradient(self, idx, g, w, sheet):
        """dL/dx̂ = dL/d(out) × γ."""
        return g.ref(idx, sheet) + (f"*{w['gamma'].ref((idx[-1],), sheet, absolute=True)}" if "gamma" in w else "")

    @staticmethod
    def channel(p, c, sheet):
        return p.span((0,) * (len(p.shape) - 1) + (c,), tuple(n - 1 for n in p.shape[:-1]) + (c,), sheet)

    def formula_batch_mean(self, c, xs, count, sheet):
        """μ[c] = the sum of channel c over every sample's x (xs: their placements) / count (batch × height × width)."""
        return f"SUM({','.join(self.channel(x, c, sheet) for x in xs)})/{count}"

    def formula_batch_variance(self, c, centered, count, sheet):
        """σ²[c] = the sum of (x − μ)² over the batch / count: the biased variance, as Keras."""
        return f"SUMSQ({','.join(self.channel(x, c, sheet) for x in centered)})/{count}"

    def formula_batch_mean_product(self, c, gs, xhats, count, sheet):
        """The mean over the batch of g × x̂ in channel c (xhats None: the mean of g)."""
        if xhats is None:
            return self.formula_batch_mean(c, gs, count, sheet)
        return f"({formulas.add(formulas.sumproduct(self.channel(g, c, sheet), self.channel(x, c, sheet)) for g, x in zip(gs, xhats))})/{count}"

    def formula_moving(self, c, moving, batch_value, sheet):
        """Keras's update: moving × momentum + batch value × (1 − momentum) (ops.moving_average)."""
        return (f"{moving.ref((c,), sheet)}*{formulas.number(self.momentum)}+{batch_value.ref((c,), sheet)}"
                f"*{formulas.number(1.0 - self.momentum)}")

    def formula_backward(self, idx, g, x, out, w, sheet):
        """dL/dx. Training (w holds the batch band's "variance", "mean_g", "mean_gx" and the band's "dxhat", "xhat"):
        (dL/dx̂ − mean(g) − x̂ × mean(g·x̂)) / √(σ² + ε), through the batch statistics (ops.batch_normalization_backward).
        Frozen: dL/d(out) × γ / √(moving variance + ε)."""
        c = (idx[-1],)
        if "variance" in w:
            return (f"({w['dxhat'].ref(idx, sheet)}-{w['mean_g'].ref(c, sheet, absolute=True)}-{w['xhat'].ref(idx, sheet)}"
                    f"*{w['mean_gx'].ref(c, sheet, absolute=True)})/SQRT({w['variance'].ref(c, sheet, absolute=True)}"
                    f"+{formulas.number(self.epsilon)})")
        gamma = f"*{w['gamma'].ref(c, sheet, absolute=True)}" if "gamma" in w else ""
        return f"{g.ref(idx, sheet)}{gamma}/SQRT({w['moving_variance'].ref(c, sheet, absolute=True)}+{formulas.number(self.epsilon)})"

    def formula_weight_gradient(self, wname, idx, g, x, sheet, spread=None):
        """One sample's share: dL/dγ[c] = SUMPRODUCT(dL/d(out), x̂) over channel c; dL/dβ[c] = SUM(dL/d(out)) (x: x̂)."""
        c = idx[0]
        if wname == "gamma":
            return formulas.sumproduct(self.channel(g, c, sheet), self.channel(x, c, sheet))
        return f"SUM({self.channel(g, c, sheet)})"

    def moving_updates(self, saved):
        if "mean" not in saved:
            return {}
        return {"moving_mean": ops.moving_average(self.weights["moving_mean"], saved["mean"], self.momentum),
                "moving_variance": ops.moving_average(self.weights["moving_variance"], saved["variance"], self.momentum)}
