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

from cnncalc.errors import CnncalcError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF")  # Pillow's names for them
SUPPORTED = ".npy, .csv, .json, " + ", ".join(IMAGE_SUFFIXES)
MAX_SAMPLES = 10_000
MAX_VALUES = 50_000_000
MAX_PIXELS = 50_000_000  # per image, checked from the header before decoding
MAX_FILE_BYTES = 1 << 30


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
        raise CnncalcError(f"Unsupported input file {str(path)!r}. Expected one of {SUPPORTED}. Received {suffix or 'no extension'!r}")
    _check_file(path)
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
        raise CnncalcError(f"{path} holds no numbers. Expected at least one sample of shape {input_shape}. Received shape {array.shape}")
    if array.size > MAX_VALUES:
        raise CnncalcError(f"{path} is too large. Expected at most {MAX_VALUES:,} values. Received {array.size:,}")
    batch = _as_batch(array, input_shape, path)
    _check_count(len(batch), path)
    batch = np.ascontiguousarray(batch, dtype=np.float64)
    _check_finite(batch, path)
    return batch


def _check_file(path):
    """A readable, non-empty regular file, or an error that names the path and the formats."""
    where = f"Expected a {SUPPORTED} file"
    if not path.exists():
        raise CnncalcError(f"Input file {str(path)!r} does not exist. {where}")
    if path.is_dir():
        raise CnncalcError(f"Input {str(path)!r} is a directory. {where}")
    if not path.is_file():
        raise CnncalcError(f"Input {str(path)!r} is not a regular file (a pipe or a device?). {where}")
    size = path.stat().st_size
    if size == 0:
        raise CnncalcError(f"Input file {str(path)!r} is empty. {where}")
    if size > MAX_FILE_BYTES:
        raise CnncalcError(f"Input file {str(path)!r} is too large. Expected at most {MAX_FILE_BYTES:,} bytes. Received {size:,}")
    if not os.access(path, os.R_OK):
        raise CnncalcError(f"Input file {str(path)!r} cannot be read (permission denied). {where}")


def _as_batch(array, input_shape, path):
    """(N, *input_shape) from one sample, a batch, or for one channel (H, W) / (N, H, W)."""
    accepted = [input_shape, ("N",) + input_shape]
    one_channel = len(input_shape) == 3 and input_shape[2] == 1
    if one_channel:
        accepted += [input_shape[:2], ("N",) + input_shape[:2]]
    if array.shape == input_shape:
        return array[np.newaxis]
    if array.shape[1:] == input_shape:
        return array
    if one_channel and array.shape == input_shape[:2]:
        return array[np.newaxis, :, :, np.newaxis]
    if one_channel and array.shape[1:] == input_shape[:2]:
        return array[:, :, :, np.newaxis]
    expected = " or ".join(_shape_text(s) for s in accepted)
    raise CnncalcError(f"Input does not fit the model. Expected shape {expected}. Received {array.shape} from {path}")


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
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise CnncalcError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}). Expected a text file of numbers") from None
    except OSError as e:
        raise CnncalcError(f"Cannot read {path}: {e.strerror}. Expected a readable {SUPPORTED} file") from None


def _read_npy(path):
    """Read a numeric .npy; the header is checked first, so an object array is never unpickled."""
    invalid = f"{path} is not a valid .npy file. Expected a file written by np.save"
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
        except ValueError as e:
            raise CnncalcError(f"{invalid}. Received {e}") from None
        if version == (1, 0):
            read_header = np.lib.format.read_array_header_1_0
        elif version == (2, 0):
            read_header = np.lib.format.read_array_header_2_0
        else:
            raise CnncalcError(f"{path} is .npy version {version}. Expected version 1.0 or 2.0 (what np.save writes for numbers)")
        try:
            shape, _, dtype = read_header(f)
        except Exception as e:  # numpy parses the header with ast and tokenize, which raise many types on garbage
            raise CnncalcError(f"{invalid}. Received a corrupt header ({type(e).__name__}: {e})") from None
        data_start = f.tell()
    if dtype.kind not in "biuf":
        raise CnncalcError(f"{path} holds dtype {dtype}. Expected numbers (bool, int or float); "
                           "object arrays are never unpickled")
    if any(d < 0 for d in shape):
        raise CnncalcError(f"{path} has an invalid shape in its header. Expected sizes >= 0. Received {shape}")
    count = math.prod(shape)
    if count > MAX_VALUES:
        raise CnncalcError(f"{path} is too large. Expected at most {MAX_VALUES:,} values. Received shape {shape}")
    needed = data_start + count * dtype.itemsize
    if path.stat().st_size < needed:
        raise CnncalcError(f"{path} is truncated. Expected {needed:,} bytes for shape {shape} of {dtype}. "
                           f"Received {path.stat().st_size:,}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise CnncalcError(f"{invalid}. Received {e}") from None


def _read_csv(path, input_shape):
    """One grayscale image: rows of numbers separated by commas, semicolons or whitespace."""
    if len(input_shape) != 3 or input_shape[2] != 1:
        raise CnncalcError(f"A .csv holds one grayscale image. Expected a model with input (H, W, 1). "
                           f"Received a model with input {_shape_text(input_shape)} ({path})")
    lines = _read_text(path).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise CnncalcError(f"{path} holds no numbers. Expected rows of numbers")
    rows = []
    for r, line in enumerate(lines, start=1):
        separator = ";" if ";" in line else "," if "," in line else None  # None: any whitespace
        cells = [c.strip() for c in line.split(separator)] if separator else line.split()
        if not cells:
            raise CnncalcError(f"{path}: row {r} is blank. Expected a row of numbers (blank lines only at the end)")
        if r == 1 and not any(_is_number(c) for c in cells):
            raise CnncalcError(f"{path}: row 1 looks like a header. Expected only numbers. Received {line.strip()[:60]!r}")
        rows.append([_number(cell, f"{path}: row {r}, column {c}") for c, cell in enumerate(cells, start=1)])
        if len(rows[-1]) != len(rows[0]):
            raise CnncalcError(f"{path}: row {r} has {_count(len(rows[-1]), 'number')}. Expected {len(rows[0])}, as in row 1")
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
        raise CnncalcError(f"{path} is not valid JSON ({e}). {expected}") from None
    except RecursionError:
        raise CnncalcError(f"{path} nests its lists too deeply. {expected}") from None
    if isinstance(data, dict):
        if set(data) != {"inputs"}:
            raise CnncalcError(f"{path}: {expected}. Received an object with keys {sorted(data)[:10]}")
        data = data["inputs"]
    if not isinstance(data, list):
        raise CnncalcError(f"{path}: {expected}. Received a JSON {type(data).__name__}")
    try:
        array = np.array(data)
    except ValueError as e:
        raise CnncalcError(f"{path}: {expected}, with equal lengths at each level. Received lists of unequal lengths ({e})") from None
    if array.dtype.kind not in "biuf":
        raise CnncalcError(f"{path}: {expected}. Received {_first_non_number(data)}")
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

    if len(input_shape) != 3 or input_shape[2] not in (1, 3):
        raise CnncalcError(f"An image needs a model with input (H, W, 1) or (H, W, 3). "
                           f"Received a model with input {_shape_text(input_shape)} ({path})")
    height, width, channels = input_shape
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
            with Image.open(path, formats=IMAGE_FORMATS) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise CnncalcError(f"{path} is too large. Expected at most {MAX_PIXELS:,} pixels. "
                                       f"Received {image.width}x{image.height}")
                if image.mode.startswith(("I", "F")):
                    raise CnncalcError(f"{path} is a 16-bit or float image. Expected an 8-bit grayscale or color image. "
                                       f"Received mode {image.mode!r}")
                if image.size != (width, height) and not resize:
                    raise CnncalcError(f"Image size does not fit the model. Expected {width}x{height} (width x height). "
                                       f"Received {image.width}x{image.height} in {path}. Use --resize to resize it")
                image.load()  # decode now, so a truncated or corrupt file fails here
                pixels = image.convert(mode)
                if pixels.size != (width, height):
                    pixels = pixels.resize((width, height), Image.BILINEAR)
                array = np.asarray(pixels, dtype=np.float64)
    except broken as e:
        raise CnncalcError(f"Cannot read {path} as an image ({type(e).__name__}: {e}). "
                           f"Expected a complete, uncorrupted {', '.join(IMAGE_SUFFIXES)} file") from None
    return array.reshape(1, height, width, channels)
