"""Keras-named layers, one family a file as in keras/src/layers/ (conv, pooling, core, activations, normalization,
regularization, reshaping, preprocessing). Each layer keeps its renderings side by side: `call` (numpy forward),
`formula` (the cell text of the same element) and `backward` (numpy gradients, for training).
"""

from cnncalc import guards
from cnncalc.engine.layers.activations import ELU, Activation, LeakyReLU, ReLU
from cnncalc.engine.layers.base import Layer, _flag
from cnncalc.engine.layers.conv import Conv2D
from cnncalc.engine.layers.core import Dense
from cnncalc.engine.layers.normalization import BatchNormalization
from cnncalc.engine.layers.pooling import (AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D, MaxPooling2D,
                                           SumPooling2D)
from cnncalc.engine.layers.preprocessing import Rescaling
from cnncalc.engine.layers.regularization import Dropout, SpatialDropout2D
from cnncalc.engine.layers.reshaping import Flatten, Reshape, ZeroPadding2D
from cnncalc.errors import CnncalcError

__all__ = ["Layer", "LAYERS", "SUPPORTED", "CNNCALC_ONLY", "layer_from_config", "Conv2D", "MaxPooling2D", "AveragePooling2D",
           "SumPooling2D", "GlobalMaxPooling2D", "GlobalAveragePooling2D", "Flatten", "Reshape", "ZeroPadding2D", "Dense",
           "BatchNormalization", "Rescaling", "Dropout", "SpatialDropout2D", "Activation", "ReLU", "LeakyReLU", "ELU"]

LAYERS = {cls.__name__: cls for cls in (
    Conv2D, MaxPooling2D, AveragePooling2D, GlobalMaxPooling2D, GlobalAveragePooling2D, Flatten, Reshape, ZeroPadding2D,
    Dense, BatchNormalization, Rescaling, Dropout, SpatialDropout2D, Activation, ReLU, LeakyReLU, ELU,
)}
SUPPORTED = tuple(sorted(LAYERS))
CNNCALC_ONLY = {"SumPooling2D": SumPooling2D}  # teaching layers with no Keras counterpart


def layer_from_config(class_name, config):
    """Build a layer from Keras's (class_name, get_config()) pair; unknown classes are refused by name."""
    if not isinstance(config, dict):
        raise CnncalcError(f"Invalid config of a {class_name!r} layer. Expected an object of arguments such as {{\"units\": 10}}. "
                           f"Received {type(config).__name__}")
    guards.check_name(config.get("name"), f"a {class_name} layer")
    try:
        cls = LAYERS[class_name] if class_name in LAYERS else CNNCALC_ONLY[class_name]
    except KeyError:
        raise CnncalcError(
            f"Layer {config.get('name')!r} has an unsupported type. Expected one of {', '.join(SUPPORTED)}. "
            f"Received {class_name!r}"
        ) from None
    try:
        layer = cls.from_config(config)
        layer.trainable = _flag(config, "trainable", True)  # a layer frozen in Keras stays frozen in fit
        return layer
    except KeyError as e:
        raise CnncalcError(f"Layer {config.get('name')!r} ({class_name}) config is incomplete. Expected a value for {e.args[0]!r}. Received {sorted(config)}") from None
    except CnncalcError as e:
        if str(e).startswith("Layer "):
            raise
        raise CnncalcError(f"Layer {config.get('name')!r} ({class_name}): {e}") from None
