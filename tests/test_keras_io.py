"""Tests for cnncalc.kerasfiles.formats: reading and writing Keras files without Keras.

The tests marked `keras` save real models with Keras 3 (jax backend) and read
them back; the others use small files written by hand in the same layouts.
"""

import io
import json
import zipfile

import h5py
import numpy as np
import pytest

from cnncalc.errors import CnncalcError
from cnncalc.kerasfiles.formats import keras_layer_key, read_model_file, write_keras_file
from keras_helpers import chain_functional_model, lenet_model, toy_model


def raises_one_line(func, *args, match=None):
    """Call func, expect a CnncalcError with a one-line message, return the message."""
    with pytest.raises(CnncalcError, match=match) as info:
        func(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def without_shared_ids(value):
    """Drop Keras' per-save `shared_object_id` keys, which differ between saves."""
    if isinstance(value, dict):
        return {k: without_shared_ids(v) for k, v in value.items() if k != "shared_object_id"}
    if isinstance(value, list):
        return [without_shared_ids(v) for v in value]
    return value


def small_spec():
    """A toy-model spec with minimal configs, as a model builder would hand it over."""
    rng = np.random.default_rng(5)
    w = lambda *shape: rng.normal(size=shape).astype("float32")  # noqa: E731
    return {
        "name": "mini",
        "input_shape": (4, 4, 1),
        "layers": [
            {"class_name": "Conv2D", "config": {"filters": 1, "kernel_size": [3, 3], "activation": "relu"},
             "weights": [w(3, 3, 1, 1), w(1)]},
            {"class_name": "MaxPooling2D", "config": {"pool_size": [2, 2]}, "weights": []},
            {"class_name": "Flatten", "config": {}, "weights": []},
            {"class_name": "Dense", "config": {"units": 10, "activation": "relu"}, "weights": [w(1, 10), w(10)]},
            {"class_name": "Dense", "config": {"units": 2, "activation": "softmax"}, "weights": [w(10, 2), w(2)]},
        ],
    }


# --------------------------------------------------------------------------
# Without Keras
# --------------------------------------------------------------------------


@pytest.mark.parametrize("class_name, key", [
    ("Conv2D", "conv2d"), ("MaxPooling2D", "max_pooling2d"), ("Dense", "dense"),
    ("BatchNormalization", "batch_normalization"),
    ("GlobalAveragePooling2D", "global_average_pooling2d"), ("ZeroPadding2D", "zero_padding2d"),
    ("LeakyReLU", "leaky_re_lu"), ("ReLU", "re_lu"), ("ELU", "elu"),
    ("SpatialDropout2D", "spatial_dropout2d"), ("DepthwiseConv2D", "depthwise_conv2d"),
    ("PReLU", "p_re_lu"), ("InputLayer", "input_layer"),
])
def test_keras_layer_key(class_name, key):
    assert keras_layer_key(class_name) == key


def test_write_then_read_round_trip(tmp_path):
    spec = small_spec()
    write_keras_file(spec, tmp_path / "mini.keras")
    back = read_model_file(tmp_path / "mini.keras")
    assert back["name"] == "mini"
    assert back["input_shape"] == (4, 4, 1)
    assert [l["class_name"] for l in back["layers"]] == [l["class_name"] for l in spec["layers"]]
    assert [l["config"]["name"] for l in back["layers"]] == [
        "conv2d", "max_pooling2d", "flatten", "dense", "dense_1"]
    for got, want in zip(back["layers"], spec["layers"]):
        assert len(got["weights"]) == len(want["weights"])
        for a, b in zip(got["weights"], want["weights"]):
            np.testing.assert_array_equal(a, b)
    # The spec handed in is not changed by writing it.
    assert spec["layers"][0]["config"] == {"filters": 1, "kernel_size": [3, 3], "activation": "relu"}


def test_same_spec_gives_identical_bytes(tmp_path):
    write_keras_file(small_spec(), tmp_path / "a.keras")
    write_keras_file(small_spec(), tmp_path / "b.keras")
    assert (tmp_path / "a.keras").read_bytes() == (tmp_path / "b.keras").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.keras") as zf:
        assert sorted(zf.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        metadata = json.loads(zf.read("metadata.json"))
    assert set(metadata) == {"keras_version", "date_saved"}


def write_tf2_legacy_h5(path, weights_only=False):
    """A tf.keras 2 style model.save('x.h5'): bytes attributes, ':0' names, no InputLayer.

    With weights_only, the layout of tf.keras 2 save_weights('x.h5'): layers at the root.
    """
    config = {
        "class_name": "Sequential",
        "config": {"name": "sequential", "layers": [
            {"class_name": "Conv2D", "config": {
                "name": "conv2d", "trainable": True, "batch_input_shape": [None, 5, 5, 2],
                "dtype": "float32", "filters": 3, "kernel_size": [2, 2], "activation": "relu",
                "data_format": "channels_first"}},
            {"class_name": "Flatten", "config": {"name": "flatten", "dtype": "float32"}},
            {"class_name": "Dense", "config": {"name": "dense", "units": 2, "dtype": "float32"}},
        ]},
    }
    rng = np.random.default_rng(7)
    weights = {"conv2d": [("kernel:0", rng.normal(size=(2, 2, 2, 3))), ("bias:0", rng.normal(size=3))],
               "flatten": [],
               "dense": [("kernel:0", rng.normal(size=(48, 2))), ("bias:0", rng.normal(size=2))]}
    with h5py.File(path, "w") as f:
        if weights_only:
            group = f
        else:
            f.attrs["model_config"] = json.dumps(config).encode("utf-8")
            f.attrs["keras_version"] = b"2.12.0"
            group = f.create_group("model_weights")
        group.attrs["layer_names"] = np.array([n.encode() for n in weights], dtype="S")
        for layer_name, items in weights.items():
            layer_group = group.create_group(layer_name)
            names = [f"{layer_name}/{w}".encode() for w, _ in items]
            layer_group.attrs["weight_names"] = np.array(names, dtype="S") if names else np.array([])
            for weight_name, value in items:
                layer_group.create_dataset(f"{layer_name}/{weight_name}", data=value.astype("float32"))
    return config, weights


@pytest.mark.parametrize("weights_only", [False, True])
def test_reads_tf2_style_legacy_h5(tmp_path, weights_only):
    config, weights = write_tf2_legacy_h5(tmp_path / "tf2.h5", weights_only)
    (tmp_path / "model.json").write_text(json.dumps(config))
    spec = read_model_file(tmp_path / "tf2.h5", tmp_path / "model.json" if weights_only else None)
    assert spec["name"] == "sequential"
    assert spec["input_shape"] == (5, 5, 2)  # from batch_input_shape on the first layer
    assert [l["class_name"] for l in spec["layers"]] == ["Conv2D", "Flatten", "Dense"]
    assert spec["layers"][0]["config"]["data_format"] == "channels_first"  # passed through
    for layer in spec["layers"]:
        want = weights[layer["config"]["name"]]
        assert len(layer["weights"]) == len(want)
        for got, (_, value) in zip(layer["weights"], want):
            np.testing.assert_array_equal(got, value.astype("float32"))


def tf2_functional_config(branching):
    """A tf.keras 2 Functional config: inbound_nodes as [[[name, 0, 0, {}]]]."""
    def layer(cls, name, *inputs, **config):
        return {"class_name": cls, "name": name, "config": {"name": name, **config},
                "inbound_nodes": [[[src, 0, 0, {}] for src in inputs]] if inputs else []}
    chain = [
        layer("InputLayer", "input_1", batch_input_shape=[None, 6, 6, 1]),
        layer("Conv2D", "conv2d", "input_1", filters=2, kernel_size=[3, 3]),
        layer("Flatten", "flatten", "conv2d"),
        layer("Dense", "dense", "flatten", units=2),
    ]
    if branching:
        chain[2:] = [
            layer("Conv2D", "conv2d_1", "conv2d", filters=2, kernel_size=[1, 1]),
            layer("Add", "add", "conv2d", "conv2d_1"),
            layer("Flatten", "flatten", "add"),
            layer("Dense", "dense", "flatten", units=2),
        ]
    return {"class_name": "Functional", "config": {
        "name": "model", "layers": chain,
        "input_layers": [["input_1", 0, 0]], "output_layers": [["dense", 0, 0]]}}


def write_keras3_weights(path, keys_and_counts):
    """A Keras 3 style .weights.h5 with layers/<key>/vars/<i> datasets."""
    with h5py.File(path, "w") as f:
        for key, count in keys_and_counts:
            vars_group = f.create_group(f"layers/{key}/vars")
            for i in range(count):
                vars_group.create_dataset(str(i), data=np.full((2,), i, dtype="float32"))
        f.create_group("vars")


def test_reads_tf2_style_functional_chain_with_config_path(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps(tf2_functional_config(branching=False)))
    write_keras3_weights(tmp_path / "m.weights.h5", [("input_layer", 0), ("conv2d", 2), ("flatten", 0), ("dense", 2)])
    spec = read_model_file(tmp_path / "m.weights.h5", config_path=tmp_path / "model.json")
    assert spec["input_shape"] == (6, 6, 1)
    assert [l["config"]["name"] for l in spec["layers"]] == ["conv2d", "flatten", "dense"]
    assert [len(l["weights"]) for l in spec["layers"]] == [2, 0, 2]
    np.testing.assert_array_equal(spec["layers"][2]["weights"][1], [1, 1])


def test_refuses_branching_functional_config(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps(tf2_functional_config(branching=True)))
    write_keras3_weights(tmp_path / "m.weights.h5", [("conv2d", 2)])
    message = raises_one_line(read_model_file, tmp_path / "m.weights.h5", tmp_path / "model.json")
    assert "'conv2d' (Conv2D)" in message and "several outputs" in message


def test_missing_layer_weights_name_the_layer(tmp_path):
    write_keras_file(small_spec(), tmp_path / "mini.keras")
    with zipfile.ZipFile(tmp_path / "mini.keras") as zf:
        (tmp_path / "config.json").write_bytes(zf.read("config.json"))
        (tmp_path / "w.weights.h5").write_bytes(zf.read("model.weights.h5"))
    with h5py.File(tmp_path / "w.weights.h5", "a") as f:
        del f["layers/dense_1"]
    message = raises_one_line(read_model_file, tmp_path / "w.weights.h5", tmp_path / "config.json")
    assert "'dense_1' (Dense)" in message and "missing" in message


def test_weights_file_without_config(tmp_path):
    write_keras3_weights(tmp_path / "m.weights.h5", [("dense", 2)])
    assert "config_path" in raises_one_line(read_model_file, tmp_path / "m.weights.h5")


def edited_keras_file(tmp_path, edit):
    """Write small_spec() as .keras, let edit(config_dict) change its config.json, re-zip it."""
    write_keras_file(small_spec(), tmp_path / "mini.keras")
    with zipfile.ZipFile(tmp_path / "mini.keras") as zf:
        config = json.loads(zf.read("config.json"))
        weights = zf.read("model.weights.h5")
    edit(config)
    with zipfile.ZipFile(tmp_path / "edited.keras", "w") as zf:
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("model.weights.h5", weights)
    return tmp_path / "edited.keras"


@pytest.mark.parametrize("module, registered, words", [
    ("my_package.layers", None, "my_package.layers"),
    (None, "Custom>MyLayer", "Custom>MyLayer"),
    ("keras.layers", "Custom>MyLayer", "Custom>MyLayer"),
])
def test_refuses_custom_layers(tmp_path, module, registered, words):
    def make_custom(config):  # layers[3] is the Flatten layer (layers[0] is the InputLayer)
        config["config"]["layers"][3].update(module=module, registered_name=registered, class_name="MyLayer")

    message = raises_one_line(read_model_file, edited_keras_file(tmp_path, make_custom))
    assert "'flatten' (MyLayer)" in message and words in message


def test_refuses_nested_model(tmp_path):
    def nest(config):
        config["config"]["layers"][3]["class_name"] = "Sequential"

    message = raises_one_line(read_model_file, edited_keras_file(tmp_path, nest))
    assert "'flatten' (Sequential)" in message and "nested" in message


def test_refuses_custom_activation_function(tmp_path):
    spec = small_spec()
    spec["layers"][3]["config"]["activation"] = {
        "module": "my_module", "class_name": "function", "config": "swishy", "registered_name": "swishy"}
    message = raises_one_line(write_keras_file, spec, tmp_path / "x.keras")
    assert "'dense' (Dense)" in message and "swishy" in message


def test_text_file_named_keras(tmp_path):
    (tmp_path / "x.keras").write_text("this is not a model\n")
    assert "neither" in raises_one_line(read_model_file, tmp_path / "x.keras")


def test_missing_file(tmp_path):
    raises_one_line(read_model_file, tmp_path / "nope.keras", match="does not exist. Expected a Keras model file")


def test_zip_without_config_json(tmp_path):
    with zipfile.ZipFile(tmp_path / "x.keras", "w") as zf:
        zf.writestr("model.weights.h5", b"")
    assert "config.json" in raises_one_line(read_model_file, tmp_path / "x.keras")


def test_zip_without_weights(tmp_path):
    with zipfile.ZipFile(tmp_path / "x.keras", "w") as zf:
        zf.writestr("config.json", "{}")
    assert "model.weights.h5" in raises_one_line(read_model_file, tmp_path / "x.keras")


@pytest.mark.parametrize("text", ["{not json", '"a string"', '{"class_name": "Sequential", "config": 3}'])
def test_malformed_config(tmp_path, text):
    with zipfile.ZipFile(tmp_path / "x.keras", "w") as zf:
        zf.writestr("config.json", text)
        zf.writestr("model.weights.h5", b"")
    raises_one_line(read_model_file, tmp_path / "x.keras")


def test_broken_weights_inside_zip(tmp_path):
    write_keras_file(small_spec(), tmp_path / "mini.keras")
    with zipfile.ZipFile(tmp_path / "mini.keras") as zf:
        config = zf.read("config.json")
        weights = zf.read("model.weights.h5")
    with zipfile.ZipFile(tmp_path / "x.keras", "w") as zf:
        zf.writestr("config.json", config)
        zf.writestr("model.weights.h5", weights[: len(weights) // 2])
    raises_one_line(read_model_file, tmp_path / "x.keras", match="damaged")


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.9])
def test_truncated_h5(tmp_path, fraction):
    write_tf2_legacy_h5(tmp_path / "full.h5")
    data = (tmp_path / "full.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: int(len(data) * fraction)])
    raises_one_line(read_model_file, tmp_path / "cut.h5")


def test_truncated_keras_zip(tmp_path):
    write_keras_file(small_spec(), tmp_path / "mini.keras")
    data = (tmp_path / "mini.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    raises_one_line(read_model_file, tmp_path / "cut.keras")


def test_write_rejects_bad_spec(tmp_path):
    raises_one_line(write_keras_file, {"layers": "nope"}, tmp_path / "x.keras", match="Invalid model spec")
    raises_one_line(write_keras_file, {**small_spec(), "input_shape": "4x4"}, tmp_path / "x.keras",
                    match="input_shape")
    spec = small_spec()
    spec["layers"][0]["config"]["filters"] = object()
    raises_one_line(write_keras_file, spec, tmp_path / "x.keras", match="JSON")


# --------------------------------------------------------------------------
# Against real Keras
# --------------------------------------------------------------------------

MODELS = {"toy": toy_model, "lenet": lenet_model, "chain": chain_functional_model}
FORMATS = ["keras", "h5", "weights"]


@pytest.fixture(scope="module")
def saved(keras, tmp_path_factory):
    """Each model saved once in each format: {model name: (model, {format: (path, config_path)})}."""
    folder = tmp_path_factory.mktemp("saved")
    result = {}
    for name, build in MODELS.items():
        model = build()
        model.save(folder / f"{name}.keras")
        model.save(folder / f"{name}.h5")
        model.save_weights(folder / f"{name}.weights.h5")
        (folder / f"{name}.json").write_text(model.to_json())
        result[name] = (model, {
            "keras": (folder / f"{name}.keras", None),
            "h5": (folder / f"{name}.h5", None),
            "weights": (folder / f"{name}.weights.h5", folder / f"{name}.json"),
        })
    return result


def sample_input(model, seed=0):
    shape = (3,) + tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.keras
def test_reads_real_keras_files(keras, saved, name, fmt):
    model, paths = saved[name]
    spec = read_model_file(*paths[fmt])
    assert spec["name"] == model.name
    assert spec["input_shape"] == tuple(model.inputs[0].shape[1:])
    keras_layers = [l for l in model.layers if not isinstance(l, keras.layers.InputLayer)]
    expected_configs = [l["config"] for l in json.loads(model.to_json())["config"]["layers"]
                        if l["class_name"] != "InputLayer"]
    assert [l["class_name"] for l in spec["layers"]] == [type(l).__name__ for l in keras_layers]
    for got, layer, config in zip(spec["layers"], keras_layers, expected_configs):
        assert without_shared_ids(got["config"]) == config
        want = layer.get_weights()
        assert len(got["weights"]) == len(want), layer.name
        for a, b in zip(got["weights"], want):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", MODELS)
@pytest.mark.keras
def test_write_round_trip_through_keras(keras, saved, name, fmt, tmp_path):
    model, paths = saved[name]
    write_keras_file(read_model_file(*paths[fmt]), tmp_path / "again.keras")
    loaded = keras.saving.load_model(tmp_path / "again.keras")
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert len(loaded.get_weights()) == len(model.get_weights())
    x = sample_input(model)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.keras
def test_minimal_spec_loads_in_keras(keras, tmp_path):
    spec = small_spec()
    write_keras_file(spec, tmp_path / "mini.keras")
    loaded = keras.saving.load_model(tmp_path / "mini.keras")
    reference = toy_model()
    reference.set_weights([w for layer in spec["layers"] for w in layer["weights"]])
    x = sample_input(reference)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), reference.predict(x, verbose=0))
    assert [type(l).__name__ for l in loaded.layers] == [l["class_name"] for l in spec["layers"]]


@pytest.mark.keras
@pytest.mark.parametrize("suffix", [".keras", ".h5", ".weights.h5"])
def test_the_compile_settings_come_with_the_model(keras, tmp_path, suffix):
    """load_compiled_model reads the model and what Keras compiled it with in one read; they are the settings
    compile_settings reads alone (a weights file has none)."""
    from cnncalc.kerasfiles.compile import compile_settings
    from cnncalc.kerasfiles.loader import load_compiled_model

    km = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")], name="compiled")
    km.compile(optimizer=keras.optimizers.SGD(0.25, momentum=0.5), loss="categorical_crossentropy")
    path = tmp_path / f"m{suffix}"
    if suffix == ".weights.h5":
        km.save_weights(path)
    else:
        km.save(path)
    (tmp_path / "m.json").write_text(km.to_json())
    model, settings = load_compiled_model(path, tmp_path / "m.json" if suffix == ".weights.h5" else None)
    assert model.name == "compiled" and repr(settings) == repr(compile_settings(path))
    if suffix == ".weights.h5":
        assert settings.loss is None and settings.optimizer is None
    else:
        assert (settings.loss.name, settings.optimizer.name) == ("categorical_crossentropy", "SGD")
        assert (settings.optimizer.learning_rate, settings.optimizer.momentum) == (0.25, 0.5) and f"m{suffix}" in settings.source


@pytest.mark.keras
def test_group_names_match_real_keras(keras, tmp_path):
    """keras_layer_key and the _1, _2 suffixes agree with what Keras writes."""
    from keras.src.utils.naming import to_snake_case

    layers = keras.layers
    model = keras.Sequential([
        keras.Input((10, 10, 2)),
        layers.ZeroPadding2D(1),
        layers.Conv2D(3, 3, trainable=False),
        layers.BatchNormalization(trainable=False),
        layers.LeakyReLU(),
        layers.Conv2D(3, 3),
        layers.ReLU(),
        layers.ELU(),
        layers.SpatialDropout2D(0.1),
        layers.Conv2D(2, 1),
        layers.MaxPooling2D(2),
        layers.GlobalAveragePooling2D(),
        layers.Dense(2),
    ], name="zoo")
    model.save(tmp_path / "zoo.keras")
    model.save(tmp_path / "zoo.h5")
    with zipfile.ZipFile(tmp_path / "zoo.keras") as zf:
        with h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r") as f:
            groups = sorted(f["layers"].keys())
    classes = [type(l).__name__ for l in model.layers]
    assert all(keras_layer_key(c) == to_snake_case(c) for c in classes)
    assert groups == sorted([
        "zero_padding2d", "conv2d", "batch_normalization", "leaky_re_lu", "conv2d_1", "re_lu",
        "elu", "spatial_dropout2d", "conv2d_2", "max_pooling2d", "global_average_pooling2d", "dense"])
    for fmt in ("zoo.keras", "zoo.h5"):  # frozen layers keep get_weights() order
        spec = read_model_file(tmp_path / fmt)
        for got, layer in zip(spec["layers"], model.layers):
            assert len(got["weights"]) == len(layer.get_weights())
            for a, b in zip(got["weights"], layer.get_weights()):
                np.testing.assert_array_equal(a, b)


@pytest.mark.keras
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_lambda_layer_is_refused_without_running_it(keras, tmp_path, suffix):
    layers = keras.layers
    sentinel = tmp_path / "lambda_ran.txt"
    # The lambda leaves a file behind whenever it runs.
    code = lambda x, marker=str(sentinel): (open(marker, "w").write("ran"), x)[1]  # noqa: E731
    model = keras.Sequential([keras.Input((4,)), layers.Dense(3), layers.Lambda(code, name="doubler"),
                              layers.Dense(2)])
    model.save(tmp_path / f"lambda{suffix}")
    sentinel.unlink(missing_ok=True)  # Keras ran it while building the model
    message = raises_one_line(read_model_file, tmp_path / f"lambda{suffix}")
    assert "'doubler' (Lambda)" in message
    assert not sentinel.exists()


@pytest.mark.keras
def test_registered_custom_layer_is_refused(keras, tmp_path):
    layers = keras.layers

    @keras.saving.register_keras_serializable(package="Custom")
    class MyLayer(layers.Layer):
        def call(self, x):
            return x

    model = keras.Sequential([keras.Input((4,)), MyLayer(name="mine"), layers.Dense(2)])
    model.save(tmp_path / "custom.keras")
    message = raises_one_line(read_model_file, tmp_path / "custom.keras")
    assert "'mine' (MyLayer)" in message and "Custom>MyLayer" in message


@pytest.mark.keras
def test_branching_functional_model_is_refused(keras, tmp_path):
    layers = keras.layers
    inputs = keras.Input((6, 6, 1))
    split = layers.Conv2D(2, 3, padding="same", name="split")(inputs)
    left = layers.Conv2D(2, 1, name="left")(split)
    right = layers.Conv2D(2, 1, name="right")(split)
    merged = layers.Add(name="merge")([left, right])
    outputs = layers.Dense(2)(layers.Flatten()(merged))
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "branch.keras")
    model.save(tmp_path / "branch.h5")
    for fname in ("branch.keras", "branch.h5"):
        message = raises_one_line(read_model_file, tmp_path / fname)
        assert "'split' (Conv2D)" in message and "several outputs" in message


@pytest.mark.keras
def test_truncated_real_h5(saved, tmp_path):
    path, _ = saved["lenet"][1]["h5"]
    data = path.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 3])
    raises_one_line(read_model_file, tmp_path / "cut.h5")
