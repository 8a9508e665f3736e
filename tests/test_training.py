"""cnncalc's fit against real Keras's `model.fit(x, y, epochs, batch_size, shuffle=False)`: after every step, every
weight (BatchNormalization's moving statistics too) equals Keras's in float64 within 1e-9, for every layer,
activation, loss and optimizer; against Keras's default float32 after one step within 1e-5."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cnncalc.engine import ops, optimizers
from cnncalc.engine.model import Sequential
from cnncalc.engine.training import fit
from cnncalc.errors import CnncalcError

F64, F32 = 1e-9, 1e-5  # the agreement asked for: relative, against each weight array's largest magnitude
MEASURED = {}  # the worst difference seen per test, printed at the end of a run with -s


# ---------------------------------------------------------------- the Keras side

def keras_model(keras, input_shape, layers, seed):
    """A Keras Sequential from [(class name, kwargs)], with random weights (BatchNormalization's statistics too)."""
    keras.backend.clear_session()
    made = []
    for cls, kw in layers:
        if cls in ("Conv2D", "Dense"):  # the weights are set below: skip the random initializer (slow to compile)
            kw = {**kw, "kernel_initializer": "zeros"}
        made.append(getattr(keras.layers, cls)(**kw))
    km = keras.Sequential([keras.Input(input_shape), *made])
    rng = np.random.default_rng(seed)
    for layer in km.layers:
        arrays = []
        for v in layer.weights:
            shape = tuple(v.shape)
            if v.name in ("moving_variance", "gamma"):
                arrays.append(rng.uniform(0.5, 1.5, shape))
            elif v.name == "kernel":
                arrays.append(rng.normal(0, 1 / np.sqrt(np.prod(shape[:-1])), shape))
            else:
                arrays.append(rng.normal(0, 0.3, shape))
        layer.set_weights(arrays)
    return km


def engine_model(km):
    """Our model, from the Keras layers' configs and weights (as the file loader builds it)."""
    spec = {"name": km.name, "input_shape": list(km.input_shape[1:]),
            "layers": [{"class_name": type(l).__name__, "config": l.get_config(), "weights": l.get_weights()} for l in km.layers]}
    return Sequential.from_spec(spec)


def keras_fit(keras, km, x, y, loss, optimizer, epochs, batch_size):
    """Keras's fit; returns (every layer's weights after each step, each Dropout layer's seed before each step)."""
    after, seeds = [], []

    class Record(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seeds.append({l.name: np.asarray(l.seed_generator.state.value) for l in self.model.layers if hasattr(l, "seed_generator")})

        def on_train_batch_end(self, batch, logs=None):
            after.append({l.name: [np.asarray(w) for w in l.get_weights()] for l in self.model.layers})

    km.compile(loss=keras.losses.get(loss), optimizer=keras.optimizers.get(optimizer))
    km.fit(x, y, epochs=epochs, batch_size=batch_size, shuffle=False, verbose=0, callbacks=[Record()])
    return after, seeds


def keras_masks(seeds):
    """The dropout masks Keras drew: jax.random.bernoulli on the layer's seed state, as keras/src/backend/jax/random.py."""
    import jax
    import jax.numpy as jnp

    return lambda t, layer, shape: np.asarray(jax.random.bernoulli(jnp.asarray(seeds[t][layer.name]), 1.0 - layer.rate, shape))


def worst_difference(mine_steps, theirs_steps, model):
    """max over steps, layers and weights of max |mine - theirs| / max |theirs|, and where it is."""
    worst, where = 0.0, None
    assert len(mine_steps) == len(theirs_steps)
    for t, (step, theirs) in enumerate(zip(mine_steps, theirs_steps)):
        for layer in model.layers:
            assert list(step.weights_after[layer.name]) == list(layer.weights)
            for (wname, mine), their in zip(step.weights_after[layer.name].items(), theirs[layer.name]):
                d = float(np.max(np.abs(mine - their))) / max(float(np.max(np.abs(their))), 1e-300)
                if d > worst:
                    worst, where = d, (t, layer.name, wname, mine.ravel()[:6].tolist(), their.ravel()[:6].tolist())
    return worst, where


def compare_fit(keras, input_shape, layers, loss, optimizer, epochs=2, batch_size=2, samples=5, seed=0, tolerance=F64,
                labels="auto"):
    km = keras_model(keras, input_shape, layers, seed)
    model = engine_model(km)
    rng = np.random.default_rng(seed + 1)
    x = rng.normal(0, 1, (samples, *input_shape))
    out = model.output_shape
    loss_name = loss if isinstance(loss, str) else loss["class_name"]
    if "parse" in loss_name.lower():
        y = rng.integers(0, out[-1], (samples, *out[:-1]))
    elif "ategorical" in loss_name:
        y = np.eye(out[-1])[rng.integers(0, out[-1], (samples, *out[:-1]))]
    elif "inary" in loss_name or loss_name == "bce":
        y = rng.integers(0, 2, (samples, *out)).astype(float)
    else:
        y = rng.normal(0, 1, (samples, *out))
    theirs, seeds = keras_fit(keras, km, x.astype(keras.config.floatx()), y, loss, optimizer, epochs, batch_size)
    result = fit(model, x, y, loss, optimizer, epochs, batch_size, dropout=keras_masks(seeds))
    worst, where = worst_difference(result.steps, theirs, model)
    print(f"worst relative difference {worst:.3g} at {where}")
    assert worst <= tolerance, where
    return worst, result


# ---------------------------------------------------------------- a fixed table: every layer, activation, loss, optimizer

CASES = {
    "cnn_adam_cce": ((6, 6, 1), [("Conv2D", dict(filters=2, kernel_size=3, activation="relu")), ("MaxPooling2D", dict(pool_size=2)),
                                 ("Flatten", {}), ("Dense", dict(units=5, activation="relu")), ("Dense", dict(units=3, activation="softmax"))],
                     "categorical_crossentropy", "adam"),
    "strided_same_batchnorm_avgpool_sgd_momentum": (
        (7, 7, 2), [("Conv2D", dict(filters=3, kernel_size=3, strides=2, padding="same", activation="tanh")),
                    ("BatchNormalization", dict(momentum=0.9)), ("AveragePooling2D", dict(pool_size=2, padding="same")),
                    ("Flatten", {}), ("Dense", dict(units=3, activation="softmax"))],
        "sparse_categorical_crossentropy", {"class_name": "SGD", "config": dict(learning_rate=0.1, momentum=0.9)}),
    "dilated_no_bias_global_max_rmsprop_centered": (
        (6, 6, 2), [("ZeroPadding2D", dict(padding=1)), ("Conv2D", dict(filters=3, kernel_size=2, dilation_rate=2, use_bias=False, activation="elu")),
                    ("GlobalMaxPooling2D", {}), ("Dense", dict(units=2, activation="sigmoid"))],
        "binary_crossentropy", {"class_name": "RMSprop", "config": dict(learning_rate=0.01, momentum=0.5, centered=True)}),
    "rescaling_reshape_global_average_adagrad": (
        (4, 4, 2), [("Rescaling", dict(scale=0.5, offset=-0.2)), ("Conv2D", dict(filters=2, kernel_size=2, activation="selu")),
                    ("Reshape", dict(target_shape=(3, -1, 2))), ("GlobalAveragePooling2D", dict(keepdims=True)), ("Flatten", {}),
                    ("Dense", dict(units=1))],
        "mse", {"class_name": "Adagrad", "config": dict(learning_rate=0.1)}),
    "dropout_masks_nesterov_mae": (
        (5, 5, 1), [("Conv2D", dict(filters=3, kernel_size=2, activation="relu")), ("SpatialDropout2D", dict(rate=0.4)),
                    ("Flatten", {}), ("Dropout", dict(rate=0.3)), ("Dense", dict(units=2))],
        "mae", {"class_name": "SGD", "config": dict(learning_rate=0.05, momentum=0.8, nesterov=True)}),
    "activation_layers_amsgrad_clipnorm_logits": (
        (6,), [("Dense", dict(units=6)), ("ReLU", dict(max_value=1.5, negative_slope=0.2, threshold=0.3)), ("Dense", dict(units=5)),
               ("LeakyReLU", {}), ("Dense", dict(units=5)), ("ELU", dict(alpha=0.7)), ("ReLU", dict(max_value=6.0)),
               ("Dense", dict(units=3))],
        {"class_name": "CategoricalCrossentropy", "config": dict(from_logits=True, label_smoothing=0.1)},
        {"class_name": "Adam", "config": dict(learning_rate=0.01, amsgrad=True, clipnorm=0.5)}),
    "activations_one_global_clipnorm": (
        (5,), [("Dense", dict(units=4, activation=a)) for a in ("relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "sigmoid",
                                                               "hard_sigmoid")] + [("Dense", dict(units=3, activation="log_softmax"))],
        "mse", {"class_name": "Adam", "config": dict(global_clipnorm=0.1)}),
    "activations_two_clipvalue_weight_decay": (
        (5,), [("Dense", dict(units=4, activation=a)) for a in ("hard_silu", "tanh", "softplus", "softsign", "swish", "linear")]
        + [("Activation", dict(activation="exponential")), ("Dense", dict(units=3, activation="softmax"))],
        {"class_name": "CategoricalCrossentropy", "config": dict(label_smoothing=0.2)},
        {"class_name": "SGD", "config": dict(learning_rate=0.1, clipvalue=0.05, weight_decay=0.01)}),
    "batchnorm_vector_bce_logits_rmsprop": (
        (6,), [("Dense", dict(units=4)), ("BatchNormalization", dict(momentum=0.8, center=False)), ("Activation", dict(activation="relu")),
               ("Dense", dict(units=2))],
        {"class_name": "BinaryCrossentropy", "config": dict(from_logits=True, label_smoothing=0.1)},
        {"class_name": "RMSprop", "config": dict(weight_decay=0.05)}),
    "max_pool_same_batchnorm_no_scale_sparse_logits": (
        (5, 6, 2), [("Conv2D", dict(filters=2, kernel_size=3, padding="same")), ("BatchNormalization", dict(scale=False)),
                    ("MaxPooling2D", dict(pool_size=3, strides=2, padding="same")), ("Flatten", {}), ("Dense", dict(units=3))],
        {"class_name": "SparseCategoricalCrossentropy", "config": dict(from_logits=True)}, "sgd"),
    "frozen_conv_and_batchnorm": (  # trainable=False: no update, and BatchNormalization normalizes as at inference
        (5, 5, 1), [("Conv2D", dict(filters=2, kernel_size=2, trainable=False)), ("BatchNormalization", dict(trainable=False)),
                    ("Conv2D", dict(filters=2, kernel_size=2, activation="relu")), ("BatchNormalization", {}),
                    ("GlobalAveragePooling2D", {}), ("Dense", dict(units=2, activation="softmax"))],
        "categorical_crossentropy", {"class_name": "Adam", "config": dict(learning_rate=0.05)}),
}


@pytest.mark.keras
@pytest.mark.parametrize("name", CASES)
def test_fit_equals_keras_after_every_step(keras64, name):
    input_shape, layers, loss, optimizer = CASES[name]
    MEASURED[name], _ = compare_fit(keras64, input_shape, layers, loss, optimizer)


@pytest.mark.keras
def test_the_fixed_table_covers_every_layer_activation_loss_and_optimizer():
    from cnncalc.engine import losses
    from cnncalc.engine.layers import LAYERS

    used = {cls for _, layers, _, _ in CASES.values() for cls, _ in layers}
    assert set(LAYERS) <= used, set(LAYERS) - used
    acts = {kw.get("activation") for _, layers, _, _ in CASES.values() for _, kw in layers}
    assert set(ops.ACTIVATIONS) - {"gelu_tanh"} <= {ops.ALIASES.get(a, a) for a in acts}  # gelu_tanh is no Keras name
    assert {losses.get(loss).name for _, _, loss, _ in CASES.values()} == set(losses.FUNCTIONS)
    assert {optimizers.get(o).name for _, _, _, o in CASES.values()} == set(optimizers.OPTIMIZERS)


@pytest.mark.keras
def test_the_chapter_fit_equals_keras_after_100_epochs(keras64, chapter, tmp_path):
    """The chapter's toy model compiled as the chapter compiles it (adam, categorical_crossentropy), its two samples,
    100 epochs of batch 2: the settings come from the .keras file Keras saves, read by cnncalc."""
    from cnncalc.kerasfiles.compile import compile_settings

    keras = keras64
    model = chapter.model
    km = keras.Sequential([keras.Input(model.input_shape)] + [getattr(keras.layers, l.class_name).from_config(l.get_config())
                                                               for l in model.layers])
    for kl, layer in zip(km.layers, model.layers):
        kl.set_weights(layer.get_weights())
    km.compile(optimizer="adam", loss="categorical_crossentropy")
    km.save(tmp_path / "chapter.keras")
    compiled = compile_settings(tmp_path / "chapter.keras")
    assert compiled.loss.name == "categorical_crossentropy" and compiled.optimizer.name == "Adam"
    y = np.eye(2)[chapter.labels]
    theirs, _ = keras_fit(keras, km, chapter.x, y, "categorical_crossentropy", "adam", 100, 2)
    result = fit(model, chapter.x, chapter.labels, compiled.loss, compiled.optimizer, epochs=100, batch_size=2)
    worst, where = worst_difference(result.steps, theirs, model)
    MEASURED["chapter, 100 epochs"] = worst
    print(f"worst relative difference over 100 steps {worst:.3g} at {where}; loss {result.losses[0]:.6f} -> {result.losses[-1]:.6f}")
    assert len(result.steps) == 100 and worst <= F64, where
    assert result.steps[-1].state_after.iterations == 100 and result.losses[-1] < result.losses[0]


FLOAT32_CASES = ["cnn_adam_cce", "strided_same_batchnorm_avgpool_sgd_momentum", "dilated_no_bias_global_max_rmsprop_centered",
                 "rescaling_reshape_global_average_adagrad", "activation_layers_amsgrad_clipnorm_logits"]


@pytest.mark.keras
@pytest.mark.parametrize("name", FLOAT32_CASES)
def test_one_step_equals_keras_in_float32(keras, name):
    """Keras as it runs by default (float32): one step, batch of 4, within 1e-5 of the float64 engine."""
    input_shape, layers, loss, optimizer = CASES[name]
    MEASURED[f"{name}, float32"], _ = compare_fit(keras, input_shape, layers, loss, optimizer, epochs=1, batch_size=4, samples=4,
                                                  tolerance=F32)


# ---------------------------------------------------------------- random small architectures

@st.composite
def training_runs(draw):
    """(input shape, layers, loss, optimizer, epochs, batch size, samples) for a small random CNN."""
    acts = st.sampled_from([a for a in ops.ACTIVATIONS if a not in ("gelu_tanh", "exponential", "softmax", "log_softmax")])
    input_shape = (draw(st.integers(4, 7)), draw(st.integers(4, 7)), draw(st.integers(1, 2)))
    k, s, padding = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.sampled_from(["valid", "same"]))
    layers = [("Conv2D", dict(filters=draw(st.integers(1, 3)), kernel_size=k, strides=s, padding=padding, activation=draw(acts)))]
    h, w = (ops.conv_output_length(n, k, s, padding) for n in input_shape[:2])
    if draw(st.booleans()):
        layers.append(("BatchNormalization", dict(center=draw(st.booleans()), scale=draw(st.booleans()))))
    layers += draw(st.sampled_from([[], [("ReLU", dict(max_value=1.0, negative_slope=0.1))], [("LeakyReLU", {})], [("ELU", {})]]))
    if min(h, w) >= 2 and draw(st.booleans()):
        pool = draw(st.sampled_from(["MaxPooling2D", "AveragePooling2D"]))
        layers.append((pool, dict(pool_size=2, padding=draw(st.sampled_from(["valid", "same"])))))
    if draw(st.booleans()):
        layers.append(draw(st.sampled_from([("Dropout", dict(rate=0.3)), ("SpatialDropout2D", dict(rate=0.3))])))
    layers.append(draw(st.sampled_from([("Flatten", {}), ("GlobalAveragePooling2D", {}), ("GlobalMaxPooling2D", {})])))
    if draw(st.booleans()):
        layers.append(("Dense", dict(units=draw(st.integers(2, 5)), activation=draw(acts))))
    loss = draw(st.sampled_from(["categorical_crossentropy", "sparse_categorical_crossentropy", "binary_crossentropy", "mse", "mae"]))
    head = {"categorical_crossentropy": "softmax", "sparse_categorical_crossentropy": "softmax", "binary_crossentropy": "sigmoid"}
    layers.append(("Dense", dict(units=draw(st.integers(2, 3)), activation=head.get(loss) or draw(acts))))
    optimizer = draw(st.sampled_from([
        {"class_name": "SGD", "config": dict(learning_rate=0.1, momentum=0.9, nesterov=True)},
        {"class_name": "SGD", "config": dict(learning_rate=0.1)},
        {"class_name": "Adam", "config": dict(learning_rate=0.01)},
        {"class_name": "RMSprop", "config": dict(learning_rate=0.01, centered=True)},
        {"class_name": "Adagrad", "config": dict(learning_rate=0.1)}]))
    samples = draw(st.integers(2, 5))
    return input_shape, layers, loss, optimizer, draw(st.integers(1, 2)), draw(st.integers(1, samples)), samples


def run_random(keras, run, seed):
    input_shape, layers, loss, optimizer, epochs, batch_size, samples = run
    print(input_shape, layers, loss, optimizer, f"epochs={epochs} batch_size={batch_size} samples={samples}")
    worst, _ = compare_fit(keras, input_shape, layers, loss, optimizer, epochs, batch_size, samples, seed)
    MEASURED["random architectures"] = max(MEASURED.get("random architectures", 0.0), worst)


@pytest.mark.keras
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])  # keras64 holds for all
@given(run=training_runs(), seed=st.integers(0, 10_000))
def test_random_small_networks_train_as_keras(keras64, run, seed):
    run_random(keras64, run, seed)


@pytest.mark.keras
@pytest.mark.slow
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run=training_runs(), seed=st.integers(0, 10_000))
def test_many_random_small_networks_train_as_keras(keras64, run, seed):
    run_random(keras64, run, seed)


# ---------------------------------------------------------------- optimizers: several steps, every option

OPTIMIZER_CASES = [
    ("SGD", {}), ("SGD", dict(momentum=0.9)), ("SGD", dict(momentum=0.5, nesterov=True, weight_decay=0.1)),
    ("Adam", {}), ("Adam", dict(amsgrad=True, beta_1=0.8, beta_2=0.99, epsilon=1e-4)), ("Adam", dict(clipnorm=0.1)),
    ("RMSprop", {}), ("RMSprop", dict(momentum=0.9, rho=0.8)), ("RMSprop", dict(centered=True, global_clipnorm=0.3)),
    ("Adagrad", {}), ("Adagrad", dict(initial_accumulator_value=0.5, clipvalue=0.2)),
]


@pytest.mark.keras
@pytest.mark.parametrize("class_name, config", OPTIMIZER_CASES)
def test_optimizer_steps_equal_keras(keras64, class_name, config):
    """Five steps of Keras's optimizer.apply on two weights, gradients given: weights and every slot agree."""
    keras = keras64
    rng = np.random.default_rng(3)
    config = {"learning_rate": 0.05, **config}
    weights = {("d", "kernel"): rng.normal(0, 1, (3, 2)), ("d", "bias"): rng.normal(0, 1, (2,))}
    theirs_opt = getattr(keras.optimizers, class_name)(**config)
    variables = [keras.Variable(w) for w in weights.values()]
    mine = optimizers.get({"class_name": class_name, "config": config})
    state = mine.init_state(weights)
    for _ in range(5):
        grads = {k: rng.normal(0, 1, w.shape) for k, w in weights.items()}
        theirs_opt.apply(list(grads.values()), variables)
        weights, state, _ = mine.apply(state, weights, grads)
        for w, v in zip(weights.values(), variables):
            np.testing.assert_allclose(w, np.asarray(v), rtol=1e-12, atol=1e-14)
    assert state.iterations == int(theirs_opt.iterations) == 5
    for name, attribute in KERAS_SLOTS[class_name].items():  # Keras keeps each slot as a list, one per variable
        slots = [state.slots[key][name] for key in weights if name in state.slots[key]]
        theirs = getattr(theirs_opt, attribute, [])
        assert len(slots) == len(theirs), name
        for mine_slot, their_slot in zip(slots, theirs):
            np.testing.assert_allclose(mine_slot, np.asarray(their_slot), rtol=1e-12, atol=1e-14, err_msg=name)
    assert sum(len(s) for s in state.slots.values()) == sum(len(getattr(theirs_opt, a, [])) for a in KERAS_SLOTS[class_name].values())


KERAS_SLOTS = {"SGD": {"momentum": "momentums"}, "Adam": {"momentum": "_momentums", "velocity": "_velocities", "velocity_hat": "_velocity_hats"},
               "RMSprop": {"velocity": "_velocities", "momentum": "_momentums", "average_gradient": "_average_gradients"},
               "Adagrad": {"accumulator": "_accumulators"}}


@pytest.mark.parametrize("identifier, message", [
    ({"class_name": "Adam", "config": {"learning_rate": {"class_name": "ExponentialDecay", "config": {}}}}, "learning-rate schedule"),
    ({"class_name": "Adam", "config": {"use_ema": True}}, "use_ema=True"),
    ({"class_name": "SGD", "config": {"gradient_accumulation_steps": 2}}, "gradient_accumulation_steps=2"),
    ({"class_name": "SGD", "config": {"decay": 0.01}}, "decay=0.01"),
    ({"class_name": "Nadam", "config": {}}, "Expected one of SGD, Adam, RMSprop, Adagrad"),
    ({"class_name": "SGD", "config": {"momentum": 1.5}}, "Received momentum=1.5"),
    ({"class_name": "Adam", "config": {"clipnorm": 1.0, "clipvalue": 1.0}}, "at most one of clipnorm"),
    ({"class_name": "Adam", "config": {"rho": 0.9}}, "does not know: rho"),
])
def test_optimizers_cnncalc_cannot_follow_are_refused(identifier, message):
    with pytest.raises(CnncalcError, match=message):
        optimizers.get(identifier)


def test_optimizer_names_and_keras2_configs():
    assert repr(optimizers.get("adam")) == "Adam(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-07, amsgrad=False)"
    legacy = optimizers.get({"class_name": "Custom>SGD", "config": {"name": "SGD", "lr": 0.1, "decay": 0.0, "momentum": 0.9,
                                                                      "nesterov": False, "is_legacy_optimizer": False}})
    assert (legacy.name, legacy.learning_rate, legacy.momentum) == ("SGD", 0.1, 0.9)
    assert optimizers.get("rmsprop", learning_rate=0.5).learning_rate == 0.5


# ---------------------------------------------------------------- compile settings from model files

@pytest.mark.keras
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_compile_settings_from_files_keras_saved(keras, tmp_path, suffix):
    from cnncalc.kerasfiles.compile import compile_settings

    km = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    for optimizer, loss, expected in [
        ("adam", "categorical_crossentropy", ("Adam", "categorical_crossentropy")),
        (keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True, clipnorm=1.0),
         keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1), ("SGD", "categorical_crossentropy")),
        ("rmsprop", keras.losses.mean_squared_error, ("RMSprop", "mean_squared_error")),
        (keras.optimizers.Adagrad(0.5), "mae", ("Adagrad", "mean_absolute_error")),
        ("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), ("SGD", "sparse_categorical_crossentropy")),
    ]:
        km.compile(optimizer=optimizer, loss=loss)
        path = tmp_path / f"m{suffix}"
        km.save(path)
        compiled = compile_settings(path)
        assert (compiled.optimizer.name, compiled.loss.name) == expected, compiled
        config = km.optimizer.get_config()
        for key, value in compiled.optimizer.get_config().items():
            assert value == (None if config.get(key) is None else pytest.approx(config[key], rel=1e-7)), key
        keras_loss = km.loss if not isinstance(km.loss, str) else keras.losses.get(km.loss)
        assert compiled.loss.from_logits == getattr(keras_loss, "from_logits", False)
    assert compiled.loss.from_logits and "m" + suffix in compiled.source


@pytest.mark.keras
def test_uncompiled_and_weights_only_files_have_no_settings(keras, tmp_path):
    from cnncalc.kerasfiles.compile import compile_settings

    km = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    km.save(tmp_path / "m.keras")
    km.save_weights(tmp_path / "m.weights.h5")
    for name in ("m.keras", "m.weights.h5"):
        compiled = compile_settings(tmp_path / name)
        assert compiled.loss is None and compiled.optimizer is None


def test_compile_settings_errors_name_the_file(tmp_path):
    import json
    import zipfile

    from cnncalc.kerasfiles.compile import compile_settings

    path = tmp_path / "m.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps({"compile_config": {"loss": "hinge", "optimizer": "adam"}}))
    with pytest.raises(CnncalcError, match=r"In compile_config in config.json of '.*m.keras': Unknown loss.*Received loss='hinge'"):
        compile_settings(path)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps({"compile_config": {"loss": ["mse", "mae"], "optimizer": "adam"}}))
    with pytest.raises(CnncalcError, match="one loss per output"):
        compile_settings(path)
    (tmp_path / "x.txt").write_text("not a model")
    with pytest.raises(CnncalcError, match="Expected a .keras zip archive or an .h5 file"):
        compile_settings(tmp_path / "x.txt")


# ---------------------------------------------------------------- the records, and what fit refuses

def small_model():
    rng = np.random.default_rng(0)
    spec = {"input_shape": [4, 4, 1], "layers": [
        {"class_name": "Conv2D", "config": {"name": "conv", "filters": 2, "kernel_size": 3, "activation": "relu"},
         "weights": [rng.normal(0, 0.5, (3, 3, 1, 2)), np.zeros(2)]},
        {"class_name": "Flatten", "config": {"name": "flat"}},
        {"class_name": "Dropout", "config": {"name": "drop", "rate": 0.5}},
        {"class_name": "Dense", "config": {"name": "out", "units": 2, "activation": "softmax"}},
    ]}
    spec["layers"][3]["weights"] = [rng.normal(0, 0.5, (8, 2)), np.zeros(2)]
    return Sequential.from_spec(spec)


def test_a_step_record_holds_every_intermediate():
    model = small_model()
    x = np.random.default_rng(1).normal(0, 1, (3, 4, 4, 1))
    result = fit(model, x, [0, 1, 1], "categorical_crossentropy", "sgd", epochs=2, batch_size=2, dropout="identity")
    assert [(s.epoch, s.batch, s.samples.tolist(), s.iteration) for s in result.steps] == [
        (0, 0, [0, 1], 0), (0, 1, [2], 1), (1, 0, [0, 1], 2), (1, 1, [2], 3)]
    step = result.steps[0]
    conv, flat, drop, dense = step.layers
    assert conv.x.shape == (2, 4, 4, 1) and conv.pre.shape == conv.out.shape == conv.d_out.shape == conv.d_pre.shape == (2, 2, 2, 2)
    np.testing.assert_array_equal(conv.d_pre, conv.d_out * (conv.pre > 0))  # through relu
    assert set(conv.grads) == {"kernel", "bias"} and flat.grads == {} and drop.saved == {"mask": None}
    np.testing.assert_allclose(dense.d_out, step.loss.grad)
    np.testing.assert_allclose(step.weights_after["out"]["bias"], step.weights_before["out"]["bias"] - 0.01 * dense.grads["bias"])
    assert step.grads[("out", "bias")] is dense.grads["bias"]
    np.testing.assert_allclose(step.loss.value, np.mean(-np.log(step.y_pred[[0, 1], [0, 1]])))
    assert all(np.array_equal(result.steps[1].weights_before[l][w], result.steps[0].weights_after[l][w])
               for l in ("conv", "out") for w in ("kernel", "bias"))  # each step starts from the last one's weights
    assert any("drops nothing" in note for note in result.notes)
    assert model.layers[0].weights["bias"].tolist() == [0.0, 0.0]  # the model given to fit is left as it was
    np.testing.assert_array_equal(result.model.layers[0].weights["kernel"], result.steps[-1].weights_after["conv"]["kernel"])


def test_dropout_is_never_silent():
    model, x = small_model(), np.zeros((2, 4, 4, 1))
    with pytest.raises(CnncalcError, match=r"Dropout \('drop' \(rate 0.5\)\).*Received dropout=None"):
        fit(model, x, [0, 1], "categorical_crossentropy", "sgd")
    seeded = fit(model, x, [0, 1], "categorical_crossentropy", "sgd", dropout=7)
    mask = seeded.steps[0].layers[2].saved["mask"]
    assert mask.shape == (2, 8) and mask.dtype == bool and "seed 7" in seeded.notes[0]
    again = fit(model, x, [0, 1], "categorical_crossentropy", "sgd", dropout=7)
    np.testing.assert_array_equal(again.steps[0].layers[2].saved["mask"], mask)
    with pytest.raises(CnncalcError, match="Expected booleans of shape"):
        fit(model, x, [0, 1], "categorical_crossentropy", "sgd", dropout=lambda t, layer, shape: np.ones(3))


@pytest.mark.parametrize("kwargs, message", [
    (dict(y=[0, 1, 1]), "Expected one label per sample"),
    (dict(epochs=-1), "Received epochs=-1"),
    (dict(batch_size=0), "Received batch_size=0"),
    (dict(loss="hinge"), "Received loss='hinge'"),
    (dict(optimizer="nadam"), "Received 'nadam'"),
])
def test_fit_refuses_bad_arguments(kwargs, message):
    args = dict(y=[0, 1], loss="categorical_crossentropy", optimizer="sgd", epochs=1, batch_size=2) | kwargs
    with pytest.raises(CnncalcError, match=message):
        fit(small_model(), np.zeros((2, 4, 4, 1)), dropout="identity", **args)


@pytest.mark.keras
def test_summary_of_frozen_layers_counts_them_as_keras(keras):
    from keras_helpers import keras_summary, param_lines

    km = keras_model(keras, *CASES["frozen_conv_and_batchnorm"][:2], seed=0)
    assert param_lines(engine_model(km).summary()) == keras_summary(km)[1]


def test_frozen_layers_are_not_trained():
    model = small_model()
    model.layers[0].trainable = False
    result = fit(model, np.ones((2, 4, 4, 1)), [0, 1], "categorical_crossentropy", "adam", dropout="identity")
    assert set(result.steps[0].grads) == {("out", "kernel"), ("out", "bias")}
    np.testing.assert_array_equal(result.model.layers[0].weights["kernel"], model.layers[0].weights["kernel"])
    assert '"trainable": false' in str(model.to_spec()).replace("'", '"').replace("False", "false")


def teardown_module():
    if MEASURED:
        print("worst relative differences vs Keras:", {k: f"{v:.2g}" for k, v in MEASURED.items()})
