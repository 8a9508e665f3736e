"""From files to a cnncalc model: Keras model files, and `cnncalc new` layer lists with Keras's default initializers."""

import json
import math

import numpy as np

from cnncalc.errors import CnncalcError
from cnncalc.layers import layer_from_config
from cnncalc.model import Sequential


def load_model(path, config_path=None):
    """A Sequential model from a Keras file: .keras, legacy .h5, or .weights.h5 with a model.to_json() config."""
    from cnncalc.keras_io import read_model_file

    spec = read_model_file(path, config_path)
    if any(n is None for n in spec["input_shape"]):
        raise CnncalcError(
            f"{path}: the model's input size is not fixed. Expected an input shape such as (28, 28, 1). "
            f"Received {tuple(spec['input_shape'])}: rebuild the model with keras.Input(shape=(H, W, C))"
        )
    return Sequential.from_spec(spec)


def glorot_uniform(shape, rng):
    """Keras's default kernel initializer: U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out))."""
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    limit = math.sqrt(6 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def initial_weight(layer_class, wname, shape, rng):
    """Keras's defaults: glorot_uniform kernels, zero biases and betas, unit gammas and variances."""
    if wname == "kernel":
        return glorot_uniform(shape, rng)
    elif wname in ("bias", "beta", "moving_mean"):
        return np.zeros(shape)
    elif wname in ("gamma", "moving_variance"):
        return np.ones(shape)
    raise CnncalcError(f"No default initializer for {layer_class}/{wname}. Expected kernel, bias, gamma, beta, moving_mean or moving_variance")


def _layer_entry(entry, i):
    """Accept {"class_name": C, "config": {...}}, {"Conv2D": {...}} or ["Conv2D", {...}]."""
    if isinstance(entry, dict) and "class_name" in entry:
        return entry["class_name"], dict(entry.get("config") or {})
    if isinstance(entry, dict) and len(entry) == 1:
        (name, config), = entry.items()
        return name, dict(config or {})
    if isinstance(entry, list) and len(entry) in (1, 2) and isinstance(entry[0], str):
        return entry[0], dict(entry[1] if len(entry) == 2 else {})
    raise CnncalcError(f"Layer {i + 1} of the spec is not understood. Expected {{\"Conv2D\": {{\"filters\": 8, \"kernel_size\": 3}}}}. Received {json.dumps(entry)[:80]}")


def model_from_layer_list(spec, seed=None):
    """Build a model from a short layer list (`cnncalc new`), weights drawn with Keras's default initializers.

    The seed is `seed`, else the spec's "seed", else 0: the same spec and seed give the same weights.
    """
    if not isinstance(spec, dict) or "input_shape" not in spec or not isinstance(spec.get("layers"), list):
        raise CnncalcError('The spec is not understood. Expected {"input_shape": [28, 28, 1], "layers": [{"Conv2D": {"filters": 8, "kernel_size": 3}}, ...]}. '
                           f"Received keys {sorted(spec) if isinstance(spec, dict) else type(spec).__name__}")
    layers = [layer_from_config(*_layer_entry(e, i)) for i, e in enumerate(spec["layers"])]
    try:
        input_shape = tuple(int(n) for n in spec["input_shape"])
    except (TypeError, ValueError):
        raise CnncalcError(f"Invalid input_shape. Expected a list of positive integers such as [28, 28, 1]. Received {spec['input_shape']!r}") from None
    model = Sequential(layers, input_shape, spec.get("name", "sequential"))
    rng = np.random.default_rng(spec.get("seed", 0) if seed is None else seed)
    for layer, shape in zip(model.layers, model.shapes):
        layer.set_weights([initial_weight(layer.class_name, n, s, rng) for n, s in layer.weight_shapes(shape).items()], shape)
    return model


def save_keras(model, path, force=False):
    """Save as a Keras 3 .keras file (weights as float32, as Keras stores them)."""
    from cnncalc.files import atomic_output
    from cnncalc.keras_io import write_keras_file

    spec = model.to_spec()
    for layer in spec["layers"]:
        layer["weights"] = [np.asarray(w, dtype=np.float32) for w in layer["weights"]]
    with atomic_output(path, force) as tmp:
        write_keras_file(spec, tmp)
    return path
