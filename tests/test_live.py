"""Live Keras models (issue 13): cnncalc.load_model and cnncalc.build take a keras.Model in memory, read as its saved
file is read (same parser, same refusals), predicting as Keras does; the README's Python API example runs."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import cnncalc
from cnncalc.errors import CnncalcError
from conftest import REPO
from keras_helpers import chain_functional_model, lenet_model, toy_model

pytestmark = pytest.mark.keras

MODELS = {"toy": toy_model, "lenet": lenet_model, "chain": chain_functional_model}


def one_line_error(func, *args, **kwargs):
    with pytest.raises(CnncalcError) as info:
        func(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("name", MODELS)
def test_live_model_predicts_as_keras(keras, name):
    model = MODELS[name]()
    x = np.random.default_rng(4).normal(size=(3, *model.input_shape[1:]))
    mine = cnncalc.load_model(model).predict(x)
    theirs = model.predict(x.astype(np.float32), verbose=0)
    assert np.allclose(mine, theirs, rtol=1e-5, atol=1e-6), f"Mine   {mine.tolist()}\nTheirs {theirs.tolist()}"


@pytest.mark.parametrize("name", MODELS)
def test_live_model_is_what_its_saved_file_gives(keras, name, tmp_path):
    """The same configs, the same weights bit for bit, the same input layer: the file and the object agree."""
    model = MODELS[name]()
    model.save(tmp_path / "m.keras")
    live, saved = cnncalc.load_model(model).to_spec(), cnncalc.load_model(tmp_path / "m.keras").to_spec()
    assert live["name"] == saved["name"] and live["input_shape"] == saved["input_shape"]
    assert live.get("input_layer") == saved.get("input_layer")
    for a, b in zip(live["layers"], saved["layers"], strict=True):
        assert a["class_name"] == b["class_name"] and a["config"] == b["config"]
        assert all(np.array_equal(u, v) for u, v in zip(a["weights"], b["weights"], strict=True))
    for layer, keras_layer in zip(cnncalc.load_model(model).layers, [l for l in model.layers if l.name != "image"]):
        assert all(np.array_equal(w, k) for w, k in zip(layer.get_weights(), keras_layer.get_weights(), strict=True))


def refused_models(keras):
    L = keras.layers

    @keras.saving.register_keras_serializable(package="cnncalc_test")
    class Doubler(L.Layer):
        def call(self, x):
            return 2 * x

    def branching():
        i = keras.Input((4,))
        return keras.Model(i, L.Add()([L.Dense(2)(i), L.Dense(2)(i)]))

    return {
        "Lambda": (keras.Sequential([keras.Input((4,)), L.Lambda(lambda x: x * 2)]), "contains Python code (Lambda)"),
        "custom layer": (keras.Sequential([keras.Input((4,)), Doubler()]), "custom object"),
        "branching": (branching(), "branching model"),
        "nested": (keras.Sequential([keras.Input((4,)), keras.Sequential([keras.Input((4,)), L.Dense(2)])]), "nested model"),
        "input size not fixed": (keras.Sequential([keras.Input((None, None, 1)), L.Conv2D(1, 3)]), "input size is not fixed"),
        "unsupported layer": (keras.Sequential([keras.Input((3, 4)), L.LSTM(2)]), "unsupported type"),
    }


def test_live_models_are_refused_where_their_files_are(keras, tmp_path):
    for case, (model, reason) in refused_models(keras).items():
        live = one_line_error(cnncalc.load_model, model)
        model.save(tmp_path / "m.keras")
        saved = one_line_error(cnncalc.load_model, tmp_path / "m.keras")
        assert reason in live and reason in saved, (case, live, saved)
        os.remove(tmp_path / "m.keras")


def test_models_that_have_no_file_form_are_refused(keras):
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    subclassed = Subclassed()
    subclassed(np.ones((1, 3)))
    assert "custom model class" in one_line_error(cnncalc.load_model, subclassed)
    assert "is not built" in one_line_error(cnncalc.load_model, keras.Sequential([keras.layers.Dense(2)]))
    assert "Expected a Keras model file's path" in one_line_error(cnncalc.load_model, np.ones(3))
    assert "config_path" in one_line_error(cnncalc.load_model, toy_model(), "model.json")


def test_a_path_never_imports_keras(tmp_path):
    """is_keras_model looks at the object's classes: loading a file, or building from one, leaves Keras unimported."""
    code = f"""
import sys, numpy as np, cnncalc
from cnncalc.kerasfiles.loader import model_from_layer_list, save_keras
spec = {{"input_shape": [4, 4, 1], "layers": [{{"Conv2D": {{"filters": 1, "kernel_size": 3}}}}, {{"Flatten": {{}}}}]}}
save_keras(model_from_layer_list(spec), {str(tmp_path / 'm.keras')!r})
np.save({str(tmp_path / 'x.npy')!r}, np.ones((4, 4, 1)))
cnncalc.load_model({str(tmp_path / 'm.keras')!r})
cnncalc.build({str(tmp_path / 'm.keras')!r}, {str(tmp_path / 'x.npy')!r}, {str(tmp_path / 'b.xlsx')!r})
print("keras" in sys.modules, "tensorflow" in sys.modules, "jax" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.split() == ["False", "False", "False"], out.stderr


def test_build_takes_a_live_model_and_an_array(keras, soffice, tmp_path):
    from cnncalc.recalc.verify import verify

    model = toy_model()
    x = np.random.default_rng(5).integers(0, 9, size=(2, 4, 4, 1))
    assert cnncalc.build(model, x, tmp_path / "b.xlsx", scale="1/8") == tmp_path / "b.xlsx"
    report = verify(tmp_path / "b.xlsx")
    assert report.ok and report.max_rel_diff < 1e-9
    # the Summary's probabilities, as LibreOffice recalculated them, are Keras's
    from cnncalc.sheets.workbook import plan_workbook

    plan = plan_workbook(cnncalc.load_model(model), x, "1/8")
    from cnncalc.recalc import libreoffice as recalc

    got = recalc.read_values(tmp_path / "b.xlsx")
    out, _ = plan.outputs[0]  # (placement, values)
    probabilities = [got[out.sheet][out.pos(idx)] for idx in out.indices()]
    assert np.allclose(probabilities, model.predict(x[:1].astype(np.float32) / 8, verbose=0)[0], atol=1e-6)


def test_build_takes_files_and_a_single_sample(keras, tmp_path):
    model = toy_model()
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", np.arange(16.0).reshape(4, 4, 1))
    cnncalc.build(tmp_path / "m.keras", tmp_path / "x.npy", tmp_path / "a.xlsx")
    cnncalc.build(model, np.arange(16.0).reshape(4, 4, 1), tmp_path / "b.xlsx")
    assert "already exists" in one_line_error(cnncalc.build, model, np.ones((4, 4, 1)), tmp_path / "b.xlsx")
    cnncalc.build(model, np.ones((4, 4, 1)), tmp_path / "b.xlsx", force=True)
    assert "Expected shape (4, 4, 1)" in one_line_error(cnncalc.build, model, np.ones((5, 5)), tmp_path / "c.xlsx")
    assert "Invalid inputs" in one_line_error(cnncalc.build, model, [[1, 2], [3]], tmp_path / "c.xlsx")
    assert not (tmp_path / "c.xlsx").exists()


def readme_example():
    """The first Python block of the README's Python API section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_api_example_runs(keras, soffice, tmp_path, monkeypatch, capsys):
    code = readme_example()
    assert "cnncalc.build(model, x" in code and "cnncalc.load_model(model)" in code and "cnncalc.export(" in code
    monkeypatch.chdir(tmp_path)
    names = {}
    exec(compile(code, "README.md (Python API)", "exec"), names)
    out = capsys.readouterr().out
    assert "OK: every formula cell agrees with the engine" in out
    model, x, back = names["model"], names["x"], names["back"]
    assert np.allclose(names["mine"].predict(x / 255), model.predict(x / 255, verbose=0), rtol=1e-5, atol=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), back.get_weights(), strict=True))
