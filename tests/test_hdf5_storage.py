"""A model file must never read other files (issue 10): HDF5 storage that points outside the file is refused.

HDF5 lets a dataset keep its values in another file (external storage), take them from datasets of other
files (a virtual dataset, VDS), and a link point into another file (an external link); soft links can loop
or lead nowhere, and a filter id that is not built in makes HDF5 load a plugin library. A crafted `.h5`, or
the model.weights.h5 inside a `.keras`, would otherwise copy any local file into the weights of a workbook.

Models are saved by real Keras, then one weight is moved with h5py (`restore` below). Each trick is first
shown to work on h5py itself (it reads the other file's values); cnncalc must then refuse it: exit 2, one
line `cnncalc: error: ...` naming the dataset and why, nothing written, no byte of the other file shown.
Tricks that keep everything inside the file (a soft or second hard link, a cycle of groups, built-in
compression) must load exactly as the original.

`restore` and the kinds are shared with the fuzz (tests/test_fuzz.py) and the corpus (make_corpus.py).
"""

import contextlib
import io
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from cnncalc import cli
from cnncalc.errors import CnncalcError
import cnncalc.kerasfiles.formats as formats
from cnncalc.kerasfiles.loader import load_model

# The other file's values: exact in float32 and unlike any weight, so a leak shows as this text in a sheet.
SECRET_VALUE = 1234.5625
SECRET_TEXTS = ["1234.5625", "CNNCALC-SECRET-MARKER"]  # neither may appear in any output
# Kinds of `restore` that must be refused, with a word the one-line message must hold.
REFUSED = {
    "external_storage": "external storage",  # the values are raw bytes in another file
    "virtual": "virtual dataset",  # a VDS mapping a dataset of another file
    "virtual_missing": "virtual dataset",  # ... whose file is missing: HDF5 would quietly read zeros
    "external_link": "external link",  # a link to a dataset of another file
    "soft_loop": "loop",  # two soft links pointing at each other
    "soft_dangling": "leads nowhere",  # a soft link to a path not in the file
    "soft_to_external": "external link",  # a soft link through an external link
    "filter_plugin": "plugin",  # a filter id HDF5 would load a shared library for
}
# Kinds that keep every value inside the file: the model loads exactly as before.
KEPT = ("soft_link", "hard_link", "group_cycle", "compressed", "lzf")
# The last Dense kernel of keras_helpers.toy_model, as Keras 3 saves it in each format.
KERNEL = {".keras": "layers/dense_1/vars/0", ".h5": "model_weights/dense_1/toy/dense_1/kernel"}


def restore(f, name, kind, values, folder, tag="0"):
    """Replace dataset `name` of the open (r+) h5py.File f by `values` stored as `kind` says.

    REFUSED kinds put the values (or the way to them) outside the file: in files made in `folder` (which may
    be relative, or missing, for files kept in the repository) named outside<tag>.*; KEPT kinds keep them inside.
    """
    values = np.asarray(values)
    raw, other = Path(folder) / f"outside{tag}.bin", Path(folder) / f"outside{tag}.h5"
    if os.path.isdir(folder) and kind == "external_storage":
        raw.write_bytes(values.tobytes() + b"CNNCALC-SECRET-MARKER\n")
    if os.path.isdir(folder) and kind in ("virtual", "external_link", "soft_to_external"):
        with h5py.File(other, "w") as src:
            src.create_dataset("d", data=values)
            src.attrs["note"] = "CNNCALC-SECRET-MARKER"
    del f[name]
    if kind == "external_storage":
        f.create_dataset(name, shape=values.shape, dtype=values.dtype, external=[(str(raw), 0, values.nbytes)])
    elif kind in ("virtual", "virtual_missing"):
        layout = h5py.VirtualLayout(shape=values.shape, dtype=values.dtype)
        source = other if kind == "virtual" else Path(folder) / f"missing{tag}.h5"
        layout[...] = h5py.VirtualSource(str(source), "d", shape=values.shape, dtype=values.dtype)
        f.create_virtual_dataset(name, layout)
    elif kind == "external_link":
        f[name] = h5py.ExternalLink(str(other), "/d")
    elif kind == "soft_loop":
        f[name] = h5py.SoftLink(f"/loop{tag}")
        f[f"/loop{tag}"] = h5py.SoftLink(f"/{name}")
    elif kind == "soft_dangling":
        f[name] = h5py.SoftLink(f"/nowhere{tag}/d")
    elif kind == "soft_to_external":
        f[f"/outside{tag}"] = h5py.ExternalLink(str(other), "/")
        f[name] = h5py.SoftLink(f"/outside{tag}/d")
    elif kind == "filter_plugin":  # optional: HDF5 writes it unfiltered; reading would still look for filter 307
        f.create_dataset(name, data=values, chunks=values.shape, compression=307, allow_unknown_filter=True)
    elif kind == "soft_link":
        f.create_dataset(f"/kept{tag}/d", data=values)
        f[name] = h5py.SoftLink(f"/kept{tag}/d")
    elif kind == "hard_link":
        f[name] = f.create_dataset(f"/kept{tag}/d", data=values)
    elif kind == "group_cycle":  # a group holding a hard link to the root: a walk must not go round forever
        f.create_dataset(name, data=values)
        f.require_group(f"/kept{tag}")[f"up{tag}"] = f["/"]
    elif kind == "compressed":
        f.create_dataset(name, data=values, compression="gzip", shuffle=True, fletcher32=True)
    elif kind == "lzf":
        f.create_dataset(name, data=values, compression="lzf")
    else:
        raise ValueError(f"unknown storage kind {kind!r}")


def crafted(model_path, kind, values, folder, out_path, name=None):
    """A copy of a saved model (.keras or .h5) at out_path whose weight `name` (default: KERNEL) went through
    restore(); returns the HDF5 file that was changed (for a .keras, a copy of its model.weights.h5 on disk)."""
    out_path = Path(out_path)
    out_path.write_bytes(Path(model_path).read_bytes())
    name = name or KERNEL[out_path.suffix]
    return edit_h5(out_path, lambda f: restore(f, name, kind, values, folder))


def edit_h5(model, change):
    """Change, in place, the HDF5 file of a model (a .h5, or the model.weights.h5 inside a .keras) with
    change(h5py.File); returns the HDF5 file changed (for a .keras, the copy it put back, kept beside it)."""
    model = Path(model)
    if model.suffix != ".keras":
        with h5py.File(model, "r+") as f:
            change(f)
        return model
    with zipfile.ZipFile(model) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    inner = model.with_suffix(".inner.h5")
    inner.write_bytes(members["model.weights.h5"])
    with h5py.File(inner, "r+") as f:
        change(f)
    members["model.weights.h5"] = inner.read_bytes()
    with zipfile.ZipFile(model, "w") as zf:
        for n, data in members.items():
            zf.writestr(n, data)
    return inner


@pytest.fixture(scope="module")
def saved(keras, tmp_path_factory):
    """keras_helpers.toy_model saved by Keras as .keras and legacy .h5, an input for it, and the original kernel."""
    from keras_helpers import toy_model

    folder = tmp_path_factory.mktemp("saved")
    keras.backend.clear_session()  # Keras's automatic names (dense, dense_1) count from a fresh session: KERNEL names dense_1
    model = toy_model()
    model.save(folder / "toy.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras calls .h5 legacy
        model.save(folder / "toy.h5")
    np.save(folder / "x.npy", np.random.default_rng(0).uniform(0, 1, size=(1, 4, 4, 1)))
    kernel = model.layers[-1].get_weights()[0]
    return {".keras": folder / "toy.keras", ".h5": folder / "toy.h5", "x": folder / "x.npy", "kernel": kernel}


def run_cli(argv, cwd=None):
    """cli.main in this process, from the folder cwd (default: here): (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    try:
        os.chdir(cwd or here)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main([str(a) for a in argv])
    finally:
        os.chdir(here)
    return code, out.getvalue(), err.getvalue()


def assert_refused_cleanly(code, stdout, stderr, folders, *words):
    """Exit 2, one line `cnncalc: error: ...` holding `words`, nothing written, no secret in any output."""
    assert code == 2, stderr
    assert stderr.startswith("cnncalc: error: ") and stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    for word in words:
        assert word in stderr, f"{word!r} not in {stderr!r}"
    for folder in folders:
        assert list(Path(folder).iterdir()) == [], f"a file was written in {folder}"
    for text in SECRET_TEXTS:
        assert text not in stdout and text not in stderr, f"{text} was shown"


def secret(shape):
    return np.full(shape, SECRET_VALUE, dtype="float32")


# ---------------------------------------------------------------- the tricks are real


@pytest.mark.keras
@pytest.mark.parametrize("suffix, kind", [(".keras", "external_storage"), (".h5", "external_storage"), (".h5", "external_link"),
                                          (".h5", "soft_to_external"), (".h5", "virtual")])
def test_without_the_check_the_tricks_copy_another_file_into_the_workbook(saved, suffix, kind, tmp_path, monkeypatch):
    """What the check prevents: with it switched off, `cnncalc build` writes the other file's values as weights.
    (Proves each crafted file is a working attack, so the refusals below are what keeps the secret in. From the
    bytes of a .keras, HDF5 fails to open a linked file, and reads a virtual dataset as zeros: next test.)"""
    secrets, work = tmp_path / "secrets", tmp_path / "work"
    secrets.mkdir()
    work.mkdir()
    model = tmp_path / f"model{suffix}"
    inner = crafted(saved[suffix], kind, secret(saved["kernel"].shape), secrets, model)
    with h5py.File(inner, "r") as f:  # h5py itself reads the other file
        np.testing.assert_array_equal(f[KERNEL[suffix]][()], secret(saved["kernel"].shape))
    monkeypatch.setattr(formats, "_check_inside", lambda h5, source: None)
    code, _, err = run_cli(["build", model, "--input", saved["x"], "-o", work / "book.xlsx"], work)
    assert code == 0, err
    with zipfile.ZipFile(work / "book.xlsx") as zf:
        sheets = b"".join(zf.read(n) for n in zf.namelist() if n.startswith("xl/worksheets/"))
    assert SECRET_TEXTS[0].encode() in sheets


@pytest.mark.keras
@pytest.mark.parametrize("suffix, kind", [(".keras", "virtual_missing"), (".h5", "virtual_missing"), (".keras", "virtual")])
def test_without_the_check_a_virtual_dataset_can_be_read_as_zeros(saved, suffix, kind, tmp_path, monkeypatch):
    """A virtual dataset whose source HDF5 cannot open (missing; or, from the bytes of a .keras, any file) gives
    its fill value: weights silently all zero."""
    monkeypatch.setattr(formats, "_check_inside", lambda h5, source: None)
    model = tmp_path / f"model{suffix}"
    crafted(saved[suffix], kind, secret(saved["kernel"].shape), tmp_path, model)
    np.testing.assert_array_equal(load_model(model).layers[-1].weights["kernel"], 0.0)


# ---------------------------------------------------------------- refused, through the command line


@pytest.mark.keras
@pytest.mark.parametrize("kind", sorted(REFUSED))
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_storage_outside_the_file_is_refused(saved, suffix, kind, tmp_path):
    """`cnncalc build` and `cnncalc predict` on each trick: exit 2, one line naming the dataset and why, nothing
    written, nothing of the other file shown."""
    secrets, work, out = tmp_path / "secrets", tmp_path / "work", tmp_path / "out"
    for folder in (secrets, work, out):
        folder.mkdir()
    model = tmp_path / "models" / f"model{suffix}"
    model.parent.mkdir()
    crafted(saved[suffix], kind, secret(saved["kernel"].shape), secrets, model)
    before = sorted(p.name for p in secrets.iterdir())
    # the walk names the first link it finds out of place: the weight, or its partner in the trick
    named = {"soft_loop": ("/loop0",), "soft_to_external": ("/outside0",)}.get(kind, ()) + (f"/{KERNEL[suffix]}",)
    for argv in (["build", model, "--input", saved["x"], "-o", out / "book.xlsx"], ["predict", model, "--input", saved["x"]]):
        code, stdout, stderr = run_cli(argv, work)
        assert_refused_cleanly(code, stdout, stderr, [work, out], REFUSED[kind])
        assert any(f"'{n}" in stderr for n in named), f"the message names none of {named}: {stderr}"
        if suffix == ".keras":
            assert "model.weights.h5 in" in stderr
    assert sorted(p.name for p in secrets.iterdir()) == before  # and nothing was written next to the other file


@pytest.mark.keras
@pytest.mark.parametrize("kind", ["external_storage", "external_link", "virtual"])
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_storage_outside_the_file_is_refused_by_the_installed_command(saved, suffix, kind, tmp_path):
    """The same through `python -m cnncalc` in a fresh process: exit 2, one line, no output file, no secret."""
    secrets, work = tmp_path / "secrets", tmp_path / "work"
    secrets.mkdir()
    work.mkdir()
    model = tmp_path / f"model{suffix}"
    crafted(saved[suffix], kind, secret(saved["kernel"].shape), secrets, model)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-m", "cnncalc", "build", str(model), "--input", str(saved["x"]), "-o", "book.xlsx"],
                       cwd=work, capture_output=True, text=True, env=env, timeout=120)
    assert_refused_cleanly(r.returncode, r.stdout, r.stderr, [work], REFUSED[kind])


@pytest.mark.keras
def test_an_external_link_is_named_as_such_not_as_a_missing_object(saved, tmp_path):
    """Issue 10: a .keras external link was reported as "object 'kernel' doesn't exist" (the other file missing)."""
    model = tmp_path / "model.keras"
    crafted(saved[".keras"], "external_link", secret(saved["kernel"].shape), tmp_path / "gone", model)
    with pytest.raises(CnncalcError) as info:
        load_model(model)
    message = str(info.value)
    assert "external link" in message and "/layers/dense_1/vars/0" in message and "doesn't exist" not in message


@pytest.mark.keras
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_an_external_link_anywhere_is_refused_even_where_no_weight_is_read(saved, suffix, tmp_path):
    """The whole file is checked, not only the weights cnncalc reads: a link out of it is never kept."""
    model = tmp_path / f"model{suffix}"
    (tmp_path / "other.h5").write_bytes(b"")
    model.write_bytes(saved[suffix].read_bytes())

    def add_link(f):
        f["/unused"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/")
    edit_h5(model, add_link)
    with pytest.raises(CnncalcError, match="'/unused' is a link out of the file"):
        load_model(model)


# ---------------------------------------------------------------- inside the file: loads exactly as before


@pytest.mark.keras
@pytest.mark.parametrize("kind", KEPT)
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_storage_inside_the_file_loads_as_before(saved, suffix, kind, tmp_path):
    model = tmp_path / f"model{suffix}"
    crafted(saved[suffix], kind, saved["kernel"], tmp_path, model)
    original, again = load_model(saved[suffix]), load_model(model)
    x = np.load(saved["x"])
    np.testing.assert_array_equal(again.layers[-1].weights["kernel"], saved["kernel"])
    np.testing.assert_array_equal(again.predict(x), original.predict(x))


# ---------------------------------------------------------------- declared shapes are checked before a read


def never_read_huge(monkeypatch):
    """Fail the test (in the reading process too) if a dataset of 7000 x 7000 values is ever read."""
    read = h5py.Dataset.__getitem__

    def guarded(self, key):
        if self.shape == (7000, 7000):
            pytest.fail(f"{self.name} was read")
        return read(self, key)
    monkeypatch.setattr(h5py.Dataset, "__getitem__", guarded)


@pytest.mark.keras
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_a_large_dataset_of_the_wrong_shape_is_refused_before_it_is_read(saved, suffix, tmp_path, monkeypatch):
    """Issue 10: a 49 M-value dataset where a (10, 2) kernel belongs was read (8 s) before "wrong shape".
    Its declared shape is now compared with the layer's config first; reading it would fail this test."""
    model = tmp_path / f"model{suffix}"
    model.write_bytes(saved[suffix].read_bytes())

    def huge(f):  # declared only (chunked, nothing written): the file stays small
        del f[KERNEL[suffix]]
        f.create_dataset(KERNEL[suffix], shape=(7000, 7000), dtype="f4", chunks=(100, 100))
    edit_h5(model, huge)
    never_read_huge(monkeypatch)
    with pytest.raises(CnncalcError, match=r"wrong shape.*Expected \(10, 2\).*Received \(7000, 7000\)"):
        load_model(model)


@pytest.mark.keras
def test_more_datasets_than_the_layer_has_weights_are_refused_before_they_are_read(saved, tmp_path, monkeypatch):
    model = tmp_path / "model.keras"
    model.write_bytes(saved[".keras"].read_bytes())
    edit_h5(model, lambda f: f.create_dataset("layers/dense_1/vars/2", shape=(7000, 7000), dtype="f4", chunks=(100, 100)))
    never_read_huge(monkeypatch)
    with pytest.raises(CnncalcError, match=r"wrong number of weights.*Expected 2 \(kernel, bias\)\. Received 3"):
        load_model(model)


# ---------------------------------------------------------------- limits of the walk


def _tiny_h5(tmp_path, change):
    """A legacy .h5 model (no Keras needed: one Dense), its file changed with change(h5py.File)."""
    import json

    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 3], "name": "in"}},
        {"class_name": "Dense", "config": {"name": "d", "units": 2}}]}}
    path = tmp_path / "tiny.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        g = f.create_group("model_weights/d")
        f["model_weights"].attrs["layer_names"] = [b"d"]
        g.attrs["weight_names"] = [b"d/kernel:0", b"d/bias:0"]
        g.create_dataset("d/kernel:0", data=np.ones((3, 2), "f4"))
        g.create_dataset("d/bias:0", data=np.zeros(2, "f4"))
        change(f)
    return path


def test_a_file_of_too_many_links_is_refused_not_walked(tmp_path, monkeypatch):
    from cnncalc import guards

    monkeypatch.setattr(guards, "MAX_HDF5_LINKS", 50)
    path = _tiny_h5(tmp_path, lambda f: [f.create_group(f"many/{i}") for i in range(60)])
    with pytest.raises(CnncalcError, match="The number of HDF5 links in .* is too large"):
        load_model(path)


def test_soft_links_to_soft_links_deeper_than_hdf5_follows_are_a_loop(tmp_path):
    def chain(f):
        for i in range(20):
            f[f"s{i}"] = h5py.SoftLink(f"/s{i + 1}")
        f["s20"] = h5py.SoftLink("/model_weights")
    with pytest.raises(CnncalcError, match="leads round in a loop"):
        load_model(_tiny_h5(tmp_path, chain))


def test_a_soft_link_chain_within_hdf5s_depth_loads(tmp_path):
    def chain(f):
        for i in range(5):
            f[f"s{i}"] = h5py.SoftLink(f"s{i + 1}")  # relative: resolved in the root group
        f["s5"] = h5py.SoftLink("/model_weights/d/d/kernel:0")
    model = load_model(_tiny_h5(tmp_path, chain))
    np.testing.assert_array_equal(model.layers[0].weights["kernel"], np.ones((3, 2)))


def test_a_soft_link_through_a_dataset_leads_nowhere(tmp_path):
    def through(f):
        f["odd"] = h5py.SoftLink("/model_weights/d/d/kernel:0/deeper")
    with pytest.raises(CnncalcError, match="'/odd' leads nowhere"):
        load_model(_tiny_h5(tmp_path, through))


def test_names_from_the_file_are_shown_safely(tmp_path):
    """The other file's name comes from the file: control characters are escaped, the message stays one line."""
    def link(f):
        del f["model_weights/d/d/kernel:0"]
        f["model_weights/d/d/kernel:0"] = h5py.ExternalLink("/tmp/\x1b]0;pwned\x07\nsecret.h5", "/d")
    with pytest.raises(CnncalcError) as info:
        load_model(_tiny_h5(tmp_path, link))
    message = str(info.value)
    assert "\n" not in message and "\x1b" not in message and "\x07" not in message and "\\x1b" in message


def test_a_link_name_holding_a_slash_cannot_hide_a_dataset(tmp_path):
    """HDF5 never writes a '/' into a link name, but a crafted file can: the path 'a/b' would then name the
    dataset b in group a, and the other dataset (with external storage) would go unchecked. It is refused."""
    def hide(f):
        f.create_group("a").create_dataset("b", data=np.zeros(3, "f4"))
        f.create_dataset("aQb", shape=(3,), dtype="f4", external=[("outside.bin", 0, 12)])
    path = _tiny_h5(tmp_path, hide)
    data = path.read_bytes()
    assert data.count(b"aQb") == 1
    path.write_bytes(data.replace(b"aQb", b"a/b"))
    with pytest.raises(CnncalcError, match="the path '/a/b' leads to another object than its link"):
        load_model(path)
