"""Keras Dropout and SpatialDropout2D: the identity at inference; while training, a mask of kept units."""

from cnncalc.engine import ops
from cnncalc.sheets import formulas
from cnncalc.engine.layers.base import _Elementwise, _channels_last, _float, _is_int
from cnncalc.errors import CnncalcError


class Dropout(_Elementwise):
    """Keras Dropout: the identity at inference. While training, Keras keeps each unit with probability 1 - rate
    (at random) and scales the kept ones by 1 / (1 - rate); `call_train` takes that mask as given."""

    def __init__(self, rate, noise_shape=None, name=None):
        super().__init__(name)
        self.rate = _float(rate, "rate", minimum=0)
        if self.rate > 1:
            raise CnncalcError(f"Invalid value for argument `rate`. Expected a number between 0 and 1. Received rate={rate!r}")
        shape = tuple(noise_shape) if isinstance(noise_shape, (list, tuple)) else noise_shape
        if shape is not None and not (isinstance(shape, tuple) and all(n is None or _is_int(n) and n > 0 for n in shape)):
            raise CnncalcError(f"Invalid value for argument `noise_shape`. Expected None or a tuple of positive ints and None. "
                               f"Received noise_shape={noise_shape!r}")
        self.noise_shape = shape

    @classmethod
    def from_config(cls, config):
        return cls(config["rate"], config.get("noise_shape"), config.get("name"))

    def get_config(self):
        config = {"name": self.name, "rate": self.rate}
        if self.noise_shape is not None:
            config["noise_shape"] = list(self.noise_shape)
        return config

    def mask_shape(self, batch_shape):
        """The shape of the mask Keras draws for a batch (N, ...): the batch's own, or noise_shape with its Nones filled."""
        if self.noise_shape is None:
            return tuple(batch_shape)
        if len(self.noise_shape) != len(batch_shape):
            raise CnncalcError(f"Layer {self.name!r} (Dropout) has noise_shape={self.noise_shape}. Expected one size per axis "
                               f"of its input (batch, {', '.join(map(str, batch_shape[1:]))}). Received {len(self.noise_shape)} sizes")
        return tuple(n if k is None else k for n, k in zip(batch_shape, self.noise_shape))

    def call_train(self, x, mask=None):
        """x / (1 - rate) where the mask (of mask_shape, broadcast to x) is True, 0 elsewhere; mask None: the identity."""
        if mask is None or self.rate == 0:  # Keras too leaves the input alone at rate 0
            return None, x, {"mask": None}
        return None, ops.dropout(x, mask, self.rate), {"mask": mask}

    def backward(self, x, pre, out, d_out, saved):
        mask = saved.get("mask")
        return None, (d_out if mask is None or self.rate == 0 else ops.dropout_backward(d_out, mask, self.rate)), {}

    def cell_backward(self, g, x, out):
        """The gradient passes unchanged: a training workbook drops nothing (Dropout as the identity, with a note)."""
        return g

    def cell_masked(self, v, m):
        """v × m / (1 − rate) of a given mask cell m (1 kept, 0 dropped): the training output from its input v, and
        dL/dx from dL/d(out) (ops.dropout and dropout_backward); 0 at rate 1."""
        return f"0*{v}" if self.rate == 1 else f"{v}*{m}/{formulas.number(1.0 - self.rate)}"

    def mask_index(self, idx, mask_shape):
        """The mask element that element idx of a sample reads (a broadcast axis of the mask, size 1, reads 0)."""
        return tuple(0 if n == 1 else i for i, n in zip(idx, mask_shape))

    def formula_train(self, idx, x, mask, sheet):
        """The training output's cell: the input's cell × its mask cell / (1 − rate); mask a Placement of given cells."""
        return self.cell_masked(x.ref(idx, sheet), mask.ref(self.mask_index(idx, mask.shape), sheet))

    def formula_backward(self, idx, g, x, out, w, sheet):
        """dL/dx: through the mask cells w["mask"] when the step drops units, else unchanged (the identity)."""
        if "mask" not in w:
            return super().formula_backward(idx, g, x, out, w, sheet)
        return self.cell_masked(g.ref(idx, sheet), w["mask"].ref(self.mask_index(idx, w["mask"].shape), sheet))

    def apply(self, x):
        return x

    def cell(self, x):
        return x


class SpatialDropout2D(Dropout):
    """Keras SpatialDropout2D: the identity at inference; while training it drops whole channels (mask (N, 1, 1, C))."""

    @classmethod
    def from_config(cls, config):
        _channels_last(config, "SpatialDropout2D")
        return cls(config["rate"], name=config.get("name"))

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise CnncalcError(f"Layer {self.name!r} (SpatialDropout2D) needs an image input. Expected shape (height, width, channels). Received {tuple(input_shape)}")
        return tuple(input_shape)

    def mask_shape(self, batch_shape):
        return (batch_shape[0], 1, 1, batch_shape[3])


