"""Recalculate a workbook in LibreOffice headless and read its cells back.

This is how cnncalc checks its own workbooks: an independent spreadsheet
engine evaluates every formula, and the values it stores are compared with
ours. Addresses are 0-based (row, col), like XlsxWriter.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from openpyxl import load_workbook
from openpyxl.worksheet.formula import ArrayFormula

from .errors import CnncalcError, RecalcUnavailable

INSTALL_HINT = "apt-get install -y --no-install-recommends libreoffice-calc-nogui"

# LibreOffice's "recalculation on file load" setting for Excel (OOXML) and ODF
# files; 0 means "always". The default trusts the values cached in the file, so
# a check would just read our own numbers back.
_RECALC_ALWAYS_XCU = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" \
xmlns:xs="http://www.w3.org/2001/XMLSchema" \
xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Calc/Formula/Load">\
<prop oor:name="OOXMLRecalcMode" oor:op="fuse"><value>0</value></prop></item>
<item oor:path="/org.openoffice.Office.Calc/Formula/Load">\
<prop oor:name="ODFRecalcMode" oor:op="fuse"><value>0</value></prop></item>
</oor:items>
"""


def find_soffice() -> str:
    """Path of the LibreOffice executable ($CNNCALC_SOFFICE, else soffice/libreoffice on PATH)."""
    override = os.environ.get("CNNCALC_SOFFICE")
    if override:
        found = shutil.which(override)
        if found is None:
            raise RecalcUnavailable(
                f"CNNCALC_SOFFICE must name a LibreOffice executable; got {override!r}, "
                "which is not an executable file or a command on PATH"
            )
        return found
    for name in ("soffice", "libreoffice"):
        found = shutil.which(name)
        if found is not None:
            return found
    raise RecalcUnavailable(
        "recalculation needs LibreOffice (soffice or libreoffice on PATH, or $CNNCALC_SOFFICE); "
        f"none was found; install it with: {INSTALL_HINT}"
    )


def _seed_profile(profile: Path) -> None:
    """Make a fresh LibreOffice profile recalculate every formula on load."""
    user = profile / "user"
    user.mkdir(parents=True)
    (user / "registrymodifications.xcu").write_text(_RECALC_ALWAYS_XCU, encoding="utf-8")


def _tail(path: Path, lines: int = 5) -> str:
    """Last lines of a log file on one line, for an error message."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def recalculate(src, out_dir=None, timeout: float = 900) -> Path:
    """Open `src` (.xlsx) in LibreOffice, recalculate everything, save it as .xlsx in `out_dir`.

    Returns the path of the new file. `out_dir` defaults to a fresh temporary
    directory (the caller owns it); it must not be the folder `src` is in,
    because the output has the same name and would overwrite the input.
    """
    src = Path(src).resolve()
    if not src.is_file():
        raise CnncalcError(f"recalculate needs an existing .xlsx file; got {str(src)!r}, which does not exist")
    soffice = find_soffice()
    made_out_dir = out_dir is None
    if made_out_dir:
        out_dir = Path(tempfile.mkdtemp(prefix="cnncalc-recalc-out-"))
    else:
        out_dir = Path(out_dir).resolve()
        if out_dir == src.parent:
            raise CnncalcError(
                "recalculate needs an output folder other than the input's folder "
                f"(the output keeps the input's name); got {str(out_dir)!r} for both"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / (src.stem + ".xlsx")
    # A leftover from an earlier run must not pass for this run's output.
    out.unlink(missing_ok=True)

    # A private profile per call: concurrent runs then get separate LibreOffice
    # instances instead of handing the job to one another, and the user's own
    # profile (and its recalc setting) is never touched.
    work = Path(tempfile.mkdtemp(prefix="cnncalc-soffice-"))
    try:
        profile = work / "profile"
        _seed_profile(profile)
        cmd = [
            soffice,
            f"-env:UserInstallation={profile.as_uri()}",
            "--headless",
            "--norestore",
            "--convert-to",
            "xlsx",
            "--outdir",
            str(out_dir),
            str(src),
        ]
        # HOME in the temp dir: LibreOffice writes there (fails as root or in CI
        # with a read-only or missing home), and nothing from the user's session leaks in.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "LANG": "C.UTF-8"}
        log = work / "soffice.log"
        with open(log, "wb") as log_file:
            # Popen rather than run: soffice is a wrapper that starts soffice.bin,
            # and on timeout the whole process group must die, not just the wrapper.
            # Output goes to a file so a lingering child cannot hold a pipe open.
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=work,
                start_new_session=True,
            )
            try:
                returncode = proc.wait(timeout=timeout)
            except BaseException as exc:
                # Timeout or Ctrl-C: don't leave soffice.bin running on a deleted profile.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                if isinstance(exc, subprocess.TimeoutExpired):
                    raise CnncalcError(
                        f"LibreOffice must recalculate {src.name} within {timeout:g} s "
                        f"(the timeout); it was still running and was killed"
                    ) from None
                raise
        # soffice exits 0 even when it cannot load the input, so the output
        # file is the real sign of success.
        if returncode != 0 or not out.is_file():
            raise CnncalcError(
                f"LibreOffice must convert {src.name} to a recalculated .xlsx; it failed "
                f"(exit code {returncode}, output file written: {out.is_file()}); "
                f"soffice said: {_tail(log) or '(nothing)'}"
            )
        return out
    except BaseException:
        if made_out_dir:  # nobody else knows about it, so it would be left behind
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _read(path, sheets, data_only: bool) -> dict[str, dict[tuple[int, int], object]]:
    """Every non-empty cell of the chosen sheets, as {sheet: {(row, col): value}}."""
    path = Path(path)
    try:
        wb = load_workbook(path, read_only=True, data_only=data_only)
    except Exception as exc:  # openpyxl raises many types for a bad file
        raise CnncalcError(f"expected a readable .xlsx workbook; could not open {str(path)!r}: {exc}") from None
    try:
        names = wb.sheetnames if sheets is None else list(sheets)
        missing = [name for name in names if name not in wb.sheetnames]
        if missing:
            raise CnncalcError(
                f"expected sheets of {path.name} ({', '.join(wb.sheetnames)}); got unknown {', '.join(missing)}"
            )
        result = {}
        for name in names:
            ws = wb[name]
            # Ignore the file's <dimension> tag: if it is wrong, openpyxl would
            # silently cut rows or columns. Rows are then yielded one per row
            # number, each only as wide as its last cell.
            ws.reset_dimensions()
            cells = {}
            for r, row in enumerate(ws.iter_rows(values_only=True)):
                for c, value in enumerate(row):
                    if value is not None:
                        cells[r, c] = value
            result[name] = cells
        return result
    finally:
        wb.close()  # read-only workbooks keep the zip file open until closed


def read_values(path, sheets=None) -> dict[str, dict[tuple[int, int], object]]:
    """Cached values of every non-empty cell, {sheet: {(row, col): value}}, 0-based."""
    return _read(path, sheets, data_only=True)


def read_formulas(path, sheets=None) -> dict[str, dict[tuple[int, int], str]]:
    """Formula text ('=...') of every formula cell, {sheet: {(row, col): formula}}, 0-based."""
    result = {}
    for name, cells in _read(path, sheets, data_only=False).items():
        formulas = {}
        for key, value in cells.items():
            if isinstance(value, ArrayFormula):  # the anchor cell of an array formula
                value = value.text
            if isinstance(value, str) and value.startswith("="):
                formulas[key] = value
        result[name] = formulas
    return result
