"""Render a training workbook's loss chart as a reader sees it (LibreOffice headless -> PDF -> PNG) for the README:
the Training sheet is the second page; the chart sits right of the loss table.

Needs LibreOffice and pdftoppm (Debian: libreoffice-calc-nogui poppler-utils).
Run: python tools/loss_chart.py workbooks/chapter_fit.xlsx docs/training_loss.png
"""

import sys

from PIL import Image, ImageChops

from screenshot import render_page


def main(book, out, page=2):
    image = render_page(book, page, dpi=200, timeout=600)
    ink = ImageChops.difference(image, Image.new("RGB", image.size, "white")).convert("L").point(lambda v: 255 if v > 20 else 0)
    columns = [ink.crop((x, 0, x + 1, ink.height)).getbbox() is not None for x in range(ink.width)]
    x, gap = columns.index(True), 0  # past the tables on the left: the chart follows the first wide white gap
    while gap < 40:
        x += 1
        gap = gap + 1 if not columns[x] else 0
    chart = ink.crop((x, 0, ink.width, ink.height)).getbbox()
    box = (x + chart[0] - 20, chart[1] - 20, x + chart[2] + 20, chart[3] + 20)
    image.crop(tuple(max(0, min(v, limit)) for v, limit in zip(box, (*image.size, *image.size)))).save(out, optimize=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(sys.argv[3]),) if len(sys.argv) > 3 else ())
