"""Built-in worked examples; the default is the chapter's toy CNN with its two 4x4 inputs."""

from dataclasses import dataclass
from importlib import resources
import json

import numpy as np

from cnncalc.errors import CnncalcError
from cnncalc.inputs import parse_scale
from cnncalc.engine.layers import AveragePooling2D, Conv2D, Flatten, MaxPooling2D
from cnncalc.engine.model import Sequential


@dataclass
class Example:
    name: str
    title: str
    model: Sequential
    raw: np.ndarray  # (N, H, W, C) as given, before scaling
    scale: str | None  # e.g. "1/8"
    labels: list | None = None
    section: str = ""
    blurb: str = ""
    training: object = None  # a training example (chapter_fit): its sheets/training.py TrainingJob

    @property
    def x(self):
        """The model's input: raw x scale."""
        return self.raw * parse_scale(self.scale)


def chapter_example():
    """The chapter's toy CNN (Conv2D 3x3 relu, MaxPooling2D, Flatten, Dense 10 relu, Dense 2 softmax) and its two samples."""
    data = json.loads(resources.files("cnncalc").joinpath("data/cnn_simple_example.json").read_text())
    return Example(
        name="cnn_simple_example",
        title="The chapter's toy CNN: 4x4 input, Conv2D(1, 3x3, relu), MaxPooling2D(2x2), Flatten, Dense(10, relu), Dense(2, softmax)",
        model=Sequential.from_spec(data["model"]),
        raw=np.array(data["inputs"]["raw"], dtype=np.float64),
        scale=data["inputs"]["scale"],
        labels=data["inputs"]["labels"],
    )


# ---------------------------------------------------------------- the catalogue of the chapter's worked examples

A = np.arange(1, 17, dtype=float).reshape(4, 4)  # the chapter's matrix A
B = np.array([[1.0, 2.0], [3.0, 4.0]])  # its kernel B
POOL_MAP = np.array([[1, 3, 2, 1], [4, 6, 5, 2], [3, 1, 1, 0], [1, 2, 8, 4]], dtype=float)  # a 4x4 map to pool
SECTIONS = {
    "conv": "Understanding convolution (理解 CNN 中的卷积)",
    "activation": "From convolution to activation (从卷积到激活)",
    "pool": "From convolution activation to pooling (从卷积激活到池化)",
    "details": "Working details of CNN (CNN 的工作细节)",
    "kernels": "Diving deep into convolutions/kernels (深入研究卷积/内核)",
    "flatten": "From convolution and pooling to flattening (从卷积和汇集到扁平化)",
    "other": "Other details of CNN: LeNet, stride, padding (CNN 的其他细节)",
    "backprop": "Backpropagation in CNNs (CNN 中的反向传播)",
}


def one_layer(layer, input_shape, weights=()):
    model = Sequential([layer], input_shape)
    layer.set_weights(list(weights), model.input_shape)
    return model


def image(a):
    """A 2-D matrix as a one-sample, one-channel batch."""
    return np.asarray(a, dtype=float)[None, :, :, None]


def digit(size=28):
    """A deterministic 28x28 picture of a '1' (0..255), from the trained-filters data."""
    return np.array(_data("two_filters.json")["image"], dtype=float)[:size, :size]


def _data(name):
    return json.loads(resources.files("cnncalc").joinpath("data", name).read_text())


def _conv_basic():
    model = one_layer(Conv2D(1, 2, use_bias=False, name="conv2d"), (4, 4, 1), [B[:, :, None, None]])
    return Example("conv_basic", "Matrix A (1…16) convolved with kernel B (1, 2, 3, 4): 44 54 64 / 84 94 104 / 124 134 144",
                   model, image(A), None)


def _conv_stride2():
    model = one_layer(Conv2D(1, 2, strides=2, use_bias=False, name="conv2d"), (4, 4, 1), [B[:, :, None, None]])
    return Example("conv_stride2", "A convolved with B at stride 2: 44 64 / 124 144", model, image(A), None)


def _padding_same():
    k = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=float)
    model = one_layer(Conv2D(1, 3, padding="same", use_bias=False, name="conv2d"), (4, 4, 1), [k[:, :, None, None]])
    return Example("padding_same", "Zero padding ('same'): a 4×4 input stays 4×4 under a 3×3 kernel", model, image(A), None)


def _padding_28():
    k = np.array([[-1, 2, -1], [-1, 2, -1], [-1, 2, -1]], dtype=float) / 4
    model = one_layer(Conv2D(1, 3, padding="same", name="conv2d"), (28, 28, 1), [k[:, :, None, None], np.zeros(1)])
    return Example("padding_28", "Zero padding: a 28×28 image padded to 30×30, convolved by 3×3 back to 28×28", model,
                   image(digit()), "1/255")


def _conv_relu():
    a = np.array([[1, -2, 3, -4], [-5, 6, -7, 8], [9, -10, 11, -12], [-13, 14, -15, 16]], dtype=float)
    k = np.array([[1, -1], [-1, 1]], dtype=float)
    model = one_layer(Conv2D(1, 2, activation="relu", name="conv2d"), (4, 4, 1), [k[:, :, None, None], np.array([-2.0])])
    return Example("conv_relu", "Convolution, then ReLU: negative sums become 0", model, image(a), None)


def _pool(mode):
    layer = {"max": lambda: MaxPooling2D(2), "avg": lambda: AveragePooling2D(2), "sum": _sum_pool}[mode]()  # Keras's own names
    model = one_layer(layer, (4, 4, 1))
    words = {"max": "Max pooling: the largest of each 2×2 block", "avg": "Average pooling: the mean of each 2×2 block",
             "sum": "Sum pooling: the total of each 2×2 block (the chapter mentions it; Keras has no such layer)"}
    return Example(f"pool_{mode}", words[mode] + " of one 4×4 map", model, image(POOL_MAP), None)


def _sum_pool():
    from cnncalc.engine.layers import SumPooling2D

    return SumPooling2D(2)


def _rgb():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(1, 5, 5, 3)).astype(float)
    k = np.round(rng.uniform(-1, 1, size=(3, 3, 3, 2)), 2)
    model = one_layer(Conv2D(2, 3, activation="relu", name="conv2d"), (5, 5, 3), [k, np.array([0.1, -0.2])])
    return Example("rgb", "A 3-channel (RGB) 5×5 input, a 3×3×3 kernel, two filters: one SUMPRODUCT per channel", model, x, "1/255")


def _flatten():
    x = np.stack([POOL_MAP, A], axis=-1)[None]
    model = Sequential([MaxPooling2D(2, name="max_pooling2d"), Flatten(name="flatten")], (4, 4, 2))
    return Example("flatten", "Flattening a pooled map: row by row, channel fastest, as Keras does", model, x, None)


def _lenet_shapes():
    rng = np.random.default_rng(5)
    model = Sequential([Conv2D(6, 3, activation="relu", name="conv2d"), MaxPooling2D(2, name="max_pooling2d"),
                        Conv2D(10, 3, activation="relu", name="conv2d_1"), MaxPooling2D(2, name="max_pooling2d_1")], (28, 28, 1))
    for layer, shape in zip(model.layers, model.shapes):
        layer.set_weights([np.round(rng.uniform(-0.5, 0.5, size=s), 3) for s in layer.weight_shapes(shape).values()], shape)
    return Example("lenet_shapes", "The LeNet-style shape walk: 28×28 → 26×26×6 → 13×13×6 → 11×11×10 → 5×5×10", model,
                   image(digit()), "1/255")


def _two_filters():
    d = _data("two_filters.json")
    model = one_layer(Conv2D(2, 3, activation="relu", name="conv2d"), (28, 28, 1), [np.array(d["kernel"]), np.array(d["bias"])])
    return Example("two_filters", "What two trained 3×3 filters do to an image of a 1 (feature-map heatmaps)", model,
                   image(digit()), "1/255")


def _toy():
    return chapter_example()


def chapter_fit():
    """The chapter's fit: its toy model with fresh weights (Keras's default initializers, seed 0), compiled as the
    chapter compiles it (loss='categorical_crossentropy', optimizer='adam') and fit on its two samples and labels
    (one-hot, as to_categorical makes them): model.fit(X_train, y_train, epochs=100, batch_size=2), not shuffled."""
    from cnncalc.engine import losses, optimizers
    from cnncalc.kerasfiles.loader import model_from_layer_list
    from cnncalc.sheets.training import TrainingJob

    toy = chapter_example()
    layers = [{"class_name": layer.class_name, "config": layer.get_config()} for layer in toy.model.layers]
    model = model_from_layer_list({"name": toy.model.name, "input_shape": list(toy.model.input_shape), "layers": layers}, seed=0)
    title = "The chapter's fit: the toy CNN from fresh weights, categorical_crossentropy and Adam, 100 epochs of batch 2"
    job = TrainingJob(model, toy.raw, np.eye(2)[toy.labels], losses.get("categorical_crossentropy"), [optimizers.get("adam")],
                      epochs=100, batch_size=2, scale=toy.scale, title=title)
    return Example("chapter_fit", title, model, toy.raw, toy.scale, toy.labels, training=job)


CATALOGUE = {  # name: (chapter section, what it shows, how to build it)
    "cnn_simple_example": ("details", "the toy CNN on both samples: 0.8906642 for class 0", _toy),
    "chapter_fit": ("backprop", "the toy CNN trained as the chapter fits it: Adam, 100 epochs of batch 2, every gradient a formula", chapter_fit),
    "conv_basic": ("conv", "A ⊛ B, stride 1: 44 54 64 / 84 94 104 / 124 134 144", _conv_basic),
    "conv_stride2": ("other", "A ⊛ B, stride 2: 44 64 / 124 144", _conv_stride2),
    "padding_same": ("other", "'same' zero padding: 4×4 → 6×6 padded → 4×4", _padding_same),
    "padding_28": ("other", "'same' zero padding: 28×28 → 30×30 → 28×28", _padding_28),
    "conv_relu": ("activation", "convolution plus bias, then ReLU", _conv_relu),
    "pool_max": ("pool", "max pooling of a 4×4 map", lambda: _pool("max")),
    "pool_avg": ("pool", "average pooling of the same 4×4 map", lambda: _pool("avg")),
    "pool_sum": ("pool", "sum pooling of the same 4×4 map", lambda: _pool("sum")),
    "rgb": ("other", "an RGB input, a 3×3×3 kernel, two filters", _rgb),
    "flatten": ("flatten", "pool a 4×4×2 map, flatten it to 8 numbers", _flatten),
    "lenet_shapes": ("other", "the LeNet shape walk 28×28 → 26×26×6 → 13×13×6 → 11×11×10 → 5×5×10", _lenet_shapes),
    "two_filters": ("kernels", "two trained 3×3 filters on an image of a 1 (heatmaps)", _two_filters),
}


def get_example(name):
    """The worked example called `name` (see `cnncalc examples`)."""
    try:
        section, blurb, build = CATALOGUE[name]
    except KeyError:
        raise CnncalcError(f"Unknown example. Expected one of {', '.join(CATALOGUE)}. Received {name!r}") from None
    ex = build()
    ex.section, ex.blurb = SECTIONS[section], blurb
    return ex
