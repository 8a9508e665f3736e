"""Benchmarks: cnncalc's export, predict and verify, each against its practical limit.

    python benchmarks/run.py                      # toy, lenet_small, mnist_small, mnist_large (about 5 minutes on 2 cores)
    python benchmarks/run.py --quick              # toy and lenet_small only
    python benchmarks/run.py --results benchmarks/RESULTS.md   # also record the table, the machine and the command

For each model, one digit (the toy: its two samples) is exported to a workbook. The export (plan + write) is
timed against a bare XlsxWriter loop writing the very same cells in the same run: their ratio is what cnncalc
costs on top of the file format (goal: at most 1.3). The engine's predict on a batch of 256 images is timed
against Keras's (jax backend, the same .keras file, compiled and warmed up first). verify is the whole
`cnncalc verify`: LibreOffice's recalculation, reading the file back, and comparing every formula cell.
Every measurement runs in a child process of its own, so one case's peak memory cannot hide another's.
No network: the models get Keras's default initializers (`cnncalc new`) and the digit is drawn by digits.py.
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
CASES = ["toy", "lenet_small", "mnist_small", "mnist_large"]
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
    from digits import batch, digit

    from cnncalc.kerasfiles.loader import model_from_layer_list, save_keras

    path = Path(work) / f"{case}.keras"
    if case == "toy":
        from cnncalc.companion.examples import chapter_example

        ex = chapter_example()
        if not path.exists():
            save_keras(ex.model, path)
        rng = np.random.default_rng(0)
        return path, ex.raw, ex.scale, rng.integers(0, 9, size=(BATCH, *ex.model.input_shape)) / 8
    if not path.exists():
        save_keras(model_from_layer_list(json.loads((SPECS / f"{case}.json").read_text())), path)
    return path, digit(7)[None, :, :, None], "1/255", batch(BATCH)[0] / 255


def child_export(case, work):
    """plan_workbook + write_plan, as `cnncalc build` does, from the .keras file."""
    from cnncalc.kerasfiles.loader import load_model
    from cnncalc.sheets.workbook import plan_workbook
    from cnncalc.sheets.writer import write_plan

    path, raw, scale, _ = make_model(case, work)
    model = load_model(path)
    out = Path(work) / f"{case}.xlsx"
    t = time.perf_counter()
    plan = plan_workbook(model, raw, scale)
    planned = time.perf_counter() - t
    write_plan(plan, out, force=True, quiet=True)
    seconds = time.perf_counter() - t
    return {"export_s": seconds, "plan_s": planned, "write_s": seconds - planned, "bytes": out.stat().st_size, "export_rss_mb": peak_rss_mb(),
            "params": model.count_params()}


def child_bare(case, work):
    """The same cells written by a bare XlsxWriter loop: every cell made first (untimed), then only the writing timed."""
    import xlsxwriter

    from cnncalc.kerasfiles.loader import load_model
    from cnncalc.sheets.workbook import plan_workbook
    from cnncalc.sheets.writer import STYLES

    path, raw, scale, _ = make_model(case, work)
    plan = plan_workbook(load_model(path), raw, scale)
    sheets = [(s.name, [(r, [(c, cell.value, cell.formula, cell.style) for c, cell in row]) for r, row in s.rows()]) for s in plan.sheets]
    cells = sum(len(row) for _, rows in sheets for _, row in rows)
    del plan
    t = time.perf_counter()
    wb = xlsxwriter.Workbook(str(Path(work) / f"{case}.bare.xlsx"), {"constant_memory": True, "strings_to_formulas": False,
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
    return {"bare_s": time.perf_counter() - t, "cells": cells}


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

    t = time.perf_counter()
    report = verify(Path(work) / f"{case}.xlsx", keep=Path(work) / f"{case}.recalculated.xlsx", quiet=True)
    return {"verify_s": time.perf_counter() - t, "verify_ok": report.ok, "checked": report.checked,
            "verify_steps": {k: round(v, 1) for k, v in report.seconds.items()}, "verify_rss_mb": peak_rss_mb()}


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
    """All measurements of one case; the export and the bare writer alternate `repeat` times, the best of each kept."""
    result = {"case": case}
    for _ in range(repeat):
        for kind in ("export", "bare"):
            got = run_child(kind, case, work)
            for key, value in got.items():
                best = result.get(key)
                result[key] = value if best is None or not key.endswith("_s") else min(best, value)
    for kind in ("predict", "verify"):
        if kind not in skip:
            result.update(run_child(kind, case, work))
    if "verify" not in skip and "predict" not in skip and result.get("verify_ok") is not None:
        result.update(run_child("agree", case, work))
    return result


def fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def table(results):
    from tabulate import tabulate

    rows = []
    for r in results:
        ratio = r["export_s"] / r["bare_s"] if r.get("export_s") and r.get("bare_s") else None
        wratio = r["write_s"] / r["bare_s"] if r.get("write_s") and r.get("bare_s") else None
        pratio = r["engine_ms"] / r["keras_ms"] if r.get("engine_ms") and r.get("keras_ms") else None
        verified = None if "verify_s" not in r else f"{r['verify_s']:.1f}" + ("" if r.get("verify_ok") else " FAILED")
        rows.append([r["case"], fmt(r.get("params"), ","), fmt(r.get("cells"), ","), fmt(r.get("bytes", 0) / 1e6, ".1f"),
                     fmt(r.get("export_s"), ".2f"), fmt(r.get("plan_s"), ".2f"), fmt(r.get("export_rss_mb"), ".0f"),
                     fmt(r.get("bare_s"), ".2f"), fmt(ratio, ".2f"), fmt(wratio, ".2f"), fmt(r.get("engine_ms"), ".1f"), fmt(r.get("keras_ms"), ".1f"),
                     fmt(pratio, ".2f"), verified or "n/a"])
    headers = ["model", "weights", "cells written", "file MB", "export s", "of it plan s", "peak RSS MB",
               "bare writer s", "export / bare", "write_plan / bare", "engine predict ms", "Keras predict ms", "engine / Keras", "verify s"]
    return tabulate(rows, headers=headers, disable_numparse=True, tablefmt="github")


def details(results):
    lines = []
    for r in results:
        if "verify_steps" in r:
            steps = ", ".join(f"{k} {v}" for k, v in r["verify_steps"].items())
            lines.append(f"- {r['case']}: verify checked {r['checked']:,} formula cells ({steps} s), peak RSS {r['verify_rss_mb']:.0f} MB; "
                         f"engine vs Keras on the batch of {BATCH}: max |difference| {r.get('max_diff_vs_keras', float('nan')):.1e}; "
                         f"LibreOffice's probabilities vs Keras's for the exported input: max |difference| "
                         f"{r.get('libreoffice_vs_keras', float('nan')):.1e}")
    return "\n".join(lines)


NOTES = """How to read it:
- *export s* is plan_workbook + write_plan, as `cnncalc build` runs them; *of it plan s* is the layout, mostly the
  Steps sheet (every formula cell written out with its numbers; made only for workbooks under 20,000 formula cells,
  so mnist_large has none). *bare writer s* is XlsxWriter alone (constant_memory) writing the same cells, made
  beforehand; *export / bare* is the whole cost on top of the file format, *write_plan / bare* the writer's alone.
  The toy's times are dominated by fixed costs (formats, the chart, the zip), so its ratios say little.
- *peak RSS* is the export's child process: Python, numpy and the model included (about 55 MB before any work).
- *engine predict* is cnncalc's numpy forward pass in float64 (`cnncalc predict`); Keras runs float32, compiled by
  XLA, after a warm-up call. Best of three, batch of 256.
- *verify s* is all of `cnncalc verify`: LibreOffice's recalculation, reading its copy back (one streaming pass),
  rebuilding the model and the plan from the file's own cells, and comparing every formula cell (tolerance 1e-9
  relative)."""


def version(module):
    try:
        return __import__(module).__version__
    except Exception:
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
            f"openpyxl {version('openpyxl')}, keras {version('keras')} with jax {version('jax')}; {lo}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="toy and lenet_small only")
    parser.add_argument("--cases", nargs="+", choices=CASES, help="which models (default: all four)")
    parser.add_argument("--repeat", type=int, default=1, help="export and bare-writer runs per case; the best is kept (default 1)")
    parser.add_argument("--skip", nargs="+", default=[], choices=["predict", "verify"], help="leave out Keras predict or verify")
    parser.add_argument("--results", metavar="PATH", help="also write the table, the machine and the command to PATH (markdown)")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "CASE", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, case, work = args.child
        print(json.dumps(CHILDREN[kind](case, work)))
        return 0
    cases = args.cases or (QUICK if args.quick else CASES)
    results = []
    with tempfile.TemporaryDirectory(prefix="cnncalc-bench-") as work:
        for case in cases:
            print(f"measuring {case} ...", file=sys.stderr, flush=True)
            results.append(measure(case, work, args.repeat, args.skip))
    text = table(results)
    print(text)
    print(details(results))
    if args.results:
        command = "python benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
        Path(args.results).write_text(
            f"# Benchmark results\n\nCommand: `{command.strip()}` ({time.strftime('%Y-%m-%d')})\n\nMachine: {machine()}\n\n{text}\n\n"
            f"{details(results)}\n\n{NOTES}\n")
        print(f"wrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
