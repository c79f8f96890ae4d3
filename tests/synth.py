"""Synthetic MNIST-format data for tests: real glyphs rendered small, jittered, in IDX files."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from digitrec.data.idx import write_idx

GLYPHS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def render(text: str, size: int = 20, dx: int = 0, dy: int = 0, stroke: int = 0) -> torch.Tensor:
    """One glyph, white on black, centred in 28x28 then shifted by (dx, dy): (28, 28) uint8."""
    font = ImageFont.load_default(size=size)
    im = Image.new("L", (28, 28))
    draw = ImageDraw.Draw(im)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font, stroke_width=stroke)
    x = (28 - (right - left)) // 2 - left + dx
    y = (28 - (bottom - top)) // 2 - top + dy
    draw.text((x, y), text, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    return torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).reshape(28, 28).clone()


def make_images(labels: torch.Tensor, glyphs: str = GLYPHS, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = torch.empty(len(labels), 28, 28, dtype=torch.uint8)
    jitter = torch.randint(-3, 4, (len(labels), 3), generator=g)
    for i, k in enumerate(labels.tolist()):
        dx, dy, s = jitter[i].tolist()
        img = render(glyphs[k], size=19 + s, dx=dx, dy=dy, stroke=int(s > 1)).float()
        noise = torch.rand(28, 28, generator=g) * 30
        out[i] = (img * 0.85 + noise).clamp(0, 255).to(torch.uint8)
    return out


def make_idx_folder(path: Path, n_train: int = 600, n_test: int = 200, num_classes: int = 10,
                    seed: int = 0, meta: dict | None = None) -> Path:
    """Write the four MNIST-named IDX files (and dataset.json) into `path`."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    for part, n, names in (("train", n_train, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")),
                           ("test", n_test, ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))):
        y = torch.randint(0, num_classes, (n,), generator=g)
        write_idx(path / names[0], make_images(y, seed=seed + (part == "test")))
        write_idx(path / names[1], y.to(torch.uint8))
    info = {"name": "synthetic", "classes": list(GLYPHS[:num_classes]), "mean": 0.13, "std": 0.3}
    info.update(meta or {})
    (path / "dataset.json").write_text(json.dumps(info))
    return path


# Digits as a pen draws them: strokes in a unit box (x right, y down), one list per stroke.
STROKES = {
    "0": [[(0.5, 0.0), (0.12, 0.2), (0.05, 0.55), (0.2, 0.9), (0.5, 1.0), (0.82, 0.85), (0.95, 0.45),
           (0.8, 0.1), (0.5, 0.0)]],
    "1": [[(0.35, 0.15), (0.6, 0.0), (0.6, 1.0)]],
    "2": [[(0.1, 0.25), (0.35, 0.02), (0.72, 0.05), (0.85, 0.3), (0.55, 0.62), (0.08, 1.0), (0.95, 0.98)]],
    "3": [[(0.1, 0.08), (0.7, 0.02), (0.85, 0.25), (0.4, 0.47), (0.88, 0.68), (0.75, 0.95), (0.1, 0.95)]],
    "4": [[(0.55, 0.0), (0.05, 0.68), (0.5, 0.68)], [(0.8, 0.3), (0.8, 1.0)]],  # two strokes, apart
    "5": [[(0.9, 0.0), (0.25, 0.0)],  # the bar, drawn apart
          [(0.22, 0.12), (0.15, 0.48), (0.6, 0.4), (0.9, 0.65), (0.72, 0.95), (0.1, 0.9)]],
    "6": [[(0.8, 0.02), (0.3, 0.3), (0.1, 0.7), (0.35, 1.0), (0.75, 0.9), (0.8, 0.6), (0.4, 0.5), (0.12, 0.7)]],
    "7": [[(0.05, 0.05), (0.95, 0.05), (0.4, 1.0)]],
    "8": [[(0.85, 0.15), (0.5, 0.0), (0.15, 0.18), (0.5, 0.48), (0.88, 0.75), (0.5, 1.0), (0.1, 0.75),
           (0.5, 0.48), (0.85, 0.15)]],
    "9": [[(0.88, 0.3), (0.5, 0.5), (0.12, 0.3), (0.45, 0.02), (0.85, 0.15), (0.85, 0.55), (0.75, 1.0)]],
}


def draw_text(lines: list[str], height: int = 120, gap: float = 0.45, pen: float = 0.11,
              width: float = 0.62, margin: int = 60) -> "Image.Image":
    """Dark strokes on white: each string a line of digits drawn with STROKES, `gap` (in units of a
    digit's width) between neighbours (negative: overlapping), lines one and a half heights apart."""
    from PIL import Image, ImageDraw

    w = int(width * height)
    longest = max(len(t) for t in lines)
    size = (2 * margin + longest * w + max(longest - 1, 0) * int(gap * w), 2 * margin + height * (3 * len(lines) - 1) // 2)
    im = Image.new("L", size, 255)
    d = ImageDraw.Draw(im)
    for row, text in enumerate(lines):
        y0 = margin + row * height * 3 // 2
        for k, ch in enumerate(text):
            x0 = margin + k * (w + int(gap * w))
            for stroke in STROKES[ch]:
                d.line([(x0 + x * w, y0 + y * height) for x, y in stroke], fill=20, width=int(pen * height),
                       joint="curve")
    return im


# Images that would cost a reader far more than one number does (issue 23, item 5): tests expect
# them refused fast, benchmarks/attacks.py measures what they cost a server.


def _png(im: "Image.Image") -> bytes:
    import io

    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def many_strokes_png(size: int = 2000, per_side: int = 40, seed: int = 0) -> bytes:
    """A size x size PNG holding per_side^2 short dark strokes on white (1,600 by default)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    im = Image.new("L", (size, size), 255)
    d = ImageDraw.Draw(im)
    step = size / per_side
    for i in range(per_side):
        for j in range(per_side):
            x, y = (j + 0.3) * step, (i + 0.3) * step
            d.line([(x, y), (x + rng.uniform(-0.3, 0.3) * step, y + 0.4 * step)], fill=0, width=4)
    return _png(im)


def random_dots_png(size: int = 1500, density: float = 0.02, seed: int = 0) -> bytes:
    """A size x size PNG where each pixel is a black dot with probability `density` (~115 KB)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return _png(Image.fromarray(np.where(rng.random((size, size)) < density, 0, 255).astype(np.uint8)))


def many_lines_png(rows: int = 150, per_row: int = 60, size: int = 2000, seed: int = 0) -> bytes:
    """A size x size PNG of `rows` lines of `per_row` short slanted strokes each."""
    import numpy as np

    rng = np.random.default_rng(seed)
    im = Image.new("L", (size, size), 255)
    d = ImageDraw.Draw(im)
    h = size / rows
    for r in range(rows):
        for c in range(per_row):
            x, y = c * size / per_row + 3, r * h + 2
            d.line([(x, y), (x + rng.uniform(2, 0.6 * size / per_row), y + 0.6 * h)], fill=0, width=2)
    return _png(im)


def touching_scribbles_png(lines: int, per_line: int, width: float, gap: float, height: int, size: int = 2000,
                           pen: int = 6, seed: int = 0) -> bytes:
    """`lines` lines of `per_line` wavy strokes, each `width` times `height` px wide and `gap`
    heights apart: pieces wide enough to be cut and close enough to be joined, the most
    candidate characters per piece a reader scores."""
    import numpy as np

    rng = np.random.default_rng(seed)
    im = Image.new("L", (size, size), 255)
    d = ImageDraw.Draw(im)
    for r in range(lines):
        y0, x = 20 + r * size / lines, 20.0
        for _ in range(per_line):
            xs = np.linspace(x, x + width * height, 12)
            ys = y0 + height * (0.5 + 0.5 * np.sin(np.linspace(0, 3 * np.pi, 12) + rng.uniform(0, 6)))
            d.line(list(zip(xs, ys)), fill=0, width=pen, joint="curve")
            x += (width + gap) * height
    return _png(im)
