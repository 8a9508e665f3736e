"""Keras Dense."""

from cnncalc.sheets import formulas
from cnncalc.engine import ops
from cnncalc.engine.layers.base import Layer, _activation, _flag, _positive_int
from cnncalc.errors import CnncalcError


class Dense(Layer):
    """Keras Dense: out[j] = act(sum_i x[i] * kernel[i, j] + bias[j])."""

    weight_names = ("kernel", "bias")

    def __init__(self, units, activation=None, use_bias=True, name=None):
        super().__init__(name)
        self.units = _positive_int(units, "units")
        self.activation = _activation(activation)
        self.use_bias = bool(use_bias)

    @classmethod
    def from_config(cls, config):
        return cls(config["units"], config.get("activation"), _flag(config, "use_bias", True), config.get("name"))

    def get_config(self):
        return {"name": self.name, "units": self.units, "activation": self.activation, "use_bias": self.use_bias}

    def weight_shapes(self, input_shape):
        shapes = {"kernel": (input_shape[-1], self.units)}
        if self.use_bias:
            shapes["bias"] = (self.units,)
        return shapes

    def weight_layouts(self):
        return {"kernel": "matrix", "bias": "row"}

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 1:
            raise CnncalcError(
                f"Layer {self.name!r} (Dense) needs a flat input. Expected shape (features,): add a Flatten layer before it. "
                f"Received {tuple(input_shape)}"
            )
        return (self.units,)

    def call(self, x):
        w = self._w(x)
        return self._activate(ops.dense(x, w["kernel"], w.get("bias")))

    def formula(self, idx, x, w, sheet):
        (j,), n = idx, x.shape[0]
        terms = [formulas.sumproduct(x.span((0,), (n - 1,), sheet), w["kernel"].span((0, j), (n - 1, j), sheet, absolute=True))]
        if self.use_bias:
            terms.append(w["bias"].ref((j,), sheet, absolute=True))
        return formulas.add(terms)

    def backward(self, x, pre, out, d_out, saved):
        """Through the activation to d_pre, then dense_backward: the input's, kernel's and bias's gradients."""
        d_pre = self._deactivate(pre, out, d_out)
        d_x, d_kernel, d_bias = ops.dense_backward(x, self._w(x)["kernel"], d_pre)
        return d_pre, d_x, ({"kernel": d_kernel, "bias": d_bias} if self.use_bias else {"kernel": d_kernel})

    def formula_backward(self, idx, g, x, out, w, sheet):
        """dL/dx[i] = SUMPRODUCT(kernel row i, dL/dz), g holding dL/dz as a row (a sheet's SUMPRODUCT needs two ranges
        of one shape; one unit's dL/dz is a single cell)."""
        (i,), k = idx, self.units
        return formulas.sumproduct(w["kernel"].span((i, 0), (i, k - 1), sheet, absolute=True), g.span((0,), (k - 1,), sheet))

    def formula_weight_gradient(self, wname, idx, g, x, sheet, spread=None):
        """dL/dkernel[i, j] = x[i] * dL/dz[j]; dL/dbias[j] = dL/dz[j]."""
        if wname == "bias":
            return g.ref(idx, sheet)
        i, j = idx
        return f"{x.ref((i,), sheet)}*{g.ref((j,), sheet)}"
