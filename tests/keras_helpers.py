"""Small real Keras models shared by tests that compare against Keras (jax backend, never TensorFlow).

Tests using these take the conftest `keras` fixture first: it skips (or, under
tests/run.sh, fails) when Keras with the jax backend is missing, so keras is
only imported here once it is known to work.
"""

import numpy as np


def toy_model():
    """The chapter's toy model: 4x4x1 image, one 3x3 conv, pool, two dense layers."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [
            keras.Input((4, 4, 1)),
            layers.Conv2D(1, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dense(10, activation="relu"),
            layers.Dense(2, activation="softmax"),
        ],
        name="toy",
    )


def lenet_model():
    """LeNet-style: RGB input, two conv/pool stages, BatchNormalization, Dropout, Dense."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.Conv2D(4, (3, 3), activation="relu", padding="same"),
            layers.BatchNormalization(),
            layers.MaxPooling2D((2, 2)),
            layers.Conv2D(6, (3, 3), activation="tanh"),
            layers.AveragePooling2D((2, 2)),
            layers.Flatten(),
            layers.Dropout(0.25),
            layers.Dense(12, activation="relu"),
            layers.Dense(3, activation="softmax"),
        ],
        name="lenet",
    )
    randomize_batchnorm(model)
    return model


def chain_functional_model():
    """A Functional model that is one chain, with layer names unlike the class names."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(3)
    inputs = keras.Input((8, 8, 2), name="image")
    x = layers.Conv2D(3, (3, 3), padding="same", name="first_conv")(inputs)
    x = layers.BatchNormalization(name="norm")(x)
    x = layers.ReLU(name="act")(x)
    x = layers.MaxPooling2D((2, 2), name="pool")(x)
    x = layers.Flatten(name="flat")(x)
    outputs = layers.Dense(4, activation="softmax", name="probs")(x)
    model = keras.Model(inputs, outputs, name="chain")
    randomize_batchnorm(model)
    return model


def randomize_batchnorm(model):
    """Give BatchNormalization non-trivial statistics so weight order mistakes show."""
    from keras import layers

    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([
                rng.uniform(0.5, 1.5, gamma.shape).astype("float32"),
                rng.normal(0, 0.1, beta.shape).astype("float32"),
                rng.normal(0, 0.1, mean.shape).astype("float32"),
                rng.uniform(0.5, 1.5, var.shape).astype("float32"),
            ])


def param_lines(text):
    """The Total / Trainable / Non-trainable lines of a summary text."""
    return [line.strip() for line in text.splitlines() if "params:" in line]


def keras_summary(model):
    """([(name, shape, params)], [total/trainable/non-trainable lines]) from model.summary(), long names unwrapped."""
    lines = []
    model.summary(print_fn=lambda text, **kw: lines.append(text))
    text = "\n".join(lines)
    rows, current = [], None
    for line in text.splitlines():
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip().strip("│").split("│")]
            current = cells if current is None else [" ".join(filter(None, p)) for p in zip(current, cells)]
        elif current is not None:  # a rule line ends the row
            rows.append((current[0], current[1], int(current[2].replace(",", ""))))
            current = None
    return rows, param_lines(text)
