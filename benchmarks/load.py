"""Load test for `digitrec serve`: a bounded burst of requests; throughput, latency, errors, memory.

Starts `digitrec serve` on 127.0.0.1 (a free port) as a subprocess, waits for /api/health,
then sends, from C concurrent clients (asyncio + httpx, keep-alive connections):
    digits     N drawn digits (MNIST test digits, dark ink on a 280x280 light canvas, PNG),
               the main load: stops at N requests or after --max-seconds, whichever is first
    photos     large photos (4000x3000 PNG, 12 MP: about 36 MB each once decoded), to show
               that --max-concurrency, not the number of clients, bounds the memory in use
    oversized  uploads one byte over --max-upload, which must be refused (413) unread
An error is any answer other than the one expected (200; 413 for the oversized), a 5xx, a
timeout or a dropped connection: the goal is zero. Latency is client-side, request sent to
response read. The server's memory is sampled from /proc/<pid>/status (VmRSS every 20 ms;
VmHWM, the kernel's peak, at the end). Client and server share the machine's cores.

    DIGITREC_DATA=/tmp/dr-data python benchmarks/load.py --checkpoint /tmp/b-run/best.pt
        [--requests 5000 --clients 32 --max-seconds 120 --backend torch|onnx --max-concurrency 4]

Measured 2026-11-23 (2 shared CPU cores, load average 5-6 from other jobs; torch 2.13 CPU;
seed model trained 2 epochs, 97.9% test; --max-concurrency 4, --max-upload 5 MB; 32 clients):

    | backend | load      | requests | errors | req/s | p50 ms | p95 ms | p99 ms | peak RSS |
    |---------|-----------|---------:|-------:|------:|-------:|-------:|-------:|---------:|
    | torch   | digits    |    5,000 |      0 |    77 |    367 |    654 |  1,321 |  271 MiB |
    | torch   | photos    |       64 |      0 |     3 |  9,798 | 10,933 | 11,233 |  632 MiB |
    | torch   | oversized |       64 |      0 |    77 |    290 |    599 |    623 |  349 MiB |
    | onnx    | digits    |    5,000 |      0 |    56 |    448 |  1,541 |  2,738 |  305 MiB |

Idle (model loaded): 254 MiB (torch), 287 MiB (onnx). The server is CPU-bound on
preprocessing (about 8 ms a digit, 2-3 s a 12 MP photo); the model is not the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from _common import MemorySampler, machine, server


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def digit_images(n: int = 200) -> list[bytes]:
    """MNIST test digits as a person draws them on the web page: dark ink, 280x280 canvas."""
    try:
        from digitrec.data.load import load

        digits = load("mnist", fetch_missing=False).test_x[:n].numpy()
    except Exception as e:  # noqa: BLE001  no dataset here: draw strokes instead
        print(f"(MNIST not in the cache: {e}; drawing synthetic strokes)", file=sys.stderr)
        rng = np.random.default_rng(0)
        digits = []
        for _ in range(n):
            im = Image.new("L", (28, 28))
            ImageDraw.Draw(im).line([tuple(rng.integers(4, 24, 2)) for _ in range(4)], fill=255, width=3)
            digits.append(np.asarray(im))
    return [png(Image.fromarray(255 - d, "L").resize((280, 280), Image.Resampling.BILINEAR).convert("RGB"))
            for d in digits]


def photo(width: int = 4000, height: int = 3000) -> bytes:
    """A large photo of a digit written on paper: smooth, so the file is small, the pixels many."""
    im = Image.new("RGB", (width, height), (236, 232, 220))
    d = ImageDraw.Draw(im)
    d.line([(1500, 700), (2500, 700), (1800, 2300)], fill=(30, 30, 60), width=120)  # a 7
    return png(im)


async def load(url: str, payloads: list[bytes], n: int, clients: int, max_seconds: float,
               expect: int) -> dict:
    import httpx

    latencies, errors, statuses = [], [], {}
    counter = itertools.count()
    deadline = time.monotonic() + max_seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
        async def worker():
            while True:
                i = next(counter)
                if i >= n or time.monotonic() > deadline:
                    return
                t0 = time.perf_counter()
                try:
                    r = await client.post(url, content=payloads[i % len(payloads)],
                                          headers={"content-type": "image/png"})
                    await r.aread()
                    status = r.status_code
                except httpx.HTTPError as e:
                    status = type(e).__name__
                latencies.append(time.perf_counter() - t0)
                statuses[status] = statuses.get(status, 0) + 1
                if status != expect:
                    errors.append(status)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "errors": len(errors), "statuses": statuses, "wall": wall,
            "rate": len(latencies) / wall, **{f"p{q}": float(np.percentile(ms, q)) for q in (50, 95, 99)},
            "max": float(ms.max())}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=None, help="model to serve (default: the packaged one)")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    p.add_argument("--requests", type=int, default=5000, help="digit requests in the main load")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients")
    p.add_argument("--max-seconds", type=float, default=120.0, help="cap on the main load's duration")
    p.add_argument("--photos", type=int, default=64, help="large-photo requests (0: skip)")
    p.add_argument("--oversized", type=int, default=64, help="over-the-limit uploads (0: skip)")
    p.add_argument("--max-concurrency", type=int, default=4, help="the server's --max-concurrency")
    p.add_argument("--max-upload", type=int, default=5_000_000, help="the server's --max-upload, bytes")
    args = p.parse_args(argv)

    serve_args = ["--backend", args.backend, "--max-concurrency", str(args.max_concurrency),
                  "--max-upload", str(args.max_upload)]
    if args.checkpoint:
        serve_args += ["--checkpoint", str(args.checkpoint)]
    with server(*serve_args) as (base, proc, _):
        sampler = MemorySampler(proc.pid)
        sampler.start()
        idle = sampler.status("VmRSS")
        sampler.take()
        digits = digit_images()
        phases = [("digits", digits, args.requests, args.max_seconds, 200)]
        if args.photos:
            phases.append(("photos", [photo()], args.photos, 120.0, 200))
        if args.oversized:
            phases.append(("oversized", [b"\x89PNG" + b"\0" * (args.max_upload - 3)], args.oversized, 120.0, 413))
        rows = []
        for name, payloads, n, cap, expect in phases:
            r = asyncio.run(load(f"{base}/api/predict", payloads, n, args.clients, cap, expect))
            r["peak"] = sampler.take()
            rows.append((name, len(payloads[0]), r))
            print(f"{name}: {r['requests']} requests, {r['errors']} errors, statuses {r['statuses']}",
                  file=sys.stderr)
        hwm = sampler.status("VmHWM")
        sampler.stop = True

    print(f"\n`digitrec serve --backend {args.backend} --max-concurrency {args.max_concurrency} "
          f"--max-upload {args.max_upload}`, {args.clients} concurrent clients, client and server "
          f"sharing {machine()}\n")
    print("| load | body | requests | errors | req/s | p50 ms | p95 ms | p99 ms | max ms | server peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, size, r in rows:
        print(f"| {name} | {size / 1e3:,.0f} kB | {r['requests']:,} | {r['errors']} | {r['rate']:,.0f} | "
              f"{r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['max']:.0f} | {r['peak'] / 2**20:,.0f} MiB |")
    print(f"\nserver RSS idle (model loaded, warmed up): {idle / 2**20:,.0f} MiB; "
          f"peak over the whole run (VmHWM): {hwm / 2**20:,.0f} MiB")
    return 1 if any(r["errors"] for _, _, r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
