"""Input files and command-line matrices: every format round-trips, every mistake is a CnncalcError that
says what was expected and what was received, and mutated files never raise anything else."""

import json
import struct
import tempfile
import time
import zlib
from collections import Counter
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from PIL import Image

import fuzzing
from cnncalc import files, inputs
from cnncalc.errors import CnncalcError
from cnncalc.inputs import parse_matrix, parse_scale, read_input, read_inputs

GRAY = np.arange(30, dtype=np.uint8).reshape(6, 5) * 8  # a 6-high, 5-wide grayscale image
RGB = np.stack([GRAY, 255 - GRAY, GRAY // 2], axis=-1)


def save_image(path, pixels, **options):
    Image.fromarray(pixels).save(path, **options)
    return path


def save_npy(path, array):
    with open(path, "wb") as f:  # np.save(name) would append ".npy" to "x.NPY"
        np.save(f, array)
    return path


def write(path, text_or_bytes):
    if isinstance(text_or_bytes, bytes):
        path.write_bytes(text_or_bytes)
    else:
        path.write_text(text_or_bytes)
    return path


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("stored_shape, input_shape, n", [
    ((3, 4, 4, 1), (4, 4, 1), 3),  # a batch
    ((4, 4, 1), (4, 4, 1), 1),  # one sample
    ((4, 4), (4, 4, 1), 1),  # one grayscale image without the channel axis
    ((2, 4, 4), (4, 4, 1), 2),  # a batch of those
    ((2, 6, 5, 3), (6, 5, 3), 2),
    ((10,), (10,), 1),  # a dense-only model
    ((7, 10), (10,), 7),
    ((4, 4), (4, 4), 1),  # a model with a 2-D input (InputLayer (28, 28), then Reshape or Flatten)
    ((4, 4, 1), (4, 4), 1),
    ((3, 4, 4), (4, 4), 3),
    ((3, 4, 4, 1), (4, 4), 3),
])
def test_npy_shapes(tmp_path, stored_shape, input_shape, n):
    array = np.arange(np.prod(stored_shape), dtype=np.float32).reshape(stored_shape)
    batch = read_input(save_npy(tmp_path / "x.npy", array), input_shape)
    assert batch.dtype == np.float64 and batch.shape == (n, *input_shape)
    assert batch.ravel().tolist() == array.ravel().tolist()


@pytest.mark.parametrize("array", [
    np.arange(16, dtype=np.int64).reshape(4, 4),
    np.arange(16, dtype=">u2").reshape(4, 4),  # big-endian
    np.asfortranarray(np.arange(16.0).reshape(4, 4)),
    (np.arange(16) % 2).astype(bool).reshape(4, 4),
])
def test_npy_dtypes_and_layouts(tmp_path, array):
    batch = read_input(save_npy(tmp_path / "x.NPY", array), (4, 4, 1))  # the extension is case-insensitive
    assert batch[0, :, :, 0].tolist() == array.astype(float).tolist()


@pytest.mark.parametrize("text", [
    "0,8,16\n24,32,40\n",
    "0;8;16\n24;32;40",
    "0 8 16\n24\t32   40\n\n\n",  # whitespace, and blank trailing lines
    "0, 8, 16\r\n24, 32, 40\r\n",  # Windows line ends, spaces after commas
    "\ufeff0;8;16\n24;32;40\n",  # a byte-order mark, as Excel writes
    "0.0,8e0,16\n24,32.000,+40\n",
])
def test_csv_separators(tmp_path, text):
    batch = read_input(write(tmp_path / "x.csv", text), (2, 3, 1))
    assert batch.shape == (1, 2, 3, 1)
    assert batch[0, :, :, 0].tolist() == [[0, 8, 16], [24, 32, 40]]


@pytest.mark.parametrize("data, input_shape, n", [
    ([[1, 2], [3, 4]], (2, 2, 1), 1),
    ({"inputs": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]}, (2, 2, 1), 2),
    ([[[1], [2]], [[3], [4]]], (2, 2, 1), 1),
    ([0.5, -1.5, 2], (3,), 1),
    ({"inputs": [[0.5, -1.5, 2]]}, (3,), 1),
])
def test_json_shapes(tmp_path, data, input_shape, n):
    batch = read_input(write(tmp_path / "x.json", json.dumps(data)), input_shape)
    expected = np.array(data["inputs"] if isinstance(data, dict) else data, dtype=float)
    assert batch.shape == (n, *input_shape)
    assert batch.ravel().tolist() == expected.ravel().tolist()


@pytest.mark.parametrize("name", ["x.png", "x.bmp", "x.gif", "x.PNG"])
def test_gray_image(tmp_path, name):
    batch = read_input(save_image(tmp_path / name, GRAY), (6, 5, 1))
    assert batch.shape == (1, 6, 5, 1)
    assert batch[0, :, :, 0].tolist() == GRAY.tolist()  # pixel values stay 0..255


@pytest.mark.parametrize("input_shape", [(6, 5), (6, 5, 1)])
def test_gray_image_and_csv_for_a_2d_input_model(tmp_path, input_shape):
    image = read_input(save_image(tmp_path / "x.png", GRAY), input_shape)
    csv = read_input(write(tmp_path / "x.csv", "\n".join(",".join(str(v) for v in row) for row in GRAY.tolist())), input_shape)
    for batch in (image, csv):
        assert batch.shape == (1, *input_shape)
        assert batch.reshape(6, 5).tolist() == GRAY.tolist()


@pytest.mark.parametrize("name", ["x.png", "x.bmp"])
def test_rgb_image(tmp_path, name):
    batch = read_input(save_image(tmp_path / name, RGB), (6, 5, 3))
    assert batch.shape == (1, 6, 5, 3)
    assert batch[0].tolist() == RGB.tolist()


def test_rgba_image_drops_alpha(tmp_path):
    rgba = np.dstack([RGB, np.full(GRAY.shape, 7, np.uint8)])
    batch = read_input(save_image(tmp_path / "x.png", rgba), (6, 5, 3))
    assert batch[0].tolist() == RGB.tolist()


def test_rgb_image_for_a_gray_model_uses_luma(tmp_path):
    batch = read_input(save_image(tmp_path / "x.png", RGB), (6, 5, 1))
    r, g, b = (RGB[..., i].astype(float) for i in range(3))
    luma = r * 299 / 1000 + g * 587 / 1000 + b * 114 / 1000  # ITU-R 601-2, as Pillow documents for "L"
    np.testing.assert_allclose(batch[0, :, :, 0], luma, atol=1)


def test_gray_image_for_an_rgb_model_repeats_the_channel(tmp_path):
    batch = read_input(save_image(tmp_path / "x.png", GRAY), (6, 5, 3))
    assert all(batch[0, :, :, c].tolist() == GRAY.tolist() for c in range(3))


@pytest.mark.parametrize("name", ["x.jpg", "x.jpeg", "x.JPG"])
def test_jpeg_within_tolerance(tmp_path, name):
    smooth = np.add.outer(np.arange(16) * 8, np.arange(16) * 4).astype(np.uint8)
    batch = read_input(save_image(tmp_path / name, smooth, quality=95), (16, 16, 1))
    error = np.abs(batch[0, :, :, 0] - smooth).max()
    assert error <= 6, f"jpeg differs by {error}; Mine {batch[0, :, :, 0]} Theirs {smooth}"


def test_image_of_the_wrong_size_says_use_resize(tmp_path):
    path = save_image(tmp_path / "x.png", GRAY)
    with pytest.raises(CnncalcError) as e:
        read_input(path, (28, 28, 1))
    assert "Expected 28x28" in str(e.value) and "Received 5x6" in str(e.value) and "--resize" in str(e.value)


def test_resize_uses_bilinear(tmp_path):
    path = save_image(tmp_path / "x.png", RGB)
    batch = read_input(path, (12, 10, 3), resize=True)
    reference = np.asarray(Image.fromarray(RGB).resize((10, 12), Image.BILINEAR), dtype=float)
    assert batch.shape == (1, 12, 10, 3) and batch[0].tolist() == reference.tolist()
    flat = read_input(save_image(tmp_path / "flat.png", np.full((9, 7), 77, np.uint8)), (4, 4, 1), resize=True)
    assert flat.tolist() == np.full((1, 4, 4, 1), 77.0).tolist()  # resizing a flat image keeps it flat


def test_resize_leaves_a_fitting_image_alone(tmp_path):
    batch = read_input(save_image(tmp_path / "x.png", GRAY), (6, 5, 1), resize=True)
    assert batch[0, :, :, 0].tolist() == GRAY.tolist()


def test_read_inputs_stacks_in_order(tmp_path):
    paths = [
        save_image(tmp_path / "a.png", GRAY),
        save_npy(tmp_path / "b.npy", np.ones((2, 6, 5))),
        write(tmp_path / "c.csv", "\n".join(" ".join(["3"] * 5) for _ in range(6))),
        write(tmp_path / "d.json", json.dumps({"inputs": np.full((6, 5, 1), 4).tolist()})),
    ]
    batch = read_inputs(paths, (6, 5, 1))
    assert batch.shape == (5, 6, 5, 1)
    assert batch[0, :, :, 0].tolist() == GRAY.tolist()
    assert [batch[i].mean() for i in range(1, 5)] == [1, 1, 3, 4]
    assert read_inputs(str(paths[0]), (6, 5, 1)).shape == (1, 6, 5, 1)  # one path on its own


# ---------------------------------------------------------------- mistakes


def message(path, input_shape=(4, 4, 1), resize=False):
    with pytest.raises(CnncalcError) as e:
        read_input(path, input_shape, resize)
    return str(e.value)


def test_shape_that_does_not_fit(tmp_path):
    text = message(save_npy(tmp_path / "x.npy", np.zeros((3, 3))))
    assert "Input does not fit the model. Expected shape (4, 4, 1) or (N, 4, 4, 1) or (4, 4) or (N, 4, 4). Received (3, 3)" in text
    text = message(save_npy(tmp_path / "y.npy", np.zeros((2, 9))), (10,))
    assert "Expected shape (10,) or (N, 10). Received (2, 9)" in text


@pytest.mark.parametrize("name, content, expected", [
    ("x.txt", "1 2", "Expected one of .npy, .csv, .json, .png, .jpg, .jpeg, .bmp, .gif. Received '.txt'"),
    ("noext", "1 2", "Received no extension"),
    ("x.csv", None, "does not exist. Expected an input file (.npy, .csv"),
    ("x.csv", "", "is empty. Expected an input file (.npy, .csv"),
])
def test_unusable_paths(tmp_path, name, content, expected):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    text = message(path)
    assert expected in text and str(path) in text


def test_directory(tmp_path):
    (tmp_path / "d.npy").mkdir()
    assert "it is a folder, not a file. Expected an input file (.npy, .csv" in message(tmp_path / "d.npy")


def test_unreadable_file(tmp_path, monkeypatch):
    path = write(tmp_path / "x.csv", "1 2\n3 4")
    monkeypatch.setattr(files.os, "access", lambda *args: False)  # chmod 000 means nothing to root
    assert "permission denied" in message(path)


def test_read_inputs_needs_a_path():
    with pytest.raises(CnncalcError, match="No input files given. Expected at least one file"):
        read_inputs([], (4, 4, 1))


def test_npy_object_array_is_never_unpickled(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    text = message(path)
    assert "holds dtype object. Expected numbers (bool, int or float)" in text and "never unpickled" in text


@pytest.mark.parametrize("array, received", [
    (np.zeros((4, 4), complex), "dtype complex128"),
    (np.array([["a"] * 4] * 4), "dtype <U1"),
])
def test_npy_non_numbers(tmp_path, array, received):
    text = message(save_npy(tmp_path / "x.npy", array))
    assert "Expected numbers" in text and received in text


def test_npy_that_is_not_npy(tmp_path):
    assert "is not a valid .npy file" in message(write(tmp_path / "x.npy", "1 2 3"))
    np.savez(tmp_path / "z.npz", a=np.zeros(3))
    assert "is not a valid .npy file" in message(write(tmp_path / "z.npy", (tmp_path / "z.npz").read_bytes()))


def test_npy_truncated(tmp_path):
    data = save_npy(tmp_path / "x.npy", np.zeros((4, 4))).read_bytes()
    text = message(write(tmp_path / "x.npy", data[:-10]))
    assert "is truncated. Expected 256 bytes for shape (4, 4) of float64. Received 246" in text


def test_npy_whose_header_claims_a_huge_array_is_refused_before_reading(tmp_path):
    path = tmp_path / "x.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
        f.write(b"\0" * 64)
    assert "Expected at most 50,000,000 values. Received shape (1000000, 1000000)" in message(path)


def test_too_many_samples(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "MAX_SAMPLES", 3)
    path = save_npy(tmp_path / "x.npy", np.zeros((4, 10)))
    assert "Too many samples" in message(path, (10,)) and "Expected at most 3. Received 4" in message(path, (10,))
    two = save_npy(tmp_path / "two.npy", np.zeros((2, 10)))
    with pytest.raises(CnncalcError, match="Too many samples in the 2 input files. Expected at most 3. Received 4"):
        read_inputs([two, two], (10,))


def test_too_many_values(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "MAX_VALUES", 15)
    assert "Expected at most 15 values. Received 16" in message(write(tmp_path / "x.json", json.dumps([[1] * 4] * 4)))


def test_not_finite(tmp_path):
    array = np.zeros((2, 4, 4, 1))
    array[1, 2, 3, 0], array[1, 3, 0, 0] = np.inf, np.nan
    text = message(save_npy(tmp_path / "x.npy", array))
    assert "holds 2 non-finite values (NaN or infinity). Expected finite numbers. Received inf first, at index [1, 2, 3, 0]" in text
    text = message(write(tmp_path / "x.csv", "1 2 3 4\n1 2 nan 4\n1 2 3 4\n1 2 3 4"))
    assert "holds 1 non-finite value (NaN" in text and "Received nan first, at index [0, 1, 2, 0]" in text


def test_empty_batch(tmp_path):
    assert "holds no numbers. Expected at least one sample of shape (4, 4, 1). Received shape (0, 4, 4, 1)" in message(
        save_npy(tmp_path / "x.npy", np.zeros((0, 4, 4, 1))))
    assert "holds no numbers" in message(write(tmp_path / "x.json", "[]"))
    assert "holds no numbers" in message(write(tmp_path / "x.csv", "\n\n"))


@pytest.mark.parametrize("text, expected", [
    ("a,b,c,d\n1,2,3,4", "row 1 looks like a header. Expected only numbers. Received 'a,b,c,d'"),
    ("1,2,3,4\n1,2,x,4", "row 2, column 3 is not a number. Expected a number such as 0.5. Received 'x'"),
    ("1,2,3,4\n1,2,,4", "row 2, column 3 is not a number. Expected a number such as 0.5. Received ''"),
    ("1;2;3;4\n1,5;2;3;4", "row 2, column 1 is not a number. Expected a number such as 0.5. Received '1,5'"),
    ("1 2 3 4\n1 2 3", "row 2 has 3 numbers. Expected 4, as in row 1"),
    ("1 2 3 4\n\n1 2 3 4", "row 2 is blank. Expected a row of numbers"),
])
def test_csv_mistakes(tmp_path, text, expected):
    assert expected in message(write(tmp_path / "x.csv", text))


def test_csv_needs_a_one_channel_model(tmp_path):
    path = write(tmp_path / "x.csv", "1 2\n3 4")
    assert "Expected a model with input (H, W, 1) or (H, W). Received a model with input (2, 2, 3)" in message(path, (2, 2, 3))
    assert "Received a model with input (4,)" in message(path, (4,))


def test_csv_that_is_not_text(tmp_path):
    assert "is not UTF-8 text" in message(write(tmp_path / "x.csv", b"\xff\xfe\x00\x81"))


@pytest.mark.parametrize("text, expected", [
    ("[[1, 2], [3", "is not valid JSON"),
    ('{"data": [1, 2]}', "Expected nested lists of numbers, or {\"inputs\": [...]}. Received an object with keys ['data']"),
    ('"hello"', "Received a JSON str"),
    ("[[1, 2], [3]]", "with equal lengths at each level. Received lists of unequal lengths"),
    ('[[1, 2], [3, "4"]]', 'Received "4" at inputs[1][1]'),
    ("[[1, 2], [3, null]]", "Received null at inputs[1][1]"),
    ("[1, 100000000000000000000000]", "Received 100000000000000000000000 at inputs[1]"),
    ("[" * 100000 + "]" * 100000, "nests its lists too deeply"),
])
def test_json_mistakes(tmp_path, text, expected):
    assert expected in message(write(tmp_path / "x.json", text), (2,))


@pytest.mark.parametrize("input_shape, expected", [
    ((6, 5, 2), "Received a model with input (6, 5, 2)"),
    ((30,), "Received a model with input (30,)"),
])
def test_image_needs_one_or_three_channels(tmp_path, input_shape, expected):
    text = message(save_image(tmp_path / "x.png", GRAY), input_shape)
    assert "An image needs a model with input (H, W, 1), (H, W) or (H, W, 3)" in text and expected in text


def test_sixteen_bit_image(tmp_path):
    path = save_image(tmp_path / "x.png", GRAY.astype(np.uint16) * 200)
    assert "Expected an 8-bit grayscale or color image. Received mode 'I;16'" in message(path, (6, 5, 1))


def png_claiming(width, height):
    """A 1x1 PNG whose header claims another size, so only a header-level check can refuse it cheaply."""
    path = Path(tempfile.mkdtemp()) / "bomb.png"
    data = bytearray(save_image(path, np.zeros((1, 1), np.uint8)).read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("width, height, expected", [
    (8000, 8000, "is too large. Expected at most 50,000,000 pixels. Received 8000x8000"),  # our limit
    (10000, 10000, "DecompressionBombWarning"),  # Pillow's warning, made an error
    (20000, 20000, "DecompressionBombError"),  # Pillow's own refusal
])
def test_decompression_bombs(width, height, expected):
    start = time.perf_counter()
    assert expected in message(png_claiming(width, height), (4, 4, 1), resize=True)
    assert time.perf_counter() - start < 2, "the bomb was decoded before it was refused"


@pytest.mark.parametrize("name", ["x.png", "x.jpg", "x.gif", "x.bmp"])
def test_truncated_image(tmp_path, name):
    data = save_image(tmp_path / name, RGB if name != "x.gif" else GRAY).read_bytes()
    text = message(write(tmp_path / name, data[: len(data) * 2 // 3]), (6, 5, 3))
    assert f"Cannot read '{tmp_path / name}' as an image" in text and "Expected a complete, uncorrupted" in text


def test_text_named_like_an_image(tmp_path):
    assert "UnidentifiedImageError" in message(write(tmp_path / "x.png", "not an image"))


# ---------------------------------------------------------------- command-line matrices and the scale


@pytest.mark.parametrize("text, expected", [
    ("1 2 3 4; 5 6 7 8", [[1, 2, 3, 4], [5, 6, 7, 8]]),
    ("1,2\n3, 4", [[1, 2], [3, 4]]),
    ("  1 2 ; 3 4 ;\n", [[1, 2], [3, 4]]),
    ("-1.5e0", [[-1.5]]),
])
def test_parse_matrix(text, expected):
    matrix = parse_matrix(text)
    assert matrix.dtype == np.float64 and matrix.tolist() == expected


@pytest.mark.parametrize("text, expected", [
    ("1 2; 3", "row 2 has 1 number. Expected 2, as in row 1. Received '3'"),
    ("1 2; 3 x", "row 2, column 2 is not a number. Expected a number such as 0.5. Received 'x'"),
    ("1 2;; 3 4", "row 2 is empty"),
    ("1,,2", "row 1, column 2 is not a number. Expected a number such as 0.5. Received ''"),
    ("", "Expected rows of numbers such as '1 2; 3 4'. Received ''"),
    ("1 inf", "The matrix holds 1 non-finite value (NaN or infinity). Expected finite numbers. Received inf first, at index [0, 1]"),
])
def test_parse_matrix_mistakes(text, expected):
    with pytest.raises(CnncalcError) as e:
        parse_matrix(text)
    assert expected in str(e.value)


@pytest.mark.parametrize("text, expected", [(None, 1.0), ("1/8", 0.125), (" 0.5 ", 0.5), ("1/255", 1 / 255), (2, 2.0)])
def test_parse_scale(text, expected):
    assert parse_scale(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("x", "Expected a number or a fraction such as 1/255. Received 'x'"),
    ("1/0", "Received '1/0'"),
    ("1e400", "Received '1e400'"),
    ("0", "Expected a finite non-zero number. Received '0'"),
])
def test_parse_scale_mistakes(text, expected):
    with pytest.raises(CnncalcError) as e:
        parse_scale(text)
    assert expected in str(e.value)


# ---------------------------------------------------------------- fuzz


def seed_files(folder):
    """Valid files of every format, each with the model input it fits."""
    gray, rgb = (6, 5, 1), (6, 5, 3)
    return {
        "npy": (save_npy(folder / "s.npy", np.arange(60.0).reshape(2, 6, 5, 1)), gray),
        "npy-dense": (save_npy(folder / "d.npy", np.arange(12, dtype=np.int32).reshape(3, 4)), (4,)),
        "csv,": (write(folder / "c.csv", "\n".join(",".join(map(str, row)) for row in GRAY)), gray),
        "csv;": (write(folder / "s.csv", "\n".join(";".join(f"{v / 7:.3f}" for v in row) for row in GRAY)), gray),
        "csv ": (write(folder / "w.csv", "\n".join(" ".join(map(str, row)) for row in GRAY) + "\n\n"), gray),
        "json": (write(folder / "j.json", json.dumps({"inputs": RGB.tolist()})), rgb),
        "png-gray": (save_image(folder / "g.png", GRAY), gray),
        "png-rgb": (save_image(folder / "c.png", RGB), rgb),
        "png-rgba": (save_image(folder / "a.png", np.dstack([RGB, GRAY])), rgb),
        "jpeg": (save_image(folder / "j.jpg", RGB, quality=90), rgb),
        "bmp": (save_image(folder / "b.bmp", GRAY), gray),
        "gif": (save_image(folder / "g.gif", GRAY), gray),
    }




def test_fuzz_mutated_files_read_or_raise_cnncalc_error(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    seeds = seed_files(folder)
    tried, refused = Counter(), Counter()

    @settings(max_examples=500, deadline=timedelta(seconds=3), database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(sorted(seeds)), st.lists(fuzzing.byte_mutation, min_size=1, max_size=4), st.booleans())
    @example("npy", [("flip", 9, b"\x00")], False)  # numpy's header parser raised tokenize.TokenError
    @example("npy-dense", [("flip", 2882, b"brqmS")], False)  # ... and TypeError
    def one_case(name, mutations, resize):
        seed, input_shape = seeds[name]
        path = folder / ("mutated" + seed.suffix)
        path.write_bytes(fuzzing.mutate_bytes(seed.read_bytes(), mutations))
        tried[name] += 1
        try:
            batch = read_input(path, input_shape, resize)
        except CnncalcError:
            refused[name] += 1
            return
        assert batch.dtype == np.float64 and batch.shape[1:] == input_shape and len(batch) >= 1
        assert np.isfinite(batch).all()

    one_case()
    total = sum(tried.values())
    summary = f"{total} fuzz cases tried, {sum(refused.values())} refused with CnncalcError; by format {dict(sorted(tried.items()))}"
    print("\n" + summary)
    fuzzing.record("inputs: read_input (test_inputs.py)", total, sum(refused.values()))
    assert total >= 300 and len(tried) == len(seeds), summary
