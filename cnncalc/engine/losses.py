"""Keras losses in numpy: each sample's value, the batch's loss and its gradient with respect to the model's output.

Keras 3's semantics (keras/src/losses/losses.py and keras/src/backend/jax/nn.py): a cross-entropy on probabilities
divides them by their sum and clips them to [EPSILON, 1 - EPSILON] (the gradient does not pass where they are
clipped); the batch's loss is the sum of the per-sample values divided by their count ("sum_over_batch_size",
what fit minimises). Each loss is a pair of pure functions, `name(y_true, y_pred)` -> per-sample values and
`name_grad(y_true, y_pred)` -> d(value of each sample)/d(y_pred), and `Loss` reduces them over the batch.
"""

from dataclasses import dataclass, field

import numpy as np

from cnncalc.engine import ops
from cnncalc.sheets import formulas
from cnncalc.errors import CnncalcError, shown

EPSILON = 1e-7  # keras.config.epsilon()


def clip_steps(p):
    """(clipped, slope): p clipped to [EPSILON, 1 - EPSILON], and d(clipped)/dp as jax differentiates jnp.clip
    (1 inside, 1/2 exactly at a bound, 0 beyond it)."""
    lo, hi = EPSILON, 1.0 - EPSILON
    slope = np.where((p > lo) & (p < hi), 1.0, np.where((p == lo) | (p == hi), 0.5, 0.0))
    return np.clip(p, lo, hi), slope


# Each loss's steps as cell formulas for a training workbook (sheets/training.py lays them out), next to the numpy
# they equal: {step: function(cell references) -> formula text}. d_* are gradients; `batch` divides by the batch's
# sample count (the "sum_over_batch_size" reduction: the batch loss is the samples' mean), or is None ("sum").

def formula_clip(p):
    """'MIN(MAX(p,1e-07),0.9999999)', as clip_steps."""
    return f"MIN(MAX({p},{formulas.number(EPSILON)}),{formulas.number(1.0 - EPSILON)})"


def formula_clip_slope(p, g):
    """g × clip_steps's slope at p: g inside (EPSILON, 1 - EPSILON), g / 2 exactly at a bound, 0 beyond."""
    lo, hi = formulas.number(EPSILON), formulas.number(1.0 - EPSILON)
    return f"IF(AND({p}>{lo},{p}<{hi}),{g},IF(OR({p}={lo},{p}={hi}),{g}*0.5,0))"


def _per_batch(text, batch):
    return text if batch is None else f"{text}/{batch}"


# ---------------------------------------------------------------- categorical cross-entropy (one-hot labels)


def smooth_labels(y_true, label_smoothing):
    """Keras's label smoothing for categorical labels: y * (1 - s) + s / classes."""
    return y_true * (1.0 - label_smoothing) + label_smoothing / y_true.shape[-1] if label_smoothing else y_true


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """-sum(y_true * log(p)) over the classes (last axis), p = clip(y_pred / sum(y_pred)), or log_softmax(logits)."""
    t = smooth_labels(y_true, label_smoothing)
    if from_logits:
        return -(t * ops.log_softmax(y_pred)).sum(axis=-1)
    q, _ = clip_steps(y_pred / y_pred.sum(axis=-1, keepdims=True))
    return -(t * np.log(q)).sum(axis=-1)


def categorical_crossentropy_grad(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """d(each sample's value)/d(y_pred). Logits: softmax(z) * sum(t) - t. Probabilities y with s = sum(y),
    p = y / s, q = clip(p): d/dp = -t / q * clip slope, then d/dy_j = (d/dp_j - sum_i d/dp_i * p_i) / s."""
    t = smooth_labels(y_true, label_smoothing)
    if from_logits:
        return ops.softmax(y_pred) * t.sum(axis=-1, keepdims=True) - t
    s = y_pred.sum(axis=-1, keepdims=True)
    p = y_pred / s
    q, slope = clip_steps(p)
    d_p = -t / q * slope
    return (d_p - (d_p * p).sum(axis=-1, keepdims=True)) / s


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    """categorical_crossentropy with y_true given as class indices."""
    return categorical_crossentropy(one_hot(y_true, y_pred.shape[-1]), y_pred, from_logits)


def sparse_categorical_crossentropy_grad(y_true, y_pred, from_logits=False):
    return categorical_crossentropy_grad(one_hot(y_true, y_pred.shape[-1]), y_pred, from_logits)


def one_hot(indices, classes):
    """Class indices (N, ...) -> one-hot rows (N, ..., classes)."""
    return (np.asarray(indices)[..., None] == np.arange(classes)).astype(np.float64)


CATEGORICAL_CELLS = {  # on probabilities p: s = Σp, u = p / s, q = clip(u), then the sum of y ln q
    "s": lambda p_span: f"SUM({p_span})",
    "u": lambda p, s: f"{p}/{s}",
    "q": formula_clip,
    "term": lambda y, q: f"{y}*LN({q})",
    "loss": lambda term_span: f"-SUM({term_span})",
    "d_q": lambda y, q: f"-{y}/{q}",
    "d_u": formula_clip_slope,
    "sigma": lambda d_u_span, u_span: f"SUMPRODUCT({d_u_span},{u_span})",
    "d_y": lambda d_u, sigma, s, batch: _per_batch(f"({d_u}-{sigma})/{s}", batch),
}
CATEGORICAL_LOGITS_CELLS = {  # on logits z: log p = z - m - ln s (the log-softmax's steps), then the sum of y log p
    "term": lambda y, log_p: f"{y}*{log_p}",
    "loss": lambda term_span: f"-SUM({term_span})",
    "d_y": lambda e, s, y_span, y, batch: _per_batch(f"({e}/{s}*SUM({y_span})-{y})", batch),
}


# ---------------------------------------------------------------- binary cross-entropy (one probability per output)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """mean over the last axis of -(t log q + (1 - t) log(1 - q)), q = clip(y_pred); with logits
    -(t log sigmoid(z) + (1 - t) log sigmoid(-z)). Label smoothing: t = y * (1 - s) + s / 2."""
    t = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing if label_smoothing else y_true
    if from_logits:
        return (-t * _log_sigmoid(y_pred) - (1.0 - t) * _log_sigmoid(-y_pred)).mean(axis=-1)
    q, _ = clip_steps(y_pred)
    return (-(t * np.log(q) + (1.0 - t) * np.log(1.0 - q))).mean(axis=-1)


def binary_crossentropy_grad(y_true, y_pred, from_logits=False, label_smoothing=0.0):
    """Logits: ((1 - t) sigmoid(z) - t sigmoid(-z)) / D; probabilities: -(t / q - (1 - t) / (1 - q)) * clip slope / D."""
    t = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing if label_smoothing else y_true
    d = y_pred.shape[-1]
    if from_logits:
        return ((1.0 - t) * ops.sigmoid(y_pred) - t * ops.sigmoid(-y_pred)) / d
    q, slope = clip_steps(y_pred)
    return -(t / q - (1.0 - t) / (1.0 - q)) * slope / d


def _log_sigmoid(z):
    return -ops.softplus(-z)


BINARY_CELLS = {  # on probabilities p: q = clip(p), the mean of -(y ln q + (1 - y) ln(1 - q)) over the D outputs
    "q": formula_clip,
    "term": lambda y, q: f"-({y}*LN({q})+(1-{y})*LN(1-{q}))",
    "loss": lambda term_span: f"AVERAGE({term_span})",
    "d_q": lambda y, q: f"-({y}/{q}-(1-{y})/(1-{q}))",
    "d_y": lambda p, d_q, d, batch: _per_batch(f"{formula_clip_slope(p, d_q)}/{d}", batch),
}
BINARY_LOGITS_CELLS = {  # on logits z: -log sigmoid(z) = softplus(-z), -log sigmoid(-z) = softplus(z)
    "term": lambda y, z: f"{y}*({formulas.ELEMENTWISE['softplus'](f'(-{z})')})+(1-{y})*({formulas.ELEMENTWISE['softplus'](z)})",
    "loss": lambda term_span: f"AVERAGE({term_span})",
    "d_y": lambda y, z, d, batch: _per_batch(f"((1-{y})*(1/(1+EXP(-{z})))-{y}*(1/(1+EXP({z}))))/{d}", batch),
}


# ---------------------------------------------------------------- regression


def mean_squared_error(y_true, y_pred):
    """mean over the last axis of (y_true - y_pred)^2."""
    return np.square(y_true - y_pred).mean(axis=-1)


def mean_squared_error_grad(y_true, y_pred):
    return 2.0 * (y_pred - y_true) / y_pred.shape[-1]


def mean_absolute_error(y_true, y_pred):
    """mean over the last axis of |y_true - y_pred|."""
    return np.abs(y_true - y_pred).mean(axis=-1)


def mean_absolute_error_grad(y_true, y_pred):
    """sign(y_pred - y_true) / D, and -1 / D where they are equal (jax's slope of |x| at 0 is 1, as for x > 0)."""
    return np.where(y_true - y_pred >= 0, -1.0, 1.0) / y_pred.shape[-1]


MSE_CELLS = {
    "term": lambda y, p: f"({y}-{p})*({y}-{p})",
    "loss": lambda term_span: f"AVERAGE({term_span})",
    "d_y": lambda y, p, d, batch: _per_batch(f"2*({p}-{y})/{d}", batch),
}
MAE_CELLS = {
    "term": lambda y, p: f"ABS({y}-{p})",
    "loss": lambda term_span: f"AVERAGE({term_span})",
    "d_y": lambda y, p, d, batch: _per_batch(f"IF({y}-{p}>=0,-1,1)/{d}", batch),
}


# ---------------------------------------------------------------- the Loss a model is compiled with

FUNCTIONS = {  # Keras 3's name: (values, gradient, the arguments it takes besides y_true and y_pred)
    "categorical_crossentropy": (categorical_crossentropy, categorical_crossentropy_grad, ("from_logits", "label_smoothing")),
    "sparse_categorical_crossentropy": (sparse_categorical_crossentropy, sparse_categorical_crossentropy_grad, ("from_logits",)),
    "binary_crossentropy": (binary_crossentropy, binary_crossentropy_grad, ("from_logits", "label_smoothing")),
    "mean_squared_error": (mean_squared_error, mean_squared_error_grad, ()),
    "mean_absolute_error": (mean_absolute_error, mean_absolute_error_grad, ()),
}
CLASS_NAMES = {"CategoricalCrossentropy": "categorical_crossentropy", "SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
               "BinaryCrossentropy": "binary_crossentropy", "MeanSquaredError": "mean_squared_error",
               "MeanAbsoluteError": "mean_absolute_error"}
ALIASES = {"mse": "mean_squared_error", "MSE": "mean_squared_error", "mae": "mean_absolute_error", "MAE": "mean_absolute_error",
           "bce": "binary_crossentropy", "BCE": "binary_crossentropy", **CLASS_NAMES}
REDUCTIONS = ("sum_over_batch_size", "sum")


@dataclass
class LossValue:
    """One batch's loss: each sample's value (N,) (or (N, ...) for an image output), their reduction `value` (what fit
    minimises and reports), and `grad` = d(value)/d(y_pred), the gradient backpropagation starts from."""

    values: np.ndarray
    value: float
    grad: np.ndarray


@dataclass
class Loss:
    """A Keras loss by its function name, with its arguments (from_logits, label_smoothing) and reduction."""

    name: str
    from_logits: bool = False
    label_smoothing: float = 0.0
    reduction: str = "sum_over_batch_size"
    kwargs: dict = field(init=False, repr=False)

    def __post_init__(self):
        self.name = ALIASES.get(self.name, self.name)
        if self.name not in FUNCTIONS:
            raise CnncalcError(f"Unknown loss. Expected one of {', '.join(names())}. Received loss={self.name!r}")
        if not isinstance(self.from_logits, (bool, np.bool_)):
            raise CnncalcError(f"Invalid value for argument `from_logits` of loss {self.name}. Expected true or false. "
                               f"Received from_logits={self.from_logits!r}")
        ok = isinstance(self.label_smoothing, (int, float)) and not isinstance(self.label_smoothing, bool)
        if not ok or not 0 <= self.label_smoothing <= 1:
            raise CnncalcError(f"Invalid value for argument `label_smoothing` of loss {self.name}. Expected a number between 0 "
                               f"and 1. Received label_smoothing={self.label_smoothing!r}")
        if self.reduction not in REDUCTIONS:
            raise CnncalcError(f"Invalid value for argument `reduction` of loss {self.name}. Expected one of "
                               f"{', '.join(REDUCTIONS)} (what fit can minimise). Received reduction={self.reduction!r}")
        takes = FUNCTIONS[self.name][2]
        given = {"from_logits": bool(self.from_logits), "label_smoothing": float(self.label_smoothing)}
        for arg, default in (("from_logits", False), ("label_smoothing", 0.0)):
            if arg not in takes and given[arg] != default:
                raise CnncalcError(f"Loss {self.name} has no argument `{arg}`. Expected {arg}={default}. Received {arg}={given[arg]!r}")
        self.kwargs = {arg: given[arg] for arg in takes}

    def __call__(self, y_true, y_pred):
        """The batch's LossValue for labels y_true (as `labels` returns them) and the model's output y_pred."""
        values_fn, grad_fn, _ = FUNCTIONS[self.name]
        values = values_fn(y_true, y_pred, **self.kwargs)
        grad = grad_fn(y_true, y_pred, **self.kwargs)
        if self.reduction == "sum":
            return LossValue(values, float(values.sum()), grad)
        return LossValue(values, float(values.sum() / values.size), grad / values.size)

    def labels(self, y, output_shape):
        """Labels y (N, ...) as this loss takes them, for a model whose output is (N, *output_shape): the two
        categorical losses accept class indices or one-hot rows (sparse gets indices, categorical one-hot rows);
        the others an array of the output's shape, or (N,) for a one-unit output (Keras expands it to (N, 1))."""
        y, out = np.asarray(y), tuple(output_shape)
        if y.dtype.kind not in "biuf" or not np.all(np.isfinite(y)):
            raise CnncalcError(f"Invalid labels. Expected finite numbers. Received {y.dtype} values, or NaN or infinity")
        if self.name not in ("categorical_crossentropy", "sparse_categorical_crossentropy"):
            if out[-1] == 1 and y.shape[1:] == out[:-1]:
                y = y[..., None]
            if y.ndim == 0 or y.shape[1:] != out:
                raise CnncalcError(f"Invalid labels for {self.name}. Expected one label per output, shape (N, {', '.join(map(str, out))}) "
                                   f"as the model's output. Received shape {y.shape}")
            return y.astype(np.float64)
        classes = out[-1]
        if y.ndim and y.shape[1:] == out and classes > 1:  # one-hot rows
            if self.name == "categorical_crossentropy":
                return y.astype(np.float64)  # taken as they are, as Keras does (soft labels too)
            y = _indices_of_one_hot(y)
        elif y.ndim and y.shape[1:] == (*out[:-1], 1):
            y = y[..., 0]
        if y.ndim == 0 or y.shape[1:] != out[:-1] or not np.all((y == np.round(y)) & (y >= 0) & (y < classes)):
            raise CnncalcError(f"Invalid labels for {self.name}. Expected class indices 0 to {classes - 1} (one per sample) or "
                               f"one-hot rows of {classes}. Received shape {y.shape}, values from {y.min() if y.size else '-'} "
                               f"to {y.max() if y.size else '-'}")
        y = y.astype(np.int64)
        return y if self.name == "sparse_categorical_crossentropy" else one_hot(y, classes)

    @property
    def class_name(self):
        """Keras's class of this loss, as a compile_config names it (CategoricalCrossentropy for categorical_crossentropy)."""
        return next(c for c, f in CLASS_NAMES.items() if f == self.name)

    def get_config(self):
        config = {"name": self.name, "reduction": self.reduction}
        config.update(self.kwargs)
        return config


def _indices_of_one_hot(y):
    if not np.all((y == 0) | (y == 1)) or not np.all(y.sum(axis=-1) == 1):
        raise CnncalcError("Invalid labels for sparse_categorical_crossentropy. Expected class indices, or one-hot rows "
                           "(a single 1 in each). Received rows that are not one-hot")
    return y.argmax(axis=-1)


def names():
    """Every name `get` accepts, Keras 3's function names first."""
    return [*FUNCTIONS, *ALIASES]


def get(identifier):
    """A Loss from what Keras's compile accepts and saves: a name ("categorical_crossentropy", "mse",
    "CategoricalCrossentropy"), a serialized loss ({"class_name": "CategoricalCrossentropy", "config": {...}}, or
    Keras 3's {"class_name": "function", "config": "mean_squared_error"}), or a Loss."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str):
        return Loss(ALIASES.get(identifier, identifier))
    if isinstance(identifier, dict) and isinstance(identifier.get("class_name"), str):
        class_name, config = identifier["class_name"], identifier.get("config") or {}
        if class_name == "function" and isinstance(config, str):
            return Loss(ALIASES.get(config, config))
        if class_name not in CLASS_NAMES or not isinstance(config, dict):
            raise CnncalcError(f"Unknown loss. Expected one of {', '.join(names())}. Received loss={shown(repr(identifier))}")
        unknown = sorted(set(config) - {"name", "reduction", "from_logits", "label_smoothing", "axis", "dtype", "ignore_class", "fn"})
        if unknown:
            raise CnncalcError(f"Loss {class_name} has arguments cnncalc does not support: {', '.join(unknown)}. Expected from_logits, "
                               f"label_smoothing, reduction. Received {shown(repr(config))}")
        if config.get("axis", -1) != -1 or config.get("ignore_class") is not None:
            raise CnncalcError(f"Loss {class_name} uses axis={config.get('axis', -1)!r}, ignore_class={config.get('ignore_class')!r}. "
                               "Expected axis=-1 and no ignore_class. Received a loss cnncalc does not support")
        reduction = config.get("reduction", "sum_over_batch_size")
        # Without sample weights these are Keras's sum_over_batch_size ("auto" is Keras 2's name for it)
        same = {"auto": "sum_over_batch_size", "mean": "sum_over_batch_size", "mean_with_sample_weight": "sum_over_batch_size"}
        reduction = same.get(reduction, reduction)
        return Loss(CLASS_NAMES[class_name], config.get("from_logits", False), config.get("label_smoothing", 0.0), reduction)
    raise CnncalcError(f"Unknown loss. Expected one of {', '.join(names())}. Received loss={shown(repr(identifier))}")

