"""Fuzzing with mutated real files: model files saved by real Keras, `cnncalc new` specs, cnncalc workbooks and
filled-in practice workbooks, each mutated byte by byte and structure by structure (zip members, config JSON,
HDF5 datasets and attributes, sheet XML, the architecture in the hidden sheet).

Every case must end normally or with a one-line CnncalcError: no other exception, no hang (a time limit per
case), no file left half-written. The counts are printed at the end of the run (see tests/fuzzing.py).
"""

import contextlib
import io
import json
import os
import re
import shutil
import tempfile
import warnings
from html import unescape
from pathlib import Path
from xml.sax.saxutils import escape

import h5py
import numpy as np
import openpyxl
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from cnncalc import cli, guards
from cnncalc.recalc import libreoffice as recalc
from cnncalc.errors import CnncalcError
from cnncalc.kerasfiles.loader import load_model, model_from_layer_list, save_keras
from cnncalc.sheets.workbook import plan_workbook
from cnncalc.sheets.writer import write_plan

from fuzzing import (COUNTS, byte_mutation, dumps, json_mutation, make_zip, mutate_bytes, mutate_json, mutate_zip, run_case,
                     zip_members, zip_mutation)
from test_hdf5_storage import KEPT, REFUSED, restore



def fuzz(cases):
    """Hypothesis settings of a fuzz test: `cases` examples (times $CNNCALC_FUZZ_SCALE, for a longer hunt), no
    deadline (run_case has its own time limit)."""
    scale = int(os.environ.get("CNNCALC_FUZZ_SCALE", "1"))
    return settings(max_examples=cases * scale, deadline=None, database=None, suppress_health_check=list(HealthCheck))

MIN_TOTAL = 2_000

TOY_SPEC = {"input_shape": [6, 6, 1], "seed": 3, "name": "toy", "layers": [
    {"Conv2D": {"filters": 2, "kernel_size": 3, "activation": "relu"}},
    {"MaxPooling2D": {"pool_size": 2}},
    {"Flatten": {}},
    {"Dense": {"units": 3, "activation": "softmax"}},
]}
WIDE_SPEC = {"input_shape": [5, 5, 3], "seed": 1, "layers": [
    {"ZeroPadding2D": {"padding": 1}},
    {"Conv2D": {"filters": 2, "kernel_size": [2, 3], "strides": 2, "padding": "same", "use_bias": False}},
    {"BatchNormalization": {}},
    {"ReLU": {"max_value": 6.0}},
    {"GlobalAveragePooling2D": {}},
    {"Dropout": {"rate": 0.5}},
    {"Dense": {"units": 2, "activation": "sigmoid"}},
]}


def leftovers(folder):
    """Temporary files cnncalc's atomic writes would leave behind if a write were interrupted."""
    return [p.name for p in Path(folder).iterdir() if p.name.startswith(".cnncalc-")]


@contextlib.contextmanager
def quiet():
    """The CLI prints; the fuzz run keeps its output to itself."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        yield err


# ---------------------------------------------------------------- model files

h5_mutation = st.tuples(
    st.sampled_from(["nan", "inf", "huge_value", "reshape", "transpose", "strings", "complex", "huge_declared", "delete",
                     "group", "scalar", "empty", "int", "weight_names", "layer_names", "vars_extra", "rename"]),
    st.integers(0, 2**16))


def mutate_h5(path, mutations):
    """Change a weights HDF5 file in place, structure-aware: its datasets' values, shapes, types and names."""
    with h5py.File(path, "r+") as f:
        for kind, which in mutations:
            datasets = []
            f.visititems(lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) else None)
            if not datasets:
                return
            try:
                _mutate_dataset(f, kind, which, datasets[which % len(datasets)])
            except (ValueError, KeyError, TypeError):  # a change h5py itself refuses: nothing to test
                pass


def _mutate_dataset(f, kind, which, name):
    data = f[name][()] if f[name].size < 10**6 else np.zeros(1, "f4")  # never read a huge_declared one
    parent, leaf = name.rsplit("/", 1) if "/" in name else ("/", name)

    def replace(**kw):
        del f[name]
        f.create_dataset(name, **kw)

    if kind in ("nan", "inf", "huge_value"):
        if data.size and data.dtype.kind == "f":
            data = data.copy()
            data.flat[which % data.size] = {"nan": np.nan, "inf": -np.inf, "huge_value": 1e38}[kind]
            f[name][...] = data
    elif kind == "reshape":
        replace(data=np.zeros(tuple(d + 1 for d in data.shape) or (2,), dtype=data.dtype))
    elif kind == "transpose":
        replace(data=data.T.copy())
    elif kind == "strings":
        replace(data=np.array([b"relu"] * data.size, dtype="S4").reshape(data.shape))
    elif kind == "complex":
        replace(data=data.astype(np.complex64))
    elif kind == "huge_declared":  # declares 4e10 floats; nothing is written, so the file stays small
        replace(shape=(200_000, 200_000), dtype="f4", chunks=(64, 64))
    elif kind == "delete":
        del f[name]
    elif kind == "group":
        del f[name]
        f.create_group(name)
    elif kind == "scalar":
        replace(data=np.float32(1.5))
    elif kind == "empty":
        replace(data=np.zeros((0,), dtype="f4"))
    elif kind == "int":
        replace(data=np.ones(data.shape, dtype=np.int64))
    elif kind == "weight_names":
        if "weight_names" in f[parent].attrs:
            f[parent].attrs["weight_names"] = [b"no_such_weight:0"] * (which % 3)
    elif kind == "layer_names":
        if "layer_names" in f.attrs:
            f.attrs["layer_names"] = [b"x"] * (which % 40)
    elif kind == "vars_extra":
        f[parent].create_dataset(str(50 + which % 20), data=np.zeros(3, dtype="f4"))
    elif kind == "rename":
        f.move(name, f"{parent}/{leaf}_moved")
    else:
        raise ValueError(f"unknown HDF5 mutation {kind!r}")


def keras_models():
    """Small real Keras models of the shapes cnncalc supports (built once, saved in every format)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(7)
    toy = keras.Sequential([keras.Input((6, 6, 1)), layers.Conv2D(2, 3, activation="relu"), layers.MaxPooling2D(2),
                            layers.Flatten(), layers.Dense(3, activation="softmax")], name="toy")
    bn = keras.Sequential([keras.Input((5, 5, 2)), layers.Conv2D(3, 3, padding="same", use_bias=False),
                           layers.BatchNormalization(), layers.ReLU(), layers.AveragePooling2D(2),
                           layers.Flatten(), layers.Dropout(0.2), layers.Dense(2)], name="bn")
    inputs = keras.Input((4, 4, 1), name="image")
    x = layers.Conv2D(2, 2, name="first")(inputs)
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    chain = keras.Model(inputs, layers.Dense(2, activation="softmax", name="probs")(x), name="chain")
    return {"toy": toy, "bn": bn, "chain": chain}


@pytest.fixture(scope="module")
def model_seeds(keras, tmp_path_factory):
    """{seed name: (bytes of the model file, its suffix, the config JSON text or None, input shape)}, saved by real Keras."""
    folder = tmp_path_factory.mktemp("model_seeds")
    seeds = {}
    for name, model in keras_models().items():
        shape = tuple(model.inputs[0].shape[1:])
        model.save(folder / f"{name}.keras")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Keras calls .h5 legacy
            model.save(folder / f"{name}.h5")
        model.save_weights(folder / f"{name}.weights.h5")
        seeds[f"{name}.keras"] = ((folder / f"{name}.keras").read_bytes(), ".keras", None, shape)
        seeds[f"{name}.h5"] = ((folder / f"{name}.h5").read_bytes(), ".h5", None, shape)
        seeds[f"{name}.weights.h5"] = ((folder / f"{name}.weights.h5").read_bytes(), ".weights.h5", model.to_json(), shape)
    save_keras(model_from_layer_list(WIDE_SPEC), folder / "new.keras")
    seeds["cnncalc-new.keras"] = ((folder / "new.keras").read_bytes(), ".keras", None, (5, 5, 3))
    for seed in seeds.values():  # every seed loads before it is mutated
        load_model(_write_seed(folder, seed)[0], _write_seed(folder, seed)[1])
    return seeds


def _write_seed(folder, seed, data=None, config=None):
    data, suffix, config_text, _ = seed if data is None else (data, seed[1], seed[2], seed[3])
    path = Path(folder) / f"model{suffix}"
    path.write_bytes(data)
    config_path = None
    if config_text is not None:
        config_path = Path(folder) / "model.json"
        config_path.write_text(config if config is not None else config_text)
    return path, config_path


def mutate_model(seed, family, byte_muts, zip_muts, json_muts, h5_muts, folder):
    """A mutated copy of a seed model file (and its config): returns (path, config path)."""
    data, suffix, config_text, _ = seed
    if family == "json" and suffix == ".weights.h5":
        return _write_seed(folder, seed, data, dumps(mutate_json(json.loads(config_text), json_muts)))
    if family == "json" and suffix == ".keras":
        members = [(n, dumps(mutate_json(json.loads(d), json_muts)).encode() if n == "config.json" else d)
                   for n, d in zip_members(data)]
        return _write_seed(folder, seed, make_zip(members))
    if family == "json":  # legacy .h5: the config is an attribute
        path, config = _write_seed(folder, seed)
        with h5py.File(path, "r+") as f:
            f.attrs["model_config"] = dumps(mutate_json(json.loads(f.attrs["model_config"]), json_muts))
        return path, config
    if family == "h5" and suffix == ".keras":
        inner = Path(folder) / "inner.h5"
        members = zip_members(data)
        inner.write_bytes(dict(members)["model.weights.h5"])
        mutate_h5(inner, h5_muts)
        return _write_seed(folder, seed, make_zip([(n, inner.read_bytes() if n == "model.weights.h5" else d) for n, d in members]))
    if family == "h5":
        path, config = _write_seed(folder, seed)
        mutate_h5(path, h5_muts)
        return path, config
    if family == "zip" and suffix == ".keras":
        return _write_seed(folder, seed, mutate_zip(zip_members(data), zip_muts))
    return _write_seed(folder, seed, mutate_bytes(data, byte_muts))


@pytest.mark.keras
def test_fuzz_model_files(model_seeds, tmp_path, monkeypatch):
    """Mutated .keras, .h5 and .weights.h5 files: load_model reads them or refuses them in one line; when one
    loads, `cnncalc build` either writes a whole workbook or writes nothing."""
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    out.mkdir()
    x = folder / "x.npy"
    monkeypatch.setattr(guards, "MAX_READ_SECONDS", 5)  # below the case limit: libhdf5 can loop forever on a damaged file

    @fuzz(600)
    @given(st.sampled_from(sorted(model_seeds)), st.sampled_from(["bytes", "zip", "json", "h5", "h5"]),
           st.lists(byte_mutation, min_size=1, max_size=4), st.lists(zip_mutation, min_size=1, max_size=2),
           st.lists(json_mutation, min_size=1, max_size=3), st.lists(h5_mutation, min_size=1, max_size=2), st.integers(0, 5))
    @example("toy.keras", "h5", [], [], [], [("huge_declared", 0)], 0)  # a dataset declaring 4e10 floats
    @example("toy.keras", "zip", [], [("stored_bomb_header", 0, [])], [], [], 0)  # members claiming 4 GB each
    @example("toy.h5", "json", [], [], [("replace", 9, 11)], [], 0)  # an odd value (10**9) in the config attribute
    def one_case(name, family, byte_muts, zip_muts, json_muts, h5_muts, roll):
        for p in folder.iterdir():
            p.unlink()
        seed = model_seeds[name]
        path, config = mutate_model(seed, family, byte_muts, zip_muts, json_muts, h5_muts, folder)
        model = run_case(f"model files ({family})", lambda: load_model(path, config))
        if isinstance(model, CnncalcError) or roll:
            return
        # One in six that load (roll == 0) also goes through the command line: a whole workbook, or nothing.
        np.save(x, np.random.default_rng(0).normal(size=(1, *model.input_shape)))
        book = out / "book.xlsx"
        args = ["build", str(path), "--input", str(x), "-o", str(book)] + (["--config", str(config)] if config else [])
        with quiet() as err:
            code = run_case("build with a mutated model (CLI)", lambda: cli.main(args))
        assert code in (0, 2), code
        assert (code == 0) == book.exists() and not leftovers(out), (code, err.getvalue())
        if code == 2:
            assert err.getvalue().startswith("cnncalc: error: ") and err.getvalue().count("\n") == 1
        book.unlink(missing_ok=True)

    one_case()


# ---------------------------------------------------------------- HDF5 storage layouts

storage_mutation = st.tuples(st.sampled_from(sorted(REFUSED) + list(KEPT)), st.integers(0, 2**16))


def mutate_storage(path, mutations, outside):
    """Move datasets of a weights HDF5 file, in place, out of the file or elsewhere in it (test_hdf5_storage.restore),
    each mutation on another dataset; values moved out are replaced by others, so a leak could not pass for the
    model. Returns the kinds applied."""
    applied = []
    with h5py.File(path, "r+") as f:
        datasets = []
        f.visititems(lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) and obj.ndim and obj.size else None)
        for n, (kind, which) in enumerate(mutations):
            if not datasets:
                break
            name = datasets.pop(which % len(datasets))
            values = f[name][()]
            restore(f, name, kind, values if kind in KEPT else np.full_like(values, 1234.5625), outside, tag=str(n))
            applied.append(kind)
    return applied


@pytest.mark.keras
def test_fuzz_hdf5_storage_layouts(model_seeds, tmp_path):
    """Datasets of real Keras files moved out of the file (external storage, virtual datasets, external links, soft
    links that loop, dangle or leave, a filter plugin) or elsewhere inside it (soft and hard links, a cycle of
    groups, compression), up to three per file: a file with any move out is refused in one line ("Refused ...");
    one whose values all stay inside loads with exactly its weights. One in four also goes through `cnncalc build`:
    exit 2 with one line and nothing written, or a workbook."""
    folder, out, outside = tmp_path / "in", tmp_path / "out", tmp_path / "outside"
    for d in (folder, out, outside):
        d.mkdir()
    x = folder / "x.npy"
    weights = {name: [w for layer in load_model(*_write_seed(folder, seed)).layers for w in layer.get_weights()]
               for name, seed in model_seeds.items()}

    @fuzz(250)
    @given(st.sampled_from(sorted(model_seeds)), st.lists(storage_mutation, min_size=1, max_size=3), st.integers(0, 3))
    @example("toy.keras", [("external_storage", 0)], 0)
    @example("toy.h5", [("soft_loop", 1), ("group_cycle", 2)], 0)
    def one_case(name, mutations, roll):
        for p in folder.iterdir():
            p.unlink()
        seed = model_seeds[name]
        path, config = _write_seed(folder, seed)
        if seed[1] == ".keras":
            inner, members = folder / "inner.h5", zip_members(seed[0])
            inner.write_bytes(dict(members)["model.weights.h5"])
            applied = mutate_storage(inner, mutations, outside)
            path, config = _write_seed(folder, seed, make_zip([(n, inner.read_bytes() if n == "model.weights.h5" else d)
                                                               for n, d in members]))
        else:
            applied = mutate_storage(path, mutations, outside)
        model = run_case("model files (hdf5 storage)", lambda: load_model(path, config))
        moved_out = [kind for kind in applied if kind in REFUSED]
        if moved_out:
            assert isinstance(model, CnncalcError), f"{applied} loaded"
            message = str(model)
            assert message.startswith("Refused ") and any(REFUSED[k] in message for k in moved_out), (applied, message)
        else:
            assert not isinstance(model, CnncalcError), (applied, str(model))
            for got, want in zip([w for layer in model.layers for w in layer.get_weights()], weights[name], strict=True):
                np.testing.assert_array_equal(got, want)
        if roll:
            return
        np.save(x, np.random.default_rng(0).normal(size=(1, *seed[3])))
        book = out / "book.xlsx"
        args = ["build", str(path), "--input", str(x), "-o", str(book)] + (["--config", str(config)] if config else [])
        with quiet() as err:
            code = run_case("build with a moved dataset (CLI)", lambda: cli.main(args))
        assert code == (2 if moved_out else 0), (applied, err.getvalue())
        assert (code == 0) == book.exists() and not leftovers(out)
        if code == 2:
            assert err.getvalue().startswith("cnncalc: error: Refused ") and err.getvalue().count("\n") == 1
            assert "1234.5625" not in err.getvalue()
        book.unlink(missing_ok=True)

    one_case()


# ---------------------------------------------------------------- `cnncalc new` specs

def test_fuzz_new_specs(tmp_path):
    """Mutated layer lists: `cnncalc new` makes a model that loads back the same, or refuses the spec in one line,
    and never leaves a file behind when it refuses. Absurd sizes are refused before a weight is drawn."""
    out = tmp_path / "out"
    out.mkdir()

    @fuzz(400)
    @given(st.sampled_from([TOY_SPEC, WIDE_SPEC]), st.lists(json_mutation, min_size=1, max_size=4))
    @example(TOY_SPEC, [("replace", 14, 11)])  # Dense(units=10**9): refused from the spec alone
    @example(WIDE_SPEC, [("delete", 20, 0), ("replace", 401, 13)])  # Dropout(rate=2**64): an int np.isfinite cannot take
    def one_case(spec, json_muts):
        mutated = mutate_json(spec, json_muts)
        target = out / "model.keras"

        def make():
            model = model_from_layer_list(mutated)
            save_keras(model, target)
            again = load_model(target)
            x = np.ones((1, *model.input_shape))
            np.testing.assert_allclose(again.predict(x), model.predict(x), rtol=1e-5, atol=1e-5)
            return model

        made = run_case("cnncalc new (mutated specs)", make)
        assert not leftovers(out)
        assert target.exists() == (not isinstance(made, CnncalcError))
        target.unlink(missing_ok=True)

    one_case()


# ---------------------------------------------------------------- workbooks

xml_mutation = st.tuples(
    st.sampled_from(["value_text", "value_error", "value_huge", "value_empty", "address_far", "address_bad",
                     "cut_tag", "bomb", "shared_index", "dimension", "meta_json", "meta_count", "meta_version", "merge"]),
    st.integers(0, 2**20), st.integers(0, 2**8), st.lists(json_mutation, min_size=1, max_size=3))

BOMB = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lolololololololololol">'
        + "".join(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">' for i in range(1, 10)) + "]>")


def _sheet_members(members):
    return [i for i, (n, _) in enumerate(members) if n.startswith("xl/worksheets/sheet")]


def mutate_xml(members, mutations):
    """Sheet-XML-aware changes: a number cell turned into text, an error value (#DIV/0!) or an absurd number;
    a cell moved far away or given a broken address; a tag cut; an entity bomb; the <dimension> claiming a
    million rows; merged cells; and the architecture JSON, sample count and version in the hidden sheet."""
    members = list(members)
    for kind, where, small, json_muts in mutations:
        sheets = _sheet_members(members)
        if not sheets:
            break
        i = sheets[where % len(sheets)]
        name, data = members[i]
        text = data.decode("utf-8", "replace")
        values = list(re.finditer(r"<c [^>]*?>(?:<f>[^<]*</f>)?<v>([^<]*)</v></c>", text))
        cell = values[where % len(values)] if values else None
        if kind.startswith("value_") and cell:
            new = {"value_text": '<c r="{r}" t="inlineStr"><is><t>abc</t></is></c>',
                   "value_error": '<c r="{r}" t="e"><v>#DIV/0!</v></c>',
                   "value_huge": '<c r="{r}"><v>1e999</v></c>',
                   "value_empty": '<c r="{r}"/>'}[kind]
            r = re.search(r'r="([A-Z]+[0-9]+)"', cell.group(0))
            text = text[:cell.start()] + new.format(r=r.group(1) if r else "A1") + text[cell.end():]
        elif kind == "address_far" and cell:
            text = text[:cell.start()] + re.sub(r'r="[A-Z]+[0-9]+"', 'r="XFD1048576"', cell.group(0), count=1) + text[cell.end():]
        elif kind == "address_bad" and cell:
            bad = ["A0", "1A", "ZZZZ1", "A99999999999", "", "$A$1"][small % 6]
            text = text[:cell.start()] + re.sub(r'r="[A-Z]+[0-9]+"', f'r="{bad}"', cell.group(0), count=1) + text[cell.end():]
        elif kind == "cut_tag":
            tags = [m.start() for m in re.finditer("<", text)]
            at = tags[where % len(tags)]
            text = text[:at] + text[at + 1 + small % 8:]
        elif kind == "bomb":
            text = BOMB + re.sub(r"^<\?xml[^>]*\?>", "", text).replace("<v>", "<v>&lol9;", 1)
        elif kind == "shared_index" and cell:
            r = re.search(r'r="([A-Z]+[0-9]+)"', cell.group(0))
            text = text[:cell.start()] + f'<c r="{r.group(1) if r else "A1"}" t="s"><v>{10**small}</v></c>' + text[cell.end():]
        elif kind == "dimension":
            text = re.sub(r'<dimension ref="[^"]*"/>', '<dimension ref="A1:XFD1048576"/>', text)
            text = text.replace("</sheetData>", '<row r="1048576"><c r="A1048576"><v>1</v></c></row></sheetData>', 1)
        elif kind == "merge":
            text = text.replace("</sheetData>", '</sheetData><mergeCells count="1"><mergeCell ref="A1:Z40"/></mergeCells>', 1)
        elif kind.startswith("meta_"):
            members = mutate_meta(members, kind, small, json_muts)
            continue
        members[i] = (name, text.encode("utf-8"))
    return members


def mutate_meta(members, kind, small, json_muts):
    """Change what the hidden _cnncalc sheet says: its architecture JSON (structure-aware), sample count, version."""
    out = []
    for name, data in members:
        text = data.decode("utf-8", "replace")
        if kind == "meta_json":
            def swap(m):
                try:
                    arch = json.loads(unescape(m.group(2)))
                except ValueError:
                    return m.group(0)
                if not isinstance(arch, dict) or "layers" not in arch:
                    return m.group(0)
                return m.group(1) + escape(dumps(mutate_json(arch, json_muts)), {'"': "&quot;"}) + m.group(3)
            text = re.sub(r"(<t[^>]*>)(\{[^<]*)(</t>)", swap, text)
        elif name.startswith("xl/worksheets/"):  # B3 and B1 of every sheet, the hidden one among them
            odd = ["0", "-1", "2.5", "1e9", "10001", "abc", "1e999"][small % 7]
            if kind == "meta_count":  # the sample count, B3 of the hidden sheet
                text = re.sub(r'(<c r="B3"[^>]*>)<v>[^<]*</v>', rf"\g<1><v>{odd}</v>", text)
            else:  # the format version, B1
                text = re.sub(r'(<c r="B1"[^>]*>)<v>[^<]*</v>', rf"\g<1><v>{odd}</v>", text)
        out.append((name, text.encode("utf-8")))
    return out


def write_book(path, spec_or_example, practice=False, filled=False):
    from cnncalc.companion.examples import get_example
    from cnncalc.classroom.practice import plan_practice

    if isinstance(spec_or_example, str):
        ex = get_example(spec_or_example)
        model, raw, scale = ex.model, ex.raw, ex.scale
    else:
        model = model_from_layer_list(spec_or_example)
        raw, scale = np.random.default_rng(2).integers(0, 9, size=(2, *model.input_shape)).astype(float), "1/8"
    plan = plan_practice(model, raw, scale) if practice else plan_workbook(model, raw, scale)
    write_plan(plan, path)
    if filled:  # typed in by a student and saved by a spreadsheet program (shared strings, no cached formulas)
        wb = openpyxl.load_workbook(path)
        for k, a in enumerate(plan.answers):
            wb[a.sheet].cell(a.pos[0] + 1, a.pos[1] + 1).value = round(a.expected, 4) if k % 7 else f"{a.expected:.3f}"
        wb["Instructions"]["B3"] = "Ada"
        wb.save(path)
    return Path(path).read_bytes()


def with_shared_strings(data):
    """The workbook as Excel and LibreOffice save it: every inline string moved into xl/sharedStrings.xml."""
    parts = dict(zip_members(data))
    table = []

    def shared(m):
        table.append(m.group(2))
        return f'<c {m.group(1)}t="s"><v>{len(table) - 1}</v></c>'

    for name in [n for n in parts if n.startswith("xl/worksheets/sheet")]:
        parts[name] = re.sub(r'<c ([^>]*?)t="inlineStr"><is><t(?: [^>]*)?>(.*?)</t></is></c>', shared,
                             parts[name].decode(), flags=re.S).encode()
    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    parts["xl/sharedStrings.xml"] = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><sst xmlns="{ns}" count="{len(table)}" '
                                     f'uniqueCount="{len(table)}">' + "".join(f"<si><t>{t}</t></si>" for t in table) + "</sst>").encode()
    parts["[Content_Types].xml"] = parts["[Content_Types].xml"].replace(b"</Types>", (
        b'<Override PartName="/xl/sharedStrings.xml" '
        b'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>'))
    parts["xl/_rels/workbook.xml.rels"] = parts["xl/_rels/workbook.xml.rels"].replace(b"</Relationships>", (
        b'<Relationship Id="rIdShared" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" '
        b'Target="sharedStrings.xml"/></Relationships>'))
    return make_zip(list(parts.items()))


@pytest.fixture(scope="module")
def book_seeds(tmp_path_factory):
    """Workbooks as cnncalc writes them, and one re-saved by another program (openpyxl: shared strings)."""
    folder = tmp_path_factory.mktemp("book_seeds")
    seeds = {"conv_basic": write_book(folder / "a.xlsx", "conv_basic"),
             "chapter": write_book(folder / "b.xlsx", "cnn_simple_example"),
             "toy": write_book(folder / "c.xlsx", TOY_SPEC)}
    wb = openpyxl.load_workbook(folder / "a.xlsx")
    wb.save(folder / "d.xlsx")
    seeds["conv_basic resaved"] = (folder / "d.xlsx").read_bytes()
    seeds["toy shared strings"] = with_shared_strings(seeds["toy"])
    return seeds


@pytest.fixture(scope="module")
def practice_seeds(tmp_path_factory):
    folder = tmp_path_factory.mktemp("practice_seeds")
    return {"pool_max practice": write_book(folder / "a.xlsx", "pool_max", practice=True),
            "toy practice filled": write_book(folder / "b.xlsx", TOY_SPEC, practice=True, filled=True),
            "pool_max practice shared strings": with_shared_strings(write_book(folder / "c.xlsx", "pool_max", practice=True))}


def fake_recalculate(src, out_dir=None, timeout=900):
    """LibreOffice's stand-in: the workbook unchanged, in a fresh folder (the fuzz tests the reading, not LibreOffice)."""
    folder = Path(tempfile.mkdtemp(prefix="cnncalc-fuzz-recalc-"))
    shutil.copyfile(src, folder / (Path(src).stem + ".xlsx"))
    return folder / (Path(src).stem + ".xlsx")


def mutate_book(data, family, byte_muts, zip_muts, xml_muts):
    if family == "bytes":
        return mutate_bytes(data, byte_muts)
    members = zip_members(data)
    if family == "zip":
        return mutate_zip(members, zip_muts)
    return make_zip(mutate_xml(members, xml_muts))


book_families = st.sampled_from(["bytes", "zip", "xml", "xml", "xml"])


def test_fuzz_workbooks_verify_reading(book_seeds, tmp_path, monkeypatch):
    """Mutated workbooks through verify (with LibreOffice replaced by a copy): a report, or a one-line refusal."""
    from cnncalc.recalc.verify import verify

    monkeypatch.setattr(recalc, "recalculate", fake_recalculate)
    path = tmp_path / "book.xlsx"

    @fuzz(400)
    @given(st.sampled_from(sorted(book_seeds)), book_families, st.lists(byte_mutation, min_size=1, max_size=4),
           st.lists(zip_mutation, min_size=1, max_size=2), st.lists(xml_mutation, min_size=1, max_size=3))
    @example("conv_basic", "xml", [], [], [("bomb", 3, 0, [])])
    @example("conv_basic", "xml", [], [], [("dimension", 3, 0, [])])
    @example("toy", "xml", [], [], [("meta_json", 0, 0, [("replace", 12, 13)])])
    @example("chapter", "zip", [], [("stored_bomb_header", 0, [])], [])
    def one_case(seed, family, byte_muts, zip_muts, xml_muts):
        path.write_bytes(mutate_book(book_seeds[seed], family, byte_muts, zip_muts, xml_muts))
        report = run_case(f"workbooks: verify reading ({family})", lambda: verify(path))
        if not isinstance(report, CnncalcError):
            assert report.checked >= 0

    one_case()


def test_fuzz_practice_workbooks_check(practice_seeds, tmp_path, monkeypatch):
    """Mutated practice workbooks through `check`: a grade, or a one-line refusal."""
    check = pytest.importorskip("cnncalc.classroom.check")
    monkeypatch.setattr(recalc, "recalculate", fake_recalculate)
    path = tmp_path / "filled.xlsx"

    @fuzz(250)
    @given(st.sampled_from(sorted(practice_seeds)), book_families, st.lists(byte_mutation, min_size=1, max_size=4),
           st.lists(zip_mutation, min_size=1, max_size=2), st.lists(xml_mutation, min_size=1, max_size=3))
    def one_case(seed, family, byte_muts, zip_muts, xml_muts):
        path.write_bytes(mutate_book(practice_seeds[seed], family, byte_muts, zip_muts, xml_muts))
        run_case(f"practice workbooks: check ({family})", lambda: check.check(path))

    one_case()


def test_fuzz_total():
    """The fuzz tests of this file together try at least MIN_TOTAL mutated files (the input readers' fuzz adds its own)."""
    ran = {target.split(":")[0].split(" (")[0] for target in COUNTS}
    if not {"model files", "cnncalc new", "workbooks", "practice workbooks"} <= ran:
        pytest.skip(f"only some fuzz tests ran ({sorted(ran)}): the total is checked when the whole file runs")
    total = sum(c["tried"] for target, c in COUNTS.items() if not target.startswith("inputs"))
    assert total >= MIN_TOTAL, f"only {total} fuzz cases ran: {dict(COUNTS)}"
