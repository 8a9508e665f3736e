"""The command line: each subcommand works, has help with an example, and fails with one line and exit 2."""

import json
import subprocess
import sys

import pytest

from cnncalc.cli import build_parser, main

COMMANDS = ["example", "examples", "build", "summary", "predict", "new", "explain", "verify", "practice", "check"]


def run(*args, **kw):
    return subprocess.run([sys.executable, "-m", "cnncalc", *args], capture_output=True, text=True, **kw)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "Example:" in capsys.readouterr().out


def test_every_command_is_listed():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) >= set(COMMANDS)


def test_example_writes_prints_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "book.xlsx"
    r = run("example", "-o", str(out))
    assert r.returncode == 0 and out.exists()
    assert f"wrote {out}" in r.stdout and "0.8906642" in r.stdout and "0.2677740" in r.stdout
    before = out.read_bytes()
    out.write_bytes(b"my own work")
    r = run("example", "-o", str(out))
    assert r.returncode == 2 and out.read_bytes() == b"my own work"
    assert r.stderr.startswith("cnncalc: error: ") and "--force" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert run("example", "-o", str(out), "--force").returncode == 0 and out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["book.xlsx"]  # no temporary file left behind


def test_example_default_path(tmp_path):
    r = run("example", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "cnn_simple_example.xlsx").exists()


def test_missing_folders_of_an_output_are_made(tmp_path):
    r = run("example", "-o", str(tmp_path / "new" / "sub" / "x.xlsx"))
    assert r.returncode == 0 and (tmp_path / "new" / "sub" / "x.xlsx").is_file()
    (tmp_path / "file").write_text("a file")
    r = run("example", "-o", str(tmp_path / "file" / "x.xlsx"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1


def test_summary_prints_keras_rows_and_total_52():
    r = run("summary")
    assert r.returncode == 0
    for row in ["conv2d (Conv2D)", "(None, 2, 2, 1)", "max_pooling2d (MaxPooling2D)", "(None, 1, 1, 1)", "dense_1 (Dense)", "Total params: 52"]:
        assert row in r.stdout


def test_predict_table_and_json():
    r = run("predict")
    assert r.returncode == 0 and "0.8906642" in r.stdout and "0.2677740" in r.stdout
    data = json.loads(run("predict", "--json").stdout)
    assert data["classes"] == [0, 1] and abs(data["predictions"][0][0] - 0.8906642160356466) < 1e-12


def test_verify_not_a_workbook_is_exit_2(tmp_path):
    bad = tmp_path / "x.xlsx"
    bad.write_text("hello")
    r = run("verify", str(bad))
    assert r.returncode == 2 and r.stderr.startswith("cnncalc: error: ") and "Traceback" not in r.stderr


def test_verify_without_libreoffice_says_how_to_install(tmp_path):
    out = tmp_path / "book.xlsx"
    assert run("example", "-o", str(out)).returncode == 0
    env = {"PATH": "/nonexistent", "CNNCALC_SOFFICE": str(tmp_path / "no-soffice")}
    r = subprocess.run([sys.executable, "-m", "cnncalc", "verify", str(out)], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "libreoffice" in r.stderr.lower()


@pytest.mark.libreoffice
def test_verify_ok_prints_table_exit_0(tmp_path, soffice):
    out = tmp_path / "book.xlsx"
    run("example", "-o", str(out))
    r = run("verify", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "formula cells" in r.stdout and "max abs difference" in r.stdout and "OK" in r.stdout


def test_traceback_flag_shows_the_stack(tmp_path):
    bad = tmp_path / "x.xlsx"
    bad.write_text("hello")
    r = run("--traceback", "verify", str(bad))
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_no_command_prints_help_exit_2():
    r = run()
    assert r.returncode == 2 and "example" in r.stdout
