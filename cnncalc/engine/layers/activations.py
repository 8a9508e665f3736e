"""Keras activation layers: Activation, ReLU, LeakyReLU, ELU."""

from cnncalc.sheets import formulas
from cnncalc.engine import ops
from cnncalc.engine.layers.base import _Elementwise, _activation, _float


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

    def backward(self, x, pre, out, d_out, saved):
        """d_out times the activation's derivative, or softmax's / log_softmax's vector rule."""
        return None, ops.activation_backward(self.activation, x, out, d_out), {}

    def cell_backward(self, g, x, out):
        """Element-wise activations only: softmax's and log_softmax's Σ takes a cell of its own (sheets/training.py)."""
        return formulas.activation_backward(self.activation, g, x, out)


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

    def derivative(self, x):
        return ops.relu_derivative(x, self.negative_slope, self.max_value, self.threshold)

    def cell_backward(self, g, x, out):
        return formulas.relu_backward(g, x, self.negative_slope, self.max_value, self.threshold)


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

    def derivative(self, x):
        return ops.leaky_relu_derivative(x, self.negative_slope)

    def cell_backward(self, g, x, out):
        return formulas.relu_backward(g, x, negative_slope=self.negative_slope)


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

    def derivative(self, x):
        return ops.elu_derivative(x, self.alpha)

    def cell_backward(self, g, x, out):
        """g × (1 for x > 0, alpha × exp(x) otherwise), as elu_derivative."""
        return f"{g}*IF({x}>0,1,{formulas.number(self.alpha)}*EXP({x}))"


