"""Practice workbooks: the worked example's layout, every computed cell of the chosen steps empty and unlocked,
given cells protected, nothing that gives an answer away, a name cell, and a reproducible seeded input."""

import numpy as np
import openpyxl
import pytest

from cnncalc.recalc import libreoffice as recalc
from cnncalc.cli import main
from cnncalc.errors import CnncalcError
from cnncalc.classroom.practice import INSTRUCTIONS, plan_practice, read_practice_meta
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
    arch, scale, n = read_meta(path)
    assert scale == "1/8" and n == 2 and arch["layers"][0]["class_name"] == "Conv2D"
    info = read_practice_meta(recalc.read_values(path, sheets=[META_SHEET])[META_SHEET], path)
    assert info["blank"][0] == "scaled" and info["seed"] is None and len(info["given"]) == 2


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
