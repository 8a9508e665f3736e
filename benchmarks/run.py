"""Benchmarks: cnncalc's export, predict and verify, each against its practical limit.

    python benchmarks/run.py                      # all six models (about 20 minutes on 2 cores)
    python benchmarks/run.py --quick              # toy and lenet_small only
    python benchmarks/run.py --training           # and the training workbooks (benchmarks/training.py)
    python benchmarks/run.py --repeat 3 --results benchmarks/RESULTS.md   # best of 3, and record the tables and the machine

For each model, one digit (the toy: its two samples; deep_cifar: a 32×32 colour picture of one) is exported to a
workbook. The export (plan + write) is timed against a bare XlsxWriter loop writing the very same cells in the same
run: their ratio is what cnncalc costs on top of the file format (goal: at most 1.3, Steps sheet included). The
engine's predict on a batch of 256 images is timed against Keras's (jax backend, the same .keras file, compiled and
warmed up first). verify is the whole `cnncalc verify`: LibreOffice's recalculation, reading the file back, and
comparing every formula cell, against LibreOffice's own part (goal: at most 1.5 times it).
Every measurement runs in a child process of its own, so one case's peak memory cannot hide another's; export and
bare writer alternate, and with --repeat each keeps its best time, so a burst of load on a shared machine does
not land on one side only. The CPU seconds of both (less sensitive to other people's load) are recorded too.
No network: the models get Keras's default initializers (`cnncalc new`) and the digits are drawn by digits.py.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPECS = HERE / "specs"
CASES = ["toy", "lenet_small", "mnist_small", "mnist_large", "deep_mnist", "deep_cifar"]
DEEP = ["deep_mnist", "deep_cifar"]  # several wide conv layers: most cells are long formulas
QUICK = ["toy", "lenet_small"]
BATCH = 256


# ---------------------------------------------------------------- what each child process measures


def peak_rss_mb():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def make_model(case, work):
    """The case's .keras file in `work` (made once), the raw export input, its scale, and a batch for predict."""
    import numpy as np

    sys.path.insert(0, str(HERE))
    from digits import batch, colour, colour_batch, digit

    from cnncalc.kerasfiles.loader import model_from_layer_list, save_keras

    path = Path(work) / f"{case}.keras"
    if case == "toy":
        from cnncalc.companion.examples import chapter_example

        ex = chapter_example()
        if not path.exists():
            save_keras(ex.model, path)
        rng = np.random.default_rng(0)
        return path, ex.raw, ex.scale, rng.integers(0, 9, size=(BATCH, *ex.model.input_shape)) / 8
    spec = json.loads((SPECS / f"{case}.json").read_text())
    if not path.exists():
        save_keras(model_from_layer_list(spec), path)
    if spec["input_shape"][-1] == 3:
        return path, colour(7)[None], "1/255", colour_batch(BATCH)[0] / 255
    return path, digit(7)[None, :, :, None], "1/255", batch(BATCH)[0] / 255


def child_export(case, work):
    """plan_workbook + write_plan, as `cnncalc build` does, from the .keras file."""
    from cnncalc.kerasfiles.loader import load_model
    from cnncalc.sheets.workbook import plan_workbook
    from cnncalc.sheets.writer import write_plan

    path, raw, scale, _ = make_model(case, work)
    model = load_model(path)
    out = Path(work) / f"{case}.xlsx"
    t, cpu = time.perf_counter(), time.process_time()
    plan = plan_workbook(model, raw, scale)
    planned = time.perf_counter() - t
    write_plan(plan, out, force=True, quiet=True)
    seconds = time.perf_counter() - t
    return {"export_s": seconds, "plan_s": planned, "write_s": seconds - planned, "export_cpu_s": time.process_time() - cpu,
            "bytes": out.stat().st_size, "export_rss_mb": peak_rss_mb(), "params": model.count_params()}


def child_bare(case, work):
    """The same cells written by a bare XlsxWriter loop: every cell made first (untimed), then only the writing timed."""
    from cnncalc.kerasfiles.loader import load_model
    from cnncalc.sheets.workbook import plan_workbook

    path, raw, scale, _ = make_model(case, work)
    return bare_write(plan_cells(plan_workbook(load_model(path), raw, scale)), Path(work) / f"{case}.bare.xlsx")


def plan_cells(plan):
    """Every cell of a plan as plain tuples, [(sheet name, [(row, [(col, value, formula, style)])])], for bare_write."""
    return [(s.name, [(r, [(c, cell.value, cell.formula, cell.style) for c, cell in row]) for r, row in s.rows()]) for s in plan.sheets]


def bare_write(sheets, out):
    """plan_cells' cells written to `out` by a bare XlsxWriter loop, only the writing timed (benchmarks/training.py uses it too)."""
    import xlsxwriter

    from cnncalc.sheets.writer import STYLES

    cells = sum(len(row) for _, rows in sheets for _, row in rows)
    formulas = sum(formula is not None for _, rows in sheets for _, row in rows for _, _, formula, _ in row)
    t, cpu = time.perf_counter(), time.process_time()
    wb = xlsxwriter.Workbook(str(out), {"constant_memory": True, "strings_to_formulas": False,
                                        "strings_to_numbers": False, "strings_to_urls": False})
    formats = {name: wb.add_format(props) for name, props in STYLES.items()}
    for name, rows in sheets:
        ws = wb.add_worksheet(name)
        for r, row in rows:
            for c, value, formula, style in row:
                if formula is not None:
                    ws.write_formula(r, c, formula, formats[style], value)
                elif isinstance(value, str):
                    ws.write_string(r, c, value, formats[style])
                else:
                    ws.write_number(r, c, value, formats[style])
    wb.close()
    return {"bare_s": time.perf_counter() - t, "bare_cpu_s": time.process_time() - cpu, "cells": cells, "formula_cells": formulas}


def best_of(f, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def child_predict(case, work):
    """Engine predict (float64, as `cnncalc predict`) and Keras predict (jax) on the same batch of 256, warmed up."""
    import numpy as np

    import keras

    from cnncalc.kerasfiles.loader import load_model

    path, _, _, x = make_model(case, work)
    engine = load_model(path)
    theirs = keras.saving.load_model(path)
    mine_out = engine.predict(x)
    theirs_out = np.asarray(theirs.predict(x, batch_size=BATCH, verbose=0))  # the first call compiles
    return {"engine_ms": 1000 * best_of(lambda: engine.predict(x)),
            "keras_ms": 1000 * best_of(lambda: theirs.predict(x, batch_size=BATCH, verbose=0)),
            "max_diff_vs_keras": float(np.max(np.abs(mine_out - theirs_out))), "backend": keras.backend.backend()}


def child_verify(case, work):
    from cnncalc.recalc.verify import verify

    keep = Path(work) / f"{case}.recalculated.xlsx"
    keep.unlink(missing_ok=True)
    t = time.perf_counter()
    report = verify(Path(work) / f"{case}.xlsx", keep=keep, quiet=True)
    return {"verify_s": time.perf_counter() - t, "libreoffice_s": report.seconds["recalculate"], "verify_ok": report.ok,
            "checked": report.checked, "verify_steps": {k: round(v, 2) for k, v in report.seconds.items()}, "verify_rss_mb": peak_rss_mb()}


def child_agree(case, work):
    """LibreOffice's probabilities (the Summary sheet of the recalculated workbook) against Keras's on the same input."""
    import numpy as np

    import keras

    from cnncalc.inputs import parse_scale
    from cnncalc.recalc.libreoffice import read_cells

    path, raw, scale, _ = make_model(case, work)
    theirs = np.asarray(keras.saving.load_model(path).predict(raw * parse_scale(scale), verbose=0)).reshape(len(raw), -1)
    summary = read_cells(Path(work) / f"{case}.recalculated.xlsx", sheets=["Summary"])[0]["Summary"]
    rows = {v: r for (r, c), v in summary.items() if c == 0 and isinstance(v, str)}
    mine = np.array([[summary[(rows[f"Sample {n + 1}"], 1 + j)] for j in range(theirs.shape[1])] for n in range(len(raw))])
    return {"libreoffice_vs_keras": float(np.max(np.abs(mine - theirs)))}


CHILDREN = {"export": child_export, "bare": child_bare, "predict": child_predict, "verify": child_verify, "agree": child_agree}


# ---------------------------------------------------------------- the parent: run the children, print the table


def run_child(kind, case, work):
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, __file__, "--child", kind, case, str(work)], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        tail = " | ".join((r.stderr or r.stdout).strip().splitlines()[-3:])
        print(f"  {case}: {kind} failed: {tail}", file=sys.stderr)
        return {}
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure(case, work, repeat, skip):
    """All measurements of one case; the export and the bare writer alternate `repeat` times, the best of each kept.

    verify runs `repeat` times too, and its fastest run is kept (with that run's LibreOffice time)."""
    result = {"case": case}
    for _ in range(repeat):
        for kind in ("export", "bare"):
            got = run_child(kind, case, work)
            for key, value in got.items():
                best = result.get(key)
                result[key] = value if best is None or not key.endswith("_s") else min(best, value)
    if "predict" not in skip:
        result.update(run_child("predict", case, work))
    if "verify" not in skip:
        runs = [got for got in (run_child("verify", case, work) for _ in range(repeat)) if got]
        if runs:
            result.update(min(runs, key=lambda got: got["verify_s"]))
    if "verify" not in skip and "predict" not in skip and result.get("verify_ok") is not None:
        result.update(run_child("agree", case, work))
    return result


def fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def ratio(r, a, b):
    return r[a] / r[b] if r.get(a) and r.get(b) else None


def tables(results):
    """The export table (against the bare writer) and the predict and verify table (against Keras and LibreOffice)."""
    from tabulate import tabulate

    export = [[r["case"], fmt(r.get("params"), ","), fmt(r.get("cells"), ","), fmt(r.get("formula_cells"), ","), fmt(r.get("bytes", 0) / 1e6, ".1f"),
               fmt(r.get("export_s"), ".2f"), fmt(r.get("plan_s"), ".2f"), fmt(r.get("bare_s"), ".2f"), fmt(ratio(r, "export_s", "bare_s"), ".2f"),
               fmt(ratio(r, "export_cpu_s", "bare_cpu_s"), ".2f"), fmt(ratio(r, "write_s", "bare_s"), ".2f"),
               fmt(r["cells"] / r["export_s"] if r.get("cells") and r.get("export_s") else None, ",.0f"), fmt(r.get("export_rss_mb"), ".0f")]
              for r in results]
    checked = [[r["case"], fmt(r.get("engine_ms"), ".1f"), fmt(r.get("keras_ms"), ".1f"), fmt(ratio(r, "engine_ms", "keras_ms"), ".2f"),
                "n/a" if "verify_s" not in r else f"{r['verify_s']:.1f}" + ("" if r.get("verify_ok") else " FAILED"),
                fmt(r.get("libreoffice_s"), ".1f"), fmt(ratio(r, "verify_s", "libreoffice_s"), ".2f"), fmt(r.get("verify_rss_mb"), ".0f")]
               for r in results]
    return (tabulate(export, headers=["model", "weights", "cells written", "formula cells", "file MB", "export s", "of it plan s", "bare writer s",
                                      "export / bare", "same, CPU s", "write_plan / bare", "cells / s", "peak RSS MB"],
                     disable_numparse=True, tablefmt="github") + "\n\n" +
            tabulate(checked, headers=["model", "engine predict ms", "Keras predict ms", "engine / Keras", "verify s", "of it LibreOffice s",
                                       "verify / LibreOffice", "verify peak RSS MB"], disable_numparse=True, tablefmt="github"))


def details(results):
    lines = []
    for r in results:
        if "verify_steps" in r:
            steps = ", ".join(f"{k} {v}" for k, v in r["verify_steps"].items())
            lines.append(f"- {r['case']}: verify checked {r['checked']:,} formula cells ({steps} s); "
                         f"engine vs Keras on the batch of {BATCH}: max |difference| {r.get('max_diff_vs_keras', float('nan')):.1e}; "
                         f"LibreOffice's probabilities vs Keras's for the exported input: max |difference| "
                         f"{r.get('libreoffice_vs_keras', float('nan')):.1e}")
    return "\n".join(lines)


NOTES = """How to read it:
- *export s* is plan_workbook + write_plan, as `cnncalc build` runs them; *of it plan s* is the layout, mostly the
  Steps sheet (every formula cell written out with its numbers; made only for workbooks under 20,000 formula cells,
  so mnist_large and the deep models have none). The Steps sheet writes each number as text once and each kernel's
  terms once, and rewrites each formula's short remainder once (sheets/steps.py, Expander): the same text as before. *bare writer s* is XlsxWriter alone (constant_memory, its public
  write_formula/write_number/write_string) writing the same cells, made beforehand; *export / bare* is the whole cost
  on top of the file format (best of the runs of each), *same, CPU s* the ratio of their CPU seconds (which other
  people's load on the machine disturbs less), *write_plan / bare* the writer's alone. cnncalc's writer skips
  XlsxWriter's rescan of each formula for newer Excel functions (sheets/writer.py, PlainFormulaWorksheet), which the
  bare writer pays: on the deep models, whose formulas are long, that is why write_plan is faster than the bare loop.
  The toy's times are dominated by fixed costs (formats, the chart, the zip), so its ratios say little.
- *cells / s* is cells written a second of export, plan included.
- *peak RSS* is a child process's: Python, numpy and the model included (about 55 MB before any work).
- *engine predict* is cnncalc's numpy forward pass in float64 (`cnncalc predict`); Keras runs float32, compiled by
  XLA, after a warm-up call. Best of three, batch of 256.
- *verify s* is all of `cnncalc verify`: LibreOffice's recalculation (*of it LibreOffice s*), reading its copy back
  (the Weights sheet by python-calamine, the others in one streaming pass), rebuilding the model and the plan from
  the file's own cells (each weight tensor taken from calamine's rows in one numpy conversion), and comparing every
  formula cell (tolerance 1e-9 relative) with the engine's value, which the sample sheets' panels give by cell
  address without making any formula's text. Fastest of the runs.
- deep_mnist (three Conv2D(64) + MaxPooling stages on 28×28) and deep_cifar (Conv2D 32, 64, 64 on a 32×32×3 colour
  picture) were chosen to fit even the layout of format 1 (every channel of a layer side by side, at most 16,384
  columns a sheet); with channel grids wider models fit too."""


def version(module):
    try:
        return __import__(module).__version__
    except Exception:
        return "not installed"


def calamine_version():
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        return installed("python-calamine")
    except PackageNotFoundError:
        return "not installed"


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    mem = next((int(line.split()[1]) / 1024 ** 2 for line in open("/proc/meminfo") if line.startswith("MemTotal")), 0)
    try:
        from cnncalc.recalc.libreoffice import find_soffice

        lo = subprocess.run([find_soffice(), "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    except Exception as e:
        lo = f"not available ({e})"
    os.environ.setdefault("KERAS_BACKEND", "jax")
    return (f"{os.cpu_count()} CPUs ({cpu}), {mem:.0f} GB RAM, {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, numpy {version('numpy')}, XlsxWriter {version('xlsxwriter')}, "
            f"openpyxl {version('openpyxl')}, python-calamine {calamine_version()}, keras {version('keras')} with jax {version('jax')}; {lo}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="toy and lenet_small only")
    parser.add_argument("--cases", nargs="+", choices=CASES, help="which models (default: all four)")
    parser.add_argument("--repeat", type=int, default=1, help="export and bare-writer runs per case; the best is kept (default 1)")
    parser.add_argument("--skip", nargs="+", default=[], choices=["predict", "verify"], help="leave out Keras predict or verify")
    parser.add_argument("--results", metavar="PATH", help="also write the table, the machine and the command to PATH (markdown), above its '## ' sections, which stay")
    parser.add_argument("--training", action="store_true", help="also the training workbooks of benchmarks/training.py (--quick: chapter_fit only)")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "CASE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, case, work = args.child
        children = CHILDREN
        if case not in CASES:  # a training case: benchmarks/training.py's children
            from training import CHILDREN as children
        print(json.dumps(children[kind](case, work)))
        return 0
    cases = args.cases or (QUICK if args.quick else CASES)
    results, load = [], [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="cnncalc-bench-") as work:
        for case in cases:
            print(f"measuring {case} ...", file=sys.stderr, flush=True)
            results.append(measure(case, work, args.repeat, args.skip))
        if args.training:
            import training

            trained = training.measure_all(training.QUICK if args.quick else training.CASES, work, args.repeat, args.skip)
    load.append(os.getloadavg()[0])
    text = tables(results)
    print(text)
    print(details(results))
    if args.training:
        print(f"\n{training.table(trained)}\n{training.details(trained)}")
    if args.results:
        command = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
        old = Path(args.results).read_text() if Path(args.results).exists() else ""
        kept = old.find("\n## ")  # the file's own sections (history, the training workbooks) stay below the new tables
        Path(args.results).write_text(
            f"# Benchmark results\n\nCommand: `{command.strip()}` ({time.strftime('%Y-%m-%d')})\n\nMachine: {machine()}\n\n"
            f"The machine was shared: other people's work ran on its cores meanwhile (load average {load[0]:.1f} at the start, "
            f"{load[1]:.1f} at the end), so single times are noisy; the ratios compare runs made side by side.\n\n{text}\n\n"
            f"{details(results)}\n\n{NOTES}\n" + ("" if kept < 0 else old[kept:]))
        if args.training:
            training.write_section(args.results, training.section(trained, command.strip(), load))
        print(f"wrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
