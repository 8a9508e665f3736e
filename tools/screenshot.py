"""Render a workbook's sample sheet as a reader sees it (LibreOffice headless -> PDF -> PNG) for the README.

Needs LibreOffice and pdftoppm (Debian: libreoffice-calc-nogui poppler-utils).
Run: python tools/screenshot.py workbooks/cnn_simple_example.xlsx docs/screenshot.png [PAGE [WIDTH]]
"""

import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

from cnncalc.recalc.libreoffice import _seed_profile, find_soffice


def render_page(book, page, dpi=400, timeout=300):
    """Page `page` (from 1) of the workbook as LibreOffice prints it, as an RGB image."""
    with tempfile.TemporaryDirectory() as tmp:
        profile = Path(tmp) / "profile"
        _seed_profile(profile)
        subprocess.run([find_soffice(), f"-env:UserInstallation=file://{profile}", "--headless", "--norestore",
                        "--convert-to", "pdf", "--outdir", tmp, book], check=True, capture_output=True, timeout=timeout)
        pdf = Path(tmp) / (Path(book).stem + ".pdf")
        subprocess.run(["pdftoppm", "-r", str(dpi), "-f", str(page), "-l", str(page), "-png", str(pdf), f"{tmp}/page"], check=True)
        return Image.open(next(Path(tmp).glob("page*.png"))).convert("RGB")


def main(book, out, page=3, width=0.42):
    image = render_page(book, page)
    box = ImageChops.difference(image, Image.new("RGB", image.size, "white")).getbbox()  # trim the white margins
    left, top, right, bottom = box[0] - 30, box[1] - 30, box[2] + 30, box[3] + 30
    right = left + int((right - left) * width)  # the first part of a long sheet, readable in a README
    image.crop((left, top, right, bottom)).save(out, optimize=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(sys.argv[3]),) if len(sys.argv) > 3 else (), *(float(sys.argv[4]),) if len(sys.argv) > 4 else ())
