"""Render a workbook's sample sheet as a reader sees it (LibreOffice headless -> PDF -> PNG) for the README.

Needs LibreOffice and pdftoppm (Debian: libreoffice-calc-nogui poppler-utils).
Run: python tools/screenshot.py workbooks/cnn_simple_example.xlsx docs/screenshot.png [PAGES [WIDTH]]
PAGES is a printed page (from 1) or a range such as 3-4, whose pages are set side by side, as the sheet reads on screen.
"""

import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

from cnncalc.recalc.libreoffice import _seed_profile, find_soffice


def render_pages(book, first, last, dpi=400, timeout=300):
    """Pages `first` to `last` (from 1) of the workbook as LibreOffice prints them, as RGB images."""
    with tempfile.TemporaryDirectory() as tmp:
        profile = Path(tmp) / "profile"
        _seed_profile(profile)
        subprocess.run([find_soffice(), f"-env:UserInstallation=file://{profile}", "--headless", "--norestore",
                        "--convert-to", "pdf", "--outdir", tmp, book], check=True, capture_output=True, timeout=timeout)
        pdf = Path(tmp) / (Path(book).stem + ".pdf")
        subprocess.run(["pdftoppm", "-r", str(dpi), "-f", str(first), "-l", str(last), "-png", str(pdf), f"{tmp}/page"], check=True)
        return [Image.open(page).convert("RGB") for page in sorted(Path(tmp).glob("page*.png"))]


def render_page(book, page, dpi=400, timeout=300):
    """Page `page` (from 1) of the workbook as LibreOffice prints it, as an RGB image."""
    return render_pages(book, page, page, dpi, timeout)[0]


def trimmed(image, margin=30):
    """The image without its white margins (keeping `margin` pixels)."""
    box = ImageChops.difference(image, Image.new("RGB", image.size, "white")).getbbox()
    return image.crop((box[0] - margin, box[1] - margin, box[2] + margin, box[3] + margin))


def side_by_side(images, gap=60):
    """Images set left to right, tops aligned, on white."""
    out = Image.new("RGB", (sum(i.width for i in images) + gap * (len(images) - 1), max(i.height for i in images)), "white")
    x = 0
    for image in images:
        out.paste(image, (x, 0))
        x += image.width + gap
    return out


def main(book, out, pages="3", width=0.42):
    first, _, last = str(pages).partition("-")
    image = side_by_side([trimmed(page) for page in render_pages(book, int(first), int(last or first))])
    image.crop((0, 0, int(image.width * width), image.height)).save(out, optimize=True)  # the first part of a long sheet
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *sys.argv[3:4], *(float(sys.argv[4]),) if len(sys.argv) > 4 else ())
