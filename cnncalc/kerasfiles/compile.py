"""The loss and optimizer a model file was compiled with: `compile_config` in a .keras file's config.json,
`training_config` in a legacy .h5 file's root attributes (a .weights.h5 file, or a model saved uncompiled, has none).

The file is read by kerasfiles/formats.py, as a model is: in a child process with a time limit, under the same
size guards, an HDF5 file refused when anything in it points outside it. `load_compiled_model` (kerasfiles/loader.py)
gives the model and these settings from one read; `compile_settings` reads the settings alone.
"""

from dataclasses import dataclass

from cnncalc.engine import losses, optimizers
from cnncalc.errors import CnncalcError, shown


@dataclass
class Compiled:
    """What model.compile() was given, as cnncalc's Loss and Optimizer (None where the file says nothing)."""

    loss: losses.Loss | None
    optimizer: optimizers.Optimizer | None
    source: str  # where in the file they were found, for messages and notes


def compile_settings(path):
    """The Compiled settings of a model file (loss and optimizer None when it was saved without compile)."""
    from cnncalc.kerasfiles.formats import read_compile_config

    return compiled(*read_compile_config(path))


def compiled(config, where):
    """Compiled from the settings a file holds ({"loss", "optimizer", "loss_weights"} as formats reads them, or None)."""
    if config is None:
        return Compiled(None, None, where)
    loss = config["loss"]
    if isinstance(loss, list) or (isinstance(loss, dict) and "class_name" not in loss):
        raise CnncalcError(f"The model in {where} has one loss per output. Expected a single loss (a model with one output). "
                           f"Received loss={shown(repr(loss))}")
    if config["loss_weights"] not in (None, 1, 1.0):
        raise CnncalcError(f"The model in {where} weights its loss. Expected loss_weights=None. "
                           f"Received loss_weights={shown(repr(config['loss_weights']))}")
    try:
        return Compiled(None if loss is None else losses.get(loss),
                        None if config["optimizer"] is None else optimizers.get(config["optimizer"]), where)
    except CnncalcError as e:
        raise CnncalcError(f"In {where}: {e}") from None
