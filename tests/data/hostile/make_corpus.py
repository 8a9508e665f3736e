"""Write the corpus of hostile and broken files in this folder, and corpus.json, which says how to run each.

Run from anywhere: `python tests/data/hostile/make_corpus.py`. Needs numpy, h5py, openpyxl and cnncalc (no
Keras). Every file is small; the ones that claim to be huge only say so (a header, a declared shape).
tests/test_hostile.py runs each through the command named in corpus.json and expects exit 2, one line
`cnncalc: error: ...` naming the problem, no traceback, and no file written or created.

Files named found_* were found by tests/test_fuzz.py (a mutated Keras file) and are kept as they are.

Some files carry code that would leave a file behind if it ever ran (a Lambda's bytecode, a pickle in an
.npy): the marker names are in MARKERS, and the test checks that none appears.
"""

import base64
import io
import json
import marshal
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import openpyxl

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # the repository, for cnncalc
sys.path.insert(0, str(HERE.parents[1]))  # tests/, for the fuzz helpers

from fuzzing import claim_huge_sizes  # noqa: E402  (one zip-bomb header rewriter for the fuzz and the corpus)
from test_hdf5_storage import REFUSED, restore  # noqa: E402  (the HDF5 storage tricks, shared with their tests)

from cnncalc.kerasfiles.formats import write_keras_file  # noqa: E402
from cnncalc.sheets.workbook import plan_workbook  # noqa: E402
from cnncalc.sheets.writer import write_plan  # noqa: E402
from cnncalc.kerasfiles.loader import model_from_layer_list  # noqa: E402

MARKERS = ["cnncalc_lambda_ran.txt", "cnncalc_pickle_ran.txt"]  # created (in the working folder) if code ever ran
SMALL = {"input_shape": [4, 4, 1], "seed": 0, "name": "small", "layers": [
    {"Conv2D": {"filters": 1, "kernel_size": 3, "activation": "relu"}},
    {"Flatten": {}},
    {"Dense": {"units": 2, "activation": "softmax"}},
]}
CORPUS = []  # {"file", "argv", "expect"}: run `cnncalc ARGV` ({file}: the file, {ok}: ok_model.keras), expect in stderr


def add(name, data, argv, expect):
    (HERE / name).write_bytes(data)
    CORPUS.append({"file": name, "argv": argv, "expect": expect})


def add_found(name, argv, expect):
    assert (HERE / name).exists(), f"{name} is missing: it was found by fuzzing and cannot be made again"
    CORPUS.append({"file": name, "argv": argv, "expect": expect})


def spec(layers, input_shape=(4, 4, 1), name="hostile"):
    """A cnncalc model spec from [(class, config, weight shapes)], weights small random float32."""
    rng = np.random.default_rng(0)
    return {"name": name, "input_shape": tuple(input_shape),
            "layers": [{"class_name": c, "config": dict(cfg), "weights": [rng.normal(size=s).astype("float32") for s in shapes]}
                       for c, cfg, shapes in layers]}


SMALL_LAYERS = [("Conv2D", {"filters": 1, "kernel_size": [3, 3], "activation": "relu"}, [(3, 3, 1, 1), (1,)]),
                ("Flatten", {}, []),
                ("Dense", {"units": 2, "activation": "softmax"}, [(4, 2), (2,)])]


def keras_bytes(s):
    """A .keras file as cnncalc writes it, deflated (Keras deflates too) to keep the corpus small."""
    path = HERE / ".tmp.keras"
    write_keras_file(s, path)
    data = path.read_bytes()
    path.unlink()
    return zip_of(members(data))


def members(data):
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: zf.read(i.filename) for i in zf.infolist()}


def zip_of(parts):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def with_config(data, change):
    """A .keras file whose config.json went through change(config dict)."""
    parts = members(data)
    config = json.loads(parts["config.json"])
    change(config)
    parts["config.json"] = json.dumps(config).encode()
    return zip_of(parts)


def with_weights(data, change):
    """A .keras file whose model.weights.h5 went through change(h5py.File)."""
    parts = members(data)
    parts["model.weights.h5"] = with_h5(parts["model.weights.h5"], change)
    return zip_of(parts)


def with_h5(data, change):
    """An HDF5 file (bytes) that went through change(h5py.File)."""
    path = HERE / ".tmp.h5"
    path.write_bytes(data)
    with h5py.File(path, "r+") as f:
        change(f)
    out = path.read_bytes()
    path.unlink()
    return out


def layer(config, i):
    """The config of layer i (after the InputLayer)."""
    return config["config"]["layers"][1 + i]["config"]


def replace(f, name, **kw):
    del f[name]
    f.create_dataset(name, **kw)


class LeavesAFile:
    """Unpickling this opens (creates) a file: what a malicious pickle in an .npy would do, harmlessly."""

    def __reduce__(self):
        return (open, (MARKERS[1], "w"))


def lambda_config():
    """A Keras 3 Lambda whose marshalled function would create a file if anything ever ran it."""
    def leave_a_file(x):
        open("cnncalc_lambda_ran.txt", "w").write("ran")  # MARKERS[0]
        return x

    code = base64.b64encode(marshal.dumps(leave_a_file.__code__)).decode()
    return {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
            "config": {"name": "lambda", "function": {"class_name": "__lambda__", "config": {"code": code, "defaults": None, "closure": None}},
                       "arguments": {}}}


def legacy_h5(config, weights):
    """A legacy model.save('x.h5') file: model_config attribute, model_weights/<layer>/<weight> datasets."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        root = f.create_group("model_weights")
        root.attrs["layer_names"] = [n.encode() for n in weights]
        for lname, arrays in weights.items():
            g = root.create_group(lname)
            names = [f"{lname}/{w}:0".encode() for w in arrays]
            g.attrs["weight_names"] = names
            for w, arr in arrays.items():
                g.create_dataset(f"{lname}/{w}:0", data=arr)
    return buffer.getvalue()


def png_header(width, height):
    """A PNG that claims width x height pixels (one empty IDAT: the header is all a decoder reads first)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def workbook_bytes():
    """A small cnncalc workbook, and the 1-based (row, column) of its first kernel weight and first input cell."""
    model = model_from_layer_list(SMALL)
    raw = np.arange(16.0).reshape(1, 4, 4, 1)
    path = HERE / ".tmp.xlsx"
    path.unlink(missing_ok=True)
    plan = plan_workbook(model, raw, "1/8")
    write_plan(plan, path)
    data = path.read_bytes()
    path.unlink()
    weight = plan.weights[("conv2d", "kernel")].pos((0, 0, 0, 0))
    given = plan.inputs[0].pos((0, 0, 0))
    return data, (weight[0] + 1, weight[1] + 1), (given[0] + 1, given[1] + 1)


def edited_workbook(data, change):
    """A cnncalc workbook opened, changed with change(openpyxl workbook) and saved, as another program would."""
    path = HERE / ".tmp.xlsx"
    path.write_bytes(data)
    wb = openpyxl.load_workbook(path)
    change(wb)
    wb.save(path)
    out = path.read_bytes()
    path.unlink()
    return out


def with_sheet_xml(data, sheet_name, change):
    """A workbook whose named sheet's XML went through change(text)."""
    parts = members(data)
    book = parts["xl/workbook.xml"].decode()
    names = [n for n in __import__("re").findall(r'<sheet name="([^"]*)"', book)]
    member = f"xl/worksheets/sheet{names.index(sheet_name) + 1}.xml"
    parts[member] = change(parts[member].decode()).encode()
    return zip_of(parts)


BOMB = ('<?xml version="1.0" encoding="UTF-8"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)) + "]>")


def main():
    for old in HERE.iterdir():
        if old.name != "make_corpus.py" and not old.name.startswith("found_"):
            old.unlink()
    ok = keras_bytes(spec(SMALL_LAYERS))
    (HERE / "ok_model.keras").write_bytes(ok)
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((4, 4)))
    (HERE / "ok_input.npy").write_bytes(buffer.getvalue())
    # Most model files go through `build` (which must write nothing when it refuses), some through summary/predict.
    run = ["build", "{file}", "--input", "{dir}/ok_input.npy", "-o", "{out}/book.xlsx"]
    summary = ["summary", "{file}"]

    # ---- model files: broken
    add("not_a_model.keras", b"this is a text file, not a Keras model\n", run, "Expected a .keras zip archive")
    add("truncated.keras", ok[: len(ok) * 2 // 5], run, "Cannot read Keras model file")
    add("no_config.keras", zip_of({k: v for k, v in members(ok).items() if k != "config.json"}), run, "config.json")
    add("no_weights.keras", zip_of({k: v for k, v in members(ok).items() if k != "model.weights.h5"}), run, "model.weights.h5")
    add("malformed_json.keras", zip_of({**members(ok), "config.json": b'{"class_name": "Sequential", "config": {"layers": ['}),
        run, "Malformed JSON")
    add("deep_json.keras", zip_of({**members(ok), "config.json": b"[" * 5_000 + b"]" * 5_000}), summary, "nesting")
    add("not_hdf5.h5", b"\x89HDF\r\n\x1a\n but not really" * 10, run, "damaged")
    h5 = legacy_h5({"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 3], "name": "in"}},
        {"class_name": "Dense", "config": {"name": "d", "units": 2}}]}},
        {"d": {"kernel": np.array([[1, 2], [3, 4], [5, 6]], "f4"), "bias": np.array([np.inf, 0], "f4")}})
    add("inf_weights.h5", h5, run, "NaN or infinity")
    add("truncated.h5", h5[: len(h5) // 2], summary, "Cannot read Keras model file")
    weights_only = members(ok)["model.weights.h5"]
    add("weights_only.weights.h5", weights_only, run, "No model config")
    add("config_broken.json", b'{"class_name": "Sequential", "config": ', ["summary", "{dir}/weights_only.weights.h5", "--config", "{file}"],
        "Malformed JSON")

    # ---- model files: absurd sizes, refused from the config (or the declared shape) before anything is allocated
    add("dense_1e9.keras", with_config(ok, lambda c: layer(c, 2).update(units=10**9)), ["predict", "{file}", "--input", "{dir}/ok_input.npy"], "too large")
    add("conv_huge_filters.keras", with_config(ok, lambda c: layer(c, 0).update(filters=50_000_000)), run, "too large")
    add("zero_padding_huge.keras", keras_bytes(spec([("ZeroPadding2D", {"padding": 100_000}, []), ("Flatten", {}, [])])),
        run, "too large")
    add("huge_dataset.keras", with_weights(ok, lambda f: replace(f, "layers/dense/vars/0", shape=(200_000, 200_000), dtype="f4",
                                                                  chunks=(64, 64))), run, "too large")
    add("zip_bomb_header.keras", claim_huge_sizes(ok), run, "too large")
    add("too_many_layers.keras", with_config(ok, lambda c: c["config"]["layers"].extend(
        [{"module": "keras.layers", "class_name": "Dropout", "config": {"rate": 0.1}}] * 1100)), run, "too large")

    # ---- model files: wrong values and types in the config or the weights
    add("nan_weights.keras", with_weights(ok, lambda f: f["layers/conv2d/vars/0"].__setitem__((0, 0, 0, 0), np.nan)), run,
        "NaN or infinity")
    add("string_weights.keras", with_weights(ok, lambda f: replace(f, "layers/dense/vars/1", data=np.array([b"a", b"b"]))), run,
        "Expected numbers")
    add("complex_weights.keras", with_weights(ok, lambda f: replace(f, "layers/dense/vars/1", data=np.array([1j, 2], "c8"))), run,
        "Expected numbers")
    add("wrong_shape.keras", with_weights(ok, lambda f: replace(f, "layers/dense/vars/0", data=np.zeros((5, 2), "f4"))), run,
        "wrong shape")
    add("missing_weight.keras", with_weights(ok, lambda f: f.__delitem__("layers/dense/vars/1")), run, "wrong number of weights")
    add("unknown_activation.keras", with_config(ok, lambda c: layer(c, 0).update(activation="mish_custom")), ["predict", "{file}", "--input", "{dir}/ok_input.npy"], "mish_custom")
    add("channels_first.keras", with_config(ok, lambda c: layer(c, 0).update(data_format="channels_first")), run, "channels_first")
    add("duplicate_names.keras", with_config(ok, lambda c: layer(c, 1).update(name="conv2d")), run, "unique")
    add("name_not_string.keras", with_config(ok, lambda c: layer(c, 0).update(name=42)), run, "Invalid name")
    add("name_control_chars.keras", with_config(ok, lambda c: layer(c, 0).update(name="\x1b]0;pwned\x07")), summary, "Invalid name")
    add("units_string.keras", with_config(ok, lambda c: layer(c, 2).update(units="2")), run, "units")
    add("units_negative.keras", with_config(ok, lambda c: layer(c, 2).update(units=-2)), run, "units")
    add("kernel_size_float.keras", with_config(ok, lambda c: layer(c, 0).update(kernel_size=[2.5, 2.5])), run, "kernel_size")
    add("kernel_size_three.keras", with_config(ok, lambda c: layer(c, 0).update(kernel_size=[3, 3, 3])), run, "kernel_size")
    add("filters_bool.keras", with_config(ok, lambda c: layer(c, 0).update(filters=True)), run, "filters")
    add("use_bias_string.keras", with_config(ok, lambda c: layer(c, 0).update(use_bias="false")), run, "use_bias")
    add("input_shape_float.keras", with_config(ok, lambda c: c["config"]["layers"][0]["config"].update(batch_shape=[None, 4.5, 4, 1])),
        run, "input shape")

    # ---- HDF5 storage outside the file (issue 10): refused before a weight is read. The other files are named
    # relative to the working folder, where none exists (tests/test_hdf5_storage.py makes them, with a secret).
    dense = legacy_h5({"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 3], "name": "in"}},
        {"class_name": "Dense", "config": {"name": "d", "units": 2}}]}},
        {"d": {"kernel": np.array([[1, 2], [3, 4], [5, 6]], "f4"), "bias": np.array([0.5, 0], "f4")}})
    for kind in sorted(set(REFUSED) - {"virtual"}):  # "virtual" with its source missing is "virtual_missing"
        def move(name, kind=kind):
            return lambda f: restore(f, name, kind, f[name][()], "")
        add(f"hdf5_{kind}.keras", with_weights(ok, move("layers/dense/vars/0")), run, REFUSED[kind])
        add(f"hdf5_{kind}.h5", with_h5(dense, move("model_weights/d/d/kernel:0")), run, REFUSED[kind])
    add("hdf5_external_link_unused.keras", with_weights(ok, lambda f: f.__setitem__("unused", h5py.ExternalLink("outside.h5", "/"))),
        summary, "external link")
    # A 49 M-value dataset where a (4, 2) kernel belongs: refused from its declared shape, not read for seconds first
    add("huge_wrong_shape.keras", with_weights(ok, lambda f: replace(f, "layers/dense/vars/0", shape=(7000, 7000), dtype="f4",
                                                                      chunks=(100, 100))), run, "wrong shape")

    # ---- code in the file: refused without running it (the markers never appear)
    add("lambda.keras", with_config(ok, lambda c: c["config"]["layers"].insert(2, lambda_config())), summary, "Lambda")
    add("custom_class.keras", with_config(ok, lambda c: c["config"]["layers"][2].update(module="evil.layers", registered_name="Evil>Layer")),
        run, "custom object")
    add("custom_activation.keras", with_config(ok, lambda c: layer(c, 0).update(
        activation={"module": "evil", "class_name": "function", "config": "steal", "registered_name": "evil>steal"})), run, "custom object")

    # ---- inputs (with ok_model.keras, input (4, 4, 1))
    predict = ["predict", "{ok}", "--input", "{file}"]
    buffer = io.BytesIO()
    np.save(buffer, np.array([LeavesAFile()], dtype=object), allow_pickle=True)
    add("pickle.npy", buffer.getvalue(), predict, "never unpickled")
    buffer = io.BytesIO()
    np.save(buffer, np.full((4, 4), np.nan))
    add("nan.npy", buffer.getvalue(), predict, "NaN or infinity")
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((3, 5)))
    add("wrong_shape.npy", buffer.getvalue(), predict, "does not fit")
    add("empty.csv", b"\n\n", predict, "no numbers")
    add("text.csv", b"1,2,3,4\n5,six,7,8\n1,2,3,4\n1,2,3,4\n", predict, "not a number")
    add("deep.json", b"[" * 5_000 + b"]" * 5_000, predict, "too deeply")
    add("huge_image.png", png_header(100_000, 100_000), predict, "pixels")
    add("eps_as.png", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 4 4\nshowpage\n", predict, "Cannot read")

    # ---- workbooks (verify)
    book, (wr, wc), (ir, ic) = workbook_bytes()
    verify = ["verify", "{file}"]
    add("not_a_workbook.xlsx", b"just text\n", verify, "Expected an .xlsx workbook")
    other = io.BytesIO()
    wb = openpyxl.Workbook()
    wb.active["A1"] = "a workbook from another program"
    wb.save(other)
    add("other_program.xlsx", other.getvalue(), verify, "not a cnncalc workbook")
    add("missing_weights_sheet.xlsx", edited_workbook(book, lambda wb: wb.remove(wb["Weights"])), verify, "not a number")
    add("text_in_weight.xlsx", edited_workbook(book, lambda wb: wb["Weights"].cell(wr, wc).__setattr__("value", "abc")), verify,
        "not a number")

    def error_in_input(code):
        def change(wb):
            cell = wb["Sample 1"].cell(ir, ic)
            cell.value, cell.data_type = code, "e"
        return change
    add("div0_in_input.xlsx", edited_workbook(book, error_in_input("#DIV/0!")), verify, "#DIV/0!")
    add("name_error_in_weight.xlsx", edited_workbook(book, lambda wb: [setattr(wb["Weights"].cell(wr, wc), "value", "#NAME?"),
                                                                        setattr(wb["Weights"].cell(wr, wc), "data_type", "e")]),
        verify, "#NAME?")
    add("merged_cells.xlsx", edited_workbook(book, lambda wb: wb["Weights"].merge_cells(start_row=wr, start_column=wc, end_row=wr + 2, end_column=wc + 2)), verify, "not a number")
    add("moved_cells.xlsx", edited_workbook(book, lambda wb: wb["Weights"].insert_rows(wr - 1, 3)), verify, "not a number")
    add("xml_bomb.xlsx", with_sheet_xml(book, "_cnncalc", lambda t: BOMB + t.split("?>", 1)[1].replace("<v>", "<v>&lol9;", 1)),
        verify, "Expected an .xlsx workbook")
    wide = "".join(f'<row r="{r}"><c r="XFD{r}"><v>1</v></c></row>' for r in range(5, 700))
    add("million_cells.xlsx", with_sheet_xml(book, "_cnncalc", lambda t: t.replace("</sheetData>", wide + "</sheetData>")
                                              .replace('<dimension ref="A1:B4"/>', '<dimension ref="A1:XFD1048576"/>')), verify, "too large")
    add("meta_damaged.xlsx", edited_workbook(book, lambda wb: wb["_cnncalc"].cell(4, 2).__setattr__("value", "{not json")), verify,
        "damaged")

    def meta_arch(change):
        def edit(wb):
            cell = wb["_cnncalc"].cell(4, 2)
            arch = json.loads(cell.value)
            change(arch)
            cell.value = json.dumps(arch)
        return edit
    add("meta_dense_1e9.xlsx", edited_workbook(book, meta_arch(lambda a: a["layers"][2]["config"].update(units=10**9))), verify,
        "too large")
    add("meta_more_weights_than_cells.xlsx", edited_workbook(book, meta_arch(lambda a: a["layers"][2]["config"].update(units=4000))),
        verify, "workbook of")
    add("meta_lambda.xlsx", edited_workbook(book, meta_arch(lambda a: a["layers"].insert(1, lambda_config()))), verify,
        "unsupported type")
    add("meta_samples.xlsx", edited_workbook(book, lambda wb: wb["_cnncalc"].cell(3, 2).__setattr__("value", 10**9)), verify,
        "number of samples")

    # ---- found by tests/test_fuzz.py and kept as they are (not made here)
    add_found("found_hdf5_endless_loop.h5", summary, "longer than")  # a mutated Keras .h5: libhdf5 loops forever on its attributes

    (HERE / "corpus.json").write_text(json.dumps({"markers": MARKERS, "cases": CORPUS}, indent=1) + "\n")
    big = [(p.name, p.stat().st_size) for p in HERE.iterdir() if p.stat().st_size > 20_000 and p.suffix != ".py"]
    assert not big, f"corpus files must stay small: {big}"
    print(f"wrote {len(CORPUS)} hostile files and corpus.json into {HERE}")


if __name__ == "__main__":
    main()
