"""Every layer and activation against real Keras (jax backend): predict, summary, config round trip; formula text pinned."""

import os
import re
import tempfile

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cnncalc.sheets import formulas
from cnncalc.engine import ops
from cnncalc.sheets.cells import Placement
from cnncalc.errors import CnncalcError
from cnncalc.engine.layers import LAYERS, SUPPORTED, layer_from_config
from cnncalc.kerasfiles.loader import load_model
from cnncalc.engine.model import Sequential

from keras_helpers import keras_summary, param_lines

# ---------------------------------------------------------------- comparing a Keras model with ours


def randomize(model, rng):
    """Non-trivial weights for every layer; BatchNormalization's moving variance stays positive."""
    for layer in model.layers:
        arrays = []
        for v in layer.weights:
            name, shape = v.name, tuple(v.shape)
            if name == "kernel":
                a = rng.normal(0, 1 / np.sqrt(np.prod(shape[:-1])), shape)
            elif name == "moving_variance":
                a = rng.uniform(0.3, 2.0, shape)
            elif name == "gamma":
                a = rng.uniform(0.5, 1.5, shape)
            else:  # bias, beta, moving_mean
                a = rng.normal(0, 0.5, shape)
            arrays.append(a.astype("float32"))
        layer.set_weights(arrays)


def check_against_keras(keras, km, x):
    """Our model, built from km's layer configs and weights, predicts and summarises as km does."""
    spec = {"name": km.name, "input_shape": list(km.input_shape[1:]),
            "layers": [{"class_name": type(l).__name__, "config": l.get_config(), "weights": l.get_weights()} for l in km.layers]}
    mine_model = Sequential.from_spec(spec)
    theirs = km.predict(x, verbose=0)
    for dtype in (np.float64, np.float32):
        mine = mine_model.predict(x, dtype=dtype)
        print(f"Mine   ({np.dtype(dtype).name})", mine.ravel()[:12].tolist(), "\nTheirs          ", theirs.ravel()[:12].tolist())
        assert mine.shape == theirs.shape
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-6, err_msg=f"{km.name} in {np.dtype(dtype).name}")
    rows, params = keras_summary(km)
    assert mine_model.summary_rows() == rows
    assert param_lines(mine_model.summary()) == params
    for layer in mine_model.layers:  # what verify does: rebuild each layer from our own config
        assert layer_from_config(layer.class_name, layer.get_config()).get_config() == layer.get_config()
    return mine_model


def build(keras, name, input_shape, make, seed=0):
    keras.backend.clear_session()  # Keras's automatic names (dense, dense_1) count from a fresh session
    km = keras.Sequential([keras.Input(input_shape), *make(keras.layers)], name=name)
    rng = np.random.default_rng(seed)
    randomize(km, rng)
    return km, rng.uniform(-2, 2, (3, *input_shape)).astype("float32")


# ---------------------------------------------------------------- one case per layer and option

LAYER_CASES = {
    "global_average": ((6, 6, 2), lambda L: [L.Conv2D(3, 3), L.GlobalAveragePooling2D(), L.Dense(2)]),
    "global_average_keepdims": ((5, 5, 2), lambda L: [L.Conv2D(3, 3, padding="same"), L.GlobalAveragePooling2D(keepdims=True)]),
    "global_max": ((6, 6, 2), lambda L: [L.Conv2D(3, 3, strides=2, padding="same"), L.GlobalMaxPooling2D()]),
    "global_max_keepdims": ((6, 6, 1), lambda L: [L.Conv2D(2, 2), L.GlobalMaxPooling2D(keepdims=True), L.Flatten()]),
    "dropout_image": ((5, 5, 1), lambda L: [L.Conv2D(2, 3, padding="same"), L.Dropout(0.5)]),
    "dropout_vector": ((7,), lambda L: [L.Dense(4, activation="relu"), L.Dropout(0.3), L.Dense(2)]),
    "spatial_dropout": ((5, 5, 2), lambda L: [L.Conv2D(3, 2), L.SpatialDropout2D(0.4)]),
    "relu": ((5, 5, 1), lambda L: [L.Conv2D(2, 3), L.ReLU()]),
    "relu_max_value": ((5, 5, 1), lambda L: [L.Conv2D(2, 3), L.ReLU(max_value=0.5)]),
    "relu6_layer": ((6,), lambda L: [L.Rescaling(5.0), L.ReLU(max_value=6.0)]),
    "relu_negative_slope": ((5, 5, 1), lambda L: [L.Conv2D(2, 3), L.ReLU(negative_slope=0.1)]),
    "relu_threshold": ((5, 5, 1), lambda L: [L.Conv2D(2, 3), L.ReLU(threshold=0.3)]),
    "relu_all_options": ((8,), lambda L: [L.Dense(6), L.ReLU(max_value=1.0, negative_slope=0.2, threshold=0.3)]),
    "leaky_relu_default": ((5, 5, 1), lambda L: [L.Conv2D(2, 3), L.LeakyReLU()]),
    "leaky_relu_slope": ((8,), lambda L: [L.Dense(6), L.LeakyReLU(negative_slope=0.05)]),
    "elu_layer": ((5, 5, 1), lambda L: [L.Conv2D(2, 3), L.ELU()]),
    "elu_alpha": ((8,), lambda L: [L.Dense(6), L.ELU(alpha=0.5)]),
    "batchnorm": ((6, 6, 2), lambda L: [L.Conv2D(3, 3, padding="same"), L.BatchNormalization()]),
    "batchnorm_no_center": ((6, 6, 2), lambda L: [L.Conv2D(3, 3), L.BatchNormalization(center=False)]),
    "batchnorm_no_scale": ((6, 6, 2), lambda L: [L.Conv2D(3, 3), L.BatchNormalization(scale=False)]),
    "batchnorm_bare_epsilon": ((6, 6, 2), lambda L: [L.Conv2D(3, 3), L.BatchNormalization(center=False, scale=False, epsilon=0.01)]),
    "batchnorm_dense": ((8,), lambda L: [L.Dense(5), L.BatchNormalization(epsilon=1e-5), L.Dense(2, activation="softmax")]),
    "batchnorm_on_input": ((4, 4, 3), lambda L: [L.BatchNormalization(), L.Conv2D(2, 2)]),
    "rescaling": ((4, 4, 1), lambda L: [L.Rescaling(1 / 255), L.Conv2D(2, 2)]),
    "rescaling_offset": ((4, 4, 1), lambda L: [L.Rescaling(0.5, offset=-1.0), L.Conv2D(2, 2)]),
    "rescaling_per_channel": ((4, 4, 2), lambda L: [L.Rescaling(np.array([0.5, 2.0]), offset=np.array([0.1, -0.2]))]),
    "zero_padding_int": ((4, 4, 2), lambda L: [L.ZeroPadding2D(1), L.Conv2D(2, 3)]),
    "zero_padding_height_width": ((4, 4, 1), lambda L: [L.ZeroPadding2D((1, 2)), L.Conv2D(2, 3)]),
    "zero_padding_asymmetric": ((4, 5, 2), lambda L: [L.ZeroPadding2D(((0, 2), (1, 0))), L.MaxPooling2D(2)]),
    "reshape_flat_minus_one": ((4, 4, 2), lambda L: [L.Conv2D(3, 2), L.Reshape((-1,)), L.Dense(3)]),
    "reshape_image_minus_one": ((4, 4, 3), lambda L: [L.Reshape((6, -1, 2)), L.Conv2D(2, 3, padding="same")]),
    "reshape_vector_to_image": ((12,), lambda L: [L.Dense(18), L.Reshape((3, 3, 2)), L.Conv2D(1, 2)]),
    "reshape_rank_2": ((4, 4, 1), lambda L: [L.Reshape((2, 8)), L.Flatten(), L.Dense(2)]),
    "conv_same_strided_then_pools": ((7, 7, 2), lambda L: [L.Conv2D(3, 3, strides=2, padding="same"), L.AveragePooling2D(2, padding="same"),
                                                          L.Flatten(), L.Dense(2, activation="sigmoid")]),
    "conv_valid": ((7, 7, 1), lambda L: [L.Conv2D(2, (3, 2), padding="valid", activation="relu"), L.MaxPooling2D(2), L.Flatten()]),
}


@pytest.mark.keras
@pytest.mark.parametrize("name", LAYER_CASES)
def test_layer_matches_keras(keras, name):
    input_shape, make = LAYER_CASES[name]
    check_against_keras(keras, *build(keras, name, input_shape, make))


ELEMENTWISE = ["linear", "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "sigmoid", "hard_sigmoid", "hard_silu",
               "hard_swish", "tanh", "softplus", "softsign", "silu", "swish", "exponential"]


@pytest.mark.keras
@pytest.mark.parametrize("activation", ELEMENTWISE + ["softmax", "log_softmax"])
def test_activation_strings_of_conv_and_dense_match_keras(keras, activation):
    make = lambda L: [L.Conv2D(3, 2, activation=activation), L.Flatten(), L.Dense(4, activation=activation)]
    check_against_keras(keras, *build(keras, f"act_{activation}", (4, 4, 1), make))


@pytest.mark.keras
@pytest.mark.parametrize("activation", ELEMENTWISE + ["softmax", "log_softmax"])
def test_activation_layer_matches_keras(keras, activation):
    """Rescaling(4) spreads the inputs over about [-8, 8], so every branch (relu6's cap, hard_sigmoid's ends) is hit."""
    make = lambda L: [L.Rescaling(4.0), L.Activation(activation)]
    km, x = build(keras, f"layer_{activation}", (9,), make)
    x[0, :3] = [-3.0, 0.0, 3.0]  # hard_sigmoid's corners, relu's kink (Rescaling(4) makes them -12, 0, 12)
    check_against_keras(keras, km, x)


@pytest.mark.keras
def test_activation_functions_equal_keras_including_gelu_tanh(keras):
    x = np.linspace(-9, 9, 181).astype("float32")
    theirs = {"gelu_tanh": keras.activations.gelu(x, approximate=True)}
    for name in ops.ACTIVATIONS:
        if name != "gelu_tanh":
            theirs[name] = keras.activations.get(name)(x)
    for name, fn in ops.ACTIVATIONS.items():
        for dtype in (np.float64, np.float32):
            mine = fn(x.astype(dtype))
            assert mine.dtype == dtype, name
            np.testing.assert_allclose(mine, np.asarray(theirs[name]), rtol=1e-6, atol=1e-6, err_msg=name)
    assert keras.activations.get("gelu")(np.float32(-1.0)) != keras.activations.gelu(np.float32(-1.0), approximate=True)


# ---------------------------------------------------------------- random architectures

HIDDEN_ACTIVATIONS = [a for a in ELEMENTWISE if a != "exponential"]  # stacked exponentials leave float32's range of trust


@st.composite
def architectures(draw):
    """(input shape, [(class name, kwargs)]): conv stages with BN, activations, pooling, dropout; then a head."""
    acts = st.sampled_from(HIDDEN_ACTIVATIONS)
    h, w, c = draw(st.integers(4, 9)), draw(st.integers(4, 9)), draw(st.integers(1, 3))
    shape, layers = (h, w, c), []
    for _ in range(draw(st.integers(1, 2))):
        k, s, padding = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.sampled_from(["valid", "same"]))
        if padding == "valid" and k > min(h, w):
            padding = "same"
        layers.append(("Conv2D", dict(filters=draw(st.integers(1, 3)), kernel_size=k, strides=s, padding=padding, activation=draw(acts))))
        h, w = (ops.conv_output_length(n, k, s, padding) for n in (h, w))
        if draw(st.booleans()):
            layers.append(("BatchNormalization", dict(center=draw(st.booleans()), scale=draw(st.booleans()),
                                                      epsilon=draw(st.sampled_from([1e-3, 1e-5, 0.1])))))
        layers += draw(st.sampled_from([[], [("ReLU", dict(max_value=1.5, negative_slope=0.1, threshold=0.2))], [("ReLU", {})],
                                        [("LeakyReLU", {})], [("ELU", dict(alpha=0.7))], [("Activation", dict(activation="tanh"))]]))
        if min(h, w) >= 2 and draw(st.booleans()):
            pool_padding = draw(st.sampled_from(["valid", "same"]))
            layers.append((draw(st.sampled_from(["MaxPooling2D", "AveragePooling2D"])), dict(pool_size=2, padding=pool_padding)))
            h, w = (ops.conv_output_length(n, 2, 2, pool_padding) for n in (h, w))
        if draw(st.booleans()):
            layers.append(draw(st.sampled_from([("Dropout", dict(rate=0.3)), ("SpatialDropout2D", dict(rate=0.2))])))
    layers.append(draw(st.sampled_from([("Flatten", {}), ("GlobalAveragePooling2D", {}), ("GlobalMaxPooling2D", {})])))
    if draw(st.booleans()):
        layers.append(("Dense", dict(units=draw(st.integers(2, 6)), activation=draw(acts))))
        if draw(st.booleans()):
            layers.append(("BatchNormalization", {}))
        layers.append(("Dropout", dict(rate=0.5)))
    layers.append(("Dense", dict(units=draw(st.integers(1, 4)), activation=draw(st.sampled_from(ELEMENTWISE + ["softmax", "log_softmax"])))))
    return shape, layers


@pytest.mark.keras
@settings(max_examples=25, deadline=None)
@given(arch=architectures(), seed=st.integers(0, 10_000))
def test_random_architectures_match_keras(keras, arch, seed):
    """Each generated model: from its live layers, and from the .keras and .h5 files Keras saves of it."""
    input_shape, layers = arch
    print(layers)
    make = lambda L: [getattr(L, cls)(**kw) for cls, kw in layers]
    km, x = build(keras, "random", input_shape, make, seed)
    check_against_keras(keras, km, x)
    theirs = km.predict(x, verbose=0)
    with tempfile.TemporaryDirectory() as folder:
        for name in ("m.keras", "m.h5"):
            km.save(os.path.join(folder, name))
            mine = load_model(os.path.join(folder, name)).predict(x, dtype=np.float32)
            np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-6, err_msg=name)


# ---------------------------------------------------------------- configs: Keras 2 spellings, errors


def test_keras2_config_spellings():
    assert layer_from_config("LeakyReLU", {"name": "l", "alpha": 0.1, "trainable": True}).negative_slope == 0.1
    assert layer_from_config("LeakyReLU", {"name": "l"}).negative_slope == 0.3  # the layer's default, not leaky_relu's 0.2
    assert layer_from_config("BatchNormalization", {"name": "bn", "axis": [3]}).compute_output_shape((4, 4, 2)) == (4, 4, 2)
    dense = layer_from_config("Dense", {"name": "d", "units": 2, "activation": {"class_name": "function", "config": "swish"}})
    assert dense.activation == "silu"
    assert layer_from_config("Activation", {"name": "a", "activation": "hard_swish"}).activation == "hard_silu"
    numpy_scale = {"class_name": "__numpy__", "config": {"value": [1.0, 2.0], "dtype": "float64"}}
    assert layer_from_config("Rescaling", {"name": "r", "scale": numpy_scale, "offset": 0.0}).scale.tolist() == [1.0, 2.0]
    assert layer_from_config("ZeroPadding2D", {"name": "z", "padding": [[1, 2], [0, 3]]}).padding == ((1, 2), (0, 3))


def test_unsupported_layer_lists_every_supported_class():
    with pytest.raises(CnncalcError, match="Received 'LSTM'") as e:
        layer_from_config("LSTM", {"name": "lstm"})
    assert all(name in str(e.value) for name in LAYERS) and set(SUPPORTED) == set(LAYERS)
    for name in ("GlobalAveragePooling2D", "GlobalMaxPooling2D", "Dropout", "SpatialDropout2D", "Activation", "ReLU",
                 "LeakyReLU", "ELU", "BatchNormalization", "Rescaling", "ZeroPadding2D", "Reshape", "Conv2D", "Dense"):
        assert name in SUPPORTED


def test_unknown_activation_lists_the_supported():
    with pytest.raises(CnncalcError, match="Received activation='mish'") as e:
        layer_from_config("Dense", {"name": "d", "units": 2, "activation": "mish"})
    assert all(name in str(e.value) for name in ops.ACTIVATIONS)


@pytest.mark.parametrize("class_name, config, message", [
    ("BatchNormalization", {"axis": 1}, "Expected -1 or 3"),
    ("BatchNormalization", {"renorm": True}, "renorm=True"),
    ("BatchNormalization", {"epsilon": 0}, "Received epsilon=0"),
    ("ReLU", {"max_value": -1}, "Received max_value=-1"),
    ("LeakyReLU", {"negative_slope": -0.1}, "Received negative_slope=-0.1"),
    ("Dropout", {"rate": 1.5}, "Received rate=1.5"),
    ("ZeroPadding2D", {"padding": (1, 2, 3)}, "Received padding=\\(1, 2, 3\\)"),
    ("Reshape", {"target_shape": (-1, -1)}, "at most one of them -1"),
    ("Reshape", {"target_shape": (5, -1)}, "Expected a shape of 32 elements"),
    ("Rescaling", {"scale": [1.0, 2.0, 3.0]}, "Received scale \\(3,\\)"),
    ("GlobalAveragePooling2D", {"data_format": "channels_first"}, "channels_first"),
])
def test_bad_configs_are_refused_keras_style(class_name, config, message):
    with pytest.raises(CnncalcError, match=message):
        layer = layer_from_config(class_name, {"name": "x", **config})
        layer.compute_output_shape((4, 4, 2))


# ---------------------------------------------------------------- formula text, pinned

X = Placement("Sample 1", 3, 1, (4, 4, 2), "grid")  # channel 0 in B4:E7, channel 1 in G4:J7


def bn_weights(names):
    return {n: Placement("Weights", 1 + 2 * i, 1, (2,), "row") for i, n in enumerate(names)}


def test_batchnorm_formula():
    bn = layer_from_config("BatchNormalization", {"name": "bn"})
    w = bn_weights(["gamma", "beta", "moving_mean", "moving_variance"])  # rows 2, 4, 6, 8 of Weights
    assert bn.formula((2, 1, 1), X, w, "Sample 1") == "(H6-Weights!$C$6)/SQRT(Weights!$C$8+0.001)*Weights!$C$2+Weights!$C$4"
    bare = layer_from_config("BatchNormalization", {"name": "bn", "center": False, "scale": False, "epsilon": 0.01})
    w = bn_weights(["moving_mean", "moving_variance"])
    assert bare.formula((0, 0, 0), X, w, "Sample 1") == "(B4-Weights!$B$2)/SQRT(Weights!$B$4+0.01)"
    assert list(bn.weight_shapes((4, 4, 2))) == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert set(bn.weight_layouts().values()) == {"row"} and bn.non_trainable_weights == ("moving_mean", "moving_variance")


def test_zero_padding_formula_is_none_in_the_padding():
    zp = layer_from_config("ZeroPadding2D", {"name": "z", "padding": ((1, 0), (2, 1))})
    assert zp.compute_output_shape(X.shape) == (5, 7, 2)
    assert [zp.formula(idx, X, {}, "Sample 1") for idx in [(0, 3, 0), (1, 1, 0), (1, 2, 0), (4, 5, 1), (4, 6, 1)]] == \
        [None, None, "B4", "J7", None]


@pytest.mark.parametrize("class_name, keepdims, idx, expected", [
    ("GlobalAveragePooling2D", False, (1,), "AVERAGE(G4:J7)"),
    ("GlobalAveragePooling2D", True, (0, 0, 0), "AVERAGE(B4:E7)"),
    ("GlobalMaxPooling2D", False, (0,), "MAX(B4:E7)"),
    ("GlobalMaxPooling2D", True, (0, 0, 1), "MAX(G4:J7)"),
])
def test_global_pooling_formula_spans_the_channel(class_name, keepdims, idx, expected):
    layer = layer_from_config(class_name, {"name": "g", "keepdims": keepdims})
    assert layer.compute_output_shape(X.shape) == ((1, 1, 2) if keepdims else (2,))
    assert layer.formula(idx, X, {}, "Sample 1") == expected


@pytest.mark.parametrize("class_name, config, expected", [
    ("ReLU", {}, "MAX(0,B4)"),
    ("ReLU", {"max_value": 6.0}, "MIN(MAX(0,B4),6)"),
    ("ReLU", {"negative_slope": 0.1}, "IF(B4>0,B4,0.1*B4)"),
    ("ReLU", {"threshold": 0.5}, "IF(B4>0.5,B4,0)"),
    ("ReLU", {"max_value": 2.0, "negative_slope": 0.1, "threshold": 0.5}, "IF(B4>0.5,MIN(B4,2),0.1*(B4-0.5))"),
    ("LeakyReLU", {}, "IF(B4>0,B4,0.3*B4)"),
    ("ELU", {"alpha": 0.5}, "IF(B4>0,B4,0.5*(EXP(B4)-1))"),
    ("Activation", {"activation": "tanh"}, "TANH(B4)"),
    ("Dropout", {"rate": 0.5}, "B4"),
    ("SpatialDropout2D", {"rate": 0.5}, "B4"),
    ("Rescaling", {"scale": 0.5, "offset": -1.0}, "B4*0.5-1"),
    ("Rescaling", {"scale": 0.125, "offset": 0.0}, "B4*0.125"),
])
def test_elementwise_layer_formulas(class_name, config, expected):
    layer = layer_from_config(class_name, {"name": "l", **config})
    assert layer.formula((0, 0, 0), X, {}, "Sample 1") == expected


def test_rescaling_per_channel_formula_picks_the_channels_numbers():
    layer = layer_from_config("Rescaling", {"name": "r", "scale": [0.5, 2.0], "offset": [0.25, 0.0]})
    assert [layer.formula((0, 0, c), X, {}, "Sample 1") for c in (0, 1)] == ["B4*0.5+0.25", "G4*2"]


def test_reshape_formula_reads_the_source_in_row_major_order():
    flat = layer_from_config("Reshape", {"name": "r", "target_shape": [-1]})
    assert flat.compute_output_shape(X.shape) == (32,)
    assert flat.formula((3,), X, {}, "Sample 1") == "H4"  # element 3 of (4, 4, 2) is [0, 1, 1]: row 0, column 1 of channel 1
    image = layer_from_config("Reshape", {"name": "r", "target_shape": [2, -1, 4]})
    assert image.compute_output_shape(X.shape) == (2, 4, 4) and image.source((1, 0, 2), X.shape) == (2, 1, 0)  # flat 18
    two_d = layer_from_config("Reshape", {"name": "r", "target_shape": [4, 8]})  # a 2-D output: one map on the sheet
    assert two_d.formula((0, 1), X, {}, "Sample 1") == X.ref((0, 0, 1), "Sample 1")  # flat 1 is [0, 0, 1]


ACTIVATION_FORMULAS = {
    "linear": "B4",
    "relu": "MAX(0,B4)",
    "relu6": "MIN(MAX(0,B4),6)",
    "leaky_relu": "IF(B4>0,B4,0.2*B4)",
    "elu": "IF(B4>0,B4,EXP(B4)-1)",
    "selu": "1.0507009873554805*IF(B4>0,B4,1.6732632423543772*(EXP(B4)-1))",
    "gelu": "0.5*B4*(1+ERF(B4/SQRT(2)))",
    "gelu_tanh": "0.5*B4*(1+TANH(0.7978845608028654*(B4+0.044715*B4^3)))",
    "sigmoid": "1/(1+EXP(-B4))",
    "hard_sigmoid": "MIN(MAX(B4+3,0),6)/6",
    "hard_silu": "B4*MIN(MAX(B4+3,0),6)/6",
    "tanh": "TANH(B4)",
    "softplus": "MAX(B4,0)+LN(1+EXP(-ABS(B4)))",
    "softsign": "B4/(ABS(B4)+1)",
    "silu": "B4/(1+EXP(-B4))",
    "exponential": "EXP(B4)",
}
SPREADSHEET_FUNCTIONS = {"MAX", "MIN", "ABS", "EXP", "LN", "SQRT", "TANH", "ERF", "IF", "SUM", "SUMPRODUCT", "AVERAGE", "MATCH"}


def test_every_elementwise_activation_has_a_pinned_formula_of_common_functions():
    assert set(ACTIVATION_FORMULAS) == set(ops.ACTIVATIONS) - set(ops.VECTOR_ACTIVATIONS)
    for name, expected in ACTIVATION_FORMULAS.items():
        assert formulas.activation(name, "B4") == expected
        assert set(re.findall(r"([A-Z]+)\(", expected)) <= SPREADSHEET_FUNCTIONS, name


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_vector_activations_have_no_elementwise_formula(name):
    with pytest.raises(CnncalcError, match="computes it in steps"):
        formulas.activation(name, "B4")
    with pytest.raises(CnncalcError, match="computes it in steps"):
        layer_from_config("Activation", {"name": "a", "activation": name}).formula((0, 0, 0), X, {}, "Sample 1")


def test_log_softmax_steps_and_formula():
    z = np.array([[1000.0, 1001.0, 999.0]])
    m, e, s, out = ops.log_softmax_steps(z)
    assert m[0, 0] == 1001 and e[0, 1] == 1 and np.isfinite(out).all()
    np.testing.assert_allclose(np.exp(out), ops.softmax(z), rtol=1e-15)
    assert formulas.log_softmax("B4", "$D$10", "$D$11") == "B4-$D$10-LN($D$11)"


def test_summary_counts_batchnorm_moving_statistics_as_non_trainable():
    spec = {"input_shape": [3], "layers": [
        {"class_name": "BatchNormalization", "config": {"name": "bn"}, "weights": [np.ones(3), np.zeros(3), np.zeros(3), np.ones(3)]}]}
    assert param_lines(Sequential.from_spec(spec).summary()) == [
        "Total params: 12 (48.00 B)", "Trainable params: 6 (24.00 B)", "Non-trainable params: 6 (24.00 B)"]
