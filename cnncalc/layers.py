"""Keras-named layers: each holds its config and weights and knows two renderings of itself,
`call` (numpy, through cnncalc.ops) and `formula` (the cell text that computes the same element).

Shapes here never carry the batch axis: an image is (H, W, C), a vector (D,).
`formula(idx, x, w, sheet)` returns the text for element `idx` of the layer's pre-activation output,
given where its input `x` and its weights `w` (name -> Placement) sit, written from `sheet`.
"""

import numpy as np

from cnncalc import formulas, ops
from cnncalc.errors import CnncalcError


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


def _activation(value):
    """A Keras activation given as a name (or None, or Keras 2's serialized dict) -> its name, checked."""
    if value is None:
        return "linear"
    if isinstance(value, dict):  # {"class_name": "function", "config": "relu", ...} in some saved configs
        value = value.get("config", value.get("class_name"))
    ops.activation(value)  # raises a CnncalcError naming the unknown activation
    return value


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
    activation = "linear"

    def __init__(self, name=None):
        self.name = name
        self.weights = {}

    @property
    def class_name(self):
        return type(self).__name__

    def weight_shapes(self, input_shape):
        """{weight name: shape} in Keras's get_weights() order."""
        return {}

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
            arr = np.asarray(arr, dtype=np.float64)
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


class Conv2D(Layer):
    """Keras Conv2D: out[i, j, f] = act(sum_{a,b,c} x[i*s + a, j*s + b, c] * kernel[a, b, c, f] + bias[f])."""

    weight_names = ("kernel", "bias")

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", dilation_rate=(1, 1),
                 activation=None, use_bias=True, name=None):
        super().__init__(name)
        self.filters = _positive_int(filters, "filters")
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = _padding(padding)
        self.dilation_rate = _pair(dilation_rate, "dilation_rate")
        if self.strides != (1, 1) and self.dilation_rate != (1, 1):
            raise CnncalcError(
                f"Invalid arguments for Conv2D {name!r}. Expected strides=1 when dilation_rate > 1 (as Keras requires). "
                f"Received strides={self.strides}, dilation_rate={self.dilation_rate}"
            )
        self.activation = _activation(activation)
        self.use_bias = bool(use_bias)

    @classmethod
    def from_config(cls, config):
        _channels_last(config, "Conv2D")
        if int(config.get("groups", 1)) != 1:
            raise CnncalcError(f"Layer {config.get('name')!r} (Conv2D) uses groups={config['groups']}. Expected groups=1. Received a grouped convolution, which cnncalc does not support")
        return cls(config["filters"], config["kernel_size"], config.get("strides", 1), config.get("padding", "valid"),
                   config.get("dilation_rate", 1), config.get("activation"), config.get("use_bias", True), config.get("name"))

    def get_config(self):
        return {"name": self.name, "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "dilation_rate": list(self.dilation_rate),
                "activation": self.activation, "use_bias": self.use_bias}

    def weight_shapes(self, input_shape):
        shapes = {"kernel": (*self.kernel_size, input_shape[-1], self.filters)}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def weight_layouts(self):
        return {"kernel": "kernel", "bias": "row"}

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise CnncalcError(f"Layer {self.name!r} (Conv2D) needs an image input. Expected shape (height, width, channels). Received {tuple(input_shape)}")
        h, w = (ops.conv_output_length(n, k, s, self.padding, d)
                for n, k, s, d in zip(input_shape[:2], self.kernel_size, self.strides, self.dilation_rate))
        if h <= 0 or w <= 0:
            raise CnncalcError(f"Layer {self.name!r} (Conv2D) gets an input too small for its kernel. Expected at least {self.kernel_size} with padding='valid'. Received {tuple(input_shape[:2])}")
        return (h, w, self.filters)

    def input_padding(self, input_shape):
        """((top, bottom), (left, right)) zeros the formula view adds before the windows."""
        return ops.padding_amounts(input_shape[:2], self.kernel_size, self.strides, self.padding, self.dilation_rate)

    def call(self, x):
        w = self._w(x)
        return self._activate(ops.conv2d(x, w["kernel"], w.get("bias"), self.strides, self.padding, self.dilation_rate))

    def formula(self, idx, x, w, sheet):
        """x is the (already zero-padded) input. One SUMPRODUCT per input channel, plus the bias."""
        i, j, f = idx
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.strides, self.dilation_rate
        k = w["kernel"]
        terms = []
        for c in range(x.shape[2]):
            if (dh, dw) == (1, 1):
                win = x.span((i * sh, j * sw, c), (i * sh + kh - 1, j * sw + kw - 1, c), sheet)
                terms.append(formulas.sumproduct(win, k.span((0, 0, c, f), (kh - 1, kw - 1, c, f), sheet, absolute=True)))
            else:
                terms.append(formulas.products(
                    (x.ref((i * sh + a * dh, j * sw + b * dw, c), sheet), k.ref((a, b, c, f), sheet, absolute=True))
                    for a in range(kh) for b in range(kw)))
        if self.use_bias:
            terms.append(w["bias"].ref((f,), sheet, absolute=True))
        return formulas.add(terms)


class _Pooling2D(Layer):
    mode = None
    function = None

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", name=None):
        super().__init__(name)
        self.pool_size = _pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else _pair(strides, "strides")
        self.padding = _padding(padding)

    @classmethod
    def from_config(cls, config):
        _channels_last(config, cls.__name__)
        return cls(config.get("pool_size", 2), config.get("strides"), config.get("padding", "valid"), config.get("name"))

    def get_config(self):
        return {"name": self.name, "pool_size": list(self.pool_size), "strides": list(self.strides), "padding": self.padding}

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise CnncalcError(f"Layer {self.name!r} ({self.class_name}) needs an image input. Expected shape (height, width, channels). Received {tuple(input_shape)}")
        h, w = (ops.conv_output_length(n, k, s, self.padding) for n, k, s in zip(input_shape[:2], self.pool_size, self.strides))
        if h <= 0 or w <= 0:
            raise CnncalcError(f"Layer {self.name!r} ({self.class_name}) gets an input smaller than its window. Expected at least {self.pool_size}. Received {tuple(input_shape[:2])}")
        return (h, w, input_shape[2])

    def call(self, x):
        return None, ops.pool2d(x, self.pool_size, self.strides, self.padding, self.mode)

    def window(self, idx, input_shape):
        """(first, last) input index of the window for output idx, clipped to the real cells (padding holds nothing)."""
        i, j, c = idx
        (top, _), (left, _) = ops.padding_amounts(input_shape[:2], self.pool_size, self.strides, self.padding)
        r0, c0 = i * self.strides[0] - top, j * self.strides[1] - left
        r1, c1 = r0 + self.pool_size[0] - 1, c0 + self.pool_size[1] - 1
        return (max(r0, 0), max(c0, 0), c), (min(r1, input_shape[0] - 1), min(c1, input_shape[1] - 1), c)

    def formula(self, idx, x, w, sheet):
        first, last = self.window(idx, x.shape)
        return f"{self.function}({x.span(first, last, sheet)})"


class MaxPooling2D(_Pooling2D):
    """Keras MaxPooling2D: the largest value of each window; strides default to pool_size."""

    mode, function = "max", "MAX"


class AveragePooling2D(_Pooling2D):
    """Keras AveragePooling2D: the mean of each window; with `same`, padded cells are not counted."""

    mode, function = "avg", "AVERAGE"


class Flatten(Layer):
    """Keras Flatten: row-major over (H, W, C), channel fastest."""

    @classmethod
    def from_config(cls, config):
        _channels_last(config, "Flatten")
        return cls(config.get("name"))

    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def call(self, x):
        return None, ops.flatten(x)

    def source(self, idx, input_shape):
        """The input index that flattened element idx comes from."""
        return tuple(int(n) for n in np.unravel_index(idx[0], input_shape))

    def formula(self, idx, x, w, sheet):
        return x.ref(self.source(idx, x.shape), sheet)


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
        return cls(config["units"], config.get("activation"), config.get("use_bias", True), config.get("name"))

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


LAYERS = {cls.__name__: cls for cls in (Conv2D, MaxPooling2D, AveragePooling2D, Flatten, Dense)}


def layer_from_config(class_name, config):
    """Build a layer from Keras's (class_name, get_config()) pair; unknown classes are refused by name."""
    try:
        cls = LAYERS[class_name]
    except KeyError:
        raise CnncalcError(
            f"Layer {config.get('name')!r} has an unsupported type. Expected one of {', '.join(sorted(LAYERS))}. "
            f"Received {class_name!r}"
        ) from None
    try:
        return cls.from_config(config)
    except KeyError as e:
        raise CnncalcError(f"Layer {config.get('name')!r} ({class_name}) config is incomplete. Expected a value for {e.args[0]!r}. Received {sorted(config)}") from None
