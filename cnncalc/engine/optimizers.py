"""Keras optimizers in numpy: SGD, Adam, RMSprop and Adagrad, with Keras 3's names, defaults and update rules
(keras/src/optimizers/). One step runs as Keras's BaseOptimizer.apply does:

  1. clip the gradients, if asked: clipnorm (each gradient to an L2 norm of at most clipnorm), global_clipnorm
     (all of them together) or clipvalue (each element to [-clipvalue, clipvalue]);
  2. weight decay, if asked: w = w - w * weight_decay * learning_rate;
  3. the optimizer's own `update` of each weight and its slots (Keras's update_step), with t = iterations + 1;
  4. iterations = iterations + 1.

The state is plain data, `OptimizerState(iterations, slots)`, with slots {(layer name, weight name): {slot: array}}
named as Keras names its optimizer variables (momentum, velocity, ...); `apply` returns a new one.
"""

from dataclasses import dataclass
import inspect
import math

import numpy as np

from cnncalc.errors import CnncalcError, shown


@dataclass
class OptimizerState:
    """Keras's optimizer.iterations and the optimizer's variables for each trained weight."""

    iterations: int
    slots: dict

    def copy(self):
        return OptimizerState(self.iterations, {key: {name: a.copy() for name, a in s.items()} for key, s in self.slots.items()})


class Optimizer:
    """Base: the learning rate and Keras's common arguments; a subclass names its slots and writes `update`."""

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None, global_clipnorm=None):
        self.learning_rate = _number(learning_rate, "learning_rate", minimum=0)
        self.weight_decay = _maybe(weight_decay, "weight_decay")
        self.clipnorm, self.clipvalue = _maybe(clipnorm, "clipnorm"), _maybe(clipvalue, "clipvalue")
        self.global_clipnorm = _maybe(global_clipnorm, "global_clipnorm")
        given = [n for n in ("clipnorm", "clipvalue", "global_clipnorm") if getattr(self, n) is not None]
        if len(given) > 1:
            raise CnncalcError(f"Invalid arguments for optimizer {type(self).__name__}. Expected at most one of clipnorm, clipvalue "
                               f"and global_clipnorm (as Keras). Received {', '.join(f'{n}={getattr(self, n)}' for n in given)}")

    @property
    def name(self):
        return type(self).__name__

    def __repr__(self):
        return f"{self.name}({', '.join(f'{k}={v!r}' for k, v in self.get_config().items() if v is not None)})"

    def slot_names(self):
        """Names of the variables the optimizer keeps for each weight, as Keras names them."""
        return ()

    def initial_slot(self, name, weight):
        return np.zeros_like(weight)

    def init_state(self, weights):
        """The state before the first step, for weights {key: array}."""
        return OptimizerState(0, {key: {n: self.initial_slot(n, w) for n in self.slot_names()} for key, w in weights.items()})

    def clip(self, grads):
        """The gradients {key: array} after Keras's clipping (none unless clipnorm, global_clipnorm or clipvalue is set)."""
        if self.clipnorm:
            return {key: _clip_by_norm(g, self.clipnorm) for key, g in grads.items()}
        elif self.global_clipnorm:
            norm = math.sqrt(sum(float(np.sum(np.square(g))) for g in grads.values()))
            scale = self.global_clipnorm * min(1 / norm if norm else math.inf, 1 / self.global_clipnorm)
            return {key: g * scale for key, g in grads.items()}
        elif self.clipvalue:
            return {key: np.clip(g, -self.clipvalue, self.clipvalue) for key, g in grads.items()}
        else:
            return dict(grads)

    def apply(self, state, weights, grads):
        """One step: (new weights, new state, the gradients as used after clipping); inputs are not changed."""
        if set(grads) != set(weights) or set(weights) != set(state.slots):
            raise CnncalcError(f"Gradients, weights and optimizer state do not match. Expected the same weights. "
                               f"Received {sorted(grads)}, {sorted(weights)}, {sorted(state.slots)}")
        grads = self.clip(grads)
        t = state.iterations + 1
        new_weights, new_slots = {}, {}
        for key, w in weights.items():
            if self.weight_decay:
                w = w - w * self.weight_decay * self.learning_rate
            new_weights[key], new_slots[key] = self.update(w, grads[key], dict(state.slots[key]), t)
        return new_weights, OptimizerState(t, new_slots), grads

    def update(self, w, g, slots, t):
        """Keras's update_step for one weight: (new weight, new slots); t counts steps from 1."""
        raise NotImplementedError

    # The cell formulas of a training workbook (sheets/training.py), next to the numpy they equal. References are
    # cell texts: w the weight, g its batch gradient, prev {slot: the slot's cell before this step, None before the
    # first (its initial value)}, ref the cells of hyperparameters() and of formula_scalars(); "{slot}" in a
    # returned text stands for the slot's new cell.

    def hyperparameters(self):
        """The numbers a training workbook gives as cells a user can edit (one column per run), in order."""
        return ("learning_rate",)

    def formula_scalars(self, t):
        """[(key, label, formula(ref) or None for a given number, value)] that step t computes once for all weights."""
        return []

    def formula_update(self, w, g, prev, ref):
        """({slot: formula}, formula of the updated weight) for one element, the arithmetic of update."""
        raise NotImplementedError

    def get_config(self):
        return {"learning_rate": self.learning_rate, "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue}


class SGD(Optimizer):
    """Keras SGD: w -= lr * g; with momentum, m = momentum * m - lr * g and w += m (nesterov: w += momentum * m - lr * g)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **common):
        super().__init__(learning_rate, **common)
        self.momentum = _number(momentum, "momentum", minimum=0, maximum=1)
        self.nesterov = _bool(nesterov, "nesterov")

    def slot_names(self):
        return ("momentum",) if self.momentum != 0 else ()

    def update(self, w, g, slots, t):
        lr = self.learning_rate
        if self.momentum == 0:
            return w - g * lr, slots
        m = slots["momentum"] * self.momentum - g * lr
        step = m * self.momentum - g * lr if self.nesterov else m
        return w + step, {"momentum": m}

    def hyperparameters(self):
        return ("learning_rate", "momentum") if self.momentum != 0 else ("learning_rate",)

    def formula_update(self, w, g, prev, ref):
        lr = ref["learning_rate"]
        if self.momentum == 0:
            return {}, f"{w}-{g}*{lr}"
        mu, m = ref["momentum"], prev["momentum"]
        slots = {"momentum": f"-{g}*{lr}" if m is None else f"{m}*{mu}-{g}*{lr}"}  # m starts at 0
        return slots, f"{w}+({{momentum}}*{mu}-{g}*{lr})" if self.nesterov else f"{w}+{{momentum}}"

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Keras Adam: m += (g - m)(1 - beta_1); v += (g^2 - v)(1 - beta_2); w -= m * alpha / (sqrt(v) + epsilon),
    with the bias correction folded into the learning rate: alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t).
    amsgrad: v_hat = max(v_hat, v) takes v's place in the denominator."""

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, amsgrad=False, **common):
        super().__init__(learning_rate, **common)
        self.beta_1, self.beta_2 = _number(beta_1, "beta_1", 0, 1), _number(beta_2, "beta_2", 0, 1)
        self.epsilon, self.amsgrad = _number(epsilon, "epsilon", minimum=0), _bool(amsgrad, "amsgrad")

    def slot_names(self):
        return ("momentum", "velocity", "velocity_hat") if self.amsgrad else ("momentum", "velocity")

    def alpha(self, t):
        """The step size of step t: lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)."""
        return self.learning_rate * math.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)

    def update(self, w, g, slots, t):
        m = slots["momentum"] + (g - slots["momentum"]) * (1 - self.beta_1)
        v = slots["velocity"] + (np.square(g) - slots["velocity"]) * (1 - self.beta_2)
        new = {"momentum": m, "velocity": v}
        if self.amsgrad:
            v = new["velocity_hat"] = np.maximum(slots["velocity_hat"], v)
        return w - m * self.alpha(t) / (np.sqrt(v) + self.epsilon), new

    def hyperparameters(self):
        return ("learning_rate", "beta_1", "beta_2", "epsilon")

    def formula_scalars(self, t):
        return [("t", "t = this step's number (Keras: iterations + 1)", None, t),
                ("beta_1_power", "β1^t", lambda ref: f"{ref['beta_1']}^{ref['t']}", self.beta_1 ** t),
                ("beta_2_power", "β2^t", lambda ref: f"{ref['beta_2']}^{ref['t']}", self.beta_2 ** t),
                ("alpha", "α = lr · √(1 − β2^t) / (1 − β1^t)",
                 lambda ref: f"{ref['learning_rate']}*SQRT(1-{ref['beta_2_power']})/(1-{ref['beta_1_power']})", self.alpha(t))]

    def formula_update(self, w, g, prev, ref):
        b1, b2, m, v = ref["beta_1"], ref["beta_2"], prev["momentum"], prev["velocity"]
        slots = {"momentum": f"{g}*(1-{b1})" if m is None else f"{m}+({g}-{m})*(1-{b1})",  # m and v start at 0
                 "velocity": f"{g}*{g}*(1-{b2})" if v is None else f"{v}+({g}*{g}-{v})*(1-{b2})"}
        denominator = "{velocity}"
        if self.amsgrad:
            vh = prev["velocity_hat"]
            slots["velocity_hat"] = "MAX(0,{velocity})" if vh is None else f"MAX({vh},{{velocity}})"
            denominator = "{velocity_hat}"
        return slots, f"{w}-{{momentum}}*{ref['alpha']}/(SQRT({denominator})+{ref['epsilon']})"

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon, "amsgrad": self.amsgrad}


class RMSprop(Optimizer):
    """Keras RMSprop: velocity = rho * velocity + (1 - rho) g^2; w -= lr * g / sqrt(velocity + epsilon).
    centered: average_gradient = rho * average_gradient + (1 - rho) g, and the denominator is
    sqrt(velocity - average_gradient^2 + epsilon). momentum > 0: momentum = momentum * momentum_slot + increment."""

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7, centered=False, **common):
        super().__init__(learning_rate, **common)
        self.rho, self.momentum = _number(rho, "rho", 0, 1), _number(momentum, "momentum", minimum=0)
        self.epsilon, self.centered = _number(epsilon, "epsilon", minimum=0), _bool(centered, "centered")

    def slot_names(self):
        return ("velocity",) + (("momentum",) if self.momentum > 0 else ()) + (("average_gradient",) if self.centered else ())

    def update(self, w, g, slots, t):
        rho = self.rho
        new = {"velocity": rho * slots["velocity"] + (1 - rho) * np.square(g)}
        if self.centered:
            new["average_gradient"] = rho * slots["average_gradient"] + (1 - rho) * g
            denominator = new["velocity"] - np.square(new["average_gradient"]) + self.epsilon
        else:
            denominator = new["velocity"] + self.epsilon
        increment = self.learning_rate * g / np.sqrt(denominator)
        if self.momentum > 0:
            new["momentum"] = self.momentum * slots["momentum"] + increment
            return w - new["momentum"], new
        return w - increment, new

    def hyperparameters(self):
        return ("learning_rate", "rho") + (("momentum",) if self.momentum > 0 else ()) + ("epsilon",)

    def formula_update(self, w, g, prev, ref):
        rho, v = ref["rho"], prev["velocity"]
        slots = {"velocity": f"(1-{rho})*({g}*{g})" if v is None else f"{rho}*{v}+(1-{rho})*({g}*{g})"}  # slots start at 0
        if self.centered:
            a = prev["average_gradient"]
            slots["average_gradient"] = f"(1-{rho})*{g}" if a is None else f"{rho}*{a}+(1-{rho})*{g}"
            denominator = f"{{velocity}}-{{average_gradient}}*{{average_gradient}}+{ref['epsilon']}"
        else:
            denominator = f"{{velocity}}+{ref['epsilon']}"
        increment = f"{ref['learning_rate']}*{g}/SQRT({denominator})"
        if self.momentum > 0:
            mom = prev["momentum"]
            slots["momentum"] = increment if mom is None else f"{ref['momentum']}*{mom}+{increment}"
            return slots, f"{w}-{{momentum}}"
        return slots, f"{w}-{increment}"

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum, "epsilon": self.epsilon, "centered": self.centered}


class Adagrad(Optimizer):
    """Keras Adagrad: accumulator += g^2 (it starts at initial_accumulator_value); w -= lr * g / sqrt(accumulator + epsilon)."""

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7, **common):
        super().__init__(learning_rate, **common)
        self.initial_accumulator_value = _number(initial_accumulator_value, "initial_accumulator_value", minimum=0)
        self.epsilon = _number(epsilon, "epsilon", minimum=0)

    def slot_names(self):
        return ("accumulator",)

    def initial_slot(self, name, weight):
        return np.full_like(weight, self.initial_accumulator_value)

    def update(self, w, g, slots, t):
        accumulator = slots["accumulator"] + np.square(g)
        return w - self.learning_rate * g / np.sqrt(accumulator + self.epsilon), {"accumulator": accumulator}

    def hyperparameters(self):
        return ("learning_rate", "initial_accumulator_value", "epsilon")

    def formula_update(self, w, g, prev, ref):
        acc = prev["accumulator"] or ref["initial_accumulator_value"]
        return {"accumulator": f"{acc}+{g}*{g}"}, f"{w}-{ref['learning_rate']}*{g}/SQRT({{accumulator}}+{ref['epsilon']})"

    def get_config(self):
        return {**super().get_config(), "initial_accumulator_value": self.initial_accumulator_value, "epsilon": self.epsilon}


OPTIMIZERS = {cls.__name__: cls for cls in (SGD, Adam, RMSprop, Adagrad)}
COMMON = ("learning_rate", "weight_decay", "clipnorm", "clipvalue", "global_clipnorm")
# Keys of a saved optimizer config that do not change the arithmetic, and features cnncalc does not reproduce
# (accepted only when off: Keras 3's EMA, loss scaling, gradient accumulation; Keras 2's learning-rate decay)
IGNORED = ("name", "is_legacy_optimizer", "jit_compile", "ema_momentum", "ema_overwrite_frequency", "mesh")
OFF = ("use_ema", "loss_scale_factor", "gradient_accumulation_steps", "decay")


def get(identifier, **overrides):
    """An Optimizer from what Keras's compile accepts and saves: a name ("adam", "SGD"), a serialized optimizer
    ({"class_name": "Adam", "config": {...}}, as in Keras 3's compile_config or tf.keras's training_config), or an
    Optimizer; `overrides` (e.g. learning_rate=0.1) replace values of its config."""
    if isinstance(identifier, Optimizer):
        class_name, config = identifier.name, identifier.get_config()
    elif isinstance(identifier, str):
        class_name, config = identifier, {}
    elif isinstance(identifier, dict) and isinstance(identifier.get("class_name"), str) and isinstance(identifier.get("config", {}), dict):
        class_name, config = identifier["class_name"], dict(identifier.get("config", {}))
    else:
        raise CnncalcError(f"Unknown optimizer. Expected one of {', '.join(OPTIMIZERS)} (by name or as Keras saves it). "
                           f"Received optimizer={shown(repr(identifier))}")
    class_name = class_name.removeprefix("Custom>")  # how tf.keras 2.11+ named its optimizers in .h5 files
    cls = next((c for name, c in OPTIMIZERS.items() if class_name in (name, name.lower())), None)  # "Adam" or "adam"
    if cls is None:
        raise CnncalcError(f"Unsupported optimizer. Expected one of {', '.join(OPTIMIZERS)}. Received {shown(repr(class_name))}")
    if "lr" in config:  # Keras 2's name of learning_rate
        config.setdefault("learning_rate", config.pop("lr"))
    config.update(overrides)
    for key in IGNORED:
        config.pop(key, None)
    for key in OFF:
        value = config.pop(key, None)
        if (value is not None) if key == "loss_scale_factor" else bool(value):
            raise CnncalcError(f"Optimizer {cls.__name__} uses {key}={shown(repr(value))}. Expected it off: cnncalc does not "
                               f"reproduce {key}. Received an optimizer cnncalc cannot follow step by step")
    if isinstance(config.get("learning_rate"), dict):
        raise CnncalcError(f"Optimizer {cls.__name__} uses a learning-rate schedule "
                           f"({shown(repr(config['learning_rate'].get('class_name')))}). Expected a constant learning_rate. "
                           "Received a schedule, which cnncalc does not reproduce")
    known = [*inspect.signature(cls).parameters][:-1] + list(COMMON)  # the class's own arguments, then **common
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise CnncalcError(f"Optimizer {cls.__name__} has arguments cnncalc does not know: {shown(', '.join(map(str, unknown)))}. "
                           f"Expected some of {', '.join(dict.fromkeys(known))}. Received {shown(repr(config))}")
    return cls(**config)


def _clip_by_norm(g, clipnorm):
    """Keras's _clip_by_norm: g * clipnorm / max(||g||, clipnorm)."""
    l2sum = float(np.sum(np.square(g)))
    l2norm = math.sqrt(l2sum) if l2sum > 0 else l2sum
    return g * clipnorm / max(l2norm, clipnorm)


def _number(value, arg, minimum=None, maximum=None):
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = "" if minimum is None else f" >= {minimum}" if maximum is None else f" between {minimum} and {maximum}"
        raise CnncalcError(f"Invalid value for argument `{arg}`. Expected a number{bounds}. Received {arg}={shown(repr(value))}")
    return float(value)


def _maybe(value, arg):
    return None if value is None else _number(value, arg, minimum=0)


def _bool(value, arg):
    if not isinstance(value, (bool, np.bool_)):
        raise CnncalcError(f"Invalid value for argument `{arg}`. Expected true or false. Received {arg}={shown(repr(value))}")
    return bool(value)
