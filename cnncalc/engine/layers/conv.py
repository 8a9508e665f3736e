"""Keras Conv2D."""

import numpy as np

from cnncalc.sheets import formulas
from cnncalc.engine import ops
from cnncalc.engine.layers.base import Layer, _activation, _channels_last, _flag, _padding, _pair, _positive_int
from cnncalc.errors import CnncalcError


class Conv2D(Layer):
    """Keras Conv2D: out[i, j, f] = act(sum_{a,b,c} x[i*s + a, j*s + b, c] * kernel[a, b, c, f] + bias[f])."""

    weight_names = ("kernel", "bias")

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", dilation_rate=(1, 1),
                 activation=None, use_bias=True, name=None):
        super().__init__(name)
        self.filters = _positive_int(filters, "filters")
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        self.padding = _padding(padding)
        self.dilation_rate = _pair(dilation_rate, "dilation_rate")
        if self.strides != (1, 1) and self.dilation_rate != (1, 1):
            raise CnncalcError(
                f"Invalid arguments for Conv2D {name!r}. Expected strides=1 when dilation_rate > 1 (as Keras requires). "
                f"Received strides={self.strides}, dilation_rate={self.dilation_rate}"
            )
        self.activation = _activation(activation)
        self.use_bias = bool(use_bias)

    @classmethod
    def from_config(cls, config):
        _channels_last(config, "Conv2D")
        if config.get("groups", 1) != 1 or isinstance(config.get("groups"), bool):
            raise CnncalcError(f"Layer {config.get('name')!r} (Conv2D) uses groups={config['groups']}. Expected groups=1. Received a grouped convolution, which cnncalc does not support")
        return cls(config["filters"], config["kernel_size"], config.get("strides", 1), config.get("padding", "valid"),
                   config.get("dilation_rate", 1), config.get("activation"), _flag(config, "use_bias", True), config.get("name"))

    def get_config(self):
        return {"name": self.name, "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "dilation_rate": list(self.dilation_rate),
                "activation": self.activation, "use_bias": self.use_bias}

    def weight_shapes(self, input_shape):
        shapes = {"kernel": (*self.kernel_size, input_shape[-1], self.filters)}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def weight_layouts(self):
        return {"kernel": "kernel", "bias": "row"}

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 3:
            raise CnncalcError(f"Layer {self.name!r} (Conv2D) needs an image input. Expected shape (height, width, channels). Received {tuple(input_shape)}")
        h, w = (ops.conv_output_length(n, k, s, self.padding, d)
                for n, k, s, d in zip(input_shape[:2], self.kernel_size, self.strides, self.dilation_rate))
        if h <= 0 or w <= 0:
            raise CnncalcError(f"Layer {self.name!r} (Conv2D) gets an input too small for its kernel. Expected at least {self.kernel_size} with padding='valid'. Received {tuple(input_shape[:2])}")
        return (h, w, self.filters)

    def input_padding(self, input_shape):
        """((top, bottom), (left, right)) zeros the formula view adds before the windows."""
        return ops.padding_amounts(input_shape[:2], self.kernel_size, self.strides, self.padding, self.dilation_rate)

    def call(self, x):
        w = self._w(x)
        return self._activate(ops.conv2d(x, w["kernel"], w.get("bias"), self.strides, self.padding, self.dilation_rate))

    def formula(self, idx, x, w, sheet):
        """x is the (already zero-padded) input. One SUMPRODUCT per input channel, plus the bias."""
        i, j, f = idx
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.strides, self.dilation_rate
        k = w["kernel"]
        terms = []
        for c in range(x.shape[2]):
            if (dh, dw) == (1, 1):
                win = x.span((i * sh, j * sw, c), (i * sh + kh - 1, j * sw + kw - 1, c), sheet)
                terms.append(formulas.sumproduct(win, k.span((0, 0, c, f), (kh - 1, kw - 1, c, f), sheet, absolute=True)))
            else:
                terms.append(formulas.products(
                    (x.ref((i * sh + a * dh, j * sw + b * dw, c), sheet), k.ref((a, b, c, f), sheet, absolute=True))
                    for a in range(kh) for b in range(kw)))
        if self.use_bias:
            terms.append(w["bias"].ref((f,), sheet, absolute=True))
        return formulas.add(terms)

    def backward(self, x, pre, out, d_out, saved):
        """Through the activation to d_pre, then conv2d_backward: the input's, kernel's and bias's gradients."""
        d_pre = self._deactivate(pre, out, d_out)
        d_x, d_kernel, d_bias = ops.conv2d_backward(x, self._w(x)["kernel"], d_pre, self.strides, self.padding, self.dilation_rate)
        return d_pre, d_x, ({"kernel": d_kernel, "bias": d_bias} if self.use_bias else {"kernel": d_kernel})

    # The backward formulas stay SUMPRODUCTs over rectangles with two helper tensors: dL/dz spread over the padded
    # input's grid (each value E - 1 + i * stride rows down, zeros around and between: E the dilated kernel's extent),
    # and the kernel dilated and turned 180°. Then dL/dx is the full correlation of the two, as conv2d_backward's d_xp.

    def dilated_extent(self):
        """(Eh, Ew) = ((kh - 1) * dh + 1, (kw - 1) * dw + 1): the rows and columns one window spans."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation_rate))

    def spread_gradient(self, padded_shape, d_pre):
        """dL/dz (Ho, Wo, F) of one sample spread over (Hp + Eh - 1, Wp + Ew - 1, F), Hp x Wp the padded input."""
        (eh, ew), (sh, sw) = self.dilated_extent(), self.strides
        ho, wo, f = d_pre.shape
        grid = np.zeros((padded_shape[0] + eh - 1, padded_shape[1] + ew - 1, f))
        grid[eh - 1:eh - 1 + (ho - 1) * sh + 1:sh, ew - 1:ew - 1 + (wo - 1) * sw + 1:sw] = d_pre
        return grid

    def formula_spread(self, idx, g, sheet):
        """The spread grid's cell idx: a reference to dL/dz (at g), or None for a zero."""
        (eh, ew), (sh, sw) = self.dilated_extent(), self.strides
        r, c, f = idx[0] - (eh - 1), idx[1] - (ew - 1), idx[2]
        if r < 0 or c < 0 or r % sh or c % sw or r // sh >= g.shape[0] or c // sw >= g.shape[1]:
            return None
        return g.ref((r // sh, c // sw, f), sheet)

    def turned_kernel(self, kernel):
        """The kernel dilated (zeros between its taps) and turned 180°: (Eh, Ew, Cin, F)."""
        (eh, ew), (dh, dw) = self.dilated_extent(), self.dilation_rate
        out = np.zeros((eh, ew, *kernel.shape[2:]))
        out[::dh, ::dw] = kernel
        return out[::-1, ::-1]

    def formula_turned(self, idx, kernel, sheet):
        """The turned kernel's cell idx: a reference to the kernel (at `kernel`), or None for a zero between taps."""
        (eh, ew), (dh, dw) = self.dilated_extent(), self.dilation_rate
        a, b = eh - 1 - idx[0], ew - 1 - idx[1]
        return None if a % dh or b % dw else kernel.ref((a // dh, b // dw, *idx[2:]), sheet, absolute=True)

    def formula_backward(self, idx, g, x, out, w, sheet):
        """dL/dx[r, c, ci] = sum over filters f of SUMPRODUCT(the spread dL/dz (g) at (r + top, c + left), turned kernel
        w["kernel"][:, :, ci, f]); x is the input before padding (its shape gives the padding)."""
        r, c, ci = idx
        (eh, ew), ((top, _), (left, _)) = self.dilated_extent(), self.input_padding(x.shape)
        r, c = r + top, c + left
        return formulas.add([formulas.sumproduct(g.span((r, c, f), (r + eh - 1, c + ew - 1, f), sheet),
                                                 w["kernel"].span((0, 0, ci, f), (eh - 1, ew - 1, ci, f), sheet, absolute=True))
                             for f in range(self.filters)])

    def formula_weight_gradient(self, wname, idx, g, x, sheet, spread=None):
        """dL/dkernel[a, b, c, f] = SUMPRODUCT(the padded input x's window that tap (a, b) sees, dL/dz[:, :, f] (g));
        with strides the spread grid stands for dL/dz, so the window stays one rectangle. dL/dbias[f] = SUM(dL/dz[:, :, f])."""
        ho, wo = g.shape[:2]
        if wname == "bias":
            (f,) = idx
            return f"SUM({g.span((0, 0, f), (ho - 1, wo - 1, f), sheet)})"
        a, b, c, f = idx
        (sh, sw), (dh, dw) = self.strides, self.dilation_rate
        hh, ww = (ho - 1) * sh + 1, (wo - 1) * sw + 1
        window = x.span((a * dh, b * dw, c), (a * dh + hh - 1, b * dw + ww - 1, c), sheet)
        if (sh, sw) == (1, 1):
            return formulas.sumproduct(window, g.span((0, 0, f), (ho - 1, wo - 1, f), sheet))
        eh, ew = self.dilated_extent()
        return formulas.sumproduct(window, spread.span((eh - 1, ew - 1, f), (eh + hh - 2, ew + ww - 2, f), sheet))
