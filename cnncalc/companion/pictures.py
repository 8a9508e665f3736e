"""Feature maps as PNG images for slides: each channel of every image-shaped panel, in grey as the chapter shows them."""

import os
import re

import numpy as np

from cnncalc.errors import CnncalcError
from cnncalc.files import atomic_output

MIN_SIDE = 240  # pixels: small maps are enlarged (nearest neighbour, so every cell stays a crisp square)


def to_image(values):
    """A 2-D array as 8-bit grey: lowest black, highest white (a flat map is mid-grey)."""
    lo, hi = float(values.min()), float(values.max())
    scaled = np.full(values.shape, 0.5) if hi == lo else (values - lo) / (hi - lo)
    pixels = np.round(scaled * 255).astype(np.uint8)
    factor = max(1, -(-MIN_SIDE // max(values.shape)))
    return np.kron(pixels, np.ones((factor, factor), dtype=np.uint8))


def slug(text):
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def write_feature_maps(plan, folder, force=False):
    """Write one PNG per channel of every (H, W, C) panel of every sample sheet; return the paths."""
    from PIL import Image

    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:  # a file of that name, or a place where no folder can be made
        raise CnncalcError(f"Cannot write pictures into {folder}. Expected a folder that exists or can be made. Received {e.strerror or e}") from None
    if not os.path.isdir(folder):
        raise CnncalcError(f"Cannot write pictures into {folder}. Expected a folder. Received a file")
    paths = []
    for sheet in plan.sheets:
        for n, panel in enumerate(getattr(sheet, "panels", [])):
            if panel.placement.layout != "grid":
                continue
            for c in range(panel.values.shape[2]):
                header = panel.headers[c] if panel.headers else f"channel {c}"
                path = os.path.join(folder, f"{slug(sheet.name)}_{n:02d}_{slug(panel.title)}_{slug(header)}.png")
                with atomic_output(path, force) as tmp:
                    Image.fromarray(to_image(panel.values[:, :, c]), mode="L").save(tmp, format="PNG")
                paths.append(path)
    return paths
