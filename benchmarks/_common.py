"""What the benchmarks share: the machine they ran on, a real `digitrec serve` on loopback,
clocks that wait for the GPU (digitrec.util.clock), and the server's memory. Run the benchmarks from the project
root (`python benchmarks/NAME.py`); this file sits beside them."""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from digitrec.util import clock  # noqa: F401  (time.perf_counter after the device caught up)


def machine() -> str:
    """One line naming the CPU (or GPU), cores, Python and torch, for the top of a table."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M).group(1)
    except (OSError, AttributeError):
        pass
    line = f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    try:
        import torch

        line += f", torch {torch.__version__}"
        if torch.cuda.is_available():
            line += f", {torch.cuda.get_device_name()}"
    except ImportError:
        pass
    return line


def canvas_png() -> bytes:
    """What the drawing page sends: dark strokes (a 7) on a transparent 280x280 canvas, PNG."""
    import io

    from PIL import Image, ImageDraw

    im = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(im).line([(70, 60), (210, 60), (120, 240)], fill=(17, 17, 17, 255), width=20, joint="curve")
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(*args: str, timeout: float = 60.0):
    """A real `digitrec serve ARGS` on a free 127.0.0.1 port: yields (base URL, process, health)
    once /api/health answers; stopped (and its log removed) on exit."""
    import httpx

    port = free_port()
    log = tempfile.NamedTemporaryFile("w+", prefix="digitrec-serve-", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, "-m", "digitrec", "serve", "--port", str(port), *args],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited ({proc.returncode}):\n{Path(log.name).read_text()[-3000:]}")
            try:
                r = httpx.get(f"{base}/api/health", timeout=1.0)
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the server did not answer /api/health within {timeout:.0f} s")
            time.sleep(0.1)
        proc.log_path = log.name
        yield base, proc, r.json()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        os.unlink(log.name)


class MemorySampler(threading.Thread):
    """The peak VmRSS of a process since the last `take()`, sampled every 20 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.path, self.peak, self.stop = f"/proc/{pid}/status", 0, False

    def status(self, key: str) -> int:
        try:
            text = Path(self.path).read_text()
        except OSError:
            return 0
        m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
        return int(m.group(1)) * 1024 if m else 0

    def run(self):
        while not self.stop:
            self.peak = max(self.peak, self.status("VmRSS"))
            time.sleep(0.02)

    def take(self) -> int:
        peak, self.peak = self.peak, self.status("VmRSS")
        return peak
