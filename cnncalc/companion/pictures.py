"""Feature maps as PNG images for slides: each channel of every image-shaped panel, in grey as the chapter shows them."""

import os
import re

import numpy as np

from cnncalc.errors import quoted
from cnncalc.files import atomic_output, check_folder

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


def feature_maps(plan, folder):
    """[(path in folder, 2-D map), ...]: one PNG per channel of every (H, W, C) panel of every sample sheet.

    Nothing is written: a command checks every path before it writes its first file."""
    maps = []
    for sheet in plan.sheets:
        for n, panel in enumerate(getattr(sheet, "panels", [])):
            if panel.placement.layout != "grid":
                continue
            values = panel.values.reshape(*panel.values.shape[:2], -1)  # (H, W) is one map; (H, W, C1, C2) has C1*C2
            for c in range(values.shape[2]):
                header = panel.headers[c] if panel.headers else f"channel {c}"
                maps.append((os.path.join(folder, f"{slug(sheet.name)}_{n:02d}_{slug(panel.title)}_{slug(header)}.png"), values[:, :, c]))
    return maps


def write_feature_maps(plan, folder, force=False, maps=None):
    """Write the PNGs of feature_maps(plan, folder) (or `maps`, from it); return the paths. Missing folders are made."""
    from PIL import Image

    check_folder(folder, f"Cannot write pictures into {quoted(folder)}")
    paths = []
    for path, values in feature_maps(plan, folder) if maps is None else maps:
        with atomic_output(path, force) as tmp:
            Image.fromarray(to_image(values), mode="L").save(tmp, format="PNG")
        paths.append(path)
    return paths
