"""`cnncalc export`: the model a workbook holds now, back to a Keras file.

The architecture comes from the hidden _cnncalc sheet and the weights from the workbook's own cells, read as
`verify` reads them (read_meta, read_back): a weight edited and saved in Excel or LibreOffice is exported as
edited. cnncalc writes numbers on the Weights sheet; a formula there is the user's, and LibreOffice computes it
first (a file saved without cached values holds no number for it).
"""

import shutil

from cnncalc.errors import CnncalcError, quoted
from cnncalc.recalc import libreoffice as recalc
from cnncalc.recalc.verify import read_back, read_meta, refuse_exercise
from cnncalc.sheets.workbook import META_SHEET, WEIGHTS_SHEET, sample_sheet_name


def export(path, output, force=False, run=None):
    """Write the model of the workbook at `path` as `output` (.keras, .weights.h5 or legacy .h5); returns the model.

    Atomic, and never over an existing file without force. `run` chooses one run of a training workbook.
    """
    from cnncalc.files import check_distinct, check_input, check_output
    from cnncalc.kerasfiles.formats import model_suffix
    from cnncalc.kerasfiles.loader import save_model

    model_suffix(output)  # a name Keras cannot read is refused before the workbook is opened
    check_input(path, "an .xlsx workbook written by cnncalc build or cnncalc example")
    check_output(output, force)
    check_distinct([output], inputs=[path])
    model, compile_config = read_workbook_model(path, run)
    save_model(model, output, force, compile_config)
    return model


def read_workbook_model(path, run=None):
    """(the model with the weights the workbook's cells hold now, its Keras compile_config or None).

    A prediction workbook (`cnncalc build`, `example`) holds one set of weights and no compile settings. A training
    workbook (`cnncalc train`) gives the weights after its last step, computed from its given cells (initial weights,
    data, hyperparameters) as its formulas compute them, and the loss and optimizer it trains with; `run` chooses
    one run of several learning rates. A practice workbook or a graded copy is refused: it is an exercise, not a model.
    """
    from cnncalc.sheets import training

    path = str(path)
    meta = read_meta(path)  # (architecture, scale, samples, ...): the format is checked first
    refuse_exercise(path)
    head, _ = recalc.read_cells(path, [META_SHEET])
    settings = training.read_settings(head.get(META_SHEET, {}), path)
    if settings is not None:
        return training_model(path, meta, settings, run)
    if run is not None:
        raise CnncalcError(f"--run chooses one run of a training workbook. Expected no --run for {quoted(path)}, a prediction "
                           f"workbook with one set of weights. Received --run {run}")
    sheets = [META_SHEET, WEIGHTS_SHEET] + [sample_sheet_name(i) for i in range(meta[2])]
    model, _ = read_back(path, given_values(path, sheets, [WEIGHTS_SHEET]), *meta)
    return model, None


def training_model(path, meta, settings, run):
    """The model after the last step of run `run` (from 1; may be None with one run) and its compile_config."""
    from cnncalc.recalc.verify import read_back_job, sheet_names
    from cnncalc.sheets import training

    runs = settings["runs"]
    if run is None and runs > 1:
        raise CnncalcError(f"{quoted(path)} holds {runs} training runs (one a learning rate). Expected --run 1 to {runs} to "
                           "choose one. Received no --run")
    run = 1 if run is None else run
    if not 1 <= run <= runs:
        raise CnncalcError(f"--run chooses one of the {runs} run(s) of {quoted(path)}. Expected 1 to {runs}. Received --run {run}")
    given = [META_SHEET, WEIGHTS_SHEET, training.DATA_SHEET, training.TRAINING_SHEET]
    masked = isinstance(settings.get("dropout"), dict)  # dropout masks are given cells on the step sheets
    sheets = sheet_names(path) if masked else given
    values = given_values(path, sheets, given[1:])
    fit = read_back_job(path, values, *meta, settings).fits()[run - 1]
    return fit.model, compile_config(fit)


def compile_config(fit):
    """Keras 3's compile_config for the loss and optimizer a run trains with (its own learning rate and settings)."""
    loss = fit.loss
    return {"optimizer": {"module": "keras.optimizers", "class_name": fit.optimizer.name,
                          "config": fit.optimizer.get_config(), "registered_name": None},
            "loss": {"module": "keras.losses", "class_name": loss.class_name, "config": loss.get_config(), "registered_name": None},
            "loss_weights": None, "metrics": None, "weighted_metrics": None, "run_eagerly": False,
            "steps_per_execution": 1, "jit_compile": False}


def given_values(path, sheets, given):
    """The cells' values of `sheets`; when a sheet of given numbers holds a formula (cnncalc writes none there, so
    it is the user's), LibreOffice computes the workbook first (a file saved without cached values has no number)."""
    values, formulas = recalc.read_cells(path, sheets)
    if any(formulas.get(sheet) for sheet in given):
        recalculated = recalc.recalculate(path)
        try:
            values, _ = recalc.read_cells(recalculated, sheets)
        finally:
            shutil.rmtree(recalculated.parent, ignore_errors=True)
    return values
