"""A Sequential model: a chain of layers with an input shape; predict, a per-layer trace, and Keras's summary."""

from dataclasses import dataclass
import math
import re
import textwrap

import numpy as np

from cnncalc.errors import CnncalcError, shown
from cnncalc.engine.layers import layer_from_config


@dataclass
class LayerTrace:
    """One layer's result for a batch: pre-activation (None when the layer has none) and output."""

    layer: object
    input_shape: tuple
    output_shape: tuple
    pre: np.ndarray | None
    out: np.ndarray


def snake_case(class_name):
    """Keras's automatic layer names: Conv2D -> conv2d, MaxPooling2D -> max_pooling2d."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


class Sequential:
    """Layers applied one after the other to inputs of `input_shape` (no batch axis)."""

    def __init__(self, layers, input_shape, name="sequential", input_layer=None):
        self.input_layer = input_layer  # a Functional model's input name: Keras lists it in the summary
        self.layers = list(layers)
        self.input_shape = tuple(int(n) for n in input_shape)
        self.name = name
        if not self.layers:
            raise CnncalcError("The model has no layers. Expected at least one layer after the input. Received none")
        if not self.input_shape or any(n <= 0 for n in self.input_shape):
            raise CnncalcError(f"Invalid input shape. Expected positive sizes such as (28, 28, 1). Received {self.input_shape}")
        counts = {}
        for layer in self.layers:  # name the unnamed the way Keras does: dense, dense_1, ...
            if not layer.name:
                base = snake_case(layer.class_name)
                n = counts.get(base, 0)
                layer.name = base if n == 0 else f"{base}_{n}"
                counts[base] = n + 1
        names = [layer.name for layer in self.layers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise CnncalcError(f"Layer names must be unique. Expected distinct names. Received {sorted(dup)} more than once")
        self.shapes = [self.input_shape]
        for layer in self.layers:
            self.shapes.append(tuple(layer.compute_output_shape(self.shapes[-1])))

    @classmethod
    def from_spec(cls, spec):
        """Build from a model spec: {"name", "input_shape", "layers": [{"class_name", "config", "weights"}]}."""
        layers = [layer_from_config(entry["class_name"], entry["config"]) for entry in spec["layers"]]
        model = cls(layers, spec["input_shape"], spec.get("name", "sequential"), spec.get("input_layer"))
        for layer, shape, entry in zip(model.layers, model.shapes, spec["layers"]):
            layer.set_weights(entry.get("weights", []), shape)
        return model

    def to_spec(self):
        """The inverse of from_spec (weights as float64 arrays)."""
        spec = {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "layers": [{"class_name": l.class_name, "config": _config(l), "weights": l.get_weights()} for l in self.layers],
        }
        if self.input_layer:
            spec["input_layer"] = self.input_layer
        return spec

    @property
    def output_shape(self):
        return self.shapes[-1]

    def check_input(self, x):
        """A batch (N, *input_shape) as an array; a single sample is given a batch axis."""
        x = np.asarray(x)
        if x.shape == self.input_shape:
            x = x[None]
        if x.shape[1:] != self.input_shape or x.shape[0] == 0:
            raise CnncalcError(
                f"Input does not fit the model. Expected shape {self.input_shape} or (batch, {', '.join(map(str, self.input_shape))}). "
                f"Received {x.shape}"
            )
        if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
            raise CnncalcError("Input holds values that are not finite numbers. Expected finite numbers. Received NaN, infinity or non-numeric data")
        return x

    def trace(self, x, dtype=np.float64):
        """Every layer's pre-activation and output for the batch x, computed in `dtype`."""
        x = self.check_input(x).astype(dtype)
        traces = []
        for layer, in_shape, out_shape in zip(self.layers, self.shapes, self.shapes[1:]):
            pre, out = layer.call(x)
            traces.append(LayerTrace(layer, in_shape, out_shape, pre, out))
            x = out
        return traces

    def predict(self, x, dtype=np.float64):
        """The model's output for the batch x, like keras Model.predict."""
        return self.trace(x, dtype)[-1].out

    def count_params(self):
        return sum(layer.count_params() for layer in self.layers)

    def summary_rows(self):
        """[(\"name (Class)\", \"(None, ...)\", params), ...] exactly as keras model.summary() prints them."""
        def shape_text(shape):
            return "(None, " + ", ".join(map(str, shape)) + ")"

        rows = [(f"{self.input_layer} (InputLayer)", shape_text(self.input_shape), 0)] if self.input_layer else []
        return rows + [(f"{layer.name} ({layer.class_name})", shape_text(shape), layer.count_params())
                       for layer, shape in zip(self.layers, self.shapes[1:])]

    def summary(self):
        """The text of keras model.summary(): a boxed table and the parameter totals.

        Names come from model files: their control and other unprintable characters are shown as escapes
        (errors.shown), so a name cannot move the cursor or reorder a terminal's text; other names print as Keras prints them.
        """
        rows = [("Layer (type)", "Output Shape", "Param #")] + [(_printable(n), s, f"{p:,}") for n, s, p in self.summary_rows()]
        w = [31, 22, 13]  # Keras's column widths; longer text wraps onto more lines, as Keras (rich) wraps it

        def line(left, mid, right, fill="━"):
            return left + mid.join(fill * (n + 2) for n in w) + right

        def cells(r, bar):
            parts = [textwrap.wrap(text, n, break_on_hyphens=False) or [""] for text, n in zip(r, w)]
            lines = []
            for k in range(max(len(p) for p in parts)):
                a, b, c = (p[k] if k < len(p) else "" for p in parts)
                lines.append(bar + bar.join((f" {a:<{w[0]}} ", f" {b:<{w[1]}} ", f" {c:>{w[2]}} ")) + bar)
            return lines

        total = self.count_params()
        out = [f'Model: "{_printable(self.name)}"', line("┏", "┳", "┓"), *cells(rows[0], "┃"), line("┡", "╇", "┩")]
        for i, r in enumerate(rows[1:]):
            out += cells(r, "│")
            out.append(line("├", "┼", "┤", "─") if i < len(rows) - 2 else line("└", "┴", "┘", "─"))
        frozen = total - sum(layer.weights[n].size for layer in self.layers for n in layer.trainable_weight_names())
        out += [f" Total params: {total:,} ({_human_bytes(total * 4)})",
                f" Trainable params: {total - frozen:,} ({_human_bytes((total - frozen) * 4)})",
                f" Non-trainable params: {frozen:,} ({_human_bytes(frozen * 4)})"]
        return "\n".join(out)


def _config(layer):
    """The layer's config, with Keras's "trainable": false when the layer is frozen."""
    return layer.get_config() if layer.trainable else {**layer.get_config(), "trainable": False}


def _printable(name):
    """A name as one line of printable text, however long: 'a\x1b[2Jb' -> 'a\\x1b[2Jb'."""
    return shown(name, limit=math.inf)


def _human_bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.2f} {unit}"
        n /= 1024
