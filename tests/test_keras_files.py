"""Issue 3 end to end: models saved by real Keras (.keras, .h5, .weights.h5 + JSON) load in cnncalc,
predict as Keras does, and their workbooks recalculate in LibreOffice to the engine's values;
models made by `cnncalc new` load in real Keras and predict the same."""

import json

import numpy as np
import pytest

from cnncalc.cli import main
from cnncalc.kerasfiles.loader import load_model

from keras_helpers import keras_summary, param_lines

pytestmark = pytest.mark.keras


def models(keras):
    """Small Keras models that together use every supported layer and activation at least once."""
    L = keras.layers
    return {
        "lenet_rgb": [keras.Input((12, 12, 3)), L.Rescaling(0.5, offset=-0.1), L.ZeroPadding2D(((1, 0), (2, 1))),
                      L.Conv2D(4, (3, 2), strides=(2, 1), activation="relu6"), L.BatchNormalization(epsilon=0.01),
                      L.MaxPooling2D(2, padding="same"), L.Conv2D(3, 3, padding="same", dilation_rate=2, use_bias=False, activation="elu"),
                      L.AveragePooling2D(2, strides=1, padding="same"), L.SpatialDropout2D(0.2), L.Flatten(), L.Dropout(0.5),
                      L.Dense(6, activation="selu"), L.Dense(3, activation="softmax")],
        "global_average": [keras.Input((6, 6, 2)), L.Conv2D(3, 3, activation="gelu"), L.GlobalAveragePooling2D(),
                           L.Dense(4, activation="softplus"), L.Dense(3, activation="log_softmax")],
        "global_max_keepdims": [keras.Input((6, 6, 1)), L.Conv2D(2, 2, strides=2, padding="same", activation="sigmoid"),
                                L.GlobalMaxPooling2D(keepdims=True), L.Flatten(), L.Dense(3, activation="hard_sigmoid"),
                                L.Dense(2, activation="tanh")],
        "activation_layers": [keras.Input((5, 5, 1)), L.Conv2D(3, 3, padding="same"), L.ReLU(max_value=0.6, negative_slope=0.1, threshold=0.05),
                              L.Conv2D(2, 2), L.LeakyReLU(negative_slope=0.2), L.Conv2D(2, 2), L.ELU(alpha=0.7), L.Reshape((-1,)),
                              L.Dense(4, activation="softsign"), L.Activation("silu"), L.Dense(3, activation="swish"), L.Activation("softmax")],
        "vector_reshape": [keras.Input((8,)), L.Dense(8, activation="exponential"), L.Reshape((2, 2, 2)),
                           L.Conv2D(2, 2, activation="leaky_relu"), L.Flatten(), L.Dense(3, activation="linear"),
                           L.Activation("log_softmax")],
    }


def build(keras, name):
    keras.backend.clear_session()
    keras.utils.set_random_seed(7)
    model = keras.Sequential(models(keras)[name], name=name)
    rng = np.random.default_rng(3)
    # non-trivial weights everywhere, positive variances, small enough that exponential stays tame
    model.set_weights([(np.abs(w) + 0.5 if "variance" in v.path else w + rng.normal(0, 0.3, w.shape)).astype(np.float32)
                       for w, v in zip(model.get_weights(), model.weights)])
    return model


def sample_input(model, n=2, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(n, *model.input_shape[1:])).astype(np.float32)


NAMES = ["lenet_rgb", "global_average", "global_max_keepdims", "activation_layers", "vector_reshape"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("fmt", ["keras", "h5", "weights"])
def test_saved_model_predicts_as_keras(keras, name, fmt, tmp_path):
    model = build(keras, name)
    x = sample_input(model)
    theirs = model.predict(x, verbose=0)
    if fmt == "keras":
        model.save(tmp_path / "m.keras")
        mine = load_model(tmp_path / "m.keras")
    elif fmt == "h5":
        model.save(tmp_path / "m.h5")
        mine = load_model(tmp_path / "m.h5")
    else:
        model.save_weights(tmp_path / "m.weights.h5")
        (tmp_path / "m.json").write_text(model.to_json())
        mine = load_model(tmp_path / "m.weights.h5", tmp_path / "m.json")
    for dtype in (np.float32, np.float64):
        got = mine.predict(x, dtype=dtype)
        assert np.allclose(got, theirs, atol=1e-6, rtol=1e-5), f"Mine   {got.tolist()}\nTheirs {theirs.tolist()}"


@pytest.mark.parametrize("name", NAMES)
def test_summary_equals_keras(keras, name, tmp_path):
    model = build(keras, name)
    model.save(tmp_path / "m.keras")
    rows, params = keras_summary(model)
    mine = load_model(tmp_path / "m.keras")
    assert mine.summary_rows() == rows
    assert param_lines(mine.summary()) == params
    lines = []
    model.summary(print_fn=lambda text, **kw: lines.append(text))
    assert [l for l in "\n".join(lines).splitlines() if l[:1] in "│┃"] == [l for l in mine.summary().splitlines() if l[:1] in "│┃"]


def test_functional_chain_summary_lists_its_input_like_keras(keras, tmp_path):
    from keras_helpers import chain_functional_model

    model = chain_functional_model()
    model.save(tmp_path / "chain.keras")
    rows, params = keras_summary(model)
    mine = load_model(tmp_path / "chain.keras")
    assert rows[0] == ("image (InputLayer)", "(None, 8, 8, 2)", 0)
    assert mine.summary_rows() == rows and param_lines(mine.summary()) == params


@pytest.mark.libreoffice
@pytest.mark.parametrize("name", NAMES)
def test_workbook_of_each_model_verifies_in_libreoffice(keras, soffice, name, tmp_path):
    from cnncalc.recalc.verify import verify

    model = build(keras, name)
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", sample_input(model))
    book = tmp_path / "m.xlsx"
    assert main(["build", str(tmp_path / "m.keras"), "--input", str(tmp_path / "x.npy"), "-o", str(book)]) == 0
    report = verify(book)
    assert report.ok, report.failures[:5]
    assert report.checked > 20


def test_new_models_load_in_keras_and_predict_the_same(keras, tmp_path):
    spec = {"input_shape": [10, 10, 3], "seed": 5, "layers": [
        {"Rescaling": {"scale": 0.1}},
        {"Conv2D": {"filters": 4, "kernel_size": 3, "activation": "relu", "padding": "same"}},
        {"BatchNormalization": {}},
        {"MaxPooling2D": {"pool_size": 2}},
        ["Conv2D", {"filters": 3, "kernel_size": [2, 3], "strides": 2, "activation": "tanh"}],
        {"class_name": "Flatten", "config": {}},
        {"Dropout": {"rate": 0.3}},
        {"Dense": {"units": 5, "activation": "relu"}},
        {"Dense": {"units": 3, "activation": "softmax"}},
    ]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = tmp_path / "new.keras"
    assert main(["new", str(tmp_path / "spec.json"), "-o", str(out)]) == 0
    theirs = keras.saving.load_model(out)
    mine = load_model(out)
    x = np.random.default_rng(1).uniform(0, 10, size=(3, 10, 10, 3)).astype(np.float32)
    assert np.allclose(mine.predict(x), theirs.predict(x, verbose=0), atol=1e-6)
    # Keras's defaults: zero biases, glorot_uniform limits, and the same seed gives the same bytes
    kernel = theirs.layers[1].get_weights()[0]
    limit = np.sqrt(6 / (3 * 9 + 4 * 9))
    assert np.all(np.abs(kernel) <= limit) and np.abs(kernel).max() > 0.5 * limit
    assert not theirs.layers[1].get_weights()[1].any()
    again = tmp_path / "again.keras"
    assert main(["new", str(tmp_path / "spec.json"), "-o", str(again)]) == 0
    assert again.read_bytes() == out.read_bytes()
    assert main(["new", str(tmp_path / "spec.json"), "-o", str(again), "--seed", "6"]) == 2  # exists, no --force
    assert main(["new", str(tmp_path / "spec.json"), "-o", str(again), "--seed", "6", "--force"]) == 0
    assert again.read_bytes() != out.read_bytes()


@pytest.mark.libreoffice
def test_every_activation_recalculates_in_libreoffice(soffice, tmp_path):
    """One Dense layer per activation, chained, so every activation's formula is recalculated by LibreOffice."""
    from cnncalc.engine import ops
    from cnncalc.engine.layers import Activation, Dense
    from cnncalc.engine.model import Sequential
    from cnncalc.recalc.verify import verify
    from cnncalc.sheets.workbook import plan_workbook
    from cnncalc.sheets.writer import write_plan

    names = [a for a in ops.ACTIVATIONS if a not in ("softmax", "log_softmax")]
    layers = [Dense(4, activation=a) for a in names] + [Activation("softmax"), Dense(3), Activation("log_softmax")]
    model = Sequential(layers, (4,))
    rng = np.random.default_rng(0)
    for layer, shape in zip(model.layers, model.shapes):
        layer.set_weights([rng.normal(0, 0.6, s) for s in layer.weight_shapes(shape).values()], shape)
    write_plan(plan_workbook(model, rng.uniform(-2, 2, (2, 4))), tmp_path / "acts.xlsx")
    report = verify(tmp_path / "acts.xlsx")
    assert report.ok, report.failures[:5]


def test_build_from_a_png_digit_with_scale(keras, tmp_path):
    from PIL import Image

    model = build(keras, "global_max_keepdims")
    model.save(tmp_path / "m.keras")
    pixels = np.random.default_rng(2).integers(0, 256, (6, 6)).astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(tmp_path / "digit.png")
    out = tmp_path / "digit.xlsx"
    assert main(["build", str(tmp_path / "m.keras"), "--input", str(tmp_path / "digit.png"), "--scale", "1/255", "-o", str(out)]) == 0
    theirs = model.predict(pixels[None, :, :, None].astype(np.float32) / 255, verbose=0)
    assert np.allclose(load_model(tmp_path / "m.keras").predict(pixels[None, :, :, None] / 255), theirs, atol=1e-6)
    import openpyxl

    formulas = [c.value for row in openpyxl.load_workbook(out)["Sample 1"].iter_rows() for c in row if isinstance(c.value, str)]
    assert "=B4/255" in formulas  # the scale is a visible formula step
