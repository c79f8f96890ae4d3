"""Server latency: median of N predictions over loopback, against a real `digitrec serve`.

Starts `digitrec serve` in a subprocess on a free 127.0.0.1 port, waits for /api/health,
then sends N sequential requests over one keep-alive connection and prints a Markdown table
of client-side round-trip times (and the server's own `ms`). Inputs: a 280x280 canvas export
(RGBA PNG, what the page sends) and a 1600x1200 JPEG photo to POST /api/predict, and the
number mode's 840x280 canvas holding four MNIST test digits, two of them touching, to
POST /api/read.

    python benchmarks/latency.py --checkpoint runs/x/best.pt [--n 100]

Measured: seed model (6 epochs), torch 2.13 CPU, 2 CPU cores shared with other jobs (load ~4.8):
    canvas 280x280 RGBA PNG   median 8.8 ms (p90 9.8), of which 7.1 ms inside the server
    photo 1600x1200 JPEG      median 55.7 ms (p90 58.7), of which 53.0 ms inside the server
    (a run at a busier moment gave 17 ms and 139 ms medians: numbers on shared cores vary)
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

from _common import canvas_png, server


def photo_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    im = Image.new("L", (1600, 1200), 235)
    ImageDraw.Draw(im).line([(600, 300), (1000, 300), (750, 950)], fill=40, width=45, joint="curve")
    a = np.asarray(im, np.float32) + rng.normal(0, 4, (1200, 1600))
    buf = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def number_png() -> bytes:
    """What number mode sends: four MNIST test digits along an 840x280 transparent canvas, the
    middle two touching."""
    from digitrec.data.load import load
    from digitrec.scenes import compose_line, glyph_of, resize

    x = load("mnist").test_x[:4].numpy()
    strip = compose_line([glyph_of(d) for d in x], np.random.default_rng(0), gap=(-0.05, 0.0))
    ink = resize(strip.ink, round(strip.ink.shape[1] * 200 / strip.ink.shape[0]), 200)[:, :800]
    a = np.zeros((280, 840, 4), np.uint8)
    a[40 : 40 + ink.shape[0], 20 : 20 + ink.shape[1], 3] = np.round(ink * 255).astype(np.uint8)
    a[..., :3] = 17
    buf = io.BytesIO()
    Image.fromarray(a, "RGBA").save(buf, "PNG")
    return buf.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--checkpoint", type=Path, default=None, help="model (default: the packaged one)")
    ap.add_argument("--n", type=int, default=100, help="requests per input")
    args = ap.parse_args(argv)

    import httpx

    with server(*(["--checkpoint", str(args.checkpoint)] if args.checkpoint else [])) as (base, _, health), \
            httpx.Client(base_url=base, timeout=30) as client:
        print(f"{health['checkpoint']} ({health['model']}, {health['dataset']}), {args.n} sequential "
              f"requests per input over one keep-alive loopback connection, after 5 warm-up requests\n")
        print("| input | bytes | median ms | p90 ms | min ms | server's own ms (median) |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, data, ctype, route in (("canvas 280x280 RGBA PNG", canvas_png(), "image/png", "/api/predict"),
                                         ("photo 1600x1200 JPEG", photo_jpeg(), "image/jpeg", "/api/predict"),
                                         ("number 840x280 RGBA PNG, /api/read", number_png(), "image/png", "/api/read")):
            for _ in range(5):
                client.post(route, content=data, headers={"content-type": ctype})
            times, inside = [], []
            for _ in range(args.n):
                t0 = time.perf_counter()
                r = client.post(route, content=data, headers={"content-type": ctype})
                times.append(1000 * (time.perf_counter() - t0))
                r.raise_for_status()
                inside.append(r.json()["ms"])
            times.sort()
            print(f"| {name} | {len(data):,} | {statistics.median(times):.1f} | "
                  f"{times[int(0.9 * len(times)) - 1]:.1f} | {times[0]:.1f} | {statistics.median(inside):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
