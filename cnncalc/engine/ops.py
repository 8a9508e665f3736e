"""Pure numpy operations with Keras's semantics, plus the shape and padding math they use.

Tensors are channels-last and carry the batch axis first: images are (N, H, W, C), vectors (N, D).
Every function works in the dtype of its inputs (float64 by default in cnncalc, float32 on request).
"""

import math

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


def reshape_output_shape(input_shape, target_shape):
    """Keras Reshape's output shape: target_shape with its one -1 (if any) resolved."""
    size, known = math.prod(input_shape), math.prod(n for n in target_shape if n != -1)
    if list(target_shape).count(-1) > 1 or any(n <= 0 and n != -1 for n in target_shape):
        raise CnncalcError(f"Invalid value for argument `target_shape`. Expected positive sizes and at most one -1. Received target_shape={tuple(target_shape)}")
    if -1 in target_shape and size % known == 0:
        return tuple(size // known if n == -1 else n for n in target_shape)
    elif -1 not in target_shape and size == known:
        return tuple(target_shape)
    else:
        raise CnncalcError(
            f"Invalid value for argument `target_shape`. Expected a shape of {size} elements, as the input {tuple(input_shape)} has. "
            f"Received target_shape={tuple(target_shape)}"
        )


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
    """Keras MaxPooling2D / AveragePooling2D on (N, H, W, C), and the chapter's sum pooling (mode "sum").

    `same` pads bottom/right; max ignores the padding, average divides by the count of real cells.
    """
    (ph, pw), (sh, sw) = pool_size, strides
    ho = conv_output_length(x.shape[1], ph, sh, padding)
    wo = conv_output_length(x.shape[2], pw, sw, padding)
    pads = padding_amounts(x.shape[1:3], pool_size, strides, padding)
    if mode == "max":
        fill = -np.inf
    elif mode in ("avg", "sum"):
        fill = 0.0
    else:
        raise CnncalcError(f"Invalid pooling mode. Expected 'max', 'avg' or 'sum'. Received mode={mode!r}")
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=fill)
    ones = np.pad(np.ones(x.shape[1:3], dtype=x.dtype), pads)
    out = np.zeros((x.shape[0], ho, wo, x.shape[3]), dtype=x.dtype)
    for i in range(ho):
        for j in range(wo):
            window = xp[:, i * sh:i * sh + ph, j * sw:j * sw + pw, :]
            if mode == "max":
                out[:, i, j, :] = window.max(axis=(1, 2))
            elif mode == "sum":
                out[:, i, j, :] = window.sum(axis=(1, 2))
            else:
                count = ones[i * sh:i * sh + ph, j * sw:j * sw + pw].sum()
                out[:, i, j, :] = window.sum(axis=(1, 2)) / count
    return out


def global_pool2d(x, mode, keepdims=False):
    """Keras GlobalMaxPooling2D / GlobalAveragePooling2D: (N, H, W, C) -> (N, C), or (N, 1, 1, C) with keepdims."""
    if mode == "max":
        return x.max(axis=(1, 2), keepdims=keepdims)
    elif mode == "avg":
        return x.mean(axis=(1, 2), keepdims=keepdims)
    else:
        raise CnncalcError(f"Invalid pooling mode. Expected 'max' or 'avg'. Received mode={mode!r}")


def batch_normalization(x, mean, variance, gamma=None, beta=None, epsilon=1e-3):
    """Keras BatchNormalization at inference, over the last axis: (x - mean) / sqrt(variance + epsilon) * gamma + beta."""
    out = (x - mean) / np.sqrt(variance + epsilon)
    if gamma is not None:
        out = out * gamma
    if beta is not None:
        out = out + beta
    return out


def flatten(x):
    """Keras Flatten: row-major over (H, W, C), so channel varies fastest."""
    return x.reshape(x.shape[0], -1)


def dense(x, kernel, bias=None):
    """Keras Dense before activation: x (N, in) @ kernel (in, out) + bias (out,)."""
    out = x @ kernel
    return out if bias is None else out + bias


# ---------------------------------------------------------------- activations
# Keras 3's definitions (keras/src/activations/activations.py and the jax.nn functions it calls).
# Constants are Python floats so that a float32 input stays float32.

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
GELU_TANH_C = math.sqrt(2 / math.pi)
_erf = np.vectorize(math.erf, otypes=[np.float64])


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Keras relu: x above threshold (capped at max_value), negative_slope * (x - threshold) at or below it."""
    if negative_slope == 0 and max_value is None and threshold == 0:
        return np.maximum(x, 0)
    top = x if max_value is None else np.minimum(x, max_value)
    return np.where(x > threshold, top, negative_slope * (x - threshold))


def relu6(x):
    return relu(x, max_value=6.0)


def leaky_relu(x, negative_slope=0.2):
    """Keras's leaky_relu activation (its default slope is 0.2; the LeakyReLU layer's is 0.3)."""
    return relu(x, negative_slope=negative_slope)


def elu(x, alpha=1.0):
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def selu(x):
    return SELU_SCALE * elu(x, SELU_ALPHA)


def gelu(x, approximate=False):
    """Keras gelu: exact x/2 * (1 + erf(x/sqrt 2)) by default (what activation="gelu" means); tanh form if approximate."""
    if approximate:
        return 0.5 * x * (1 + np.tanh(GELU_TANH_C * (x + 0.044715 * x**3)))
    return (0.5 * x * (1 + _erf(x * math.sqrt(0.5)))).astype(x.dtype)


def gelu_tanh(x):
    return gelu(x, approximate=True)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def hard_sigmoid(x):
    """Keras 3: relu6(x + 3) / 6 (Keras 2 used 0.2 * x + 0.5, clipped)."""
    return relu6(x + 3) / 6


def hard_silu(x):
    return x * hard_sigmoid(x)


def tanh(x):
    return np.tanh(x)


def softplus(x):
    """log(1 + exp(x)), computed as max(x, 0) + log(1 + exp(-|x|)) so it never overflows."""
    return np.logaddexp(x, 0)


def softsign(x):
    return x / (np.abs(x) + 1)


def silu(x):
    """x * sigmoid(x), also called swish."""
    return x * sigmoid(x)


def exponential(x):
    return np.exp(x)


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


def log_softmax_steps(x):
    """Keras log_softmax over the last axis, in spreadsheet steps: (max, exp(x - max), sum, x - max - log(sum))."""
    m, e, s, _ = softmax_steps(x)
    return m, e, s, (x - m) - np.log(s)


def log_softmax(x):
    return log_softmax_steps(x)[3]


ACTIVATIONS = {
    "linear": linear, "relu": relu, "relu6": relu6, "leaky_relu": leaky_relu, "elu": elu, "selu": selu,
    "gelu": gelu, "gelu_tanh": gelu_tanh, "sigmoid": sigmoid, "hard_sigmoid": hard_sigmoid, "hard_silu": hard_silu,
    "tanh": tanh, "softplus": softplus, "softsign": softsign, "silu": silu, "exponential": exponential,
    "softmax": softmax, "log_softmax": log_softmax,
}
ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}  # Keras accepts these, and saves the name on the right
VECTOR_ACTIVATIONS = ("softmax", "log_softmax")  # not element-wise: a spreadsheet computes them in steps


def activation(name):
    """The numpy function of a Keras activation name (Keras 3's canonical name: 'silu', not 'swish')."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        alias = f" (Keras's alias of {ALIASES[name]!r})" if isinstance(name, str) and name in ALIASES else ""
        raise CnncalcError(
            f"Unknown activation. Expected one of {', '.join(ACTIVATIONS)}. Received activation={name!r}{alias}"
        ) from None
