"""`cnncalc export` (issue 13) and `cnncalc new -o x.h5` (issue 10): a workbook's own cells back to a Keras file that
real Keras loads. Weights round-trip bit for bit (float32), an edit saved by LibreOffice is exported as edited and
predicts what LibreOffice computes, and what is not a model (practice, graded) or not a Keras name is refused."""

import json
import os
from pathlib import Path

import numpy as np
import openpyxl
import pytest

import cnncalc
from cnncalc.cli import main
from cnncalc.errors import CnncalcError
from cnncalc.kerasfiles import formats
from cnncalc.kerasfiles.export import export, read_workbook_model
from cnncalc.kerasfiles.loader import model_from_layer_list, save_model
from cnncalc.recalc import libreoffice as recalc
from cnncalc.sheets.cells import a1
from cnncalc.sheets.workbook import plan_workbook
from conftest import REPO
from keras_helpers import chain_functional_model, lenet_model, toy_model

FORMATS = (".keras", ".h5", ".weights.h5")


def every_layer_model(keras):
    """One Sequential with every layer class cnncalc reads (and so exports), non-default arguments where they exist."""
    L = keras.layers
    keras.utils.set_random_seed(7)
    return keras.Sequential([
        keras.Input((9, 9, 2)),
        L.Rescaling(0.5, offset=0.25),
        L.ZeroPadding2D(((1, 0), (0, 2))),
        L.Conv2D(3, (3, 2), strides=(2, 1), activation="elu", use_bias=False),
        L.Conv2D(2, 2, dilation_rate=2, padding="same", activation="gelu"),
        L.BatchNormalization(epsilon=0.01),
        L.LeakyReLU(negative_slope=0.2),
        L.AveragePooling2D(2, strides=1, padding="same"),
        L.SpatialDropout2D(0.3),
        L.ReLU(max_value=3.0, negative_slope=0.1, threshold=0.05),
        L.MaxPooling2D(2),
        L.ELU(alpha=0.7),
        L.Reshape((-1, 2)),
        L.Reshape((2, 2, -1)),
        L.GlobalMaxPooling2D(keepdims=True),
        L.GlobalAveragePooling2D(),
        L.Dense(4, activation="selu"),
        L.Dropout(0.5),
        L.Activation("hard_silu"),
        L.Dense(3, activation="log_softmax"),
    ], name="every_layer")


def load_in_keras(keras, path, like=None):
    """A file cnncalc wrote, loaded by real Keras (a weights file into a fresh copy of the original model `like`)."""
    if str(path).endswith(".weights.h5"):
        model = keras.models.clone_model(like)
        model.load_weights(path)
        return model
    return keras.saving.load_model(path)


def weights_of(model):
    """(name, array) of every weight of a Keras model, in order."""
    return [(f"{layer.name}/{i}", w) for layer in model.layers for i, w in enumerate(layer.get_weights())]


# ---------------------------------------------------------------- round trip, bit for bit


@pytest.mark.keras
@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("make", [toy_model, lenet_model, chain_functional_model, "every_layer"])
def test_model_to_workbook_to_keras_gives_the_same_weights_bit_for_bit(keras, make, suffix, tmp_path):
    model = every_layer_model(keras) if make == "every_layer" else make()
    x = np.random.default_rng(8).integers(0, 256, size=(1, *model.input_shape[1:]))
    cnncalc.build(model, x, tmp_path / "book.xlsx", scale="1/255", quiet=True)
    export(tmp_path / "book.xlsx", tmp_path / f"back{suffix}")
    back = load_in_keras(keras, tmp_path / f"back{suffix}", like=model)
    mine, theirs = weights_of(model), weights_of(back)
    assert len(mine) == len(theirs) and mine
    for (name, a), (_, b) in zip(mine, theirs):
        assert b.dtype == np.float32 and a.dtype == np.float32, name
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32)), f"{name}: Mine {a.ravel()[:4]} Theirs {b.ravel()[:4]}"
    xs = x.astype(np.float32) / 255
    assert np.allclose(back.predict(xs, verbose=0), model.predict(xs, verbose=0), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------- edited, and saved by LibreOffice


def kernel_cell(model, x, scale):
    """(sheet, A1 address, (row, col)) of the first Conv2D kernel's weight [0, 0, 0, 0] in the workbook."""
    plan = plan_workbook(model, x, scale, steps=False)
    layer = next(l for l in model.layers if l.class_name == "Conv2D")
    p = plan.weights[(layer.name, "kernel")]
    pos = p.pos((0, 0, 0, 0))
    return p.sheet, a1(*pos), plan


@pytest.mark.keras
@pytest.mark.libreoffice
def test_a_weight_edited_and_saved_in_libreoffice_exports_as_edited(keras, soffice, tmp_path):
    model = lenet_model()
    x = np.random.default_rng(9).integers(0, 256, size=(2, 16, 16, 3))
    cnncalc.build(model, x, tmp_path / "book.xlsx", scale="1/255", quiet=True)
    sheet, address, plan = kernel_cell(cnncalc.load_model(model), x, "1/255")
    wb = openpyxl.load_workbook(tmp_path / "book.xlsx")
    wb[sheet][address] = 0.9
    wb.save(tmp_path / "edited.xlsx")
    saved = recalc.recalculate(tmp_path / "edited.xlsx", tmp_path / "lo")  # opened and saved by LibreOffice

    assert main(["export", str(saved), "-o", str(tmp_path / "edited.keras")]) == 0
    edited = keras.saving.load_model(tmp_path / "edited.keras")
    kernel = edited.layers[0].get_weights()[0]
    assert kernel[0, 0, 0, 0] == np.float32(0.9)
    original = model.get_weights()
    original[0][0, 0, 0, 0] = np.float32(0.9)
    for a, b in zip(original, edited.get_weights(), strict=True):  # every other weight: LibreOffice kept its bits
        assert np.array_equal(a, b)
    # Keras's predictions of the exported model are the probabilities LibreOffice computed in the workbook
    values = recalc.read_values(saved)
    theirs = edited.predict(x.astype(np.float32) / 255, verbose=0)
    for n, (out, _) in enumerate(plan.outputs):
        lo = np.array([values[out.sheet][out.pos(idx)] for idx in out.indices()])
        assert np.allclose(theirs[n], lo, rtol=1e-5, atol=1e-6), f"Keras {theirs[n]} LibreOffice {lo}"
        before = model.predict(x[n:n + 1].astype(np.float32) / 255, verbose=0)[0]
        assert not np.allclose(before, lo, rtol=1e-5, atol=1e-6)  # the edit changed what the workbook computes


@pytest.mark.libreoffice
def test_a_weight_typed_as_a_formula_without_cached_value_is_computed_by_libreoffice(chapter, soffice, tmp_path):
    cnncalc.build(chapter.model, chapter.raw, tmp_path / "book.xlsx", scale=chapter.scale, quiet=True)
    sheet, address, _ = kernel_cell(chapter.model, chapter.raw, chapter.scale)
    wb = openpyxl.load_workbook(tmp_path / "book.xlsx")
    wb[sheet][address] = "=0.5+0.25"  # openpyxl saves no cached value: only a spreadsheet engine knows it is 0.75
    wb.save(tmp_path / "formula.xlsx")
    model, compile_config = read_workbook_model(tmp_path / "formula.xlsx")
    assert model.layers[0].weights["kernel"][0, 0, 0, 0] == 0.75 and compile_config is None
    others = [w for l in model.layers for w in l.get_weights()]
    expected = [w for l in chapter.model.layers for w in l.get_weights()]
    expected[0] = expected[0].copy()
    expected[0][0, 0, 0, 0] = 0.75
    assert all(np.array_equal(a, b) for a, b in zip(others, expected, strict=True))


# ---------------------------------------------------------------- the committed workbooks (format 1) export


@pytest.mark.keras
@pytest.mark.parametrize("book", sorted(p.name for p in (REPO / "workbooks").glob("*.xlsx")))
def test_committed_workbooks_export_to_models_keras_runs_as_the_engine(keras, book, tmp_path):
    path = REPO / "workbooks" / book
    if book == "pool_sum.xlsx":  # sum pooling is cnncalc's teaching layer: Keras has none
        assert main(["export", str(path), "-o", str(tmp_path / "m.keras")]) == 2
        assert not (tmp_path / "m.keras").exists()
        return
    assert main(["export", str(path), "-o", str(tmp_path / "m.keras")]) == 0
    mine, _ = read_workbook_model(path)
    theirs = keras.saving.load_model(tmp_path / "m.keras")
    x = np.random.default_rng(10).normal(size=(2, *mine.input_shape))
    got, expected = theirs.predict(x.astype(np.float32), verbose=0), mine.predict(x)
    assert np.allclose(got, expected, rtol=1e-5, atol=1e-5 * (1 + np.abs(expected).max())), f"Keras {got} engine {expected}"


@pytest.mark.keras
def test_the_chapter_workbook_exports_the_chapters_model(keras, chapter, tmp_path):
    export(REPO / "workbooks" / "cnn_simple_example.xlsx", tmp_path / "toy.keras")
    p = keras.saving.load_model(tmp_path / "toy.keras").predict((chapter.raw * 0.125).astype(np.float32), verbose=0)
    assert p[0, 0] == pytest.approx(0.8906642, abs=1e-7)


# ---------------------------------------------------------------- refused, one line, nothing written


def run_refused(capsys, *argv):
    """Run the command line, expect exit 2 and one line; return the message."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnncalc: error: ") and err.count("\n") == 1, err
    return err


@pytest.fixture
def example_book(tmp_path):
    assert main(["example", "-o", str(tmp_path / "ex.xlsx")]) == 0
    return tmp_path / "ex.xlsx"


@pytest.mark.parametrize("name", ["m.xlsx", "model", "m.H5", ".keras", "m.hdf5"])
def test_export_refuses_a_name_keras_cannot_read(example_book, capsys, name):
    err = run_refused(capsys, "export", str(example_book), "-o", str(example_book.parent / name))
    assert "Expected a name ending in .keras, .weights.h5, .h5" in err and f"Received the name '{name}'" in err
    assert not (example_book.parent / name).exists()


def test_export_never_overwrites_without_force(example_book, capsys):
    target = example_book.parent / "m.keras"
    target.write_bytes(b"mine")
    assert "already exists" in run_refused(capsys, "export", str(example_book), "-o", str(target))
    assert target.read_bytes() == b"mine"
    assert main(["export", str(example_book), "-o", str(target), "--force"]) == 0
    assert target.read_bytes()[:2] == b"PK" and "weights read from the cells" in capsys.readouterr().out


def test_export_refuses_practice_and_graded_workbooks(tmp_path, capsys):
    practice = tmp_path / "p.xlsx"
    assert main(["practice", "-o", str(practice)]) == 0
    err = run_refused(capsys, "export", str(practice), "-o", str(tmp_path / "p.keras"))
    assert "is a practice workbook" in err and "cnncalc check" in err
    main(["check", str(practice), "--graded", str(tmp_path / "graded.xlsx")])
    capsys.readouterr()
    err = run_refused(capsys, "export", str(tmp_path / "graded.xlsx"), "-o", str(tmp_path / "g.keras"))
    assert "is a graded practice workbook" in err
    assert not list(tmp_path.glob("*.keras")) and not list(tmp_path.glob(".cnncalc-*"))


def test_run_is_for_training_workbooks(example_book, capsys):
    err = run_refused(capsys, "export", str(example_book), "-o", str(example_book.parent / "m.keras"), "--run", "2")
    assert "--run chooses one run of a training workbook" in err and "Received --run 2" in err


def test_export_refuses_what_is_not_a_cnncalc_workbook(tmp_path, capsys):
    wb = openpyxl.Workbook()
    wb.active["A1"] = 1
    wb.save(tmp_path / "other.xlsx")
    assert "is not a cnncalc workbook" in run_refused(capsys, "export", str(tmp_path / "other.xlsx"), "-o", str(tmp_path / "m.keras"))
    (tmp_path / "text.xlsx").write_text("hello")
    run_refused(capsys, "export", str(tmp_path / "text.xlsx"), "-o", str(tmp_path / "m.keras"))
    os.mkfifo(tmp_path / "pipe.xlsx")  # reading it would wait forever for a writer
    assert "named pipe" in run_refused(capsys, "export", str(tmp_path / "pipe.xlsx"), "-o", str(tmp_path / "m.keras"))
    assert not (tmp_path / "m.keras").exists()


def test_cnncalc_teaching_names_are_not_written_into_keras_files(tmp_path):
    gelu = model_from_layer_list({"input_shape": [3], "layers": [{"Dense": {"units": 2, "activation": "gelu_tanh"}}]})
    with pytest.raises(CnncalcError, match="activation gelu_tanh, which cnncalc has for teaching"):
        save_model(gelu, tmp_path / "g.keras")
    assert not list(tmp_path.iterdir())


def test_an_interrupted_export_leaves_nothing(example_book, monkeypatch):
    monkeypatch.setattr(formats, "_weights_h5_bytes", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        export(example_book, example_book.parent / "m.keras")
    assert sorted(p.name for p in example_book.parent.iterdir()) == ["ex.xlsx"]


@pytest.mark.parametrize("suffix", FORMATS)
def test_export_is_reproducible_byte_for_byte(example_book, suffix):
    export(example_book, example_book.parent / f"a{suffix}")
    export(example_book, example_book.parent / f"b{suffix}")
    assert (example_book.parent / f"a{suffix}").read_bytes() == (example_book.parent / f"b{suffix}").read_bytes()


def test_exported_files_read_back_in_cnncalc(example_book, chapter):
    for suffix in (".keras", ".h5"):
        export(example_book, example_book.parent / f"m{suffix}")
        back = cnncalc.load_model(example_book.parent / f"m{suffix}")
        assert np.allclose(back.predict(chapter.x), chapter.model.predict(chapter.x), atol=1e-7)


# ---------------------------------------------------------------- compile settings


@pytest.mark.keras
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_compile_settings_are_written_as_keras_reads_them(keras, suffix, tmp_path):
    model = toy_model()
    model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.SGD(0.1, momentum=0.9), metrics=["accuracy"])
    compile_config = json.loads(model.to_json())["compile_config"]
    save_model(cnncalc.load_model(model), tmp_path / f"c{suffix}", compile_config=compile_config)
    back = keras.saving.load_model(tmp_path / f"c{suffix}")
    assert type(back.optimizer).__name__ == "SGD"
    assert float(back.optimizer.learning_rate) == pytest.approx(0.1) and back.optimizer.momentum == 0.9
    assert getattr(back.loss, "__name__", back.loss) == "categorical_crossentropy"  # legacy .h5 loads it as the function


# ---------------------------------------------------------------- cnncalc new: -o x.h5 is a real legacy HDF5 model


SPEC = {"input_shape": [6, 6, 1], "seed": 3, "layers": [{"Conv2D": {"filters": 2, "kernel_size": 3, "activation": "relu"}},
                                                         {"Flatten": {}}, {"Dense": {"units": 3, "activation": "softmax"}}]}


@pytest.mark.keras
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_new_writes_a_file_keras_loads(keras, suffix, tmp_path):
    import h5py

    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    out = tmp_path / f"m{suffix}"
    assert main(["new", str(tmp_path / "spec.json"), "-o", str(out)]) == 0
    if suffix == ".h5":
        assert h5py.is_hdf5(out) and "model_config" in h5py.File(out, "r").attrs
    theirs = keras.saving.load_model(out)
    mine = model_from_layer_list(SPEC)
    x = np.random.default_rng(11).normal(size=(2, 6, 6, 1))
    assert np.allclose(theirs.predict(x.astype(np.float32), verbose=0), mine.predict(x), atol=1e-6)
    assert np.allclose(cnncalc.load_model(out).predict(x), mine.predict(x), atol=1e-6)


@pytest.mark.parametrize("name", ["m.weights.h5", "m", "m.xlsx", "m.keras.zip"])
def test_new_refuses_other_names(tmp_path, capsys, name):
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    err = run_refused(capsys, "new", str(tmp_path / "spec.json"), "-o", str(tmp_path / name))
    assert "Expected a name ending in .keras, .h5" in err
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == ["spec.json"]


def test_export_has_help_with_an_example(capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "Example:" in out and "--run" in out and ".weights.h5" in out


# ---------------------------------------------------------------- training workbooks: the weights after the last step


@pytest.mark.keras
def test_the_chapter_fit_exports_the_weights_of_keras_fit_and_its_compile_settings(keras64, tmp_path):
    """workbooks/chapter_fit.xlsx (100 Adam steps) exports the weights real Keras's fit ends with, to float32."""
    from cnncalc.companion.examples import get_example
    from test_training_workbook import keras_fit

    assert main(["export", str(REPO / "workbooks" / "chapter_fit.xlsx"), "-o", str(tmp_path / "fit.keras")]) == 0
    job = get_example("chapter_fit").training
    theirs = keras_fit(keras64, job, job.optimizers[0])
    keras64.backend.clear_session()
    exported = keras64.saving.load_model(tmp_path / "fit.keras")
    for layer in exported.layers:
        for w in layer.trainable_weights:
            mine, ref = np.asarray(w.numpy(), dtype=np.float64), theirs[(layer.name, w.name)]
            assert np.max(np.abs(mine - ref)) <= 2 ** -23 * np.max(np.abs(ref)), (layer.name, w.name)  # float32 rounding
            assert not np.allclose(mine, job.model.layers[[l.name for l in job.model.layers].index(layer.name)].weights[w.name])
    optimizer = exported.optimizer.get_config()
    assert optimizer["name"] == "adam" and optimizer["learning_rate"] == pytest.approx(0.001) and optimizer["beta_2"] == 0.999
    assert "categorical_crossentropy" in str(exported.loss)


def test_a_training_workbook_of_several_rates_exports_the_run_asked_for(tmp_path, capsys):
    from cnncalc.companion.examples import get_example

    book = tmp_path / "rates.xlsx"
    assert main(["train", "--epochs", "2", "--learning-rate", "0.01,0.1", "-o", str(book)]) == 0
    err = run_refused(capsys, "export", str(book), "-o", str(tmp_path / "m.keras"))
    assert "holds 2 training runs" in err and "Expected --run 1 to 2" in err
    assert "Expected 1 to 2. Received --run 3" in run_refused(capsys, "export", str(book), "-o", str(tmp_path / "m.keras"), "--run", "3")
    job = get_example("chapter_fit").training
    for run, rate in ((1, 0.01), (2, 0.1)):
        model, compiled = read_workbook_model(book, run)
        assert compiled["optimizer"]["config"]["learning_rate"] == pytest.approx(rate)
        from cnncalc.engine import optimizers, training

        fit = training.fit(job.model, job.x, job.labels, job.loss, optimizers.get("adam", learning_rate=rate), 2, job.batch_size)
        for mine, ref in zip(model.layers, fit.model.layers):
            for name in ref.weights:
                # the given cells hold the chapter's float64 weights at XlsxWriter's 16 significant digits
                assert np.allclose(mine.weights[name], ref.weights[name], rtol=0, atol=1e-15), (run, ref.name, name)
    assert main(["export", str(book), "-o", str(tmp_path / "r2.weights.h5"), "--run", "2"]) == 0
