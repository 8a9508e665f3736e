"""The cnncalc command line: one function per subcommand; main(argv) -> exit code.

Exit codes: 0 success; 1 a check found differences (verify) or answers without credit (check); 2 a usage
error or a problem with the user's files (one line on stderr: "cnncalc: error: ..."); 3 a bug in cnncalc
(one line, and --traceback shows where); 130 interrupted.
"""

import argparse
import json
import os
import sys

from cnncalc.errors import CnncalcError, quoted, shown

EXIT_OK, EXIT_DIFFERS, EXIT_ERROR, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
MESSAGE_LIMIT = 2000  # characters of one error line; a longer message is cut in the middle


def cmd_example(args):
    """Write one of the chapter's worked examples (default: the toy CNN on both samples), every step a live formula.

    `cnncalc examples` lists them.

    Example:
      cnncalc example                      # writes cnn_simple_example.xlsx
      cnncalc example conv_basic -o conv.xlsx
      cnncalc example two_filters --png maps/
    """
    from cnncalc.companion.examples import get_example

    ex = get_example(args.name)
    output = args.output or f"{ex.name}.xlsx"
    write_examples([(ex, output, args.png)], args.force, args.lang, args.window, args.quiet)
    if ex.training is not None:
        print_losses(ex.training.fits())
    elif ex.model.output_shape[-1] > 1 and len(ex.model.output_shape) == 1:
        print_predictions(ex.model.predict(ex.x), ex.labels)
    return EXIT_OK


def write_examples(jobs, force=False, lang="en", window=(0, 0), quiet=False):
    """Write worked examples, jobs [(example, workbook path, PNG folder or None), ...]; every target (workbooks
    and pictures) is checked before the first file is written, so a refusal leaves nothing behind."""
    from cnncalc.companion.pictures import feature_maps, write_feature_maps
    from cnncalc.files import check_distinct, check_folder, check_output
    from cnncalc.sheets.workbook import plan_workbook
    from cnncalc.sheets.writer import write_plan

    def plan_of(ex):
        if ex.training is not None:  # chapter_fit: every step of a fit (no feature-map pictures)
            from cnncalc.sheets.training import plan_training

            return plan_training(ex.training)
        return plan_workbook(ex.model, ex.raw, ex.scale, ex.title, ex.labels, lang, window)

    for _, output, png in jobs:  # the cheap checks, before any planning
        check_output(output, force, ".xlsx")
        if png:
            check_folder(png, f"Cannot write pictures into {quoted(png)}")
    # The pictures' names come from the plan: only jobs with pictures are planned before writing (and kept).
    plans = [plan_of(ex) if png and ex.training is None else None for ex, _, png in jobs]
    maps = [feature_maps(plan, png) if plan else [] for plan, (_, _, png) in zip(plans, jobs)]
    for path, _ in (m for job_maps in maps for m in job_maps):
        check_output(path, force)
    check_distinct([output for _, output, _ in jobs] + [path for job_maps in maps for path, _ in job_maps])
    for (ex, output, png), plan, job_maps in zip(jobs, plans, maps):
        plan = plan or plan_of(ex)
        write_plan(plan, output, force=force, quiet=quiet)
        print(f"wrote {output}")
        for path in write_feature_maps(plan, png, force, job_maps) if job_maps else []:
            print(f"wrote {path}")


def cmd_examples(args):
    """List the chapter's worked examples, or write them all with --all --out DIR.

    Example:
      cnncalc examples
      cnncalc examples --all --out workbooks --force
    """
    from tabulate import tabulate

    from cnncalc.companion.examples import CATALOGUE, SECTIONS, get_example

    if not args.all:
        rows = [(name, blurb, SECTIONS[section]) for name, (section, blurb, _) in CATALOGUE.items()]
        # fits 100 columns: the blurb and the section wrap inside their columns
        print(tabulate(rows, headers=["name", "what it shows", "chapter section"], maxcolwidths=[None, 42, 30]))
        return EXIT_OK
    from cnncalc.files import check_folder

    check_folder(args.out, f"Cannot write the examples into --out {quoted(args.out)}")
    # each example's pictures in a folder of its own: the examples' sheets and panels share names
    write_examples([(get_example(name), os.path.join(args.out, f"{name}.xlsx"), args.png and os.path.join(args.png, name))
                    for name in CATALOGUE], args.force, args.lang, quiet=args.quiet)
    return EXIT_OK


def cmd_build(args):
    """Write the worked-example workbook for your own Keras model and inputs.

    Example:
      cnncalc build model.keras --input digit.png --scale 1/255 -o digit.xlsx
      cnncalc build model.h5 --input x.npy -o book.xlsx --force
      cnncalc build model.weights.h5 --config model.json --input a.csv b.csv -o book.xlsx
    """
    from cnncalc.sheets.workbook import plan_workbook
    from cnncalc.sheets.writer import write_plan

    check_workbook_output(args)
    job = resolve(args)
    plan = plan_workbook(job.model, job.raw, job.scale, job.title, job.labels, args.lang, args.window)
    write_plan(plan, args.output, force=args.force, quiet=args.quiet)
    print(f"wrote {args.output}")
    print_predictions(job.model.predict(job.x), job.labels)
    return EXIT_OK


def cmd_train(args):
    """Write a training workbook: every step of Keras's fit as live formulas (each sample's forward pass, the loss,
    every gradient, the batch's sum, the optimizer's update), from the initial weights, inputs, labels and
    hyperparameters, which stay cells you can edit.

    Epochs and batches run as model.fit(x, y, epochs=E, batch_size=B, shuffle=False): cnncalc does not shuffle,
    every epoch takes the samples in order. Labels: .npy, .csv or .json, class indices or one-hot rows (or values,
    for mse, mae, binary_crossentropy). The loss and optimizer (with its settings) default to what the model file was
    compiled with (compile_config of a .keras file, training_config of a legacy .h5); --loss, --optimizer,
    --learning-rate and --momentum override them. Several learning rates give one run each, in one workbook, with
    one chart of their loss curves. Without MODEL: the chapter's fit (as `cnncalc example chapter_fit`).

    Example:
      cnncalc train model.keras --input x.npy --labels y.csv --epochs 3 --batch-size 2 -o fit.xlsx
      cnncalc train model.keras --input x.npy --labels y.npy --loss mse --optimizer sgd --learning-rate 0.1,0.5,1 -o rates.xlsx
      cnncalc train --epochs 5 -o chapter_fit.xlsx
      cnncalc train model.keras --input x.npy --labels y.npy --dropout-seed 7 -o drop.xlsx   # Dropout's masks as given cells
    """
    from cnncalc.sheets.training import plan_training
    from cnncalc.sheets.writer import write_plan

    check_workbook_output(args)
    job = training_job(args)
    plan = plan_training(job)
    write_plan(plan, args.output, force=args.force, quiet=args.quiet)
    print(f"wrote {args.output}: {len(plan.runs[0])} steps × {len(plan.runs)} run(s) "
          f"({job.epochs} epoch(s) of {-(-len(job.raw) // job.batch_size)} batch(es), not shuffled)")
    print_losses(job.fits())
    return EXIT_OK


def training_job(args):
    """The TrainingJob the train command's arguments describe (without a model: the chapter's fit, flags applied)."""
    from cnncalc.engine import losses, optimizers
    from cnncalc.inputs import read_labels
    from cnncalc.sheets.training import TrainingJob

    if args.model is None:
        if args.input or args.labels or args.config:
            raise CnncalcError("--input, --labels and --config need a MODEL. Expected `cnncalc train MODEL --input X --labels Y`. "
                               "Received them without a model (without one, train runs the chapter's fit)")
        from cnncalc.companion.examples import chapter_fit

        base = chapter_fit().training
        model, raw, labels, scale = base.model, base.raw, base.labels, base.scale
        compiled = (base.loss, base.optimizers[0])
        epochs, batch_size = base.epochs, base.batch_size
    else:
        if not args.labels:
            raise CnncalcError(f"No labels for {quoted(args.model)}. Expected --labels FILE (.npy, .csv or .json: class indices or "
                               "one-hot rows, one per input sample). Received none")
        from cnncalc.kerasfiles.loader import load_compiled_model

        model, settings = load_compiled_model(args.model, args.config)  # one read of the file: the model and its compile settings
        example = resolve(args, model=model)
        model, raw, scale = example.model, example.raw, example.scale
        labels = read_labels(args.labels)
        compiled = (settings.loss, settings.optimizer)
        epochs, batch_size = 1, 32  # Keras's defaults
    loss = args.loss or compiled[0]
    optimizer = args.optimizer or compiled[1]
    if loss is None or optimizer is None:
        missing = [name for name, value in (("loss", loss), ("optimizer", optimizer)) if value is None]
        raise CnncalcError(f"No {' and no '.join(missing)} for training {quoted(args.model)}. Expected "
                           f"{' and '.join('--' + m + ' NAME' for m in missing)} (losses: {', '.join(losses.FUNCTIONS)}, mse, mae; "
                           f"optimizers: {', '.join(n.lower() for n in optimizers.OPTIMIZERS)}), or a model file compiled with them. "
                           "Received neither on the command line nor in the file")
    overrides = {} if args.momentum is None else {"momentum": args.momentum}
    rates = args.learning_rate or [None]
    opts = [optimizers.get(optimizer, **overrides, **({} if lr is None else {"learning_rate": lr})) for lr in rates]
    epochs = epochs if args.epochs is None else args.epochs
    batch_size = batch_size if args.batch_size is None else args.batch_size
    for flag, value in (("--epochs", epochs), ("--batch-size", batch_size)):
        if value < 1:
            raise CnncalcError(f"Invalid value for {flag}. Expected a whole number of at least 1. Received {value}")
    dropout = "identity" if args.dropout_seed is None else args.dropout_seed
    return TrainingJob(model, raw, labels, losses.get(loss), opts, epochs, batch_size, scale, dropout=dropout)


def learning_rates(text):
    """'0.1,0.2,0.5' -> [0.1, 0.2, 0.5]: each a number > 0."""
    try:
        rates = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas such as 0.1,0.5; received {text!r}") from None
    if not rates or not all(0 < r < float("inf") for r in rates):
        raise argparse.ArgumentTypeError(f"expected learning rates > 0; received {text!r}")
    return rates


def print_losses(fits):
    """A table: one row a run, its learning rate and the batch loss at its first and last step."""
    from tabulate import tabulate

    last = len(fits[0].steps)
    rows = [(f"run {r + 1}", f"{fit.optimizer.learning_rate:g}", f"{fit.losses[0]:.7f}", f"{fit.losses[-1]:.7f}")[:4 if last > 1 else 3]
            for r, fit in enumerate(fits)]
    print(tabulate(rows, headers=["run", "learning rate", "loss at step 1", f"loss at step {last}"][:4 if last > 1 else 3], disable_numparse=True))
    for note in fits[0].notes:
        print(note)


def cmd_summary(args):
    """Print the model's layers as keras model.summary() does: names, output shapes, parameter counts.

    Example:
      cnncalc summary                      # the chapter's toy CNN
      cnncalc summary model.keras
    """
    print(resolve(args, need_inputs=False).model.summary())
    return EXIT_OK


def cmd_predict(args):
    """Run the model on its inputs and print each sample's output and predicted class.

    Example:
      cnncalc predict                      # the chapter's toy CNN on its two samples
      cnncalc predict model.keras --input digit.png --scale 1/255 --json
    """
    import numpy as np

    job = resolve(args)
    out = job.model.predict(job.x, dtype=np.float32 if args.float32 else np.float64)
    if args.json:
        flat = out.reshape(out.shape[0], -1)
        print(json.dumps({"predictions": out.tolist(), "classes": np.argmax(flat, axis=-1).tolist()}))
    else:
        print_predictions(out, job.labels)
    return EXIT_OK


def cmd_new(args):
    """Make a new Keras model from a short layer list, with Keras's default initializers and a seed.

    The file loads in Keras (keras.saving.load_model) and in cnncalc; no Keras needed to make it.
    SPEC.json: {"input_shape": [28, 28, 1], "seed": 0, "layers": [
                  {"Conv2D": {"filters": 10, "kernel_size": 3, "activation": "relu"}},
                  {"MaxPooling2D": {"pool_size": 2}}, {"Flatten": {}},
                  {"Dense": {"units": 10, "activation": "softmax"}}]}

    The output's name chooses the format: .keras, or .h5 for a legacy HDF5 model file.

    Example:
      cnncalc new spec.json -o model.keras --seed 1
      cnncalc new spec.json -o model.h5
    """
    from cnncalc.files import check_output
    from cnncalc.kerasfiles.formats import model_suffix
    from cnncalc.kerasfiles.loader import model_from_layer_list, save_model

    model_suffix(args.output, NEW_SUFFIXES)
    check_output(args.output, args.force)
    spec = read_json(args.spec)
    model = model_from_layer_list(spec, args.seed)
    save_model(model, args.output, force=args.force, suffixes=NEW_SUFFIXES)
    print(f"wrote {args.output}")
    print(model.summary())
    return EXIT_OK


NEW_SUFFIXES = (".keras", ".h5")  # `new` writes whole models: a .weights.h5 file alone has no architecture


def cmd_export(args):
    """Write the model a workbook holds back to a Keras file: its architecture, and the weights its cells hold now.

    The weights are read from the workbook's own cells, as verify reads them, so a weight you edited (and saved
    in Excel or LibreOffice) is exported as edited. The output's name chooses the format: .keras (loads with
    keras.saving.load_model), .h5 (legacy HDF5), or .weights.h5 (weights only, for model.load_weights).
    The workbook's --scale step is not part of the model: scale the inputs as the workbook does.
    Practice workbooks and graded copies are refused.

    Example:
      cnncalc export digit.xlsx -o digit.keras
      cnncalc export digit.xlsx -o digit.weights.h5 --force
    """
    from cnncalc.kerasfiles.export import export

    model = export(args.workbook, args.output, args.force, args.run)
    print(f"wrote {args.output}: model {model.name!r}, {model.count_params():,} weights read from the cells of {args.workbook}")
    return EXIT_OK


def cmd_verify(args):
    """Recalculate a cnncalc workbook in LibreOffice and compare every formula cell with the engine.

    The model and inputs are read from the workbook's own weight and input cells, so a workbook whose
    weights you edited (and saved in Excel or LibreOffice) is checked against its new weights.
    Exit 0 when every cell agrees within 1e-9 relative, 1 when any differs, 2 when it cannot run.

    Example:
      cnncalc verify cnn_simple_example.xlsx
    """
    from cnncalc.files import check_distinct, check_input, check_output
    from cnncalc.recalc.verify import format_report, verify

    check_input(args.workbook, "an .xlsx workbook written by cnncalc")
    if args.keep:
        check_output(args.keep, False, ".xlsx")
        check_distinct([args.keep], inputs=[args.workbook])
    report = verify(args.workbook, keep=args.keep, quiet=args.quiet)
    print(format_report(report))
    return EXIT_OK if report.ok else EXIT_DIFFERS


def cmd_explain(args):
    """Write out a small convolution or pooling window by window, as the chapter does.

    Example:
      cnncalc explain conv --a "1 2 3 4; 5 6 7 8; 9 10 11 12; 13 14 15 16" --b "1 2; 3 4"
      cnncalc explain conv --a "1 2 3 4; 5 6 7 8; 9 10 11 12; 13 14 15 16" --b "1 2; 3 4" --stride 2 --lang zh
      cnncalc explain pool --a "1 2 3 4; 5 6 7 8; 9 10 11 12; 13 14 15 16" --size 2 --mode avg
    """
    from cnncalc.companion.explain import explain_conv, explain_pool
    from cnncalc.inputs import parse_matrix

    a = parse_matrix(args.a)
    if args.op == "conv":
        text, _ = explain_conv(a, parse_matrix(args.b), args.stride, args.padding, args.bias, args.activation, args.lang)
    else:
        text, _ = explain_pool(a, args.size, args.stride, args.mode, args.lang)
    print(text)
    return EXIT_OK


def cmd_practice(args):
    """Write a practice workbook: the worked example's layout with the answer cells left empty for a student.

    Given cells (inputs, weights) are filled and protected (no password); answer cells are empty and
    unlocked; the Instructions sheet has a cell for the student's name. --blank chooses the steps to
    leave empty (layer names, "scaled", "prediction"; default: every computed step). --seed N draws a
    new integer input, uniform between the given input's floor(min) and ceil(max), so every student
    can get an exercise of their own; the same seed gives the same file.

    Example:
      cnncalc practice -o practice.xlsx
      cnncalc practice --blank conv2d max_pooling2d --seed 7 -o ada.xlsx
      cnncalc practice model.keras --input digit.png --scale 1/255 -o practice.xlsx
    """
    from cnncalc.classroom.practice import plan_practice
    from cnncalc.sheets.writer import write_plan

    check_workbook_output(args)
    train_only = [flag for flag, value in (("--labels", args.labels), ("--loss", args.loss), ("--optimizer", args.optimizer),
                                            ("--learning-rate", args.learning_rate), ("--momentum", args.momentum)) if value is not None]
    if args.train:
        return practice_train(args)
    if train_only:
        raise CnncalcError(f"{', '.join(train_only)} set up a training exercise. Expected them with --train. Received them without --train")
    job = resolve(args)
    blank = [name for text in args.blank or [] for name in text.split(",") if name]
    labels = None if args.seed is not None else job.labels  # a drawn input has no label
    plan = plan_practice(job.model, job.raw, job.scale, blank, args.seed, job.title, labels)
    write_plan(plan, args.output, force=args.force)
    seed = f", input drawn with seed {args.seed}" if args.seed is not None else ""
    print(f"wrote {args.output}: {len(plan.answers)} answer cells to fill ({', '.join(plan.blank)}){seed}")
    print(f"when it is filled in: cnncalc check {args.output}")
    return EXIT_OK


def practice_train(args):
    """practice --train: one step of the train command's job (one batch of every sample), its backward pass left to the student."""
    from cnncalc.classroom.practice_train import plan_practice_train
    from cnncalc.sheets.writer import write_plan

    if args.seed is not None:
        raise CnncalcError(f"--seed draws a prediction exercise's input. Expected no --seed with --train. Received --seed {args.seed}")
    args.epochs = args.batch_size = args.dropout_seed = None  # one step of one batch, as plan_practice_train runs it
    blank = [name for text in args.blank or [] for name in text.split(",") if name]
    plan = plan_practice_train(training_job(args), blank)
    write_plan(plan, args.output, force=args.force)
    print(f"wrote {args.output}: {len(plan.answers)} answer cells to fill ({', '.join(plan.blank)}), one training step")
    print(f"when it is filled in: cnncalc check {args.output}")
    return EXIT_OK


def cmd_check(args):
    """Grade filled-in practice workbooks, cell by cell: correct, wrong, missing or not a number.

    Each answer is also judged against the student's own earlier answers (carry-forward), and a wrong
    value that matches a common slip is named (bias forgotten, kernel flipped, ReLU forgotten, ...).
    A number is judged at the precision it is written (0.47 means 0.465 to 0.475), never looser than
    ±0.005; --tolerance T fixes an absolute tolerance instead. Several files grade a class: one row
    each (--csv), a file that cannot be read is reported and the rest go on; graded copies are named
    after the files (s-graded.xlsx; x-s-graded.xlsx and y-s-graded.xlsx for x/s.xlsx and y/s.xlsx).
    An exercise changed on the workbook's hidden sheet (fewer steps to compute) is reported, and graded as set.
    A formula typed in an answer cell has full precision and is judged so. A class gets a tally of its slips
    (which, how many students, in which steps); --report writes it as a workbook with a chart per step.
    Exit 0 when every answer gets credit (right, or carried forward from the student's own earlier answers),
    1 when any is wrong or missing or the exercise was changed, 2 when a file cannot be graded or copied.

    Example:
      cnncalc check ada.xlsx --graded ada-graded.xlsx
      cnncalc check ada.xlsx --tolerance 0.001 --json
      cnncalc check submissions/*.xlsx --csv grades.csv --report class.xlsx
    """
    from cnncalc.classroom.check import (check_files, format_class, format_grade, grade_dict, graded_paths, write_csv, write_graded_copies,
                                         write_report)
    from cnncalc.files import check_distinct, check_folder, check_output

    several = len(args.files) > 1
    graded = []  # each file's graded copy, in order: every output is checked before the first file is graded
    if args.graded and several:
        check_folder(args.graded, f"Cannot write the graded copies into --graded {quoted(args.graded)}")
        graded = graded_paths(args.files, args.graded)  # no two alike: x/s.xlsx and y/s.xlsx -> x-s-graded.xlsx, y-s-graded.xlsx
    elif args.graded:
        graded = [args.graded]
    for out in graded:
        check_output(out, args.force, ".xlsx")
    if args.csv:
        check_output(args.csv, args.force, ".csv")
    if args.report:
        check_output(args.report, args.force, ".xlsx")
    check_distinct(graded + [path for path in (args.csv, args.report) if path], inputs=args.files)
    results = check_files(args.files, args.tolerance)
    if not several and results[0].grade is None:
        raise CnncalcError(results[0].error)
    write_graded_copies(results, graded, force=args.force)  # a copy that cannot be written is that file's error; the rest go on
    for r in results:
        if r.error:
            print(f"cnncalc: error: {one_line(r.error)}", file=sys.stderr)
    if args.json:
        data = [grade_dict(r.grade) if r.grade else {"file": r.path, "error": r.error} for r in results]
        print(json.dumps(data if several else data[0], indent=1).replace("\x7f", "\\u007f"))  # DEL too, as JSON escapes the other controls
    elif several:
        print(format_class(results))
    else:
        print(format_grade(results[0].grade))
    if args.graded and not args.json:
        print(f"wrote the graded {'copies into' if several else 'copy'} {args.graded}")
    if args.csv:
        write_csv(results, args.csv, force=args.force)
        if not args.json:
            print(f"wrote {args.csv}")
    if args.report:
        write_report(results, args.report, force=args.force)
        if not args.json:
            print(f"wrote the class report {args.report}")
    return max(r.exit_code for r in results)


def cell_index(text):
    """'1,2' -> (1, 2): an output cell, counted from 0."""
    try:
        i, j = (int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ROW,COL such as 1,2; received {text!r}") from None
    return i, j


def seed_number(text):
    """--seed: a whole number >= 0 (numpy's generators take no negative seed)."""
    try:
        seed = int(text)
    except ValueError:
        seed = -1
    if seed < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 such as 7; received {quoted(text)}")
    return seed


def read_json(path):
    """The JSON a `cnncalc new` spec file holds (at most guards.MAX_JSON_BYTES)."""
    from cnncalc.files import read_input
    from cnncalc.guards import MAX_JSON_BYTES

    text = read_input(path, "a JSON layer list (see cnncalc new --help)", MAX_JSON_BYTES)
    try:
        return json.loads(text.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CnncalcError(f"{quoted(path)} is not valid JSON. Expected a JSON object. Received {shown(e)}") from None
    except RecursionError:  # lists nested thousands deep
        raise CnncalcError(f"{quoted(path)} nests its lists or objects too deeply. Expected a JSON object such as a layer list") from None


def check_workbook_output(args):
    """`-o BOOK.xlsx` of build and practice: an .xlsx name (never a model's), not one of the command's input files."""
    from cnncalc.files import check_distinct, check_output

    check_output(args.output, args.force, ".xlsx")
    given = [args.model, args.config, *(args.input or [])]
    check_distinct([args.output], inputs=[path for path in given if path])


def resolve(args, need_inputs=True, model=None):
    """The model and inputs named on the command line; without a model, the chapter's toy CNN and its samples.
    model: the model of args.model, when the caller has read it already."""
    from cnncalc.companion.examples import Example, chapter_example
    from cnncalc.files import check_input
    from cnncalc.inputs import SUPPORTED, parse_scale, read_inputs

    model_path = getattr(args, "model", None)
    inputs = getattr(args, "input", None)
    scale = getattr(args, "scale", None)
    # every file named is checked before any is read: a pipe or a device is refused, never opened
    if model_path is not None:
        check_input(model_path, "a Keras model file (.keras, .h5, or .weights.h5 with --config)")
    if getattr(args, "config", None):
        check_input(args.config, "the model's architecture as JSON (model.to_json()) for --config")
    for path in inputs or []:
        check_input(path, f"an input file ({SUPPORTED})")
    if model_path is None:
        if getattr(args, "config", None):
            raise CnncalcError("--config needs a model file. Expected MODEL.weights.h5 --config MODEL.json. Received --config alone")
        job = chapter_example()
        if inputs:
            job.raw, job.labels = read_inputs(inputs, job.model.input_shape, getattr(args, "resize", False)), None
            job.scale = scale
        elif scale is not None:
            job.scale = scale
        parse_scale(job.scale)
        return job
    from cnncalc.kerasfiles.loader import load_model

    if model is None:
        model = load_model(model_path, getattr(args, "config", None))
    if not inputs:
        if need_inputs:
            raise CnncalcError(f"No input for {quoted(model_path)}. Expected --input FILE (.npy, .csv, .json, .png or .jpg) of shape {model.input_shape}. Received none")
        return Example(str(model_path), str(model_path), model, None, scale)
    parse_scale(scale)
    raw = read_inputs(inputs, model.input_shape, getattr(args, "resize", False))
    from cnncalc.guards import check_batch

    check_batch(model, len(raw))  # every layer's output for every sample must fit in memory
    return Example(str(model_path), f"cnncalc worked example: {model_path}", model, raw, scale)


def print_predictions(out, labels=None):
    """A table: one row a sample, its outputs (probabilities after a softmax) and the predicted class."""
    import numpy as np
    from tabulate import tabulate

    out = out.reshape(out.shape[0], -1)
    probabilities = bool(np.all(out >= 0) and np.allclose(out.sum(axis=1), 1))
    rows = []
    for n, p in enumerate(out):
        row = [f"Sample {n + 1}", *(f"{v:.7f}" for v in p), int(p.argmax())]
        if labels is not None:
            row.append(labels[n])
        rows.append(row)
    headers = ["sample", *((f"p(class {j})" if probabilities else f"output {j}") for j in range(out.shape[1])), "predicted class"]
    if labels is not None:
        headers.append("label")
    print(tabulate(rows, headers=headers, disable_numparse=True))


class Parser(argparse.ArgumentParser):
    """argparse, with a command-line mistake reported as every other error is: one line `cnncalc: error: ...`, exit 2."""

    def error(self, message):
        self.exit(EXIT_ERROR, f"cnncalc: error: {one_line(message)} (see: {self.prog} --help)\n")


def one_line(message):
    """An error message as one terminal line: control characters and line breaks escaped, a long one cut."""
    return shown(message, MESSAGE_LIMIT)


def build_parser():
    from cnncalc import __version__

    parser = Parser(
        prog="cnncalc",
        description="A spreadsheet-verifiable reference calculator for small convolutional networks.",
        epilog="Outputs: missing folders are made; an existing file is never overwritten without --force.\n\n"
               "Exit codes:\n"
               "  0    ok\n"
               "  1    differences found (verify), or wrong or missing answers (check)\n"
               "  2    a problem with the input or the command line: one line, cnncalc: error: ...\n"
               "  3    a bug in cnncalc: rerun with --traceback (before the command) and report it\n"
               "  130  interrupted",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show the full Python traceback on errors (for bug reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, func, help):
        p = sub.add_parser(name, help=help, description=func.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    p = add("example", cmd_example, "write one of the chapter's worked examples (default: the toy CNN)")
    p.add_argument("name", nargs="?", default="cnn_simple_example", help="which example (see `cnncalc examples`; default %(default)s)")
    p.add_argument("-o", "--output", help="the workbook to write, BOOK.xlsx (default: NAME.xlsx; missing folders are made)")
    p.add_argument("--force", action="store_true", help="overwrite the file if it exists")
    p.add_argument("--png", metavar="DIR", help="also write every feature map as a PNG image into DIR (made if missing)")
    p.add_argument("--lang", choices=["en", "zh"], default="en", help="labels of the Steps sheet: English or Chinese")
    p.add_argument("--window", type=cell_index, default=(0, 0), metavar="ROW,COL",
                   help="frame the input window of this output cell of the first convolution (default 0,0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (it shows only on a terminal, for jobs over a second)")

    p = add("examples", cmd_examples, "list the chapter's worked examples, or write them all")
    p.add_argument("--all", action="store_true", help="write every example")
    p.add_argument("--out", default=".", help="folder for --all (default: the current folder; made if missing)")
    p.add_argument("--force", action="store_true", help="overwrite files that exist")
    p.add_argument("--png", metavar="DIR", help="also write every feature map as a PNG image, into DIR/NAME/ for each example")
    p.add_argument("--lang", choices=["en", "zh"], default="en", help="labels of the Steps sheet: English or Chinese")
    p.add_argument("--quiet", action="store_true", help="no progress bar (it shows only on a terminal, for jobs over a second)")

    def model_args(p, inputs=True, workbook=True):
        p.add_argument("model", nargs="?", help="a Keras model file: .keras, .h5, or .weights.h5 with --config (default: the chapter's toy CNN)")
        p.add_argument("--config", metavar="JSON", help="the architecture (model.to_json()) for a .weights.h5 file")
        if inputs:
            p.add_argument("--input", nargs="+", metavar="FILE", help="input files: .npy, .csv, .json, .png, .jpg")
            p.add_argument("--scale", metavar="S", help="multiply inputs by S first, e.g. 1/255" + (" (a formula step in the workbook)" if workbook else ""))
            p.add_argument("--resize", action="store_true", help="resize images to the model's input size")

    p = add("build", cmd_build, "write the workbook for a Keras model and inputs")
    model_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar (it shows only on a terminal, for jobs over a second)")
    p.add_argument("-o", "--output", required=True, help="the workbook to write, BOOK.xlsx (missing folders are made)")
    p.add_argument("--force", action="store_true", help="overwrite the file if it exists")
    p.add_argument("--lang", choices=["en", "zh"], default="en", help="labels of the Steps sheet: English or Chinese")
    p.add_argument("--window", type=cell_index, default=(0, 0), metavar="ROW,COL",
                   help="frame the input window of this output cell of the first convolution (default 0,0)")

    p = add("summary", cmd_summary, "print the model summary as Keras does")
    model_args(p, inputs=False)

    p = add("predict", cmd_predict, "print the model's predictions")
    model_args(p, workbook=False)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--float32", action="store_true", help="compute in float32, as Keras does (default float64)")

    p = add("new", cmd_new, "make a new Keras model file from a short layer list")
    p.add_argument("spec", help="a JSON layer list (see the description)")
    p.add_argument("-o", "--output", required=True, help="the model file to write: .keras, or .h5 (legacy HDF5)")
    p.add_argument("--seed", type=seed_number, help="random seed for the initial weights (default: the spec's seed, else 0)")
    p.add_argument("--force", action="store_true", help="overwrite the file if it exists")

    p = add("export", cmd_export, "write the model a workbook holds (its cells' weights) back to a Keras file")
    p.add_argument("workbook", help="a workbook written by cnncalc build or cnncalc example")
    p.add_argument("-o", "--output", required=True, help="the model file to write: .keras, .h5 (legacy HDF5) or .weights.h5")
    p.add_argument("--force", action="store_true", help="overwrite the file if it exists")
    p.add_argument("--run", type=int, metavar="N", help="for a training workbook with several runs: which run to export")

    p = add("explain", cmd_explain, "write out a small convolution or pooling step by step")
    ops = p.add_subparsers(dest="op", metavar="OP", required=True)
    conv = ops.add_parser("conv", help="convolve matrix A with kernel B", description=cmd_explain.__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    conv.add_argument("--a", required=True, help='the input matrix, rows separated by ";", e.g. "1 2 3; 4 5 6; 7 8 9"')
    conv.add_argument("--b", required=True, help='the kernel, e.g. "1 2; 3 4"')
    conv.add_argument("--stride", type=int, default=1, help="stride (default 1)")
    conv.add_argument("--padding", choices=["valid", "same"], default="valid", help="Keras padding (default valid)")
    conv.add_argument("--bias", type=float, help="a bias added to each output")
    conv.add_argument("--activation", choices=["relu", "linear"], help="apply ReLU to the result")
    pool = ops.add_parser("pool", help="pool matrix A", description=cmd_explain.__doc__,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    pool.add_argument("--a", required=True, help='the input matrix, rows separated by ";"')
    pool.add_argument("--size", type=int, default=2, help="window size (default 2)")
    pool.add_argument("--stride", type=int, help="stride (default: the window size, as Keras)")
    pool.add_argument("--mode", choices=["max", "avg", "sum"], default="max", help="max, avg or sum (default max)")
    for q in (conv, pool):
        q.add_argument("--lang", choices=["en", "zh"], default="en", help="labels in English or Chinese (the chapter's language)")
        q.set_defaults(func=cmd_explain)

    p = add("train", cmd_train, "write a training workbook: every step of fit as live formulas (not shuffled)")
    model_args(p)
    p.add_argument("--labels", metavar="FILE", help="labels: .npy, .csv or .json; class indices or one-hot rows, one per sample")
    p.add_argument("--loss", metavar="NAME", help="e.g. categorical_crossentropy, sparse_categorical_crossentropy, binary_crossentropy, mse, mae "
                                                 "(default: the model file's compile settings)")
    p.add_argument("--optimizer", metavar="NAME", help="sgd, adam, rmsprop or adagrad (default: the model file's compile settings)")
    p.add_argument("--learning-rate", type=learning_rates, metavar="LR[,LR...]", help="one run per learning rate, e.g. 0.1,0.2,0.5")
    p.add_argument("--momentum", type=float, metavar="M", help="momentum of sgd or rmsprop")
    p.add_argument("--epochs", type=int, metavar="E", help="epochs (default 1, as Keras)")
    p.add_argument("--batch-size", type=int, metavar="B", help="samples a step (default 32, as Keras); batches in order, never shuffled")
    p.add_argument("--dropout-seed", type=seed_number, metavar="N", help="Dropout drops units by masks drawn with this seed, shown as "
                   "given 0/1 cells on each step sheet (default: Dropout drops nothing, with a note)")
    p.add_argument("-o", "--output", required=True, help="the workbook to write, BOOK.xlsx (missing folders are made)")
    p.add_argument("--force", action="store_true", help="overwrite the file if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar (it shows only on a terminal, for jobs over a second)")

    p = add("verify", cmd_verify, "recalculate a workbook in LibreOffice and compare with the engine")
    p.add_argument("workbook", help="a workbook written by cnncalc")
    p.add_argument("--keep", metavar="COPY.xlsx", help="also save LibreOffice's recalculated copy here (missing folders are made)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (it shows only on a terminal, for jobs over a second)")

    p = add("practice", cmd_practice, "write a practice workbook with the answer cells left empty")
    model_args(p)
    p.add_argument("-o", "--output", required=True, help="the practice workbook to write, P.xlsx (missing folders are made)")
    p.add_argument("--blank", nargs="+", metavar="STEP", help="the steps to leave empty: layer names, scaled, prediction (default: all)")
    p.add_argument("--seed", type=seed_number, help="draw a new integer input with this seed, a whole number >= 0 (one exercise per student)")
    p.add_argument("--train", action="store_true", help="one training step to compute by hand (backprop): the gradients and the update "
                   "of one batch of every sample; steps: loss, layer names, shares, sum, update")
    p.add_argument("--labels", metavar="FILE", help="--train: labels (.npy, .csv or .json), as for cnncalc train")
    p.add_argument("--loss", metavar="NAME", help="--train: the loss (default: the model file's compile settings)")
    p.add_argument("--optimizer", metavar="NAME", help="--train: sgd, adam, rmsprop or adagrad (default: the model file's compile settings)")
    p.add_argument("--learning-rate", type=learning_rates, metavar="LR", help="--train: the learning rate")
    p.add_argument("--momentum", type=float, metavar="M", help="--train: momentum of sgd or rmsprop")
    p.add_argument("--force", action="store_true", help="overwrite the file if it exists")

    p = add("check", cmd_check, "grade filled-in practice workbooks, cell by cell")
    p.add_argument("files", nargs="+", metavar="FILLED.xlsx", help="one practice workbook, or a whole class's")
    p.add_argument("--tolerance", type=float, metavar="T", help="a fixed absolute tolerance (default: the precision each number is written to)")
    p.add_argument("--graded", metavar="OUT", help="write a graded copy, OUT.xlsx (with several files: a folder for the copies); missing folders are made")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--csv", metavar="GRADES.csv", help="write one row a file: name, score, each step's marks, slips (missing folders are made)")
    p.add_argument("--report", metavar="CLASS.xlsx", help="write the class report: the table, the slips tally, a chart per step (missing folders are made)")
    p.add_argument("--force", action="store_true", help="overwrite the graded copy, CSV or report if it exists")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_ERROR
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("cnncalc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as e:
        if args.traceback:
            raise
        code, message = explain_failure(e, args.command)
        print(f"cnncalc: {'error' if code == EXIT_ERROR else 'internal error'}: {one_line(message)}", file=sys.stderr)
        return code


def explain_failure(e, command):
    """(exit code, message) for an exception that ended a command: the user's problem (2), or a bug in cnncalc (3).

    A bug never exits 1, the code of verify's and check's "differences found".
    """
    if isinstance(e, CnncalcError):
        return EXIT_ERROR, str(e)
    if isinstance(e, OSError) and e.filename is not None:  # the system refused a path: a name too long, a loop of links
        return EXIT_ERROR, f"Cannot use {quoted(e.filename)}: {e.strerror or e}. Expected a path the system can read or write"
    if isinstance(e, OSError):  # the system, not cnncalc: a full disk, an I/O error
        return EXIT_ERROR, f"The system refused: {e.strerror or e}. Expected a disk with free space that reads and writes"
    if isinstance(e, MemoryError):
        return EXIT_ERROR, ("Not enough memory. Expected a model and inputs that fit in this computer's memory. "
                            "Received more than it could hold: try fewer samples or a smaller model")
    return EXIT_BUG, (f"{type(e).__name__}: {e} -- a bug in cnncalc, not in your files; "
                      f"rerun as `cnncalc --traceback {command} ...` and report what it prints")


if __name__ == "__main__":
    sys.exit(main())
