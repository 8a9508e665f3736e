"""The cnncalc command line: one function per subcommand; main(argv) -> exit code.

Exit codes: 0 success; 1 a check found differences (verify); 2 a usage error or a problem with
the user's files (one line on stderr: "cnncalc: error: ..."); 130 interrupted.
"""

import argparse
import json
import sys

from cnncalc.errors import CnncalcError

EXIT_OK, EXIT_DIFFERS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


def cmd_example(args):
    """Write the chapter's worked example: the toy CNN on both samples, every step a live formula.

    Example:
      cnncalc example                      # writes cnn_simple_example.xlsx
      cnncalc example -o book.xlsx --force
    """
    from cnncalc.examples import chapter_example
    from cnncalc.workbook import plan_workbook, write_plan

    ex = chapter_example()
    write_plan(plan_workbook(ex.model, ex.raw, ex.scale, ex.title, ex.labels), args.output, force=args.force)
    print(f"wrote {args.output}")
    print_predictions(ex.model.predict(ex.x), ex.labels)
    return EXIT_OK


def cmd_summary(args):
    """Print the model's layers as keras model.summary() does: names, output shapes, parameter counts.

    Example:
      cnncalc summary                      # the chapter's toy CNN
    """
    model, _ = resolve_model(args)
    print(model.summary())
    return EXIT_OK


def cmd_predict(args):
    """Run the model on its inputs and print each sample's output and predicted class.

    Example:
      cnncalc predict                      # the chapter's toy CNN on its two samples
      cnncalc predict --json
    """
    import numpy as np

    model, ex = resolve_model(args)
    probs = model.predict(ex.x)
    if args.json:
        print(json.dumps({"predictions": probs.tolist(), "classes": np.argmax(probs, axis=-1).tolist()}))
    else:
        print_predictions(probs, ex.labels)
    return EXIT_OK


def cmd_verify(args):
    """Recalculate a cnncalc workbook in LibreOffice and compare every formula cell with the engine.

    The model and inputs are read from the workbook's own weight and input cells, so a workbook whose
    weights you edited (and saved in Excel or LibreOffice) is checked against its new weights.
    Exit 0 when every cell agrees within 1e-9 relative, 1 when any differs, 2 when it cannot run.

    Example:
      cnncalc verify cnn_simple_example.xlsx
    """
    from cnncalc.verify import format_report, verify

    report = verify(args.workbook, keep=args.keep)
    print(format_report(report))
    return EXIT_OK if report.ok else EXIT_DIFFERS


def resolve_model(args):
    """The model named on the command line, or the chapter's toy CNN with its two samples."""
    from cnncalc.examples import chapter_example

    if getattr(args, "model", None):
        raise CnncalcError(f"Cannot load {args.model}. Expected no model argument: loading Keras files is not available yet. Received {args.model!r}")
    ex = chapter_example()
    return ex.model, ex


def print_predictions(probs, labels=None):
    from tabulate import tabulate

    rows = []
    for n, p in enumerate(probs):
        row = [f"Sample {n + 1}", *(f"{v:.7f}" for v in p), int(p.argmax())]
        if labels is not None:
            row.append(labels[n])
        rows.append(row)
    headers = ["sample", *(f"p(class {j})" for j in range(probs.shape[1])), "predicted class"]
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

    p = add("example", cmd_example, "write the chapter's worked-example workbook")
    p.add_argument("-o", "--output", default="cnn_simple_example.xlsx", help="where to write (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite the file if it exists")

    p = add("summary", cmd_summary, "print the model summary as Keras does")
    p.add_argument("model", nargs="?", help="a model file (default: the chapter's toy CNN)")

    p = add("predict", cmd_predict, "print the model's predictions")
    p.add_argument("model", nargs="?", help="a model file (default: the chapter's toy CNN)")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("verify", cmd_verify, "recalculate a workbook in LibreOffice and compare with the engine")
    p.add_argument("workbook", help="a workbook written by cnncalc")
    p.add_argument("--keep", metavar="PATH", help="also save LibreOffice's recalculated copy here")
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


if __name__ == "__main__":
    sys.exit(main())
