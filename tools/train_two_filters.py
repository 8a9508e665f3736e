"""Train the chapter's "two convolution filters" model on synthetic digits and save the conv weights.

The chapter trains Conv2D(2, 3x3, relu) -> Flatten -> Dense -> Dense(2, softmax) to tell "1" from
"not 1" on MNIST, then looks at what the two filters do to an image. MNIST cannot be downloaded
here, so this trains the same kind of model on synthetic 28x28 strokes: "1"s are near-vertical
strokes, the rest are rings, horizontal bars and crosses. The learned kernels (and one "1" image)
go to cnncalc/data/two_filters.json for `cnncalc example two_filters`.

Run once (needs Keras + jax: pip install -e '.[test]'):  KERAS_BACKEND=jax python tools/train_two_filters.py
"""

import json
import os
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras  # noqa: E402
import numpy as np  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "cnncalc" / "data" / "two_filters.json"


def stroke(rng, label_one):
    img = np.zeros((28, 28))
    yy, xx = np.mgrid[0:28, 0:28]
    if label_one:  # a slightly slanted vertical stroke
        x0, slant, w = rng.uniform(9, 19), rng.uniform(-0.25, 0.25), rng.uniform(1.0, 2.0)
        top, bottom = rng.integers(3, 8), rng.integers(20, 26)
        d = np.abs(xx - (x0 + slant * (yy - 14)))
        img[(d < w) & (yy >= top) & (yy <= bottom)] = 1
    else:
        kind = rng.integers(3)
        cx, cy = rng.uniform(10, 18, size=2)
        if kind == 0:  # a ring, like a 0
            r = np.hypot(xx - cx, yy - cy)
            img[(r > rng.uniform(5, 7)) & (r < rng.uniform(8, 10))] = 1
        elif kind == 1:  # a horizontal bar, like part of a 7 or 2
            img[(np.abs(yy - cy) < 1.5) & (np.abs(xx - cx) < rng.uniform(6, 10))] = 1
        else:  # a cross, like a 4 or + shape
            img[(np.abs(yy - cy) < 1.2) & (np.abs(xx - cx) < 8)] = 1
            img[(np.abs(xx - cx) < 1.2) & (np.abs(yy - cy) < 8)] = 1
    return np.clip(img + rng.normal(0, 0.05, img.shape), 0, 1)


def main():
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    y = rng.integers(0, 2, size=3000)
    x = np.stack([stroke(rng, bool(label)) for label in y])[..., None].astype("float32")
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(2, (3, 3), activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(2, activation="softmax"),
    ])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    model.fit(x, y, epochs=5, batch_size=64, verbose=2, validation_split=0.2)
    kernel, bias = model.layers[0].get_weights()
    one = stroke(np.random.default_rng(42), True)
    data = {
        "about": "Conv2D(2, 3x3, relu) kernels learned by tools/train_two_filters.py (Keras, 5 epochs, synthetic 28x28 strokes: "
                 "'1' = near-vertical stroke vs rings, bars and crosses). The image is one synthetic '1' (pixel values 0..255).",
        "kernel": kernel.tolist(), "bias": bias.tolist(),
        "image": np.round(one * 255).astype(int).tolist(),
        "val_accuracy": float(model.history.history["val_accuracy"][-1]),
    }
    OUT.write_text(json.dumps(data))
    print(f"wrote {OUT} (validation accuracy {data['val_accuracy']:.3f})")


if __name__ == "__main__":
    main()
