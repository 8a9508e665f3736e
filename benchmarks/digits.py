"""Synthetic 28×28 digit-like images, made deterministically (no MNIST download).

Each digit is a few pen strokes (polylines in a 0..1 box), drawn as anti-aliased lines of grey values 0..255
like an MNIST image: white strokes on black, the digit inside the central 20×20 pixels.

    >>> digit(7).shape
    (28, 28)
"""

import numpy as np

SIZE = 28

# Pen strokes per digit, (x, y) in a unit box, y down.
STROKES = {
    0: [[(0.5, 0.0), (0.15, 0.2), (0.1, 0.6), (0.35, 1.0), (0.7, 0.95), (0.9, 0.5), (0.8, 0.1), (0.5, 0.0)]],
    1: [[(0.35, 0.2), (0.6, 0.0), (0.6, 1.0)]],
    2: [[(0.1, 0.2), (0.4, 0.0), (0.8, 0.1), (0.85, 0.4), (0.1, 1.0), (0.95, 1.0)]],
    3: [[(0.1, 0.1), (0.5, 0.0), (0.85, 0.2), (0.45, 0.5), (0.9, 0.75), (0.55, 1.0), (0.1, 0.9)]],
    4: [[(0.7, 1.0), (0.7, 0.0), (0.05, 0.7), (0.95, 0.7)]],
    5: [[(0.9, 0.0), (0.2, 0.0), (0.15, 0.45), (0.6, 0.4), (0.9, 0.7), (0.6, 1.0), (0.1, 0.9)]],
    6: [[(0.8, 0.0), (0.3, 0.3), (0.15, 0.75), (0.45, 1.0), (0.85, 0.8), (0.6, 0.5), (0.2, 0.65)]],
    7: [[(0.05, 0.05), (0.95, 0.05), (0.4, 1.0)], [(0.3, 0.5), (0.8, 0.5)]],
    8: [[(0.5, 0.5), (0.15, 0.25), (0.5, 0.0), (0.85, 0.25), (0.5, 0.5), (0.1, 0.75), (0.5, 1.0), (0.9, 0.75), (0.5, 0.5)]],
    9: [[(0.85, 0.35), (0.5, 0.55), (0.15, 0.3), (0.5, 0.0), (0.85, 0.3), (0.75, 1.0)]],
}


def _segment_distance(px, py, a, b):
    """Distance of every pixel centre (px, py) to the segment a-b."""
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / max(dx * dx + dy * dy, 1e-12), 0, 1)
    return np.hypot(px - (ax + t * dx), py - (ay + t * dy))


def digit(label=7, seed=None):
    """A 28×28 float array of grey values 0..255 showing `label`; `seed` jitters size, slant, position and pen width."""
    rng = np.random.default_rng(seed)
    jitter = seed is not None
    scale = 20 * (rng.uniform(0.85, 1.05) if jitter else 1.0)
    slant = rng.uniform(-0.25, 0.25) if jitter else 0.1
    shift = rng.uniform(-1.5, 1.5, size=2) if jitter else np.zeros(2)
    pen = rng.uniform(1.0, 1.6) if jitter else 1.3
    py, px = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    dist = np.full((SIZE, SIZE), np.inf)
    for stroke in STROKES[label]:
        pts = [((x - 0.5 - slant * (y - 0.5)) * scale * 0.8 + SIZE / 2 + shift[0], (y - 0.5) * scale + SIZE / 2 + shift[1]) for x, y in stroke]
        for a, b in zip(pts, pts[1:]):
            dist = np.minimum(dist, _segment_distance(px, py, a, b))
    ink = np.clip(pen + 0.5 - dist, 0, 1)  # full ink within the pen radius, a one-pixel anti-aliased edge
    return np.round(255 * ink)


def batch(n=256, seed=0):
    """n jittered digits (labels cycling 0..9) as (n, 28, 28, 1) grey values, and their labels."""
    labels = np.arange(n) % 10
    images = np.stack([digit(int(k), seed * 100_000 + i) for i, k in enumerate(labels)])
    return images[..., None], labels


def colour(label=7, seed=None):
    """A 32×32×3 picture of CIFAR's size, values 0..255: the digit padded to 32×32, drawn in a colour over gradients."""
    ink = np.pad(digit(label, seed), 2)
    ramp = np.linspace(0, 60, 4 + SIZE)
    return np.round(np.stack([ink, 0.6 * ink + ramp[None, :], 255 - 0.8 * ink - ramp[:, None]], axis=-1))


def colour_batch(n=256, seed=0):
    """n jittered colour digits (labels cycling 0..9) as (n, 32, 32, 3), and their labels."""
    labels = np.arange(n) % 10
    return np.stack([colour(int(k), seed * 100_000 + i) for i, k in enumerate(labels)]), labels


def main(argv=None):
    """python benchmarks/digits.py 7 -o digit7.csv: the digit as a CSV of grey values (cnncalc build --input reads it)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("label", type=int, nargs="?", default=7, choices=range(10))
    parser.add_argument("-o", "--output", help="write the digit here as CSV (default: draw it in the terminal)")
    args = parser.parse_args(argv)
    image = digit(args.label)
    if args.output:
        np.savetxt(args.output, image, fmt="%d", delimiter=",")
        print(f"wrote {args.output}")
    else:
        for row in image:
            print("".join(" .:-=+*#%@"[int(v) * 9 // 255] for v in row))


if __name__ == "__main__":
    main()
