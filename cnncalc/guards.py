"""Size limits on what cnncalc reads from other people's files, checked before anything is allocated.

Every limit lives here, so an error message can name it and a test can lower it. They are generous:
a model a spreadsheet can show is far smaller. What they stop is a file that *claims* to be huge
(a config with a 10⁹-unit Dense, an HDF5 dataset of 10¹² floats, a zip bomb, a sheet claiming a
million rows) from making cnncalc allocate, or loop, until the machine gives up.
"""

import math
import zipfile

from cnncalc.errors import CnncalcError

MAX_PARAMS = 50_000_000  # weights in a whole model, as Keras's count_params() counts them
MAX_TENSOR_VALUES = 50_000_000  # one weight tensor, or one layer's output for one sample
MAX_LAYERS = 1_000
MAX_WEIGHTS_PER_LAYER = 16  # Keras's layers have at most 4 (BatchNormalization)
MAX_NAME_LENGTH = 256  # a layer's or a model's name
MAX_FILE_BYTES = 2 << 30  # any one file cnncalc reads (a model, an input, a workbook), from its size before it is opened
MAX_JSON_BYTES = 16 << 20  # a model config (config.json, model_config, model.to_json())
MAX_JSON_DEPTH = 100  # nesting of a config; Keras's are about 10 deep
MAX_WEIGHTS_FILE_BYTES = 1 << 30  # model.weights.h5 inside a .keras zip
MAX_XLSX_MEMBER_BYTES = 256 << 20  # one part of a workbook, uncompressed (a sheet's XML)
MAX_XLSX_BYTES = 1 << 30  # all parts of a workbook, uncompressed
MAX_ZIP_RATIO = 200  # uncompressed / compressed, for members above ZIP_RATIO_FROM; XML compresses about 10:1
ZIP_RATIO_FROM = 16 << 20
MAX_CELLS_READ = 10_000_000  # cells (and rows) a workbook reader steps through, empty ones included
MAX_PLAN_CELLS = 5_000_000  # cells verify/check lay out again to read a workbook back
MAX_READ_SECONDS = 60  # reading one model file; a damaged HDF5 file can loop forever inside libhdf5
MAX_HDF5_LINKS = 100_000  # links an HDF5 file's groups hold in all (Keras writes about 10 a layer), walked before a read
MAX_TRACE_VALUES = 200_000_000  # every layer output (and pre-activation) of a whole batch, as numbers


def too_large(what, limit, received, unit=""):
    """The one wording of a size error: what, the limit (named in guards.py), what was received."""
    return CnncalcError(f"{what} is too large. Expected at most {limit:,}{unit} (a limit of cnncalc, in cnncalc/guards.py). "
                        f"Received {received:,}{unit}")


def check_name(name, whose):
    """A name from a file: None, or a short string without control characters (it is printed, and written into cells)."""
    if name is None:
        return None
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in name):
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
        raise CnncalcError(f"Invalid name of {whose}. Expected a string of at most {MAX_NAME_LENGTH} characters "
                           f"without control characters. Received {shown}")
    return name


def check_shape(shape, what):
    """A shape of positive Python ints whose size is at most MAX_TENSOR_VALUES; returns its size."""
    if not isinstance(shape, (tuple, list)) or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
        raise CnncalcError(f"{what} has an invalid shape. Expected positive whole numbers such as (28, 28, 1). Received {shape!r}")
    size = math.prod(shape)
    if size > MAX_TENSOR_VALUES:
        raise too_large(f"{what} of shape {tuple(shape)}", MAX_TENSOR_VALUES, size, " values")
    return size


def check_model_size(model, where="the model"):
    """Refuse a model whose weights or layer outputs would be absurdly large, from its shapes alone.

    Runs on a model without weights (its layers' configs and shapes), before any weight is read,
    drawn or allocated. Layer by layer, so an absurd shape is caught before anything computed from it.
    """
    if len(model.layers) > MAX_LAYERS:
        raise too_large(f"{where}: the number of layers", MAX_LAYERS, len(model.layers))
    check_shape([int(d) for d in model.input_shape], f"{where}: the input")
    params = 0
    for layer, in_shape, out_shape in zip(model.layers, model.shapes, model.shapes[1:]):
        shapes = layer.weight_shapes(in_shape)
        for wname, shape in shapes.items():
            params += check_shape([int(d) for d in shape], f"{where}: weight {layer.name}/{wname}")
        if params > MAX_PARAMS:
            raise too_large(f"{where}: the parameter count (up to layer {layer.name!r})", MAX_PARAMS, params)
        check_shape([int(d) for d in out_shape], f"{where}: the output of layer {layer.name!r}")
    return params


def trace_values(model):
    """Numbers one sample's trace holds: every layer's output, and its pre-activation when it has one."""
    return sum(math.prod(s) * (2 if getattr(l, "activation", "linear") != "linear" else 1)
               for l, s in zip(model.layers, model.shapes[1:]))


def check_batch(model, n, where="the inputs"):
    """Refuse a batch whose per-layer trace (what predict and build keep) would not fit in memory."""
    total = n * trace_values(model)
    if total > MAX_TRACE_VALUES:
        raise too_large(f"{where}: {n:,} samples through every layer of the model", MAX_TRACE_VALUES, total, " values")


def check_finite(traces):
    """Refuse a trace in which a layer overflowed to infinity or NaN: a spreadsheet cell cannot hold either."""
    import numpy as np

    for t in traces:
        for step, values in (("pre-activation", t.pre), ("output", t.out)):
            if values is not None and not np.all(np.isfinite(values)):
                raise CnncalcError(f"Layer {t.layer.name!r} ({t.layer.class_name}) overflows: its {step} holds "
                                   f"{int(np.sum(~np.isfinite(values))):,} infinite or NaN value(s). Expected finite numbers "
                                   "(a spreadsheet cannot hold them). Received weights or inputs too large: scale them down")
    return traces


def check_zip(zf, where, member_limit, total_limit=None):
    """Refuse a zip whose members claim absurd sizes or compression ratios (a zip bomb), before reading any.

    zipfile never returns more bytes than a member's declared size, so checking the declared sizes is enough.
    """
    total = 0
    for info in zf.infolist():
        if info.file_size > member_limit:
            raise too_large(f"{info.filename} in {where}", member_limit, info.file_size, " bytes uncompressed")
        if info.file_size > ZIP_RATIO_FROM and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
            raise CnncalcError(f"{info.filename} in {where} looks like a zip bomb. Expected a compression ratio of at most "
                               f"{MAX_ZIP_RATIO}:1 (a limit of cnncalc, in cnncalc/guards.py). "
                               f"Received {info.file_size:,} bytes from {info.compress_size:,}")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise CnncalcError(f"{info.filename} in {where} uses zip compression method {info.compress_type}. "
                               "Expected stored or deflated, as Keras and spreadsheet programs write")
        total += info.file_size
    if total_limit is not None and total > total_limit:
        raise too_large(f"{where} (all its parts, uncompressed)", total_limit, total, " bytes")


def check_json(value, where):
    """Refuse JSON nested deeper than MAX_JSON_DEPTH (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise too_large(f"The nesting of {where}", MAX_JSON_DEPTH, depth, " levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return value
