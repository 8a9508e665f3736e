"""Practice workbooks: the worked example's layout, every computed cell of the chosen steps empty and unlocked,
given cells protected, nothing that gives an answer away, a name cell, and a reproducible seeded input."""

import numpy as np
import openpyxl
import pytest

from cnncalc.recalc import libreoffice as recalc
from cnncalc.cli import main
from cnncalc.errors import CnncalcError
from cnncalc.classroom.practice import EXERCISE_ROW, INSTRUCTIONS, exercise_digest, plan_practice, read_practice_meta
from cnncalc.recalc.verify import read_meta
from cnncalc.sheets.workbook import META_SHEET, plan_workbook
from cnncalc.sheets.writer import write_plan


@pytest.fixture(scope="module")
def worked():
    from cnncalc.companion.examples import chapter_example

    ex = chapter_example()
    return ex, plan_workbook(ex.model, ex.raw, ex.scale, ex.title, ex.labels)


@pytest.fixture(scope="module")
def practice(worked, tmp_path_factory):
    ex, _ = worked
    plan = plan_practice(ex.model, ex.raw, ex.scale, title=ex.title, labels=ex.labels)
    return plan, write_plan(plan, tmp_path_factory.mktemp("practice") / "practice.xlsx")


def test_by_default_every_computed_cell_of_the_sample_sheets_is_an_answer(worked, practice):
    _, book = worked
    plan, _ = practice
    formulas = {(s.name, pos): cell for s in book.sheets if s.name.startswith("Sample ") for pos, cell in s.cells().items() if cell.formula}
    assert {(a.sheet, a.pos) for a in plan.answers} == set(formulas)
    for a in plan.answers:
        assert a.formula == formulas[(a.sheet, a.pos)].formula and a.expected == formulas[(a.sheet, a.pos)].value
    assert plan.blank == ["scaled", "conv2d", "max_pooling2d", "flatten", "dense", "dense_1", "prediction"]


def test_answer_cells_are_empty_and_unlocked_given_cells_filled_and_protected(practice):
    plan, path = practice
    wb = openpyxl.load_workbook(path)
    for a in plan.answers:
        cell = wb[a.sheet].cell(a.pos[0] + 1, a.pos[1] + 1)
        assert cell.value is None and cell.protection.locked is False, a.address
    for name in ["Sample 1", "Sample 2", "Weights", "Summary", INSTRUCTIONS]:
        assert wb[name].protection.sheet, name
    assert wb["Sample 1"]["B4"].value == 1 and wb["Sample 1"]["B4"].protection.locked  # the raw input, given
    assert wb["Weights"]["B6"].value == pytest.approx(0.6502779) and wb["Weights"]["B6"].protection.locked
    name = wb[INSTRUCTIONS]["B3"]
    assert name.value is None and name.protection.locked is False and wb[INSTRUCTIONS]["A3"].value == "Your name:"
    texts = [c.value for row in wb["Sample 1"].iter_rows() for c in row if isinstance(c.value, str)]
    assert any(t.startswith("Practice: type your answer") for t in texts)
    assert "Read me" not in wb.sheetnames and "Steps" not in wb.sheetnames and wb[META_SHEET].sheet_state == "hidden"


def test_nothing_in_the_file_gives_an_answer_away(practice):
    """No cell's value or cached result, and no text, holds an answer (beyond what the given cells hold anyway)."""
    plan, path = practice
    values = recalc.read_values(path)
    given = {round(float(v), 9) for name in ("Weights", "Sample 1", "Sample 2") for v in values[name].values() if isinstance(v, (int, float))}
    secrets = {round(a.expected, 9) for a in plan.answers} - given - {0.0, 1.0}
    assert len(secrets) > 40
    for sheet, cells in values.items():
        for pos, v in cells.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                assert round(float(v), 9) not in secrets, (sheet, pos, v)
            elif isinstance(v, str):
                assert not any(f"{s:.7g}" in v for s in secrets if abs(s) > 0.01), (sheet, pos, v)


def test_meta_records_practice_and_verify_still_reads_it(practice):
    _, path = practice
    arch, scale, n, _ = read_meta(path)
    assert scale == "1/8" and n == 2 and arch["layers"][0]["class_name"] == "Conv2D"
    info = read_practice_meta(recalc.read_values(path, sheets=[META_SHEET])[META_SHEET], path)
    assert info["blank"][0] == "scaled" and info["seed"] is None and len(info["given"]) == 2


def test_the_exercise_fingerprint_is_written_read_back_and_changes_with_what_was_asked(worked, practice, tmp_path):
    """The hidden sheet's last row fingerprints the exercise: the file as read back gives the digest it holds,
    and another list of steps or another seed gives another."""
    ex, _ = worked
    _, path = practice
    meta = recalc.read_values(path, sheets=[META_SHEET])[META_SHEET]
    digest = read_practice_meta(meta, path)["digest"]
    assert meta[(EXERCISE_ROW, 0)] == "exercise" and len(digest) == 64 and exercise_digest(meta) == digest
    others = [plan_practice(ex.model, ex.raw, ex.scale, blank=["conv2d"]), plan_practice(ex.model, ex.raw, ex.scale, seed=3)]
    digests = {exercise_digest({pos: c.value for pos, c in p.sheet(META_SHEET).cells().items()}) for p in others}
    assert len(digests | {digest}) == 3


def test_blanking_some_steps_keeps_the_others_as_live_formulas_without_giving_answers_away(worked, tmp_path):
    ex, _ = worked
    plan = plan_practice(ex.model, ex.raw, ex.scale, blank=["conv2d"])
    assert {a.group for a in plan.answers} == {"conv2d"} and len(plan.answers) == 16
    path = write_plan(plan, tmp_path / "conv.xlsx")
    formulas, values = recalc.read_formulas(path), recalc.read_values(path)
    assert formulas["Sample 1"][(3, 6)] == "=B4/8" and values["Sample 1"][(3, 6)] == 0.125  # before: worked, cached
    assert formulas["Sample 1"][(3, 17)] == "=MAX(O4:P5)" and values["Sample 1"][(3, 17)] == 0  # after: live, no answer cached
    assert (3, 11) not in formulas["Sample 1"] and (3, 11) not in values["Sample 1"]  # conv2d's cell: empty


def test_unknown_step_names_are_refused_with_the_valid_ones(worked):
    ex, _ = worked
    with pytest.raises(CnncalcError, match=r"Cannot blank 'conv'\. Expected step names of this model: scaled, conv2d, max_pooling2d"):
        plan_practice(ex.model, ex.raw, ex.scale, blank=["conv"])


def test_a_seed_draws_a_new_integer_input_in_the_given_range_and_the_same_seed_gives_the_same_bytes(worked, tmp_path):
    ex, _ = worked
    a, b, c = (plan_practice(ex.model, ex.raw, ex.scale, seed=s) for s in (7, 7, 8))
    assert np.array_equal(a.raw, b.raw) and not np.array_equal(a.raw, c.raw) and not np.array_equal(a.raw, ex.raw)
    assert a.raw.shape == ex.raw.shape and np.all(a.raw == np.round(a.raw))
    assert a.raw.min() >= ex.raw.min() and a.raw.max() <= ex.raw.max()
    assert main(["practice", "--seed", "7", "-o", str(tmp_path / "one.xlsx")]) == 0
    assert main(["practice", "--seed", "7", "-o", str(tmp_path / "two.xlsx")]) == 0
    assert (tmp_path / "one.xlsx").read_bytes() == (tmp_path / "two.xlsx").read_bytes()
    assert read_practice_meta(recalc.read_values(tmp_path / "one.xlsx", sheets=[META_SHEET])[META_SHEET], "x")["seed"] == 7


def test_cli_practice_help_blank_and_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["practice", "--help"])
    assert "Example:" in capsys.readouterr().out
    out = tmp_path / "p.xlsx"
    assert main(["practice", "-o", str(out), "--blank", "conv2d,max_pooling2d", "dense"]) == 0
    assert "58 answer cells to fill (conv2d, max_pooling2d, dense)" in capsys.readouterr().out
    assert main(["practice", "-o", str(out)]) == 2  # never overwrites without --force
    assert "--force" in capsys.readouterr().err
    assert main(["practice", "-o", str(tmp_path / "q.xlsx"), "--blank", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnncalc: error: Cannot blank 'nope'") and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- what a student sees


def test_the_red_frame_stays_off_answer_cells_and_is_explained(practice, worked):
    """The first window's frame moves to the raw input the scaled window comes from; every answer cell keeps the
    answer style's blue border; a line under the panels says what the frame is and what the prediction is."""
    plan, path = practice
    sheet = plan.sheet("Sample 1")
    answers = {a.pos for a in plan.answers if a.sheet == "Sample 1"}
    framed = {(r, c) for r0, c0, r1, c1 in sheet.outlines for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)}
    assert sheet.outlines == [(3, 1, 5, 3)] and not framed & answers  # B4:D6, the raw numbers of window G4:I6
    wb = openpyxl.load_workbook(path)
    ws = wb["Sample 1"]
    for address in ("G4", "L4"):  # the scaled window's first cell, conv2d's first cell
        sides = [getattr(ws[address].border, s) for s in ("left", "right", "top", "bottom")]
        assert all(side.color.rgb.endswith("2F5597") and side.style == "thin" for side in sides), address
    assert ws["B4"].border.left.color.rgb.endswith("C00000") and ws["B4"].border.left.style == "thick"
    notes = [c.value for c in ws["B"] if c.style == "caption" or (isinstance(c.value, str) and c.row > 10)]
    assert max(map(len, notes)) <= 100  # each prints on the sheet's first page
    text = " ".join(notes)
    assert "Red frame: the first window of conv2d, shown on the given numbers: its first cell (L4) is Σ window × kernel + bias, " \
           "the window being these numbers once scaled (yours to compute)." in text
    assert "Prediction: class = the position of the largest output" in text and "output = that largest value" in text
    instructions = [c.value for row in wb[INSTRUCTIONS].iter_rows() for c in row if isinstance(c.value, str)]
    assert any("output = MAX(p)" in t for t in instructions) and any("red frame" in t for t in instructions)


def test_a_frame_on_given_cells_stays_where_the_worked_example_has_it(worked):
    ex, book = worked
    plan = plan_practice(ex.model, ex.raw, ex.scale, blank=["dense"])
    assert plan.sheet("Sample 1").outlines == book.sheet("Sample 1").outlines == [(3, 6, 5, 8), (3, 11, 3, 11)]


@pytest.mark.parametrize("blank, charts", [(None, 0), (["conv2d"], 0), (["dense"], 0), (["prediction"], 1)])
def test_no_chart_of_empty_cells(worked, tmp_path, blank, charts):
    """The bar chart of the last layer stays only when its cells are given (an answer cell, or a cell computed from
    one, would make it an empty chart with a 0-12 axis)."""
    ex, _ = worked
    path = write_plan(plan_practice(ex.model, ex.raw, ex.scale, blank=blank), tmp_path / "p.xlsx")
    wb = openpyxl.load_workbook(path)
    assert [len(wb[s]._charts) for s in ("Sample 1", "Sample 2")] == [charts, charts]


def test_the_weights_sheet_says_it_is_given_and_the_summary_shows_no_prediction_of_empty_cells(practice):
    plan, path = practice
    wb = openpyxl.load_workbook(path)
    title = wb["Weights"]["A1"].value
    assert wb["Weights"].protection.sheet and "edit any" not in title and "protected" in title
    formulas, values = recalc.read_formulas(path)["Summary"], recalc.read_values(path)["Summary"]
    guarded = {pos: f for pos, f in formulas.items() if pos[0] >= 12}  # the predictions table, below model.summary()
    assert sorted(guarded) == [(r, c) for r in (12, 13) for c in (1, 2, 3)]
    assert guarded and all(f.startswith('=IF(COUNT(') and f.count('"",') == 1 for f in guarded.values())
    assert guarded[(12, 3)] == '=IF(COUNT(B13,C13)<2,"",MATCH(MAX(B13:C13),B13:C13,0)-1)'
    assert not any(pos in values for pos in guarded)  # nothing cached: not 0.000000, not class 0


@pytest.mark.libreoffice
def test_libreoffice_shows_the_summary_empty_until_the_outputs_are_answered(practice, tmp_path, soffice):
    plan, path = practice
    empty = recalc.read_values(recalc.recalculate(path, tmp_path / "lo"))["Summary"]
    assert all(empty.get((r, c)) in (None, "") for r in (12, 13) for c in (1, 2, 3))
    wb = openpyxl.load_workbook(path)
    for a in plan.answers:
        wb[a.sheet].cell(a.pos[0] + 1, a.pos[1] + 1).value = round(a.expected, 7)
    wb.save(tmp_path / "filled.xlsx")
    full = recalc.read_values(recalc.recalculate(tmp_path / "filled.xlsx", tmp_path / "lo2"))["Summary"]
    assert full[(12, 1)] == pytest.approx(0.8906642) and full[(12, 3)] == 0 and full[(13, 3)] == 1


def test_a_frame_behind_a_zero_border_moves_to_the_raw_input(tmp_path):
    """'same' padding: the first window is on the zero-padded panel, which is the student's; its frame moves back
    through the zero border and the scaled input to the raw numbers it reads (the zeros of the border left out)."""
    from cnncalc.kerasfiles.loader import model_from_layer_list

    spec = {"input_shape": [5, 5, 2], "seed": 5, "layers": [
        {"Conv2D": {"filters": 3, "kernel_size": 3, "strides": 2, "padding": "same", "activation": "relu"}}, {"Flatten": {}},
        {"Dense": {"units": 2, "activation": "softmax"}}]}
    model = model_from_layer_list(spec)
    raw = np.arange(50, dtype=float).reshape(1, 5, 5, 2) % 7
    plan = plan_practice(model, raw, "1/4")
    sheet = plan.sheet("Sample 1")
    answers = {a.pos for a in plan.answers}
    assert sheet.outlines == [(3, 1, 4, 2), (3, 7, 4, 8)]  # rows 1-2, columns 1-2 of each channel's raw map: B4:C5, H4:I5
    assert not any((r, c) in answers for r0, c0, r1, c1 in sheet.outlines for r in range(r0, r1 + 1) for c in range(c0, c1 + 1))
    notes = " ".join(c.value for c in sheet.cells().values() if isinstance(c.value, str) and c.style == "caption")
    assert "the window being these numbers once scaled and zero-padded (yours to compute)" in notes
