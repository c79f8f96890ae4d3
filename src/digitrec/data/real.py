"""Real handwriting beyond MNIST (USPS, Semeion) as a user's image would be: loaded, split by
writers, rendered onto paper and passed through the same preprocessing as any user image.

Both sets are 16x16, size-normalised and stretched to fill the box, so they are never fed to
a model as they are: each digit is drawn as dark ink on light paper at 40 to 80 px tall with
margins (anti-aliased upscaling; Semeion's binary pixels smoothed first), and the page goes
through `digitrec.inference.preprocess.preprocess()` (or, for comparison, the textbook
preparation) to become the 28x28 model input. Prepared inputs are cached in the data folder,
keyed by the code that made them.

Splits (held-out WRITERS, never random rows):
    usps     train  zip.train's first 6,000 records      val   its last 1,291 records
             test   zip.test (2,007)
             zip.train is not shuffled at random: runs of records come from one envelope (one
             writer), so a contiguous tail shares at most the writer at its edge with the rest.
    semeion  train  writer blocks 1, 2, 4, 5               val   writer blocks 3 and 6
             all    the 1,593 records
             The file runs through the digits 0..9 six times: six blocks of writers, each holding
             all its writers' 0s (two each), then their 1s, and so on; four blocks of about ten
             writers (~200 records) and two of about twenty (~400). A block starts wherever the
             label drops; every third block is held out (597 records, about 30 writers).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, UserError
from ..util import atomic_write
from .fetch import default_data_dir, fetch_real
from .registry import RealSet, get_real
from .textsets import PARSERS

SPLITS = {"usps": ("train", "val", "test"), "semeion": ("train", "val", "all")}
USPS_TRAIN = 6000  # zip.train's first records; the rest (1,291) are validation
SEMEION_BLOCKS, SEMEION_EVERY = 6, 3  # blocks of writers in the file; every third (3 and 6) is validation
HOWS = ("preprocess", "textbook")  # how a rendered page becomes the 28x28 input

# The paper page a digit is drawn on (values in [0, 1] of full scale).
CANVAS = 128  # px a side
HEIGHTS = (40, 80)  # the digit's box, px, drawn uniformly per digit (seeded)
PAPER, INK = 0.92, 0.12  # light paper, dark ink
NOISE = 0.01  # paper grain, standard deviation
RENDER_VERSION = 1  # bump when the rendering changes (the prepared cache is keyed by it)


@dataclass(frozen=True)
class RealDigits:
    name: str  # "usps" | "semeion"
    split: str
    images: torch.Tensor  # (N, 16, 16) uint8, ink bright on black; (N, 28, 28) once prepared
    labels: torch.Tensor  # (N,) int64
    indices: torch.Tensor  # (N,) int64: each record's line in its published file, from 0


# ----------------------------------------------------------------------------- loading and splits


def _read(spec: RealSet, part: str, data_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
    folder = fetch_real(spec, data_dir)
    rf = spec.files[part]
    return PARSERS[spec.format]((folder / rf.name).read_bytes(), rf.name)


def writer_blocks(labels: np.ndarray) -> np.ndarray:
    """Semeion's block of writers for each record, 0..5, from the file's order (a block starts where
    the label drops); a DataError when the order is not the published one (a shuffled copy)."""
    block = np.concatenate([[0], np.cumsum(np.diff(labels) < 0)]).astype(np.int64)
    full = [len(np.unique(labels[block == b])) == 10 for b in range(int(block.max()) + 1)]
    if block.max() + 1 != SEMEION_BLOCKS or not all(full):
        raise DataError(f"semeion.data's records are not in the published order ({int(block.max()) + 1} runs "
                        f"through the digits, expected {SEMEION_BLOCKS}): its writers cannot be told apart; "
                        "use the file as published")
    return block


def _check_split(name: str, split: str) -> None:
    if split not in SPLITS[name]:
        raise UserError(f"{name} has no split {split!r}: choose one of {', '.join(SPLITS[name])}")


def split_rows(name: str, split: str, labels: np.ndarray) -> np.ndarray:
    """The rows of `split` among a set's records (zip.train's for USPS train/val, zip.test's for test)."""
    _check_split(name, split)
    n = len(labels)
    if name == "usps":
        return np.arange(n) if split == "test" else np.arange(USPS_TRAIN) if split == "train" else np.arange(USPS_TRAIN, n)
    if split == "all":
        return np.arange(n)
    held = writer_blocks(labels) % SEMEION_EVERY == SEMEION_EVERY - 1  # blocks 3 and 6 (2 and 5 from 0)
    return np.nonzero(held if split == "val" else ~held)[0]


def load_real(name: str, split: str, data_dir: Path | str | None = None) -> RealDigits:
    """A real set's split as 16x16 tensors, fetched and checked first."""
    spec = get_real(name)
    _check_split(spec.name, split)
    part = "all" if name == "semeion" else "test" if split == "test" else "train"
    images, labels = _read(spec, part, Path(data_dir) if data_dir else None)
    rows = split_rows(name, split, labels)
    return RealDigits(name, split, torch.from_numpy(images[rows].copy()), torch.from_numpy(labels[rows].copy()),
                      torch.from_numpy(rows.astype(np.int64)))


def load_usps(split: str = "test", data_dir: Path | str | None = None) -> RealDigits:
    return load_real("usps", split, data_dir)


def load_semeion(split: str = "val", data_dir: Path | str | None = None) -> RealDigits:
    return load_real("semeion", split, data_dir)


# ----------------------------------------------------------------------------- onto paper


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, 1, H, W) float, blurred by a separable Gaussian of `sigma` px (edges replicated)."""
    r = max(1, int(np.ceil(3 * sigma)))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float32) / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    x = torch.nn.functional.pad(x, (r, r, r, r), mode="replicate")
    x = torch.nn.functional.conv2d(x, k.view(1, 1, 1, -1))
    return torch.nn.functional.conv2d(x, k.view(1, 1, -1, 1))


def _upscale(ink: torch.Tensor, size: int, binary: bool) -> torch.Tensor:
    """(N, 1, 16, 16) ink in [0, 1] -> (N, 1, size, size), anti-aliased. Binary pixels are smoothed
    into strokes with round, soft edges: bilinear, a blur of half a source pixel, then a soft
    threshold at half ink."""
    if not binary:
        return torch.nn.functional.interpolate(ink, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    up = torch.nn.functional.interpolate(ink, size=(size, size), mode="bilinear", align_corners=False)
    up = _gaussian_blur(up, size / 16 / 2)
    return ((up - 0.5) / 0.3 + 0.5).clamp(0, 1)


def render_paper(images: torch.Tensor, binary: bool = False, seed: int = 0) -> torch.Tensor:
    """(N, 16, 16) uint8 ink-bright digits -> (N, CANVAS, CANVAS) uint8 pages: dark ink on light paper,
    each digit HEIGHTS px tall (drawn per digit), placed anywhere leaving a margin, with paper grain.
    The same images and seed always give the same pages."""
    n = len(images)
    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(HEIGHTS[0], HEIGHTS[1] + 1, (n,), generator=g)
    slack = CANVAS - sizes
    margin = (slack // 4).clamp(min=1)  # at least a quarter of the room on every side
    top = margin + (torch.rand(n, generator=g) * (slack - 2 * margin + 1)).long()
    left = margin + (torch.rand(n, generator=g) * (slack - 2 * margin + 1)).long()
    ink = torch.zeros(n, CANVAS, CANVAS)
    src = images.float().div(255).unsqueeze(1)  # (N, 1, 16, 16)
    for s in sizes.unique().tolist():
        idx = torch.nonzero(sizes == s).flatten()
        up = _upscale(src[idx], s, binary)[:, 0]  # (k, s, s)
        rows = top[idx, None] + torch.arange(s)  # (k, s)
        cols = left[idx, None] + torch.arange(s)
        ink[idx[:, None, None], rows[:, :, None], cols[:, None, :]] = up
    page = PAPER - ink * (PAPER - INK) + NOISE * torch.randn(n, CANVAS, CANVAS, generator=g)
    return page.clamp(0, 1).mul(255).round().to(torch.uint8)


# ----------------------------------------------------------------------------- the model's inputs


def _prepare_pages(pages: torch.Tensor, how: str) -> np.ndarray:
    """(N, H, W) uint8 pages -> (N, 28, 28) uint8, each page read as a user's image is."""
    from PIL import Image

    if how == "preprocess":
        from ..inference.preprocess import preprocess

        def one(page):
            return preprocess(Image.fromarray(page, "L")).image
    else:
        from ..inference.textbook import textbook as one_image

        def one(page):
            return one_image(Image.fromarray(page, "L"))
    arr = pages.numpy()
    return np.stack([one(arr[i]) for i in range(len(arr))]) if len(arr) else np.zeros((0, 28, 28), np.uint8)


def code_key(spec: RealSet) -> str:
    """What the prepared inputs depend on: this module's rendering, the preprocessing code, the
    records' published sums. 12 hex digits."""
    from .. import ink, marks
    from ..inference import decode, pixels, preprocess, textbook

    h = hashlib.sha256(f"{RENDER_VERSION} {CANVAS} {HEIGHTS} {PAPER} {INK} {NOISE}".encode())
    for mod in (decode, pixels, preprocess, textbook, ink, marks):
        h.update(Path(mod.__file__).read_bytes())
    h.update(Path(__file__).read_bytes())
    for rf in spec.files.values():
        h.update(rf.content_sha256.encode())
    return h.hexdigest()[:12]


def prepared(name: str, split: str, how: str = "preprocess", data_dir: Path | str | None = None,
             seed: int = 0) -> RealDigits:
    """A split's digits as 28x28 model inputs (N, 28, 28) uint8: rendered onto paper, then read by
    `preprocess()` (how="preprocess") or the textbook preparation. Cached in
    <data dir>/<name>/prepared/, keyed by the code version; the cache is written atomically."""
    if how not in HOWS:
        raise UserError(f"unknown preparation {how!r}: choose one of {', '.join(HOWS)}")
    digits = load_real(name, split, data_dir)
    spec = get_real(name)
    folder = Path(data_dir or default_data_dir()) / spec.name / "prepared"
    path = folder / f"{split}-{how}-s{seed}-{code_key(spec)}.pt"
    if path.is_file():
        try:
            cached = torch.load(path, weights_only=True)
            if torch.equal(cached["indices"], digits.indices) and cached["images"].shape == (len(digits.labels), 28, 28):
                return RealDigits(name, split, cached["images"], digits.labels, digits.indices)
        except Exception:  # noqa: BLE001  a damaged cache is made again
            pass
    x = np.concatenate([_prepare_pages(render_paper(digits.images[i : i + 256], spec.format == "semeion",
                                                    seed + i), how)
                        for i in range(0, len(digits.labels), 256)] or [np.zeros((0, 28, 28), np.uint8)])
    images = torch.from_numpy(x)
    atomic_write(path, lambda tmp: torch.save({"images": images, "indices": digits.indices}, tmp))
    for old in folder.glob(f"{split}-{how}-s{seed}-*.pt"):  # caches of older code
        if old != path:
            old.unlink(missing_ok=True)
    return RealDigits(name, split, images, digits.labels, digits.indices)
