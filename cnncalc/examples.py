"""Built-in worked examples; the default is the chapter's toy CNN with its two 4x4 inputs."""

from dataclasses import dataclass
from importlib import resources
import json

import numpy as np

from cnncalc.inputs import parse_scale
from cnncalc.model import Sequential


@dataclass
class Example:
    name: str
    title: str
    model: Sequential
    raw: np.ndarray  # (N, H, W, C) as given, before scaling
    scale: str | None  # e.g. "1/8"
    labels: list | None = None

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
