"""The progress bar: drawn on a terminal only, only for jobs longer than its delay, never with --quiet."""

import io

import pytest

from cnncalc.cli import build_parser, main
from cnncalc.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_quiet_when_not_a_terminal():
    out = io.StringIO()
    with Progress("writing", total=10, stream=out, delay=0, interval=0) as bar:
        for _ in range(10):
            bar.advance()
    assert out.getvalue() == ""


def test_quiet_when_asked_even_on_a_terminal():
    out = Terminal()
    with Progress("writing", total=10, quiet=True, stream=out, delay=0, interval=0) as bar:
        bar.advance(10)
    assert out.getvalue() == ""


def test_a_job_shorter_than_the_delay_prints_nothing():
    out, clock = Terminal(), Clock()
    with Progress("writing", total=10, stream=out, delay=1.0, clock=clock) as bar:
        clock.now += 0.5
        bar.advance(10)
    assert out.getvalue() == ""


def test_a_long_job_draws_a_bar_and_erases_it():
    out, clock = Terminal(), Clock()
    bar = Progress("writing book.xlsx", total=200, stream=out, delay=1.0, interval=0.1, clock=clock)
    clock.now += 1.5
    bar.advance(50)
    assert out.getvalue() == "\rwriting book.xlsx [#######.......................]  25%  0:01\x1b[K"
    bar.advance(50)  # within the interval: no redraw
    assert out.getvalue().count("\r") == 1
    clock.now += 61
    bar.stage("writing book.xlsx: compressing")
    assert out.getvalue().endswith("\rwriting book.xlsx: compressing  1:02\x1b[K")
    bar.close()
    assert out.getvalue().endswith("\r\x1b[K")


def test_ticking_redraws_while_a_silent_step_runs():
    import time

    out = Terminal()
    with Progress("recalculating", stream=out, delay=0, interval=0) as bar:
        with bar.ticking(every=0.01):
            time.sleep(0.1)
        drawn = out.getvalue().count("\rrecalculating  0:00")
    assert drawn >= 2
    with Progress("quiet", stream=io.StringIO(), delay=0).ticking():  # not a terminal: no thread, nothing drawn
        pass


def test_a_closed_or_odd_stream_counts_as_no_terminal():
    closed = io.StringIO()
    closed.close()
    assert not Progress("x", stream=closed).enabled
    assert not Progress("x", stream=object()).enabled


@pytest.mark.parametrize("command", ["example", "examples", "build", "verify"])
def test_commands_that_write_or_verify_take_quiet(command):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert "--quiet" in sub.choices[command].format_help()


def test_example_quiet_and_piped_prints_no_bar(tmp_path, capsys):
    assert main(["example", "-o", str(tmp_path / "book.xlsx"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
