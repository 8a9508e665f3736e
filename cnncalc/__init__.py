"""cnncalc: a CNN forward pass computed exactly as Keras does, written out as live spreadsheet formulas."""

__version__ = "0.2.0"

import os  # noqa: E402

from cnncalc.errors import CnncalcError  # noqa: E402


def build(model, x, path, scale=None, force=False, lang="en", quiet=False):
    """Write the workbook of `model` on the inputs `x` to `path` (.xlsx); returns path.

    model: a live keras.Model, a Keras model file's path, or a cnncalc Sequential. x: an array, one sample
    (H, W, C) or a batch (N, H, W, C), or input files (.npy, .csv, .json, .png, .jpg). scale: e.g. "1/255",
    a visible formula step. Never overwrites without force. Example:

        cnncalc.build(model, x_test[:2], "book.xlsx", scale="1/255")
    """
    import numpy as np

    from cnncalc.engine.model import Sequential
    from cnncalc.files import check_output
    from cnncalc.guards import check_batch
    from cnncalc.inputs import parse_scale, read_inputs
    from cnncalc.sheets.workbook import plan_workbook
    from cnncalc.sheets.writer import write_plan

    check_output(path, force)
    parse_scale(scale)
    model = model if isinstance(model, Sequential) else load_model(model)
    files = [x] if isinstance(x, (str, os.PathLike)) else x
    if isinstance(files, (list, tuple)) and files and all(isinstance(f, (str, os.PathLike)) for f in files):
        raw = read_inputs(files, model.input_shape)
    else:
        try:
            raw = model.check_input(np.asarray(x, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise CnncalcError(f"Invalid inputs. Expected an array of numbers of shape {model.input_shape} or (batch, "
                               f"{', '.join(map(str, model.input_shape))}), or input file names. Received {type(x).__name__} ({e})") from None
    check_batch(model, len(raw))
    plan = plan_workbook(model, raw, scale, f"cnncalc worked example: {model.name}", lang=lang)
    write_plan(plan, path, force=force, quiet=quiet)
    return path


def load_model(model, config_path=None):
    """A cnncalc model (Keras-exact numpy engine) from a Keras model file or a live keras.Model.

    Files: .keras, legacy .h5, or .weights.h5 with config_path (a model.to_json() file). A live model is read
    from memory, Keras's own config and layer.get_weights(): no file, no TensorFlow. Example:

        cnncalc.load_model(model).predict(x)    # equals model.predict(x)
    """
    from cnncalc.kerasfiles.loader import load_model

    return load_model(model, config_path)


def __getattr__(name):
    # Lazy: `cnncalc --help` stays instant; numpy and friends load on first use.
    if name == "Sequential":
        from cnncalc.engine.model import Sequential
        return Sequential
    if name == "verify":
        from cnncalc.recalc.verify import verify
        return verify
    if name == "format_report":
        from cnncalc.recalc.verify import format_report
        return format_report
    if name == "export":
        from cnncalc.kerasfiles.export import export
        return export
    if name == "plan_workbook":
        from cnncalc.sheets.workbook import plan_workbook
        return plan_workbook
    if name == "write_plan":
        from cnncalc.sheets.writer import write_plan
        return write_plan
    if name == "chapter_example":
        from cnncalc.companion.examples import chapter_example
        return chapter_example
    raise AttributeError(f"module 'cnncalc' has no attribute {name!r}")
