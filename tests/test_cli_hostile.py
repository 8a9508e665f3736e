"""The command line against hostile paths and arguments (issue 10): pipes and devices, names too long or with line
breaks, zero strides, outputs that collide or cannot be written, bugs that must not look like "wrong answers".

Every hostile file is made here, in tmp_path. A case that could hang (a named pipe, a device) runs the CLI in a
subprocess with a timeout, so a regression fails the test instead of stopping the suite.
"""

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import pytest

from cnncalc import cli, files
from cnncalc.errors import CnncalcError

SPEC = {"input_shape": [4, 4, 1], "seed": 0, "layers": [
    {"Conv2D": {"filters": 1, "kernel_size": 3, "activation": "relu"}}, {"Flatten": {}},
    {"Dense": {"units": 2, "activation": "softmax"}}]}
HANG = 60  # seconds: far above any of these commands, far below forever


def run(*argv, cwd=None, timeout=HANG):
    """The CLI in a subprocess: (exit code, stdout, stderr); a hang is a failure, not a stuck suite."""
    try:
        r = subprocess.run([sys.executable, "-m", "cnncalc", *map(str, argv)], capture_output=True, text=True,
                           cwd=cwd, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"cnncalc {' '.join(map(str, argv))[:200]} still ran after {timeout} s (a hang)")
    return r.returncode, r.stdout, r.stderr


def main(*argv):
    """cli.main in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def one_line(code, err, *words, exit_code=2):
    assert code == exit_code, err
    prefix = "cnncalc: error: " if exit_code == 2 else "cnncalc: internal error: "
    assert err.startswith(prefix) and err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Good files to put beside the hostile ones: a spec, a model, an input, a worked example, a practice workbook."""
    d = tmp_path_factory.mktemp("made")
    (d / "spec.json").write_text(json.dumps(SPEC))
    assert main("new", d / "spec.json", "-o", d / "m.keras")[0] == 0
    np.save(d / "x.npy", np.arange(16.0).reshape(4, 4))
    assert main("example", "-o", d / "book.xlsx")[0] == 0
    assert main("practice", "-o", d / "practice.xlsx")[0] == 0
    return d


def listing(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


# ---------------------------------------------------------------- pipes and devices: refused before they are opened


def input_commands(made, bad):
    """Every input path of every command, with `bad` in its place."""
    return {
        "verify": ["verify", bad],
        "check": ["check", bad],
        "check (a class)": ["check", made / "practice.xlsx", bad],
        "export": ["export", bad, "-o", "{out}/e.keras"],
        "new": ["new", bad, "-o", "{out}/n.keras"],
        "summary": ["summary", bad],
        "predict model": ["predict", bad, "--input", made / "x.npy"],
        "build --config": ["build", made / "m.keras", "--config", bad, "--input", made / "x.npy", "-o", "{out}/b.xlsx"],
        "build --input": ["build", made / "m.keras", "--input", bad, "-o", "{out}/b.xlsx"],
        "predict --input": ["predict", "--input", bad],
        "practice --input": ["practice", "--input", made / "x.npy", bad, "-o", "{out}/p.xlsx"],
    }


@pytest.mark.parametrize("kind", ["fifo", "fifo behind a link", "/dev/zero", "/dev/urandom", "folder"])
def test_pipes_devices_and_folders_are_refused_for_every_input(made, tmp_path, kind):
    if kind.startswith("/dev/"):
        if not os.path.exists(kind):
            pytest.skip(f"no {kind} here")
        bad = tmp_path / "x.npy"
        bad.symlink_to(kind)  # a name every command accepts, pointing at a device that never ends
        words = ["a device"]
    elif kind == "folder":
        bad = tmp_path / "x.npy"
        bad.mkdir()
        words = ["a folder"]
    else:
        bad = tmp_path / "x.npy"
        os.mkfifo(tmp_path / "pipe")  # nobody ever writes to it: opening it for reading would wait forever
        if kind == "fifo":
            (tmp_path / "pipe").rename(bad)
        else:
            bad.symlink_to(tmp_path / "pipe")
        words = ["a named pipe"]
    out = tmp_path / "out"
    out.mkdir()
    for name, argv in input_commands(made, bad).items():
        argv = [str(a).format(out=out) for a in argv]
        code, stdout, err = main(*argv) if kind == "folder" else run(*argv)  # a folder cannot hang: read in this process
        if name == "check (a class)":  # one bad file of a class is reported; the others are graded
            assert code == 2 and err.count("\n") == 1 and "Traceback" not in err and words[0] in err, (name, err)
            assert "practice.xlsx" in stdout, name
        else:
            one_line(code, err, *words)
        assert os.listdir(out) == [], f"{name} wrote {os.listdir(out)}"


def test_safe_open_refuses_a_pipe_swapped_in_after_the_check(tmp_path, monkeypatch):
    """open_input opens without waiting and checks the open handle, so a race cannot hang it either."""
    os.mkfifo(tmp_path / "pipe")
    monkeypatch.setattr(files, "check_input", lambda path, expected, max_bytes=None: os.fspath(path))
    with pytest.raises(CnncalcError, match="a named pipe"):
        files.open_input(tmp_path / "pipe", "a test file")


def test_every_read_is_capped_by_size(tmp_path, monkeypatch):
    from cnncalc import guards

    big = tmp_path / "spec.json"
    big.write_text(json.dumps(SPEC) + " " * 2000)
    monkeypatch.setattr(guards, "MAX_JSON_BYTES", 1000)
    code, _, err = main("new", big, "-o", tmp_path / "m.keras")
    one_line(code, err, "is too large", "at most 1,000", "bytes")
    monkeypatch.setattr(guards, "MAX_FILE_BYTES", 100)
    np.save(tmp_path / "x.npy", np.zeros((4, 4)))
    one_line(*main("predict", "--input", tmp_path / "x.npy")[::2], "is too large", "at most 100 ")
    with pytest.raises(CnncalcError, match="at most 10 bytes"):
        files.read_input(big, "a test file", 10)
    assert not (tmp_path / "m.keras").exists()


def test_an_empty_or_unreadable_input_is_one_line(made, tmp_path, monkeypatch):
    (tmp_path / "empty.keras").write_bytes(b"")
    one_line(*main("summary", tmp_path / "empty.keras")[::2], "is empty")
    monkeypatch.setattr(files.os, "access", lambda *a, **k: False)  # chmod 000 means nothing to root
    one_line(*main("summary", made / "m.keras")[::2], "permission denied")


# ---------------------------------------------------------------- names the system refuses, and names that break lines


LONG = "a" * 300  # longer than any file name Linux allows (255 bytes)


@pytest.mark.parametrize("argv", [
    ["predict", "--input", f"{LONG}.npy"],
    ["summary", f"{LONG}.keras"],
    ["build", f"{LONG}.keras", "--input", "x.npy", "-o", "b.xlsx"],
    ["verify", f"{LONG}.xlsx"],
    ["check", f"{LONG}.xlsx"],
    ["new", f"{LONG}.json", "-o", "m.keras"],
    ["example", "-o", f"{LONG}.xlsx"],
    ["example", "-o", f"{LONG}/x.xlsx"],
    ["examples", "--all", "--out", LONG],
    ["example", "--png", LONG, "-o", "x.xlsx"],
    ["check", "p.xlsx", "--csv", f"{LONG}.csv"],
])
def test_a_name_too_long_is_one_line(made, tmp_path, argv):
    for name in ("x.npy", "p.xlsx"):
        shutil.copyfile(made / ("x.npy" if name == "x.npy" else "practice.xlsx"), tmp_path / name)
    before = listing(tmp_path)
    code, _, err = run(*argv, cwd=tmp_path)
    one_line(code, err)
    assert "aaaa ... aaaa" in err and len(err) < 600, err  # the name is shown, cut in the middle
    assert listing(tmp_path) == before


@pytest.mark.parametrize("name", ["in\nput.npy", "in\rput.npy", "esc\x1b[2Jape.npy", "c1\x9bcontrol.npy", "tab\tname.npy"])
def test_names_with_line_breaks_and_control_characters_stay_on_one_line(tmp_path, name):
    for argv in (["predict", "--input", tmp_path / name],  # missing
                 ["verify", tmp_path / name],
                 ["example", "-o", tmp_path / name]):  # refused: not an .xlsx name
        code, _, err = main(*argv)
        one_line(code, err)
        assert not any(ch in err[:-1] for ch in "\n\r\x1b\x9b\t"), repr(err)
    np.save(tmp_path / name, np.zeros((3, 3)))  # exists, and the wrong shape: the name is in the message, escaped
    code, _, err = main("predict", "--input", tmp_path / name)
    one_line(code, err, "Expected shape")
    assert repr(name)[1:-1] in err or name.encode("unicode_escape").decode() in err, err


def test_any_message_is_one_line_even_from_an_unforeseen_place(monkeypatch):
    from cnncalc.companion import explain

    def broken(*args, **kw):
        raise CnncalcError("first line\nsecond line\x1b]0;retitled\x07")

    monkeypatch.setattr(explain, "explain_pool", broken)
    code, _, err = main("explain", "pool", "--a", "1 2; 3 4")
    one_line(code, err, "first line\\nsecond line\\x1b]0;retitled\\x07")


def test_an_os_error_naming_a_path_is_one_line_exit_2(monkeypatch):
    from cnncalc.companion import explain

    def refused(*args, **kw):
        raise OSError(36, "File name too long", "b" * 300)

    monkeypatch.setattr(explain, "explain_pool", refused)
    one_line(*main("explain", "pool", "--a", "1 2; 3 4")[::2], "File name too long", "bbb ... bbb")

    def disk(*args, **kw):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(explain, "explain_pool", disk)  # the system failing is not a bug in cnncalc: exit 2, not 3
    one_line(*main("explain", "pool", "--a", "1 2; 3 4")[::2], "Input/output error")


# ---------------------------------------------------------------- arguments: one line, never a traceback


@pytest.mark.parametrize("argv, words", [
    (["explain", "conv", "--a", "1 2; 3 4", "--b", "1", "--stride", "0"], ["--stride", "Expected a whole number >= 1", "Received 0"]),
    (["explain", "conv", "--a", "1 2; 3 4", "--b", "1", "--stride", "-2"], ["--stride", "Received -2"]),
    (["explain", "pool", "--a", "1 2; 3 4", "--size", "0"], ["--size", "Received 0"]),
    (["explain", "pool", "--a", "1 2; 3 4", "--stride", "0"], ["--stride", "Received 0"]),  # was: quietly stride 2
    (["explain", "pool", "--a", "1 2; 3 4", "--size", "-1"], ["--size", "Received -1"]),
    (["practice", "--seed", "-5", "-o", "p.xlsx"], ["--seed", "expected a whole number >= 0", "'-5'"]),
    (["new", "spec.json", "--seed", "-1", "-o", "m.keras"], ["--seed", "'-1'"]),
    (["build", "--output"], ["-o/--output", "cnncalc build --help"]),
    (["build"], ["the following arguments are required: -o/--output"]),
    (["predict", "--no-such-option"], ["unrecognized arguments: --no-such-option"]),
    (["no-such-command"], ["invalid choice: 'no-such-command'", "cnncalc --help"]),
    (["example", "--lang", "fr"], ["invalid choice: 'fr'"]),
    (["check", "p.xlsx", "--tolerance", "x"], ["invalid float value: 'x'"]),
    (["example", "--window", "1"], ["expected ROW,COL"]),
])
def test_bad_arguments_are_one_line_exit_2(tmp_path, argv, words):
    code, out, err = run(*argv, cwd=tmp_path)
    one_line(code, err, *words)
    assert out == "" and listing(tmp_path) == []


def test_explain_pool_default_stride_is_the_window():
    code, out, _ = main("explain", "pool", "--a", "1 2 3; 4 5 6; 7 8 9", "--size", "2")
    assert code == 0 and "stride 2" in out
    code, out, _ = main("explain", "pool", "--a", "1 2 3; 4 5 6; 7 8 9", "--size", "2", "--stride", "1")
    assert code == 0 and "stride 1" in out and "max(5, 6, 8, 9) = 9" in out


def test_version():
    code, out, err = run("--version")
    from cnncalc import __version__

    assert code == 0 and out.strip() == f"cnncalc {__version__}" and err == ""


# ---------------------------------------------------------------- exit codes: a bug is never "differences found"


def test_a_bug_exits_3_with_one_line_and_a_hint(monkeypatch):
    from cnncalc.companion import explain

    def bug(*args, **kw):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(explain, "explain_conv", bug)
    code, _, err = main("explain", "conv", "--a", "1 2; 3 4", "--b", "1")
    one_line(code, err, "ZeroDivisionError: division by zero", "a bug in cnncalc", "--traceback explain", exit_code=3)
    assert code not in (cli.EXIT_DIFFERS, cli.EXIT_ERROR)
    with pytest.raises(ZeroDivisionError):
        main("--traceback", "explain", "conv", "--a", "1 2; 3 4", "--b", "1")


def test_the_help_lists_every_exit_code():
    text = cli.build_parser().format_help()
    for words in ("1    differences found (verify), or wrong or missing answers (check)", "3    a bug in cnncalc", "130"):
        assert words in text
    assert "missing folders are made" in text
    assert max(len(line) for line in text.splitlines()) <= 100


# ---------------------------------------------------------------- outputs: all checked before the first is written


def test_example_with_png_into_a_file_writes_nothing(tmp_path):
    (tmp_path / "afile").write_text("mine")
    code, _, err = main("example", "-o", tmp_path / "ex.xlsx", "--png", tmp_path / "afile")
    one_line(code, err, "afile': it is a file, not a folder")
    assert listing(tmp_path) == ["afile"]


def test_example_refuses_before_writing_when_a_picture_exists(tmp_path):
    assert main("example", "-o", tmp_path / "a.xlsx", "--png", tmp_path / "maps")[0] == 0
    pictures = listing(tmp_path / "maps")
    assert pictures and all(p.endswith(".png") for p in pictures)
    code, _, err = main("example", "-o", tmp_path / "b.xlsx", "--png", tmp_path / "maps")
    one_line(code, err, "already exists", "--force")
    assert not (tmp_path / "b.xlsx").exists()
    assert main("example", "-o", tmp_path / "b.xlsx", "--png", tmp_path / "maps", "--force")[0] == 0  # force reaches the pictures
    assert listing(tmp_path / "maps") == pictures


def test_examples_all_writes_nothing_when_one_target_exists(tmp_path):
    from cnncalc.companion.examples import CATALOGUE

    last = list(CATALOGUE)[-1]
    (tmp_path / f"{last}.xlsx").write_bytes(b"precious")
    code, _, err = main("examples", "--all", "--out", tmp_path)
    one_line(code, err, f"{last}.xlsx", "already exists")
    assert listing(tmp_path) == [f"{last}.xlsx"] and (tmp_path / f"{last}.xlsx").read_bytes() == b"precious"


def test_examples_all_makes_its_folders_and_keeps_each_examples_pictures_apart(tmp_path):
    from cnncalc.companion.examples import CATALOGUE

    code, out, err = main("examples", "--all", "--out", tmp_path / "new" / "books", "--png", tmp_path / "new" / "maps")
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "new" / "books")) == sorted(f"{name}.xlsx" for name in CATALOGUE)
    folders = os.listdir(tmp_path / "new" / "maps")  # a folder for each example that has feature maps
    assert "cnn_simple_example" in folders and set(folders) <= set(CATALOGUE)
    pictures = [p for p in listing(tmp_path / "new" / "maps") if p.endswith(".png")]
    assert out.count("wrote ") == len(CATALOGUE) + len(pictures)  # every picture written, none over another


def test_check_refuses_colliding_outputs_before_grading(made, tmp_path):
    shutil.copyfile(made / "practice.xlsx", tmp_path / "p.xlsx")
    code, _, err = main("check", tmp_path / "p.xlsx", "--graded", tmp_path / "out.dat", "--csv", tmp_path / "out.dat")
    one_line(code, err, "'.dat'", ".xlsx")
    code, _, err = main("check", tmp_path / "p.xlsx", "--graded", tmp_path / "p.xlsx", "--force")
    one_line(code, err, "also an input")
    assert listing(tmp_path) == ["p.xlsx"]


def test_two_students_with_the_same_file_name_never_share_a_graded_copy(made, tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        shutil.copyfile(made / "practice.xlsx", tmp_path / folder / "s.xlsx")
    code, _, err = main("check", tmp_path / "x" / "s.xlsx", tmp_path / "y" / "s.xlsx", "--graded", tmp_path / "graded", "--force")
    graded = listing(tmp_path / "graded") if (tmp_path / "graded").exists() else []
    if code == 2:  # refused up front: nothing written
        one_line(code, err, "named twice")
        assert graded == []
    else:  # or each student gets a copy of their own
        assert len(graded) == 2, (code, err, graded)


def test_workbook_outputs_must_be_xlsx(made, tmp_path):
    shutil.copyfile(made / "m.keras", tmp_path / "m.keras")
    model = (tmp_path / "m.keras").read_bytes()
    for argv in (["example", "-o", tmp_path / "conv"],
                 ["practice", "-o", tmp_path / "p.XLS"],
                 ["build", tmp_path / "m.keras", "--input", made / "x.npy", "-o", tmp_path / "m.keras", "--force"],
                 ["check", made / "practice.xlsx", "--csv", tmp_path / "grades.xlsx"]):
        one_line(*main(*argv)[::2], "the name does not end in")
    assert (tmp_path / "m.keras").read_bytes() == model and listing(tmp_path) == ["m.keras"]
    assert main("example", "-o", tmp_path / "UPPER.XLSX")[0] == 0


def test_missing_output_folders_are_made_and_removed_again_when_the_write_fails(made, tmp_path, monkeypatch):
    assert main("example", "-o", tmp_path / "a" / "b" / "x.xlsx")[0] == 0
    assert main("check", made / "practice.xlsx", "--csv", tmp_path / "c" / "g.csv", "--graded", tmp_path / "d" / "g.xlsx")[0] == 1
    assert (tmp_path / "c" / "g.csv").is_file() and (tmp_path / "d" / "g.xlsx").is_file()
    import xlsxwriter.worksheet

    def full(*args, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(xlsxwriter.worksheet.Worksheet, "_write_formula", full)  # inside the write, after the folders are made
    code, _, err = main("example", "-o", tmp_path / "e" / "f" / "x.xlsx")
    assert code == 2 and "No space left" in err, err
    assert not (tmp_path / "e").exists()


# ---------------------------------------------------------------- first use: messages a newcomer reads


def test_verify_refuses_a_practice_workbook_and_points_to_check(made, monkeypatch):
    from cnncalc.recalc import libreoffice

    monkeypatch.setattr(libreoffice, "recalculate", lambda *a, **k: pytest.fail("LibreOffice ran on an exercise"))
    one_line(*main("verify", made / "practice.xlsx")[::2], "is a practice workbook", "cnncalc check")


def test_verify_names_the_users_file_when_libreoffices_copy_is_too_large(made, tmp_path, monkeypatch):
    """The recalculated copy lives in a temporary folder; a message about it names the workbook the user gave."""
    from cnncalc import guards
    from cnncalc.recalc import libreoffice

    def bigger_copy(src, out_dir=None, timeout=900):
        folder = tmp_path / "lo-temp"
        folder.mkdir()
        shutil.copyfile(src, folder / "book.xlsx")
        with zipfile.ZipFile(folder / "book.xlsx", "a") as zf:
            zf.writestr("xl/media/big.bin", b"\0" * 300_000)
        return folder / "book.xlsx"

    monkeypatch.setattr(libreoffice, "recalculate", bigger_copy)
    monkeypatch.setattr(guards, "MAX_XLSX_MEMBER_BYTES", 200_000)
    code, _, err = main("verify", made / "book.xlsx")
    one_line(code, err, "is too large", f"LibreOffice's recalculated copy of '{made / 'book.xlsx'}'")
    assert "lo-temp" not in err


def test_messages_do_not_name_python_internals(made, tmp_path):
    (tmp_path / "not.xlsx").write_text("hello")
    one_line(*main("verify", tmp_path / "not.xlsx")[::2], "not a zip archive")
    one_line(*main("summary", tmp_path / "missing.keras")[::2], "'" + str(tmp_path / "missing.keras") + "' does not exist")
    import h5py

    with h5py.File(tmp_path / "w.weights.h5", "w") as h5:  # weights alone: the architecture must come from --config
        h5.create_group("layers")
    code, _, err = main("summary", tmp_path / "w.weights.h5")
    one_line(code, err, "--config")
    code, _, err = main("summary", made / "m.keras", "--config", tmp_path / "missing.json")
    one_line(code, err, "missing.json' does not exist", "--config")
    for _, _, err in (main("summary", tmp_path / "missing.keras"), main("summary", tmp_path / "w.weights.h5")):
        assert "path=" not in err and "FileNotFoundError" not in err, err


@pytest.mark.parametrize("layer, words", [
    ({"Conv2d": {"filters": 1, "kernel_size": 3}}, ["layers[0]", "unknown layer type", "Received 'Conv2d': did you mean 'Conv2D'?"]),
    ({"MaxPool2D": {}}, ["layers[0]", "did you mean 'MaxPooling2D'?"]),
    ({"Transformer": {}}, ["layers[0]", "Received 'Transformer'"]),
    ({"Dense": {"unit": 3}}, ["layers[0] (Dense)", "Expected a value for 'units'"]),
])
def test_new_names_the_spec_entry_and_suggests_a_name(tmp_path, layer, words):
    spec = {"input_shape": [4], "layers": [layer]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    code, _, err = main("new", tmp_path / "spec.json", "-o", tmp_path / "m.keras")
    one_line(code, err, *words)
    assert "Layer None" not in err and not (tmp_path / "m.keras").exists()


def test_predict_help_does_not_promise_a_workbook():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    scale = {name: next(a.help for a in sub.choices[name]._actions if a.dest == "scale") for name in ("predict", "build")}
    assert "workbook" not in scale["predict"] and "formula step in the workbook" in scale["build"]


def test_the_examples_table_fits_100_columns():
    code, out, _ = main("examples")
    width = max(sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line) for line in out.splitlines())
    assert code == 0 and width <= 100, width
