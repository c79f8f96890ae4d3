"""Damage done by scanners, cameras and handling: low resolution, blur, light and shadow,
scan borders, a turned sheet, a dark table, dust."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .canvas import Box, Canvas, blur, resize, union_box
from .paper import dark_pen, noise, on_paper, paper, ramp, shadow, to_image, write
from .strokes import draw_strokes


def low_resolution(n: int):
    """Scanned so that the glyph field is `n` px tall, 17 gray levels, then enlarged back with a
    smooth (bilinear, bicubic) or blocky (nearest) filter: soft gray strokes."""
    filters = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.NEAREST)

    def paint(canvas: Canvas, rng: np.random.Generator):
        h, w = canvas.shape
        k = n / min(h, w)
        small = np.round(resize(canvas.ink, max(1, round(w * k)), max(1, round(h * k))) * 16) / 16
        how = filters[rng.choice(3, p=[0.4, 0.4, 0.2])]
        big = np.clip(np.asarray(Image.fromarray(small, "F").resize((w, h), how), np.float32), 0, 1)
        light, dark = rng.uniform(0.85, 1.0), rng.uniform(0.0, 0.35)
        gray = light + (dark - light) * big
        if rng.random() < 0.2:  # stored as light strokes on a dark ground, as some datasets are
            gray = 1 - gray
        return to_image(gray), canvas.boxes

    return paint


def soft_gray(canvas: Canvas, rng: np.random.Generator):
    """Out-of-focus or heavily smoothed: blurred gray strokes on gray paper."""
    h, w = canvas.shape
    ink = blur(canvas.ink, rng.uniform(0.02, 0.045) * max(h, w))
    ink = ink / max(float(ink.max()), 1e-6)  # a scanner's gain keeps the darkest stroke dark
    level = rng.uniform(0.8, 0.95)
    sheet = paper(h, w, rng, (level, level, level), 0.008)
    return to_image(write(sheet, ink, np.full(3, 1 - rng.uniform(0.35, 0.6)))), canvas.boxes


def phone_photo(canvas: Canvas, rng: np.random.Generator):
    """Paper photographed under a lamp: light falling off across the sheet, a soft shadow, a
    colour cast and sensor noise."""
    h, w = canvas.shape
    sheet = on_paper(canvas, rng, grain=0.006)
    light = (1 - rng.uniform(0.3, 0.55) * ramp(h, w, rng)) * shadow(h, w, rng, rng.uniform(0.25, 0.5),
                                                                   rng.uniform(0.01, 0.08))
    sheet = sheet * (light[..., None] * (1 + noise(rng, 3, 0.04))) + noise(rng, (h, w, 1), 0.012)
    return to_image(sheet), canvas.boxes


def scan_border(canvas: Canvas, rng: np.random.Generator):
    """A scanner's dark margin beyond the sheet on one to three sides (never over the writing),
    its inner edge a little askew, the paper shaded next to it."""
    h, w = canvas.shape
    sheet = on_paper(canvas, rng)
    left, top, right, bottom = union_box(canvas.boxes, h, w)
    room = {"left": left / w, "top": top / h, "right": (w - right) / w, "bottom": (h - bottom) / h}
    sides = [s for s, r in room.items() if r >= 0.04] or [max(room, key=room.get)]
    chosen = rng.choice(sides, size=int(rng.integers(1, min(3, len(sides)) + 1)), replace=False)
    y, x = (a.astype(np.float32) for a in np.ogrid[0:h, 0:w])
    depth = {"left": x / w, "right": (w - 1 - x) / w, "top": y / h, "bottom": (h - 1 - y) / h}
    along = {"left": y / h, "right": y / h, "top": x / w, "bottom": x / w}
    for side in chosen:
        width = rng.uniform(0.02, max(0.021, min(0.12, room[side] - 0.01)))
        edge = width + rng.uniform(-0.01, 0.01) * (along[side] - 0.5)  # askew
        scale = w if side in ("left", "right") else h
        band = np.clip((edge - depth[side]) * scale + 0.5, 0, 1)[..., None]  # anti-aliased edge
        shade = 1 - 0.25 * np.exp(-np.maximum(depth[side] - edge, 0) * scale / (0.02 * scale + 1))[..., None]
        dark = rng.uniform(0.0, 0.2) + noise(rng, (h, w, 1), 0.02)
        sheet = (sheet * shade) * (1 - band) + dark * band
    return to_image(sheet), canvas.boxes


def _rotate_boxes(boxes: list[Box], angle: float, centre: tuple[float, float], new_centre: tuple[float, float],
                  dx: float = 0.0, dy: float = 0.0) -> list[Box]:
    """Boxes after a rotation by `angle` degrees (counter-clockwise, as Pillow's) about `centre`,
    moved so that `centre` lands on `new_centre` + (dx, dy): the rotated corners' boxes."""
    t = np.radians(angle)
    c, s = np.cos(t), np.sin(t)
    out = []
    for left, top, right, bottom in boxes:
        xs = np.array([left, right, right, left], np.float64) - centre[0]
        ys = np.array([top, top, bottom, bottom], np.float64) - centre[1]
        rx, ry = c * xs + s * ys + new_centre[0] + dx, -s * xs + c * ys + new_centre[1] + dy
        out.append((int(np.floor(rx.min())), int(np.floor(ry.min())), int(np.ceil(rx.max())), int(np.ceil(ry.max()))))
    return out


def _rotate(a: np.ndarray, angle: float) -> np.ndarray:
    """A float (H, W) or (H, W, C) array rotated by `angle` degrees, the canvas grown to hold it all."""
    if a.ndim == 3:
        return np.stack([_rotate(a[..., i], angle) for i in range(a.shape[2])], -1)
    return np.asarray(Image.fromarray(a.astype(np.float32), "F").rotate(
        angle, Image.Resampling.BICUBIC, expand=True), np.float32)


def rotated(canvas: Canvas, rng: np.random.Generator):
    """The paper turned a little: the writing rotated by 4-12 degrees either way."""
    h, w = canvas.shape
    angle = rng.choice([-1, 1]) * rng.uniform(4, 12)
    ink = np.clip(_rotate(canvas.ink, angle), 0, 1)
    boxes = _rotate_boxes(canvas.boxes, angle, (w / 2, h / 2), (ink.shape[1] / 2, ink.shape[0] / 2))
    return to_image(on_paper(Canvas(ink, boxes), rng)), boxes


def dark_table(canvas: Canvas, rng: np.random.Generator):
    """The sheet photographed lying on a dark table, turned a few degrees, the table all round it."""
    h, w = canvas.shape
    angle = rng.uniform(-6, 6)
    sheet = _rotate(on_paper(canvas, rng, grain=0.006), angle)
    cover = np.clip(_rotate(np.ones((h, w), np.float32), angle), 0, 1)[..., None]
    rh, rw = cover.shape[:2]
    th, tw = int(rh * rng.uniform(1.15, 1.6)), int(rw * rng.uniform(1.15, 1.6))
    y0, x0 = int(rng.integers(0, th - rh + 1)), int(rng.integers(0, tw - rw + 1))
    wood = np.asarray(Image.fromarray(noise(rng, (th // 2 + 1, tw // 8 + 1)), "F").resize(
        (tw, th), Image.Resampling.BILINEAR), np.float32)
    table = (rng.uniform(0.08, 0.3) * np.array([1.0, rng.uniform(0.75, 1.0), rng.uniform(0.55, 1.0)])
             * (1 + 0.15 * wood[..., None]))
    table[y0 : y0 + rh, x0 : x0 + rw] = table[y0 : y0 + rh, x0 : x0 + rw] * (1 - cover) + sheet * cover
    table *= (1 - rng.uniform(0.1, 0.35) * ramp(th, tw, rng))[..., None]
    table += noise(rng, (th, tw, 1), 0.012)
    boxes = _rotate_boxes(canvas.boxes, angle, (w / 2, h / 2), (rw / 2, rh / 2), x0, y0)
    return to_image(table), boxes


def speckle(canvas: Canvas, rng: np.random.Generator):
    """A dusty scan: dark specks, salt-and-pepper pixels and grain all over."""
    h, w = canvas.shape
    sheet = on_paper(canvas, rng)
    n = int(rng.integers(20, 120))
    dots = [np.array([[x, y], [x, y]]) for x, y in zip(rng.uniform(0, w, n), rng.uniform(0, h, n))]
    specks = draw_strokes(dots[: n // 2], w, h, 1.5) + draw_strokes(dots[n // 2 :], w, h, rng.uniform(2, 4))
    sheet = write(sheet, np.clip(specks, 0, 1), dark_pen(rng))
    p = rng.uniform(0.002, 0.02)
    u = rng.uniform(0, 1, (h, w))
    sheet[u < p / 2] = rng.uniform(0.0, 0.2)  # pepper
    sheet[u > 1 - p / 2] = 1.0  # salt
    return to_image(sheet + noise(rng, (h, w, 1), rng.uniform(0.01, 0.04))), canvas.boxes
