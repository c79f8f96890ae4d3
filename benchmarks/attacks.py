"""The attacks of issue 13, each run once against a real `digitrec serve` and the real CLI on
loopback, with what happened: the before/after table of docs/notes/server-limits.md; and
issue 23's images that cost a reader far more than a number does (`--only read`: 1,600 short
strokes, a field of random dots, 150 lines of strokes, three dot fields at once beside a
one-digit /api/predict, and the costliest image the default limits let through).

    python benchmarks/attacks.py [--hold 20] [--only server|cli|read]

Each row is one attack and its outcome in a few words; nothing here asserts (the tests do).
To measure another source tree (say, main before a change), put its src/ first on PYTHONPATH:
    PYTHONPATH=/tmp/before/src python benchmarks/attacks.py
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import resource
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image, ImageDraw

from _common import canvas_png, MemorySampler, server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from synth import many_lines_png, many_strokes_png, random_dots_png, touching_scribbles_png  # noqa: E402

ROWS: list[tuple[str, str]] = []


def row(attack: str, outcome: str) -> None:
    ROWS.append((attack, outcome))
    print(f"{attack}: {outcome}", file=sys.stderr, flush=True)


def png16(size: int = 6300) -> bytes:
    """The issue's worst case: a 16-bit grayscale PNG of size x size, ~92 KB (a stroke on paper)."""
    im = Image.new("I;16", (size, size), 50000)
    ImageDraw.Draw(im).line([(size // 3, size // 5), (size // 2, 4 * size // 5)], fill=3000, width=size // 40)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def http(base: str, method: str, path: str, body: bytes = b"", headers: dict | None = None,
         timeout: float = 30.0) -> tuple[int | str, dict, bytes]:
    """One request on a fresh raw socket: (status, headers, body), or the error's name."""
    host, port = base.removeprefix("http://").split(":")
    head = {"host": f"{host}:{port}", "content-length": str(len(body)), "connection": "close", **(headers or {})}
    req = f"{method} {path} HTTP/1.1\r\n".encode() + b"".join(f"{k}: {v}\r\n".encode() for k, v in head.items())
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.sendall(req + b"\r\n" + body)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
    except OSError as e:
        return type(e).__name__, {}, b""
    head_raw, _, rest = data.partition(b"\r\n\r\n")
    lines = head_raw.decode("latin-1").split("\r\n")
    if not lines or len(lines[0].split()) < 2:
        return "no answer", {}, b""
    hdrs = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), hdrs, rest


def good_requests(base: str, seconds: float, payload: bytes) -> dict:
    """Well-behaved clients, one after another, for `seconds`: status counts and the slowest."""
    counts, worst, end = {}, 0.0, time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter()
        status, hdrs, body = http(base, "POST", "/api/predict?preview=false", payload,
                                  {"content-type": "image/png"}, timeout=10)
        worst = max(worst, time.perf_counter() - t0)
        key = f"{status} {hdrs.get('content-type', '').split(';')[0]}".strip()
        counts[key] = counts.get(key, 0) + 1
        time.sleep(0.2)
    return {"statuses": counts, "worst_ms": round(1000 * worst)}


def still_open(socks: list[socket.socket]) -> int:
    """How many of the sockets the server has not closed (what it sent first is read away)."""
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            while s.recv(65536):
                pass
        except BlockingIOError:
            n += 1
        except OSError:
            pass
    return n


def hold(base: str, kind: str, n: int, seconds: float) -> str:
    """n connections that are idle, or send headers / a body one byte per half second, for
    `seconds`; meanwhile a well-behaved client. Returns what the good client got and how many
    of the n were still open at the end."""
    host, port = base.removeprefix("http://").split(":")
    socks, stop = [], threading.Event()
    for _ in range(n):
        try:
            s = socket.create_connection((host, int(port)), timeout=5)
        except OSError:
            break
        socks.append(s)
        if kind == "slow body":
            s.sendall(b"POST /api/predict HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\n"
                      b"content-length: 100000\r\n\r\n")

    def trickle():
        header = b"POST /api/predict HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 10_000
        i = 0
        while not stop.wait(0.5):
            for s in socks:
                try:
                    s.send(header[i : i + 1] if kind == "slow headers" else b"\0")
                except OSError:
                    pass
            i += 1

    if kind != "idle":
        threading.Thread(target=trickle, daemon=True).start()
    time.sleep(1.0)
    good = good_requests(base, seconds - 1.0, canvas_png())
    left = still_open(socks)
    stop.set()
    for s in socks:
        s.close()
    return (f"good client: {good['statuses']}, slowest {good['worst_ms']} ms; "
            f"{left} of {len(socks)} still open after {seconds:.0f} s")


def disconnects(base: str, n: int = 20) -> None:
    host, port = base.removeprefix("http://").split(":")
    body = canvas_png()
    for _ in range(n):
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(f"POST /api/predict HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\n"
                      f"content-length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
            time.sleep(0.05)
    time.sleep(1.0)


async def in_flight(base: str, payload: bytes, n: int, route: str = "/api/predict?preview=false"
                    ) -> tuple[dict, float, float]:
    """n uploads of `payload` to `route` at once and, 0.3 s in, one canvas to /api/predict:
    (status counts, the slowest upload's seconds, the canvas's seconds)."""
    import httpx

    async with httpx.AsyncClient(timeout=300) as c:
        async def one():
            t0 = time.perf_counter()
            r = await c.post(f"{base}{route}", content=payload)
            return r.status_code, time.perf_counter() - t0

        async def normal():
            await asyncio.sleep(0.3)
            t0 = time.perf_counter()
            await c.post(f"{base}/api/predict?preview=false", content=canvas_png())
            return time.perf_counter() - t0

        results, normal_s = await asyncio.gather(asyncio.gather(*(one() for _ in range(n))), normal())
    counts = {}
    for status, _ in results:
        counts[status] = counts.get(status, 0) + 1
    return counts, max(t for _, t in results), normal_s


def server_attacks(args, checkpoint_std0: Path) -> None:
    with server("--max-concurrency", "4") as (base, proc, health):
        log = Path(proc.log_path)
        for kind in ("idle", "slow headers", "slow body"):
            row(f"64 {kind} connections, {args.hold:.0f} s", hold(base, kind, 64, args.hold))
            time.sleep(2)
        before = log.read_text().count("Traceback")
        disconnects(base)
        row("20 clients drop mid-upload", f"{log.read_text().count('Traceback') - before} tracebacks in the server log")
        sampler = MemorySampler(proc.pid)
        sampler.start()
        sampler.take()
        worst = png16()
        t0 = time.perf_counter()
        status, _, _ = http(base, "POST", "/api/predict?preview=false", worst, timeout=120)
        one_s, peak1 = time.perf_counter() - t0, sampler.take()
        counts, slowest, normal_s = asyncio.run(in_flight(base, worst, 8))
        peak8 = sampler.take()
        sampler.stop = True
        row(f"16-bit PNG 6300x6300 ({len(worst) / 1e3:.0f} KB), one", f"{status} in {one_s:.2f} s, server peak RSS {peak1 / 2**20:,.0f} MiB")
        row("the same, 8 at once", f"{counts}, slowest {slowest:.1f} s, server peak RSS {peak8 / 2**20:,.0f} MiB; "
            f"a canvas PNG meanwhile took {normal_s:.2f} s")
        status, hdrs, body = http(base, "GET", "/docs")
        external = sorted({w.split("/")[2] for w in body.decode("utf-8", "replace").replace("'", '"').split('"')
                           if w.startswith(("http://", "https://"))})
        row("GET /docs", f"{status}; loads from {', '.join(external) or 'this server only'}")
        for path in ("/docs/", "/api/predict/", "/api/health/"):
            status, hdrs, _ = http(base, "GET", path, headers={"host": "evil.example"})
            row(f"GET {path} with Host: evil.example", f"{status} {hdrs.get('location', '(no redirect)')}")
        b64 = base64.b64encode(canvas_png()).decode()
        for name, doc in (("base64", {"image": b64}), ("data URL", {"image": "data:image/png;base64," + b64})):
            status, _, body = http(base, "POST", "/api/predict", json.dumps(doc).encode(),
                                   {"content-type": "application/json"})
            row(f"JSON body with a {name}", f"{status} {body[:90].decode('utf-8', 'replace')}")
        status, _, body = http(base, "POST", "/api/predict",
                               b"--xyz\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                               b"content-type: image/png\r\n\r\n" + canvas_png(),
                               {"content-type": "multipart/form-data; boundary=xyz"})
        row("multipart body without its closing boundary", f"{status} {body[:110].decode('utf-8', 'replace')}")
        status, hdrs, body = http(base, "GET", "/api/health")
        row("/api/health max_upload", str(json.loads(body).get("max_upload")))
        tb = log.read_text().count("Traceback")
        row("tracebacks in the server log, all of the above", str(tb))
    try:
        with server("--checkpoint", str(checkpoint_std0), timeout=120) as (base, proc, health):
            status, _, body = http(base, "POST", "/api/predict", canvas_png())
            row("server with a std-0 checkpoint", f"started; predict: {status} {body[:80].decode('utf-8', 'replace')}")
    except SystemExit as e:
        row("server with a std-0 checkpoint", "refused to start: " + str(e).strip().splitlines()[-1][:150])


def read_attacks() -> None:
    """Issue 23: images that cost a reader far more than one number, each POSTed to /api/read and
    timed (the server's time is the round trip on loopback); then three dot fields at once while
    a one-digit canvas goes to /api/predict."""
    import httpx

    images = {"2000x2000 PNG, 1,600 short strokes": many_strokes_png(),
              "1500x1500 PNG, random dots": random_dots_png(),
              "2000x2000 PNG, 150 lines of 60 strokes": many_lines_png(),
              "2000x2000 PNG, 8 lines of 5 touching scribbles (952 candidates: just within the default limits)":
                  touching_scribbles_png(8, 5, 1.2, 0.05, 100)}
    with server("--max-concurrency", "4") as (base, proc, health), httpx.Client(base_url=base, timeout=300) as c:
        for name, data in images.items():
            t0 = time.perf_counter()
            r = c.post("/api/read", content=data, headers={"content-type": "image/png"})
            said = r.json().get("detail", r.json().get("text", ""))[:90].replace("\n", " ")
            row(f"/api/read {name} ({len(data) / 1e3:.0f} KB)", f"{r.status_code} in {time.perf_counter() - t0:.2f} s: "
                f"{said}")
        dots = images["1500x1500 PNG, random dots"]
        counts, slowest, normal_s = asyncio.run(in_flight(base, dots, 3, route="/api/read"))
        row("/api/read, three dot fields at once", f"{counts}, slowest {slowest:.2f} s; a one-digit /api/predict "
            f"meanwhile took {normal_s:.2f} s")


def cli(*argv: str, stdin=None, timeout: float = 20, limit_gb: float = 4.0) -> tuple[str, str]:
    """`digitrec ARGV`: (exit code or 'hung', first error line; 'Traceback' if there was one)."""
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (int(limit_gb * 2**30), int(limit_gb * 2**30)))

    try:
        p = subprocess.run([sys.executable, "-m", "digitrec", *map(str, argv)], capture_output=True, text=True,
                           timeout=timeout, stdin=stdin if stdin is not None else subprocess.DEVNULL, preexec_fn=cap)
    except subprocess.TimeoutExpired:
        return "hung", f"still running after {timeout:.0f} s"
    err = p.stderr.strip().splitlines()
    if "Traceback" in p.stderr:
        return str(p.returncode), "Traceback: " + (err[-1] if err else "")
    return str(p.returncode), (err[0] if err else p.stdout.strip().splitlines()[0] if p.stdout.strip() else "")[:160]


def bad_models(tmp: Path) -> dict[str, Path]:
    """Copies of the packaged model (.pt and .onnx) with damaged digitrec metadata."""
    import onnx
    import torch

    from digitrec.inference.backends import packaged_checkpoint, packaged_onnx

    raw = torch.load(str(packaged_checkpoint()), weights_only=True)
    model = onnx.load(str(packaged_onnx()))
    entry = next(p for p in model.metadata_props if p.key == "digitrec")
    info = json.loads(entry.value)
    cases = {"{}": {}, "[]": [], "2 classes": with_card(raw["meta"], classes=["0", "1"]),
             "std 0": with_card(raw["meta"], std=0),
             "calibration 'hot'": {"dataset": {"name": "mnist", "classes": list("0123456789"), "mean": 0.13,
                                               "std": 0.3}, "calibration": {"temperature": "hot", "threshold": 0.5}}}
    out = {}
    for i, (name, meta) in enumerate(cases.items()):
        slug = f"case{i}"
        torch.save({**raw, "meta": meta}, tmp / f"{slug}.pt")
        entry.value = json.dumps({**info, "meta": meta})
        onnx.save(model, str(tmp / f"{slug}.onnx"))
        out[name] = tmp / slug
    torch.save({**raw, "meta": "not json"}, tmp / "notjson.pt")
    entry.value = "{not json"
    onnx.save(model, str(tmp / "notjson.onnx"))
    out["not JSON"] = tmp / "notjson"
    return out


def cli_attacks() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="digitrec-attacks-"))
    (tmp / "seven.png").write_bytes(canvas_png())
    os.mkfifo(tmp / "fifo.png")
    row("predict FIFO", " / ".join(cli("predict", tmp / "fifo.png", timeout=15)))
    row("predict /dev/zero (4 GB address-space cap)", " / ".join(cli("predict", "/dev/zero", timeout=60)))
    with open(tmp / "seven.png", "rb") as f:
        row("predict - < image", " / ".join(cli("predict", "-", stdin=f)))
    for name, stem in bad_models(tmp).items():
        for ext in (".pt", ".onnx"):
            row(f"predict with metadata {name} ({ext})", " / ".join(cli("predict", tmp / "seven.png", "--checkpoint",
                                                                        f"{stem}{ext}")))
    from digitrec.inference.backends import packaged_onnx

    row("evaluate an .onnx", " / ".join(cli("evaluate", "--checkpoint", str(packaged_onnx()), timeout=120)))
    folder = tmp / "folder"
    folder.mkdir()
    (folder / "x.png").write_bytes(canvas_png())
    Image.open(io.BytesIO(canvas_png())).convert("RGB").save(folder / "x.jpg")
    cli("predict", folder, "--save-preview")
    row("--save-preview for x.png and x.jpg", ", ".join(sorted(p.name for p in folder.glob("*.preview.png"))))
    (folder / "loop.png").symlink_to(folder / "loop.png")
    os.mkfifo(folder / "pipe.png")
    (folder / "locked.png").write_bytes(canvas_png())
    os.chmod(folder / "locked.png", 0)
    code, first = cli("predict", folder, timeout=30)
    row("folder with a symlink loop, a FIFO, an unreadable file", f"{code} / {first}")
    helps = []
    for command in ("serve", "predict", "train", "evaluate", "fetch", "export"):
        text = subprocess.run([sys.executable, "-m", "digitrec", command, "--help"], capture_output=True,
                              text=True).stdout
        helps.append(f"{command}: {text.count('default')} defaults" + (", (default: None)" if "(default: None)" in text else ""))
    row("--help shows defaults", "; ".join(helps))
    os.chmod(folder / "locked.png", stat.S_IRUSR | stat.S_IWUSR)


def with_card(meta: dict, **changes) -> dict:
    """A copy of checkpoint metadata with card fields changed (either metadata layout)."""
    meta = json.loads(json.dumps(meta))
    (meta["card"] if "card" in meta else meta["dataset"]).update(changes)
    return meta


def std0_checkpoint(tmp: Path) -> Path:
    import torch

    from digitrec.inference.backends import packaged_checkpoint

    raw = torch.load(str(packaged_checkpoint()), weights_only=True)
    raw["meta"] = with_card(raw["meta"], std=0)
    torch.save(raw, tmp / "std0.pt")
    return tmp / "std0.pt"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hold", type=float, default=20.0, help="seconds each slow/idle attack is held")
    p.add_argument("--only", choices=["server", "cli", "read"], default=None, help="run only these attacks")
    args = p.parse_args(argv)
    import digitrec

    print(f"digitrec from {Path(digitrec.__file__).parent}", file=sys.stderr)
    if args.only in (None, "server"):
        server_attacks(args, std0_checkpoint(Path(tempfile.mkdtemp(prefix="digitrec-std0-"))))
    if args.only in (None, "cli"):
        cli_attacks()
    if args.only in (None, "read"):
        read_attacks()
    print("\n| attack | outcome |\n|---|---|")
    for attack, outcome in ROWS:
        print(f"| {attack} | {outcome.replace('|', '/')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
