"""The cnncalc command line: one function per subcommand; main(argv) -> exit code.

Exit codes: 0 success; 1 a check found differences (verify); 2 a usage error or a problem with
the user's files (one line on stderr: "cnncalc: error: ..."); 130 interrupted.
"""

import argparse
import json
import os
import sys

from cnncalc.errors import CnncalcError

EXIT_OK, EXIT_DIFFERS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


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
    write_example(ex, output, args.force, args.png, args.lang, args.window, args.quiet)
    print(f"wrote {output}")
    if ex.model.output_shape[-1] > 1 and len(ex.model.output_shape) == 1:
        print_predictions(ex.model.predict(ex.x), ex.labels)
    return EXIT_OK


def write_example(ex, output, force=False, png=None, lang="en", window=(0, 0), quiet=False):
    from cnncalc.files import check_output
    from cnncalc.sheets.workbook import plan_workbook
    from cnncalc.sheets.writer import write_plan

    check_output(output, force)
    plan = plan_workbook(ex.model, ex.raw, ex.scale, ex.title, ex.labels, lang, window)
    write_plan(plan, output, force=force, quiet=quiet)
    if png:
        from cnncalc.companion.pictures import write_feature_maps

        for path in write_feature_maps(plan, png):
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
        print(tabulate(rows, headers=["name", "what it shows", "chapter section"]))
        return EXIT_OK
    import os

    if not os.path.isdir(args.out):
        raise CnncalcError(f"Cannot write the examples: folder {args.out} does not exist. Expected an existing folder. Received --out {args.out}")
    for name in CATALOGUE:
        path = os.path.join(args.out, f"{name}.xlsx")
        write_example(get_example(name), path, args.force, args.png, args.lang, quiet=args.quiet)
        print(f"wrote {path}")
    return EXIT_OK


def cmd_build(args):
    """Write the worked-example workbook for your own Keras model and inputs.

    Example:
      cnncalc build model.keras --input digit.png --scale 1/255 -o digit.xlsx
      cnncalc build model.h5 --input x.npy -o book.xlsx --force
      cnncalc build model.weights.h5 --config model.json --input a.csv b.csv -o book.xlsx
    """
    from cnncalc.files import check_output
    from cnncalc.sheets.workbook import plan_workbook
    from cnncalc.sheets.writer import write_plan

    check_output(args.output, args.force)
    job = resolve(args)
    plan = plan_workbook(job.model, job.raw, job.scale, job.title, job.labels, args.lang, args.window)
    write_plan(plan, args.output, force=args.force, quiet=args.quiet)
    print(f"wrote {args.output}")
    print_predictions(job.model.predict(job.x), job.labels)
    return EXIT_OK


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

    Example:
      cnncalc new spec.json -o model.keras --seed 1
    """
    from cnncalc.files import check_output
    from cnncalc.kerasfiles.loader import model_from_layer_list, save_keras

    check_output(args.output, args.force)
    spec = read_json(args.spec)
    model = model_from_layer_list(spec, args.seed)
    save_keras(model, args.output, force=args.force)
    print(f"wrote {args.output}")
    print(model.summary())
    return EXIT_OK


def cmd_verify(args):
    """Recalculate a cnncalc workbook in LibreOffice and compare every formula cell with the engine.

    The model and inputs are read from the workbook's own weight and input cells, so a workbook whose
    weights you edited (and saved in Excel or LibreOffice) is checked against its new weights.
    Exit 0 when every cell agrees within 1e-9 relative, 1 when any differs, 2 when it cannot run.

    Example:
      cnncalc verify cnn_simple_example.xlsx
    """
    from cnncalc.recalc.verify import format_report, verify

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
    from cnncalc.files import check_output
    from cnncalc.classroom.practice import plan_practice
    from cnncalc.sheets.writer import write_plan

    check_output(args.output, args.force)
    job = resolve(args)
    blank = [name for text in args.blank or [] for name in text.split(",") if name]
    labels = None if args.seed is not None else job.labels  # a drawn input has no label
    plan = plan_practice(job.model, job.raw, job.scale, blank, args.seed, job.title, labels)
    write_plan(plan, args.output, force=args.force)
    seed = f", input drawn with seed {args.seed}" if args.seed is not None else ""
    print(f"wrote {args.output}: {len(plan.answers)} answer cells to fill ({', '.join(plan.blank)}){seed}")
    print(f"when it is filled in: cnncalc check {args.output}")
    return EXIT_OK


def cmd_check(args):
    """Grade filled-in practice workbooks, cell by cell: correct, wrong, missing or not a number.

    Each answer is also judged against the student's own earlier answers (carry-forward), and a wrong
    value that matches a common slip is named (bias forgotten, kernel flipped, ReLU forgotten, ...).
    A number is judged at the precision it is written (0.47 means 0.465 to 0.475), never looser than
    ±0.005; --tolerance T fixes an absolute tolerance instead. Several files grade a class: one row
    each (--csv), a file that cannot be read is reported and the rest go on.
    Exit 0 when every answer is right, 1 when any is wrong or missing, 2 when a file cannot be graded.

    Example:
      cnncalc check ada.xlsx --graded ada-graded.xlsx
      cnncalc check ada.xlsx --tolerance 0.001 --json
      cnncalc check submissions/*.xlsx --csv grades.csv
    """
    from cnncalc.classroom.check import check_files, class_table, format_grade, grade_dict, write_csv, write_graded
    from cnncalc.files import check_output

    several = len(args.files) > 1
    if args.graded and several and not os.path.isdir(args.graded):
        raise CnncalcError(f"--graded with {len(args.files)} files must be a folder. Expected an existing folder for the graded copies. Received {args.graded}")
    if args.graded and not several:
        check_output(args.graded, args.force)
    if args.csv:
        check_output(args.csv, args.force)
    results = check_files(args.files, args.tolerance)
    for r in results:
        if r.error and several:
            print(f"cnncalc: error: {r.error}", file=sys.stderr)
        elif r.error:
            raise CnncalcError(r.error)
        elif args.graded:
            out = os.path.join(args.graded, os.path.splitext(os.path.basename(r.path))[0] + "-graded.xlsx") if several else args.graded
            write_graded(r.grade, out, force=args.force)
    if args.json:
        data = [grade_dict(r.grade) if r.grade else {"file": r.path, "error": r.error} for r in results]
        print(json.dumps(data if several else data[0], indent=1))
    elif several:
        from tabulate import tabulate

        headers, rows = class_table(results)
        print(tabulate([row[:-1] for row in rows], headers=headers[:-1], disable_numparse=True))
    else:
        print(format_grade(results[0].grade))
    if args.graded and not args.json:
        print(f"wrote the graded copy{'ies into' if several else ''} {args.graded}")
    if args.csv:
        write_csv(results, args.csv, force=args.force)
        if not args.json:
            print(f"wrote {args.csv}")
    return max(r.exit_code for r in results)


def cell_index(text):
    """'1,2' -> (1, 2): an output cell, counted from 0."""
    try:
        i, j = (int(n) for n in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ROW,COL such as 1,2; received {text!r}") from None
    return i, j


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise CnncalcError(f"Cannot read {path}. Expected a readable JSON file. Received {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CnncalcError(f"{path} is not valid JSON. Expected a JSON object. Received {e}") from None
    except RecursionError:  # lists nested thousands deep
        raise CnncalcError(f"{path} nests its lists or objects too deeply. Expected a JSON object such as a layer list") from None


def resolve(args, need_inputs=True):
    """The model and inputs named on the command line; without a model, the chapter's toy CNN and its samples."""
    from cnncalc.companion.examples import Example, chapter_example
    from cnncalc.inputs import parse_scale, read_inputs

    model_path = getattr(args, "model", None)
    inputs = getattr(args, "input", None)
    scale = getattr(args, "scale", None)
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

    model = load_model(model_path, getattr(args, "config", None))
    if not inputs:
        if need_inputs:
            raise CnncalcError(f"No input for {model_path}. Expected --input FILE (.npy, .csv, .json, .png or .jpg) of shape {model.input_shape}. Received none")
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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="cnncalc",
        description="A spreadsheet-verifiable reference calculator for small convolutional networks.",
        epilog="Exit codes: 0 ok, 1 differences found (verify), 2 error in the input or usage, 130 interrupted.",
    )
    parser.add_argument("--traceback", action="store_true", help="show the full Python traceback on errors (for bug reports)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name, func, help):
        p = sub.add_parser(name, help=help, description=func.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(func=func)
        return p

    p = add("example", cmd_example, "write one of the chapter's worked examples (default: the toy CNN)")
    p.add_argument("name", nargs="?", default="cnn_simple_example", help="which example (see `cnncalc examples`; default %(default)s)")
    p.add_argument("-o", "--output", help="where to write (default: NAME.xlsx)")
    p.add_argument("--force", action="store_true", help="overwrite the file if it exists")
    p.add_argument("--png", metavar="DIR", help="also write every feature map as a PNG image into DIR")
    p.add_argument("--lang", choices=["en", "zh"], default="en", help="labels of the Steps sheet: English or Chinese")
    p.add_argument("--window", type=cell_index, default=(0, 0), metavar="ROW,COL",
                   help="frame the input window of this output cell of the first convolution (default 0,0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar (it shows only on a terminal, for jobs over a second)")

    p = add("examples", cmd_examples, "list the chapter's worked examples, or write them all")
    p.add_argument("--all", action="store_true", help="write every example")
    p.add_argument("--out", default=".", help="folder for --all (default: the current folder)")
    p.add_argument("--force", action="store_true", help="overwrite files that exist")
    p.add_argument("--png", metavar="DIR", help="also write every feature map as a PNG image into DIR")
    p.add_argument("--lang", choices=["en", "zh"], default="en", help="labels of the Steps sheet: English or Chinese")
    p.add_argument("--quiet", action="store_true", help="no progress bar (it shows only on a terminal, for jobs over a second)")

    def model_args(p, inputs=True):
        p.add_argument("model", nargs="?", help="a Keras model file: .keras, .h5, or .weights.h5 with --config (default: the chapter's toy CNN)")
        p.add_argument("--config", metavar="JSON", help="the architecture (model.to_json()) for a .weights.h5 file")
        if inputs:
            p.add_argument("--input", nargs="+", metavar="FILE", help="input files: .npy, .csv, .json, .png, .jpg")
            p.add_argument("--scale", metavar="S", help="multiply inputs by S, e.g. 1/255 (a formula step in the workbook)")
            p.add_argument("--resize", action="store_true", help="resize images to the model's input size")

    p = add("build", cmd_build, "write the workbook for a Keras model and inputs")
    model_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar (it shows only on a terminal, for jobs over a second)")
    p.add_argument("-o", "--output", required=True, help="the workbook to write (.xlsx)")
    p.add_argument("--force", action="store_true", help="overwrite the file if it exists")
    p.add_argument("--lang", choices=["en", "zh"], default="en", help="labels of the Steps sheet: English or Chinese")
    p.add_argument("--window", type=cell_index, default=(0, 0), metavar="ROW,COL",
                   help="frame the input window of this output cell of the first convolution (default 0,0)")

    p = add("summary", cmd_summary, "print the model summary as Keras does")
    model_args(p, inputs=False)

    p = add("predict", cmd_predict, "print the model's predictions")
    model_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--float32", action="store_true", help="compute in float32, as Keras does (default float64)")

    p = add("new", cmd_new, "make a new Keras model file from a short layer list")
    p.add_argument("spec", help="a JSON layer list (see the description)")
    p.add_argument("-o", "--output", required=True, help="the .keras file to write")
    p.add_argument("--seed", type=int, help="random seed for the initial weights (default: the spec's seed, else 0)")
    p.add_argument("--force", action="store_true", help="overwrite the file if it exists")

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

    p = add("verify", cmd_verify, "recalculate a workbook in LibreOffice and compare with the engine")
    p.add_argument("workbook", help="a workbook written by cnncalc")
    p.add_argument("--keep", metavar="PATH", help="also save LibreOffice's recalculated copy here")
    p.add_argument("--quiet", action="store_true", help="no progress bar (it shows only on a terminal, for jobs over a second)")

    p = add("practice", cmd_practice, "write a practice workbook with the answer cells left empty")
    model_args(p)
    p.add_argument("-o", "--output", required=True, help="the practice workbook to write (.xlsx)")
    p.add_argument("--blank", nargs="+", metavar="STEP", help="the steps to leave empty: layer names, scaled, prediction (default: all)")
    p.add_argument("--seed", type=int, help="draw a new integer input with this seed (one exercise per student)")
    p.add_argument("--force", action="store_true", help="overwrite the file if it exists")

    p = add("check", cmd_check, "grade filled-in practice workbooks, cell by cell")
    p.add_argument("files", nargs="+", metavar="FILLED.xlsx", help="one practice workbook, or a whole class's")
    p.add_argument("--tolerance", type=float, metavar="T", help="a fixed absolute tolerance (default: the precision each number is written to)")
    p.add_argument("--graded", metavar="OUT", help="write a graded copy (with several files: a folder for the copies)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--csv", metavar="GRADES.csv", help="write one row a file: name, score, each step's marks")
    p.add_argument("--force", action="store_true", help="overwrite the graded copy or CSV if it exists")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_ERROR
    try:
        return args.func(args)
    except CnncalcError as e:
        if args.traceback:
            raise
        print(f"cnncalc: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("cnncalc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
