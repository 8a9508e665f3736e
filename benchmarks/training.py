"""Benchmarks of training workbooks (`cnncalc train`): export against a bare writer, verify against LibreOffice.

    python benchmarks/training.py                     # the three cases below (a few minutes on 2 cores)
    python benchmarks/training.py --repeat 2 --results benchmarks/RESULTS.md   # best of 2; rewrites only its section
    python benchmarks/run.py --training               # the same after the prediction tables (--quick: chapter_fit)

Cases: chapter_fit is `cnncalc example chapter_fit` (the toy CNN, categorical cross-entropy and Adam, 100 epochs of
batch 2: 100 step sheets); lenet_sgd and mnist_sgd are one SGD step (Keras's defaults, learning rate 0.01) of
specs/lenet_small.json and specs/mnist_small.json on two digits drawn by digits.py (a 0 and a 1, one-hot labels,
categorical cross-entropy). Each is measured as run.py measures a prediction workbook, by run.py's own children and
its measure(): the export (the engine's fit, the plan and write_plan, as `cnncalc train` runs them) alternates with a
bare XlsxWriter loop writing the same cells; verify is the whole `cnncalc verify` against LibreOffice's part of it.
A case past one of cnncalc's limits is not run: the refusal `cnncalc train` would print is recorded instead, with
the cells the limit check counts (sheets/training.py check_size) and the limit (guards.MAX_PLAN_CELLS).
"""

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402  (benchmarks/run.py: its children, the bare writer, its measure and table helpers)

CASES = ["chapter_fit", "lenet_sgd", "mnist_sgd"]
QUICK = ["chapter_fit"]
SPECS = {"lenet_sgd": "lenet_small", "mnist_sgd": "mnist_small"}
BATCH = 2  # the digits 0 and 1: one SGD step of one batch
SECTION = "## Training workbooks"


def job(case, batch_size=BATCH):
    """The case's TrainingJob, as `cnncalc train` would build it (the fit is run later, by plan_training)."""
    import numpy as np

    from digits import batch

    from cnncalc.companion.examples import chapter_fit
    from cnncalc.engine import losses, optimizers
    from cnncalc.kerasfiles.loader import model_from_layer_list
    from cnncalc.sheets.training import TrainingJob

    if case == "chapter_fit":
        return chapter_fit().training
    spec = json.loads((run.SPECS / f"{SPECS[case]}.json").read_text())
    images, labels = batch(batch_size)
    return TrainingJob(model_from_layer_list(spec), images, np.eye(10)[labels], losses.get("categorical_crossentropy"),
                       [optimizers.get("sgd")], epochs=1, batch_size=batch_size, scale="1/255", title=f"One SGD step of {SPECS[case]}")


def counted_cells(training_job):
    """The cells sheets/training.py's check_size counts for the job (what it holds against guards.MAX_PLAN_CELLS), read
    from its refusal with the limit lowered to 0, as guards.py's limits are lowered in tests."""
    from cnncalc import guards
    from cnncalc.errors import CnncalcError
    from cnncalc.sheets.training import check_size

    j, limit = training_job, guards.MAX_PLAN_CELLS
    guards.MAX_PLAN_CELLS = 0
    try:
        check_size(j.model, len(j.raw), j.epochs, j.batch_size, j.optimizers)
    except CnncalcError as e:
        return int(re.search(r"Received ([\d,]+) cells", str(e)).group(1).replace(",", ""))
    finally:
        guards.MAX_PLAN_CELLS = limit
    raise AssertionError("check_size accepted a workbook against a limit of 0 cells")


def refusal(case, batch_size=BATCH):
    """What stops the case before anything is trained or written: {"refused": the message `cnncalc train` prints (None
    when the plan is allowed), "counted_cells", "limit"}. Only the size checks run (plan_training refuses before its fit)."""
    from cnncalc import guards
    from cnncalc.errors import CnncalcError
    from cnncalc.sheets.training import check_size

    j = job(case, batch_size)
    result = {"counted_cells": counted_cells(j), "limit": guards.MAX_PLAN_CELLS, "refused": None}
    try:
        check_size(j.model, len(j.raw), j.epochs, j.batch_size, j.optimizers)
    except CnncalcError as e:
        result["refused"] = f"cnncalc: error: {e}"
    return result


# ---------------------------------------------------------------- the children (run from run.py's run_child)


def child_export(case, work):
    """The engine's fit, plan_training and write_plan, as `cnncalc train` runs them."""
    from cnncalc.sheets.training import plan_training
    from cnncalc.sheets.writer import write_plan

    j = job(case)
    out = Path(work) / f"{case}.xlsx"
    t, cpu = time.perf_counter(), time.process_time()
    j.fits()
    fitted = time.perf_counter() - t
    plan = plan_training(j)
    planned = time.perf_counter() - t
    write_plan(plan, out, force=True, quiet=True)
    seconds = time.perf_counter() - t
    return {"export_s": seconds, "fit_s": fitted, "plan_s": planned - fitted, "write_s": seconds - planned,
            "export_cpu_s": time.process_time() - cpu, "bytes": out.stat().st_size, "export_rss_mb": run.peak_rss_mb(),
            "params": j.model.count_params(), "steps": sum(len(fit.steps) for fit in j.fits()), "counted_cells": counted_cells(j)}


def child_bare(case, work):
    """The same cells through run.py's bare XlsxWriter loop (made first, untimed)."""
    from cnncalc.sheets.training import plan_training

    sheets = run.plan_cells(plan_training(job(case)))
    return run.bare_write(sheets, Path(work) / f"{case}.bare.xlsx")


CHILDREN = {"export": child_export, "bare": child_bare, "verify": run.child_verify}


# ---------------------------------------------------------------- the parent


def measure_all(cases, work, repeat=1, skip=()):
    """One result a case: run.py's measure (without Keras's predict), or the limit that refuses the case."""
    results = []
    for case in cases:
        print(f"measuring {case} ...", file=sys.stderr, flush=True)
        limits = refusal(case)
        if limits["refused"]:
            results.append({"case": case, **limits, "smallest": refusal(case, batch_size=1)})
        else:
            results.append(run.measure(case, work, repeat, [*skip, "predict"]))
    return results


def table(results):
    from tabulate import tabulate

    fmt, ratio = run.fmt, run.ratio
    rows = []
    for r in results:
        if r.get("refused"):
            rows.append([r["case"], "1", f"refused (limit {r['limit']:,})", "n/a", f"{r['counted_cells']:,}"] + ["n/a"] * 10)
            continue
        verify = "n/a" if "verify_s" not in r else f"{r['verify_s']:.1f}" + ("" if r.get("verify_ok") else " FAILED")
        rows.append([r["case"], fmt(r.get("steps"), ","), fmt(r.get("cells"), ","), fmt(r.get("formula_cells"), ","),
                     fmt(r.get("counted_cells"), ","), fmt(r.get("bytes", 0) / 1e6, ".1f"), fmt(r.get("export_s"), ".2f"),
                     fmt(r.get("fit_s"), ".2f"), fmt(r.get("plan_s"), ".2f"), fmt(r.get("bare_s"), ".2f"),
                     fmt(ratio(r, "export_s", "bare_s"), ".2f"), fmt(ratio(r, "export_cpu_s", "bare_cpu_s"), ".2f"),
                     verify, fmt(r.get("libreoffice_s"), ".1f"), fmt(ratio(r, "verify_s", "libreoffice_s"), ".2f")])
    return tabulate(rows, headers=["case", "steps", "cells written", "formula cells", "cells the limit check counts", "file MB",
                                   "export s", "of it fit s", "of it plan s", "bare writer s", "export / bare", "same, CPU s",
                                   "verify s", "of it LibreOffice s", "verify / LibreOffice"],
                    disable_numparse=True, tablefmt="github")


def details(results):
    lines = []
    for r in results:
        if r.get("refused"):
            lines.append(f"- {r['case']}: not exported. `cnncalc train` refuses it before training:\n  `{r['refused']}`\n  "
                         f"The limit is guards.MAX_PLAN_CELLS = {r['limit']:,} (cnncalc/guards.py), checked by check_size in "
                         f"cnncalc/sheets/training.py; even a batch of one sample counts {r['smallest']['counted_cells']:,} cells.")
        elif "verify_steps" in r:
            steps = ", ".join(f"{k} {v}" for k, v in r["verify_steps"].items())
            lines.append(f"- {r['case']}: verify checked {r['checked']:,} formula cells ({steps} s); peak RSS of the export "
                         f"{r.get('export_rss_mb', 0):.0f} MB, of verify {r.get('verify_rss_mb', 0):.0f} MB")
    return "\n".join(lines)


NOTES = """*export s* is all of `cnncalc train`'s work: the engine's fit (*of it fit s*), plan_training (*of it plan s*: the
layout only; each cell and its formula text are made as write_plan streams the sheets) and write_plan. *bare writer s*
is run.py's bare XlsxWriter loop writing the same cells, all made beforehand and not timed; *export / bare* is the
ratio of the best runs of each, *same, CPU s* of their CPU seconds. As for the prediction workbooks, cnncalc's writer
skips XlsxWriter's rescan of each formula for newer Excel functions, which the bare loop pays: where most cells are
formulas (lenet_sgd) the export is faster than the bare loop. *cells the limit check counts* is check_size's estimate,
made before any training, of the cells the plan lays out (sheets/training.py), which it holds against
guards.MAX_PLAN_CELLS; the measured cases show how it compares with the cells written. *verify s* is all of `cnncalc
verify` (LibreOffice's recalculation, reading its copy back, rebuilding the run from the workbook's given cells and
comparing every formula cell, 1e-9 relative), against LibreOffice's part of it."""


def section(results, command, load):
    return (f"{SECTION}\n\nCommand: `{command}` ({time.strftime('%Y-%m-%d')}; load average {load[0]:.1f} at the start, "
            f"{load[1]:.1f} at the end)\n\n" + "\n\n".join(filter(None, [table(results), details(results), NOTES])) + "\n")


def write_section(path, text):
    """Replace the file's training section (up to the next '## ' heading) by `text`, or add it at the end."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    start = old.find(SECTION + "\n")
    if start < 0:
        path.write_text(old.rstrip("\n") + "\n\n" + text if old else text)
        return
    end = old.find("\n## ", start + len(SECTION))
    path.write_text(old[:start] + text + ("" if end < 0 else old[end:]))


def main(argv=None):
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="chapter_fit only")
    parser.add_argument("--cases", nargs="+", choices=CASES, help="which cases (default: all three)")
    parser.add_argument("--repeat", type=int, default=1, help="export and bare-writer runs per case; the best is kept (default 1)")
    parser.add_argument("--skip", nargs="+", default=[], choices=["verify"], help="leave out verify")
    parser.add_argument("--results", metavar="PATH", help=f"also write the table into PATH's '{SECTION}' section (markdown)")
    args = parser.parse_args(argv)
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="cnncalc-bench-") as work:
        results = measure_all(args.cases or (QUICK if args.quick else CASES), work, args.repeat, args.skip)
    load.append(os.getloadavg()[0])
    print(table(results))
    print(details(results))
    if args.results:
        command = "python benchmarks/training.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section(args.results, section(results, command.strip(), load))
        print(f"wrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
