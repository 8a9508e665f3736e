"""Keras-named layers: each holds its config and weights and knows two renderings of itself,
`call` (numpy, through cnncalc.engine.ops) and `formula` (the cell text that computes the same element).

Shapes here never carry the batch axis: an image is (H, W, C), a vector (D,).
`formula(idx, x, w, sheet)` returns the text for element `idx` of the layer's pre-activation output
(its output when it has no activation step), given where its input `x` and its weights `w`
(name -> Placement) sit, written from `sheet`; None means a constant (ZeroPadding2D's zeros).
"""

import numpy as np

from cnncalc import guards
from cnncalc.sheets import formulas
from cnncalc.engine import ops
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


def _float(value, arg, minimum=None):
    """A finite number (bools refused), at least `minimum` when given."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and np.isfinite(value)
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
        if config.get("groups", 1) != 1 or isinstance(config.get("groups"), bool):
            raise CnncalcError(f"Layer {config.get('name')!r} (Conv2D) uses groups={config['groups']}. Expected groups=1. Received a grouped convolution, which cnncalc does not support")
        return cls(config["filters"], config["kernel_size"], config.get("strides", 1), config.get("padding", "valid"),
                   config.get("dilation_rate", 1), config.get("activation"), _flag(config, "use_bias", True), config.get("name"))

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


class SumPooling2D(_Pooling2D):
    """The sum of each window: the chapter names sum pooling beside max and average. Not a Keras layer
    (cnncalc builds it for the worked example; no Keras file holds one)."""

    mode, function = "sum", "SUM"


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


class _GlobalPooling2D(Layer):
    mode = None
    function = None

    def __init__(self, keepdims=False, name=None):
        super().__init__(name)
        if not isinstance(keepdims, bool):
            raise CnncalcError(f"Invalid value for argument `keepdims`. Expected True or False. Received keepdims={keepdims!r}")
        self.keepdims = keepdims

    @classmethod
    def from_config(cls, config):
        _channels_last(config, cls.__name__)
        return cls(config.get("keepdims", False), config.get("name"))

    def get_config(self):
        return {"name": self.name, "keepdims": self.keepdims}

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise CnncalcError(f"Layer {self.name!r} ({self.class_name}) needs an image input. Expected shape (height, width, channels). Received {tuple(input_shape)}")
        return (1, 1, input_shape[2]) if self.keepdims else (input_shape[2],)

    def call(self, x):
        return None, ops.global_pool2d(x, self.mode, self.keepdims)

    def formula(self, idx, x, w, sheet):
        """The channel's whole grid: 'AVERAGE(B4:E7)'."""
        h, wd, _ = x.shape
        c = idx[-1]
        return f"{self.function}({x.span((0, 0, c), (h - 1, wd - 1, c), sheet)})"


class GlobalMaxPooling2D(_GlobalPooling2D):
    """Keras GlobalMaxPooling2D: the largest value of each channel, (H, W, C) -> (C,), or (1, 1, C) with keepdims."""

    mode, function = "max", "MAX"


class GlobalAveragePooling2D(_GlobalPooling2D):
    """Keras GlobalAveragePooling2D: the mean of each channel, (H, W, C) -> (C,), or (1, 1, C) with keepdims."""

    mode, function = "avg", "AVERAGE"


class _Elementwise(Layer):
    """Base of layers that map each element on its own (output shape = input shape): apply() in numpy, cell() as text."""

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def call(self, x):
        return None, self.apply(x)

    def formula(self, idx, x, w, sheet):
        return self.cell(x.ref(idx, sheet))


class Dropout(_Elementwise):
    """Keras Dropout: the identity at inference (it only drops units while training)."""

    def __init__(self, rate, name=None):
        super().__init__(name)
        self.rate = _float(rate, "rate", minimum=0)
        if self.rate > 1:
            raise CnncalcError(f"Invalid value for argument `rate`. Expected a number between 0 and 1. Received rate={rate!r}")

    @classmethod
    def from_config(cls, config):
        return cls(config["rate"], config.get("name"))

    def get_config(self):
        return {"name": self.name, "rate": self.rate}

    def apply(self, x):
        return x

    def cell(self, x):
        return x


class SpatialDropout2D(Dropout):
    """Keras SpatialDropout2D: the identity at inference (it only drops whole channels while training)."""

    @classmethod
    def from_config(cls, config):
        _channels_last(config, "SpatialDropout2D")
        return cls(config["rate"], config.get("name"))

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise CnncalcError(f"Layer {self.name!r} (SpatialDropout2D) needs an image input. Expected shape (height, width, channels). Received {tuple(input_shape)}")
        return tuple(input_shape)


class Activation(_Elementwise):
    """Keras Activation: applies a named activation; softmax and log_softmax work over the last axis."""

    def __init__(self, activation, name=None):
        super().__init__(name)
        self.activation = _activation(activation)

    @classmethod
    def from_config(cls, config):
        return cls(config["activation"], config.get("name"))

    def get_config(self):
        return {"name": self.name, "activation": self.activation}

    def apply(self, x):
        return ops.activation(self.activation)(x)

    def cell(self, x):
        """Raises for softmax and log_softmax: those are vector steps (see formulas.softmax_* and formulas.log_softmax)."""
        return formulas.activation(self.activation, x)


class ReLU(_Elementwise):
    """Keras ReLU: x above threshold (capped at max_value), negative_slope * (x - threshold) at or below it."""

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, name=None):
        super().__init__(name)
        self.max_value = None if max_value is None else _float(max_value, "max_value", minimum=0)
        self.negative_slope = _float(negative_slope, "negative_slope", minimum=0)
        self.threshold = _float(threshold, "threshold", minimum=0)

    @classmethod
    def from_config(cls, config):
        return cls(config.get("max_value"), config.get("negative_slope", 0.0), config.get("threshold", 0.0), config.get("name"))

    def get_config(self):
        return {"name": self.name, "max_value": self.max_value, "negative_slope": self.negative_slope, "threshold": self.threshold}

    def apply(self, x):
        return ops.relu(x, self.negative_slope, self.max_value, self.threshold)

    def cell(self, x):
        return formulas.relu(x, self.negative_slope, self.max_value, self.threshold)


class LeakyReLU(_Elementwise):
    """Keras LeakyReLU: x for x >= 0, negative_slope * x below (default slope 0.3; Keras 2 called it `alpha`)."""

    def __init__(self, negative_slope=0.3, name=None):
        super().__init__(name)
        self.negative_slope = _float(negative_slope, "negative_slope", minimum=0)

    @classmethod
    def from_config(cls, config):
        return cls(config.get("negative_slope", config.get("alpha", 0.3)), config.get("name"))

    def get_config(self):
        return {"name": self.name, "negative_slope": self.negative_slope}

    def apply(self, x):
        return ops.leaky_relu(x, self.negative_slope)

    def cell(self, x):
        return formulas.relu(x, negative_slope=self.negative_slope)


class ELU(_Elementwise):
    """Keras ELU: x for x > 0, alpha * (exp(x) - 1) otherwise."""

    def __init__(self, alpha=1.0, name=None):
        super().__init__(name)
        self.alpha = _float(alpha, "alpha")

    @classmethod
    def from_config(cls, config):
        return cls(config.get("alpha", 1.0), config.get("name"))

    def get_config(self):
        return {"name": self.name, "alpha": self.alpha}

    def apply(self, x):
        return ops.elu(x, self.alpha)

    def cell(self, x):
        return formulas.elu(x, self.alpha)


def _constant(value, arg):
    """Rescaling's scale or offset: a number, a list, or Keras's {"class_name": "__numpy__"} array -> float64 array."""
    if isinstance(value, dict) and value.get("class_name") == "__numpy__":
        value = value.get("config", {}).get("value")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.array(np.nan)
    if not np.all(np.isfinite(arr)) or arr.size == 0:
        raise CnncalcError(f"Invalid value for argument `{arg}`. Expected a finite number (or one per channel). Received {arg}={value!r}")
    return arr


class Rescaling(Layer):
    """Keras Rescaling: x * scale + offset (scale and offset are numbers, or arrays that broadcast, e.g. one per channel)."""

    def __init__(self, scale, offset=0.0, name=None):
        super().__init__(name)
        self.scale = _constant(scale, "scale")
        self.offset = _constant(offset, "offset")

    @classmethod
    def from_config(cls, config):
        return cls(config["scale"], config.get("offset", 0.0), config.get("name"))

    def get_config(self):
        return {"name": self.name, "scale": self.scale.tolist(), "offset": self.offset.tolist()}

    def compute_output_shape(self, input_shape):
        try:
            fits = np.broadcast_shapes(self.scale.shape, self.offset.shape, tuple(input_shape)) == tuple(input_shape)
        except ValueError:
            fits = False
        if not fits:
            raise CnncalcError(
                f"Layer {self.name!r} (Rescaling) has a scale or offset that does not fit its input. Expected shapes that broadcast to "
                f"{tuple(input_shape)}. Received scale {self.scale.shape}, offset {self.offset.shape}"
            )
        return tuple(input_shape)

    def call(self, x):
        return None, x * self.scale.astype(x.dtype) + self.offset.astype(x.dtype)

    def formula(self, idx, x, w, sheet):
        scale = np.broadcast_to(self.scale, x.shape)[idx]
        offset = np.broadcast_to(self.offset, x.shape)[idx]
        return formulas.rescale(x.ref(idx, sheet), scale, offset)


def _padding2d(value):
    """ZeroPadding2D's padding: 1, (1, 2) or ((top, bottom), (left, right)) -> ((top, bottom), (left, right))."""
    def pair(v):
        return (v, v) if _is_int(v) else tuple(v) if isinstance(v, (list, tuple)) else ()

    pads = pair(value)
    pads = tuple(pair(p) for p in pads) if len(pads) == 2 else ()
    if len(pads) != 2 or not all(len(p) == 2 and all(_is_int(n) and n >= 0 for n in p) for p in pads):
        raise CnncalcError(
            "Invalid value for argument `padding`. Expected an int, a tuple of 2 ints (height, width) or "
            f"((top, bottom), (left, right)), all >= 0. Received padding={value!r}"
        )
    return tuple(tuple(int(n) for n in p) for p in pads)


class ZeroPadding2D(Layer):
    """Keras ZeroPadding2D: zeros around each channel's grid, (H, W, C) -> (top + H + bottom, left + W + right, C)."""

    def __init__(self, padding=(1, 1), name=None):
        super().__init__(name)
        self.padding = _padding2d(padding)

    @classmethod
    def from_config(cls, config):
        _channels_last(config, "ZeroPadding2D")
        return cls(config.get("padding", 1), config.get("name"))

    def get_config(self):
        return {"name": self.name, "padding": [list(p) for p in self.padding]}

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise CnncalcError(f"Layer {self.name!r} (ZeroPadding2D) needs an image input. Expected shape (height, width, channels). Received {tuple(input_shape)}")
        (top, bottom), (left, right) = self.padding
        return (top + input_shape[0] + bottom, left + input_shape[1] + right, input_shape[2])

    def call(self, x):
        return None, ops.zero_pad2d(x, self.padding)

    def formula(self, idx, x, w, sheet):
        """The input cell, or None (a constant zero) in the padding."""
        i, j, c = idx
        (top, _), (left, _) = self.padding
        h, wd, _ = x.shape
        inside = top <= i < top + h and left <= j < left + wd
        return x.ref((i - top, j - left, c), sheet) if inside else None


class Reshape(Layer):
    """Keras Reshape: the same elements in row-major order, in target_shape (one -1 is inferred)."""

    def __init__(self, target_shape, name=None):
        super().__init__(name)
        shape = tuple(target_shape) if isinstance(target_shape, (list, tuple)) else ()
        if not shape or not all(_is_int(n) and (n > 0 or n == -1) for n in shape) or shape.count(-1) > 1:
            raise CnncalcError(f"Invalid value for argument `target_shape`. Expected a tuple of positive ints, at most one of them -1. Received target_shape={target_shape!r}")
        self.target_shape = tuple(int(n) for n in shape)

    @classmethod
    def from_config(cls, config):
        return cls(config["target_shape"], config.get("name"))

    def get_config(self):
        return {"name": self.name, "target_shape": list(self.target_shape)}

    def compute_output_shape(self, input_shape):
        return ops.reshape_output_shape(input_shape, self.target_shape)

    def call(self, x):
        return None, x.reshape((x.shape[0], *self.compute_output_shape(x.shape[1:])))

    def source(self, idx, input_shape):
        """The input index that element idx of the output comes from (row-major order on both sides)."""
        flat = np.ravel_multi_index(idx, self.compute_output_shape(input_shape))
        return tuple(int(n) for n in np.unravel_index(flat, input_shape))

    def formula(self, idx, x, w, sheet):
        shape = self.compute_output_shape(x.shape)
        if len(shape) not in (1, 3):
            raise CnncalcError(
                f"Layer {self.name!r} (Reshape) outputs shape {shape}, which a sheet cannot lay out. "
                f"Expected a target shape (features,) or (height, width, channels). Received target_shape={self.target_shape}"
            )
        return x.ref(self.source(idx, x.shape), sheet)


class BatchNormalization(Layer):
    """Keras BatchNormalization at inference, over the channels (last axis):
    out[..., c] = (x[..., c] - moving_mean[c]) / sqrt(moving_variance[c] + epsilon) * gamma[c] + beta[c].
    """

    weight_names = ("gamma", "beta", "moving_mean", "moving_variance")
    non_trainable_weights = ("moving_mean", "moving_variance")

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, name=None):
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

    @classmethod
    def from_config(cls, config):
        if config.get("renorm"):
            raise CnncalcError(f"Layer {config.get('name')!r} (BatchNormalization) uses renorm=True. Expected renorm=False. Received a batch renormalization layer, which cnncalc does not support")
        return cls(config.get("axis", -1), config.get("epsilon", 1e-3), _flag(config, "center", True), _flag(config, "scale", True), config.get("name"))

    def get_config(self):
        return {"name": self.name, "axis": self.axis, "epsilon": self.epsilon, "center": self.center, "scale": self.scale}

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


LAYERS = {cls.__name__: cls for cls in (
    Conv2D, MaxPooling2D, AveragePooling2D, GlobalMaxPooling2D, GlobalAveragePooling2D, Flatten, Reshape, ZeroPadding2D,
    Dense, BatchNormalization, Rescaling, Dropout, SpatialDropout2D, Activation, ReLU, LeakyReLU, ELU,
)}
SUPPORTED = tuple(sorted(LAYERS))
CNNCALC_ONLY = {"SumPooling2D": SumPooling2D}  # teaching layers with no Keras counterpart


def layer_from_config(class_name, config):
    """Build a layer from Keras's (class_name, get_config()) pair; unknown classes are refused by name."""
    if not isinstance(config, dict):
        raise CnncalcError(f"Invalid config of a {class_name!r} layer. Expected an object of arguments such as {{\"units\": 10}}. "
                           f"Received {type(config).__name__}")
    guards.check_name(config.get("name"), f"a {class_name} layer")
    try:
        cls = LAYERS[class_name] if class_name in LAYERS else CNNCALC_ONLY[class_name]
    except KeyError:
        raise CnncalcError(
            f"Layer {config.get('name')!r} has an unsupported type. Expected one of {', '.join(SUPPORTED)}. "
            f"Received {class_name!r}"
        ) from None
    try:
        return cls.from_config(config)
    except KeyError as e:
        raise CnncalcError(f"Layer {config.get('name')!r} ({class_name}) config is incomplete. Expected a value for {e.args[0]!r}. Received {sorted(config)}") from None
    except CnncalcError as e:
        if str(e).startswith("Layer "):
            raise
        raise CnncalcError(f"Layer {config.get('name')!r} ({class_name}): {e}") from None
