"""The chapter's toy CNN: the engine against the book's own numbers and against real Keras."""

import numpy as np
import pytest

from keras_helpers import keras_summary, param_lines


def test_engine_reproduces_the_books_workbook(chapter, book):
    exp = book["expected"]["sample0_float64_as_the_book_workbook_computes_it"]
    t = chapter.model.trace(chapter.x)
    np.testing.assert_allclose(t[0].pre[0, :, :, 0], exp["conv_L4_M5"], rtol=1e-13)
    assert t[1].out[0, 0, 0, 0] == pytest.approx(exp["pool_M8"], rel=1e-13)
    np.testing.assert_allclose(t[3].pre[0], exp["hidden_pre_O12_O21"], rtol=1e-12)
    np.testing.assert_allclose(t[3].out[0], exp["hidden_relu_Q12_Q21"], rtol=1e-12)
    np.testing.assert_allclose(t[4].pre[0], exp["logits_W13_X13"], rtol=1e-12)
    np.testing.assert_allclose(t[4].out[0], exp["softmax_AC13_AD13"], rtol=1e-12)
    assert t[4].out[0, 0] == pytest.approx(0.8906642160356466, rel=1e-13)


def test_engine_reproduces_sample_two_with_relu_after_the_conv(chapter, book):
    exp = book["expected"]["sample1_float64"]
    t = chapter.model.trace(chapter.x)
    np.testing.assert_allclose(t[0].pre[1, :, :, 0], exp["conv_pre"], rtol=1e-12)
    np.testing.assert_allclose(t[0].out[1, :, :, 0], exp["conv_relu"], rtol=1e-12)  # the book forgot this ReLU
    assert t[1].out[1, 0, 0, 0] == pytest.approx(exp["pool"], rel=1e-13)
    np.testing.assert_allclose(t[4].out[1], exp["softmax"], rtol=1e-12)
    assert t[4].out[1, 0] == pytest.approx(0.2677739663373801, rel=1e-13)


def test_summary_rows_are_the_books(chapter, book):
    rows = book["summary_as_keras_prints_it"]
    assert [list(r) for r in chapter.model.summary_rows()] == [list(r) for r in rows[:-1]]
    assert chapter.model.count_params() == rows[-1][2] == 52


def keras_chapter_model(keras, chapter):
    from keras import layers

    keras.backend.clear_session()  # Keras's automatic names (conv2d, dense_1) count from a fresh session
    m = keras.Sequential([
        keras.Input((4, 4, 1)), layers.Conv2D(1, (3, 3), activation="relu"), layers.MaxPooling2D((2, 2)),
        layers.Flatten(), layers.Dense(10, activation="relu"), layers.Dense(2, activation="softmax"),
    ])
    m.set_weights([w.astype(np.float32) for layer in chapter.model.layers for w in layer.get_weights()])
    return m


@pytest.mark.keras
def test_engine_matches_real_keras_on_both_samples(keras, chapter, book):
    m = keras_chapter_model(keras, chapter)
    theirs = m.predict(chapter.x.astype(np.float32), verbose=0)
    for dtype in (np.float64, np.float32):
        mine = chapter.model.predict(chapter.x, dtype=dtype)
        print("Mine  ", mine.tolist(), "\nTheirs", theirs.tolist())
        np.testing.assert_allclose(mine, theirs, atol=1e-6)
    np.testing.assert_allclose(theirs, book["expected"]["keras_3_15_1_predict_float32_both_samples"], atol=1e-6)


@pytest.mark.keras
def test_per_layer_trace_matches_keras(keras, chapter):
    m = keras_chapter_model(keras, chapter)
    x = chapter.x.astype(np.float32)
    mine = chapter.model.trace(x, dtype=np.float32)
    for layer, t in zip(m.layers, mine):
        x = np.asarray(layer(x))
        np.testing.assert_allclose(t.out, x, atol=1e-6, err_msg=layer.name)


@pytest.mark.keras
def test_summary_equals_keras_summary(keras, chapter):
    km = keras_chapter_model(keras, chapter)
    rows, params = keras_summary(km)
    assert chapter.model.summary_rows() == rows
    assert params == param_lines(chapter.model.summary()) and "Total params: 52 (208.00 B)" in params
    lines = []
    km.summary(print_fn=lambda text, **kw: lines.append(text))
    theirs = [l for l in "\n".join(lines).splitlines() if l.startswith(("│", "┃", "┏", "┡", "├", "└"))]
    ours = [l for l in chapter.model.summary().splitlines() if l.startswith(("│", "┃", "┏", "┡", "├", "└"))]
    assert ours == theirs  # the same table, character for character
