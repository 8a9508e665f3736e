"""Live Keras models: a keras.Model in memory read as a model file is read, with no file and no import of Keras.

The config is what Keras itself saves (`model.to_json()`, the config.json of a .keras file) and goes through
the same parser as a file's, so a live model is refused exactly where its file would be (Lambda layers, custom
classes, branches, nested models). The weights come from `layer.get_weights()`, in the order Keras saves them.
"""

import numpy as np

from cnncalc.errors import CnncalcError, quoted, shown

# Where Keras's model classes live: Keras 3 (keras.src.models...) and tf.keras 2 (tf_keras.src...).
_KERAS_PACKAGES = ("keras", "tf_keras")


def is_keras_model(obj):
    """True when obj is a keras.Model, judged by the modules of its classes: Keras is never imported to ask."""
    return any(cls.__name__ in ("Model", "Sequential", "Functional") and cls.__module__.split(".")[0] in _KERAS_PACKAGES
               for cls in type(obj).__mro__)


def read_live_model(model, check=None):
    """The model spec of a live keras.Model: {"name", "input_shape", "layers": [{"class_name", "config", "weights"}]}.

    check, when given, is called with the spec without weights before any weight is read (as read_model_file does).
    """
    from cnncalc.kerasfiles.formats import layer_name, parse_json, parse_model_config

    where = f"the Keras model {quoted(getattr(model, 'name', type(model).__name__))}"
    if getattr(model, "built", True) is False:
        raise CnncalcError(f"{where} is not built: it has no input shape and no weights yet. Expected a built model. Received an "
                           "unbuilt one: start it with keras.Input(shape=(H, W, C)), or call it on data once")
    try:
        text = model.to_json()
    except Exception as exc:  # a subclassed model without get_config(), an unbuilt layer, ...
        raise CnncalcError(f"Cannot read the config of {where}. Expected a Sequential or Functional model that Keras can save. "
                           f"Received {type(model).__name__} whose to_json() fails ({type(exc).__name__}: {shown(exc, 160)})") from exc
    spec, entries = parse_model_config(parse_json(text, f"the config of {where}"))
    if check is not None:
        check(spec)
    layers = {layer.name: layer for layer in model.layers}
    for layer, entry in zip(spec["layers"], entries):
        keras_layer = layers.get(layer_name(entry))
        layer["weights"] = [np.array(w) for w in keras_layer.get_weights()] if keras_layer is not None else []
    return spec
