"""Keras reshaping layers: Flatten, Reshape, ZeroPadding2D."""

import numpy as np

from cnncalc.engine import ops
from cnncalc.engine.layers.base import Layer, _channels_last, _is_int
from cnncalc.errors import CnncalcError


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

    def backward(self, x, pre, out, d_out, saved):
        return None, d_out.reshape(x.shape), {}

    def formula_backward(self, idx, g, x, out, w, sheet):
        return _gradient_of_moved(idx, g, x, sheet)


def _gradient_of_moved(idx, g, x, sheet):
    """Flatten and Reshape move numbers without changing them: dL/dx[idx] is the gradient of the element it became
    (the same row-major position)."""
    flat = int(np.ravel_multi_index(idx, x.shape))
    return g.ref(tuple(int(n) for n in np.unravel_index(flat, g.shape)), sheet)


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

    def given_cells(self, input_shape):
        """The padding: zeros written as numbers."""
        (top, bottom), (left, right) = self.padding
        return np.pad(np.zeros(input_shape, dtype=bool), ((top, bottom), (left, right), (0, 0)), constant_values=True)

    def formula(self, idx, x, w, sheet):
        """The input cell, or None (a constant zero) in the padding."""
        i, j, c = idx
        (top, _), (left, _) = self.padding
        h, wd, _ = x.shape
        inside = top <= i < top + h and left <= j < left + wd
        return x.ref((i - top, j - left, c), sheet) if inside else None

    def backward(self, x, pre, out, d_out, saved):
        return None, ops.zero_pad2d_backward(d_out, self.padding), {}

    def formula_backward(self, idx, g, x, out, w, sheet):
        """The padded gradient without its border: dL/dx[r, c] = g[r + top, c + left]."""
        (top, _), (left, _) = self.padding
        return g.ref((idx[0] + top, idx[1] + left, idx[2]), sheet)


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
        return x.ref(self.source(idx, x.shape), sheet)  # a sheet lays out any shape: (D,) as a column, (H, W, ...) as maps

    def backward(self, x, pre, out, d_out, saved):
        return None, d_out.reshape(x.shape), {}

    def formula_backward(self, idx, g, x, out, w, sheet):
        return _gradient_of_moved(idx, g, x, sheet)
