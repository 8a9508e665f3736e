"""Read and write Keras model files without Keras.

Only zipfile, json, h5py and numpy are used, and nothing in a file is ever
executed: configs are plain JSON and weights are plain HDF5 datasets.  Layers
that carry code (Lambda) or need code we do not have (custom classes) are
refused by looking at their config, not by trying them.

A "model spec" is the plain dict both directions use::

    {"name": "toy",
     "input_shape": (4, 4, 1),            # without the batch dimension
     "layers": [{"class_name": "Conv2D",
                 "config": {...},         # the layer's Keras config as in the file
                 "weights": [kernel, bias]},   # layer.get_weights() order
                ...]}

The InputLayer is not in "layers"; it only gives "input_shape". A spec read from a file also holds
"compile_config", what the model was compiled with ({"loss", "optimizer", "loss_weights"} as saved, or None),
and "compile_source", where in the file that was looked for.
"""

import io
import json
import math
import os
import re
import select
import signal
import time
import traceback
import warnings
import zipfile

import h5py
import numpy as np
from h5py import h5d, h5g, h5l, h5o

from cnncalc import guards
from cnncalc.errors import CnncalcError, quoted, shown
from cnncalc.files import check_input, read_input

# The Keras release whose .keras layout write_keras_file reproduces.
KERAS_FORMAT_VERSION = "3.15.1"
# A fixed save date (the earliest a zip entry can carry) keeps output reproducible.
_DATE_SAVED = "1980-01-01@00:00:00"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

_MODEL_CLASSES = ("Sequential", "Functional", "Model")
# Layers whose config holds Python code (marshalled bytecode or TF ops).
_CODE_CLASSES = ("Lambda", "__lambda__", "TFOpLambda", "SlicingOpLambda")
# Layers that always own weights: for these an empty entry in the file means
# the weights are missing.  Weightless layers may have no entry at all.
_WEIGHTED_CLASSES = (
    "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose",
    "Conv3DTranspose", "DepthwiseConv2D", "SeparableConv2D", "Dense",
    "BatchNormalization", "LayerNormalization", "PReLU", "Embedding",
)
_FLOAT32_POLICY = {
    "module": "keras",
    "class_name": "DTypePolicy",
    "config": {"name": "float32"},
    "registered_name": None,
}


def keras_layer_key(class_name):
    """The snake_case name Keras derives from a class name (Conv2D -> conv2d).

    Same rules as keras.src.utils.naming.to_snake_case, which Keras uses both
    for default layer names and for the weight groups in .keras files.
    """
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


def read_model_file(path, config_path=None, check=None):
    """Read a .keras, legacy .h5 or .weights.h5 (+ config_path JSON) file into a spec (with its compile settings).

    config_path, when given, is a JSON file as written by `model.to_json()`;
    it is required for .weights.h5 files and overrides any config in the file
    (the compile settings still come from the file: to_json() holds none).
    check, when given, is called with the spec without weights as soon as the
    config is parsed, before any weight is read (loader uses it to refuse an
    absurdly large model from its config alone). It may return the weights each
    layer's config implies, one {weight name: shape} per layer: a dataset of
    another shape, or more datasets than that, is then refused before it is read.

    Nothing outside the file is ever read: an HDF5 file whose datasets or links
    point elsewhere is refused before a weight is read (see _check_inside).
    """
    path = os.fspath(path)
    return _isolated(lambda: _read_model_file(path, config_path, check), path)


def read_compile_config(path):
    """(compile settings, where they were looked for) of a .keras or .h5 file, without its model config or weights.

    The settings are {"loss", "optimizer", "loss_weights"} as saved (see _compile_config), or None for a model
    saved uncompiled or a .weights.h5 file. Read as read_model_file reads: in a child process with a time limit,
    an HDF5 file refused when anything in it points outside it.
    """
    path = os.fspath(path)
    found = _isolated(lambda: _read_compile_config(path), path)
    return found["compile_config"], found["compile_source"]


def _guarded(read, path):
    """read(); anything the file's structure breaks in zipfile/h5py/json (or in our walking of it) is a damaged
    or unexpected file, one CnncalcError whose cause --traceback shows."""
    try:
        return read()
    except CnncalcError:
        raise
    except Exception as exc:
        raise CnncalcError(
            f"Cannot read Keras model file {path}. Expected a valid .keras, .h5 "
            f"or .weights.h5 file. Received a damaged or unexpected file "
            f"({type(exc).__name__}: {_one_line(exc)[:200]})"
        ) from exc


class ChildError(Exception):
    """What went wrong in the reading process, as text (its type name and traceback), for --traceback."""

    def __init__(self, type_name, text):
        super().__init__(text)
        self.type_name = type_name


def _isolated(read, path):
    """_guarded(read, path) in a forked child process, with a time limit (guards.MAX_READ_SECONDS).

    A damaged HDF5 file can send libhdf5 into an endless loop, or crash it, inside C code where no
    signal reaches: in a child, that is a one-line error instead of a hang or a dead cnncalc. What read()
    returns (a spec, or another dict of JSON values) comes back as JSON and .npy bytes (never a pickle).
    Without os.fork (Windows), it runs here.
    """
    if not hasattr(os, "fork"):
        return _guarded(read, path)
    r, w = os.pipe()
    try:
        with warnings.catch_warnings():
            # JAX (when a caller has imported it) warns that a fork of a threaded process may deadlock: the child
            # only runs zipfile, json, h5py and numpy, and a stuck child is killed after MAX_READ_SECONDS anyway.
            warnings.simplefilter("ignore", RuntimeWarning)
            pid = os.fork()
    except OSError:  # no processes to spare (a sandbox, a limit): read here, unprotected
        os.close(r)
        os.close(w)
        return _guarded(read, path)
    if pid == 0:  # the child: report, then leave without running the parent's exit handlers
        os.close(r)
        try:
            with os.fdopen(w, "wb") as out:
                try:
                    out.write(b"S" + _pack(_guarded(read, path)))
                except BaseException as exc:  # a CnncalcError, or anything else: the parent decides
                    cause = exc.__cause__ if isinstance(exc, CnncalcError) else exc
                    trace = "".join(traceback.format_exception(cause)) if cause is not None else ""
                    out.write(b"E" + json.dumps({"type": type(exc).__name__, "message": str(exc),
                                                 "cause": type(cause).__name__ if cause is not None else None,
                                                 "trace": trace}).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = None
    try:
        data = _read_pipe(r, guards.MAX_READ_SECONDS)
    finally:
        os.close(r)
        if data is None:  # out of time, or interrupted: the child must not outlive us
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if data is None:
        raise CnncalcError(
            f"Cannot read Keras model file {path}: reading it took longer than {guards.MAX_READ_SECONDS:g} s "
            f"(a limit of cnncalc, in cnncalc/guards.py). Expected a valid .keras, .h5 or .weights.h5 file. "
            f"Received a file that sends the HDF5 library into an endless loop, a damaged file"
        )
    if os.WIFSIGNALED(status) or os.WEXITSTATUS(status) != 0 or data[:1] not in (b"S", b"E"):
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit status {os.WEXITSTATUS(status)}"
        raise CnncalcError(
            f"Cannot read Keras model file {path}: the HDF5 library crashed reading it ({how}). "
            f"Expected a valid .keras, .h5 or .weights.h5 file. Received a damaged file"
        )
    if data[:1] == b"S":
        return _unpack(data[1:])
    report = json.loads(data[1:])
    cause = ChildError(report["cause"], report["trace"]) if report["cause"] else None
    if report["type"] == "CnncalcError":
        raise CnncalcError(report["message"]) from cause
    if report["type"] == "KeyboardInterrupt":
        raise KeyboardInterrupt
    raise RuntimeError(f"reading {path} failed: {report['type']}: {report['message']}") from cause  # a bug: not the file's fault


def _read_pipe(fd, seconds):
    """Everything the child writes, or None when it is not done within `seconds`."""
    chunks = []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _pack(found):
    """What a read found as bytes: its JSON (a spec's weights replaced by their count), then each weight as .npy bytes."""
    layers = found.get("layers", [])
    arrays = [w for layer in layers for w in layer["weights"]]
    header = {**found, "layers": [{**layer, "weights": len(layer["weights"])} for layer in layers]}
    buffer = io.BytesIO()
    text = json.dumps(header).encode()
    buffer.write(len(text).to_bytes(8, "little") + text)
    for array in arrays:
        np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _unpack(data):
    """The inverse of _pack (arrays read with allow_pickle=False)."""
    size = int.from_bytes(data[:8], "little")
    spec = json.loads(data[8:8 + size])
    buffer = io.BytesIO(data[8 + size:])
    if "input_shape" in spec:
        spec["input_shape"] = tuple(spec["input_shape"])
    for layer in spec["layers"]:
        layer["weights"] = [np.lib.format.read_array(buffer, allow_pickle=False) for _ in range(layer["weights"])]
    return spec


def _read_model_file(path, config_path, check):
    check_input(path, "a Keras model file (.keras, .h5, or .weights.h5 with --config)")  # a pipe or device is never opened
    config = _read_json_file(config_path) if config_path is not None else None
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if config is None:
                _require(names, "config.json", path)
            _require(names, "model.weights.h5", path)
            # Only the two members we read are checked: a bomb elsewhere is never opened.
            members = [i for i in zf.infolist() if i.filename in ("config.json", "model.weights.h5")]
            guards.check_zip(_Members(members), path, guards.MAX_WEIGHTS_FILE_BYTES)
            own = _read_config_json(zf, path) if "config.json" in names else None
            spec, entries = parse_model_config(own if config is None else config)
            shapes = check(spec) if check else None
            weights_bytes = zf.read("model.weights.h5")
        with h5py.File(io.BytesIO(weights_bytes), "r") as h5:
            _check_inside(h5, f"model.weights.h5 in {quoted(path)}")
            return _build_spec(spec, entries, h5, path, shapes) | _keras_compile_config(own, path)
    if not h5py.is_hdf5(path):
        raise CnncalcError(
            f"Cannot read Keras model file {path}. Expected a .keras zip archive or an "
            f"HDF5 .h5/.weights.h5 file. Received a file that is neither"
        )
    with h5py.File(path, "r", locking=False) as h5:  # only read: no lock to take, none to leave behind
        if config is None:
            if "model_config" not in h5.attrs:
                raise CnncalcError(
                    f"No model config in {quoted(path)}. Expected a full model file (.keras or .h5), or this weights "
                    f"file with its architecture, a model.to_json() file (--config MODEL.json; config_path in Python). "
                    f"Received a weights-only file and no --config"
                )
            text = _attribute(h5, "model_config", guards.MAX_JSON_BYTES, f"model_config in {path}")
            config = parse_json(text, f"model_config in {path}")
        spec, entries = parse_model_config(config)
        shapes = check(spec) if check else None
        _check_inside(h5, quoted(path))  # the config (attributes of the root) is read first, as from a .keras zip
        return _build_spec(spec, entries, h5, path, shapes) | _h5_compile_config(h5, path)


def _read_compile_config(path):
    """{"compile_config", "compile_source"} of a .keras or .h5 file (see read_compile_config)."""
    check_input(path, "a Keras model file (.keras or .h5)")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return _keras_compile_config(_read_config_json(zf, path), path)
    if not h5py.is_hdf5(path):
        raise CnncalcError(f"Cannot read the compile settings of {quoted(path)}. Expected a .keras zip archive or an .h5 file. "
                           f"Received a file that is neither")
    with h5py.File(path, "r", locking=False) as h5:
        _check_inside(h5, quoted(path))
        return _h5_compile_config(h5, path)


def _require(names, member, path):
    """Refuse a .keras archive (its member names) without `member`."""
    if member not in names:
        raise CnncalcError(f"Invalid .keras file {path}. Expected a zip archive with {member}. "
                           f"Received an archive with {_short(sorted(names), 200)}")


def _read_config_json(zf, path):
    """config.json of a .keras archive, parsed; refused when missing, absurdly large or oddly compressed."""
    _require(zf.namelist(), "config.json", path)
    info = zf.getinfo("config.json")
    guards.check_zip(_Members([info]), path, guards.MAX_JSON_BYTES)
    return parse_json(zf.read(info), f"config.json in {path}")


class _Members:
    """A zip's members, as guards.check_zip wants them (an object with infolist())."""

    def __init__(self, infos):
        self._infos = infos

    def infolist(self):
        return self._infos


def _keras_compile_config(config, path):
    """The compile settings in a .keras file's config.json (parsed; None when the archive has none): Keras 3's compile_config."""
    compiled = config.get("compile_config") if isinstance(config, dict) else None
    return _compile_config(compiled, "optimizer", f"compile_config in config.json of {quoted(path)}")


def _h5_compile_config(h5, path):
    """The compile settings of a legacy .h5 file: its training_config root attribute (the optimizer in optimizer_config)."""
    where = f"training_config of {quoted(path)}"
    text = _attribute(h5, "training_config", guards.MAX_JSON_BYTES, where) if "training_config" in h5.attrs else None
    return _compile_config(None if text is None else parse_json(text, where), "optimizer_config", where)


def _compile_config(compiled, optimizer_key, where):
    """{"compile_config": {"loss", "optimizer", "loss_weights"} as saved, or None for a model saved uncompiled;
    "compile_source": where}. The optimizer is Keras's serialized form {"class_name": ..., "config": {...}} (or a
    name), the loss a name or a serialized loss: Keras 3's compile_config and tf.keras's training_config alike."""
    if compiled is not None and not isinstance(compiled, dict):
        raise CnncalcError(f"Invalid {where}. Expected an object with loss and {optimizer_key}. Received {shown(repr(compiled))}")
    config = None if compiled is None else {
        "loss": compiled.get("loss"), "optimizer": compiled.get(optimizer_key), "loss_weights": compiled.get("loss_weights")}
    return {"compile_config": config, "compile_source": where}


def _attribute(obj, name, max_bytes, where):
    """An HDF5 attribute, refused before reading when its declared size is absurd.

    (A variable-length string's characters live in the file's heap, so the file's size bounds them.)
    """
    attr = obj.attrs.get_id(name)
    declared = math.prod(attr.shape or ()) * max(attr.dtype.itemsize, 1)
    if declared > max_bytes:
        raise guards.too_large(where, max_bytes, declared, " bytes")
    return obj.attrs[name]


def _read_json_file(config_path):
    text = read_input(config_path, "the model's architecture as JSON (model.to_json()) for --config", guards.MAX_JSON_BYTES)
    return parse_json(text, quoted(os.fspath(config_path)))


def parse_json(text, where):
    """A model config from JSON text (str, bytes, or an HDF5 attribute holding either), refused when it is not
    UTF-8, too large, too deep, or holds text that is not Unicode; `where` names it in messages."""
    if isinstance(text, np.ndarray) and text.shape == ():
        text = text[()]
    if isinstance(text, (bytes, np.bytes_)):
        text = bytes(text)
        if len(text) > guards.MAX_JSON_BYTES:
            raise guards.too_large(where, guards.MAX_JSON_BYTES, len(text), " bytes")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CnncalcError(f"{where} is not UTF-8 text. Expected a Keras model config as JSON. "
                               f"Received {exc.reason} at byte {exc.start}") from None
    if not isinstance(text, str):
        raise CnncalcError(f"Invalid {where}. Expected a Keras model config as JSON text. Received {type(text).__name__}")
    if len(text) > guards.MAX_JSON_BYTES:
        raise guards.too_large(where, guards.MAX_JSON_BYTES, len(text), " characters")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CnncalcError(
            f"Malformed JSON in {where}. Expected a Keras model config. "
            f"Received invalid JSON ({_one_line(exc)})"
        ) from None
    except RecursionError:
        raise guards.too_large(f"The nesting of {where}", guards.MAX_JSON_DEPTH, guards.MAX_JSON_DEPTH + 1, "+ levels") from None
    guards.check_json(value, where)
    try:  # JSON's \ud800 escapes can make half a character, which no terminal, workbook or HDF5 file can take
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CnncalcError(f"Invalid {where}. Expected Unicode text. Received half of a UTF-16 surrogate pair, "
                           f"{exc.object[exc.start:exc.end]!r}") from None
    return value


# --------------------------------------------------------------------------
# HDF5: nothing outside the file
# --------------------------------------------------------------------------

# Filters built into libhdf5, and lzf (built into h5py). Any other filter id HDF5 decodes with a plugin: a
# shared library it looks for on disk and loads, code a model file would choose.
_BUILTIN_FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit", 6: "scaleoffset", 32000: "lzf"}
_STORED_LAYOUTS = (h5d.COMPACT, h5d.CONTIGUOUS, h5d.CHUNKED)
_SOFT_LINK_DEPTH = 16  # soft links HDF5 itself follows in a row (H5L_NUM_LINKS); more is a loop
_INSIDE = ("Expected every dataset and link stored inside the model file itself "
           "(cnncalc never reads a file that a model file names)")


def _check_inside(h5, source):
    """Refuse an HDF5 file whose contents are not all inside it, before anything in it is used.

    HDF5 lets a dataset keep its values in another file (external storage) or take them from datasets of
    other files (a virtual dataset), a link point into another file (an external link), and a filter be
    decoded by a plugin library: a model file could copy any file the user can read into the weights.
    No link is followed: HDF5 lists every link of every group reached through hard links (each group
    once), soft links are resolved by hand through this file only, and every object a hard link leads
    to is opened (once) to check that it is the one its link names and, for a dataset, its creation
    properties. Once no link leaves the file, no path in it can lead out.
    """
    root = h5.id
    links = []  # (path, link type, the address of the object a hard link leads to) of every link in the file

    def each_link(path, info):
        links.append((path, info.type, info.u))
        return True if len(links) > guards.MAX_HDF5_LINKS else None  # anything but None stops the listing

    root.links.visit(each_link, info=True)
    count = _LinkCount(source, len(links))
    objects = {}  # address -> path, of every object a hard link leads to
    for path, kind, address in links:
        where = "/" + _text(path)
        if kind == h5l.TYPE_SOFT:
            parent = path.rpartition(b"/")[0]
            _follow_soft(root, h5o.open(root, parent) if parent else root, root.links.get_val(path), where, source, count)
        elif kind == h5l.TYPE_HARD:
            objects.setdefault(address, path)
        else:
            raise _foreign_link(root, path, kind, where, source)
    for address, path in objects.items():
        obj = h5o.open(root, path)
        if h5o.get_info(obj).addr != address:  # a link name holding '/' made its path lead to another object
            raise CnncalcError(f"Invalid HDF5 file {source}: the path {quoted('/' + _text(path))} leads to another object "
                               "than its link. Expected link names without '/'. Received a damaged file")
        if isinstance(obj, h5d.DatasetID):
            _check_dataset_inside(obj, "/" + _text(path), source)


class _LinkCount:
    """Counts links listed and soft links followed, so a file of millions (or of soft links to soft links that
    branch) is refused rather than walked for minutes."""

    def __init__(self, source, count=0):
        self.source = source
        self.count = 0
        self.add(count)

    def add(self, n):
        self.count += n
        if self.count > guards.MAX_HDF5_LINKS:
            raise guards.too_large(f"The number of HDF5 links in {self.source}", guards.MAX_HDF5_LINKS, self.count)


def _foreign_link(group, name, kind, where, source):
    """The error for an external link (to an object of another file) or a user-defined link, never followed."""
    if kind == h5l.TYPE_EXTERNAL:
        filename, target = group.links.get_val(name)
        received = f"an HDF5 external link to {quoted(_text(target))} in the file {quoted(_text(filename))}"
    else:
        received = f"an HDF5 link of user-defined type {kind}"
    return CnncalcError(f"Refused {source}: {quoted(where)} is a link out of the file. {_INSIDE}. Received {received}")


def _follow_soft(root, group, target, where, source, links, depth=1):
    """Resolve the soft link at `where` (to `target`) by hand, through this file's own links only; refuse one
    that leads nowhere, loops or leaves the file. Returns the object it leads to."""
    shown_target = quoted(_text(target))
    if depth > _SOFT_LINK_DEPTH:
        raise CnncalcError(f"Refused {source}: the soft link {quoted(where)} leads round in a loop. Expected soft links "
                           f"that lead to an object in the file. Received links to links more than {_SOFT_LINK_DEPTH} deep, "
                           f"at {shown_target}")
    here = root if target.startswith(b"/") else group
    for part in (p for p in target.split(b"/") if p not in (b"", b".")):
        links.add(1)
        if not isinstance(here, h5g.GroupID) or not here.links.exists(part):
            raise CnncalcError(f"Refused {source}: the soft link {quoted(where)} leads nowhere. Expected soft links that "
                               f"lead to an object in the file. Received a link to {shown_target}, which is not in the file")
        kind = here.links.get_info(part).type
        if kind == h5l.TYPE_SOFT:
            here = _follow_soft(root, here, here.links.get_val(part), where, source, links, depth + 1)
        elif kind == h5l.TYPE_HARD:
            here = h5o.open(here, part)
        else:
            raise _foreign_link(here, part, kind, where, source)  # the soft link leads out through it
    return here


def _check_dataset_inside(dataset, where, source):
    """Refuse a dataset whose values are not stored in the file, or need a filter plugin, from its creation properties."""
    dcpl = dataset.get_create_plist()
    layout = dcpl.get_layout()
    if layout == h5d.VIRTUAL:
        mapped = [f"dataset {quoted(_text(dcpl.get_virtual_dsetname(i)))} of the file {quoted(_text(dcpl.get_virtual_filename(i)))}"
                  for i in range(min(dcpl.get_virtual_count(), 1))]
        raise CnncalcError(f"Refused {source}: dataset {quoted(where)} takes its values from other datasets. {_INSIDE}. "
                           f"Received an HDF5 virtual dataset (VDS) mapping {mapped[0] if mapped else 'nothing'}")
    if dcpl.get_external_count():
        raise CnncalcError(f"Refused {source}: dataset {quoted(where)} keeps its values in another file. {_INSIDE}. "
                           f"Received HDF5 external storage in the file {quoted(_text(dcpl.get_external(0)[0]))}")
    if layout not in _STORED_LAYOUTS:
        raise CnncalcError(f"Refused {source}: dataset {quoted(where)} has an unknown storage layout. Expected compact, "
                           f"contiguous or chunked storage inside the file. Received HDF5 layout {layout}")
    for i in range(dcpl.get_nfilters()):
        code, _, _, name = dcpl.get_filter(i)
        if code not in _BUILTIN_FILTERS:
            named = f" ({quoted(_text(name))})" if name else ""
            raise CnncalcError(f"Refused {source}: dataset {quoted(where)} needs HDF5 filter {code}{named}, which HDF5 would "
                               f"load from a plugin library. Expected only the filters built into HDF5 and h5py "
                               f"({', '.join(_BUILTIN_FILTERS.values())}); cnncalc never loads code a model file asks for. "
                               f"Received filter {code}")


def _text(name):
    """A name from an HDF5 file (bytes or str) as text."""
    return name.decode("utf-8", "backslashreplace") if isinstance(name, bytes) else str(name)


def _build_spec(spec, entries, h5, path, shapes=None):
    """The spec (without weights; entries: its layers' config entries) with the weights in an open HDF5 file
    (shapes: see read_model_file)."""
    budget = _Budget(path, shapes)
    if "model_weights" in h5:  # legacy model.save("x.h5")
        if not isinstance(h5["model_weights"], h5py.Group):
            raise CnncalcError(f"Invalid model file {path}. Expected a group model_weights holding the weights. "
                               f"Received {type(h5['model_weights']).__name__}")
        weights = _legacy_weights(h5["model_weights"], entries, path, budget)
    elif "layer_names" in h5.attrs:  # legacy save_weights("x.h5"): weights at the root
        weights = _legacy_weights(h5, entries, path, budget)
    else:  # Keras 3 .keras / .weights.h5
        weights = _keras3_weights(h5, entries, path, budget)
    return {**spec, "layers": [{**layer, "weights": w} for layer, w in zip(spec["layers"], weights)]}


class _Budget:
    """Counts the weights read so far, so the whole file stays under guards.MAX_PARAMS; knows the shapes
    the layers expect (a list of {weight name: shape}, or None), so a dataset of another shape is never read."""

    def __init__(self, path, shapes=None):
        self.path = path
        self.params = 0
        self.shapes = shapes

    def expect(self, k, entry, count, where):
        """[(weight name, shape)] layer k's config implies; a layer with more than that is refused before a read."""
        if self.shapes is None:
            return [None] * count
        expected = list(self.shapes[k].items())
        if count > len(expected):
            raise CnncalcError(
                f"Layer '{layer_name(entry)}' ({entry['class_name']}) has the wrong number of weights in {self.path}. "
                f"Expected {len(expected)} ({', '.join(n for n, _ in expected) or 'none'}). Received {count} under {where}")
        return expected[:count]

    def read(self, dataset, where, expected=None):
        """A weight dataset as an array, checked (kind, declared shape, running total) before it is read;
        expected: (weight name, shape) the layer's config implies, or None."""
        if not isinstance(dataset, h5py.Dataset):
            raise CnncalcError(f"Invalid weights file {self.path}. Expected a dataset of numbers at {where}. "
                               f"Received {type(dataset).__name__}")
        if dataset.dtype.kind not in "fiu":
            raise CnncalcError(f"Weight {where} in {self.path} holds {dataset.dtype} values. "
                               "Expected numbers (float or int), as Keras saves weights")
        if dataset.shape is None:
            raise CnncalcError(f"Weight {where} in {self.path} is empty (a null dataspace). Expected an array of numbers")
        size = math.prod(dataset.shape)
        if size > guards.MAX_TENSOR_VALUES:
            raise guards.too_large(f"Weight {where} of shape {dataset.shape} in {self.path}", guards.MAX_TENSOR_VALUES, size, " values")
        if expected is not None and tuple(dataset.shape) != tuple(expected[1]):
            raise CnncalcError(f"Weight {where} ({expected[0]}) has the wrong shape in {self.path}. "
                               f"Expected {tuple(expected[1])}, from the layer's config. Received {dataset.shape}")
        self.params += size
        if self.params > guards.MAX_PARAMS:
            raise guards.too_large(f"The weights in {self.path} (up to {where})", guards.MAX_PARAMS, self.params, " values")
        return np.asarray(dataset[()])


def parse_model_config(model):
    """(the spec without weights, its layers' entries in the config) of a parsed Keras model config; refused
    unless it is a Sequential, or a Functional model that is one chain, of built-in layers without code.

    The spec's "input_layer" (the input's name) is given for Functional models only: their summary lists the
    InputLayer, a Sequential's does not. The entries are the layers' objects in the config, without the InputLayer.
    """
    if not isinstance(model, dict) or "class_name" not in model:
        raise CnncalcError(
            "Invalid model config. Expected a JSON object with class_name and config. "
            f"Received {type(model).__name__}"
        )
    class_name = model["class_name"]
    config = model.get("config")
    if not _is_keras_module(model.get("module", "keras")):  # legacy configs have no module
        raise CnncalcError(
            f"Unsupported model class {class_name} from module {model['module']}. "
            f"Expected a built-in Keras Sequential or Functional model. "
            f"Received a custom model class"
        )
    if class_name not in _MODEL_CLASSES:
        raise CnncalcError(
            "Unsupported model class. Expected Sequential or a Functional model. "
            f"Received class_name={class_name}"
        )
    if isinstance(config, list):  # Keras 2.0-2.2 Sequential: the config is the layer list
        config = {"layers": config}
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        raise CnncalcError(
            f"Invalid {class_name} config. Expected a config with a list of layers. "
            f"Received {_short(config)}"
        )
    layers = config["layers"]
    if len(layers) > guards.MAX_LAYERS + 1:  # + 1: the InputLayer
        raise guards.too_large(f"The {class_name} model", guards.MAX_LAYERS, len(layers), " layers")
    for entry in layers:
        _check_layer_entry(entry)
        if entry["class_name"] in _MODEL_CLASSES:
            raise CnncalcError(
                f"Layer '{layer_name(entry)}' ({entry['class_name']}) is a model inside the "
                f"model. Expected a flat model of plain layers. Received a nested model"
            )
    if not layers:
        raise CnncalcError(f"Invalid {class_name} config. Expected at least one layer. Received none")
    if class_name != "Sequential":
        _check_single_chain(config)
    if layers[0]["class_name"] == "InputLayer":
        input_entry, entries = layers[0], layers[1:]
    else:
        input_entry, entries = None, layers
    for entry in entries:
        if entry["class_name"] == "InputLayer":
            raise CnncalcError(
                f"Layer '{layer_name(entry)}' (InputLayer) is not the first layer. "
                f"Expected one InputLayer at the start of the model. Received it in the middle"
            )
    if not entries:
        raise CnncalcError(
            "Model has no layers. Expected at least one layer after the input. "
            "Received only an InputLayer"
        )
    spec = {"name": guards.check_name(config.get("name"), "the model") or keras_layer_key(class_name),
            "input_shape": _input_shape(model, input_entry, entries[0]),
            "layers": [{"class_name": e["class_name"], "config": e["config"]} for e in entries]}
    if input_entry and class_name != "Sequential":
        spec["input_layer"] = layer_name(input_entry)
    return spec, entries


def _check_layer_entry(entry):
    """Make sure a layer entry is a {class_name, config} dict holding no code."""
    _check_layer_form(entry)
    _check_no_code(entry)


def _check_layer_form(entry):
    if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str) \
            or not isinstance(entry.get("config"), dict):
        raise CnncalcError(
            "Invalid layer in model config. Expected an object with class_name and config. "
            f"Received {_short(entry)}"
        )
    guards.check_name(entry.get("name"), "a layer")
    guards.check_name(entry["config"].get("name"), "a layer")


def _check_no_code(entry):
    """Refuse Lambda layers and custom objects, judged from the config alone."""
    layer = f"Layer '{layer_name(entry)}' ({entry['class_name']})"
    for obj in _walk_objects({k: v for k, v in entry.items() if k != "inbound_nodes"}):
        cls = obj["class_name"]
        if cls in _CODE_CLASSES:
            raise CnncalcError(
                f"{layer} contains Python code ({cls}). Expected only built-in layers "
                f"without code; cnncalc never runs code from a model file. "
                f"Received class_name={cls}"
            )
        module = obj.get("module", "keras")  # legacy configs have no module key
        registered = obj.get("registered_name")
        if not _is_keras_module(module) or (isinstance(registered, str) and ">" in registered):
            raise CnncalcError(
                f"{layer} uses the custom object {registered or cls} (module {module}). "
                f"Expected only built-in Keras objects; cnncalc never runs code from a "
                f"model file. Received class_name={cls}"
            )


def _walk_objects(value):
    """Yield every serialized object ({"class_name": ...} dict) nested in value."""
    if isinstance(value, dict):
        if isinstance(value.get("class_name"), str):
            yield value
        for item in value.values():
            yield from _walk_objects(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk_objects(item)


def _is_keras_module(module):
    return isinstance(module, str) and (module == "keras" or module.startswith("keras."))


def _check_single_chain(config):
    """Accept a Functional model only if it is one chain of layers in file order."""
    layers = config["layers"]
    inputs = _node_refs(config.get("input_layers"))
    outputs = _node_refs(config.get("output_layers"))
    if len(inputs) != 1 or len(outputs) != 1:
        raise CnncalcError(
            "Unsupported Functional model. Expected exactly one input and one output. "
            f"Received {len(inputs)} inputs and {len(outputs)} outputs"
        )
    inbound = {layer_name(e): _inbound_layer_names(e) for e in layers}
    consumers = {name: [] for name in inbound}
    for name, sources in inbound.items():
        for source in sources:
            consumers.setdefault(source, []).append(name)
    for i, entry in enumerate(layers):
        name = layer_name(entry)
        what = f"Layer '{name}' ({entry['class_name']})"
        expected_inputs = 0 if i == 0 else 1
        if len(inbound[name]) != expected_inputs:
            raise CnncalcError(
                f"{what} has {len(inbound[name])} inputs {inbound[name]}. Expected a single-chain "
                f"model where every layer has exactly one input. Received a branching model"
            )
        if len(consumers[name]) > 1:
            raise CnncalcError(
                f"{what} has several outputs, it feeds {consumers[name]}. Expected a single-chain "
                f"model where every layer feeds the next one only. Received a branching model"
            )
        if i > 0 and inbound[name][0] != layer_name(layers[i - 1]):
            raise CnncalcError(
                f"{what} takes its input from '{inbound[name][0]}'. Expected a single chain "
                f"in layer order, from '{layer_name(layers[i - 1])}'. Received another order"
            )
    if inputs[0] != layer_name(layers[0]) or outputs[0] != layer_name(layers[-1]):
        raise CnncalcError(
            "Unsupported Functional model. Expected the first layer to be the input and the "
            f"last layer the output. Received input {inputs[0]} and output {outputs[0]}"
        )


def _node_refs(refs):
    """Layer names from input_layers/output_layers, in both Keras 3 and Keras 2 forms."""
    if not refs:
        return []
    if isinstance(refs, list) and isinstance(refs[0], str):  # Keras 3 writes a single ["name", 0, 0]
        refs = [refs]
    if not isinstance(refs, list) or not all(isinstance(r, list) and r and isinstance(r[0], str) for r in refs):
        raise CnncalcError(
            "Invalid Functional model config. Expected input_layers and output_layers such as "
            f'[["input_layer", 0, 0]]. Received {_short(refs)}'
        )
    return [ref[0] for ref in refs]


def _inbound_layer_names(entry):
    """Names of the layers feeding a Functional layer entry."""
    nodes = entry.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise CnncalcError(
            f"Layer '{layer_name(entry)}' ({entry['class_name']}) is called {len(nodes)} times. "
            f"Expected a single-chain model where every layer is used once. Received a shared layer"
        )
    names = []
    for node in nodes:
        _collect_history(node, names)
    return names


def _collect_history(value, names):
    """Find the source layer names of every tensor mentioned in a node."""
    if isinstance(value, dict):
        if "keras_history" in value:  # Keras 3: {"keras_history": [name, node, tensor]}
            history = value["keras_history"]
            if not isinstance(history, list) or not history or not isinstance(history[0], str):
                raise CnncalcError(f"Invalid Functional model config. Expected keras_history [layer name, node, tensor]. "
                                   f"Received {_short(history)}")
            names.append(history[0])
            return
        for item in value.values():
            _collect_history(item, names)
    elif isinstance(value, list):
        # Keras 2: [name, node_index, tensor_index, kwargs]
        if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int):
            names.append(value[0])
            return
        for item in value:
            _collect_history(item, names)


def _input_shape(model, input_entry, first_entry):
    """The input shape without the batch dimension, from wherever this Keras version put it."""
    candidates = []
    if input_entry is not None:
        cfg = input_entry["config"]
        candidates += [cfg.get("batch_shape"), cfg.get("batch_input_shape")]
    cfg = first_entry["config"]
    candidates += [
        cfg.get("batch_input_shape"),
        cfg.get("batch_shape"),
        _as_dict(first_entry.get("build_config")).get("input_shape"),
    ]
    model_config = _as_dict(model.get("config"))
    candidates += [
        model_config.get("build_input_shape"),
        _as_dict(model.get("build_config")).get("input_shape"),
    ]
    for shape in candidates:
        if isinstance(shape, list) and len(shape) >= 2:
            if not all(d is None or (isinstance(d, int) and not isinstance(d, bool) and d > 0) for d in shape[1:]):
                raise CnncalcError(
                    "Invalid input shape in the model config. Expected positive whole numbers such as "
                    f"[null, 28, 28, 1]. Received {_short(shape)}"
                )
            return tuple(shape[1:])
    raise CnncalcError(
        "Model config has no input shape. Expected an InputLayer with batch_shape, or "
        "batch_input_shape/build_input_shape on the first layer. Received none of these"
    )


def _as_dict(value):
    """An optional object of a config: itself, or {} when it is missing or not an object."""
    return value if isinstance(value, dict) else {}


def layer_name(entry):
    """A layer's name, from its entry in a model config."""
    return entry.get("name") or entry.get("config", {}).get("name") or "<unnamed>"


def _keras3_weights(h5, entries, path, budget):
    """Weights from a Keras 3 weights file: layers/<snake_case class>[_n]/vars/<i>."""
    # tf.keras 2.13-2.15 wrote the same layout under another top-level name.
    root = h5.get("layers", h5.get("_layer_checkpoint_dependencies"))
    if not isinstance(root, h5py.Group):
        raise CnncalcError(
            f"No layer weights in {path}. Expected a Keras weights file with a 'layers' group. "
            f"Received groups {_short(sorted(h5.keys()), 200)}"
        )
    used = {}
    all_weights = []
    for k, entry in enumerate(entries):
        # Keras names the groups by class and position, not by layer name.
        key = _unique_name(keras_layer_key(entry["class_name"]), used)
        group = root.get(f"{key}/vars")
        arrays = []
        if group is not None:
            if not isinstance(group, h5py.Group) or len(group) > guards.MAX_WEIGHTS_PER_LAYER:
                raise CnncalcError(
                    f"Weights of layer '{layer_name(entry)}' ({entry['class_name']}) are damaged in {path}. "
                    f"Expected a group layers/{key}/vars of at most {guards.MAX_WEIGHTS_PER_LAYER} arrays. "
                    f"Received {_short(group)}"
                )
            expected = budget.expect(k, entry, len(group), f"layers/{key}/vars")
            for i in range(len(group)):
                if str(i) not in group:
                    raise CnncalcError(
                        f"Weights of layer '{layer_name(entry)}' ({entry['class_name']}) are "
                        f"incomplete in {path}. Expected layers/{key}/vars/{i}. "
                        f"Received vars {sorted(group.keys())}"
                    )
                arrays.append(budget.read(group[str(i)], f"layers/{key}/vars/{i}", expected[i]))
        _check_not_missing(entry, arrays, f"layers/{key}/vars", path)
        all_weights.append(arrays)
    return all_weights


def _unique_name(name, used):
    """Keras saving_lib's _get_unique_name: conv2d, conv2d_1, conv2d_2, ..."""
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


def _legacy_weights(root, entries, path, budget):
    """Weights from a legacy HDF5 file: <root>/<layer name> with a weight_names attribute."""
    all_weights = []
    for k, entry in enumerate(entries):
        name = layer_name(entry)
        group = root.get(name)
        arrays = []
        if group is not None:
            if not isinstance(group, h5py.Group):
                raise CnncalcError(
                    f"Weights of layer '{name}' ({entry['class_name']}) are damaged in {path}. "
                    f"Expected a group {name} holding its weights. Received {type(group).__name__}"
                )
            weight_names = _h5_name_list(group, "weight_names")
            expected = budget.expect(k, entry, len(weight_names), f"model_weights/{name}")
            for weight_name, shape in zip(weight_names, expected):
                dataset = _find_dataset(group, weight_name)
                if dataset is None:
                    raise CnncalcError(
                        f"Weights of layer '{name}' ({entry['class_name']}) are missing in "
                        f"{path}. Expected the dataset {weight_name} listed in weight_names. "
                        f"Received no such dataset"
                    )
                arrays.append(budget.read(dataset, f"{name}/{weight_name}", shape))
        _check_not_missing(entry, arrays, f"model_weights/{name}", path)
        all_weights.append(arrays)
    return all_weights


def _h5_name_list(group, attr):
    """A list-of-names attribute; Keras splits long ones into attr0, attr1, ..."""
    limit = guards.MAX_WEIGHTS_PER_LAYER * (guards.MAX_NAME_LENGTH + 64)
    if attr in group.attrs:
        values = list(np.atleast_1d(_attribute(group, attr, limit, f"{attr} of {group.name}")))
    else:
        values, chunk = [], 0
        while f"{attr}{chunk}" in group.attrs:
            values += list(np.atleast_1d(_attribute(group, f"{attr}{chunk}", limit, f"{attr}{chunk} of {group.name}")))
            chunk += 1
    if len(values) > guards.MAX_WEIGHTS_PER_LAYER:
        raise guards.too_large(f"The weight list {attr} of {group.name}", guards.MAX_WEIGHTS_PER_LAYER, len(values), " names")
    # An empty list is stored as a float array; names come as bytes or str.
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _find_dataset(group, weight_name):
    """Look a weight up by its listed name, with or without the TF ':0' suffix."""
    base = weight_name[:-2] if weight_name.endswith(":0") else weight_name
    for candidate in (weight_name, base, base + ":0"):
        item = group.get(candidate)
        if isinstance(item, h5py.Dataset):
            return item
    return None


def _check_not_missing(entry, arrays, where, path):
    if not arrays and entry["class_name"] in _WEIGHTED_CLASSES:
        raise CnncalcError(
            f"Weights of layer '{layer_name(entry)}' ({entry['class_name']}) are missing in "
            f"{path}. Expected weights under {where}. Received none"
        )


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------


# The files write_model_file writes; Keras tells a file's format by its name (.weights.h5 also ends in .h5).
MODEL_SUFFIXES = (".keras", ".weights.h5", ".h5")
# HDF5 keeps attributes in a 64 KB object header; Keras splits a longer name list into name0, name1, ...
_HDF5_HEADER_LIMIT = 64512


def model_suffix(path, allowed=MODEL_SUFFIXES):
    """Which of `allowed` the file name ends with; any other name is refused with the list."""
    name = os.path.basename(os.fspath(path))
    for suffix in sorted(MODEL_SUFFIXES, key=len, reverse=True):  # x.weights.h5 is a weights file, not an .h5 model
        if name.endswith(suffix) and len(name) > len(suffix):
            if suffix in allowed:
                return suffix
            break
    raise CnncalcError(
        f"Cannot write a Keras model to {quoted(os.fspath(path))}: Keras tells a model file's format by its name. "
        f"Expected a name ending in {', '.join(allowed)}. Received the name {quoted(name)}"
    )


def write_model_file(spec, path, suffix, compile_config=None):
    """Write a spec in the format of `suffix` (the final name's: `path` may be a temporary file).

    .keras and legacy .h5 carry the compile settings when given (a Keras 3 compile_config dict);
    .weights.h5 holds the weights only, for `model.load_weights` on a model of the same architecture.
    """
    if suffix == ".keras":
        write_keras_file(spec, path, compile_config)
    elif suffix == ".h5":
        write_legacy_h5_file(spec, path, compile_config)
    elif suffix == ".weights.h5":
        model_config, layer_keys = _sequential_config(spec)
        _write_bytes(path, _weights_h5_bytes(spec, model_config, layer_keys))
    else:
        raise CnncalcError(f"Cannot write a Keras model as {quoted(suffix)}. Expected one of {', '.join(MODEL_SUFFIXES)}")


def write_keras_file(spec, path, compile_config=None):
    """Write a spec as a Keras 3 .keras file (a Sequential model), compiled when compile_config is given.

    The same spec always gives the same bytes: fixed save date, fixed zip
    timestamps, no HDF5 timestamps.
    """
    model_config, layer_keys = _sequential_config(spec)
    if compile_config is not None:
        model_config["compile_config"] = compile_config
    metadata = {"keras_version": KERAS_FORMAT_VERSION, "date_saved": _DATE_SAVED}
    members = [
        ("metadata.json", json.dumps(metadata).encode("utf-8")),
        ("config.json", _config_json(model_config)),
        ("model.weights.h5", _weights_h5_bytes(spec, model_config, layer_keys)),
    ]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.create_system = 3  # Unix, whatever platform writes it
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    _write_bytes(path, buffer.getvalue())


def write_legacy_h5_file(spec, path, compile_config=None):
    """Write a spec as a legacy HDF5 model file, laid out as Keras 3's `model.save("m.h5")` lays it out.

    Attributes model_config (the model's get_config(): entries without module) and, when compiled,
    training_config; weights in model_weights/<layer>/<model>/<layer>/<weight>, listed in order by the
    layer_names and weight_names attributes (Keras loads them by that order).
    """
    model_config, _ = _sequential_config(spec)
    entries = model_config["config"]["layers"]
    legacy = {"class_name": "Sequential",
              "config": {**model_config["config"], "layers": [{"class_name": e["class_name"], "config": e["config"]} for e in entries]}}
    model_name = legacy["config"]["name"]
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5.attrs["keras_version"] = KERAS_FORMAT_VERSION
        h5.attrs["model_config"] = _config_json(legacy)
        if compile_config is not None:
            h5.attrs["training_config"] = _config_json(_training_config(compile_config))
        root = h5.create_group("model_weights")
        root.attrs["keras_version"] = KERAS_FORMAT_VERSION
        names = [e["config"]["name"] for e in entries[1:]]
        _save_name_list(root, "layer_names", names)
        for layer, name in zip(spec["layers"], names):
            if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
                raise CnncalcError(f"Invalid layer name {quoted(name)} for an HDF5 file. Expected a name without '/'. Received {quoted(name)}")
            weights = layer.get("weights") or []
            paths = [f"{model_name}/{name}/{w}" for w in layer.get("weight_names") or range(len(weights))]
            group = root.create_group(name)
            _save_name_list(group, "weight_names", paths)
            for weight_path, array in zip(paths, weights):
                group.create_dataset(weight_path, data=np.asarray(array))
        _save_name_list(root.create_group("top_level_model_weights"), "weight_names", [])
    _write_bytes(path, buffer.getvalue())


def _training_config(compile_config):
    """A .keras compile_config as a legacy .h5 training_config: the optimizer goes into optimizer_config."""
    config = {k: v for k, v in compile_config.items() if k != "optimizer"}
    optimizer = compile_config.get("optimizer")
    if isinstance(optimizer, dict):
        config["optimizer_config"] = {"class_name": optimizer.get("class_name"), "config": optimizer.get("config", {})}
    elif optimizer is not None:  # a name such as "adam"
        config["optimizer_config"] = {"class_name": str(optimizer), "config": {}}
    return config


def _save_name_list(group, attr, names):
    """A list of names as an HDF5 attribute, as Keras saves it (split into attr0, attr1, ... when long)."""
    data = np.array([n.encode("utf-8") for n in names]) if names else np.array([])  # Keras: an empty list is a float array
    chunks = 1
    while any(part.nbytes > _HDF5_HEADER_LIMIT for part in np.array_split(data, chunks)):
        chunks += 1
    if chunks == 1:
        group.attrs[attr] = data
    else:
        for i, part in enumerate(np.array_split(data, chunks)):
            group.attrs[f"{attr}{i}"] = part


def _config_json(config):
    """A config as UTF-8 JSON bytes; values that are not JSON are refused by name."""
    try:
        return json.dumps(config, default=_json_default).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise CnncalcError(
            f"Invalid model spec. Expected layer configs made of JSON values. "
            f"Received {_one_line(exc)}"
        ) from None


def _write_bytes(path, data):
    path = os.fspath(path)
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise CnncalcError(f"Cannot write the Keras file {quoted(path)}: {exc.strerror or _one_line(exc)}. "
                           "Expected a writable file name in a folder with free space") from None


def _sequential_config(spec):
    """The config.json dict Keras 3 needs to rebuild the spec as a Sequential model."""
    if not isinstance(spec, dict) or not isinstance(spec.get("layers"), list) \
            or spec.get("input_shape") is None:
        raise CnncalcError(
            "Invalid model spec. Expected a dict with name, input_shape and layers. "
            f"Received {_short(spec)}"
        )
    try:
        batch_shape = [None] + [None if d is None else int(d) for d in spec["input_shape"]]
    except (TypeError, ValueError):
        raise CnncalcError(
            "Invalid model spec. Expected input_shape as a tuple of integers such as (28, 28, 1). "
            f"Received input_shape={_short(spec['input_shape'])}"
        ) from None
    input_layer = {
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {"batch_shape": batch_shape, "dtype": "float32", "sparse": False,
                   "ragged": False, "name": "input_layer"},
        "registered_name": None,
    }
    used = {}
    layer_keys = []
    layers = [input_layer]
    for layer in spec["layers"]:
        _check_layer_form(layer)
        key = _unique_name(keras_layer_key(layer["class_name"]), used)
        config = dict(layer["config"])  # a copy: the caller's spec stays as it was
        config.setdefault("name", key)  # Keras' own default name, but stable
        config["dtype"] = _dtype_policy(config.get("dtype"))
        entry = {
            "module": "keras.layers",
            "class_name": layer["class_name"],
            "config": config,
            "registered_name": None,
        }
        _check_no_code(entry)  # after naming, so an error can name the layer
        layers.append(entry)
        layer_keys.append(key)
    name = spec.get("name") or "sequential"
    model_config = {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": name, "trainable": True, "dtype": _dtype_policy(None),
                   "layers": layers, "build_input_shape": batch_shape},
        "registered_name": None,
        "build_config": {"input_shape": batch_shape},
    }
    return model_config, layer_keys


def _dtype_policy(dtype):
    """Keras 3's DTypePolicy dict for a dtype given as a name, a policy dict or nothing."""
    if dtype is None:
        name = "float32"
    elif isinstance(dtype, str):
        name = dtype
    elif isinstance(dtype, dict) and dtype.get("class_name") in ("Policy", "DTypePolicy"):
        name = dtype.get("config", {}).get("name", "float32")
    else:
        return dtype  # e.g. a quantized policy: Keras knows it, pass it on
    return {**_FLOAT32_POLICY, "config": {"name": name}}


def _weights_h5_bytes(spec, model_config, layer_keys):
    """model.weights.h5 as Keras 3 writes it for a Sequential model (no InputLayer group)."""
    buffer = io.BytesIO()
    # h5py stores no creation times by default, so the bytes depend on the spec only.
    with h5py.File(buffer, "w") as h5:
        for layer, key, entry in zip(spec["layers"], layer_keys, model_config["config"]["layers"][1:]):
            group = h5.create_group(f"layers/{key}/vars")
            group.attrs["name"] = entry["config"]["name"]
            for i, array in enumerate(layer.get("weights") or []):
                group.create_dataset(str(i), data=np.asarray(array))
        h5.create_group("vars").attrs["name"] = model_config["config"]["name"]
    return buffer.getvalue()


def _json_default(value):
    """Let configs built with numpy numbers or arrays be written as JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# --------------------------------------------------------------------------


def _one_line(exc):
    return " ".join(str(exc).split())


def _short(value, limit=80):
    text = _one_line(repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."
