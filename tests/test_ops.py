"""Pure ops: shape math, conv against its naive twin and the chapter's hand-worked numbers, pooling rules."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cnncalc.engine import ops
from cnncalc.errors import CnncalcError

A = np.arange(1, 17, dtype=float).reshape(1, 4, 4, 1)  # the chapter's matrix A
B = np.array([[1, 2], [3, 4]], dtype=float).reshape(2, 2, 1, 1)  # its kernel B


@pytest.mark.parametrize("length, window, stride, padding, dilation, expected", [
    (4, 3, 1, "valid", 1, 2), (4, 2, 1, "valid", 1, 3), (4, 2, 2, "valid", 1, 2), (28, 3, 1, "valid", 1, 26),
    (26, 2, 2, "valid", 1, 13), (11, 2, 2, "valid", 1, 5), (28, 3, 1, "same", 1, 28), (5, 2, 2, "same", 1, 3),
    (7, 3, 1, "valid", 2, 3), (2, 3, 1, "valid", 1, 0),
])
def test_conv_output_length(length, window, stride, padding, dilation, expected):
    assert ops.conv_output_length(length, window, stride, padding, dilation) == expected


@pytest.mark.parametrize("length, window, stride, expected", [
    (28, 3, 1, (1, 1)), (4, 2, 1, (0, 1)), (5, 2, 2, (0, 1)), (4, 2, 2, (0, 0)), (6, 3, 2, (0, 1)), (4, 4, 1, (1, 2)),
])
def test_same_padding_puts_the_extra_zero_bottom_right(length, window, stride, expected):
    assert ops.same_padding(length, window, stride) == expected


def test_bad_padding_is_named():
    with pytest.raises(CnncalcError, match="Received padding='full'"):
        ops.conv_output_length(4, 2, 1, "full")


def test_chapter_convolution_44_to_144():
    out = ops.conv2d(A, B)[0, :, :, 0]
    assert out.tolist() == [[44, 54, 64], [84, 94, 104], [124, 134, 144]]


def test_chapter_convolution_stride_2():
    assert ops.conv2d(A, B, strides=(2, 2))[0, :, :, 0].tolist() == [[44, 64], [124, 144]]


def test_same_padding_keeps_28_by_28():
    x = np.random.default_rng(0).normal(size=(1, 28, 28, 1))
    k = np.ones((3, 3, 1, 1))
    assert ops.conv2d(x, k, padding="same").shape == (1, 28, 28, 1)


def test_pooling_semantics():
    x = np.arange(1, 17, dtype=float).reshape(1, 4, 4, 1)
    assert ops.pool2d(x, (2, 2), (2, 2), "valid", "max")[0, :, :, 0].tolist() == [[6, 8], [14, 16]]
    assert ops.pool2d(x, (2, 2), (2, 2), "valid", "avg")[0, :, :, 0].tolist() == [[3.5, 5.5], [11.5, 13.5]]
    # 'same' average divides by the real cells only: the corner window of a 3x3 input holds one cell
    y = np.arange(1, 10, dtype=float).reshape(1, 3, 3, 1)
    assert ops.pool2d(y, (2, 2), (2, 2), "same", "avg")[0, :, :, 0].tolist() == [[3, 4.5], [7.5, 9]]
    assert ops.pool2d(-y, (2, 2), (2, 2), "same", "max")[0, :, :, 0].tolist() == [[-1, -3], [-7, -9]]


def test_flatten_is_row_major_channel_fastest():
    x = np.arange(8).reshape(1, 2, 2, 2)
    assert ops.flatten(x)[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7]
    assert ops.flatten(x)[0, 1] == x[0, 0, 0, 1]


def test_softmax_subtracts_the_max():
    m, e, s, p = ops.softmax_steps(np.array([[1000.0, 1001.0]]))
    assert np.isfinite(p).all() and p[0, 1] == pytest.approx(1 / (1 + np.exp(-1)))
    assert m[0, 0] == 1001 and e[0, 1] == 1


def test_unknown_activation_lists_the_known():
    with pytest.raises(CnncalcError, match="Received activation='swishy'"):
        ops.activation("swishy")


@settings(max_examples=60, deadline=None)
@given(h=st.integers(3, 8), w=st.integers(3, 8), cin=st.integers(1, 3), cout=st.integers(1, 3),
       k=st.integers(1, 3), s=st.integers(1, 3), padding=st.sampled_from(["valid", "same"]),
       d=st.integers(1, 2), seed=st.integers(0, 10_000))
def test_conv2d_equals_its_naive_twin(h, w, cin, cout, k, s, padding, d, seed):
    if s > 1 and d > 1:
        s = 1
    if padding == "valid" and (k - 1) * d + 1 > min(h, w):
        return
    rng = np.random.default_rng(seed)
    x, kern, bias = rng.normal(size=(2, h, w, cin)), rng.normal(size=(k, k, cin, cout)), rng.normal(size=cout)
    fast = ops.conv2d(x, kern, bias, (s, s), padding, (d, d))
    slow = ops.conv2d_naive(x, kern, bias, (s, s), padding, (d, d))
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)
