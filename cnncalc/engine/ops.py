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


def zero_pad2d_backward(d_out, pads):
    """dL/dx of zero_pad2d: the gradient of the padded grid with the padding cut off."""
    (top, bottom), (left, right) = pads
    return d_out[:, top:d_out.shape[1] - bottom, left:d_out.shape[2] - right, :]


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


def conv2d_backward(x, kernel, d_out, strides=(1, 1), padding="valid", dilation_rate=(1, 1)):
    """Gradients of conv2d given dL/d(out) (N, Ho, Wo, Cout): (d_x, d_kernel, d_bias).

    d_kernel[a, b, c, f] = sum_{n, i, j} xpad[n, i*sh + a*dh, j*sw + b*dw, c] * d_out[n, i, j, f]
    d_xpad[n, i*sh + a*dh, j*sw + b*dw, c] += sum_f d_out[n, i, j, f] * kernel[a, b, c, f]  (then the padding is cut off)
    d_bias[f] = sum_{n, i, j} d_out[n, i, j, f]
    """
    kh, kw = kernel.shape[:2]
    (sh, sw), (dh, dw) = strides, dilation_rate
    pads = padding_amounts(x.shape[1:3], (kh, kw), strides, padding, dilation_rate)
    xp = zero_pad2d(x, pads)
    ho, wo = d_out.shape[1:3]
    d_xp, d_kernel = np.zeros_like(xp), np.zeros_like(kernel)
    # One kernel tap (a, b) at a time, as in conv2d.
    for a in range(kh):
        for b in range(kw):
            rows = slice(a * dh, a * dh + (ho - 1) * sh + 1, sh)
            cols = slice(b * dw, b * dw + (wo - 1) * sw + 1, sw)
            d_kernel[a, b] = np.einsum("nijc,nijf->cf", xp[:, rows, cols, :], d_out)
            d_xp[:, rows, cols, :] += d_out @ kernel[a, b].T
    return zero_pad2d_backward(d_xp, pads), d_kernel, d_out.sum(axis=(0, 1, 2))


def conv2d_backward_naive(x, kernel, d_out, strides=(1, 1), padding="valid", dilation_rate=(1, 1)):
    """conv2d_backward one output cell at a time: each d_out cell sends its share back to its window and its kernel."""
    kh, kw = kernel.shape[:2]
    (sh, sw), (dh, dw) = strides, dilation_rate
    pads = padding_amounts(x.shape[1:3], (kh, kw), strides, padding, dilation_rate)
    xp = zero_pad2d(x, pads)
    d_xp, d_kernel = np.zeros_like(xp), np.zeros_like(kernel)
    n_, ho, wo, cout = d_out.shape
    for n in range(n_):
        for i in range(ho):
            for j in range(wo):
                rows = slice(i * sh, i * sh + (kh - 1) * dh + 1, dh)
                cols = slice(j * sw, j * sw + (kw - 1) * dw + 1, dw)
                for f in range(cout):
                    d_kernel[:, :, :, f] += xp[n, rows, cols, :] * d_out[n, i, j, f]
                    d_xp[n, rows, cols, :] += kernel[:, :, :, f] * d_out[n, i, j, f]
    return zero_pad2d_backward(d_xp, pads), d_kernel, d_out.sum(axis=(0, 1, 2))


def _pool_padded(x, pool_size, strides, padding, mode):
    """(x padded for pooling, a grid of 1 on the real cells and 0 on the padding): max pads with -inf, so the padding
    never wins; avg and sum with 0, and avg divides by the real cells only."""
    pads = padding_amounts(x.shape[1:3], pool_size, strides, padding)
    if mode == "max":
        fill = -np.inf
    elif mode in ("avg", "sum"):
        fill = 0.0
    else:
        raise CnncalcError(f"Invalid pooling mode. Expected 'max', 'avg' or 'sum'. Received mode={mode!r}")
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=fill)
    ones = np.pad(np.ones(x.shape[1:3], dtype=x.dtype), pads)
    return xp, ones


def pool2d(x, pool_size, strides, padding, mode):
    """Keras MaxPooling2D / AveragePooling2D on (N, H, W, C), and the chapter's sum pooling (mode "sum").

    `same` pads bottom/right; max ignores the padding, average divides by the count of real cells.
    """
    (ph, pw), (sh, sw) = pool_size, strides
    ho = conv_output_length(x.shape[1], ph, sh, padding)
    wo = conv_output_length(x.shape[2], pw, sw, padding)
    xp, ones = _pool_padded(x, pool_size, strides, padding, mode)
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


def pool2d_backward(x, d_out, pool_size, strides, padding, mode):
    """dL/dx of pool2d given dL/d(out). Each window passes its output's gradient back to
    max: one cell, its first largest in row-major order (as jax differentiates Keras's reduce_window max);
    avg: every real cell, divided by their count; sum: every cell. Overlapping windows add up.
    """
    (ph, pw), (sh, sw) = pool_size, strides
    pads = padding_amounts(x.shape[1:3], pool_size, strides, padding)
    xp, ones = _pool_padded(x, pool_size, strides, padding, mode)
    d_xp = np.zeros_like(xp)
    n, _, _, c = x.shape
    for i in range(d_out.shape[1]):
        for j in range(d_out.shape[2]):
            rows, cols = slice(i * sh, i * sh + ph), slice(j * sw, j * sw + pw)
            g = d_out[:, i, j, :][:, None, None, :]
            if mode == "max":
                first = xp[:, rows, cols, :].reshape(n, ph * pw, c).argmax(axis=1)  # numpy's argmax: the first of ties
                d_xp[:, rows, cols, :] += (np.arange(ph * pw)[None, :, None] == first[:, None, :]).reshape(n, ph, pw, c) * g
            elif mode == "sum":
                d_xp[:, rows, cols, :] += g
            else:
                d_xp[:, rows, cols, :] += g / ones[rows, cols].sum()
    return zero_pad2d_backward(d_xp, pads)


def global_pool2d(x, mode, keepdims=False):
    """Keras GlobalMaxPooling2D / GlobalAveragePooling2D: (N, H, W, C) -> (N, C), or (N, 1, 1, C) with keepdims."""
    if mode == "max":
        return x.max(axis=(1, 2), keepdims=keepdims)
    elif mode == "avg":
        return x.mean(axis=(1, 2), keepdims=keepdims)
    else:
        raise CnncalcError(f"Invalid pooling mode. Expected 'max' or 'avg'. Received mode={mode!r}")


def global_pool2d_backward(x, d_out, mode):
    """dL/dx of global_pool2d (keepdims or not): avg shares each channel's gradient over its H*W cells;
    max gives it to the channel's largest cell, split equally among ties (as jax differentiates jnp.max)."""
    g = d_out.reshape(x.shape[0], 1, 1, x.shape[3])
    if mode == "max":
        hit = x == x.max(axis=(1, 2), keepdims=True)
        return hit * g / hit.sum(axis=(1, 2), keepdims=True)
    elif mode == "avg":
        return np.broadcast_to(g / (x.shape[1] * x.shape[2]), x.shape).copy()
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


def batch_moments(x):
    """Each channel's mean and (biased, divide-by-count) variance over the batch and spatial axes, as Keras's
    BatchNormalization computes them while training."""
    axes = tuple(range(x.ndim - 1))
    return x.mean(axis=axes), x.var(axis=axes)


def batch_normalization_backward(x, mean, variance, gamma, d_out, epsilon=1e-3):
    """Gradients of batch_normalization on the batch's own statistics (training): (d_x, d_gamma, d_beta).

    With xhat = (x - mean) / sqrt(variance + epsilon) and g = d_out * gamma, over each channel's values:
    d_x = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(variance + epsilon);  d_gamma = sum(d_out * xhat);  d_beta = sum(d_out)
    """
    axes = tuple(range(x.ndim - 1))
    inv = 1 / np.sqrt(variance + epsilon)
    xhat = (x - mean) * inv
    g = d_out if gamma is None else d_out * gamma
    d_x = (g - g.mean(axis=axes) - xhat * (g * xhat).mean(axis=axes)) * inv
    return d_x, (d_out * xhat).sum(axis=axes), d_out.sum(axis=axes)


def moving_average(moving, value, momentum):
    """Keras's update of BatchNormalization's moving mean and variance: moving * momentum + value * (1 - momentum)."""
    return moving * momentum + value * (1.0 - momentum)


def flatten(x):
    """Keras Flatten: row-major over (H, W, C), so channel varies fastest."""
    return x.reshape(x.shape[0], -1)


def dense(x, kernel, bias=None):
    """Keras Dense before activation: x (N, in) @ kernel (in, out) + bias (out,)."""
    out = x @ kernel
    return out if bias is None else out + bias


def dense_backward(x, kernel, d_out):
    """Gradients of dense given dL/d(out) (N, out): (d_x = d_out @ kernel.T, d_kernel = x.T @ d_out, d_bias = sum_n d_out)."""
    return d_out @ kernel.T, x.T @ d_out, d_out.sum(axis=0)


def dropout(x, mask, rate):
    """Keras Dropout while training: x / (1 - rate) where mask is True, 0 where it is False (mask broadcasts to x);
    all zeros at rate 1, as Keras."""
    if rate == 1:
        return np.zeros_like(x)
    return np.where(mask, x / (1.0 - rate), 0.0)


def dropout_backward(d_out, mask, rate):
    """dL/dx of dropout: the kept cells' gradient, scaled by 1 / (1 - rate) (none at rate 1)."""
    return dropout(d_out, mask, rate)


# ---------------------------------------------------------------- activations
# Keras 3's definitions (keras/src/activations/activations.py and the jax.nn functions it calls).
# Constants are Python floats so that a float32 input stays float32.

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
GELU_TANH_C = math.sqrt(2 / math.pi)
_erf = np.vectorize(math.erf, otypes=[np.float64])
_erfc = np.vectorize(math.erfc, otypes=[np.float64])

# Each activation's derivative sits next to it: `<name>_derivative(x)` is d(activation)/dx element by element, with
# the value jax's autodiff gives Keras's definition at a kink (relu at 0 -> 0, leaky_relu at 0 -> 1, relu6 and
# hard_sigmoid at their corners -> 0), so that the gradients equal Keras's fit.


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """Keras relu: x above threshold (capped at max_value), negative_slope * (x - threshold) at or below it."""
    if negative_slope == 0 and max_value is None and threshold == 0:
        return np.maximum(x, 0)
    top = x if max_value is None else np.minimum(x, max_value)
    return np.where(x > threshold, top, negative_slope * (x - threshold))


def relu_derivative(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """d relu/dx, following the branches of Keras's ReLU.static_call (keras/src/activations/activations.py):
    leaky (slope only): 1 for x >= 0, else negative_slope;  otherwise 1 above the threshold (relu6 and plain relu:
    0 at their corners), times the cap's clip (1 below max_value, 1/2 exactly at it, as jnp.clip, 0 above),
    plus negative_slope below the threshold.
    """
    if negative_slope != 0 and max_value is None and threshold == 0:
        return np.where(x >= 0, 1.0, negative_slope).astype(x.dtype)
    if threshold != 0:
        slope = (x > threshold).astype(x.dtype)
    elif max_value == 6:  # Keras calls jax.nn.relu6 here, whose custom derivative is 0 at both corners
        slope, max_value = ((x > 0) & (x < 6)).astype(x.dtype), None
    else:
        slope = (x > 0).astype(x.dtype)
    if max_value is not None:
        slope = slope * np.where(x < max_value, 1.0, np.where(x == max_value, 0.5, 0.0))
    if negative_slope != 0:
        slope = slope + negative_slope * (x < threshold)
    return slope.astype(x.dtype)


def relu6(x):
    return relu(x, max_value=6.0)


def relu6_derivative(x):
    return relu_derivative(x, max_value=6.0)


def leaky_relu(x, negative_slope=0.2):
    """Keras's leaky_relu activation (its default slope is 0.2; the LeakyReLU layer's is 0.3)."""
    return relu(x, negative_slope=negative_slope)


def leaky_relu_derivative(x, negative_slope=0.2):
    return relu_derivative(x, negative_slope=negative_slope)


def elu(x, alpha=1.0):
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def elu_derivative(x, alpha=1.0):
    """1 for x > 0, alpha * exp(x) otherwise (alpha at 0)."""
    return np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0))).astype(x.dtype)


def selu(x):
    return SELU_SCALE * elu(x, SELU_ALPHA)


def selu_derivative(x):
    return SELU_SCALE * elu_derivative(x, SELU_ALPHA)


def gelu(x, approximate=False):
    """Keras gelu: exact x/2 * (1 + erf(x/sqrt 2)) by default (what activation="gelu" means); tanh form if approximate."""
    if approximate:
        return 0.5 * x * (1 + np.tanh(GELU_TANH_C * (x + 0.044715 * x**3)))
    return (0.5 * x * (1 + _erf(x * math.sqrt(0.5)))).astype(x.dtype)


def gelu_derivative(x, approximate=False):
    """Exact: Phi(x) + x * phi(x), with Phi(x) = erfc(-x / sqrt 2) / 2 as jax writes it; tanh form: its derivative."""
    if approximate:
        t = np.tanh(GELU_TANH_C * (x + 0.044715 * x**3))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_TANH_C * (1 + 3 * 0.044715 * x**2)
    return (0.5 * _erfc(-x * math.sqrt(0.5)) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)).astype(x.dtype)


def gelu_tanh(x):
    return gelu(x, approximate=True)


def gelu_tanh_derivative(x):
    return gelu_derivative(x, approximate=True)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def sigmoid_derivative(x):
    s = sigmoid(x)
    return s * (1 - s)


def hard_sigmoid(x):
    """Keras 3: relu6(x + 3) / 6 (Keras 2 used 0.2 * x + 0.5, clipped)."""
    return relu6(x + 3) / 6


def hard_sigmoid_derivative(x):
    """1/6 strictly between -3 and 3, else 0 (jax.nn.relu6(x + 3) / 6: no slope at the corners)."""
    z = x + 3.0
    return np.where((z > 0) & (z < 6), 1 / 6, 0.0).astype(x.dtype)


def hard_silu(x):
    return x * hard_sigmoid(x)


def hard_silu_derivative(x):
    return hard_sigmoid(x) + x * hard_sigmoid_derivative(x)


def tanh(x):
    return np.tanh(x)


def tanh_derivative(x):
    t = np.tanh(x)
    return (1 + t) * (1 - t)


def softplus(x):
    """log(1 + exp(x)), computed as max(x, 0) + log(1 + exp(-|x|)) so it never overflows."""
    return np.logaddexp(x, 0)


def softplus_derivative(x):
    """exp(x - softplus(x)), which is sigmoid(x) (the form jax's logaddexp differentiates to)."""
    return np.exp(x - softplus(x))


def softsign(x):
    return x / (np.abs(x) + 1)


def softsign_derivative(x):
    return 1 / (np.abs(x) + 1) ** 2


def silu(x):
    """x * sigmoid(x), also called swish."""
    return x * sigmoid(x)


def silu_derivative(x):
    s = sigmoid(x)
    return s + x * s * (1 - s)


def exponential(x):
    return np.exp(x)


def exponential_derivative(x):
    return np.exp(x)


def linear(x):
    return x


def linear_derivative(x):
    return np.ones_like(x)


def softmax_steps(x):
    """Keras softmax over the last axis, in the steps a spreadsheet shows: (max, exp(x - max), sum, probabilities)."""
    m = x.max(axis=-1, keepdims=True)
    e = np.exp(x - m)
    s = e.sum(axis=-1, keepdims=True)
    return m, e, s, e / s


def softmax(x):
    return softmax_steps(x)[3]


def softmax_backward(y, d_y):
    """dL/dx of softmax (y its output) given dL/dy, over the last axis: y * (d_y - sum(d_y * y))."""
    return y * (d_y - (d_y * y).sum(axis=-1, keepdims=True))


def log_softmax_steps(x):
    """Keras log_softmax over the last axis, in spreadsheet steps: (max, exp(x - max), sum, x - max - log(sum))."""
    m, e, s, _ = softmax_steps(x)
    return m, e, s, (x - m) - np.log(s)


def log_softmax(x):
    return log_softmax_steps(x)[3]


def log_softmax_backward(x, d_y):
    """dL/dx of log_softmax given dL/dy, over the last axis: d_y - softmax(x) * sum(d_y)."""
    return d_y - softmax(x) * d_y.sum(axis=-1, keepdims=True)


ACTIVATIONS = {
    "linear": linear, "relu": relu, "relu6": relu6, "leaky_relu": leaky_relu, "elu": elu, "selu": selu,
    "gelu": gelu, "gelu_tanh": gelu_tanh, "sigmoid": sigmoid, "hard_sigmoid": hard_sigmoid, "hard_silu": hard_silu,
    "tanh": tanh, "softplus": softplus, "softsign": softsign, "silu": silu, "exponential": exponential,
    "softmax": softmax, "log_softmax": log_softmax,
}
ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}  # Keras accepts these, and saves the name on the right
VECTOR_ACTIVATIONS = ("softmax", "log_softmax")  # not element-wise: a spreadsheet computes them in steps
DERIVATIVES = {
    "linear": linear_derivative, "relu": relu_derivative, "relu6": relu6_derivative, "leaky_relu": leaky_relu_derivative,
    "elu": elu_derivative, "selu": selu_derivative, "gelu": gelu_derivative, "gelu_tanh": gelu_tanh_derivative,
    "sigmoid": sigmoid_derivative, "hard_sigmoid": hard_sigmoid_derivative, "hard_silu": hard_silu_derivative,
    "tanh": tanh_derivative, "softplus": softplus_derivative, "softsign": softsign_derivative, "silu": silu_derivative,
    "exponential": exponential_derivative,
}  # the element-wise activations' derivatives; softmax and log_softmax have softmax_backward, log_softmax_backward


def activation(name):
    """The numpy function of a Keras activation name (Keras 3's canonical name: 'silu', not 'swish')."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        alias = f" (Keras's alias of {ALIASES[name]!r})" if isinstance(name, str) and name in ALIASES else ""
        raise CnncalcError(
            f"Unknown activation. Expected one of {', '.join(ACTIVATIONS)}. Received activation={name!r}{alias}"
        ) from None


def activation_backward(name, x, y, d_y):
    """dL/dx of activation `name` at x (with output y), given dL/dy: d_y * derivative(x) element by element,
    or the vector rule of softmax / log_softmax over the last axis."""
    activation(name)  # raises a CnncalcError naming an unknown activation
    if name == "softmax":
        return softmax_backward(y, d_y)
    elif name == "log_softmax":
        return log_softmax_backward(x, d_y)
    else:
        return d_y * DERIVATIVES[name](x)
