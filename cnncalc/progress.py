"""A one-line progress bar on stderr for long jobs (writing or verifying a big workbook).

It draws only when stderr is a terminal, only once the job has run for `delay` seconds (a quick job prints
nothing), at most every `interval` seconds, and erases itself when done, so piped or logged output stays clean.

    with Progress("writing book.xlsx", total=1_700_000) as bar:
        for row in rows:
            ...
            bar.advance(len(row))
"""

from contextlib import contextmanager
import sys
import threading
import time


class Progress:
    """`label [#######.............]  35%  0:12`, or `label  0:12` while the total is unknown."""

    WIDTH = 30

    def __init__(self, label, total=None, quiet=False, stream=None, delay=1.0, interval=0.1, clock=time.monotonic):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = not quiet and _is_terminal(self.stream)
        self.label, self.total, self.done = label, total, 0
        self.delay, self.interval, self.clock = delay, interval, clock
        self.start = clock()
        self.last_draw = None  # clock() of the last draw; None while nothing is on the screen

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def stage(self, label, total=None):
        """Go on with a new step under the same bar (its time keeps counting from the start of the job)."""
        self.label, self.total, self.done = label, total, 0
        self.tick(force=self.last_draw is not None)

    def advance(self, n=1):
        self.done += n
        self.tick()

    def tick(self, force=False):
        """Redraw if the job has run long enough and the last draw is old enough (call it from a waiting loop too)."""
        if not self.enabled:
            return
        now = self.clock()
        if now - self.start < self.delay:
            return
        if not force and self.last_draw is not None and now - self.last_draw < self.interval:
            return
        self.last_draw = now
        self.stream.write("\r" + self.line(now - self.start) + "\x1b[K")  # \x1b[K clears what a longer line left
        self.stream.flush()

    def line(self, seconds):
        """The text of the bar after `seconds`."""
        elapsed = f"{int(seconds) // 60}:{int(seconds) % 60:02d}"
        if not self.total:
            return f"{self.label}  {elapsed}"
        frac = min(self.done / self.total, 1.0)
        filled = int(frac * self.WIDTH)
        return f"{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {frac:4.0%}  {elapsed}"

    @contextmanager
    def ticking(self, every=0.2):
        """Redraw from a background thread while the block runs: for a step that reports nothing (LibreOffice)."""
        if not self.enabled:
            yield
            return
        stop = threading.Event()

        def run():
            while not stop.wait(every):
                self.tick()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def close(self):
        """Erase the bar (if it was drawn)."""
        if self.enabled and self.last_draw is not None:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.last_draw = None


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
