"""Hostile and broken input (issue 7): clear errors, nothing lost, nothing executed, nothing injected.

- the corpus in tests/data/hostile/ (made by make_corpus.py) through the command line: exit 2, one line
  `cnncalc: error: ...`, no traceback, no file written, no code run;
- size guards: absurd models, datasets, zip members, JSON and sheets refused before anything is allocated;
- writing: an interrupted or failing write leaves neither the target nor a temporary file; existing files
  are never overwritten without --force; a missing or read-only folder is a clear error;
- injection: text from files (layer, model and student names) is written as text, never as a formula.
"""

import contextlib
import json
import os
import shutil
import signal
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import openpyxl
import pytest

from cnncalc import cli, guards
from cnncalc.recalc import libreoffice as recalc
from cnncalc.errors import CnncalcError
from cnncalc.kerasfiles.formats import read_model_file, write_keras_file
from cnncalc.kerasfiles.loader import load_model, model_from_layer_list, save_keras
from cnncalc.sheets.workbook import plan_workbook
from cnncalc.sheets.writer import write_plan
from test_hdf5_storage import edit_h5, run_cli as run  # cli.main in this process: (exit code, stdout, stderr)

HOSTILE = Path(__file__).parent / "data" / "hostile"
CORPUS = json.loads((HOSTILE / "corpus.json").read_text())
SMALL = {"input_shape": [4, 4, 1], "seed": 0, "name": "small", "layers": [
    {"Conv2D": {"filters": 1, "kernel_size": 3, "activation": "relu"}},
    {"Flatten": {}},
    {"Dense": {"units": 2, "activation": "softmax"}},
]}
FORMULA_LIKE = ['=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "-1+1", "@SUM(1)"]


def assert_one_line_error(code, err, *words):
    assert code == 2, err
    assert err.startswith("cnncalc: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"


@contextlib.contextmanager
def time_limit(seconds):
    """Fail a block that runs longer than `seconds` (a hang), even inside C code once it returns."""
    def alarm(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.perf_counter()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.perf_counter() - start < seconds


def fake_recalculate(src, out_dir=None, timeout=900):
    """LibreOffice's stand-in for tests of reading: the workbook unchanged, in a fresh folder."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="cnncalc-test-recalc-"))
    shutil.copyfile(src, folder / (Path(src).stem + ".xlsx"))
    return folder / (Path(src).stem + ".xlsx")


# ---------------------------------------------------------------- the corpus, through the command line


@pytest.mark.parametrize("case", CORPUS["cases"], ids=[c["file"] for c in CORPUS["cases"]])
def test_hostile_corpus(case, tmp_path, monkeypatch):
    """Each hostile file through its command: exit 2, one line naming the problem, no file written, nothing run.

    `verify` runs with LibreOffice replaced by a copy (these files are refused while reading;
    test_verify_refuses_text_in_a_weight_cell_with_libreoffice runs one through the real thing).
    """
    monkeypatch.setattr(recalc, "recalculate", fake_recalculate)
    monkeypatch.setattr(guards, "MAX_READ_SECONDS", 3)  # found_hdf5_endless_loop.h5 would take the whole minute
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    argv = [a.format(file=HOSTILE / case["file"], ok=HOSTILE / "ok_model.keras", dir=HOSTILE, out=out) for a in case["argv"]]
    with time_limit(20):
        code, _, err = run(argv, cwd=work)
    assert_one_line_error(code, err, case["expect"])
    assert list(out.iterdir()) == [] and list(work.iterdir()) == [], "a file was written"
    for marker in CORPUS["markers"]:
        assert not (work / marker).exists() and not Path(marker).exists(), f"code from {case['file']} ran"


def test_corpus_is_small_and_complete():
    made = {p.name for p in HOSTILE.iterdir()} - {"make_corpus.py", "corpus.json", "ok_model.keras", "ok_input.npy", "__pycache__"}
    assert made == {c["file"] for c in CORPUS["cases"]}
    assert all((HOSTILE / c["file"]).stat().st_size < 25_000 for c in CORPUS["cases"])
    assert len(CORPUS["cases"]) >= 50


def test_the_corpus_files_that_carry_code_really_do(tmp_path, monkeypatch):
    """A positive control: the pickle in pickle.npy does create its marker when unpickled (here, on purpose, in a
    scratch folder), and the Lambda's marshalled code names its marker. So the corpus test would see them run."""
    import base64

    with zipfile.ZipFile(HOSTILE / "lambda.keras") as zf:
        layers = json.loads(zf.read("config.json"))["config"]["layers"]
    code = next(l for l in layers if l["class_name"] == "Lambda")["config"]["function"]["config"]["code"]
    assert b"cnncalc_lambda_ran.txt" in base64.b64decode(code)
    monkeypatch.chdir(tmp_path)
    np.load(HOSTILE / "pickle.npy", allow_pickle=True)  # what cnncalc never does
    assert (tmp_path / "cnncalc_pickle_ran.txt").exists()


@pytest.mark.libreoffice
def test_verify_refuses_text_in_a_weight_cell_with_libreoffice(soffice, tmp_path):
    code, _, err = run(["verify", HOSTILE / "text_in_weight.xlsx"], cwd=tmp_path)
    assert_one_line_error(code, err, "not a number", "'abc'")


def test_traceback_flag_shows_the_cause_of_a_damaged_file(tmp_path):
    with pytest.raises(CnncalcError) as info:
        cli.main(["--traceback", "summary", str(HOSTILE / "truncated.h5")])
    assert info.value.__cause__ is not None  # the h5py error behind the one-line message, for a bug report


# ---------------------------------------------------------------- a reader that never returns, or crashes


def test_a_file_that_sends_libhdf5_into_an_endless_loop_is_stopped(monkeypatch):
    """Found by the fuzz tests: a mutated Keras .h5 on which libhdf5 never returns (inside C, where no signal
    reaches). Model files are read in a child process with a time limit, so it is a one-line error."""
    monkeypatch.setattr(guards, "MAX_READ_SECONDS", 2)
    with time_limit(10), pytest.raises(CnncalcError, match="longer than 2 s"):
        load_model(HOSTILE / "found_hdf5_endless_loop.h5")


@pytest.mark.parametrize("name, words", [("found_hdf5_endless_loop.h5", ("damaged", "longer than 2 s")),
                                         ("hdf5_external_link.h5", ("external link",) * 2),
                                         ("hdf5_external_storage.h5", ("external storage",) * 2)])
def test_the_compile_settings_are_read_as_guarded_as_the_model(tmp_path, monkeypatch, name, words):
    """`cnncalc train` takes the loss and optimizer from the model file: they are read as the model is, in the
    time-limited child process, and an HDF5 file with anything pointing outside it is refused before they are.
    (compile_settings alone reads no weights: libhdf5's endless loop is in them; its walk of the links finds the damage.)"""
    from cnncalc.kerasfiles.compile import compile_settings

    monkeypatch.setattr(guards, "MAX_READ_SECONDS", 2)
    np.save(tmp_path / "x.npy", np.zeros((4, 4)))
    np.save(tmp_path / "y.npy", np.array([0]))
    with time_limit(20):
        with pytest.raises(CnncalcError, match=words[0]) as info:
            compile_settings(HOSTILE / name)
        assert "\n" not in str(info.value)
        code, _, err = run(["train", HOSTILE / name, "--input", tmp_path / "x.npy", "--labels", tmp_path / "y.npy",
                            "-o", tmp_path / "out" / "fit.xlsx"])
    assert_one_line_error(code, err, words[1])
    assert not (tmp_path / "out").exists()


def test_reading_the_compile_settings_alone_has_the_time_limit_too(tmp_path, monkeypatch):
    import cnncalc.kerasfiles.formats as keras_io
    from cnncalc.kerasfiles.compile import compile_settings

    monkeypatch.setattr(guards, "MAX_READ_SECONDS", 1)
    monkeypatch.setattr(keras_io, "_read_compile_config", lambda path: time.sleep(30))  # libhdf5 in an endless loop
    with time_limit(10), pytest.raises(CnncalcError, match="longer than 1 s"):
        compile_settings(tiny_keras(tmp_path))


def test_train_reads_the_model_file_once(tmp_path, monkeypatch):
    """The model and the settings it was compiled with (no --loss, no --optimizer) come from one read of the file."""
    import cnncalc.kerasfiles.formats as keras_io

    path = tmp_path / "m.keras"
    write_keras_file(model_from_layer_list(SMALL).to_spec(), path, {"loss": "categorical_crossentropy", "optimizer": "sgd"})
    np.save(tmp_path / "x.npy", np.zeros((4, 4)))
    np.save(tmp_path / "y.npy", np.array([1]))
    reads, real = [], keras_io._isolated
    monkeypatch.setattr(keras_io, "_isolated", lambda read, where: reads.append(where) or real(read, where))
    monkeypatch.setattr("cnncalc.kerasfiles.compile.compile_settings", lambda path: pytest.fail("the file was read again for its compile settings"))
    code, out, err = run(["train", path, "--input", tmp_path / "x.npy", "--labels", tmp_path / "y.npy", "-o", tmp_path / "fit.xlsx"])
    assert code == 0, err
    assert reads == [str(path)] and (tmp_path / "fit.xlsx").exists()


def test_a_reader_that_crashes_is_a_one_line_error(tmp_path, monkeypatch):
    import cnncalc.kerasfiles.formats as keras_io

    monkeypatch.setattr(keras_io, "_read_model_file", lambda *a: os.kill(os.getpid(), signal.SIGKILL))
    with pytest.raises(CnncalcError, match="crashed reading it .signal 9"):
        load_model(tiny_keras(tmp_path))


def test_the_reading_process_hands_back_exactly_what_was_read(tmp_path):
    """The spec crosses from the reading process as JSON and .npy bytes: the same as reading in this process."""
    import cnncalc.kerasfiles.formats as keras_io

    path = tiny_keras(tmp_path)
    here = keras_io._read_model_file(str(path), None, None)
    there = read_model_file(path)
    assert json.dumps({**here, "layers": [{**l, "weights": None} for l in here["layers"]]}) == \
        json.dumps({**there, "layers": [{**l, "weights": None} for l in there["layers"]]})
    for a, b in zip(here["layers"], there["layers"]):
        for x, y in zip(a["weights"], b["weights"]):
            assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y)


# ---------------------------------------------------------------- size guards: refused before allocating


def tiny_keras(tmp_path, change_config=None, change_weights=None, name="m.keras"):
    """A small valid .keras file, optionally with its config or weights changed."""
    rng = np.random.default_rng(0)
    spec = {"name": "m", "input_shape": (4, 4, 1), "layers": [
        {"class_name": "Conv2D", "config": {"filters": 1, "kernel_size": [3, 3]}, "weights": [rng.normal(size=(3, 3, 1, 1)), np.zeros(1)]},
        {"class_name": "Flatten", "config": {}, "weights": []},
        {"class_name": "Dense", "config": {"units": 2}, "weights": [rng.normal(size=(4, 2)), np.zeros(2)]}]}
    path = tmp_path / name
    write_keras_file(spec, path)
    if change_config:
        with zipfile.ZipFile(path) as zf:
            parts = {n: zf.read(n) for n in zf.namelist()}
        config = json.loads(parts["config.json"])
        change_config(config)
        parts["config.json"] = json.dumps(config).encode()
        with zipfile.ZipFile(path, "w") as zf:
            for n, d in parts.items():
                zf.writestr(n, d)
    if change_weights:
        edit_h5(path, change_weights)
    return path


def dense_units(units):
    return lambda c: c["config"]["layers"][3]["config"].update(units=units)


def test_a_huge_dense_is_refused_from_its_config_before_any_weight_is_read(tmp_path, monkeypatch):
    path = tiny_keras(tmp_path, dense_units(10**9))
    monkeypatch.setattr(h5py.Dataset, "__getitem__", lambda *a: pytest.fail("a weight was read"))
    with pytest.raises(CnncalcError, match=r"too large.*50,000,000.*guards\.py.*Received 4,000,000,000"):
        load_model(path)


def test_a_huge_conv_is_refused_from_its_config(tmp_path):
    path = tiny_keras(tmp_path, lambda c: c["config"]["layers"][1]["config"].update(filters=10**8))
    with pytest.raises(CnncalcError, match=r"weight conv2d/kernel of shape \(3, 3, 1, 100000000\) is too large"):
        load_model(path)


def test_a_huge_layer_output_is_refused(tmp_path):
    path = tiny_keras(tmp_path, lambda c: c["config"]["layers"].insert(1, {
        "module": "keras.layers", "class_name": "ZeroPadding2D", "config": {"padding": 10**6}}))
    with pytest.raises(CnncalcError, match=r"output of layer 'zero_padding2d'.*too large"):
        load_model(path)


def test_new_refuses_a_huge_spec_before_drawing_a_weight(monkeypatch):
    import cnncalc.kerasfiles.loader as loader

    monkeypatch.setattr(loader, "initial_weight", lambda *a: pytest.fail("a weight was drawn"))
    spec = {"input_shape": [28, 28, 1], "layers": [{"Flatten": {}}, {"Dense": {"units": 10**9}}]}
    with pytest.raises(CnncalcError, match="too large"):
        model_from_layer_list(spec)


def test_the_limits_live_in_one_place(tmp_path, monkeypatch):
    """guards.MAX_PARAMS decides: a model just over it is refused, with the limit in the message."""
    path = tiny_keras(tmp_path)
    assert load_model(path).count_params() == 10 + 10
    monkeypatch.setattr(guards, "MAX_PARAMS", 19)
    with pytest.raises(CnncalcError, match="at most 19 "):
        load_model(path)


def test_a_dataset_declaring_a_huge_shape_is_refused_before_reading(tmp_path, monkeypatch):
    def huge(f):
        del f["layers/dense/vars/0"]
        f.create_dataset("layers/dense/vars/0", shape=(200_000, 200_000), dtype="f4", chunks=(64, 64))

    path = tiny_keras(tmp_path, change_weights=huge)
    assert path.stat().st_size < 100_000  # the file only claims 160 GB
    with time_limit(5), pytest.raises(CnncalcError, match=r"layers/dense/vars/0 of shape \(200000, 200000\).*too large"):
        read_model_file(path)  # without a config check: the dataset's own declared size stops it


@pytest.mark.parametrize("dtype, data", [("strings", np.array([b"a", b"b"])), ("complex", np.array([1j, 2], "c8"))])
def test_weights_that_are_not_real_numbers(tmp_path, dtype, data):
    def change(f):
        del f["layers/dense/vars/1"]
        f.create_dataset("layers/dense/vars/1", data=data)

    with pytest.raises(CnncalcError, match="Expected numbers"):
        load_model(tiny_keras(tmp_path, change_weights=change))


def test_a_zip_bomb_is_refused_from_its_declared_sizes(tmp_path):
    """A member that would inflate past the limit is refused before a byte of it is decompressed."""
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("config.json", b" " * (guards.MAX_JSON_BYTES + 1))  # compresses about 1000:1
        zf.writestr("model.weights.h5", b"")
    assert path.stat().st_size < 100_000
    with time_limit(5), pytest.raises(CnncalcError, match="too large|zip bomb"):
        read_model_file(path)


def test_an_absurd_compression_ratio_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(guards, "ZIP_RATIO_FROM", 1000)
    path = tiny_keras(tmp_path)
    with zipfile.ZipFile(path) as zf:
        parts = {n: zf.read(n) for n in zf.namelist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, d in parts.items():
            zf.writestr(n, d + (b"\0" * 5_000_000 if n == "model.weights.h5" else b""))
    with pytest.raises(CnncalcError, match="zip bomb"):
        read_model_file(path)


@pytest.mark.parametrize("depth", [150, 50_000])  # deeper than MAX_JSON_DEPTH; deeper than Python's recursion limit
def test_json_nesting_is_bounded(tmp_path, depth):
    path = tiny_keras(tmp_path)
    with zipfile.ZipFile(path) as zf:
        parts = {n: zf.read(n) for n in zf.namelist()}
    config = json.loads(parts["config.json"])
    config["config"]["deep"] = None
    parts["config.json"] = json.dumps(config).replace('"deep": null', '"deep": ' + "[" * depth + "]" * depth).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in parts.items():
            zf.writestr(n, d)
    with pytest.raises(CnncalcError, match="nesting"):
        read_model_file(path)


# ---------------------------------------------------------------- wrong values, wrong types


@pytest.mark.parametrize("change, words", [
    (lambda c: c["config"]["layers"][1]["config"].update(filters="3"), "filters"),
    (lambda c: c["config"]["layers"][1]["config"].update(filters=2.0), "filters"),
    (lambda c: c["config"]["layers"][1]["config"].update(filters=True), "filters"),
    (lambda c: c["config"]["layers"][1]["config"].update(kernel_size=[3, 3, 3]), "kernel_size"),
    (lambda c: c["config"]["layers"][1]["config"].update(kernel_size=[-3, 3]), "kernel_size"),
    (lambda c: c["config"]["layers"][1]["config"].update(strides=None), "strides"),
    (lambda c: c["config"]["layers"][1]["config"].update(groups="x"), "groups"),
    (lambda c: c["config"]["layers"][1]["config"].update(use_bias="false"), "use_bias"),
    (lambda c: c["config"]["layers"][1]["config"].update(activation="mish"), "'mish'"),
    (lambda c: c["config"]["layers"][1]["config"].update(activation=["relu"]), "activation"),
    (lambda c: c["config"]["layers"][1]["config"].update(data_format="channels_first"), "channels_first"),
    (lambda c: c["config"]["layers"][1]["config"].update(padding=3), "padding"),
    (lambda c: c["config"]["layers"][1]["config"].update(name=["a"]), "Invalid name"),
    (lambda c: c["config"]["layers"][1]["config"].update(name="x" * 1000), "Invalid name"),
    (lambda c: c["config"]["layers"][2]["config"].update(name="conv2d"), "unique"),
    (lambda c: c["config"]["layers"][3]["config"].update(units=-2), "units"),
    (lambda c: c["config"]["layers"][3]["config"].update(units=1e308), "units"),
    (lambda c: c["config"]["layers"][0]["config"].update(batch_shape=[None, 4, "4", 1]), "input shape"),
    (lambda c: c["config"]["layers"][0]["config"].update(batch_shape=[None, 4, 4, float("inf")]), "input shape"),
    (lambda c: c["config"]["layers"][0]["config"].update(batch_shape=[None, None, 4, 1]), "not fixed"),
    (lambda c: c["config"].update(name={"a": 1}), "Invalid name"),
    (lambda c: c["config"].update(layers="all of them"), "list of layers"),
    (lambda c: c["config"]["layers"].append(["Dense", 3]), "Invalid layer"),
])
def test_wrong_types_in_a_config_are_one_line_errors(tmp_path, change, words):
    with pytest.raises(CnncalcError) as info:
        load_model(tiny_keras(tmp_path, change))
    assert words in str(info.value) and "\n" not in str(info.value), str(info.value)
    assert not isinstance(info.value.__cause__, (NameError, AttributeError))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(tmp_path, value):
    def change(f):
        f["layers/conv2d/vars/0"][0, 0, 0, 0] = value

    with pytest.raises(CnncalcError, match="NaN or infinity"):
        load_model(tiny_keras(tmp_path, change_weights=change))


def test_a_model_that_overflows_is_refused_before_writing(tmp_path):
    model = model_from_layer_list(SMALL)
    model.layers[0].weights["kernel"][:] = 1e300
    with pytest.raises(CnncalcError, match="overflows"):
        plan_workbook(model, np.full((1, 4, 4, 1), 1e10))


@pytest.mark.parametrize("spec, words", [
    ({"input_shape": [4, 4, 1], "seed": "x", "layers": [{"Flatten": {}}]}, "seed"),
    ({"input_shape": [4, 4, 1], "seed": -1, "layers": [{"Flatten": {}}]}, "seed"),
    ({"input_shape": [4, 4.5, 1], "layers": [{"Flatten": {}}]}, "input_shape"),
    ({"input_shape": [4, 4, 1], "layers": [{"Dense": [1, 2]}]}, "not understood"),
    ({"input_shape": [4, 4, 1], "layers": [[3]]}, "not understood"),
    ({"input_shape": [4, 4, 1], "layers": [{"Flatten": {}}] * 1001}, "too large"),
    ({"input_shape": [4, 4, 1], "layers": [{"Conv2D": {"filters": 1, "kernel_size": 3, "name": 7}}]}, "Invalid name"),
])
def test_new_spec_mistakes(tmp_path, spec, words):
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    code, _, err = run(["new", tmp_path / "spec.json", "-o", tmp_path / "m.keras"])
    assert_one_line_error(code, err, words)
    assert not (tmp_path / "m.keras").exists()


# ---------------------------------------------------------------- workbooks given to verify and check


def small_book(path, model=None):
    model = model or model_from_layer_list(SMALL)
    write_plan(plan_workbook(model, np.arange(16.0).reshape(1, 4, 4, 1), "1/8"), path)
    return path


def test_an_xml_entity_bomb_in_a_workbook_is_refused_quickly(tmp_path, monkeypatch):
    """Billion laughs in sharedStrings.xml and in a sheet: read through defusedxml, refused in one line."""
    monkeypatch.setattr(recalc, "recalculate", fake_recalculate)
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)) + "]>")
    import xlsxwriter

    other = xlsxwriter.Workbook(tmp_path / "shared.xlsx")  # another program's workbook: its strings in a shared table
    other.add_worksheet("_cnncalc").write_string(0, 0, "cnncalc workbook")
    other.close()
    for book, target in ((tmp_path / "shared.xlsx", "xl/sharedStrings.xml"), (small_book(tmp_path / "book.xlsx"), "xl/worksheets/sheet6.xml")):
        with zipfile.ZipFile(book) as zf:
            parts = {n: zf.read(n) for n in zf.namelist()}
        body = parts[target].decode().split("?>", 1)[-1]
        parts[target] = (bomb + body.replace("<t>", "<t>&lol9;", 1).replace("<v>", "<v>&lol9;", 1)).encode()
        bad = tmp_path / "bomb.xlsx"
        with zipfile.ZipFile(bad, "w") as zf:
            for n, d in parts.items():
                zf.writestr(n, d)
        for command in ("verify", "check"):
            with time_limit(10):
                code, _, err = run([command, bad])
            assert_one_line_error(code, err)


def test_a_sheet_claiming_a_million_rows_is_read_quickly(tmp_path, monkeypatch):
    """A <dimension> of A1:XFD1048576 and a cell in the last row: read in well under a second, never a hang."""
    monkeypatch.setattr(recalc, "recalculate", fake_recalculate)
    book = small_book(tmp_path / "book.xlsx")
    with zipfile.ZipFile(book) as zf:
        parts = {n: zf.read(n) for n in zf.namelist()}
    for name, data in parts.items():
        if name.startswith("xl/worksheets/"):
            text = data.decode().replace("</sheetData>", '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row></sheetData>')
            parts[name] = text.replace('<dimension ref="', '<dimension ref="A1:XFD1048576" was="').encode()
    with zipfile.ZipFile(book, "w") as zf:
        for n, d in parts.items():
            zf.writestr(n, d)
    with time_limit(20):
        code, out, err = run(["verify", book])
    assert code in (0, 1, 2) and "Traceback" not in err, out + err  # a stray cell far away: checked or refused, never a crash


def test_too_many_cells_to_read_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(guards, "MAX_CELLS_READ", 100)
    monkeypatch.setattr(recalc, "MAX_CELLS_READ", 100)
    code, _, err = run(["verify", small_book(tmp_path / "book.xlsx")])
    assert_one_line_error(code, err, "too large to read")


def test_a_workbook_from_another_program_and_a_missing_sheet(tmp_path):
    wb = openpyxl.Workbook()
    wb.active["A1"] = 3
    wb.save(tmp_path / "other.xlsx")
    assert_one_line_error(*run(["verify", tmp_path / "other.xlsx"])[::2], "not a cnncalc workbook")
    book = small_book(tmp_path / "book.xlsx")
    wb = openpyxl.load_workbook(book)
    wb.remove(wb["_cnncalc"])
    wb.save(book)
    assert_one_line_error(*run(["verify", book])[::2], "not a cnncalc workbook")


@pytest.mark.parametrize("value, data_type", [("abc", "s"), ("#DIV/0!", "e"), ("#NAME?", "e"), (True, "b"), (None, "n")])
def test_weight_and_input_cells_that_are_not_numbers(tmp_path, monkeypatch, value, data_type):
    monkeypatch.setattr(recalc, "recalculate", fake_recalculate)
    model = model_from_layer_list(SMALL)
    plan = plan_workbook(model, np.arange(16.0).reshape(1, 4, 4, 1), "1/8")
    book = write_plan(plan, tmp_path / "book.xlsx")
    for sheet, (r, c) in [("Weights", plan.weights[("dense", "bias")].pos((1,))), ("Sample 1", plan.inputs[0].pos((2, 3, 0)))]:
        wb = openpyxl.load_workbook(book)
        cell = wb[sheet].cell(r + 1, c + 1)
        cell.value = value
        if value is not None:
            cell.data_type = data_type
        wb.save(tmp_path / "edited.xlsx")
        code, _, err = run(["verify", tmp_path / "edited.xlsx"])
        assert_one_line_error(code, err, "is not a number", repr(value))


def test_practice_workbooks_through_check(tmp_path):
    pytest.importorskip("cnncalc.classroom.check")
    code, _, err = run(["check", HOSTILE / "other_program.xlsx"])
    assert_one_line_error(code, err, "not a cnncalc workbook")
    code, _, err = run(["check", HOSTILE / "xml_bomb.xlsx"])
    assert_one_line_error(code, err)


# ---------------------------------------------------------------- writing: nothing lost, nothing half-written


class Halfway(Exception):
    pass


@pytest.mark.parametrize("interrupt", [Halfway("disk on fire"), KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_a_write_stopped_halfway_leaves_nothing(tmp_path, monkeypatch, interrupt):
    import xlsxwriter.worksheet

    calls = {"n": 0}
    real = xlsxwriter.worksheet.Worksheet._write_formula  # what the public write_formula and cnncalc's writer both call

    def write_formula(self, *args, **kw):
        calls["n"] += 1
        if calls["n"] == 20:
            raise interrupt
        return real(self, *args, **kw)

    monkeypatch.setattr(xlsxwriter.worksheet.Worksheet, "_write_formula", write_formula)
    out = tmp_path / "book.xlsx"
    if isinstance(interrupt, Halfway):  # a bug: exit 3 (never 1, "differences found"), one line; --traceback shows its stack
        code, _, err = run(["example", "-o", out])
        assert code == 3 and err.startswith("cnncalc: internal error: Halfway: disk on fire") and err.count("\n") == 1, err
        assert "--traceback" in err and list(tmp_path.iterdir()) == []
        calls["n"] = 0
        with pytest.raises(Halfway):
            cli.main(["--traceback", "example", "-o", str(out)])
    else:
        code, _, err = run(["example", "-o", out])
        assert code == (130 if isinstance(interrupt, KeyboardInterrupt) else 2), err
        if code == 2:
            assert_one_line_error(code, err, "No space left")
    assert calls["n"] == 20 and list(tmp_path.iterdir()) == []


def test_an_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    import cnncalc.kerasfiles.formats as keras_io

    out = tmp_path / "m.keras"
    out.write_bytes(b"my trained model")
    monkeypatch.setattr(keras_io, "_weights_h5_bytes", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    (tmp_path / "spec.json").write_text(json.dumps(SMALL))
    code, _, _ = run(["new", tmp_path / "spec.json", "-o", out, "--force"])
    assert code == 130 and out.read_bytes() == b"my trained model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "spec.json"]


# The kind of file each writing command writes, where it is not a workbook.
OUTPUT_SUFFIX = {"new": ".keras", "export": ".keras", "check --csv": ".csv"}


def writing_commands(tmp_path):
    """Every command that writes a file, as argv with {out} for the file it writes."""
    (tmp_path / "spec.json").write_text(json.dumps(SMALL))
    model = tmp_path / "m.keras"
    save_keras(model_from_layer_list(SMALL), model)
    np.save(tmp_path / "x.npy", np.zeros((4, 4)))
    np.save(tmp_path / "y.npy", np.array([1]))
    book = small_book(tmp_path / "book.xlsx")
    commands = {
        "example": ["example", "-o", "{out}"],
        "build": ["build", model, "--input", tmp_path / "x.npy", "-o", "{out}"],
        "new": ["new", tmp_path / "spec.json", "-o", "{out}"],
        "practice": ["practice", "-o", "{out}"],
        "verify --keep": ["verify", book, "--keep", "{out}"],
        "export": ["export", book, "-o", "{out}"],
        "train": ["train", model, "--input", tmp_path / "x.npy", "--labels", tmp_path / "y.npy",
                  "--loss", "categorical_crossentropy", "--optimizer", "sgd", "-o", "{out}"],
    }
    try:
        import cnncalc.classroom.check  # noqa: F401
    except ImportError:
        return commands
    practice = tmp_path / "p.xlsx"
    assert run(["practice", "-o", practice])[0] == 0
    commands["check --graded"] = ["check", practice, "--graded", "{out}"]
    commands["check --csv"] = ["check", practice, "--csv", "{out}"]
    return commands


def test_no_command_overwrites_without_force(tmp_path, monkeypatch):
    monkeypatch.setattr(recalc, "recalculate", lambda *a, **k: pytest.fail("verify --keep ran LibreOffice before refusing"))
    for name, argv in writing_commands(tmp_path).items():
        out = tmp_path / f"existing-{name.replace(' ', '')}{OUTPUT_SUFFIX.get(name, '.xlsx')}"
        out.write_bytes(b"precious")
        code, _, err = run([str(a).format(out=out) for a in argv])
        assert_one_line_error(code, err, "already exists", "--force")
        assert out.read_bytes() == b"precious", name
    folder = tmp_path / "all"
    folder.mkdir()
    (folder / "conv_basic.xlsx").write_bytes(b"precious")
    code, _, err = run(["examples", "--all", "--out", folder])
    assert_one_line_error(code, err, "already exists")
    assert (folder / "conv_basic.xlsx").read_bytes() == b"precious"
    assert not [p for p in tmp_path.rglob(".cnncalc-*")]


def test_every_writing_command_is_atomic(tmp_path, monkeypatch):
    """Stopped at the very last step (the rename onto the target), each command leaves nothing: neither the
    file, nor a temporary one, nor the folder it made for it."""
    monkeypatch.setattr(recalc, "recalculate", fake_recalculate)
    commands = writing_commands(tmp_path)
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    for name, argv in commands.items():
        out = tmp_path / "new" / f"{name.replace(' ', '')}{OUTPUT_SUFFIX.get(name, '.xlsx')}"
        code, _, err = run([str(a).format(out=out) for a in argv])
        assert code == 130 and err == "cnncalc: interrupted\n", (name, err)
        assert not (tmp_path / "new").exists(), name
    assert not [p for p in tmp_path.rglob(".cnncalc-*")]


@pytest.mark.parametrize("where", ["missing", "file_as_folder", "proc", "not_writable"])
def test_an_unwritable_place_is_a_clear_error(tmp_path, monkeypatch, where):
    if where == "missing":  # below a file: no folder can be made there
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "nope" / "book.xlsx"
    elif where == "file_as_folder":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "book.xlsx"
    elif where == "proc":  # a folder that exists but where nothing can be created, even as root
        out = Path("/proc/cnncalc-test-book.xlsx")
    else:  # as root, chmod does not stop writes: pretend the folder is read-only
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if mode == os.W_OK else real(p, mode, **kw))
        out = tmp_path / "book.xlsx"
    (tmp_path / "spec.json").write_text(json.dumps(SMALL))
    for argv in (["example", "-o", out], ["new", tmp_path / "spec.json", "-o", out]):
        code, _, err = run(argv)
        assert code == 2 and err.startswith("cnncalc: error: ") and err.count("\n") == 1, err
    assert not out.exists()


# ---------------------------------------------------------------- injection: text stays text


def test_names_from_a_model_file_reach_the_terminal_escaped(tmp_path):
    """A model's or a layer's name may hold characters that reorder or break a terminal's line (a right-to-left
    override, a line separator, a zero-width space): `summary` shows them as escapes, names and all else printable."""
    spec = model_from_layer_list(SMALL).to_spec()
    spec["name"] = "evil\u202edcba"
    spec["layers"][0]["config"]["name"] = "conv\u2028next"
    spec["layers"][2]["config"]["name"] = "out\u200b"
    write_keras_file(spec, tmp_path / "m.keras")
    code, out, err = run(["summary", tmp_path / "m.keras"])
    assert code == 0, err
    assert 'Model: "evil\\u202edcba"' in out and "│ conv\\u2028next (Conv2D) " in out and "│ out\\u200b (Dense) " in out
    assert all(ch.isprintable() for line in out.splitlines() for ch in line), ascii(out)


def test_half_a_character_in_a_name_is_refused(tmp_path):
    """JSON can write half of a UTF-16 surrogate pair ("\\ud800"): no terminal, workbook or HDF5 file can take it."""
    path = tiny_keras(tmp_path, lambda c: c["config"].update(name="m\ud800"))
    np.save(tmp_path / "x.npy", np.zeros((4, 4)))
    for argv in (["summary", path], ["build", path, "--input", tmp_path / "x.npy", "-o", tmp_path / "out" / "b.xlsx"]):
        code, _, err = run(argv)
        assert_one_line_error(code, err, "surrogate", "'\\ud800'")
    assert not (tmp_path / "out").exists()


def test_formula_like_names_are_written_as_text(tmp_path, monkeypatch):
    """Layer and model names that look like formulas stay literal strings, and the workbook still verifies."""
    monkeypatch.setattr(recalc, "recalculate", fake_recalculate)
    spec = json.loads(json.dumps(SMALL))
    spec["name"] = FORMULA_LIKE[0]
    for layer, name in zip(spec["layers"], FORMULA_LIKE[1:]):
        next(iter(layer.values()))["name"] = name
    model_path = tmp_path / "m.keras"
    save_keras(model_from_layer_list(spec), model_path)
    np.save(tmp_path / "x.npy", np.arange(16.0).reshape(4, 4))
    book = tmp_path / "book.xlsx"
    assert run(["build", model_path, "--input", tmp_path / "x.npy", "-o", book])[0] == 0
    wb = openpyxl.load_workbook(book)
    assert wb.sheetnames == ["Read me", "Summary", "Sample 1", "Steps", "Weights", "_cnncalc"]  # no name from the file
    found = set()
    for ws in wb:
        for row in ws.iter_rows():
            for cell in row:
                for text in FORMULA_LIKE:
                    if isinstance(cell.value, str) and text in cell.value:
                        assert cell.data_type == "s", (ws.title, cell.coordinate, cell.value)
                        found.add(text)
    assert found == set(FORMULA_LIKE)
    code, out, err = run(["verify", book])
    assert code == 0 and "OK" in out, out + err


def test_the_writer_never_turns_text_into_a_formula(tmp_path):
    from cnncalc.sheets.cells import Cell, cells_block
    from cnncalc.sheets.cells import WorkbookPlan

    plan = WorkbookPlan()
    sheet = plan.add_sheet("Text")
    sheet.add(cells_block({(i, 0): Cell(text, style="text") for i, text in enumerate(FORMULA_LIKE + ["http://x.org", "1e5", "007"])}))
    write_plan(plan, tmp_path / "t.xlsx")
    ws = openpyxl.load_workbook(tmp_path / "t.xlsx")["Text"]
    assert [ws.cell(i + 1, 1).value for i in range(7)] == FORMULA_LIKE + ["http://x.org", "1e5", "007"]
    assert all(ws.cell(i + 1, 1).data_type == "s" for i in range(7)) and not ws._hyperlinks


def test_a_students_formula_like_name_stays_text_in_the_graded_copy_and_csv(tmp_path):
    pytest.importorskip("cnncalc.classroom.check")
    practice = tmp_path / "p.xlsx"
    assert run(["practice", "-o", practice])[0] == 0
    wb = openpyxl.load_workbook(practice)
    cell = wb["Instructions"]["B3"]
    cell.value, cell.data_type = FORMULA_LIKE[0], "s"
    wb.save(practice)
    code, out, err = run(["check", practice, "--graded", tmp_path / "g.xlsx", "--csv", tmp_path / "grades.csv"])
    assert code == 1, out + err
    grade = openpyxl.load_workbook(tmp_path / "g.xlsx")["Grade"]
    names = [c for row in grade.iter_rows() for c in row if isinstance(c.value, str) and "HYPERLINK" in c.value]
    assert names and all(c.data_type == "s" for c in names)
    row = (tmp_path / "grades.csv").read_text().splitlines()[1]
    assert row.startswith("\"'=HYPERLINK(")  # a leading ' keeps a spreadsheet from reading it as a formula


# ---------------------------------------------------------------- nothing from a file is executed


def test_nothing_in_a_model_or_input_file_runs(tmp_path, monkeypatch):
    """The Lambda's bytecode, the pickle in an .npy and a custom class in the config: refused, nothing created."""
    monkeypatch.setattr(recalc, "recalculate", lambda *a, **k: pytest.fail("LibreOffice opened a refused workbook"))
    for argv in (["summary", HOSTILE / "lambda.keras"],
                 ["predict", HOSTILE / "ok_model.keras", "--input", HOSTILE / "pickle.npy"],
                 ["summary", HOSTILE / "custom_class.keras"],
                 ["verify", HOSTILE / "meta_lambda.xlsx"]):
        code, _, err = run(argv, cwd=tmp_path)
        assert_one_line_error(code, err)
    assert list(tmp_path.iterdir()) == []
