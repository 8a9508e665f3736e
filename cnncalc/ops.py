"""Pure numpy operations with Keras's semantics, plus the shape and padding math they use.

Tensors are channels-last and carry the batch axis first: images are (N, H, W, C), vectors (N, D).
Every function works in the dtype of its inputs (float64 by default in cnncalc, float32 on request).
"""

import numpy as np

from cnncalc.errors import CnncalcError

# ---------------------------------------------------------------- shape math (pure, no arrays)


def conv_output_length(length, window, stride, padding, dilation=1):
    """Output length of a conv or pooling axis, as Keras computes it.

    valid: floor((length - effective_window) / stride) + 1;  same: ceil(length / stride).
    """
    effective = (window - 1) * dilation + 1
    if padding == "valid":
        return max(0, (length - effective) // stride + 1)
    elif padding == "same":
        return -(-length // stride)
    else:
        raise CnncalcError(f"Invalid value for argument `padding`. Expected 'valid' or 'same'. Received padding={padding!r}")


def same_padding(length, window, stride, dilation=1):
    """Zeros added (before, after) an axis for `same` padding; the extra one goes after (bottom/right), as in Keras."""
    effective = (window - 1) * dilation + 1
    out = -(-length // stride)
    total = max(0, (out - 1) * stride + effective - length)
    return total // 2, total - total // 2


def padding_amounts(shape_hw, window, strides, padding, dilation=(1, 1)):
    """((top, bottom), (left, right)) zeros for a 2-D window op; all zero for `valid`."""
    if padding == "valid":
        return (0, 0), (0, 0)
    elif padding == "same":
        return tuple(same_padding(n, k, s, d) for n, k, s, d in zip(shape_hw, window, strides, dilation))
    else:
        raise CnncalcError(f"Invalid value for argument `padding`. Expected 'valid' or 'same'. Received padding={padding!r}")


# ---------------------------------------------------------------- layers' core ops


def zero_pad2d(x, pads):
    """Pad (N, H, W, C) with zeros: pads = ((top, bottom), (left, right))."""
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def conv2d(x, kernel, bias=None, strides=(1, 1), padding="valid", dilation_rate=(1, 1)):
    """Keras Conv2D before activation: cross-correlation (no kernel flip).

    x (N, H, W, Cin), kernel (kh, kw, Cin, Cout), bias (Cout,) -> (N, Ho, Wo, Cout).
    out[n, i, j, f] = sum_{a, b, c} xpad[n, i*sh + a*dh, j*sw + b*dw, c] * kernel[a, b, c, f] + bias[f]
    """
    kh, kw = kernel.shape[:2]
    (sh, sw), (dh, dw) = strides, dilation_rate
    xp = zero_pad2d(x, padding_amounts(x.shape[1:3], (kh, kw), strides, padding, dilation_rate))
    ho = conv_output_length(x.shape[1], kh, sh, padding, dh)
    wo = conv_output_length(x.shape[2], kw, sw, padding, dw)
    out = np.zeros((x.shape[0], ho, wo, kernel.shape[3]), dtype=x.dtype)
    # One kernel tap (a, b) at a time: the same sum as the cell formula, vectorised over windows.
    for a in range(kh):
        for b in range(kw):
            rows = slice(a * dh, a * dh + (ho - 1) * sh + 1, sh)
            cols = slice(b * dw, b * dw + (wo - 1) * sw + 1, sw)
            out += xp[:, rows, cols, :] @ kernel[a, b]
    if bias is not None:
        out += bias
    return out


def conv2d_naive(x, kernel, bias=None, strides=(1, 1), padding="valid", dilation_rate=(1, 1)):
    """conv2d written as a student computes it, one output cell at a time (the reference for conv2d)."""
    kh, kw, _, cout = kernel.shape
    (sh, sw), (dh, dw) = strides, dilation_rate
    xp = zero_pad2d(x, padding_amounts(x.shape[1:3], (kh, kw), strides, padding, dilation_rate))
    ho = conv_output_length(x.shape[1], kh, sh, padding, dh)
    wo = conv_output_length(x.shape[2], kw, sw, padding, dw)
    out = np.zeros((x.shape[0], ho, wo, cout), dtype=x.dtype)
    for n in range(x.shape[0]):
        for i in range(ho):
            for j in range(wo):
                window = xp[n, i * sh:i * sh + (kh - 1) * dh + 1:dh, j * sw:j * sw + (kw - 1) * dw + 1:dw, :]
                for f in range(cout):
                    out[n, i, j, f] = np.sum(window * kernel[:, :, :, f]) + (0 if bias is None else bias[f])
    return out


def pool2d(x, pool_size, strides, padding, mode):
    """Keras MaxPooling2D / AveragePooling2D on (N, H, W, C).

    `same` pads bottom/right; max ignores the padding, average divides by the count of real cells.
    """
    (ph, pw), (sh, sw) = pool_size, strides
    ho = conv_output_length(x.shape[1], ph, sh, padding)
    wo = conv_output_length(x.shape[2], pw, sw, padding)
    pads = padding_amounts(x.shape[1:3], pool_size, strides, padding)
    if mode == "max":
        fill = -np.inf
    elif mode == "avg":
        fill = 0.0
    else:
        raise CnncalcError(f"Invalid pooling mode. Expected 'max' or 'avg'. Received mode={mode!r}")
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=fill)
    ones = np.pad(np.ones(x.shape[1:3], dtype=x.dtype), pads)
    out = np.zeros((x.shape[0], ho, wo, x.shape[3]), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            window = xp[:, i * sh:i * sh + ph, j * sw:j * sw + pw, :]
            if mode == "max":
                out[:, i, j, :] = window.max(axis=(1, 2))
            else:
                count = ones[i * sh:i * sh + ph, j * sw:j * sw + pw].sum()
                out[:, i, j, :] = window.sum(axis=(1, 2)) / count
    return out


def flatten(x):
    """Keras Flatten: row-major over (H, W, C), so channel varies fastest."""
    return x.reshape(x.shape[0], -1)


def dense(x, kernel, bias=None):
    """Keras Dense before activation: x (N, in) @ kernel (in, out) + bias (out,)."""
    out = x @ kernel
    return out if bias is None else out + bias


# ---------------------------------------------------------------- activations


def relu(x):
    return np.maximum(x, 0)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def tanh(x):
    return np.tanh(x)


def linear(x):
    return x


def softmax_steps(x):
    """Keras softmax over the last axis, in the steps a spreadsheet shows: (max, exp(x - max), sum, probabilities)."""
    m = x.max(axis=-1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=-1, keepdims=True)
    return m, e, s, e / s


def softmax(x):
    return softmax_steps(x)[3]


ACTIVATIONS = {
    "linear": linear,
    "relu": relu,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "softmax": softmax,
}


def activation(name):
    """The numpy function of a Keras activation name."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise CnncalcError(
            f"Unknown activation. Expected one of {', '.join(sorted(ACTIVATIONS))}. Received activation={name!r}"
        ) from None
