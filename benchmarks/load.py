"""Load test for `digitrec serve`: a bounded burst of requests; throughput, latency, errors, memory.

Starts `digitrec serve` on 127.0.0.1 (a free port) as a subprocess, waits for /api/health,
then sends, from C concurrent clients (asyncio + httpx, keep-alive connections):
    digits     N drawn digits (MNIST test digits, dark ink on a 280x280 light canvas, PNG),
               the main load: stops at N requests or after --max-seconds, whichever is first
    photos     large photos (4000x3000 PNG, 12 MP: about 36 MB each once decoded), to show
               that --max-concurrency, not the number of clients, bounds the memory in use
    oversized  uploads one byte over --max-upload, which must be refused (413) unread
    idle/slow  (--hold S) 64 idle connections and 64 uploads sending one byte every half
               second (each reconnecting whenever the server closes it), held for S seconds,
               while --good-clients clients send canvas PNGs: their statuses and latency
    worst case (--worst-case) for each format, 8 images at once that take the most memory
               to decode while under the limits (a 100 KB 16-bit PNG of 6300x6300, a 40 MP
               RGBA PNG, ...): the server's peak memory, and a canvas PNG's latency meanwhile
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

Idle (model loaded): 254 MiB (torch), 287 MiB (onnx).

Measured 2026-11-24 after issue 13 (same machine; --max-upload 20 MB; `--requests 2000 --hold 60
--worst-case`): digits p99 1,092 ms at 80 req/s; during 64 idle + 64 slow connections for 60 s,
canvas PNGs all 200 with p99 41.5 ms for one client, 125 ms for four back to back (CPU-bound);
8 worst-case images at once in any format: server peak 376-576 MiB, 579 MiB over the whole run
(main: 3,548 MiB for eight 16-bit PNGs). Tables: docs/notes/server-limits.md. The server is CPU-bound on
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

from _common import canvas_png, MemorySampler, machine, server


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


async def hold_attack(base: str, idle: int, slow: int, seconds: float, good_clients: int) -> tuple[dict, dict]:
    """`idle` idle and `slow` one-byte-per-half-second connections, reopened whenever the server
    closes them, for `seconds`; meanwhile well-behaved clients: (their load() row, attack counts)."""
    host, port = base.removeprefix("http://").split(":")
    stop, counts = asyncio.Event(), {"idle opened": 0, "slow opened": 0, "slow answered": {}}

    async def attacker(kind: str):
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
            except OSError:
                await asyncio.sleep(0.5)
                continue
            counts[f"{kind} opened"] += 1
            answer = asyncio.ensure_future(reader.read())  # done when the server closes
            try:
                if kind == "slow":
                    writer.write(b"POST /api/predict HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\n"
                                 b"content-length: 100000\r\n\r\n")
                while not stop.is_set() and not answer.done():
                    if kind == "slow":
                        writer.write(b"\0")
                    await asyncio.wait([answer], timeout=0.5)
                if answer.done() and kind == "slow":
                    status = (answer.result().split(b" ") + [b"", b"closed"])[1].decode() or "closed"
                    counts["slow answered"][status] = counts["slow answered"].get(status, 0) + 1
            except OSError:
                pass
            finally:
                answer.cancel()
                writer.close()

    tasks = [asyncio.ensure_future(attacker("idle")) for _ in range(idle)]
    tasks += [asyncio.ensure_future(attacker("slow")) for _ in range(slow)]
    await asyncio.sleep(2.0)  # all of them open before the clients start
    row = await load(f"{base}/api/predict?preview=false", [canvas_png()], 10**9, good_clients, seconds - 2.0, 200)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return row, counts


def _drawn(mode: str, size, paper, ink) -> Image.Image:
    im = Image.new(mode, size, paper)
    w, h = size
    ImageDraw.Draw(im).line([(w // 3, h // 5), (w // 2, 4 * h // 5)], fill=ink, width=max(w, h) // 40)
    return im


def worst_case_images() -> dict[str, bytes]:
    """Per format, an image under every limit (20 MB, 40 MP) that takes the most memory to
    decode: small files, huge pixel counts, the deepest modes Pillow keeps."""
    def enc(im, fmt, **kw):
        buf = io.BytesIO()
        im.save(buf, fmt, **kw)
        return buf.getvalue()

    side = 6320  # 39.9 MP
    rgb = _drawn("RGB", (side, side), (230, 230, 220), (20, 20, 20))
    out = {"PNG 16-bit gray 6300x6300 (issue 13)": enc(_drawn("I;16", (6300, 6300), 50000, 3000), "PNG"),
           "PNG RGBA 40 MP": enc(_drawn("RGBA", (side, side), (230, 230, 220, 255), (20, 20, 20, 255)), "PNG"),
           "TIFF RGB 40 MP, deflate": enc(rgb, "TIFF", compression="tiff_deflate"),
           "JPEG 40 MP": enc(rgb, "JPEG", quality=85),
           "GIF 40 MP": enc(_drawn("L", (side, side), 230, 20), "GIF"),
           "BMP 8-bit 20 MP (at the byte limit)": enc(_drawn("L", (4460, 4460), 230, 20), "BMP"),
           "WebP RGB 12 MP": enc(_drawn("RGB", (4000, 3000), (230, 230, 220), (20, 20, 20)), "WEBP", lossless=True)}
    try:
        import pillow_heif

        buf = io.BytesIO()
        pillow_heif.from_pillow(_drawn("RGB", (5712, 4284), (230, 230, 220), (20, 20, 20))).save(buf, quality=60)
        out["HEIC 24 MP (a phone's)"] = buf.getvalue()
    except ImportError:
        pass
    return out


async def in_flight(url: str, payload: bytes, n: int) -> tuple[dict, float, float]:
    """n uploads of `payload` at once, and one canvas PNG sent 0.3 s after them:
    (statuses, the slowest upload's seconds, the canvas PNG's seconds)."""
    import httpx

    async with httpx.AsyncClient(timeout=300) as c:
        async def one(body):
            t0 = time.perf_counter()
            r = await c.post(url, content=body)
            return r.status_code, time.perf_counter() - t0

        async def canvas():
            await asyncio.sleep(0.3)
            return await one(canvas_png())

        results, (_, canvas_s) = await asyncio.gather(asyncio.gather(*(one(payload) for _ in range(n))), canvas())
    statuses = {}
    for status, _ in results:
        statuses[status] = statuses.get(status, 0) + 1
    return statuses, max(t for _, t in results), canvas_s


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", type=Path, default=None, help="model to serve (default: the packaged one)")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch")
    p.add_argument("--requests", type=int, default=5000, help="digit requests in the main load (0: skip the bursts)")
    p.add_argument("--clients", type=int, default=32, help="concurrent clients")
    p.add_argument("--max-seconds", type=float, default=120.0, help="cap on the main load's duration")
    p.add_argument("--photos", type=int, default=64, help="large-photo requests (0: skip)")
    p.add_argument("--oversized", type=int, default=64, help="over-the-limit uploads (0: skip)")
    p.add_argument("--max-concurrency", type=int, default=4, help="the server's --max-concurrency")
    p.add_argument("--max-upload", type=int, default=20_000_000, help="the server's --max-upload, bytes")
    p.add_argument("--hold", type=float, default=0.0, help="seconds of the idle/slow phase (0: skip; issue 13: 60)")
    p.add_argument("--idle", type=int, default=64, help="idle connections in the idle/slow phase")
    p.add_argument("--slow", type=int, default=64, help="one-byte-per-half-second uploads in the idle/slow phase")
    p.add_argument("--good-clients", type=int, default=4, help="well-behaved clients in the idle/slow phase")
    p.add_argument("--worst-case", action="store_true", help="run the worst-case-images phase")
    p.add_argument("--expect", action="store_true",
                   help="exit 1 unless the goals are met: idle/slow p99 <= 100 ms and all 200; peak <= 600 MiB")
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
        rows = burst_phases(args, base, sampler)
        hold = hold_phase(args, base, sampler) if args.hold else None
        worst = worst_case_phase(base, sampler) if args.worst_case else []
        hwm = sampler.status("VmHWM")
        sampler.stop = True
        tracebacks = Path(proc.log_path).read_text().count("Traceback")
    print(f"\n`digitrec serve --backend {args.backend} --max-concurrency {args.max_concurrency} "
          f"--max-upload {args.max_upload}`, client and server sharing {machine()}\n")
    print("| load | clients | body | requests | errors | req/s | p50 ms | p95 ms | p99 ms | max ms | server peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, clients, size, r in rows + ([hold[0]] if hold else []):
        print(f"| {name} | {clients} | {size / 1e3:,.0f} kB | {r['requests']:,} | {r['errors']} | {r['rate']:,.0f} | "
              f"{r['p50']:.1f} | {r['p95']:.1f} | {r['p99']:.1f} | {r['max']:.0f} | {r['peak'] / 2**20:,.0f} MiB |")
    if hold:
        print(f"\nidle/slow phase: statuses of the well-behaved clients {hold[0][3]['statuses']}; attackers: {hold[1]}")
    if worst:
        print("\n| 8 at once | file | statuses | slowest s | canvas PNG meanwhile, ms | server peak RSS |")
        print("|---|---:|---|---:|---:|---:|")
        for name, size, statuses, slowest, canvas_s, peak in worst:
            print(f"| {name} | {size / 1e3:,.0f} kB | {statuses} | {slowest:.1f} | {1000 * canvas_s:.0f} | "
                  f"{peak / 2**20:,.0f} MiB |")
    print(f"\nserver RSS idle (model loaded, warmed up): {idle / 2**20:,.0f} MiB; "
          f"peak over the whole run (VmHWM): {hwm / 2**20:,.0f} MiB; tracebacks in its log: {tracebacks}")
    failed = any(r["errors"] for _, _, _, r in rows) or tracebacks
    if args.expect:
        failed = failed or (hold and (hold[0][3]["errors"] or hold[0][3]["p99"] > 100)) or hwm > 600 * 2**20
    return 1 if failed else 0


def burst_phases(args, base: str, sampler) -> list:
    phases = [("digits", digit_images(), args.requests, args.max_seconds, 200)]
    if args.photos:
        phases.append(("photos", [photo()], args.photos, 120.0, 200))
    if args.oversized:
        phases.append(("oversized", [b"\x89PNG" + b"\0" * (args.max_upload - 3)], args.oversized, 120.0, 413))
    rows = []
    for name, payloads, n, cap, expect in phases if args.requests else []:
        r = asyncio.run(load(f"{base}/api/predict", payloads, n, args.clients, cap, expect))
        r["peak"] = sampler.take()
        rows.append((name, args.clients, len(payloads[0]), r))
        print(f"{name}: {r['requests']} requests, {r['errors']} errors, statuses {r['statuses']}", file=sys.stderr)
    return rows


def hold_phase(args, base: str, sampler) -> tuple:
    r, counts = asyncio.run(hold_attack(base, args.idle, args.slow, args.hold, args.good_clients))
    r["peak"] = sampler.take()
    print(f"idle/slow: {r['requests']} requests, statuses {r['statuses']}, p99 {r['p99']:.1f} ms; {counts}",
          file=sys.stderr)
    name = f"canvas PNGs during {args.idle} idle + {args.slow} slow connections, {args.hold:.0f} s"
    return (name, args.good_clients, len(canvas_png()), r), counts


def worst_case_phase(base: str, sampler) -> list:
    rows = []
    for name, data in worst_case_images().items():
        sampler.take()
        statuses, slowest, canvas_s = asyncio.run(in_flight(f"{base}/api/predict?preview=false", data, 8))
        rows.append((name, len(data), statuses, slowest, canvas_s, sampler.take()))
        print(f"worst case {name}: {statuses}, slowest {slowest:.1f} s, canvas {canvas_s * 1000:.0f} ms, "
              f"peak {rows[-1][-1] / 2**20:,.0f} MiB", file=sys.stderr)
    return rows


if __name__ == "__main__":
    sys.exit(main())
