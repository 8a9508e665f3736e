"""Reading the numbers a model is fed: input files (.npy, .csv, .json, images), matrices typed on the
command line, and the input scale.

Every reader returns a float64 batch of shape (N, *input_shape), where input_shape is the model's
input without the batch axis, e.g. (28, 28, 1) or (10,).
"""

import json
import math
import os
import re
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np

from cnncalc.errors import CnncalcError, quoted
from cnncalc.files import check_input, open_input, read_input as read_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF")  # Pillow's names for them
SUPPORTED = ".npy, .csv, .json, " + ", ".join(IMAGE_SUFFIXES)
MAX_SAMPLES = 10_000
MAX_VALUES = 50_000_000
MAX_PIXELS = 50_000_000  # per image, checked from the header before decoding


def parse_scale(text):
    """'1/8' -> 0.125, '0.5' -> 0.5, None -> 1.0; the input step is raw x scale."""
    if text is None:
        return 1.0
    try:
        value = float(Fraction(str(text).strip()))
    except (ValueError, ZeroDivisionError, OverflowError):
        raise CnncalcError(f"Invalid value for --scale. Expected a number or a fraction such as 1/255. Received {text!r}") from None
    if not value or not math.isfinite(value):
        raise CnncalcError(f"Invalid value for --scale. Expected a finite non-zero number. Received {text!r}")
    return value


def parse_matrix(text):
    """'1 2 3 4; 5 6 7 8' -> a 2-D float array; rows split by ';' or newlines, numbers by spaces or commas."""
    example = "Expected rows of numbers such as '1 2; 3 4'"
    rows = re.split(r"[;\n]", text.strip().rstrip(";"))
    if rows == [""]:
        raise CnncalcError(f"Invalid matrix. {example}. Received {text!r}")
    matrix = []
    for r, row in enumerate(rows, start=1):
        if not row.strip():
            raise CnncalcError(f"Invalid matrix: row {r} is empty. {example}. Received {text!r}")
        cells = re.split(r"\s*,\s*|\s+", row.strip())
        matrix.append([_number(cell, f"Invalid matrix: row {r}, column {c}") for c, cell in enumerate(cells, start=1)])
        if len(matrix[-1]) != len(matrix[0]):
            raise CnncalcError(f"Invalid matrix: row {r} has {_count(len(matrix[-1]), 'number')}. "
                               f"Expected {len(matrix[0])}, as in row 1. Received {row.strip()!r}")
    array = np.array(matrix, dtype=np.float64)
    _check_finite(array, "The matrix")
    return array


def read_inputs(paths, input_shape, resize=False):
    """Read several input files into one batch of shape (N, *input_shape), in the order given."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not paths:
        raise CnncalcError(f"No input files given. Expected at least one file ({SUPPORTED})")
    batches = [read_input(path, input_shape, resize) for path in paths]
    _check_count(sum(len(b) for b in batches), f"the {len(paths)} input files")
    return np.concatenate(batches)


def read_input(path, input_shape, resize=False):
    """Read one input file into a float64 batch of shape (N, *input_shape); the format is its extension."""
    path = Path(path)
    input_shape = tuple(int(d) for d in input_shape)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".csv", ".json") + IMAGE_SUFFIXES:
        raise CnncalcError(f"Unsupported input file {quoted(path)}. Expected one of {SUPPORTED}. Received {quoted(suffix) if suffix else 'no extension'}")
    check_input(path, f"an input file ({SUPPORTED})")
    if suffix == ".npy":
        array = _read_npy(path)
    elif suffix == ".csv":
        array = _read_csv(path, input_shape)
    elif suffix == ".json":
        array = _read_json(path)
    elif suffix in IMAGE_SUFFIXES:
        array = _read_image(path, input_shape, resize)
    else:
        raise AssertionError(f"unhandled suffix {suffix!r}")
    if array.size == 0:
        raise CnncalcError(f"{quoted(path)} holds no numbers. Expected at least one sample of shape {input_shape}. Received shape {array.shape}")
    if array.size > MAX_VALUES:
        raise CnncalcError(f"{quoted(path)} is too large. Expected at most {MAX_VALUES:,} values. Received {array.size:,}")
    batch = _as_batch(array, input_shape, path)
    _check_count(len(batch), quoted(path))
    batch = np.ascontiguousarray(batch, dtype=np.float64)
    _check_finite(batch, quoted(path))
    return batch


def _as_batch(array, input_shape, path):
    """(N, *input_shape) from one sample, a batch, or for one channel (H, W) / (N, H, W)."""
    # one grayscale image may come with or without its channel axis, whichever of the two the model takes
    hw = _grayscale(input_shape)
    forms = [input_shape] + ([s for s in (hw, hw + (1,)) if s != input_shape] if hw else [])
    accepted = [s for form in forms for s in (form, ("N",) + form)]
    for form in forms:
        if array.shape == form:
            return array.reshape((1,) + input_shape)
        if array.shape[1:] == form:
            return array.reshape((len(array),) + input_shape)
    expected = " or ".join(_shape_text(s) for s in accepted)
    raise CnncalcError(f"Input does not fit the model. Expected shape {expected}. Received {array.shape} from {quoted(path)}")


def _grayscale(input_shape):
    """(H, W) when the model takes one grayscale image, (H, W, 1) or a 2-D (H, W) input; else None."""
    if len(input_shape) == 2 or (len(input_shape) == 3 and input_shape[2] == 1):
        return tuple(input_shape[:2])
    return None


def _shape_text(shape):
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _check_count(samples, source):
    if samples > MAX_SAMPLES:
        raise CnncalcError(f"Too many samples in {source}. Expected at most {MAX_SAMPLES:,}. Received {samples:,}")


def _check_finite(array, source):
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise CnncalcError(f"{source} holds {_count(int(bad.sum()), 'non-finite value')} (NaN or infinity). "
                           f"Expected finite numbers. Received {array[first]} first, at index {list(first)} (counting from 0)")


def _count(n, noun):
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _number(text, where):
    try:
        return float(text)
    except ValueError:
        raise CnncalcError(f"{where} is not a number. Expected a number such as 0.5. Received {text!r}") from None


def _read_text(path):
    try:
        return read_file(path, f"an input file ({SUPPORTED})").decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CnncalcError(f"{quoted(path)} is not UTF-8 text ({e.reason} at byte {e.start}). Expected a text file of numbers") from None


def _read_npy(path):
    """Read a numeric .npy; the header is checked first, so an object array is never unpickled."""
    invalid = f"{quoted(path)} is not a valid .npy file. Expected a file written by np.save"
    with open_input(path, "a .npy file") as f:
        try:
            version = np.lib.format.read_magic(f)
        except ValueError as e:
            raise CnncalcError(f"{invalid}. Received {e}") from None
        if version == (1, 0):
            read_header = np.lib.format.read_array_header_1_0
        elif version == (2, 0):
            read_header = np.lib.format.read_array_header_2_0
        else:
            raise CnncalcError(f"{quoted(path)} is .npy version {version}. Expected version 1.0 or 2.0 (what np.save writes for numbers)")
        try:
            shape, _, dtype = read_header(f)
        except Exception as e:  # numpy parses the header with ast and tokenize, which raise many types on garbage
            raise CnncalcError(f"{invalid}. Received a corrupt header ({type(e).__name__}: {e})") from None
        if dtype.kind not in "biuf":
            raise CnncalcError(f"{quoted(path)} holds dtype {dtype}. Expected numbers (bool, int or float); "
                               "object arrays are never unpickled")
        if any(d < 0 for d in shape):
            raise CnncalcError(f"{quoted(path)} has an invalid shape in its header. Expected sizes >= 0. Received {shape}")
        count = math.prod(shape)
        if count > MAX_VALUES:
            raise CnncalcError(f"{quoted(path)} is too large. Expected at most {MAX_VALUES:,} values. Received shape {shape}")
        size, needed = os.fstat(f.fileno()).st_size, f.tell() + count * dtype.itemsize
        if size < needed:
            raise CnncalcError(f"{quoted(path)} is truncated. Expected {needed:,} bytes for shape {shape} of {dtype}. Received {size:,}")
        f.seek(0)
        try:
            return np.load(f, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise CnncalcError(f"{invalid}. Received {e}") from None


def _read_csv(path, input_shape):
    """One grayscale image: rows of numbers separated by commas, semicolons or whitespace."""
    if not _grayscale(input_shape):
        raise CnncalcError(f"A .csv holds one grayscale image. Expected a model with input (H, W, 1) or (H, W). "
                           f"Received a model with input {_shape_text(input_shape)} ({quoted(path)})")
    lines = _read_text(path).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise CnncalcError(f"{quoted(path)} holds no numbers. Expected rows of numbers")
    rows = []
    for r, line in enumerate(lines, start=1):
        separator = ";" if ";" in line else "," if "," in line else None  # None: any whitespace
        cells = [c.strip() for c in line.split(separator)] if separator else line.split()
        if not cells:
            raise CnncalcError(f"{quoted(path)}: row {r} is blank. Expected a row of numbers (blank lines only at the end)")
        if r == 1 and not any(_is_number(c) for c in cells):
            raise CnncalcError(f"{quoted(path)}: row 1 looks like a header. Expected only numbers. Received {quoted(line.strip(), 60)}")
        rows.append([_number(cell, f"{quoted(path)}: row {r}, column {c}") for c, cell in enumerate(cells, start=1)])
        if len(rows[-1]) != len(rows[0]):
            raise CnncalcError(f"{quoted(path)}: row {r} has {_count(len(rows[-1]), 'number')}. Expected {len(rows[0])}, as in row 1")
    return np.array(rows, dtype=np.float64)


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_json(path):
    """Nested lists of numbers, or {"inputs": [...]}."""
    expected = 'Expected nested lists of numbers, or {"inputs": [...]}'
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise CnncalcError(f"{quoted(path)} is not valid JSON ({e}). {expected}") from None
    except RecursionError:
        raise CnncalcError(f"{quoted(path)} nests its lists too deeply. {expected}") from None
    if isinstance(data, dict):
        if set(data) != {"inputs"}:
            raise CnncalcError(f"{quoted(path)}: {expected}. Received an object with keys {sorted(data)[:10]}")
        data = data["inputs"]
    if not isinstance(data, list):
        raise CnncalcError(f"{quoted(path)}: {expected}. Received a JSON {type(data).__name__}")
    try:
        array = np.array(data)
    except ValueError as e:
        raise CnncalcError(f"{quoted(path)}: {expected}, with equal lengths at each level. Received lists of unequal lengths ({e})") from None
    if array.dtype.kind not in "biuf":
        raise CnncalcError(f"{quoted(path)}: {expected}. Received {_first_non_number(data)}")
    return array


def _first_non_number(data, where="inputs"):
    """Describe the first leaf of nested lists that is not a number, e.g. '"a" at inputs[0][2]'."""
    if isinstance(data, list):
        for i, item in enumerate(data):
            found = _first_non_number(item, f"{where}[{i}]")
            if found:
                return found
        return None
    if isinstance(data, float) or (isinstance(data, int) and abs(data) < 2**63):
        return None
    return f"{json.dumps(data)[:40]} at {where}"


def _read_image(path, input_shape, resize):
    """An 8-bit grayscale or RGB image as (1, H, W, C); pixel values stay 0..255."""
    from PIL import Image  # lazy: Pillow is only needed for images

    if not _grayscale(input_shape) and (len(input_shape) != 3 or input_shape[2] != 3):
        raise CnncalcError(f"An image needs a model with input (H, W, 1), (H, W) or (H, W, 3). "
                           f"Received a model with input {_shape_text(input_shape)} ({quoted(path)})")
    height, width = input_shape[:2]
    channels = 1 if _grayscale(input_shape) else 3
    if channels == 1:
        mode = "L"
    elif channels == 3:
        mode = "RGB"
    else:
        raise AssertionError(f"unhandled channel count {channels}")
    broken = (OSError, SyntaxError, ValueError, EOFError, MemoryError, NotImplementedError,
              Image.DecompressionBombError, Image.DecompressionBombWarning)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Only the formats the suffixes name: Pillow would also open, say, an EPS file (through Ghostscript).
            with open_input(path, "an image file") as f, Image.open(f, formats=IMAGE_FORMATS) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise CnncalcError(f"{quoted(path)} is too large. Expected at most {MAX_PIXELS:,} pixels. "
                                       f"Received {image.width}x{image.height}")
                if image.mode.startswith(("I", "F")):
                    raise CnncalcError(f"{quoted(path)} is a 16-bit or float image. Expected an 8-bit grayscale or color image. "
                                       f"Received mode {image.mode!r}")
                if image.size != (width, height) and not resize:
                    raise CnncalcError(f"Image size does not fit the model. Expected {width}x{height} (width x height). "
                                       f"Received {image.width}x{image.height} in {quoted(path)}. Use --resize to resize it")
                image.load()  # decode now, so a truncated or corrupt file fails here
                pixels = image.convert(mode)
                if pixels.size != (width, height):
                    pixels = pixels.resize((width, height), Image.BILINEAR)
                array = np.asarray(pixels, dtype=np.float64)
    except broken as e:
        raise CnncalcError(f"Cannot read {quoted(path)} as an image ({type(e).__name__}: {e}). "
                           f"Expected a complete, uncorrupted {', '.join(IMAGE_SUFFIXES)} file") from None
    return array.reshape((1,) + tuple(input_shape))


LABEL_SUFFIXES = (".npy", ".csv", ".json")


def read_labels(path):
    """Training labels (`cnncalc train --labels`): one per sample, as class indices (N,) or one-hot rows / values (N, K).

    .npy (never unpickled); .csv: one row a sample (a class index, or the row's numbers); .json: a list, or
    {"labels": [...]}. The loss decides what it accepts (engine/losses.py Loss.labels); here only finite numbers.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LABEL_SUFFIXES:
        raise CnncalcError(f"Unsupported labels file {quoted(path)}. Expected one of {', '.join(LABEL_SUFFIXES)}. "
                           f"Received {quoted(suffix) if suffix else 'no extension'}")
    check_input(path, f"a labels file ({', '.join(LABEL_SUFFIXES)})")
    if suffix == ".npy":
        array = _read_npy(path)
    elif suffix == ".csv":
        array = _read_csv(path, (1, 1, 1))  # rows of numbers, as for a one-channel image (that check is moot here)
        array = array[:, 0] if array.shape[1] == 1 else array
    else:
        expected = 'Expected a list of labels (class indices or rows), or {"labels": [...]}'
        try:
            data = json.loads(_read_text(path))
        except (json.JSONDecodeError, RecursionError) as e:
            raise CnncalcError(f"{quoted(path)} is not valid JSON ({type(e).__name__}). {expected}") from None
        if isinstance(data, dict) and set(data) == {"labels"}:
            data = data["labels"]
        if not isinstance(data, list) or _first_non_number(data, "labels"):
            found = _first_non_number(data, "labels") if isinstance(data, list) else f"a JSON {type(data).__name__}"
            raise CnncalcError(f"{quoted(path)}: {expected}. Received {found}")
        try:
            array = np.array(data, dtype=np.float64)
        except ValueError:
            raise CnncalcError(f"{quoted(path)}: {expected}, rows of equal length. Received rows of unequal lengths") from None
    if array.ndim not in (1, 2) or array.size == 0:
        raise CnncalcError(f"{quoted(path)} holds labels of shape {array.shape}. Expected one label per sample: (N,) class indices "
                           "or (N, K) rows")
    _check_count(len(array), quoted(path))
    array = np.asarray(array, dtype=np.float64)
    _check_finite(array, quoted(path))
    return array
