"""Keras Rescaling."""

import numpy as np

from cnncalc.sheets import formulas
from cnncalc.engine.layers.base import Layer
from cnncalc.errors import CnncalcError


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

    def backward(self, x, pre, out, d_out, saved):
        return None, d_out * self.scale.astype(x.dtype), {}

    def formula_backward(self, idx, g, x, out, w, sheet):
        return f"{g.ref(idx, sheet)}*{formulas.number(np.broadcast_to(self.scale, x.shape)[idx])}"


