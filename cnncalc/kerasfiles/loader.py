"""From files to a cnncalc model: Keras model files, and `cnncalc new` layer lists with Keras's default initializers."""

import difflib
import json
import math
import os
import re

import numpy as np

from cnncalc import guards
from cnncalc.errors import CnncalcError, quoted
from cnncalc.engine.layers import layer_from_config
from cnncalc.engine.model import Sequential


def load_model(path, config_path=None):
    """A Sequential model from a Keras file (.keras, legacy .h5, or .weights.h5 with a model.to_json() config)
    or from a live keras.Model (Sequential, or Functional as one chain), read without a file or TensorFlow.

    The config is checked (layers known, sizes sane) before any weight is read; a live model is refused
    wherever its saved file would be.
    """
    return _load(path, config_path)[0]


def load_compiled_model(path, config_path=None):
    """(the model, the compile.Compiled settings its file was saved with) from one read of the file (see load_model).

    A file saved without compile gives settings whose loss and optimizer are None; so does a live keras.Model
    (its compile settings are not read).
    """
    from cnncalc.kerasfiles.compile import compiled

    model, spec = _load(path, config_path)
    return model, compiled(spec.get("compile_config"), spec.get("compile_source", "a live keras.Model"))


def _load(path, config_path):
    """(model, the spec it was read as, with its compile settings) for load_model and load_compiled_model."""
    from cnncalc.kerasfiles.formats import read_model_file
    from cnncalc.kerasfiles.live import is_keras_model, read_live_model

    live = path if is_keras_model(path) else None
    if live is not None:
        if config_path is not None:
            raise CnncalcError("A live Keras model carries its own config. Expected no config_path with a keras.Model. "
                               f"Received config_path={config_path}")
        path = f"the Keras model {quoted(path.name)}"  # what messages call it
    elif not isinstance(path, (str, os.PathLike)):
        raise CnncalcError(f"Cannot load a model from a {type(path).__name__}. Expected a Keras model file's path "
                           f"(.keras, .h5, .weights.h5) or a keras.Model. Received {_short(path)}")

    def check(spec):
        if any(n is None for n in spec["input_shape"]):
            raise CnncalcError(
                f"{path}: the model's input size is not fixed. Expected an input shape such as (28, 28, 1). "
                f"Received {tuple(spec['input_shape'])}: rebuild the model with keras.Input(shape=(H, W, C))"
            )
        model = skeleton(spec, str(path))
        # The weights each layer expects: a file's dataset of another shape is refused before it is read.
        return [layer.weight_shapes(shape) for layer, shape in zip(model.layers, model.shapes)]

    spec = read_live_model(live, check) if live is not None else read_model_file(path, config_path, check=check)
    return _guarded(str(path), lambda: with_weights(skeleton(spec, str(path)), spec)), spec


def skeleton(spec, where="the model"):
    """The model a spec describes, without weights: layers built from their configs and every shape computed,
    refused when its weights or layer outputs would be absurdly large (cnncalc/guards.py). Nothing is allocated.

    spec: {"name", "input_shape", "layers": [{"class_name", "config"}, ...], optional "input_layer"}, e.g. a
    workbook's architecture or a model file's config.
    """
    def build():
        if not isinstance(spec, dict) or not isinstance(spec.get("layers"), list):
            raise CnncalcError(f"{where}: invalid model description. Expected an object with input_shape and a list of layers. "
                               f"Received {_short(spec)}")
        if len(spec["layers"]) > guards.MAX_LAYERS:
            raise guards.too_large(f"{where}: the number of layers", guards.MAX_LAYERS, len(spec["layers"]))
        guards.check_shape(spec.get("input_shape"), f"{where}: the input")
        name, input_layer = spec.get("name", "sequential"), spec.get("input_layer")
        for text, what in ((name, "the model's name"), (input_layer, "the input layer's name")):
            if text is not None and not isinstance(text, str):
                raise CnncalcError(f"{where}: invalid {what}. Expected a string. Received {_short(text)}")
        layers = []
        for i, entry in enumerate(spec["layers"]):
            if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) or not isinstance(entry.get("config"), dict):
                raise CnncalcError(f"{where}: layer {i + 1} is not understood. Expected an object with class_name and config. "
                                   f"Received {_short(entry)}")
            layers.append(layer_from_config(entry["class_name"], entry["config"]))
        model = Sequential(layers, spec["input_shape"], name, input_layer)
        guards.check_model_size(model, where)
        return model

    return _guarded(where, build)


def with_weights(model, spec):
    """Give a skeleton model the weights of its spec (each checked: count, shape, finite numbers)."""
    for layer, shape, entry in zip(model.layers, model.shapes, spec["layers"]):
        layer.set_weights(entry.get("weights", []), shape)
    return model


def _guarded(where, build):
    """Run build(); a failure that is not a CnncalcError (a config of the wrong types) becomes one, cause attached."""
    try:
        return build()
    except CnncalcError:
        raise
    except Exception as exc:  # e.g. a config whose values have types no check foresaw; --traceback shows where
        raise CnncalcError(f"{where}: the model description cannot be used. Expected a Keras model config of the "
                           f"layers cnncalc supports. Received values it could not use ({type(exc).__name__}: {_short(str(exc), 160)})") from exc


def _short(value, limit=80):
    text = " ".join((value if isinstance(value, str) else repr(value)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    """Accept {"class_name": C, "config": {...}}, {"Conv2D": {...}} or ["Conv2D", {...}]; return (class name, config)."""
    if isinstance(entry, dict) and "class_name" in entry:
        name, config = entry["class_name"], entry.get("config")
    elif isinstance(entry, dict) and len(entry) == 1:
        (name, config), = entry.items()
    elif isinstance(entry, list) and len(entry) in (1, 2):
        name, config = entry[0], entry[1] if len(entry) == 2 else None
    else:
        name, config = None, None
    if isinstance(name, str) and (config is None or isinstance(config, dict)):
        return _known_layer(name, i), dict(config or {})
    raise CnncalcError(f"The spec's layers[{i}] is not understood. Expected {{\"Conv2D\": {{\"filters\": 8, \"kernel_size\": 3}}}}. "
                       f"Received {_short(json.dumps(entry))}")


def _known_layer(name, i):
    """A layer class cnncalc knows; else an error naming the spec entry and the closest known name ('Conv2d' -> 'Conv2D')."""
    from cnncalc.engine.layers import CNNCALC_ONLY, SUPPORTED

    known = [*SUPPORTED, *CNNCALC_ONLY]
    if name in known:
        return name
    by_lower = {k.lower(): k for k in known}
    guess = by_lower.get(name.lower()) or next(iter(difflib.get_close_matches(name, known, n=1, cutoff=0.6)), None)
    raise CnncalcError(f"The spec's layers[{i}] has an unknown layer type. Expected one of {', '.join(known)}. "
                       f"Received {quoted(name)}" + (f": did you mean {guess!r}?" if guess else ""))


def _spec_layer(name, config, i):
    """Check one spec entry on its own, so that an error names it: "The spec's layers[2] (Dense): ..."."""
    try:
        layer_from_config(name, config)
    except CnncalcError as e:
        detail = re.sub(r"^Layer (None|'[^']*') \(\w+\):? ", "", str(e)) if config.get("name") is None else str(e)
        raise CnncalcError(f"The spec's layers[{i}] ({name}): {detail}") from None
    return {"class_name": name, "config": config}


def model_from_layer_list(spec, seed=None):
    """Build a model from a short layer list (`cnncalc new`), weights drawn with Keras's default initializers.

    The seed is `seed`, else the spec's "seed", else 0: the same spec and seed give the same weights.
    The model's size is checked from the layer list before a single weight is drawn.
    """
    if not isinstance(spec, dict) or "input_shape" not in spec or not isinstance(spec.get("layers"), list):
        raise CnncalcError('The spec is not understood. Expected {"input_shape": [28, 28, 1], "layers": [{"Conv2D": {"filters": 8, "kernel_size": 3}}, ...]}. '
                           f"Received keys {sorted(map(str, spec)) if isinstance(spec, dict) else type(spec).__name__}")
    shape = spec["input_shape"]
    if not isinstance(shape, (list, tuple)) or not shape or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        raise CnncalcError(f"Invalid input_shape. Expected a list of positive integers such as [28, 28, 1]. Received {_short(shape)}")
    seed = spec.get("seed", 0) if seed is None else seed
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise CnncalcError(f"Invalid seed. Expected a whole number >= 0. Received {_short(seed)}")
    if len(spec["layers"]) > guards.MAX_LAYERS:
        raise guards.too_large("The spec's layer list", guards.MAX_LAYERS, len(spec["layers"]), " layers")
    layers = [_spec_layer(*_layer_entry(e, i), i) for i, e in enumerate(spec["layers"])]
    model = skeleton({"name": spec.get("name", "sequential"), "input_shape": list(shape), "layers": layers}, "the spec")
    rng = np.random.default_rng(seed)
    for layer, shape in zip(model.layers, model.shapes):
        layer.set_weights([initial_weight(layer.class_name, n, s, rng) for n, s in layer.weight_shapes(shape).items()], shape)
    return model


# cnncalc's teaching names that Keras has no layer or activation for: a file holding them would not load in Keras.
NOT_IN_KERAS = ("SumPooling2D", "gelu_tanh")


def save_model(model, path, force=False, compile_config=None, suffixes=None):
    """Save as the Keras file its name asks for: .keras, legacy .h5 or .weights.h5 (weights as float32, as Keras
    stores them); atomic, never over an existing file without force. compile_config: Keras 3's, when the model has one.

    suffixes, when given, narrows the names accepted (e.g. `cnncalc new` writes no weights-only file).
    """
    from cnncalc.files import atomic_output
    from cnncalc.kerasfiles.formats import MODEL_SUFFIXES, model_suffix, write_model_file

    suffix = model_suffix(path, suffixes or MODEL_SUFFIXES)
    for layer in model.layers:
        for kind, what in (("layer", layer.class_name), ("activation", layer.activation)):
            if what in NOT_IN_KERAS:
                raise CnncalcError(f"Layer {quoted(layer.name)} ({layer.class_name}) uses the {kind} {what}, which cnncalc has for teaching "
                                   f"and Keras does not. Expected only Keras layers and activations in a Keras file. Received {kind} {what}")
    spec = model.to_spec()
    for entry, layer in zip(spec["layers"], model.layers):
        entry["weights"] = [np.asarray(w, dtype=np.float32) for w in entry["weights"]]
        entry["weight_names"] = list(layer.weights)  # Keras's names (kernel, bias, ...), for the legacy .h5 layout
    with atomic_output(path, force) as tmp:
        write_model_file(spec, tmp, suffix, compile_config)
    return path


def save_keras(model, path, force=False):
    """Save as a Keras 3 .keras file (see save_model)."""
    return save_model(model, path, force, suffixes=(".keras",))
