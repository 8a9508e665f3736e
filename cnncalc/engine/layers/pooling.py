"""Keras pooling layers (and the chapter's sum pooling): windowed and global."""

from cnncalc.engine import ops
from cnncalc.sheets import formulas
from cnncalc.engine.layers.base import Layer, _channels_last, _padding, _pair
from cnncalc.errors import CnncalcError


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

    def backward(self, x, pre, out, d_out, saved):
        return None, ops.pool2d_backward(x, d_out, self.pool_size, self.strides, self.padding, self.mode), {}

    def formula_backward(self, idx, g, x, out, w, sheet):
        """dL/dx[idx]: the sum, over the windows holding x[idx], of what each sends back. Max: the window's gradient goes
        to its first largest cell in reading order, as pool2d_backward (the cell equals the window's max and no earlier
        cell of the window does); average: the gradient / the window's count of real cells; sum: the gradient.
        None (a constant 0) for a cell in no window."""
        r, c, ch = idx
        (top, _), (left, _) = ops.padding_amounts(x.shape[:2], self.pool_size, self.strides, self.padding)
        terms = []
        for i in _windows_holding(r, top, self.pool_size[0], self.strides[0], out.shape[0]):
            for j in _windows_holding(c, left, self.pool_size[1], self.strides[1], out.shape[1]):
                (r0, c0, _), (r1, c1, _) = self.window((i, j, ch), x.shape)
                gij = g.ref((i, j, ch), sheet)
                if self.mode == "max":
                    o = out.ref((i, j, ch), sheet)
                    earlier = ([x.span((r0, c0, ch), (r - 1, c1, ch), sheet)] if r > r0 else []) + \
                              ([x.span((r, c0, ch), (r, c - 1, ch), sheet)] if c > c0 else [])
                    test = f"{x.ref(idx, sheet)}={o}"
                    terms.append(f"IF(AND({test},MAX({','.join(earlier)})<{o}),{gij},0)" if earlier else f"IF({test},{gij},0)")
                elif self.mode == "avg":
                    terms.append(f"{gij}/{(r1 - r0 + 1) * (c1 - c0 + 1)}")
                elif self.mode == "sum":
                    terms.append(gij)
                else:
                    raise AssertionError(self.mode)
        return formulas.add(terms) if terms else None


def _windows_holding(k, pad, size, stride, n):
    """The windows along one axis (of n, each `size` long, `stride` apart, starting `pad` before cell 0) that hold
    cell k: i with i*stride - pad <= k <= i*stride - pad + size - 1."""
    first = max(0, -(-(k + pad - size + 1) // stride))
    return range(first, min(n - 1, (k + pad) // stride) + 1)


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

    def backward(self, x, pre, out, d_out, saved):
        return None, ops.global_pool2d_backward(x, d_out, self.mode), {}

    def formula_backward(self, idx, g, x, out, w, sheet):
        """Average: dL/dx = g / (H W); max: g to the channel's largest cells, shared among ties (COUNTIF), as global_pool2d_backward."""
        h, wd, _ = x.shape
        at = (0, 0, idx[2]) if self.keepdims else (idx[2],)
        gi = g.ref(at, sheet)
        if self.mode == "avg":
            return f"{gi}/{h * wd}"
        o = out.ref(at, sheet)
        return f"IF({x.ref(idx, sheet)}={o},{gi}/COUNTIF({x.span((0, 0, idx[2]), (h - 1, wd - 1, idx[2]), sheet)},{o}),0)"


class GlobalMaxPooling2D(_GlobalPooling2D):
    """Keras GlobalMaxPooling2D: the largest value of each channel, (H, W, C) -> (C,), or (1, 1, C) with keepdims."""

    mode, function = "max", "MAX"


class GlobalAveragePooling2D(_GlobalPooling2D):
    """Keras GlobalAveragePooling2D: the mean of each channel, (H, W, C) -> (C,), or (1, 1, C) with keepdims."""

    mode, function = "avg", "AVERAGE"


