"""The base of Keras-named layers: each holds its config and weights and knows its renderings side by side,
`call` (numpy, through cnncalc.engine.ops), `formula` (the cell text that computes the same element) and, for
training, `call_train` (the forward pass as Keras's fit runs it) and `backward` (numpy gradients).

Shapes here never carry the batch axis: an image is (H, W, C), a vector (D,).
`formula(idx, x, w, sheet)` returns the text for element `idx` of the layer's pre-activation output
(its output when it has no activation step), given where its input `x` and its weights `w`
(name -> Placement) sit, written from `sheet`; None means a constant (ZeroPadding2D's zeros).
"""

import math

import numpy as np

from cnncalc.engine import ops
from cnncalc.errors import CnncalcError
from cnncalc.sheets import formulas


def _is_int(n):
    return isinstance(n, (int, np.integer)) and not isinstance(n, bool)


def _pair(value, arg):
    """Keras accepts 3 or (3, 3) or [3, 3] for a 2-D size; return a tuple of two positive ints."""
    pair = (value, value) if _is_int(value) else tuple(value) if isinstance(value, (list, tuple)) else ()
    if len(pair) != 2 or not all(_is_int(n) and n > 0 for n in pair):
        raise CnncalcError(f"Invalid value for argument `{arg}`. Expected a positive int or a tuple of 2 positive ints. Received {arg}={value!r}")
    return tuple(int(n) for n in pair)


def _positive_int(value, arg):
    if not _is_int(value) or value <= 0:
        raise CnncalcError(f"Invalid value for argument `{arg}`. Expected a positive integer. Received {arg}={value!r}")
    return int(value)


def _padding(value):
    p = str(value).lower()
    if p not in ("valid", "same"):
        raise CnncalcError(f"Invalid value for argument `padding`. Expected 'valid' or 'same'. Received padding={value!r}")
    return p


def _float(value, arg, minimum=None):
    """A finite number (bools refused), at least `minimum` when given."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    try:
        ok = ok and math.isfinite(value)
    except OverflowError:  # an integer too large for a float (2**1024): not a number a layer can take
        ok = False
    if not ok or (minimum is not None and value < minimum):
        expected = "a number" if minimum is None else f"a number >= {minimum}"
        raise CnncalcError(f"Invalid value for argument `{arg}`. Expected {expected}. Received {arg}={value!r}")
    return float(value)


def _activation(value):
    """A Keras activation given as a name (or None, or Keras 2's serialized dict) -> Keras 3's name for it, checked."""
    if value is None:
        return "linear"
    if isinstance(value, dict):  # {"class_name": "function", "config": "relu", ...} in some saved configs
        value = value.get("config", value.get("class_name"))
    value = ops.ALIASES.get(value, value) if isinstance(value, str) else value  # Keras saves swish as silu
    ops.activation(value)  # raises a CnncalcError naming the unknown activation
    return value


def _flag(config, arg, default):
    """A True/False argument of a config; a string such as "false" is refused, not read as True."""
    value = config.get(arg, default)
    if not isinstance(value, (bool, np.bool_)):
        raise CnncalcError(f"Invalid value for argument `{arg}`. Expected true or false. Received {arg}={value!r}")
    return bool(value)


def _channels_last(config, class_name):
    fmt = config.get("data_format") or "channels_last"
    if fmt != "channels_last":
        raise CnncalcError(
            f"Layer {config.get('name')!r} ({class_name}) uses data_format={fmt!r}. Expected 'channels_last' "
            "(cnncalc lays images out as height x width x channels). Received a channels_first model: "
            "re-create it with data_format='channels_last'"
        )


class Layer:
    """Base: a name, weights in `get_weights()` order, and an optional activation."""

    weight_names = ()
    non_trainable_weights = ()  # names of weights Keras does not train (BatchNormalization's moving statistics)
    activation = "linear"
    trainable = True  # False for a layer frozen in Keras ("trainable": false in its config): fit leaves its weights alone

    def __init__(self, name=None):
        self.name = name
        self.weights = {}

    @property
    def class_name(self):
        return type(self).__name__

    def weight_shapes(self, input_shape):
        """{weight name: shape} in Keras's get_weights() order."""
        return {}

    def given_cells(self, input_shape):
        """Which output cells `formula` leaves as given numbers (it returns None there), as a boolean array of the
        output's shape, or False for none; verify compares the others without making their formulas' text."""
        return False

    def weight_layouts(self):
        """{weight name: Placement layout} used on the Weights sheet."""
        return {}

    def set_weights(self, arrays, input_shape):
        """Check count and shapes against what the config implies, then keep float64 copies."""
        shapes = self.weight_shapes(input_shape)
        if len(arrays) != len(shapes):
            raise CnncalcError(
                f"Layer {self.name!r} ({self.class_name}) has the wrong number of weights. Expected {len(shapes)} "
                f"({', '.join(shapes) or 'none'}). Received {len(arrays)}"
            )
        weights = {}
        for (wname, shape), arr in zip(shapes.items(), arrays):
            arr = np.asarray(arr)
            if arr.dtype.kind not in "biuf":  # strings, objects, complex numbers: not weights a cell can hold
                raise CnncalcError(f"Weight {self.name}/{wname} holds {arr.dtype} values. Expected real numbers. Received dtype {arr.dtype}")
            arr = arr.astype(np.float64)
            if arr.shape != tuple(shape):
                raise CnncalcError(
                    f"Weight {self.name}/{wname} has the wrong shape. Expected {tuple(shape)}. Received {arr.shape}"
                )
            if not np.all(np.isfinite(arr)):
                raise CnncalcError(
                    f"Weight {self.name}/{wname} holds NaN or infinity. Expected finite numbers (a spreadsheet cannot hold them). "
                    f"Received {int(np.sum(~np.isfinite(arr)))} non-finite value(s)"
                )
            weights[wname] = arr
        self.weights = weights

    def get_weights(self):
        return list(self.weights.values())

    def count_params(self):
        return int(sum(w.size for w in self.weights.values()))

    def call(self, x):
        """(pre-activation, output) for a batch x; pre is None for layers without an activation step."""
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        raise NotImplementedError

    def get_config(self):
        return {"name": self.name}

    def _w(self, x):
        """Weights in the dtype of the batch (float64, or float32 on request)."""
        return {k: v.astype(x.dtype, copy=False) for k, v in self.weights.items()}

    def _activate(self, pre):
        return pre, ops.activation(self.activation)(pre)

    # ------------------------------------------------------------ training: the forward pass inside fit, and backward

    def trainable_weight_names(self):
        """The weights Keras's fit trains, in get_weights() order."""
        return [n for n in self.weights if n not in self.non_trainable_weights] if self.trainable else []

    def call_train(self, x):
        """The forward pass as Keras's fit runs it: (pre, out, saved), where saved holds what backward needs besides
        x, pre and out (BatchNormalization: the batch's mean and variance). For most layers, call's result."""
        pre, out = self.call(x)
        return pre, out, {}

    def backward(self, x, pre, out, d_out, saved):
        """Gradients for a batch, given dL/d(out): (d_pre, d_x, grads), with d_pre = dL/d(pre-activation) (None for a
        layer without an activation step), d_x = dL/d(input) and grads = {weight name: dL/d(weight)}."""
        raise NotImplementedError

    def moving_updates(self, saved):
        """New values of the weights fit changes without gradients (BatchNormalization's moving statistics)."""
        return {}

    def _deactivate(self, pre, out, d_out):
        """dL/d(pre-activation) from dL/d(out), back through the layer's activation."""
        return ops.activation_backward(self.activation, pre, out, d_out)

    def formula_deactivate(self, idx, g, z, a, sheet):
        """The cell text of dL/dz[idx] (as _deactivate) from where dL/da (g), the pre-activation z and the output a sit
        (Placements). Element-wise activations only: softmax's Σ needs a cell of its own (sheets/training.py)."""
        return formulas.activation_backward(self.activation, g.ref(idx, sheet), z.ref(idx, sheet), a.ref(idx, sheet))

    def formula_backward(self, idx, g, x, out, w, sheet):
        """The cell text of dL/dx[idx] (as backward's d_x), given where dL/d(what `formula` computes) (g), the input x,
        the output out and the weights w (name -> Placement) sit; None means a constant 0. Each layer that a training
        workbook supports writes its own next to its backward."""
        raise CnncalcError(f"Layer {self.name!r} ({self.class_name}) has no gradient formula. Expected a layer a training "
                           "workbook supports. Received a layer cnncalc cannot train in a workbook")

    def formula_weight_gradient(self, wname, idx, g, x, sheet, spread=None):
        """The cell text of dL/d(weight wname)[idx] for one sample (as backward's grads), g and x as formula_backward
        (spread: Conv2D's spread gradient, for strides)."""
        raise CnncalcError(f"Layer {self.name!r} ({self.class_name}) has no weight-gradient formula. Expected Conv2D or Dense. "
                           "Received a layer cnncalc cannot train in a workbook")


class _Elementwise(Layer):
    """Base of layers that map each element on its own (output shape = input shape): apply() in numpy, cell() as text,
    derivative() the slope of apply at each element, for backward."""

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def call(self, x):
        return None, self.apply(x)

    def formula(self, idx, x, w, sheet):
        return self.cell(x.ref(idx, sheet))

    def backward(self, x, pre, out, d_out, saved):
        return None, d_out * self.derivative(x), {}

    def formula_backward(self, idx, g, x, out, w, sheet):
        """dL/dx = dL/d(out) × the slope at x: cell_backward(g, x, out) of the element's three cells."""
        return self.cell_backward(g.ref(idx, sheet), x.ref(idx, sheet), out.ref(idx, sheet))
