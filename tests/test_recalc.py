"""cnncalc.recalc.libreoffice against a real LibreOffice: formulas are recalculated, not echoed back."""

import math
import tempfile
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor

import pytest
import xlsxwriter

from cnncalc.recalc import libreoffice as recalc
from cnncalc.errors import CnncalcError, RecalcUnavailable
from cnncalc.recalc.libreoffice import find_soffice, read_formulas, read_values, recalculate

pytestmark = [pytest.mark.libreoffice, pytest.mark.usefixtures("soffice")]

WRONG = 999  # cached value written into every formula cell; LibreOffice must replace it

# (row, col) -> formula, with the value it must have given the inputs below.
FORMULAS = {
    (5, 0): ("=A1*2", 1.0),
    (6, 0): ("=SUMPRODUCT(A1:B2,C1:D2)", 0.5 * 1 + 2 * 2 + -3 * 3 + 4 * 4),
    (7, 0): ("=EXP(A1)", math.exp(0.5)),
    (8, 0): ("=MAX(0,A2)", 0.0),
    (9, 0): ("=MATCH(MAX(A1:A3),A1:A3,0)-1", 2.0),  # 7 is the third of 0.5, -3, 7
    (10, 0): ("=TANH(A1)", math.tanh(0.5)),
}


def write_book(path, scale=1.0):
    """Inputs A1:D3 (times `scale`), the formulas above with a wrong cached value, a label far right."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wb = xlsxwriter.Workbook(str(path))
    ws = wb.add_worksheet("Calc")
    ws.write_row(0, 0, [0.5 * scale, 2, 1, 2])
    ws.write_row(1, 0, [-3, 4, 3, 4])
    ws.write(2, 0, 7)
    for (r, c), (formula, _) in FORMULAS.items():
        ws.write_formula(r, c, formula, None, WRONG)
    ws.write_string(3, 27, "label")  # AB4: a column past Z
    other = wb.add_worksheet("Other")
    other.write(0, 0, 42)
    wb.close()
    return path


@pytest.fixture
def book(tmp_path):
    return write_book(tmp_path / "in" / "book.xlsx")


def test_recalculation_replaces_wrong_cached_values(book, tmp_path):
    # Fails if the profile is not seeded: LibreOffice then keeps the cached 999s.
    out = recalculate(book, tmp_path / "out")
    assert out == (tmp_path / "out" / "book.xlsx").resolve()
    values = read_values(out)["Calc"]
    for key, (formula, expected) in FORMULAS.items():
        assert values[key] == pytest.approx(expected, rel=1e-14, abs=1e-14), formula
    # The input is left alone (its cached values are still the wrong ones).
    assert all(v == WRONG for k, v in read_values(book)["Calc"].items() if k in FORMULAS)


def test_not_an_xlsx_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    bad = tmp_path / "in" / "x.xlsx"
    bad.parent.mkdir()
    bad.write_text("this is not a spreadsheet\n")
    with pytest.raises(CnncalcError, match="x.xlsx"):
        recalculate(bad)
    # Neither the profile nor the output folder it made for us is left behind.
    assert list((tmp_path / "tmp").iterdir()) == []


def test_missing_input_and_same_folder_are_errors(book, tmp_path):
    with pytest.raises(CnncalcError, match="does not exist"):
        recalculate(tmp_path / "nope.xlsx", tmp_path / "out")
    with pytest.raises(CnncalcError, match="output folder"):
        recalculate(book, book.parent)


def test_timeout_is_an_error(book, tmp_path):
    with pytest.raises(CnncalcError, match="timeout"):
        recalculate(book, tmp_path / "out", timeout=0.2)


def test_default_out_dir_is_fresh_and_profile_is_removed(book, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    out = recalculate(book)
    assert out.name == "book.xlsx" and out.parent != book.parent
    # Only the output folder remains in the temp dir: the profile was cleaned up.
    assert list((tmp_path / "tmp").iterdir()) == [out.parent]


def test_concurrent_recalculations(tmp_path):
    books = [write_book(tmp_path / f"in{i}" / "book.xlsx", scale=i + 1) for i in range(2)]
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda i: recalculate(books[i], tmp_path / f"out{i}"), range(2)))
    for i, out in enumerate(outs):
        # A1 = 0.5 * (i + 1), so =A1*2 tells the two results apart.
        assert read_values(out)["Calc"][5, 0] == pytest.approx(i + 1)


def test_read_values_and_formulas_use_0_based_keys(book, tmp_path):
    out = recalculate(book, tmp_path / "out")
    for path in (book, out):  # as XlsxWriter wrote it and as LibreOffice rewrote it
        values = read_values(path)
        assert set(values) == {"Calc", "Other"}
        calc = values["Calc"]
        assert calc[0, 0] == 0.5 and calc[1, 0] == -3 and calc[2, 0] == 7
        assert calc[3, 27] == "label"
        assert len(calc) == 9 + len(FORMULAS) + 1  # no entries for empty cells
        assert values["Other"] == {(0, 0): 42}

        formulas = read_formulas(path, sheets=["Calc"])
        assert formulas == {"Calc": {key: f for key, (f, _) in FORMULAS.items()}}
        assert read_formulas(path, sheets=["Other"]) == {"Other": {}}

    assert set(read_values(out, sheets=["Other"])) == {"Other"}
    with pytest.raises(CnncalcError, match="Nope"):
        read_values(out, sheets=["Nope"])


def test_read_values_of_a_non_workbook_is_an_error(tmp_path):
    bad = tmp_path / "x.xlsx"
    bad.write_text("not a zip")
    with pytest.raises(CnncalcError, match="x.xlsx"):
        read_values(bad)


def test_find_soffice_override_and_missing(monkeypatch):
    real = find_soffice()
    monkeypatch.setenv("CNNCALC_SOFFICE", real)
    assert find_soffice() == real
    monkeypatch.setenv("CNNCALC_SOFFICE", "/nonexistent/soffice")
    with pytest.raises(RecalcUnavailable, match="CNNCALC_SOFFICE"):
        find_soffice()
    monkeypatch.delenv("CNNCALC_SOFFICE")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(RecalcUnavailable, match="apt-get install -y --no-install-recommends libreoffice-calc-nogui"):
        find_soffice()


def test_seed_sets_both_recalc_modes_to_always(tmp_path):
    recalc._seed_profile(tmp_path / "profile")
    root = ET.parse(tmp_path / "profile" / "user" / "registrymodifications.xcu").getroot()
    oor = "{http://openoffice.org/2001/registry}"
    props = {
        (item.get(f"{oor}path"), prop.get(f"{oor}name")): prop.findtext("value")
        for item in root.iter("item")
        for prop in item.iter("prop")
    }
    load = "/org.openoffice.Office.Calc/Formula/Load"
    assert props == {(load, "OOXMLRecalcMode"): "0", (load, "ODFRecalcMode"): "0"}
