"""The textbook companion: every worked example reproduces the chapter's numbers, verifies in LibreOffice,
and is committed byte for byte; `cnncalc explain` writes the chapter's expansions."""

import zipfile

import numpy as np
import openpyxl
import pytest

from cnncalc.cli import main
from cnncalc.companion.examples import CATALOGUE, get_example
from cnncalc.companion.explain import explain_conv, explain_pool

from conftest import REPO

A = "1 2 3 4; 5 6 7 8; 9 10 11 12; 13 14 15 16"
WORKBOOKS = REPO / "workbooks"


def output(name):
    ex = get_example(name)
    return ex.model.predict(ex.x)[0]


def test_catalogue_has_every_example_the_issue_names():
    assert set(CATALOGUE) >= {"cnn_simple_example", "conv_basic", "conv_stride2", "padding_same", "padding_28", "conv_relu",
                              "pool_max", "pool_avg", "pool_sum", "rgb", "flatten", "lenet_shapes", "two_filters"}


def test_chapter_numbers():
    assert output("conv_basic")[:, :, 0].tolist() == [[44, 54, 64], [84, 94, 104], [124, 134, 144]]
    assert output("conv_stride2")[:, :, 0].tolist() == [[44, 64], [124, 144]]
    assert output("cnn_simple_example")[0] == pytest.approx(0.8906642160356466, rel=1e-12)
    assert get_example("lenet_shapes").model.shapes == [(28, 28, 1), (26, 26, 6), (13, 13, 6), (11, 11, 10), (5, 5, 10)]
    assert get_example("padding_same").model.output_shape == (4, 4, 1)
    assert get_example("padding_28").model.shapes == [(28, 28, 1), (28, 28, 1)]
    assert get_example("two_filters").model.output_shape == (26, 26, 2)


def test_pooling_examples_agree_with_each_other():
    mx, avg, total = output("pool_max"), output("pool_avg"), output("pool_sum")
    np.testing.assert_allclose(total, 4 * avg)
    assert mx[:, :, 0].tolist() == [[6, 5], [3, 8]]


def test_conv_relu_zeroes_the_negative_sums():
    ex = get_example("conv_relu")
    t = ex.model.trace(ex.x)[0]
    assert (t.pre < 0).any() and (t.out == np.maximum(t.pre, 0)).all()


def panel_titles(path, sheet="Sample 1"):
    ws = openpyxl.load_workbook(path)[sheet]
    return [c.value for c in next(ws.iter_rows(max_row=1)) if c.value]


def test_padding_28_shows_the_30_by_30_padded_image():
    ws = openpyxl.load_workbook(WORKBOOKS / "padding_28.xlsx")["Sample 1"]
    titles = {c.value: c.column for c in next(ws.iter_rows(max_row=1)) if c.value}
    start = titles["conv2d (Conv2D) zero-padded input"]
    width = titles["conv2d (Conv2D) pre-activation"] - start - 1
    assert width == 30
    assert ws.cell(4 + 29, start).value == 0 and ws.cell(4 + 30, start).value is None  # 30 rows of padded image


def test_rgb_uses_one_sumproduct_per_channel():
    ws = openpyxl.load_workbook(WORKBOOKS / "rgb.xlsx")["Sample 1"]
    conv = [c.value for row in ws.iter_rows() for c in row if isinstance(c.value, str) and c.value.startswith("=SUMPRODUCT")]
    assert conv and all(f.count("SUMPRODUCT(") == 3 for f in conv)


def test_steps_sheet_writes_the_chapters_expansions():
    ws = openpyxl.load_workbook(WORKBOOKS / "conv_basic.xlsx")["Steps"]
    texts = [r[3] for r in ws.iter_rows(values_only=True)]
    for line in ["1×1 + 2×2 + 5×3 + 6×4 = 44", "6×1 + 7×2 + 10×3 + 11×4 = 94", "11×1 + 12×2 + 15×3 + 16×4 = 144"]:
        assert line in texts
    chinese = openpyxl.load_workbook(get_zh(), read_only=True)["Steps"]
    assert next(chinese.iter_rows(values_only=True))[0].startswith("每个计算单元格")


def get_zh(path=None):
    import tempfile

    out = tempfile.mkdtemp() + "/zh.xlsx"
    assert main(["example", "conv_basic", "-o", out, "--lang", "zh"]) == 0
    return out


def test_the_chart_and_the_outlined_window_are_in_the_file():
    with zipfile.ZipFile(WORKBOOKS / "cnn_simple_example.xlsx") as z:
        chart = [n for n in z.namelist() if n.startswith("xl/charts/chart")]
        assert chart and b"<c:barChart>" in z.read(chart[0])
        styles = z.read("xl/styles.xml").decode()
    assert 'style="thick"' in styles and "FFC00000" in styles


@pytest.mark.libreoffice
@pytest.mark.parametrize("name", list(CATALOGUE))
def test_every_committed_workbook_verifies(name, soffice):
    from cnncalc.recalc.verify import verify

    report = verify(WORKBOOKS / f"{name}.xlsx")
    assert report.ok, report.failures[:3]


def test_committed_workbooks_reproduce_byte_for_byte(tmp_path):
    assert main(["examples", "--all", "--out", str(tmp_path)]) == 0
    made = sorted(p.name for p in tmp_path.glob("*.xlsx"))
    assert made == sorted(p.name for p in WORKBOOKS.glob("*.xlsx"))
    drift = [n for n in made if (tmp_path / n).read_bytes() != (WORKBOOKS / n).read_bytes()]
    assert not drift, f"{drift} differ: regenerate with `cnncalc examples --all --out workbooks --force`"


def test_png_feature_maps(tmp_path):
    from PIL import Image

    assert main(["example", "two_filters", "-o", str(tmp_path / "t.xlsx"), "--png", str(tmp_path / "maps")]) == 0
    pngs = sorted((tmp_path / "maps").glob("*.png"))
    assert len(pngs) == 1 + 1 + 2 + 2  # raw input, scaled input, two filters pre-activation and relu
    with Image.open(pngs[-1]) as im:
        assert im.size[0] >= 240 and im.mode == "L"


@pytest.mark.libreoffice
def test_a_workbook_renders_to_pdf_as_a_reader_sees_it(soffice, tmp_path):
    import subprocess

    from cnncalc.recalc.libreoffice import _seed_profile  # a fresh, private profile, as every LibreOffice run here

    profile = tmp_path / "profile"
    _seed_profile(profile)
    subprocess.run([soffice, f"-env:UserInstallation=file://{profile}", "--headless", "--norestore", "--convert-to", "pdf",
                    "--outdir", str(tmp_path), str(WORKBOOKS / "conv_basic.xlsx")], capture_output=True, timeout=120)
    pdf = tmp_path / "conv_basic.pdf"
    assert pdf.exists() and pdf.read_bytes().startswith(b"%PDF") and pdf.stat().st_size > 5000


# ---------------------------------------------------------------- cnncalc explain

def test_explain_conv_writes_all_nine_windows_and_the_result():
    text, out = explain_conv(np.arange(1, 17).reshape(4, 4), [[1, 2], [3, 4]])
    assert out.tolist() == [[44, 54, 64], [84, 94, 104], [124, 134, 144]]
    for line in ["1×1 + 2×2 + 5×3 + 6×4 = 44", "2×1 + 3×2 + 6×3 + 7×4 = 54", "3×1 + 4×2 + 7×3 + 8×4 = 64",
                 "5×1 + 6×2 + 9×3 + 10×4 = 84", "6×1 + 7×2 + 10×3 + 11×4 = 94", "7×1 + 8×2 + 11×3 + 12×4 = 104",
                 "9×1 + 10×2 + 13×3 + 14×4 = 124", "10×1 + 11×2 + 14×3 + 15×4 = 134", "11×1 + 12×2 + 15×3 + 16×4 = 144"]:
        assert line in text.splitlines()
    assert text.count("window ") == 9


def test_explain_stride_padding_bias_relu_and_chinese():
    text, out = explain_conv(np.arange(1, 17).reshape(4, 4), [[1, 2], [3, 4]], stride=2)
    assert out.tolist() == [[44, 64], [124, 144]] and text.count("window ") == 4
    text, out = explain_conv(np.arange(1, 17).reshape(4, 4), np.ones((3, 3)), padding="same")
    assert out.shape == (4, 4) and "zero padding" in text and out[0, 0] == 1 + 2 + 5 + 6
    text, out = explain_conv([[1, -2], [-3, 4]], [[1]], bias=-1, activation="relu")
    assert out.tolist() == [[0, 0], [0, 3]] and "max(0, -3) = 0" in text and "1×1 + (-1) = 0" in text
    text, _ = explain_conv(np.arange(1, 17).reshape(4, 4), [[1, 2], [3, 4]], lang="zh")
    assert "窗口 1" in text and "结果" in text


def test_explain_pool_modes():
    a = np.arange(1, 17).reshape(4, 4)
    assert explain_pool(a, 2, mode="max")[1].tolist() == [[6, 8], [14, 16]]
    text, out = explain_pool(a, 2, mode="avg")
    assert out.tolist() == [[3.5, 5.5], [11.5, 13.5]] and "(1 + 2 + 5 + 6) / 4 = 3.5" in text
    text, out = explain_pool(a, 2, mode="sum")
    assert out.tolist() == [[14, 22], [46, 54]] and "1 + 2 + 5 + 6 = 14" in text


def test_explain_cli_prints_what_the_readme_shows(capsys):
    assert main(["explain", "conv", "--a", A, "--b", "1 2; 3 4"]) == 0
    out = capsys.readouterr().out
    assert "1×1 + 2×2 + 5×3 + 6×4 = 44" in out and out.rstrip().endswith("124  134  144")
    readme = (REPO / "README.md").read_text()
    assert "1×1 + 2×2 + 5×3 + 6×4 = 44" in readme and "124  134  144" in readme
    assert main(["explain", "pool", "--a", A, "--size", "2", "--mode", "sum"]) == 0
    assert main(["explain", "conv", "--a", "1 2; 3", "--b", "1"]) == 2  # ragged: one-line error
    assert "row 2" in capsys.readouterr().err


def test_window_of_a_chosen_cell_is_framed(tmp_path):
    from cnncalc.companion.examples import get_example
    from cnncalc.sheets.workbook import plan_workbook

    ex = get_example("conv_stride2")
    sheet = plan_workbook(ex.model, ex.raw, ex.scale, window=(1, 1)).sheet("Sample 1")
    (r0, c0, r1, c1), out = sheet.outlines
    assert (r1 - r0, c1 - c0) == (1, 1)  # a 2x2 window
    assert sheet.cells()[(r0, c0)].value == 11  # output (1, 1) at stride 2 reads A[2:4, 2:4] = 11 12 / 15 16
    assert sheet.cells()[out[:2]].value == 144
    assert main(["example", "conv_stride2", "--window", "2,0", "-o", str(tmp_path / "x.xlsx")]) == 2
