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
