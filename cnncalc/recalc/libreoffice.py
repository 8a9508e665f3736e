"""Recalculate a workbook in LibreOffice headless and read its cells back.

This is how cnncalc checks its own workbooks: an independent spreadsheet
engine evaluates every formula, and the values it stores are compared with
ours. Addresses are 0-based (row, col), like XlsxWriter.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
from functools import lru_cache
from collections.abc import Mapping
from itertools import chain, repeat
from pathlib import Path

import numpy as np
from openpyxl import load_workbook
from openpyxl.worksheet.formula import ArrayFormula

from cnncalc.errors import CnncalcError, RecalcUnavailable
from cnncalc.guards import MAX_CELLS_READ

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
        budget = MAX_CELLS_READ  # openpyxl pads rows and gaps: a small file can claim millions of cells
        for name in names:
            ws = wb[name]
            # Ignore the file's <dimension> tag: if it is wrong, openpyxl would
            # silently cut rows or columns. Rows are then yielded one per row
            # number, each only as wide as its last cell.
            ws.reset_dimensions()
            cells = {}
            try:
                for r, row in enumerate(ws.iter_rows(values_only=True)):
                    budget -= len(row) + 1
                    if budget < 0:
                        raise CnncalcError(f"{path.name} is too large to read (at sheet {name!r}). Expected at most {MAX_CELLS_READ:,} cells, "
                                           "counting the empty ones up to each row's last cell (a limit of cnncalc, in cnncalc/guards.py). Received more")
                    for c, value in enumerate(row):
                        if value is not None:
                            cells[r, c] = value
            except CnncalcError:
                raise
            except Exception as exc:  # broken XML, an XML bomb (defusedxml refuses it), a malformed cell
                raise CnncalcError(f"expected a readable .xlsx workbook; could not read sheet {name!r} of {str(path)!r}: "
                                   f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from exc
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


# ---------------------------------------------------------------- one streaming pass over the sheet XML
# openpyxl makes an object for every cell and has to read a workbook twice for values and formulas: for two
# million cells that takes about a minute. read_cells walks each sheet's XML once with expat callbacks and keeps
# only (row, col) -> value and formula. The workbook may come from anyone, so, as defusedxml does with
# forbid_dtd=True, a document type declaration (the only place entities can be declared) is refused; the small
# parts (workbook.xml, its relationships, the shared strings) are read through defusedxml itself.

_NS_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"
_DIGITS = "0123456789"


def _local(tag):
    """'{namespace}c' or 'x:c' -> 'c' (files differ in how they name the spreadsheet namespace)."""
    return tag.rsplit("}", 1)[-1].rpartition(":")[2]


@lru_cache(maxsize=None)
def _col_number(letters):
    """'A' -> 0, 'AB' -> 27."""
    col = 0
    for ch in letters.upper():
        col = col * 26 + ord(ch) - 64
    return col - 1


def _number(text):
    """As openpyxl reads a number: an int unless it has a '.' or an exponent."""
    return float(text) if ("." in text or "e" in text or "E" in text or not text.lstrip("-").isdigit()) else int(text)


def _text_of(elem):
    """The text of a shared string: its <t>, or its rich-text runs' <t>s (phonetic <rPh> runs left out)."""
    parts = []
    for child in elem:
        name = _local(child.tag)
        if name == "t":
            parts.append(child.text or "")
        elif name == "r":
            parts.extend(t.text or "" for t in child if _local(t.tag) == "t")
    return "".join(parts)


def _sheet_paths(zf):
    """[(sheet name, path in the zip), ...] in the workbook's order."""
    import posixpath

    from defusedxml import ElementTree

    book = ElementTree.fromstring(zf.read("xl/workbook.xml"))
    rels = ElementTree.fromstring(zf.read("xl/_rels/workbook.xml.rels"))
    targets = {r.get("Id"): r.get("Target") for r in rels}
    paths = []
    for sheet in (e for e in book.iter() if _local(e.tag) == "sheet"):
        target = targets[sheet.get(_NS_REL)]
        path = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join("xl", target))
        paths.append((sheet.get("name"), path))
    return paths


def _shared_strings(zf):
    from defusedxml import ElementTree

    if "xl/sharedStrings.xml" not in zf.namelist():
        return []
    strings = []
    with zf.open("xl/sharedStrings.xml") as f:
        for _, elem in ElementTree.iterparse(f, events=("end",)):
            if _local(elem.tag) == "si":
                strings.append(_text_of(elem))
                elem.clear()
    return strings


def _sheet_cells(stream, strings, values, formulas, name, limit):
    """Fill values and formulas ({(row, col): ...}) from one sheet's XML, streamed; at most `limit` values."""
    import pyexpat

    from openpyxl.formula.translate import Translator

    parser = pyexpat.ParserCreate()
    parser.buffer_text = True
    parser.buffer_size = 1 << 16

    def forbid(*_):
        raise CnncalcError(f"sheet {name!r} has a document type declaration. Expected a plain worksheet (a workbook never has one). "
                           "Received XML that could declare entities: refused")

    parser.StartDoctypeDeclHandler = parser.EntityDeclHandler = forbid
    names = {}  # tag as written -> local name, so each tag is split once
    cell = {}  # the <c> being read: "ref", "t", "v", "f", "f_attrs", "is"
    text = None  # the character data being collected (a list), or None
    where = [0, -1]  # (row, col) of the last cell: for cells and rows written without an address
    shared = {}  # si -> (formula, anchor) of a shared formula's first cell
    in_inline = in_phonetic = False

    def start(tag, attrs):
        nonlocal text, in_inline, in_phonetic
        tag = names.get(tag) or names.setdefault(tag, _local(tag))
        if tag == "c":
            cell.clear()
            cell["ref"], cell["t"] = attrs.get("r"), attrs.get("t", "n")
        elif tag == "v" or tag == "f":
            text = []
            if tag == "f":
                cell["f_attrs"] = attrs
        elif tag == "is":
            in_inline, cell["is"] = True, []
        elif tag == "t" and in_inline and not in_phonetic:
            text = []
        elif tag == "rPh":
            in_phonetic = True
        elif tag == "row":
            r = attrs.get("r")
            where[0], where[1] = (int(r) - 1 if r else where[0] + 1), -1

    def chars(data):
        if text is not None:
            text.append(data)

    def end(tag):
        nonlocal text, in_inline, in_phonetic
        tag = names[tag]
        if tag == "v" or tag == "f":
            cell[tag], text = "".join(text), None
        elif tag == "t" and text is not None:
            cell["is"].append("".join(text))
            text = None
        elif tag == "is":
            in_inline = False
        elif tag == "rPh":
            in_phonetic = False
        elif tag == "c":
            finish()

    def finish():
        ref = cell["ref"]
        if ref:
            letters = ref.rstrip(_DIGITS)
            where[0], where[1] = int(ref[len(letters):]) - 1, _col_number(letters)
        else:  # no address: the cell after the last one
            where[1] += 1
        pos = (where[0], where[1])
        if len(values) >= limit:
            raise CnncalcError(f"sheet {name!r} is too large to read. Expected at most {MAX_CELLS_READ:,} cells in the workbook "
                               "(a limit of cnncalc, in cnncalc/guards.py). Received more")
        if "f" in cell:
            f, attrs = cell["f"], cell["f_attrs"]
            if attrs.get("t") == "shared":
                si = attrs.get("si")
                if f:
                    shared[si] = (f, ref)
                elif si in shared:  # the first cell's formula, moved to this one
                    first, anchor = shared[si]
                    f = Translator("=" + first, origin=anchor).translate_formula(ref)[1:]
            formulas[pos] = "=" + f
        kind = cell["t"]
        v = "".join(cell["is"]) if "is" in cell else cell.get("v") or None  # an empty <v/> is no value, as in openpyxl
        if v is None:
            return
        if kind == "n":
            values[pos] = _number(v)
        elif kind == "s":
            values[pos] = strings[int(v)]
        elif kind == "b":
            values[pos] = v.strip() in ("1", "true")
        else:  # "str" (a formula's text), "inlineStr", "e" (an error such as #DIV/0!), "d" (an ISO date)
            values[pos] = v

    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, chars
    try:
        parser.ParseFile(stream)
    except pyexpat.ExpatError as exc:
        raise CnncalcError(f"sheet {name!r} is not readable XML. Expected a worksheet. Received an error: {exc}") from None


def read_cells(path, sheets=None, progress=None, shown_as=None, values_only=()):
    """Values and formulas of every non-empty cell in one pass: ({sheet: {(row, col): value}}, {sheet: {(row, col): '=...'}}).

    The same as read_values and read_formulas (0-based addresses, ints and floats as openpyxl reads them),
    except that a number under a date format stays a number. `progress`, if given, is called with each
    sheet's name as it starts. `shown_as` names the file in messages (e.g. "LibreOffice's recalculated copy of
    'book.xlsx'"), so an error about a temporary copy names the user's file.

    The sheets named in `values_only` have no formulas entry, and python-calamine reads them (several times faster)
    where _calamine_can_read finds that it reads them as expat does; their whole numbers then come as floats.
    """
    import zipfile

    path = Path(path)
    where = shown_as or repr(str(path))
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise CnncalcError(f"expected a readable .xlsx workbook; could not open {where}: {exc}") from None
    with zf:
        from cnncalc.guards import MAX_XLSX_BYTES, MAX_XLSX_MEMBER_BYTES, check_zip

        check_zip(zf, shown_as or str(path), MAX_XLSX_MEMBER_BYTES, MAX_XLSX_BYTES)  # sizes claimed by a zip bomb are refused unread
        try:
            paths = _sheet_paths(zf)
            strings = _shared_strings(zf)
        except (KeyError, ValueError, SyntaxError) as exc:  # a zip that is not a workbook, or broken XML
            raise CnncalcError(f"expected a readable .xlsx workbook; could not open {where}: {exc}") from None
        known = [name for name, _ in paths]
        names = known if sheets is None else list(sheets)
        missing = [name for name in names if name not in known]
        if missing:
            raise CnncalcError(f"expected sheets of {shown_as or path.name} ({', '.join(known)}); got unknown {', '.join(missing)}")
        values, formulas, budget = {}, {}, MAX_CELLS_READ
        for name, member in paths:
            if name not in names:
                continue
            if progress:
                progress(name)
            if name in values_only:
                values[name] = _calamine_values(path, zf, member, name, budget)
                if values[name] is not None:
                    budget -= len(values[name])
                    continue
            values[name], cell_formulas = {}, {}
            if name not in values_only:
                formulas[name] = cell_formulas
            try:
                with zf.open(member) as stream:
                    _sheet_cells(stream, strings, values[name], cell_formulas, name, budget)
            except CnncalcError:
                raise
            except Exception as exc:  # a damaged zip member, a cell that is not what its type says, a missing part
                detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
                raise CnncalcError(f"expected a readable .xlsx workbook; could not read sheet {name!r} of {where}: {detail}") from None
            budget -= len(values[name])
        return values, formulas


_DIMENSION = re.compile(rb'<dimension ref="(?:[A-Z]{1,3}[0-9]{1,7}:)?([A-Z]{1,3})([0-9]{1,7})"')  # its last cell
_PREFIXED_CELL = re.compile(rb':c[\s>/]')  # a cell element with a namespace prefix (x:c): calamine reads it too


def _past(last, alphabet):
    """A regex (bytes) for a column's letters or a row's digits that come after `last` ('AB', '2754') in A1 order."""
    longer = f"[{alphabet}]{{{len(last) + 1},}}"
    same = [f"{last[:i]}[{chr(ord(ch) + 1)}-{alphabet[-1]}][{alphabet}]{{{len(last) - i - 1}}}" for i, ch in enumerate(last) if ch != alphabet[-1]]
    return "|".join([longer] + same).encode()


def _calamine_can_read(stream):
    """(rows, cols) of the sheet as calamine would lay it out densely, or None when expat must read it: one pass over
    the XML in blocks, with no Python per cell. None when there is no <dimension>, or a cell lies past it, has no
    plain address of its own (calamine would place it after the last one), or holds an error value (calamine drops
    "#DIV/0!"): so calamine never lays out a larger rectangle than the one the sheet claims."""
    head = stream.read(1 << 16)
    found = _DIMENSION.search(head)
    if found is None:
        return None
    letters, digits = found[1].decode(), found[2].decode()
    # a cell whose first attribute is not a plain address within the dimension (the letters, then the digits, checked whole)
    strange_cell = re.compile(rb'<c(?! r="(?!' + _past(letters, "A-Z") + rb')[A-Z]{1,3}(?!' + _past(digits, "0-9") + rb')[1-9][0-9]{0,6}")[\s>/]')
    text = head
    while True:
        block = stream.read(1 << 20)
        end = max(text.rfind(b"<"), 0) if block else len(text)  # up to the last tag begun: no tag is cut in two
        if strange_cell.search(text, 0, end) or _PREFIXED_CELL.search(text, 0, end) or b't="e"' in text:
            return None
        if not block:
            return int(digits), _col_number(letters) + 1
        text = text[end:] + block


def _calamine_values(path, zf, member, name, limit):
    """{(row, col): value} of one sheet read by python-calamine (Rust, several times faster), or None to read it with
    expat instead: when calamine is not installed or cannot read the sheet, when _calamine_can_read says no or the
    rectangle has more than `limit` cells, and when a cell comes out otherwise than expat reads it (a number under a
    date format comes out as a date)."""
    try:
        from python_calamine import CalamineWorkbook
    except ImportError:
        return None
    with zf.open(member) as stream:  # already size-checked by check_zip
        extent = _calamine_can_read(stream)
    if extent is None or extent[0] * extent[1] > limit:
        return None
    try:
        with CalamineWorkbook.from_path(str(path)) as wb:
            sheet = wb.get_sheet_by_name(name)
            cells = RowCells(list(sheet.iter_rows()), *(sheet.start or (0, 0)))
    except Exception:  # calamine's own errors (XmlError, ZipError, ...): expat reads the sheet and says what is wrong
        return None
    if not set(chain.from_iterable(map(type, row) for row in cells.rows)) <= {float, int, str, bool}:  # a date, a time, a duration
        return None
    return cells


def row_of(cells, r, cols):
    """[the value of cell (r, col) or None, for col in cols] of one sheet's cells as read_cells returns them."""
    return cells.row(r, cols) if isinstance(cells, RowCells) else list(map(cells.get, zip(repeat(r), cols)))


class RowCells(Mapping):
    """{(row, col): value} of a sheet kept as calamine's rows, "" for an empty cell (which the mapping leaves out, as
    expat does): a million cells without a dict entry each. row(r, cols) reads many cells of one row at once."""

    def __init__(self, rows, top, left):
        self.rows, self.top, self.left = rows, top, left
        self.count = sum(len(row) - row.count("") for row in rows)

    def row(self, r, cols):
        """[the value of (r, col) or None, for col in cols]."""
        row = self.rows[r - self.top] if 0 <= r - self.top < len(self.rows) else []
        at = [c - self.left for c in cols]
        if at and 0 <= min(at) and max(at) < len(row):
            values = list(map(row.__getitem__, at))
        else:
            values = [row[i] if 0 <= i < len(row) else "" for i in at]
        return [None if v == "" else v for v in values] if "" in values else values

    def numbers(self, rows, cols):
        """The float array of the cells at (rows, cols) (two int arrays of one shape, absolute), made from the rectangle
        they span in one conversion, when every cell of that rectangle holds a number (not text, not a bool, not
        empty); else None (and row() must say which cell is not a number)."""
        r0, r1, c0, c1 = rows.min() - self.top, rows.max() - self.top, cols.min() - self.left, cols.max() - self.left
        if r0 < 0 or c0 < 0 or r1 >= len(self.rows):
            return None
        rect = [row[c0:c1 + 1] for row in self.rows[r0:r1 + 1]]
        if any(len(row) != c1 - c0 + 1 for row in rect) or not set(map(type, chain.from_iterable(rect))) <= {float, int}:
            return None
        try:
            grid = np.array(rect, dtype=np.float64)
        except OverflowError:  # an int too big for a float
            return None
        return grid[rows - self.top - r0, cols - self.left - c0]

    def __getitem__(self, rc):
        value = self.row(rc[0], [rc[1]])[0]
        if value is None:
            raise KeyError(rc)
        return value

    def __iter__(self):
        return ((r, c) for r, row in enumerate(self.rows, self.top) for c, v in enumerate(row, self.left) if v != "")

    def __len__(self):
        return self.count
