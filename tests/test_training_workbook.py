"""Training workbooks (`cnncalc train`, `cnncalc example chapter_fit`): every formula cell recalculated by real
LibreOffice equals the engine, for the chapter's fit and a table of small cases that uses every layer, activation,
loss and optimizer a training workbook supports; the chapter fit's final weights equal real Keras's fit in float64;
an edited given cell (the learning rate, an initial weight) changes every step after recalculation and verify
follows it; verify catches a broken formula."""

import math

import numpy as np
import openpyxl
import pytest

from cnncalc.engine import losses, optimizers
from cnncalc.engine.layers import layer_from_config
from cnncalc.engine.model import Sequential
from cnncalc.recalc import libreoffice as recalc
from cnncalc.recalc.verify import verify
from cnncalc.sheets.training import TrainingJob, plan_training
from cnncalc.sheets.writer import write_plan

pytestmark = pytest.mark.libreoffice


def formula_mismatches(plan, values, rel=1e-9, abs_=1e-12):
    """(formula cells checked, [(sheet, row, col, formula, engine, LibreOffice)] of those that differ)."""
    checked, bad = 0, []
    for sheet in plan.sheets:
        got_sheet = values.get(sheet.name, {})
        for r, row in sheet.rows():
            for c, cell in row:
                if cell.formula is None:
                    continue
                checked += 1
                got = got_sheet.get((r, c))
                ok = isinstance(got, (int, float)) and not isinstance(got, bool) and math.isclose(got, cell.value, rel_tol=rel, abs_tol=abs_)
                if not ok:
                    bad.append((sheet.name, r, c, cell.formula, cell.value, got))
    return checked, bad


def recalculated(path, tmp_path):
    return recalc.read_values(recalc.recalculate(path, tmp_path / "recalc"))


def final_weights(plan, values, run=0):
    """{(layer, weight): array} read from the recalculated workbook's last step (its "w after" column)."""
    after = plan.runs[run][-1]["after"]
    return {key: np.array([values[p.sheet][p.pos(idx)] for idx in p.indices()]).reshape(p.shape) for key, p in after.items()}


# ---------------------------------------------------------------- the chapter's fit


@pytest.fixture(scope="module")
def chapter_fit(tmp_path_factory):
    """(job, plan, path, LibreOffice's values) of `cnncalc example chapter_fit`: 100 epochs of batch 2."""
    from cnncalc.companion.examples import get_example

    return written(get_example("chapter_fit").training, tmp_path_factory.mktemp("chapter_fit"), "chapter_fit")


def written(job, tmp, name):
    """(job, plan, path, LibreOffice's values) of the job's training workbook, written to tmp."""
    plan = plan_training(job)
    path = write_plan(plan, tmp / f"{name}.xlsx", quiet=True)
    return job, plan, path, recalculated(path, tmp)


def test_chapter_fit_every_formula_cell_recalculates_to_the_engine(chapter_fit):
    job, plan, _, values = chapter_fit
    checked, bad = formula_mismatches(plan, values)
    assert not bad, bad[:5]
    assert len(plan.runs[0]) == 100 and checked > 60_000


def test_chapter_fit_final_weights_equal_keras_fit_in_float64(chapter_fit, keras64):
    job, plan, _, values = chapter_fit
    theirs = keras_fit(keras64, job, job.optimizers[0])
    mine = final_weights(plan, values)
    for key, arr in mine.items():
        ref = theirs[key]
        scale = np.max(np.abs(ref))
        worst = np.max(np.abs(arr - ref)) / scale
        if worst > 1e-9:
            print(key, "\nMine  ", arr.ravel()[:8], "\nTheirs", ref.ravel()[:8])
        assert worst <= 1e-9, (key, worst)
    first, last = (values[step["loss"].sheet][step["loss"].pos((0,))] for step in (plan.runs[0][0], plan.runs[0][-1]))
    assert last < first  # it learns


def test_finite_differences_in_the_sheet_agree_with_backpropagation(chapter_fit):
    _, plan, _, values = chapter_fit
    check = values["Gradient check"]
    rows = range(3, 9)  # one weight of each of the six tensors, below the headers
    assert [check[(r, 0)].split("[")[0] for r in rows] == [f"{lname}/{w}" for lname, w in plan.runs[0][0]["sum"]]
    for r in rows:
        analytic, fd = check[(r, 1)], check[(r, 4)]
        assert abs(fd - analytic) <= 1e-6 * abs(analytic), (check[(r, 0)], analytic, fd)


def test_the_chapter_fit_loss_chart_is_a_native_line_chart(chapter_fit):
    import zipfile

    _, _, path, _ = chapter_fit
    with zipfile.ZipFile(path) as z:
        charts = [z.read(n) for n in z.namelist() if n.startswith("xl/charts/chart")]
    assert len(charts) == 1 and b"<c:lineChart>" in charts[0]


def keras_fit(keras, job, optimizer):
    """Real Keras's fit of the job's model from the same initial weights: {(layer, weight): array} after it."""
    model = keras_twin(keras, job.model)
    model.compile(loss=keras_loss(keras, job.loss), optimizer=getattr(keras.optimizers, optimizer.name)(**optimizer.get_config()))
    y = job.loss.labels(job.labels, job.model.output_shape)
    model.fit(job.x, y, epochs=job.epochs, batch_size=job.batch_size, shuffle=False, verbose=0)
    return {(layer.name, w.name): np.asarray(w.numpy(), dtype=np.float64) for layer in model.layers for w in layer.trainable_weights}


def keras_twin(keras, model):
    """A Keras Sequential of the same layers and weights (float64 under keras64)."""
    layers = [getattr(keras.layers, layer.class_name).from_config(layer.get_config()) for layer in model.layers]
    twin = keras.Sequential([keras.Input(model.input_shape), *layers])
    for theirs, mine in zip(twin.layers, model.layers):
        theirs.set_weights(mine.get_weights())
    return twin


def keras_loss(keras, loss):
    """The Keras loss object of an engine Loss (its class, with its arguments)."""
    return getattr(keras.losses, loss.class_name)(**{k: v for k, v in loss.get_config().items() if k != "name"})


# ---------------------------------------------------------------- a table of small cases: every layer, loss and optimizer


def model_of(input_shape, layers, seed):
    """A model of (class name, config) layers with small random weights (kernels and biases alike)."""
    model = Sequential([layer_from_config(c, dict(cfg)) for c, cfg in layers], input_shape, name="case")
    rng = np.random.default_rng(seed)
    for layer, shape in zip(model.layers, model.shapes):
        layer.set_weights([rng.normal(0, 0.6, s) for s in layer.weight_shapes(shape).values()], shape)
    return model


CASES = {
    # name: (input shape, layers, loss, labels kind, optimizer(s), epochs, batch size)
    "conv_stride_same_maxpool_overlap_sgd_nesterov": (
        (6, 6, 1),
        [("Conv2D", {"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "relu"}),
         ("MaxPooling2D", {"pool_size": 2, "strides": 1}),
         ("Conv2D", {"filters": 2, "kernel_size": 2, "dilation_rate": 1, "activation": "tanh"}),
         ("Flatten", {}), ("Dense", {"units": 3, "activation": "softmax"})],
        "sparse_categorical_crossentropy", "index", [("SGD", {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True})], 2, 2),
    "dilated_conv_avgpool_same_globalmax_bce_rmsprop_centered": (
        (7, 7, 2),
        [("ZeroPadding2D", {"padding": 1}), ("Conv2D", {"filters": 3, "kernel_size": 2, "dilation_rate": 2, "activation": "elu"}),
         ("AveragePooling2D", {"pool_size": 2, "padding": "same"}),
         ("Conv2D", {"filters": 2, "kernel_size": (2, 3), "strides": (1, 2), "padding": "same", "use_bias": False}),
         ("GlobalMaxPooling2D", {}), ("Dense", {"units": 2, "activation": "sigmoid"})],
        "binary_crossentropy", "values", [("RMSprop", {"learning_rate": 0.01, "momentum": 0.5, "centered": True})], 2, 1),
    "global_average_mse_adagrad_layers": (
        (5, 5, 1),
        [("Rescaling", {"scale": 0.5, "offset": 0.1}), ("Conv2D", {"filters": 2, "kernel_size": 3, "padding": "same"}),
         ("ReLU", {"max_value": 2.0, "negative_slope": 0.1, "threshold": 0.05}), ("GlobalAveragePooling2D", {"keepdims": True}),
         ("Reshape", {"target_shape": [2]}), ("Dense", {"units": 2}), ("LeakyReLU", {"negative_slope": 0.3}),
         ("ELU", {"alpha": 0.7}), ("Dropout", {"rate": 0.0}), ("Dense", {"units": 1})],
        "mean_squared_error", "values", [("Adagrad", {"learning_rate": 0.1})], 2, 2),
    "dense_activations_mae_adam_amsgrad": (
        (4,),
        [("Dense", {"units": 3, "activation": a}) for a in
         ("elu", "selu", "gelu", "gelu_tanh", "sigmoid", "hard_sigmoid", "hard_silu", "tanh", "softplus", "softsign",
          "silu", "relu6", "leaky_relu", "exponential")] + [("Dense", {"units": 2, "activation": "linear"})],
        "mean_absolute_error", "values", [("Adam", {"learning_rate": 0.01, "amsgrad": True})], 2, 2),
    "softmax_layer_categorical_rates": (
        (3, 3, 1),
        [("Conv2D", {"filters": 2, "kernel_size": 2, "activation": "relu"}), ("MaxPooling2D", {"pool_size": 2, "padding": "same"}),
         ("Flatten", {}), ("Dense", {"units": 3}), ("Activation", {"activation": "softmax"})],
        "categorical_crossentropy", "index", [("SGD", {"learning_rate": lr}) for lr in (0.1, 0.5, 1.0)], 3, 2),
    "logits_log_softmax_label_smoothing": (
        (4,),
        [("Dense", {"units": 3, "activation": "log_softmax"}), ("Dense", {"units": 3})],
        {"class_name": "CategoricalCrossentropy", "config": {"from_logits": True, "label_smoothing": 0.1}}, "index",
        [("Adam", {"learning_rate": 0.05})], 2, 2),
    "bce_logits_smoothing": (
        (3,),
        [("Dense", {"units": 2, "activation": "relu"}), ("Dense", {"units": 2})],
        {"class_name": "BinaryCrossentropy", "config": {"from_logits": True, "label_smoothing": 0.2}}, "values",
        [("SGD", {"learning_rate": 0.1, "momentum": 0.5})], 2, 2),
    "mse_summed_sgd": (
        (3,),
        [("Dense", {"units": 2, "activation": "tanh"}), ("Dense", {"units": 1})],
        {"class_name": "MeanSquaredError", "config": {"reduction": "sum"}}, "values", [("SGD", {"learning_rate": 0.05})], 2, 3),
}


def case_job(name):
    shape, layers, loss, kind, opts, epochs, batch_size = CASES[name]
    model = model_of(shape, layers, seed=len(name))
    rng = np.random.default_rng(7)
    n = 3
    raw = rng.integers(-4, 5, size=(n, *shape)).astype(float)
    k = model.output_shape[-1]
    labels = rng.integers(0, k, size=n).astype(float) if kind == "index" else rng.integers(0, 2, size=(n, k)).astype(float)
    optimizers_ = [optimizers.get({"class_name": c, "config": cfg}) for c, cfg in opts]
    return TrainingJob(model, raw, labels, losses.get(loss), optimizers_, epochs, batch_size, scale="1/4")


@pytest.mark.parametrize("name", CASES)
def test_every_formula_cell_recalculates_to_the_engine(name, tmp_path):
    job = case_job(name)
    plan = plan_training(job)
    path = write_plan(plan, tmp_path / f"{name}.xlsx", quiet=True)
    checked, bad = formula_mismatches(plan, recalculated(path, tmp_path))
    assert not bad, bad[:5]
    assert checked > 100


@pytest.mark.parametrize("name", CASES)
def test_verify_rebuilds_the_same_workbook_from_its_given_cells(name):
    """What verify and export do, without LibreOffice: read the given cells back, plan again, get every cell again."""
    import json

    from cnncalc.recalc.verify import rebuild_plan
    from cnncalc.sheets.workbook import META_SHEET, read_layout

    plan = plan_training(case_job(name))
    values = {s.name: {pos: c.value for pos, c in s.cells().items()} for s in plan.sheets}
    meta = values[META_SHEET]
    arch = json.loads("".join(str(meta[(3, c)]) for c in range(1, 100) if (3, c) in meta))
    again = rebuild_plan("book.xlsx", values, arch, meta[(1, 1)], meta[(2, 1)], read_layout(meta, "book.xlsx"))
    assert [s.name for s in again.sheets] == [s.name for s in plan.sheets]
    for mine, theirs in zip(plan.sheets, again.sheets):
        a, b = mine.cells(), theirs.cells()
        assert a.keys() == b.keys(), mine.name
        assert all(a[pos].formula == b[pos].formula for pos in a), mine.name
        assert all(a[pos].value == b[pos].value for pos in a if a[pos].formula and not isinstance(a[pos].value, str)), mine.name


@pytest.mark.parametrize("pool", ["MaxPooling2D", "GlobalMaxPooling2D"])
def test_max_pooling_ties_route_the_gradient_as_the_engine_does(pool, tmp_path):
    """Windows with equal largest cells: max pooling's gradient goes to the first of them (reading order), global max
    pooling's is shared among them; a 1x1 conv of weight 1 in front makes the ties exact and gives them a gradient cell."""
    layers = [("Conv2D", {"filters": 1, "kernel_size": 1}), (pool, {"pool_size": 2} if pool == "MaxPooling2D" else {}),
              ("Flatten", {}), ("Dense", {"units": 2, "activation": "softmax"})]
    model = model_of((4, 4, 1), layers, seed=3)
    model.layers[0].set_weights([np.ones((1, 1, 1, 1)), np.zeros(1)], model.shapes[0])
    raw = np.array([[[2, 2, 1, 0], [1, 2, 3, 3], [5, 0, 4, 4], [5, 5, 4, 1]], [[0, 1, 1, 1], [1, 1, 7, 7], [2, 2, 2, 7], [2, 2, 2, 0]]],
                   dtype=float)[..., None]
    job = TrainingJob(model, raw, np.array([0, 1]), losses.get("sparse_categorical_crossentropy"), [optimizers.get("sgd")], 1, 2)
    plan = plan_training(job)
    d_x = job.fits()[0].steps[0].layers[1].d_x  # the engine's gradient of the pooling's input
    assert np.count_nonzero(d_x) < d_x.size and np.count_nonzero(d_x) >= 4
    path = write_plan(plan, tmp_path / "ties.xlsx", quiet=True)
    checked, bad = formula_mismatches(plan, recalculated(path, tmp_path))
    assert not bad, bad[:5]


def test_the_cases_train_every_supported_layer_activation_loss_and_optimizer():
    from cnncalc.engine.layers import LAYERS

    used = {c for case in CASES.values() for c, _ in case[1]}
    activations = {cfg.get("activation") for case in CASES.values() for _, cfg in case[1]}
    assert set(LAYERS) - used == {"BatchNormalization", "SpatialDropout2D"}  # both: in the tests below the table
    assert {"relu", "softmax", "log_softmax", "linear"} <= activations | {"relu"}
    names = {losses.get(case[2]).name for case in CASES.values()}
    assert names == set(losses.FUNCTIONS)
    assert {c for case in CASES.values() for c, _ in case[4]} == set(optimizers.OPTIMIZERS)


# ---------------------------------------------------------------- editing a given cell; a broken formula


@pytest.fixture
def short_fit(tmp_path):
    """The chapter's fit for 3 epochs: (job, plan, path)."""
    from cnncalc.companion.examples import get_example

    job = get_example("chapter_fit").training
    job.epochs = 3
    plan = plan_training(job)
    return job, plan, write_plan(plan, tmp_path / "short.xlsx", quiet=True)


def test_an_edited_learning_rate_changes_every_step_and_verify_follows_it(short_fit, tmp_path):
    job, plan, path = short_fit
    wb = openpyxl.load_workbook(path)
    ws = wb["Training"]
    assert ws["A4"].value == "learning_rate" and ws["B4"].value == 0.001
    ws["B4"] = 0.05
    wb.save(path)
    values = recalculated(path, tmp_path)
    before = final_weights(plan, {s.name: {pos: c.value for pos, c in s.cells().items()} for s in plan.sheets})
    after = final_weights(plan, values)
    for key in before:  # every weight that gets a gradient ends elsewhere (a dead ReLU unit's get none, with either rate)
        learns = np.any([step.grads[key] != 0 for step in job.fits()[0].steps], axis=0)
        assert learns.sum() >= learns.size // 2, key
        moved = np.abs(after[key] - before[key]) > 1e-6
        assert np.array_equal(moved, learns), key
    edited = TrainingJob(job.model, job.raw, job.labels, job.loss, [optimizers.get("adam", learning_rate=0.05)], 3, 2, job.scale)
    expected = final_weights(*plan_and_values(edited))
    for key in after:
        np.testing.assert_allclose(after[key], expected[key], rtol=1e-9, atol=1e-12)
    report = verify(path, quiet=True)
    assert report.ok, report.failures[:3]


def plan_and_values(job):
    plan = plan_training(job)
    return plan, {s.name: {pos: c.value for pos, c in s.cells().items()} for s in plan.sheets}


def test_an_edited_initial_weight_is_followed_by_verify(short_fit):
    _, plan, path = short_fit
    wb = openpyxl.load_workbook(path)
    p = plan.weights[("dense", "kernel")]
    r, c = p.pos((0, 3))
    wb["Weights"].cell(r + 1, c + 1).value = 0.75
    wb.save(path)
    report = verify(path, quiet=True)
    assert report.ok and report.checked > 1500


def test_verify_catches_a_broken_gradient_formula(short_fit):
    _, plan, path = short_fit
    sheet = plan.sheet("Step 2")
    panel = next(p for p in sheet.panels if p.title.startswith("dL/dz dense (Dense)"))
    j = int(np.flatnonzero(panel.values)[0])  # a unit the ReLU lets through
    r, c = panel.placement.pos((j,))
    wb = openpyxl.load_workbook(path)
    cell = wb["Step 2"].cell(r + 1, c + 1)
    assert cell.value.startswith("=IF(")
    cell.value = "=2*" + cell.value[1:]  # a slip: twice the gradient
    wb.save(path)
    report = verify(path, quiet=True)
    assert not report.ok
    assert any(d.address.startswith("'Step 3'") for d in report.failures)  # and everything after it


# ---------------------------------------------------------------- the command line


@pytest.mark.keras
def test_train_takes_loss_and_optimizer_from_the_model_file_and_verify_passes(keras, tmp_path, capsys):
    from cnncalc.cli import main

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3, activation="relu"), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer=keras.optimizers.SGD(learning_rate=0.05, momentum=0.9))
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).integers(0, 9, (5, 4, 4, 1)).astype(float))
    (tmp_path / "y.csv").write_text("0\n2\n1\n1\n0\n")
    book = tmp_path / "fit.xlsx"
    assert main(["train", str(tmp_path / "m.keras"), "--input", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.csv"),
                 "--scale", "1/8", "--epochs", "2", "--batch-size", "2", "-o", str(book), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "6 steps × 1 run(s)" in out and "0.05" in out
    meta = openpyxl.load_workbook(book, read_only=True)["_cnncalc"]
    settings = next(row for row in meta.iter_rows(values_only=True) if row[0] == "training")[1]
    assert '"class_name":"SGD"' in settings and '"momentum":0.9' in settings and "SparseCategoricalCrossentropy" in settings
    assert verify(book, quiet=True).ok


def test_train_without_compile_settings_or_labels_says_what_to_give(tmp_path, capsys):
    from cnncalc.cli import main
    from cnncalc.companion.examples import chapter_example
    from cnncalc.kerasfiles.loader import save_model

    save_model(chapter_example().model, tmp_path / "toy.keras")
    np.save(tmp_path / "x.npy", chapter_example().raw)
    np.save(tmp_path / "y.npy", np.array([0, 1]))
    base = ["train", str(tmp_path / "toy.keras"), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "b.xlsx")]
    assert main(base) == 2
    assert "No labels for" in capsys.readouterr().err
    assert main(base + ["--labels", str(tmp_path / "y.npy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Expected --loss NAME and --optimizer NAME" in err and "sgd, adam, rmsprop, adagrad" in err
    assert main(base + ["--labels", str(tmp_path / "y.npy"), "--loss", "mse", "--optimizer", "adam"]) == 2
    assert "Invalid labels for mean_squared_error" in capsys.readouterr().err  # class indices are no regression targets
    assert not (tmp_path / "b.xlsx").exists()  # nothing written by a refused command
    assert main(base + ["--labels", str(tmp_path / "y.npy"), "--loss", "categorical_crossentropy", "--optimizer", "sgd",
                        "--learning-rate", "0.1,1", "--quiet"]) == 0
    assert "run 2  1" in capsys.readouterr().out and (tmp_path / "b.xlsx").exists()


@pytest.mark.parametrize("text, expected", [
    ("0\n1\n1\n", [0, 1, 1]), ("1,0\n0,1\n", [[1, 0], [0, 1]]), ('{"labels": [2, 0]}', [2, 0]), ("[[0.5, 0.5]]", [[0.5, 0.5]]),
])
def test_labels_files(tmp_path, text, expected):
    from cnncalc.inputs import read_labels

    path = tmp_path / ("y.json" if text.lstrip()[0] in "[{" else "y.csv")
    path.write_text(text)
    np.testing.assert_array_equal(read_labels(path), expected)


def test_a_labels_file_with_text_is_refused_in_one_line(tmp_path):
    from cnncalc.errors import CnncalcError
    from cnncalc.inputs import read_labels

    (tmp_path / "y.json").write_text('["cat", "dog"]')
    with pytest.raises(CnncalcError, match=r'Expected a list of labels.*Received "cat" at labels\[0\]'):
        read_labels(tmp_path / "y.json")


# ---------------------------------------------------------------- BatchNormalization on the batch's statistics; Dropout's masks


BN_LAYERS = [("Conv2D", {"filters": 2, "kernel_size": 2}), ("BatchNormalization", {"momentum": 0.9}), ("ReLU", {}),
             ("MaxPooling2D", {"pool_size": 2}), ("Flatten", {}), ("Dense", {"units": 3, "activation": "softmax"})]


def bn_job(layers=BN_LAYERS, optimizer=("Adam", {"learning_rate": 0.05})):
    """conv → BatchNormalization → relu → pool → dense, 3 samples in batches of 2 for 1 epoch: 2 steps, the second
    on one sample (the statistics then run over its own height and width only)."""
    model = model_of((5, 5, 1), layers, seed=11)
    for layer in model.layers:
        if layer.class_name == "BatchNormalization":
            layer.weights["moving_variance"] = np.abs(layer.weights["moving_variance"]) + 0.5
    raw = np.random.default_rng(3).integers(-4, 5, size=(3, 5, 5, 1)).astype(float)
    return TrainingJob(model, raw, np.array([0, 2, 1]), losses.get("sparse_categorical_crossentropy"),
                       [optimizers.get({"class_name": optimizer[0], "config": optimizer[1]})], 1, 2, scale="1/4")


@pytest.fixture(scope="module")
def bn_book(tmp_path_factory):
    return written(bn_job(), tmp_path_factory.mktemp("bn"), "bn")


def test_batch_normalization_trains_on_the_batch_statistics_in_formulas(bn_book):
    job, plan, path, values = bn_book
    checked, bad = formula_mismatches(plan, values)
    assert not bad, bad[:5]
    step = plan.sheet("Step 1")
    stats = [p for p in step.panels if p.step == "statistics"]
    assert {p.title.split(": ", 1)[1] for p in stats} >= {"batch mean μ = Σ x / n (n = batch × height × width)",
                                                          "moving variance after: × momentum + σ² × (1 − momentum)"}
    mean = next(p for p in stats if "batch mean" in p.title)
    assert step.cells()[mean.placement.pos((0,))].formula.startswith("=SUM(")  # over both samples' channel maps
    assert plan.runs[0][1]["used"] and ("batch_normalization", "moving_mean") in plan.runs[0][0]["after"]
    assert checked > 1500 and "Gradient check" not in [s.name for s in plan.sheets]
    assert verify(path, quiet=True).ok


@pytest.mark.keras
def test_batch_normalization_workbook_equals_keras_fit_in_float64(bn_book, keras64):
    """Every weight after the last step, as LibreOffice computes the workbook, equals Keras's fit: gamma, beta (by
    their gradients through the batch statistics) and the moving mean and variance (by Keras's momentum rule)."""
    job, plan, _, values = bn_book
    model = keras_twin(keras64, job.model)
    model.compile(loss=keras_loss(keras64, job.loss), optimizer=keras64.optimizers.Adam(**job.optimizers[0].get_config()))
    model.fit(job.x, job.labels, epochs=job.epochs, batch_size=job.batch_size, shuffle=False, verbose=0)
    theirs = {(layer.name, w.name): np.asarray(w.numpy()) for layer in model.layers for w in layer.weights}
    mine = final_weights(plan, values)  # BatchNormalization's moving statistics too
    assert ("batch_normalization", "moving_variance") in mine and ("batch_normalization", "gamma") in mine
    for key, arr in mine.items():
        worst = np.max(np.abs(arr - theirs[key])) / np.max(np.abs(theirs[key]))
        assert worst <= 1e-9, (key, worst, arr.ravel()[:4], theirs[key].ravel()[:4])


def test_frozen_batch_normalization_runs_as_at_inference(tmp_path):
    layers = [BN_LAYERS[0], ("BatchNormalization", {"trainable": False}), *BN_LAYERS[2:]]
    job = bn_job(layers, ("SGD", {"learning_rate": 0.1}))
    plan = plan_training(job)
    assert not any(p.step == "statistics" for p in plan.sheet("Step 1").panels)
    path = write_plan(plan, tmp_path / "frozen.xlsx", quiet=True)
    checked, bad = formula_mismatches(plan, recalculated(path, tmp_path))
    assert not bad, bad[:5]
    assert verify(path, quiet=True).ok


DROP_LAYERS = [("Conv2D", {"filters": 2, "kernel_size": 2, "activation": "relu"}), ("SpatialDropout2D", {"rate": 0.4}),
               ("Flatten", {}), ("Dense", {"units": 4, "activation": "tanh"}), ("Dropout", {"rate": 0.5}),
               ("Dense", {"units": 3, "activation": "softmax"})]


@pytest.mark.keras
def test_dropout_with_keras_masks_as_given_cells_equals_keras_fit(keras64, tmp_path):
    """Keras's own masks (from its seed state, as tests/test_training.py recovers them) given to the workbook: LibreOffice's
    recalculation equals the engine and its final weights equal Keras's fit in float64; verify rebuilds from the cells."""
    from test_training import engine_model, keras_fit as keras_fit_steps, keras_masks, keras_model

    km = keras_model(keras64, (4, 4, 1), DROP_LAYERS, seed=4)
    model = engine_model(km)
    x = np.random.default_rng(5).normal(0, 1, (3, 4, 4, 1))
    y = np.array([0, 2, 1])
    theirs, seeds = keras_fit_steps(keras64, km, x, y, "sparse_categorical_crossentropy", "sgd", 1, 2)
    job = TrainingJob(model, x, y, losses.get("sparse_categorical_crossentropy"), [optimizers.get("sgd")], 1, 2,
                      dropout=keras_masks(seeds))
    plan = plan_training(job)
    masks = [p for p in plan.sheet("Step 1").panels if p.step == "mask"]
    assert len(masks) == 4 and {p.placement.shape for p in masks} == {(1, 1, 2), (4,)}  # 2 layers × 2 samples
    assert any(np.any(p.values == 0) for p in masks)  # some unit is dropped
    path = write_plan(plan, tmp_path / "drop.xlsx", quiet=True)
    values = recalculated(path, tmp_path)
    checked, bad = formula_mismatches(plan, values)
    assert not bad, bad[:5]
    mine = final_weights(plan, values)
    for layer in model.layers:
        for wname, their in zip(layer.weights, theirs[-1][layer.name]):
            worst = np.max(np.abs(mine[(layer.name, wname)] - their)) / np.max(np.abs(their))
            assert worst <= 1e-9, (layer.name, wname, worst)
    assert verify(path, quiet=True).ok


def test_dropout_seed_masks_are_given_cells_and_an_edited_mask_is_followed(tmp_path, capsys):
    from cnncalc.cli import main
    from cnncalc.engine.training import fit
    from cnncalc.kerasfiles.loader import save_model

    model = model_of((4, 4, 1), DROP_LAYERS, seed=9)
    save_model(model, tmp_path / "drop.keras")
    raw = np.random.default_rng(2).integers(-4, 5, size=(4, 4, 4, 1)).astype(float)
    np.save(tmp_path / "x.npy", raw)
    np.save(tmp_path / "y.npy", np.array([0, 2, 1, 1]))
    book = tmp_path / "drop.xlsx"
    assert main(["train", str(tmp_path / "drop.keras"), "--input", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
                 "--loss", "sparse_categorical_crossentropy", "--optimizer", "sgd", "--learning-rate", "0.5", "--batch-size", "2",
                 "--dropout-seed", "3", "-o", str(book), "--quiet"]) == 0
    capsys.readouterr()
    engine = fit(model, raw, np.array([0, 2, 1, 1]), "sparse_categorical_crossentropy", optimizers.get("sgd", learning_rate=0.5),
                 1, 2, dropout=3)
    mask = engine.steps[0].layers[4].saved["mask"]  # the Dropout layer's, step 1
    job = TrainingJob(model, raw, np.array([0, 2, 1, 1]), losses.get("sparse_categorical_crossentropy"),
                      [optimizers.get("sgd", learning_rate=0.5)], 1, 2, dropout=3)
    plan = plan_training(job)
    panel = next(p for p in plan.sheet("Step 1").panels if p.step == "mask" and p.layer.name == "dropout")
    wb = openpyxl.load_workbook(book)
    ws = wb["Step 1"]
    given = np.array([ws.cell(r + 1, c + 1).value for r, c in (panel.placement.pos((j,)) for j in range(4))])
    np.testing.assert_array_equal(given, mask[0].astype(float))  # sample 1's mask, as the engine's seeded fit drew it
    assert "drawn by numpy with seed 3" in " ".join(str(c.value) for row in wb["Read me"].iter_rows() for c in row if c.value)
    j = int(np.flatnonzero(mask[0])[0])  # drop a kept unit
    r, c = panel.placement.pos((j,))
    ws.cell(r + 1, c + 1).value = 0
    wb.save(book)
    values = recalculated(book, tmp_path)
    before = final_weights(plan, {s.name: {pos: c.value for pos, c in s.cells().items()} for s in plan.sheets})
    after = final_weights(plan, values)
    assert not np.allclose(after[("dense", "kernel")], before[("dense", "kernel")], rtol=0, atol=1e-12)  # it follows
    report = verify(book, quiet=True)
    assert report.ok and report.checked > 1000, report.failures[:3]
    ws.cell(r + 1, c + 1).value = 0.5
    wb.save(book)
    assert main(["verify", str(book), "--quiet"]) == 2
    assert "is not 0 or 1" in capsys.readouterr().err
