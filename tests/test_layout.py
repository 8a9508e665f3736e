"""Issue 11: every real small CNN fits a workbook. A feature map's channels sit in rows of 8 maps (format 2), a
2-D input is one map, Reshape goes between any shapes Keras allows, panels past Excel's last column start a band
below; maps of up to 8 channels keep format 1's layout byte for byte, and format-1 workbooks (worked examples and
practice workbooks made by the earlier release) still verify and are still graded. Models saved by real Keras
build workbooks that LibreOffice recalculates to the engine's values; every workbook is valid OOXML.

tests/data/format1/ holds files made by the earlier release (commit 23d74bc, `cnncalc new` on a 5x5x1 input,
Conv2D(12, 3, relu), MaxPooling2D(2), Flatten, Dense(3, softmax), `--scale 1/8`): a worked example, and a practice
workbook filled in with every right answer to 7 decimals; and the chapter's worked example as that release committed it.
"""

import os
import re

import numpy as np
import pytest

from cnncalc.cli import main
from cnncalc.errors import CnncalcError
from cnncalc.kerasfiles.loader import model_from_layer_list
from cnncalc.sheets import limits
from cnncalc.sheets.cells import MAX_COLS, Placement, parse_a1
from cnncalc.sheets.workbook import (LAYOUT_ROW, MAPS_ACROSS, META_SHEET, TOP, layout_version, plan_workbook,
                                     read_layout)
from cnncalc.sheets.writer import write_plan

from conftest import DATA, REPO, unavailable

FORMAT1 = DATA / "format1"
WIDE12 = {"name": "wide12", "input_shape": [5, 5, 1], "seed": 3, "layers": [
    {"Conv2D": {"filters": 12, "kernel_size": 3, "activation": "relu"}},
    {"MaxPooling2D": {"pool_size": 2}}, {"Flatten": {}}, {"Dense": {"units": 3, "activation": "softmax"}}]}


def engine_model(spec, seed=0):
    return model_from_layer_list(spec, seed)


def sample(model, n=1, seed=0):
    return np.random.default_rng(seed).integers(-4, 9, size=(n, *model.input_shape)).astype(float)


def panels(plan, sheet="Sample 1"):
    return {p.title: p for p in plan.sheet(sheet).panels}


# ---------------------------------------------------------------- placements


@pytest.mark.parametrize("shape, across", [((4, 4, 3), None), ((4, 4, 3), 8), ((3, 5, 20), 8), ((3, 5, 16), 8), ((3, 5), 8),
                                           ((2, 3, 4, 5), 3), ((1, 1, 9), 8), ((3, 3, 8), 8), ((3, 3, 9), 2)])
def test_grid_positions_round_trip_and_fill_the_extent(shape, across):
    p = Placement("S", 5, 2, shape, "grid", across)
    seen = {}
    for idx in p.indices():
        pos = p.pos(idx)
        assert p.index_at(*pos) == idx
        seen[pos] = idx
    h, w = p.extent
    assert len(seen) == np.prod(shape)
    assert {r for r, _ in seen} <= set(range(5, 5 + h)) and {c for _, c in seen} <= set(range(2, 2 + w))
    assert max(r for r, _ in seen) == 4 + h and max(c for _, c in seen) == 1 + w  # the extent is tight
    values = np.random.default_rng(0).normal(size=shape)
    block = p.constant_block(values, "value")
    for r in range(h):  # the fast row twins agree with the cell-by-cell reference
        assert p.row_indices(r) == [(c, seen[(5 + r, c)]) for c in range(2, 2 + w) if (5 + r, c) in seen]
        assert block.row(r) == block.row_naive(r)
        assert [cell.value for _, cell in block.row(r)] == [values[idx] for _, idx in p.row_indices(r)]


@pytest.mark.parametrize("channels", range(1, MAPS_ACROSS + 1))
def test_up_to_eight_channels_sit_in_one_row_as_format_1_laid_them(channels):
    new, old = (Placement("S", 3, 1, (4, 5, channels), "grid", across) for across in (MAPS_ACROSS, None))
    assert new.extent == old.extent == (4, channels * 6 - 1)
    assert all(new.pos(idx) == old.pos(idx) for idx in new.indices())


def test_past_eight_channels_the_maps_continue_in_rows_below():
    p = Placement("S", 3, 1, (4, 5, 20), "grid", 8)
    assert (p.maps, p.across, p.map_rows, p.extent) == (20, 8, 3, (3 * 6 - 2, 8 * 6 - 1))
    assert p.ref((0, 0, 0), "S") == "B4" and p.ref((0, 0, 7), "S") == "AR4"
    assert p.ref((0, 0, 8), "S") == "B10"  # 4 rows of map 0, a blank row, the header row, then map 8
    assert p.span((0, 0, 19), (3, 4, 19), "T") == "S!T16:X19"  # map 19: third row of maps, fourth map across
    assert p.index_at(7, 1) is None and p.index_at(8, 1) is None  # the rows between two rows of maps
    assert p.index_at(15, 30) is None  # past the last map


def test_a_2d_tensor_is_one_map_and_more_axes_are_more_maps():
    p = Placement("S", 3, 1, (28, 28), "grid", 8)
    assert (p.maps, p.extent, p.pos((27, 27))) == (1, (28, 28), (30, 28))
    q = Placement("S", 0, 0, (2, 2, 3, 4), "grid", 8)
    assert q.maps == 12 and q.map_index(5) == (1, 1) and q.map_of((0, 0, 1, 1)) == 5


# ---------------------------------------------------------------- plans


def test_a_wide_model_is_planned_in_rows_of_maps_with_headers_captions_and_format_2():
    model = engine_model(WIDE12)
    plan = plan_workbook(model, sample(model), "1/8")
    sheet = plan.sheet("Sample 1")
    cells = sheet.cells()
    conv = panels(plan)["conv2d (Conv2D) pre-activation"].placement
    assert conv.map_rows == 2 and conv.extent == (3 + 2 + 3, 8 * 4 - 1)
    r, c = conv.map_origin(9)
    assert cells[(r - 1, c)].value == "filter 9" and r == TOP + 3 + 2
    caption = cells[(1, conv.left)].value
    scaled = panels(plan)["Scaled input = raw × 1/8"].placement
    assert caption.endswith("· input at H4:L8 (Scaled input = raw × 1/8)") and (scaled.top, scaled.left) == parse_a1("H4")
    assert "input at" in cells[(1, panels(plan)["conv2d (Conv2D) relu"].placement.left)].value
    assert (conv.top, conv.left, conv.top + conv.extent[0] - 1, conv.left + conv.extent[1] - 1) in sheet.color_scales
    assert layout_version([sheet]) == 2 and sheet.freeze == (TOP - 1, 0)  # titles stay in view; headers go with their maps
    meta = plan.sheet(META_SHEET).cells()
    assert meta[(0, 1)].value == 2 and (meta[(LAYOUT_ROW, 0)].value, meta[(LAYOUT_ROW, 1)].value) == ("maps across", 8)
    readme = " ".join(str(cell.value) for cell in plan.sheet("Read me").cells().values())
    assert "8 maps to a row" in readme


def test_the_chapter_model_keeps_format_1_and_its_words(chapter):
    plan = plan_workbook(chapter.model, chapter.raw, chapter.scale, chapter.title, chapter.labels)
    meta = plan.sheet(META_SHEET).cells()
    assert meta[(0, 1)].value == 1 and (LAYOUT_ROW, 0) not in meta and plan.sheet("Sample 1").freeze == (TOP, 0)
    captions = [cell.value for (r, _), cell in plan.sheet("Sample 1").cells().items() if r == 1]
    assert captions and not any("input at" in text for text in captions)


def test_conv_windows_stay_rectangles_of_one_channel_map():
    """Every SUMPRODUCT of a conv over a grid of maps reads a kh x kw rectangle inside one channel of its input."""
    spec = {"input_shape": [7, 7, 10], "layers": [{"Conv2D": {"filters": 11, "kernel_size": [3, 2], "strides": 2}}]}
    model = engine_model(spec)
    plan = plan_workbook(model, sample(model), steps=False)
    x = panels(plan)["Input (raw)"].placement
    conv = panels(plan)["conv2d (Conv2D) pre-activation"]
    assert x.map_rows == 2 and conv.placement.map_rows == 2
    for idx in [(0, 0, 0), (2, 2, 10), (1, 2, 9)]:
        windows = re.findall(r"SUMPRODUCT\(([A-Z]+[0-9]+):([A-Z]+[0-9]+),", conv.formula(idx))
        assert len(windows) == 10
        for c, (first, last) in enumerate(windows):
            (r0, c0), (r1, c1) = parse_a1(first), parse_a1(last)
            assert x.index_at(r0, c0) == (2 * idx[0], 2 * idx[1], c)
            assert x.index_at(r1, c1) == (2 * idx[0] + 2, 2 * idx[1] + 1, c)


def test_a_model_format_1_refused_for_width_now_fits():
    """2,400 filters of 8x8 needed 16,799 columns in one row; as rows of maps they take 71."""
    model = engine_model({"input_shape": [8, 8, 1], "layers": [{"Conv2D": {"filters": 2400, "kernel_size": 3}}]})
    plan = plan_workbook(model, sample(model), steps=False)
    limits.check_plan(plan)
    assert plan.sheet("Sample 1").extent[1] < 100


@pytest.mark.parametrize("width, channels, across", [(3000, 8, 5), (6000, 3, 2), (16_000, 2, 1)])
def test_maps_too_wide_for_eight_across_take_fewer_across(width, channels, across):
    model = engine_model({"input_shape": [2, width, channels], "layers": [{"GlobalMaxPooling2D": {}}]})
    raw = panels(plan_workbook(model, sample(model), steps=False))["Input (raw)"].placement
    assert raw.across == across and raw.map_rows == -(-channels // across) and raw.left + raw.extent[1] <= MAX_COLS


BANDS = {"input_shape": [2, 5000, 1], "layers": [  # the relu panel no longer fits to the right of three of 5,000 columns
    {"Conv2D": {"filters": 1, "kernel_size": 1, "activation": "relu"}}, {"Conv2D": {"filters": 1, "kernel_size": [1, 2]}},
    {"GlobalAveragePooling2D": {}}, {"Dense": {"units": 3, "activation": "softmax"}}]}


def test_panels_past_the_last_column_start_a_band_below():
    model = engine_model(BANDS)
    plan = plan_workbook(model, sample(model), "1/4", steps=False)
    sheet = plan.sheet("Sample 1")
    assert sheet.bands == 2 and sheet.extent[1] <= MAX_COLS and layout_version([sheet]) == 2
    first, second = panels(plan)["conv2d (Conv2D) pre-activation"], panels(plan)["conv2d (Conv2D) relu"]
    assert second.placement.top == first.placement.top + 2 + 1 + TOP and second.placement.left == 1
    cells = sheet.cells()
    assert cells[(second.placement.top - TOP, 1)].value == "conv2d (Conv2D) relu"
    z = first.placement
    assert z.left > 10_000 and cells[(second.placement.top - TOP + 1, 1)].value.endswith(
        f"· input at {z.ref((0, 0, 0), 'Sample 1')}:{z.ref((1, 4999, 0), 'Sample 1')} (conv2d (Conv2D) pre-activation)")
    assert second.formula((1, 7, 0)) == f"MAX(0,{z.ref((1, 7, 0), 'Sample 1')})"


def test_a_2d_input_is_one_map_and_reshape_takes_any_shape():
    spec = {"input_shape": [6, 6], "layers": [
        {"Reshape": {"target_shape": [6, 6, 1]}}, {"Conv2D": {"filters": 10, "kernel_size": 3}}, {"Reshape": {"target_shape": [2, -1]}},
        {"Reshape": {"target_shape": [4, 4, 5, 2]}}, {"Flatten": {}}, {"Dense": {"units": 3, "activation": "softmax"}}]}
    model = engine_model(spec)
    plan = plan_workbook(model, sample(model), steps=False)
    ps = panels(plan)
    raw = ps["Input (raw)"].placement
    assert (raw.shape, raw.maps, raw.extent) == ((6, 6), 1, (6, 6))
    cells = plan.sheet("Sample 1").cells()
    assert cells[(TOP - 1, raw.left)].value == "[:, :]"
    r2, r4 = ps["reshape_1 (Reshape)"].placement, ps["reshape_2 (Reshape)"].placement
    assert r2.shape == (2, 80) and r4.shape == (4, 4, 5, 2) and r4.maps == 10 and r4.map_rows == 2
    r, c = r4.map_origin(3)
    assert cells[(r - 1, c)].value == "[:, :, 1, 1]"
    flat = ps["flatten (Flatten)"]
    assert flat.formula((159,)) == r4.ref((3, 3, 4, 1), "Sample 1")
    assert layout_version([plan.sheet("Sample 1")]) == 2


def test_feature_map_pictures_of_2d_and_wide_panels(tmp_path):
    from cnncalc.companion.pictures import write_feature_maps

    model = engine_model({"input_shape": [5, 5], "layers": [{"Reshape": {"target_shape": [5, 5, 1]}},
                                                            {"Conv2D": {"filters": 12, "kernel_size": 3}}]})
    paths = write_feature_maps(plan_workbook(model, sample(model), steps=False), tmp_path)
    assert len(paths) == 1 + 1 + 12 and all(os.path.getsize(p) > 0 for p in paths)


# ---------------------------------------------------------------- reading the format back


@pytest.mark.parametrize("meta, expected", [
    ({(0, 0): "cnncalc workbook", (0, 1): 1}, None),
    ({(0, 0): "cnncalc workbook", (0, 1): 2, (LAYOUT_ROW, 0): "maps across", (LAYOUT_ROW, 1): 8}, 8),
    ({(0, 0): "cnncalc workbook", (0, 1): 2.0, (LAYOUT_ROW, 0): "maps across", (LAYOUT_ROW, 1): 3.0}, 3),
    ({(0, 0): "cnncalc workbook", (0, 1): 2, (LAYOUT_ROW, 0): "maps across", (LAYOUT_ROW, 1): 0}, None),
])
def test_read_layout(meta, expected):
    assert read_layout(meta, "book.xlsx") == expected


@pytest.mark.parametrize("meta, words", [
    ({(0, 0): "cnncalc workbook", (0, 1): 3}, "unknown cnncalc workbook format. Expected format 1 or 2. Received 3"),
    ({(0, 0): "cnncalc workbook", (0, 1): True}, "Expected format 1 or 2. Received True"),
    ({(0, 0): "cnncalc workbook", (0, 1): 2}, "Expected the number of maps across (0 to 16,384) at _cnncalc!B5. Received None"),
    ({(0, 0): "cnncalc workbook", (0, 1): 2, (LAYOUT_ROW, 0): "maps across", (LAYOUT_ROW, 1): "eight"}, "Received 'eight'"),
    ({(0, 0): "cnncalc workbook", (0, 1): 2, (LAYOUT_ROW, 0): "maps across", (LAYOUT_ROW, 1): -1}, "Received -1"),
])
def test_a_damaged_or_unknown_format_is_refused_by_name(meta, words):
    with pytest.raises(CnncalcError) as e:
        read_layout(meta, "book.xlsx")
    assert words in str(e.value) and str(e.value).startswith("book.xlsx")


# ---------------------------------------------------------------- real LibreOffice, real Keras


@pytest.mark.libreoffice
def test_format_1_workbooks_of_the_earlier_release_still_verify_and_grade(soffice):
    from cnncalc.classroom.check import check
    from cnncalc.recalc.verify import read_meta, verify

    book = FORMAT1 / "format1_wide12.xlsx"
    assert read_meta(book)[3] is None  # all 12 maps in one row, as the earlier release laid them out
    report = verify(book, quiet=True)
    assert report.ok and report.checked > 200, report.failures[:3]
    grade = check(FORMAT1 / "format1_wide12_practice_filled.xlsx")
    assert grade.total == 278 and grade.ok, [(m.address, m.status) for m in grade.marks if m.status != "correct"][:5]


@pytest.mark.libreoffice
def test_the_earlier_releases_worked_example_still_verifies_and_exports_the_chapters_model(soffice, tmp_path):
    """tests/data/format1/cnn_simple_example_release1.xlsx is workbooks/cnn_simple_example.xlsx as the earlier release
    committed it (23d74bc): it verifies, and its export predicts the book's 0.8906642 for sample 1."""
    from cnncalc.kerasfiles.loader import load_model
    from cnncalc.recalc.verify import read_meta, verify

    book = FORMAT1 / "cnn_simple_example_release1.xlsx"
    assert read_meta(book)[3] is None  # format 1
    report = verify(book, quiet=True)
    assert report.ok and report.checked > 100, report.failures[:3]
    assert main(["export", str(book), "-o", str(tmp_path / "chapter.keras")]) == 0
    sample1 = np.array([[1, 2, 3, 4], [2, 3, 4, 5], [5, 6, 7, 8], [1, 3, 4, 5]], dtype=float)[None, :, :, None] / 8
    assert round(float(load_model(tmp_path / "chapter.keras").predict(sample1)[0, 0]), 7) == 0.8906642


@pytest.mark.libreoffice
def test_wide_and_banded_workbooks_verify(soffice, tmp_path):
    from cnncalc.recalc.verify import verify

    for name, spec, scale, n in [("wide12", WIDE12, "1/8", 2), ("bands", BANDS, "1/4", 1)]:
        model = engine_model(spec)
        book = write_plan(plan_workbook(model, sample(model, n), scale), tmp_path / f"{name}.xlsx")
        report = verify(book, quiet=True)
        assert report.ok and report.checked > 100, (name, report.failures[:3])


@pytest.mark.libreoffice
def test_a_wide_practice_workbook_is_graded_with_slips_named_on_the_second_row_of_maps(soffice, tmp_path):
    from cnncalc.classroom.check import check
    from test_check import Practice

    model = engine_model(WIDE12)
    conv = model.layers[0]
    conv.weights["bias"] = np.random.default_rng(2).normal(0, 0.5, 12)  # Keras initializes biases to 0
    raw = sample(model)
    practice = Practice(model, raw, "1/8", tmp_path / "practice.xlsx")
    cell = practice.at("Sample 1", "pre", (1, 2, 10), "conv2d")
    x = raw[0] / 8
    no_bias = float(np.sum(x[1:4, 2:5, :] * conv.weights["kernel"][:, :, :, 10]))  # bias forgotten, by numpy
    grade = check(practice.fill(tmp_path / "filled.xlsx", {cell: round(no_bias, 7)}))
    mark = next(m for m in grade.marks if m.address == cell)
    assert mark.status == "wrong" and mark.slip == "bias forgotten"
    assert grade.count("correct") == grade.total - 1


def keras_models(keras):
    """Real MNIST- and CIFAR-style stacks: 64 and 128 filters (rows of maps), 2-D inputs, Reshape with -1."""
    L = keras.layers
    return {
        "mnist_deep": [keras.Input((28, 28, 1)), L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(4),
                       L.Conv2D(64, 3, activation="relu"), L.Conv2D(128, 3, padding="same", activation="relu"), L.MaxPooling2D(2),
                       L.Conv2D(128, 2, activation="relu"), L.Flatten(), L.Dense(10, activation="softmax")],
        "cifar_bn": [keras.Input((32, 32, 3)), L.Conv2D(64, 3, padding="same"), L.BatchNormalization(), L.Activation("relu"),
                     L.MaxPooling2D(4), L.Conv2D(128, 3, strides=2, activation="relu"), L.Conv2D(128, 3, activation="relu"),
                     L.Conv2D(64, 1, activation="relu"), L.GlobalAveragePooling2D(), L.Dense(10, activation="softmax")],
        "input_2d_reshape": [keras.Input((28, 28)), L.Reshape((28, 28, 1)), L.Conv2D(4, 5, strides=3, activation="relu"),
                             L.Reshape((-1,)), L.Dense(10, activation="softmax")],
        "input_2d_flatten": [keras.Input((28, 28)), L.Flatten(), L.Dense(16, activation="relu"), L.Dense(1), L.Dense(3, activation="softmax")],
        "reshape_any": [keras.Input((24,)), L.Reshape((4, -1)), L.Reshape((2, 2, 3, 2)), L.Flatten(), L.Reshape((2, 3, 4)),
                        L.Conv2D(9, 2, activation="tanh"), L.Reshape((-1, 3)), L.Flatten(), L.Dense(2, activation="softmax")],
        # slow: 8 and 6 convolutions of 64-128 filters
        "mnist_deep8": [keras.Input((28, 28, 1)), L.Conv2D(64, 3, activation="relu"), L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2),
                        L.Conv2D(64, 3, activation="relu"), L.Conv2D(64, 3, activation="relu"), L.MaxPooling2D(2),
                        L.Conv2D(128, 3, padding="same", activation="relu"), L.Conv2D(128, 3, padding="same", activation="relu"),
                        L.MaxPooling2D(2), L.Conv2D(128, 2, activation="relu"), L.Conv2D(128, 1, activation="relu"),
                        L.Flatten(), L.Dropout(0.5), L.Dense(10, activation="softmax")],
        "cifar_vgg": [keras.Input((32, 32, 3)), L.Conv2D(64, 3, padding="same"), L.BatchNormalization(), L.Activation("relu"),
                      L.MaxPooling2D(2), L.Conv2D(64, 3, padding="same"), L.BatchNormalization(), L.Activation("relu"), L.MaxPooling2D(2),
                      L.Conv2D(128, 3, padding="same", activation="relu"), L.Conv2D(128, 3, padding="same", activation="relu"),
                      L.MaxPooling2D(2), L.Conv2D(128, 3, activation="relu"), L.Conv2D(128, 1, activation="relu"),
                      L.GlobalAveragePooling2D(), L.Dropout(0.3), L.Dense(10, activation="softmax")],
    }


def saved_keras_model(keras, name, path):
    from keras_helpers import randomize_batchnorm

    keras.backend.clear_session()
    keras.utils.set_random_seed(11)
    model = keras.Sequential(keras_models(keras)[name], name=name)
    randomize_batchnorm(model)
    model.save(path)
    return model


KERAS_CASES = [
    pytest.param("mnist_deep", id="mnist_deep"),
    pytest.param("cifar_bn", id="cifar_bn"),
    pytest.param("input_2d_reshape", id="input_2d_reshape"),
    pytest.param("input_2d_flatten", id="input_2d_flatten"),
    pytest.param("reshape_any", id="reshape_any"),
    pytest.param("mnist_deep8", id="mnist_deep8", marks=pytest.mark.slow),
    pytest.param("cifar_vgg", id="cifar_vgg", marks=pytest.mark.slow),
]


@pytest.mark.keras
@pytest.mark.libreoffice
@pytest.mark.parametrize("name", KERAS_CASES)
def test_models_saved_by_keras_build_workbooks_that_verify(keras, soffice, name, tmp_path):
    from cnncalc.kerasfiles.loader import load_model
    from cnncalc.recalc.verify import verify

    model = saved_keras_model(keras, name, tmp_path / "m.keras")
    x = np.random.default_rng(5).uniform(0, 1, size=(1, *model.input_shape[1:])).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    theirs = model.predict(x, verbose=0)
    mine = load_model(tmp_path / "m.keras").predict(x.astype(np.float64))
    assert np.allclose(mine, theirs, atol=1e-6, rtol=1e-5), f"Mine   {mine.tolist()}\nTheirs {theirs.tolist()}"
    book = tmp_path / "m.xlsx"
    assert main(["build", str(tmp_path / "m.keras"), "--input", str(tmp_path / "x.npy"), "-o", str(book), "--quiet"]) == 0
    report = verify(book, quiet=True)
    assert report.ok and report.checked > 100, report.failures[:3]


# ---------------------------------------------------------------- valid OOXML (a file Excel opens without repair)


@pytest.fixture(scope="module")
def ooxml():
    try:
        from openxml_audit import OpenXmlValidator
    except ImportError as e:
        unavailable("openxml-audit", e)
    return OpenXmlValidator()


def assert_valid_ooxml(validator, path):
    result = validator.validate(path)
    assert result.error_count == 0, [str(e) for e in result.errors[:5]]


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "workbooks").glob("*.xlsx")))
def test_committed_workbooks_are_valid_ooxml(ooxml, name):
    assert_valid_ooxml(ooxml, REPO / "workbooks" / name)


def test_wide_and_practice_workbooks_are_valid_ooxml(ooxml, tmp_path):
    from cnncalc.classroom.practice import plan_practice

    model = engine_model(WIDE12)
    assert_valid_ooxml(ooxml, write_plan(plan_workbook(model, sample(model, 2), "1/8", window=(1, 1)), tmp_path / "wide.xlsx"))
    assert_valid_ooxml(ooxml, write_plan(plan_practice(model, sample(model), "1/8"), tmp_path / "practice.xlsx"))
