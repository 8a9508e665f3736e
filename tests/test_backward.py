"""Every layer's, activation's and loss's numpy backward against jax's own gradient of real Keras (float64),
kinks and ties included: relu at 0, relu6 / hard_sigmoid corners, max-pooling ties, clipped probabilities."""

import inspect
import zlib

import numpy as np
import pytest

from cnncalc.engine import losses, ops
from cnncalc.engine.layers import layer_from_config

pytestmark = pytest.mark.keras

# Points where an activation has a kink or a corner, then smooth ones
KINKS = [-7.0, -6.0, -3.0, -1.0, -0.5, 0.0, 0.3, 0.5, 1.0, 1.5, 3.0, 6.0, 7.0]


def assert_close(mine, theirs, what, rtol=1e-12):
    """Relative agreement, measured against the array's largest magnitude; both sides printed on failure."""
    mine, theirs = np.asarray(mine, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    assert mine.shape == theirs.shape, f"{what}: shape {mine.shape} != {theirs.shape}"
    scale = max(float(np.max(np.abs(theirs), initial=0.0)), 1e-300)
    worst = float(np.max(np.abs(mine - theirs), initial=0.0)) / scale
    if worst > rtol:
        print(f"{what}\nMine  ", mine.ravel()[:16].tolist(), "\nTheirs", theirs.ravel()[:16].tolist())
    assert worst <= rtol, f"{what}: max |mine - theirs| / max |theirs| = {worst:.3g}"
    return worst


def keras_vjp(layer, x, d_out, training=True):
    """(output, [dL/d trainable variable], dL/dx) of a built Keras layer, by jax.vjp of its stateless call."""
    import jax
    import jax.numpy as jnp

    frozen = [v.value for v in layer.non_trainable_variables]
    kwargs = {"training": training} if "training" in inspect.signature(layer.call).parameters else {}

    def f(trainable, x):
        return layer.stateless_call(trainable, frozen, x, **kwargs)[0]

    @jax.jit  # one compiled function instead of dozens of ops dispatched one by one
    def out_and_grads(trainable, x, d_out):
        out, vjp = jax.vjp(f, trainable, x)
        return out, *vjp(d_out)

    out, d_trainable, d_x = out_and_grads([v.value for v in layer.trainable_variables], jnp.asarray(x), jnp.asarray(d_out))
    return np.asarray(out), [np.asarray(g) for g in d_trainable], np.asarray(d_x)


def randomize(layer, rng, integers=False):
    """Weights for a Keras layer: small integers (so ties and exact zeros happen) or floats; variances positive."""
    arrays = []
    for v in layer.weights:
        shape = tuple(v.shape)
        if v.name in ("moving_variance", "gamma"):
            arrays.append(rng.uniform(0.5, 1.5, shape))
        elif integers:
            arrays.append(rng.integers(-2, 3, shape).astype(np.float64))
        else:
            arrays.append(rng.normal(0, 0.7, shape))
    layer.set_weights(arrays)


# ---------------------------------------------------------------- layers: (class name, kwargs, input shape, integer data)

LAYER_CASES = {
    "conv_valid": ("Conv2D", dict(filters=2, kernel_size=3), (5, 5, 2), False),
    "conv_same_stride2": ("Conv2D", dict(filters=3, kernel_size=3, strides=2, padding="same"), (7, 6, 2), False),
    "conv_same_even_kernel_stride2": ("Conv2D", dict(filters=2, kernel_size=(2, 4), strides=(2, 3), padding="same"), (5, 7, 1), False),
    "conv_dilated": ("Conv2D", dict(filters=2, kernel_size=2, dilation_rate=2, padding="same"), (6, 5, 2), False),
    "conv_dilated_valid": ("Conv2D", dict(filters=1, kernel_size=(2, 3), dilation_rate=(2, 1)), (6, 5, 1), False),
    "conv_no_bias": ("Conv2D", dict(filters=2, kernel_size=2, use_bias=False, activation="tanh"), (4, 4, 3), False),
    "conv_relu_exact_zeros": ("Conv2D", dict(filters=2, kernel_size=2, activation="relu"), (5, 5, 1), True),
    "conv_softmax": ("Conv2D", dict(filters=3, kernel_size=2, activation="softmax"), (4, 4, 2), False),
    "max_pool_ties": ("MaxPooling2D", dict(pool_size=2), (6, 6, 2), True),
    "max_pool_overlapping_ties": ("MaxPooling2D", dict(pool_size=3, strides=1), (5, 5, 1), True),
    "max_pool_same_ties": ("MaxPooling2D", dict(pool_size=3, strides=2, padding="same"), (6, 5, 2), True),
    "max_pool_same_odd": ("MaxPooling2D", dict(pool_size=2, padding="same"), (5, 5, 1), False),
    "avg_pool_valid": ("AveragePooling2D", dict(pool_size=2), (5, 4, 2), False),
    "avg_pool_same": ("AveragePooling2D", dict(pool_size=3, strides=2, padding="same"), (6, 5, 1), False),
    "avg_pool_overlapping": ("AveragePooling2D", dict(pool_size=(2, 3), strides=1, padding="same"), (4, 5, 2), False),
    "global_max_ties": ("GlobalMaxPooling2D", dict(), (3, 3, 4), True),
    "global_max_keepdims": ("GlobalMaxPooling2D", dict(keepdims=True), (4, 3, 2), True),
    "global_avg": ("GlobalAveragePooling2D", dict(), (4, 5, 3), False),
    "global_avg_keepdims": ("GlobalAveragePooling2D", dict(keepdims=True), (3, 3, 2), False),
    "flatten": ("Flatten", dict(), (3, 4, 2), False),
    "reshape": ("Reshape", dict(target_shape=(2, -1, 3)), (4, 3, 2), False),
    "zero_padding": ("ZeroPadding2D", dict(padding=((1, 2), (0, 3))), (3, 4, 2), False),
    "dense_relu_exact_zeros": ("Dense", dict(units=12, activation="relu"), (3,), True),
    "dense_no_bias_sigmoid": ("Dense", dict(units=3, activation="sigmoid", use_bias=False), (5,), False),
    "dense_log_softmax": ("Dense", dict(units=4, activation="log_softmax"), (5,), False),
    "batchnorm_image": ("BatchNormalization", dict(), (3, 3, 2), False),
    "batchnorm_vector_eps": ("BatchNormalization", dict(epsilon=0.1, momentum=0.9), (5,), False),
    "batchnorm_no_center": ("BatchNormalization", dict(center=False), (2, 3, 3), False),
    "batchnorm_no_scale": ("BatchNormalization", dict(scale=False), (4,), False),
    "batchnorm_bare": ("BatchNormalization", dict(center=False, scale=False), (3, 2, 2), False),
    "batchnorm_frozen": ("BatchNormalization", dict(trainable=False), (3, 3, 2), False),
    "rescaling": ("Rescaling", dict(scale=0.25, offset=-1.0), (3, 3, 2), False),
    "rescaling_per_channel": ("Rescaling", dict(scale=[0.5, -2.0], offset=[0.1, 0.0]), (3, 3, 2), False),
    "relu_layer_kinks": ("ReLU", dict(), (13,), "kinks"),
    "relu_max_value_kinks": ("ReLU", dict(max_value=1.5), (13,), "kinks"),
    "relu6_layer_kinks": ("ReLU", dict(max_value=6.0), (13,), "kinks"),
    "relu_slope_kinks": ("ReLU", dict(negative_slope=0.1), (13,), "kinks"),
    "relu_threshold_kinks": ("ReLU", dict(threshold=0.3), (13,), "kinks"),
    "relu_all_kinks": ("ReLU", dict(max_value=1.5, negative_slope=0.2, threshold=0.5), (13,), "kinks"),
    "relu6_slope_kinks": ("ReLU", dict(max_value=6.0, negative_slope=0.3), (13,), "kinks"),
    "relu_threshold_max6_kinks": ("ReLU", dict(max_value=6.0, threshold=1.0), (13,), "kinks"),
    "leaky_relu_kinks": ("LeakyReLU", dict(), (13,), "kinks"),
    "leaky_relu_slope_kinks": ("LeakyReLU", dict(negative_slope=0.05), (13,), "kinks"),
    "elu_kinks": ("ELU", dict(alpha=0.7), (13,), "kinks"),
    "activation_softmax_image": ("Activation", dict(activation="softmax"), (2, 3, 4), False),
}


@pytest.mark.parametrize("name", LAYER_CASES)
def test_layer_backward_equals_keras(keras64, name):
    """d_x and every trainable weight's gradient equal jax's vjp of the Keras layer in training mode."""
    class_name, kwargs, input_shape, data = LAYER_CASES[name]
    keras = keras64
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if class_name in ("Conv2D", "Dense"):  # randomize sets the weights: skip Keras's random initializer (slow to compile)
        kwargs = {**kwargs, "kernel_initializer": "zeros"}
    klayer = getattr(keras.layers, class_name)(**kwargs)
    klayer.build((None, *input_shape))
    randomize(klayer, rng, integers=data is True)
    x = (rng.integers(-3, 4, (2, *input_shape)).astype(np.float64) if data is True else
         np.array([KINKS, KINKS[::-1]]) if data == "kinks" else rng.normal(0, 1.5, (2, *input_shape)))
    layer = layer_from_config(class_name, klayer.get_config())
    layer.set_weights(klayer.get_weights(), input_shape)
    pre, out, saved = layer.call_train(x)
    d_out = rng.normal(0, 1, out.shape)
    theirs_out, theirs_grads, theirs_dx = keras_vjp(klayer, x, d_out)
    assert_close(out, theirs_out, f"{name}: forward")
    d_pre, d_x, grads = layer.backward(x, pre, out, d_out, saved)
    assert_close(d_x, theirs_dx, f"{name}: dL/dx")
    trainable = layer.trainable_weight_names()
    assert trainable == [v.name for v in klayer.trainable_variables]
    for wname, theirs in zip(trainable, theirs_grads):
        assert_close(grads[wname], theirs, f"{name}: dL/d{wname}")
    if name.endswith("exact_zeros"):
        assert np.any(pre == 0)  # relu's kink itself is hit: its slope there is 0
    if data is True and class_name in ("MaxPooling2D", "GlobalMaxPooling2D"):
        assert ties_at_the_max(layer, x) > 0  # the case tests the tie rule: some windows' largest value is there twice


def ties_at_the_max(layer, x):
    """How many (sample, window) pairs hold their largest value more than once."""
    if layer.class_name == "GlobalMaxPooling2D":
        return int(((x == x.max(axis=(1, 2), keepdims=True)).sum(axis=(1, 2)) > 1).sum())
    count = 0
    for idx in np.ndindex(layer.compute_output_shape(x.shape[1:])):
        (r0, c0, c), (r1, c1, _) = layer.window(idx, x.shape[1:])
        windows = x[:, r0:r1 + 1, c0:c1 + 1, c].reshape(len(x), -1)
        count += int(((windows == windows.max(axis=1, keepdims=True)).sum(axis=1) > 1).sum())
    return count


@pytest.mark.parametrize("class_name, kwargs, noise", [("Dropout", dict(rate=0.4), None), ("SpatialDropout2D", dict(rate=0.5), "channels")])
def test_dropout_backward_equals_keras_with_its_mask(keras64, class_name, kwargs, noise):
    """Keras draws the mask; read back from its output (x has no zeros), ours with that mask gives the same gradient."""
    keras = keras64
    rng = np.random.default_rng(7)
    klayer = getattr(keras.layers, class_name)(**kwargs, seed=3)
    x = rng.uniform(0.5, 2.0, (3, 4, 4, 5))
    theirs_out, _, theirs_dx = keras_vjp(klayer, x, d_out := rng.normal(0, 1, x.shape))
    layer = layer_from_config(class_name, klayer.get_config())
    mask = (theirs_out != 0)[:, :1, :1, :] if noise else theirs_out != 0
    assert layer.mask_shape(x.shape) == mask.shape and 0 < mask.mean() < 1
    _, out, saved = layer.call_train(x, mask)
    assert_close(out, theirs_out, "forward")
    assert_close(layer.backward(x, None, out, d_out, saved)[1], theirs_dx, "dL/dx")
    _, same, saved = layer.call_train(x)  # no mask: the identity, as at inference
    assert same is x and layer.backward(x, None, same, d_out, saved)[1] is d_out


def test_sum_pooling_backward_equals_jax_reduce_window(keras64):
    """Sum pooling is not a Keras layer: its reference is jax's reduce_window add, differentiated by jax."""
    import jax
    from jax import lax

    rng = np.random.default_rng(1)
    x, layer = rng.normal(0, 1, (2, 5, 6, 2)), layer_from_config("SumPooling2D", {"name": "s", "pool_size": 3, "strides": 2, "padding": "same"})
    out, vjp = jax.vjp(lambda x: lax.reduce_window(x, 0.0, lax.add, (1, 3, 3, 1), (1, 2, 2, 1), "SAME"), x)
    _, mine = layer.call(x)
    assert_close(mine, out, "forward")
    d_out = rng.normal(0, 1, mine.shape)
    assert_close(layer.backward(x, None, mine, d_out, {})[1], vjp(d_out)[0], "dL/dx")


def test_max_pool_gradient_goes_to_the_first_largest_of_a_window():
    """The rule, by hand: the window's first maximum in row-major order takes the gradient; padding never does."""
    x = np.array([[1.0, 3.0, 3.0, 0.0], [3.0, 2.0, 3.0, 3.0], [0.0, 0.0, 5.0, 5.0], [5.0, 5.0, 5.0, 5.0]])[None, :, :, None]
    d = ops.pool2d_backward(x, np.ones((1, 2, 2, 1)), (2, 2), (2, 2), "valid", "max")[0, :, :, 0]
    np.testing.assert_array_equal(d, [[0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]])
    overlapping = ops.pool2d_backward(x, np.ones((1, 3, 3, 1)), (2, 2), (1, 1), "valid", "max")[0, :, :, 0]
    np.testing.assert_array_equal(overlapping, [[0, 2, 1, 0], [1, 0, 0, 0], [0, 0, 4, 0], [1, 0, 0, 0]])
    negative = -np.ones((1, 3, 3, 1))
    assert ops.pool2d_backward(negative, np.ones((1, 2, 2, 1)), (2, 2), (2, 2), "same", "max").sum() == 4


@pytest.mark.parametrize("strides, padding, dilation", [((1, 1), "valid", (1, 1)), ((2, 3), "same", (1, 1)), ((1, 1), "same", (2, 2))])
def test_conv2d_backward_equals_its_naive_twin(strides, padding, dilation):
    rng = np.random.default_rng(0)
    x, k = rng.normal(0, 1, (2, 7, 6, 3)), rng.normal(0, 1, (3, 2, 3, 4))
    d_out = rng.normal(0, 1, ops.conv2d(x, k, None, strides, padding, dilation).shape)
    for fast, slow in zip(ops.conv2d_backward(x, k, d_out, strides, padding, dilation),
                          ops.conv2d_backward_naive(x, k, d_out, strides, padding, dilation)):
        np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- activations, kinks included

def keras_activation(keras, name):
    return (lambda x: keras.activations.gelu(x, approximate=True)) if name == "gelu_tanh" else keras.activations.get(name)


@pytest.mark.parametrize("name", list(ops.ACTIVATIONS) + ["swish", "hard_swish"])
def test_activation_gradient_equals_jax_at_kinks(keras64, name):
    """d_y * f'(x) (or softmax's rule) equals jax's vjp of the Keras activation, at its kinks and corners too."""
    import jax

    name = ops.ALIASES.get(name, name)
    rng = np.random.default_rng(5)
    x = np.array([KINKS, rng.normal(0, 3, len(KINKS)), np.linspace(-9, 9, len(KINKS))])
    d_y = rng.normal(0, 1, x.shape)
    y, vjp = jax.vjp(keras_activation(keras64, name), x)
    assert_close(ops.activation(name)(x), y, f"{name}: forward")
    assert_close(ops.activation_backward(name, x, np.asarray(y), d_y), vjp(d_y)[0], f"{name}: backward", rtol=1e-11)


def test_derivatives_at_the_kinks_by_hand():
    x = np.array([-3.0, 0.0, 3.0, 6.0])
    assert ops.relu_derivative(x).tolist() == [0, 0, 1, 1]
    assert ops.relu6_derivative(x).tolist() == [0, 0, 1, 0]
    assert ops.leaky_relu_derivative(x).tolist() == [0.2, 1, 1, 1]  # jax.nn.leaky_relu takes x >= 0 as the x branch
    assert ops.hard_sigmoid_derivative(x).tolist() == [0, 1 / 6, 0, 0]
    assert ops.elu_derivative(x, 0.5).tolist() == [0.5 * np.exp(-3), 0.5, 1, 1]
    assert ops.relu_derivative(x, max_value=3.0).tolist() == [0, 0, 0.5, 0]  # jnp.clip at its bound: half
    assert ops.relu_derivative(x, negative_slope=0.1, threshold=3.0).tolist() == [0.1, 0.1, 0, 1]


# ---------------------------------------------------------------- losses: value and gradient as Keras's fit sees them

def keras_loss(keras, name, kwargs):
    cls = {"categorical_crossentropy": "CategoricalCrossentropy", "sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
           "binary_crossentropy": "BinaryCrossentropy", "mean_squared_error": "MeanSquaredError",
           "mean_absolute_error": "MeanAbsoluteError"}[name]
    return getattr(keras.losses, cls)(**kwargs)


def probabilities(rng, shape, exact=False):
    p = rng.uniform(0.05, 1.0, shape)
    p /= p.sum(axis=-1, keepdims=True)
    if exact:  # some exactly 0 and 1 (clipped), some rows that do not sum to 1 (normalised first)
        p[0] = np.eye(shape[-1])[0]
        p[1] *= 3.0
    return p


LOSS_CASES = {
    "cce": ("categorical_crossentropy", {}, "probabilities"),
    "cce_clipped_unnormalised": ("categorical_crossentropy", {}, "exact"),
    "cce_logits": ("categorical_crossentropy", dict(from_logits=True), "logits"),
    "cce_smoothing": ("categorical_crossentropy", dict(label_smoothing=0.2), "probabilities"),
    "cce_logits_smoothing": ("categorical_crossentropy", dict(from_logits=True, label_smoothing=0.1), "logits"),
    "sparse": ("sparse_categorical_crossentropy", {}, "exact"),
    "sparse_logits": ("sparse_categorical_crossentropy", dict(from_logits=True), "logits"),
    "bce": ("binary_crossentropy", {}, "sigmoid"),
    "bce_clipped": ("binary_crossentropy", {}, "exact01"),
    "bce_logits": ("binary_crossentropy", dict(from_logits=True), "logits"),
    "bce_smoothing": ("binary_crossentropy", dict(label_smoothing=0.3), "sigmoid"),
    "mse": ("mean_squared_error", {}, "logits"),
    "mae": ("mean_absolute_error", {}, "logits"),
    "mae_exact_hits": ("mean_absolute_error", {}, "labels"),
    "mse_image_output": ("mean_squared_error", {}, "image"),
    "sum_reduction": ("mean_squared_error", dict(reduction="sum"), "logits"),
}


@pytest.mark.parametrize("case", LOSS_CASES)
def test_loss_value_and_gradient_equal_keras(keras64, case):
    import jax

    name, kwargs, data = LOSS_CASES[case]
    rng = np.random.default_rng(len(case))
    shape = (4, 3, 2, 5) if data == "image" else (4, 5)
    classes = rng.integers(0, shape[-1], shape[:-1])
    if name in ("binary_crossentropy", "mean_squared_error", "mean_absolute_error") and data != "labels":
        y = rng.integers(0, 2, shape).astype(np.float64)
    else:
        y = np.eye(shape[-1])[classes]
    y_pred = {"probabilities": lambda: probabilities(rng, shape), "exact": lambda: probabilities(rng, shape, exact=True),
              "logits": lambda: rng.normal(0, 2, shape), "image": lambda: rng.normal(0, 2, shape),
              "sigmoid": lambda: rng.uniform(0.01, 0.99, shape), "labels": lambda: np.where(rng.random(shape) < 0.5, y, 0.3),
              "exact01": lambda: np.where(rng.random(shape) < 0.4, y, rng.uniform(0, 1, shape))}[data]()
    labels = classes if name.startswith("sparse") else y
    loss = losses.Loss(name, **kwargs)
    mine = loss(loss.labels(labels, shape[1:]), y_pred)
    value, grad = jax.value_and_grad(lambda p: keras_loss(keras64, name, kwargs)(labels, p))(y_pred)
    assert abs(mine.value - float(value)) <= 1e-13 * abs(float(value)), (mine.value, float(value))
    assert_close(mine.grad, grad, f"{case}: gradient")
    assert mine.values.shape == shape[:-1]


@pytest.mark.parametrize("identifier, expected", [
    ("mse", losses.Loss("mean_squared_error")), ("MAE", losses.Loss("mean_absolute_error")),
    ("bce", losses.Loss("binary_crossentropy")), ("CategoricalCrossentropy", losses.Loss("categorical_crossentropy")),
    ({"module": "builtins", "class_name": "function", "config": "mean_squared_error", "registered_name": "function"},
     losses.Loss("mean_squared_error")),
    ({"class_name": "CategoricalCrossentropy", "config": {"name": "c", "reduction": "auto", "from_logits": True, "label_smoothing": 0.1}},
     losses.Loss("categorical_crossentropy", True, 0.1)),
    ({"class_name": "SparseCategoricalCrossentropy", "config": {"reduction": "sum", "from_logits": False, "ignore_class": None, "axis": -1}},
     losses.Loss("sparse_categorical_crossentropy", reduction="sum")),
])
def test_loss_names_and_configs(identifier, expected):
    assert losses.get(identifier) == expected


@pytest.mark.parametrize("identifier, message", [
    ("hinge", "Received loss='hinge'"),
    ({"class_name": "CategoricalCrossentropy", "config": {"axis": 1}}, "axis=1"),
    ({"class_name": "BinaryCrossentropy", "config": {"reduction": None}}, "Received reduction=None"),
    ({"class_name": "SparseCategoricalCrossentropy", "config": {"ignore_class": 255}}, "ignore_class=255"),
    ({"class_name": "MeanSquaredError", "config": {"from_logits": True}}, "has no argument `from_logits`"),
])
def test_unsupported_losses_are_refused(identifier, message):
    from cnncalc.errors import CnncalcError

    with pytest.raises(CnncalcError, match=message):
        losses.get(identifier)


def test_labels_as_indices_or_one_hot():
    from cnncalc.errors import CnncalcError

    cce, sparse, mse = losses.Loss("categorical_crossentropy"), losses.Loss("sparse_categorical_crossentropy"), losses.Loss("mse")
    assert cce.labels([0, 1], (2,)).tolist() == [[1, 0], [0, 1]]
    assert cce.labels([[0.2, 0.8]], (2,)).tolist() == [[0.2, 0.8]]
    assert sparse.labels([[0, 1], [1, 0]], (2,)).tolist() == [1, 0] == sparse.labels([[1], [0]], (2,)).tolist()
    assert mse.labels([0.5, 2], (1,)).tolist() == [[0.5], [2.0]]
    with pytest.raises(CnncalcError, match="Expected class indices 0 to 1"):
        cce.labels([0, 2], (2,))
    with pytest.raises(CnncalcError, match="not one-hot"):
        sparse.labels([[0.5, 0.5]], (2,))
    with pytest.raises(CnncalcError, match=r"Expected one label per output, shape \(N, 3\)"):
        mse.labels([[1, 2]], (3,))


def test_the_windows_holding_a_cell_are_found_without_trying_every_window():
    """Pooling's formula_backward visits only the windows that hold a cell: the same as testing every window, for
    every size, stride and padding before the first cell."""
    import itertools

    from cnncalc.engine.layers.pooling import _windows_holding

    for n_in, size, stride, pad in itertools.product(range(1, 12), range(1, 5), range(1, 5), range(3)):
        n = (n_in + 2 * pad - size) // stride + 1
        for k in range(n_in):
            every = [i for i in range(max(n, 0)) if i * stride - pad <= k <= i * stride - pad + size - 1]
            assert list(_windows_holding(k, pad, size, stride, max(n, 0))) == every, (n_in, size, stride, pad, k)
