"""Written expansions of small convolutions and poolings, as the chapter writes them:
"1×1 + 2×2 + 5×3 + 6×4 = 44", window by window, in English or Chinese."""

import numpy as np
from tabulate import tabulate

from cnncalc.engine import ops
from cnncalc.errors import CnncalcError

LABELS = {
    "en": {"input": "input A", "kernel": "kernel B", "window": "window", "at": "output row {i}, column {j}",
           "padded": "A with zero padding ('same')", "result": "result", "bias": "bias", "relu": "ReLU",
           "conv": "convolution (cross-correlation, as Keras: the kernel is not flipped), stride {s}",
           "pool": "{mode} pooling, window {k}×{k}, stride {s}", "max": "max", "avg": "average", "sum": "sum"},
    "zh": {"input": "输入矩阵 A", "kernel": "卷积核 B", "window": "窗口", "at": "输出第 {i} 行, 第 {j} 列",
           "padded": "补零后的 A（same 填充）", "result": "结果", "bias": "偏置", "relu": "ReLU 激活",
           "conv": "卷积（与 Keras 相同的互相关, 卷积核不翻转）, 步长 {s}",
           "pool": "{mode}池化, 窗口 {k}×{k}, 步长 {s}", "max": "最大", "avg": "平均", "sum": "求和"},
}


def labels(lang):
    try:
        return LABELS[lang]
    except KeyError:
        raise CnncalcError(f"Invalid value for --lang. Expected one of {', '.join(LABELS)}. Received {lang!r}") from None


def num(x):
    """A number as the chapter writes it: 44, 0.5, -0.1108655 (at most 7 significant digits)."""
    x = float(x)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.7g}"


def signed(x):
    """A term after a '+': negative numbers in parentheses, '(−0.5)'."""
    return f"({num(x)})" if x < 0 else num(x)


def matrix_text(m):
    return tabulate([[num(v) for v in row] for row in m], tablefmt="plain", disable_numparse=True, stralign="right")


def positive(value, flag, what):
    """Refuse a window size or stride below 1 (a zero stride never moves; a zero window holds nothing)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise CnncalcError(f"Invalid value for {flag} ({what}). Expected a whole number >= 1. Received {value!r}")
    return value


def conv_expansion(window, kernel, bias=None):
    """'1×1 + 2×2 + 5×3 + 6×4' (+ bias) for one window and a kernel of the same shape."""
    terms = [f"{signed(a)}×{signed(b)}" for a, b in zip(np.ravel(window), np.ravel(kernel))]
    if bias is not None:
        terms.append(signed(bias))
    return " + ".join(terms)


def pool_expansion(window, mode):
    values = ", ".join(num(v) for v in np.ravel(window))
    if mode == "max":
        return f"max({values})"
    elif mode == "avg":
        return f"({' + '.join(signed(v) for v in np.ravel(window))}) / {window.size}"
    elif mode == "sum":
        return " + ".join(signed(v) for v in np.ravel(window))
    raise CnncalcError(f"Invalid value for --mode. Expected max, avg or sum. Received {mode!r}")


def explain_conv(a, b, stride=1, padding="valid", bias=None, activation=None, lang="en"):
    """Text: each window of A under B, its expansion, and the result matrix (Keras Conv2D semantics)."""
    L = labels(lang)
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.ndim != 2 or b.ndim != 2:
        raise CnncalcError(f"explain conv needs two matrices. Expected --a and --b as rows such as '1 2; 3 4'. Received shapes {a.shape} and {b.shape}")
    if activation not in (None, "relu", "linear"):
        raise CnncalcError(f"Invalid value for --activation. Expected relu or linear. Received {activation!r}")
    positive(stride, "--stride", "the step between windows")
    kh, kw = b.shape
    pads = ops.padding_amounts(a.shape, (kh, kw), (stride, stride), padding)
    ap = np.pad(a, pads)
    z = ops.conv2d(a[None, :, :, None], b[:, :, None, None], None if bias is None else np.array([bias]), (stride, stride), padding)[0, :, :, 0]
    if z.size == 0:
        raise CnncalcError(f"The kernel does not fit. Expected a kernel no larger than A {a.shape} with padding 'valid'. Received {b.shape}")
    out = np.maximum(z, 0) if activation == "relu" else z
    lines = [f"{L['input']}:", matrix_text(a), "", f"{L['kernel']}:", matrix_text(b), ""]
    if padding == "same" and any(sum(p) for p in pads):
        lines += [f"{L['padded']}:", matrix_text(ap), ""]
    lines += [L["conv"].format(s=stride), ""]
    n = 0
    for i in range(z.shape[0]):
        for j in range(z.shape[1]):
            n += 1
            window = ap[i * stride:i * stride + kh, j * stride:j * stride + kw]
            line = f"{conv_expansion(window, b, bias)} = {num(z[i, j])}"
            if activation == "relu":
                line += f";  {L['relu']}: max(0, {num(z[i, j])}) = {num(out[i, j])}"
            lines += [f"{L['window']} {n} ({L['at'].format(i=i, j=j)}):", matrix_text(window), line, ""]
    lines += [f"{L['result']}:", matrix_text(out)]
    return "\n".join(lines), out


def explain_pool(a, size=2, stride=None, mode="max", lang="en"):
    """Text: each pooling window of A, its expansion, and the result (windows that do not fit are dropped, as Keras does)."""
    L = labels(lang)
    a = np.asarray(a, float)
    if a.ndim != 2:
        raise CnncalcError(f"explain pool needs one matrix. Expected --a as rows such as '1 2; 3 4'. Received shape {a.shape}")
    positive(size, "--size", "the window's side")
    stride = size if stride is None else stride  # Keras: strides=None means the pool size
    positive(stride, "--stride", "the step between windows")
    pool_expansion(a[:1, :1], mode)  # checks the mode
    ho, wo = (ops.conv_output_length(n, size, stride, "valid") for n in a.shape)
    if ho <= 0 or wo <= 0:
        raise CnncalcError(f"The pooling window does not fit. Expected a window no larger than A {a.shape}. Received --size {size}")
    out = np.zeros((ho, wo))
    lines = [f"{L['input']}:", matrix_text(a), "", L["pool"].format(mode=L[mode], k=size, s=stride), ""]
    n = 0
    for i in range(ho):
        for j in range(wo):
            n += 1
            window = a[i * stride:i * stride + size, j * stride:j * stride + size]
            out[i, j] = {"max": window.max(), "avg": window.mean(), "sum": window.sum()}[mode]
            lines += [f"{L['window']} {n} ({L['at'].format(i=i, j=j)}):", matrix_text(window),
                      f"{pool_expansion(window, mode)} = {num(out[i, j])}", ""]
    lines += [f"{L['result']}:", matrix_text(out)]
    return "\n".join(lines), out
