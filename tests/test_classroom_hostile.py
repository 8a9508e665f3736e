"""Hostile and broken classroom files, made here with openpyxl (and, where openpyxl refuses, by editing the sheet XML)
from real practice workbooks: formula-like step and student names (CSV injection), control characters that would
retitle or clear a terminal, merged answer cells, one bad file in a class, one file name from two folders, and an
exercise shrunk by editing its hidden sheet.

tests/data/practice_release1.xlsx is a practice workbook made by the release before exercise fingerprints
(`cnncalc practice -o practice_release1.xlsx` at commit 23d74bc): it must still be graded."""

import csv
import json
import shutil
import zipfile

import openpyxl
import pytest

from cnncalc.classroom.check import AS_MADE, CHANGED, FILLS, NOT_CHECKED, check, csv_text, graded_paths
from cnncalc.classroom.practice import EXERCISE_ROW, exercise_digest, plan_practice
from cnncalc.cli import main
from cnncalc.kerasfiles.loader import model_from_layer_list
from cnncalc.recalc import libreoffice as recalc
from cnncalc.sheets.workbook import META_SHEET
from cnncalc.sheets.writer import write_plan

from conftest import DATA

HYPERLINK = '=HYPERLINK("http://evil.example","click")'
DDE = "@SUM(1+1)*cmd|' /C calc'!A0"
EVIL_SPEC = {"input_shape": [4, 4, 1], "seed": 3, "layers": [
    {"Conv2D": {"filters": 1, "kernel_size": 3, "activation": "relu", "name": HYPERLINK}},
    {"Flatten": {"name": DDE}},
    {"Dense": {"units": 2, "activation": "softmax", "name": "-2+3"}}]}
TERMINAL_TRICKS = "\x1b]0;pwned\x07\x1b[2J\x9b31m\x9d0;x\x9c\x7f"  # retitle, clear, C1 CSI/OSC/ST, DEL


def controls(text):
    """The control characters in printed text, line breaks aside: C0, DEL and C1."""
    return sorted({ch for ch in text if (ord(ch) < 32 and ch != "\n") or 127 <= ord(ch) < 160})


class Exercise:
    """A practice workbook on disk, its plan, and copies filled in as students fill them."""

    def __init__(self, model, raw, scale, path, blank=None):
        self.plan = plan_practice(model, raw, scale, blank)
        self.path = write_plan(self.plan, path)

    def fill(self, out, name="Ada Lovelace", changes=(), edit=None, source=None):
        """A copy with every answer typed right (7 digits), then `changes` {address: what to type}, then edit(wb)."""
        wb = openpyxl.load_workbook(source or self.path)
        typed = {a.address: round(a.expected, 7) for a in self.plan.answers}
        typed.update(dict(changes))
        for a in self.plan.answers:
            wb[a.sheet].cell(a.pos[0] + 1, a.pos[1] + 1).value = typed[a.address]
        cell = wb["Instructions"]["B3"]
        cell.value = name
        if name.startswith("="):
            cell.data_type = "s"  # text, as a student types it (openpyxl would make it a formula)
        if edit:
            edit(wb)
        wb.save(out)
        return out


@pytest.fixture(scope="module")
def chapter(tmp_path_factory):
    from cnncalc.companion.examples import chapter_example

    ex = chapter_example()
    return Exercise(ex.model, ex.raw, ex.scale, tmp_path_factory.mktemp("chapter") / "practice.xlsx")


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    """A model whose layer names are formulas: a teacher may receive such a model file, and its names are the steps."""
    import numpy as np

    raw = np.arange(16, dtype=float).reshape(1, 4, 4, 1) % 5
    return Exercise(model_from_layer_list(EVIL_SPEC), raw, None, tmp_path_factory.mktemp("evil") / "practice.xlsx")


def hidden(wb):
    """(the hidden sheet, its architecture as a dict)."""
    ws = wb[META_SHEET]
    return ws, json.loads(ws["B4"].value)


def with_merge(path, out, ref, sheet_part=None):
    """A copy with <mergeCells> added to a sheet's XML (openpyxl itself would make an object for every merged cell)."""
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        parts = [n for n in zin.namelist() if n.startswith("xl/worksheets/sheet")]
        target = sheet_part or parts[0]
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == target:
                data = data.replace(b"<pageMargins", f'<mergeCells count="1"><mergeCell ref="{ref}"/></mergeCells><pageMargins'.encode(), 1)
                assert ref.encode() in data
            zout.writestr(item, data)
    return out


# ---------------------------------------------------------------- CSV injection


@pytest.mark.parametrize("value, safe", [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"),
    ("\n=1", "'\n=1"), ("  =1", "'  =1"), ("\uff1d1+1", "'\uff1d1+1"), ("Ada", "Ada"), ("conv2d", "conv2d"), ("a=b", "a=b"),
    (112, 112), (-1, -1), ("", ""),
])
def test_csv_text_makes_formula_starts_plain_text(value, safe):
    assert csv_text(value) == safe


def test_every_csv_field_header_included_is_plain_text(evil, chapter, tmp_path, capsys):
    """Formula-like step names (a model file's layer names, and a layer renamed on the hidden sheet) and student names."""
    def rename(wb):
        ws, arch = hidden(wb)
        arch["layers"][3]["config"]["name"] = "+cmd|' /C notepad'!A1"  # the chapter's first dense layer
        ws["B4"] = json.dumps(arch)
        ws["B7"] = json.dumps(["scaled", "conv2d", "max_pooling2d", "flatten", "+cmd|' /C notepad'!A1", "dense_1", "prediction"])

    files = [evil.fill(tmp_path / "a.xlsx", name=DDE), evil.fill(tmp_path / "b.xlsx", name="-1+1"),
             chapter.fill(tmp_path / "c.xlsx", name="\t=1+1", edit=rename), chapter.fill(tmp_path / "d.xlsx", name=HYPERLINK)]
    grades = tmp_path / "grades.csv"
    assert main(["check", *map(str, files), "--csv", str(grades)]) == 1  # c.xlsx: the exercise was changed
    capsys.readouterr()
    rows = list(csv.reader(grades.open(encoding="utf-8", newline="")))
    assert len(rows) == 5
    for row in rows:
        for field in row:
            assert field[:1] not in ("=", "+", "-", "@", "\t", "\r") and not field.lstrip(" ").startswith(("=", "+", "-", "@")), field
    header = rows[0]
    assert "'" + HYPERLINK in header and "'" + DDE in header and "'-2+3" in header and "'+cmd|' /C notepad'!A1" in header
    assert [r[0] for r in rows[1:]] == ["'" + DDE, "'-1+1", "'=1+1", "'" + HYPERLINK]  # a name is read stripped
    assert rows[3][header.index("exercise")].startswith("changed")


def test_the_class_report_keeps_formula_like_names_as_text(evil, tmp_path, capsys):
    """Step and student names that look like formulas: text in the report's cells, and no chart title starts with "=".
    One answer is left empty, so its step gets a chart."""
    conv = next(a for a in evil.plan.answers if a.panel.step == "pre")  # the first conv cell
    files = [evil.fill(tmp_path / "a.xlsx", name=DDE, changes={conv.address: None}), evil.fill(tmp_path / "b.xlsx", name=HYPERLINK)]
    report = tmp_path / "class.xlsx"
    assert main(["check", *map(str, files), "--report", str(report)]) == 1
    capsys.readouterr()
    wb = openpyxl.load_workbook(report)
    names = [c.value for c in wb["Class"]["A"]]
    assert DDE in names and HYPERLINK in names
    assert all(c.data_type != "f" for ws in wb.worksheets for row in ws.iter_rows() for c in row)
    titles = [chart.title.tx.rich.p[0].r[0].t for chart in wb["Slips"]._charts]
    assert titles and all(t.startswith("step ") for t in titles) and any(HYPERLINK in t for t in titles)


@pytest.mark.libreoffice
def test_libreoffice_opens_the_class_csv_without_a_single_formula(evil, tmp_path, soffice, capsys):
    """The real thing: LibreOffice, opening the CSV, takes an unescaped =... for a formula (checked first)."""
    bare = tmp_path / "bare.csv"
    bare.write_text(f'"{HYPERLINK.replace(chr(34), chr(34) * 2)}",1\n', encoding="utf-8")
    assert recalc.read_formulas(recalc.recalculate(bare, tmp_path / "lo-bare"))["bare"]  # it would have been a formula
    files = [evil.fill(tmp_path / "a.xlsx", name=DDE), evil.fill(tmp_path / "b.xlsx", name=HYPERLINK)]
    grades = tmp_path / "grades.csv"
    assert main(["check", *map(str, files), "--csv", str(grades)]) == 0
    capsys.readouterr()
    opened = recalc.recalculate(grades, tmp_path / "lo")
    assert recalc.read_formulas(opened) == {"grades": {}}
    values = recalc.read_values(opened)["grades"]
    assert values[(0, 0)] == "name" and values[(1, 0)] == "'" + DDE and values[(2, 0)] == "'" + HYPERLINK
    assert values[(1, 3)] == check(files[0]).total  # the score stays a number


# ---------------------------------------------------------------- control characters reach no terminal


def test_control_characters_from_a_file_are_escaped_in_every_report(chapter, tmp_path, capsys):
    def tricks(wb):
        ws, arch = hidden(wb)
        arch["name"] = TERMINAL_TRICKS  # the model name, on the hidden sheet
        ws["B4"] = json.dumps(arch)

    name = "Eve\x9b2J\x7f\r\nFAKE: 100%"
    nasty = chapter.fill(tmp_path / "nasty.xlsx", name=name, changes={"'Sample 1'!G4": "0.1\x9b2J\x9d"}, edit=tricks)
    plain = chapter.fill(tmp_path / "plain.xlsx")
    for argv in (["check", str(nasty)], ["check", str(nasty), str(plain)], ["check", str(nasty), "--json"]):
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 1 and controls(out + err) == [], (argv, controls(out + err))
        if "--json" in argv:
            data = json.loads(out)
            assert data["name"] == name.strip() and data["model"] == TERMINAL_TRICKS  # JSON keeps the text, escaped
        else:
            assert "Eve\\x9b2J\\x7f\\r\\nFAKE" in out
    main(["check", str(nasty)])
    out = capsys.readouterr().out
    assert "\\x1b]0;pwned\\x07\\x1b[2J\\x9b31m" in out and '"0.1\\x9b2J\\x9d"' in out


def test_verify_report_escapes_text_from_the_file():
    from cnncalc.recalc.verify import Difference, Report, format_report

    report = Report("book\x1b[2J.xlsx", checked=1, per_sheet={"Sample 1": 1})
    report.failures = [Difference("'Sample 1'!L4", 0.5, "\x9b31m\x1b]0;x\x07", '=L4&"\x9b\x1b[2J"')]
    text = format_report(report)
    assert controls(text) == [] and "\\x9b" in text and "book\\x1b[2J.xlsx" in text


# ---------------------------------------------------------------- merged cells, and one bad file in a class


def test_merged_answer_cells_are_marked_one_by_one_and_the_graded_copy_unmerges_them(chapter, tmp_path, capsys):
    filled = chapter.fill(tmp_path / "merged.xlsx", edit=lambda wb: wb["Sample 1"].merge_cells("L4:M5"))
    grade = check(filled)
    marks = {m.address: m for m in grade.marks}
    assert marks["'Sample 1'!L4"].status == "correct"  # the merge keeps the first cell's value
    for address in ("'Sample 1'!M4", "'Sample 1'!L5", "'Sample 1'!M5"):
        assert marks[address].status == "missing" and "covered by the merged cells 'Sample 1'!L4:M5" in marks[address].note
    assert any("merged area(s) cover answer cells" in w for w in grade.warnings)
    graded = tmp_path / "graded.xlsx"
    assert main(["check", str(filled), "--graded", str(graded)]) == 1
    assert "merged" in capsys.readouterr().out
    wb = openpyxl.load_workbook(graded)
    ws = wb["Sample 1"]
    assert not ws.merged_cells.ranges
    assert ws["L4"].fill.start_color.rgb.endswith("C6EFCE") and ws["L4"].comment is None
    for address in ("M4", "L5", "M5"):
        assert ws[address].fill.start_color.rgb.endswith(FILLS["missing"]) and "covered by the merged cells" in ws[address].comment.text


def test_one_bad_file_never_stops_the_class(chapter, tmp_path, capsys):
    """A merged answer area, a merge over a whole sheet (17 billion cells: no graded copy), a file that is no
    workbook: the others are graded, copied and in the CSV; each failure is one line and one CSV row."""
    good = chapter.fill(tmp_path / "ada.xlsx")
    merged = chapter.fill(tmp_path / "bob.xlsx", name="Bob", edit=lambda wb: wb["Sample 2"].merge_cells("L4:P5"))
    sheet2 = next(part for name, part in recalc._sheet_paths(zipfile.ZipFile(chapter.path)) if name == "Sample 2")
    huge = with_merge(chapter.fill(tmp_path / "tmp.xlsx", name="Cy"), tmp_path / "cy.xlsx", "A1:XFD1048576", sheet2)
    broken = tmp_path / "dee.xlsx"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    out, grades = tmp_path / "graded", tmp_path / "grades.csv"
    assert main(["check", str(good), str(merged), str(huge), str(broken), "--graded", str(out), "--csv", str(grades)]) == 2
    err = capsys.readouterr().err
    assert err.count("cnncalc: error:") == 2 and len(err.strip().splitlines()) == 2
    assert "cy.xlsx" in err and "merged areas cover 17,179,869,184 cells" in err and "dee.xlsx" in err
    assert sorted(f.name for f in out.iterdir()) == ["ada-graded.xlsx", "bob-graded.xlsx"]
    rows = {r["file"]: r for r in csv.DictReader(grades.open(encoding="utf-8"))}
    assert rows[str(good)]["status"] == "graded" and rows[str(good)]["score"] == "112" and rows[str(good)]["error"] == ""
    assert rows[str(merged)]["status"] == "graded" and int(rows[str(merged)]["score"]) < 112
    assert rows[str(huge)]["status"] == "graded, no graded copy" and rows[str(huge)]["score"] == "112" and "merged" in rows[str(huge)]["error"]
    assert rows[str(broken)]["status"] == "not graded" and rows[str(broken)]["score"] == "" and "dee.xlsx" in rows[str(broken)]["error"]
    copy = openpyxl.load_workbook(out / "bob-graded.xlsx")
    assert not copy["Sample 2"].merged_cells.ranges and copy["Sample 2"]["M4"].comment is not None


# ---------------------------------------------------------------- one file name from two folders


@pytest.mark.parametrize("paths, names", [
    (["a/s.xlsx", "b/t.xlsx"], ["s-graded.xlsx", "t-graded.xlsx"]),
    (["x/s.xlsx", "y/s.xlsx"], ["x-s-graded.xlsx", "y-s-graded.xlsx"]),
    (["x/S.xlsx", "y/s.xlsx"], ["x-S-graded.xlsx", "y-s-graded.xlsx"]),  # alike where letter case is not told apart
    (["a/x/s.xlsx", "b/x/s.xlsx", "y/s.xlsx"], ["a-x-s-graded.xlsx", "b-x-s-graded.xlsx", "y-s-graded.xlsx"]),
    (["x/s.xlsx", "x/s.xlsx"], ["s-graded.xlsx", "s-graded-2.xlsx"]),  # one file named twice
    (["out/s.xlsx", "out/s-graded.xlsx"], ["s-graded-2.xlsx", "s-graded-graded.xlsx"]),  # never an input
])
def test_graded_copies_never_share_a_name(paths, names, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert [p.rsplit("/", 1)[-1] for p in graded_paths(paths, "out")] == names


def test_same_file_name_from_two_folders_gets_two_graded_copies(chapter, tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    ada = chapter.fill(tmp_path / "x" / "s.xlsx", name="Ada")
    bob = chapter.fill(tmp_path / "y" / "s.xlsx", name="Bob", changes={"'Sample 1'!L4": 0.5800399})
    out = tmp_path / "graded"
    assert main(["check", str(ada), str(bob), "--graded", str(out)]) == 1
    capsys.readouterr()
    names = {f.name: openpyxl.load_workbook(f)["Grade"]["B2"].value for f in out.iterdir()}
    assert names == {"x-s-graded.xlsx": "Ada", "y-s-graded.xlsx": "Bob"}
    # an existing target refuses the whole run before anything is graded or written
    (out / "y-s-graded.xlsx").unlink()
    grades = tmp_path / "grades.csv"
    assert main(["check", str(ada), str(bob), "--graded", str(out), "--csv", str(grades)]) == 2
    assert "x-s-graded.xlsx" in capsys.readouterr().err and not (out / "y-s-graded.xlsx").exists() and not grades.exists()
    assert main(["check", str(ada), str(bob), "--graded", str(out), "--force"]) == 1
    names = {f.name: openpyxl.load_workbook(f)["Grade"]["B2"].value for f in out.iterdir()}
    assert names == {"x-s-graded.xlsx": "Ada", "y-s-graded.xlsx": "Bob"}


# ---------------------------------------------------------------- the exercise, as set


def shrink(steps, recompute=False):
    """An edit of the hidden list of steps to compute (and, for a student who read cnncalc's source, the fingerprint)."""
    def edit(wb):
        ws = wb[META_SHEET]
        ws["B7"] = json.dumps(steps)
        if recompute:
            meta = {(c.row - 1, c.column - 1): c.value for row in ws.iter_rows() for c in row if c.value is not None}
            ws.cell(EXERCISE_ROW + 1, 2).value = exercise_digest(meta)
    return edit


def test_an_untouched_exercise_is_as_made_and_passes(chapter, tmp_path, capsys):
    grade = check(chapter.fill(tmp_path / "right.xlsx"))
    assert grade.exercise == AS_MADE and grade.ok and not grade.exercise_note


@pytest.mark.parametrize("recompute", [False, True])
def test_a_shrunk_list_of_steps_is_caught_and_every_step_asked_is_graded(chapter, tmp_path, capsys, recompute):
    """Only the scaled input done, the rest left empty, and the hidden list cut down to ["scaled"]: 100 % before."""
    empty = {a.address: None for a in chapter.plan.answers if a.group != "scaled"}
    cheat = chapter.fill(tmp_path / "cheat.xlsx", changes=empty, edit=shrink(["scaled"], recompute))
    grade = check(cheat)
    assert grade.exercise == CHANGED and "leaves out conv2d" in grade.exercise_note
    assert grade.total == 112 and grade.score == 32 and not grade.ok
    assert ("edited after the workbook was made" in grade.exercise_note) is not recompute
    grades = tmp_path / "grades.csv"
    assert main(["check", str(cheat), str(chapter.fill(tmp_path / "ok.xlsx")), "--csv", str(grades)]) == 1
    assert "changed" in capsys.readouterr().out
    rows = list(csv.DictReader(grades.open(encoding="utf-8")))
    assert rows[0]["exercise"].startswith("changed: its hidden list of steps to compute leaves out conv2d") and rows[0]["score"] == "32"
    assert rows[1]["exercise"] == "as made"
    assert main(["check", str(cheat)]) == 1
    out = capsys.readouterr().out
    assert "WARNING: the exercise was changed" in out and "NOT OK: the exercise was changed" in out


def test_an_edited_seed_is_caught_by_the_fingerprint(chapter, tmp_path):
    grade = check(chapter.fill(tmp_path / "seed.xlsx", edit=lambda wb: wb[META_SHEET].cell(8, 2, 7)))
    assert grade.exercise == CHANGED and "edited after the workbook was made" in grade.exercise_note
    assert grade.count("correct") == grade.total and not grade.ok


def test_an_unknown_step_on_the_hidden_sheet_is_named_as_an_edit_in_one_short_line(chapter, tmp_path, capsys):
    edited = chapter.fill(tmp_path / "unknown.xlsx", edit=shrink(["scaled", "conv3d"] + [f"step{i}" for i in range(2_000)]))  # a cell holds 32,767 characters
    assert main(["check", str(edited)]) == 2
    err = capsys.readouterr().err
    assert "hidden _cnncalc sheet" in err and "'conv3d'" in err and "--blank" not in err
    assert len(err) < 1500 and len(err.strip().splitlines()) == 1


def test_ten_thousand_names_on_the_command_line_give_one_short_line(tmp_path, capsys):
    assert main(["practice", "-o", str(tmp_path / "p.xlsx"), "--blank", *[f"step{i}" for i in range(10_000)]]) == 2
    err = capsys.readouterr().err
    assert "Received --blank step0 step1" in err and len(err) < 1500 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p.xlsx").exists()


def test_a_seed_a_cell_cannot_keep_exactly_is_refused(tmp_path, capsys):
    assert main(["practice", "-o", str(tmp_path / "p.xlsx"), "--seed", str(2 ** 53 + 1)]) == 2
    assert "Expected a whole number from 0 to 9,007,199,254,740,992" in capsys.readouterr().err


def test_a_practice_workbook_of_the_previous_release_is_graded(chapter, tmp_path, capsys):
    old = DATA / "practice_release1.xlsx"
    assert openpyxl.load_workbook(old)[META_SHEET].cell(EXERCISE_ROW + 1, 1).value is None  # made without a fingerprint
    filled = chapter.fill(tmp_path / "old.xlsx", source=old)
    grade = check(filled)
    assert grade.exercise == NOT_CHECKED and "earlier cnncalc" in grade.exercise_note and grade.ok
    assert main(["check", str(filled)]) == 0
    assert "note: made by an earlier cnncalc" in capsys.readouterr().out
    # without a fingerprint, a shortened list is still caught by the answer cells it leaves out
    empty = {a.address: None for a in chapter.plan.answers if a.group != "scaled"}
    cheat = check(chapter.fill(tmp_path / "old-cheat.xlsx", source=old, changes=empty, edit=shrink(["scaled"])))
    assert cheat.exercise == CHANGED and cheat.total == 112 and cheat.score == 32


@pytest.mark.libreoffice
def test_the_fingerprint_survives_libreoffice_saving_the_file(chapter, tmp_path, soffice):
    saved = recalc.recalculate(chapter.fill(tmp_path / "filled.xlsx"), tmp_path / "lo")
    shutil.copy(saved, tmp_path / "saved.xlsx")
    grade = check(tmp_path / "saved.xlsx")
    assert grade.exercise == AS_MADE and grade.ok
