"""A character's mark in the ink map, and its shaping into the model's 28x28 input (numpy and
scipy only, torch-free).

    choose_mark  the one handwritten mark in a crop that holds more (a form's frame, rules,
                 captions, a neighbour's word, a full stop, a tick)
    ink_box      the box of the ink's solid part, specks wiped
    thicken/fit  a character's ink -> the 28x28 MNIST-like field (20 px box, centre of mass)
    dilate       strokes made fatter; box_stroke: the stroke width inside a box
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .ink import BOX, EDGE, PREPARATION, SIZE, Preparation, stroke_width

EIGHT = np.ones((3, 3), bool)  # 8-connected: pixels touching at a corner are one blob


def _unframe(ink: np.ndarray, labels: np.ndarray, boxes, p: Preparation) -> np.ndarray:
    """Ink with closed frames (a form's printed box) wiped along their four sides: a blob at
    least a third of the image both ways with ink along frame_side of each side, within
    frame_band of its size; whatever stands inside it (the digit, even touching it) stays."""
    h, w = ink.shape
    out = ink
    for i, (rows, cols) in enumerate(boxes, 1):
        bh, bw = rows.stop - rows.start, cols.stop - cols.start
        if bh < h / 3 or bw < w / 3:
            continue
        part = labels[rows, cols] == i
        t = max(2, int(round(p.frame_band * min(bh, bw))))
        sides = (part[:t].any(0), part[-t:].any(0), part[:, :t].any(1), part[:, -t:].any(1))
        if min(side.mean() for side in sides) < p.frame_side:
            continue
        band = np.zeros_like(part)
        band[:t], band[-t:], band[:, :t], band[:, -t:] = True, True, True, True
        out = out.copy() if out is ink else out
        out[rows, cols][part & band] = 0.0  # a view: wipes the frame's sides in `out`
    return out


def _blobs(ink: np.ndarray, first: np.ndarray, p: Preparation) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(labels, boxes (n, 4) as left top right bottom, mass (n,), rule (n,)) of the ink at its EDGE
    (`first`: its 8-connected labels): each straight rule or underline (rule_aspect times wider
    than tall, a quarter of the image wide) a blob of its own; the rest grouped where closer than
    mark_join of the image (the pieces of a blurred or broken scan are one blob)."""
    from scipy import ndimage

    box = np.array([(c.start, r.start, c.stop, r.stop) for r, c in ndimage.find_objects(first)], np.int64)
    rules = ((box[:, 2] - box[:, 0]) >= p.rule_aspect * (box[:, 3] - box[:, 1])) & \
        ((box[:, 2] - box[:, 0]) >= 0.25 * ink.shape[1])
    on_rule = np.concatenate([[False], rules])[first]
    rest = (first > 0) & ~on_rule
    reach = int(round(p.mark_join * min(ink.shape)))
    # within `reach` steps of the rest (the L1 distance: `reach` 4-connected dilations, in one pass)
    near = ndimage.distance_transform_cdt(~rest, metric="taxicab") <= reach if reach and rest.any() else rest
    grouped, m = ndimage.label(near, structure=EIGHT)
    labels = np.where(rest, grouped, 0)
    labels[on_rule] = m + np.cumsum(rules)[first[on_rule] - 1]
    total = m + int(rules.sum())
    boxes = np.array([(c.start, r.start, c.stop, r.stop) for r, c in ndimage.find_objects(labels)], np.float64)
    mass = ndimage.sum_labels(ink, labels, np.arange(1, total + 1))
    return labels, boxes, mass, np.arange(total) >= m


def choose_mark(ink: np.ndarray, p: Preparation = PREPARATION) -> np.ndarray:
    """The one handwritten mark in a crop that holds other things too (a register's cell, a
    form's box): frames wiped (_unframe), straight rules and underlines left out (_blobs), then
    the heaviest blob and the blobs that belong with it (overlapping its box grown by mark_margin
    of its height; at least mark_tall of its height beside it within mark_gap; or mark_heavy of its
    ink within mark_gap), grown until no more join. Captions, neighbours' words, full stops and
    ticks further off are left out. Returns the ink holding only that mark (a copy where anything
    was left out)."""
    from scipy import ndimage

    labels, n = ndimage.label(ink >= EDGE, structure=EIGHT)
    if n < 1:
        return ink
    unframed = _unframe(ink, labels, ndimage.find_objects(labels), p)
    if unframed is not ink:  # a frame's sides were wiped: what is left is labelled again
        ink = unframed
        labels, n = ndimage.label(ink >= EDGE, structure=EIGHT)
    if n < 2:
        return ink
    labels, boxes, mass, rule = _blobs(ink, labels, p)
    if len(mass) < 2 or rule.all():
        return ink
    bh = boxes[:, 3] - boxes[:, 1]
    keep = np.arange(len(mass)) == int(np.argmax(np.where(rule, -1.0, mass)))
    while True:
        l, t, r, b = boxes[keep, 0].min(), boxes[keep, 1].min(), boxes[keep, 2].max(), boxes[keep, 3].max()
        tall = b - t
        gap_x = np.maximum(boxes[:, 0] - r, l - boxes[:, 2])
        gap_y = np.maximum(boxes[:, 1] - b, t - boxes[:, 3])
        near = np.maximum(gap_x, gap_y) <= p.mark_margin * tall
        beside = (bh >= p.mark_tall * tall) & (gap_x <= p.mark_gap * tall) & (gap_y <= 0)
        heavy = (mass >= p.mark_heavy * mass[keep].max()) & (np.maximum(gap_x, gap_y) <= p.mark_gap * tall)
        grown = keep | ((near | beside | heavy) & ~rule)
        if (grown == keep).all():
            break
        keep = grown
    if keep.all():
        return ink
    near_mark = ndimage.binary_dilation(np.concatenate([[False], keep])[labels], iterations=3)  # its rims too
    return np.where(near_mark, ink, 0.0).astype(np.float32)


def ink_box(ink: np.ndarray, p: Preparation = PREPARATION) -> tuple[int, int, int, int] | None:
    """The (left, top, right, bottom) box of the ink's solid part, specks left out; None if none.
    Specks (blobs with less than p.speck of the largest blob's ink, or smaller than p.min_part of the
    image's shorter side) are also wiped from `ink`."""
    from scipy import ndimage

    mask = ink >= EDGE
    if not mask.any():
        return None
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    mass = ndimage.sum_labels(ink, labels, np.arange(1, n + 1))
    size = np.array([max(r.stop - r.start, c.stop - c.start) for r, c in ndimage.find_objects(labels)])
    keep = np.concatenate([[False], (mass >= p.speck * mass.max()) & (size >= p.min_part * min(ink.shape))])
    ink[(labels > 0) & ~keep[labels]] = 0.0
    mask = keep[labels]
    if not mask.any():
        return None
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def box_stroke(ink: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Typical stroke width in pixels of the solid ink (at its EDGE) inside `box`: stroke_width of
    that mask; only used to catch strokes several times thinner than MNIST's."""
    left, top, right, bottom = box
    return float(stroke_width(ink[top:bottom, left:right] >= EDGE))


def dilate(ink: np.ndarray, r: int) -> np.ndarray:
    """A (2r+1)-square max filter, one pixel at a time: strokes r px fatter on every side (a copy)."""
    sub = ink.copy()
    for _ in range(r):
        sub[1:] = np.maximum(sub[1:], sub[:-1])
        sub[:-1] = np.maximum(sub[:-1], sub[1:])
        sub[:, 1:] = np.maximum(sub[:, 1:], sub[:, :-1])
        sub[:, :-1] = np.maximum(sub[:, :-1], sub[:, 1:])
    return sub


def thicken(ink: np.ndarray, box: tuple[int, int, int, int], p: Preparation = PREPARATION) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Strokes much thinner than MNIST's (a fine pen on a big image) would fade to nothing when
    shrunk to 20 px: widen them (a max filter) to p.stroke output pixels. Returns the ink
    around the box, thickened or not, and the box in it."""
    left, top, right, bottom = box
    scale = BOX / max(right - left, bottom - top)
    width = box_stroke(ink, box)
    r = int(np.ceil((p.stroke / scale - width) / 2)) if width * scale < p.min_stroke else 0
    m = r + int(np.ceil(3 / scale)) + 2  # what fit() reads around the box
    y0, x0 = max(top - m, 0), max(left - m, 0)
    sub = dilate(ink[y0 : bottom + m, x0 : right + m], r)
    h, w = sub.shape
    return sub, (max(left - x0 - r, 0), max(top - y0 - r, 0), min(right - x0 + r, w), min(bottom - y0 + r, h))


def fit(ink: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Scale the ink so its box's longer side is 20 px, then centre its mass in 28x28: (28, 28) float."""
    left, top, right, bottom = box
    scale = BOX / max(right - left, bottom - top)
    # The patch keeps 2 output pixels around the box for the anti-aliased edge, and no ink
    # from further away (that is specks and smudges outside the digit).
    pw = min(SIZE, int(np.ceil((right - left) * scale)) + 4)
    ph = min(SIZE, int(np.ceil((bottom - top) * scale)) + 4)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    src = (cx - pw / 2 / scale, cy - ph / 2 / scale, cx + pw / 2 / scale, cy + ph / 2 / scale)
    # Pillow wants the source box inside the image: pad the crop with background.
    x0, y0 = int(np.floor(src[0])) - 1, int(np.floor(src[1])) - 1
    x1, y1 = int(np.ceil(src[2])) + 1, int(np.ceil(src[3])) + 1
    crop = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)
    sy0, sx0 = max(y0, 0), max(x0, 0)
    sy1, sx1 = min(y1, ink.shape[0]), min(x1, ink.shape[1])
    crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = ink[sy0:sy1, sx0:sx1]
    # Lanczos in Pillow widens its kernel when shrinking: anti-aliased both ways, and the
    # closest to MNIST of the filters tried (benchmarks/user_like.py).
    patch = Image.fromarray(crop, "F").resize(
        (pw, ph), Image.Resampling.LANCZOS,
        box=(src[0] - x0, src[1] - y0, src[2] - x0, src[3] - y0))
    patch = np.clip(np.asarray(patch, dtype=np.float32), 0.0, 1.0)
    field = np.zeros((2 * SIZE, 2 * SIZE), dtype=np.float32)  # room to shift in any direction
    oy, ox = (2 * SIZE - ph) // 2, (2 * SIZE - pw) // 2
    field[oy : oy + ph, ox : ox + pw] = patch
    total = float(field.sum())
    if total <= 0:
        return np.zeros((SIZE, SIZE), dtype=np.float32)
    idx = np.arange(2 * SIZE, dtype=np.float32)
    my = float(field.sum(1) @ idx) / total
    mx = float(field.sum(0) @ idx) / total
    y, x = int(round(my)) - SIZE // 2, int(round(mx)) - SIZE // 2
    return field[y : y + SIZE, x : x + SIZE]
