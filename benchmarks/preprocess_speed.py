"""How long `preprocess()` takes: the page's 280x280 canvas PNG and a 12-megapixel phone photo.

    python benchmarks/preprocess_speed.py [--n 50]

Prints the median and 90th percentile over --n calls of each input, in one process (the
inputs are made once; only preprocess() is timed). The goals (issue 12): a median of at most
10 ms for the canvas and 60 ms for the photo on two CPU cores. A 12 MP JPEG is decoded at a
reduced scale (Pillow's draft mode), so its time is mostly decoding.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))
from _common import canvas_png, machine  # noqa: E402


def photo_jpeg(width: int = 4000, height: int = 3000) -> bytes:
    """A 12 MP phone photo of a 4 on paper: a lighting gradient, sensor noise, JPEG at 90."""
    rng = np.random.default_rng(0)
    y, x = np.ogrid[0:height, 0:width]
    light = 235 - 60 * (x / width) - 30 * (y / height)
    im = Image.fromarray(np.broadcast_to(light, (height, width)).astype(np.uint8), "L")
    ImageDraw.Draw(im).line([(1700, 900), (1500, 1700), (2300, 1700)], fill=40, width=60)
    ImageDraw.Draw(im).line([(2100, 1200), (2100, 2200)], fill=40, width=60)
    a = np.asarray(im, np.float32) + rng.normal(0, 4, (height, width)).astype(np.float32)
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def timed(data: bytes, n: int) -> list[float]:
    from digitrec.inference.preprocess import preprocess

    preprocess(data)  # the first call imports scipy.ndimage
    out = []
    for _ in range(n):
        t = time.perf_counter()
        pre = preprocess(data)
        out.append((time.perf_counter() - t) * 1000)
    assert not pre.blank, "the benchmark's digit was not found"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50, help="calls per input")
    args = ap.parse_args(argv)
    print(f"# preprocess() speed, {machine()}")
    print("| input | bytes | median ms | p90 ms | goal ms |")
    print("|---|---:|---:|---:|---:|")
    for name, data, goal in [("canvas 280x280 PNG", canvas_png(), 10), ("photo 4000x3000 JPEG", photo_jpeg(), 60)]:
        t = sorted(timed(data, args.n))
        print(f"| {name} | {len(data):,} | {statistics.median(t):.1f} | {t[int(0.9 * (len(t) - 1))]:.1f} | {goal} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
