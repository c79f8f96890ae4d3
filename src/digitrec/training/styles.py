"""Continental handwriting styles drawn onto real training digits, as stroke-level edits.

MNIST's writers (US census staff and students) rarely write the shapes much of the world
writes, and a model trained on MNIST misreads them: the continental 1 with a long up-stroke
flag (read as 7 or 4), the closed-top 4 (read as 6 or 9), the 9 with a straight stem or a
curled tail (read as 3 or 8). `stylise` adds those strokes to a share of a batch's
training digits, keeping their labels:

    0  slashed 0        a diagonal slash through the oval
    1  continental 1    a long flag from the top of the stem down to the left, sometimes a foot
    4  closed 4         the top of the left stroke joined to the top of the stem, the crossbar
                        reaching right of the stem (so it stays a 4, not a 9)
    7  crossed 7        a short bar across the middle of the stem
    9  continental 9    the tail below the loop replaced by a straight stem from the loop's right
                        side, often ending in a hook to the left; or a hook added to the tail

Each digit's geometry (its stem's ends, its loop, its crossbar) is measured from its own
ink, vectorised over all digits of a class; the strokes are drawn as anti-aliased distance
fields as wide as the digit's own strokes (the measure of ink.stroke_width), on a field with
room around the digit, and the result is normalised the way MNIST was made: the ink's box
scaled so its longer side is 20 px, its centre of mass put at MNIST's (14, 14). Everything
is torch, batched, on the images' device; the random draws come from the generator passed in
(on the CPU), so a seed gives the same digits on any device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

STYLES = {0: "slashed 0", 1: "continental 1", 4: "closed 4", 7: "crossed 7", 9: "continental 9"}
PAD = 6  # room around the 28x28 digit for strokes that reach past its field
SIZE = 28 + 2 * PAD
BOX = 20.0  # MNIST: the ink's box is scaled so its longer side is 20 px...
CENTRE = 14.0  # ...and its centre of mass lands on pixel (14, 14), as measured on MNIST's training set
EDGE = 1.4  # px over which a drawn stroke's edge fades, as MNIST's anti-aliased edges do
SEGMENTS = 6  # strokes (straight segments) one edit may draw
FAR = -1e3  # where unused segments are put: no pixel is near them


# ----------------------------------------------------------------------------- measuring ink


def _grid(device) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates of the padded field: xs (1, 1, SIZE), ys (1, SIZE, 1)."""
    r = torch.arange(SIZE, dtype=torch.float32, device=device)
    return r.view(1, 1, SIZE), r.view(1, SIZE, 1)


def stroke_width(ink: torch.Tensor) -> torch.Tensor:
    """(n,) pen width in px of ink (n, H, W) in [0, 1]: ink.stroke_width's measure (twice the
    area over the outline) of the ink above half, raised by 15% as it reads low on slants."""
    m = F.pad(ink >= 0.5, (1, 1, 1, 1))
    core = m[:, 1:-1, 1:-1]
    inner = core & m[:, :-2, 1:-1] & m[:, 2:, 1:-1] & m[:, 1:-1, :-2] & m[:, 1:-1, 2:]
    area = core.sum((1, 2)).float()
    outline = area - inner.sum((1, 2)).float()
    return (1.15 * 2 * area / outline.clamp(min=1)).clamp(1.5, 4.5)


def _masked(values: torch.Tensor, mask: torch.Tensor, pick: str) -> torch.Tensor:
    """Per image, the min or max of `values` (broadcast to mask (n, H, W)) over the masked pixels;
    NaN where the mask is empty."""
    values = values.expand_as(mask)
    big = torch.full_like(values, math.inf if pick == "min" else -math.inf)
    out = torch.where(mask, values, big).flatten(1)
    out = out.amin(1) if pick == "min" else out.amax(1)
    return torch.where(torch.isfinite(out), out, torch.full_like(out, math.nan))


def _mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per image, the weighted mean of `values` (broadcast to weight (n, H, W)); NaN with no weight."""
    total = weight.sum((1, 2))
    out = (values * weight).sum((1, 2)) / total.clamp(min=1e-6)
    return torch.where(total > 1e-6, out, torch.full_like(out, math.nan))


def _box(ink: torch.Tensor, level: float = 0.3) -> tuple[torch.Tensor, ...]:
    """Per image, the box of the ink above `level`: left, top, right, bottom (pixel centres), as floats."""
    xs, ys = _grid(ink.device)
    m = ink > level
    return _masked(xs, m, "min"), _masked(ys, m, "min"), _masked(xs, m, "max"), _masked(ys, m, "max")


def _holes(ink: torch.Tensor, level: float = 0.35) -> torch.Tensor:
    """(n, H, W) bool: background that cannot reach the border (4-connected) — a loop's inside."""
    paper = ink < level
    reach = torch.zeros_like(paper)
    reach[:, 0, :] = reach[:, -1, :] = reach[:, :, 0] = reach[:, :, -1] = True
    reach &= paper
    for _ in range(4 * SIZE):
        grown = reach.clone()
        grown[:, 1:, :] |= reach[:, :-1, :]
        grown[:, :-1, :] |= reach[:, 1:, :]
        grown[:, :, 1:] |= reach[:, :, :-1]
        grown[:, :, :-1] |= reach[:, :, 1:]
        grown &= paper
        if torch.equal(grown, reach):
            break
        reach = grown
    return paper & ~reach


# ----------------------------------------------------------------------------- drawing and normalising


def draw(segments: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """Straight strokes with round ends, anti-aliased: segments (n, K, 4) as x0, y0, x1, y1 in
    pixel centres of the padded field (NaN: none), width (n,) -> (n, SIZE, SIZE) ink in [0, 1]."""
    xs, ys = _grid(segments.device)
    seg = torch.nan_to_num(segments, nan=FAR)[..., None, None]  # (n, K, 4, 1, 1)
    d2 = torch.full((len(segments), SIZE, SIZE), math.inf, device=segments.device)
    for k in range(segments.shape[1]):  # a few strokes; each one over the whole batch
        if bool(segments[:, k].isnan().all()):
            continue
        ax, ay, bx, by = seg[:, k].unbind(1)
        abx, aby = bx - ax, by - ay
        t = (((xs - ax) * abx + (ys - ay) * aby) / (abx * abx + aby * aby).clamp(min=1e-6)).clamp(0, 1)
        d2 = torch.minimum(d2, (xs - ax - t * abx) ** 2 + (ys - ay - t * aby) ** 2)
    return (0.5 + (width[:, None, None] / 2 - d2.sqrt()) / EDGE).clamp(0, 1)


def normalise(ink: torch.Tensor) -> torch.Tensor:
    """Ink (n, SIZE, SIZE) in [0, 1] -> (n, 28, 28) in [0, 1] the MNIST way: the box of its ink
    scaled so the longer side is 20 px, its centre of mass at (14, 14)."""
    xs, ys = _grid(ink.device)
    left, top, right, bottom = _box(ink, 0.1)
    side = torch.maximum(right - left, bottom - top).nan_to_num(BOX - 1) + 1
    scale = BOX / side  # output px per input px
    mass = ink.sum((1, 2)).clamp(min=1e-6)
    cx, cy = (ink * xs).sum((1, 2)) / mass, (ink * ys).sum((1, 2)) / mass
    out = torch.arange(28, dtype=torch.float32, device=ink.device)
    gx = cx[:, None] + (out[None] - CENTRE) / scale[:, None]  # (n, 28): input x of each output column
    gy = cy[:, None] + (out[None] - CENTRE) / scale[:, None]
    grid = torch.stack([gx[:, None, :].expand(-1, 28, 28), gy[:, :, None].expand(-1, 28, 28)], -1)
    grid = (grid + 0.5) * 2 / SIZE - 1  # pixel centres -> grid_sample's [-1, 1] (align_corners=False)
    shrink = (scale < 0.6)[:, None, None, None]
    src = ink[:, None]
    soft = F.avg_pool2d(src, 3, 1, 1) * 0.5 + src * 0.5  # a little blur before shrinking hard
    src = torch.where(shrink, soft, src)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]
    return (out / out.amax((1, 2), keepdim=True).clamp(min=1e-6)).clamp(0, 1)  # MNIST's darkest ink is 255


# ----------------------------------------------------------------------------- each style's geometry
# Each takes the class's ink (n, SIZE, SIZE), pen widths (n,) and uniform draws u (n, 16) in [0, 1),
# and returns the strokes to add (n, SEGMENTS, 4) and the ink to keep (n, SIZE, SIZE) or None (all).


def _between(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * u


def _strokes(*polylines_or_segments: torch.Tensor) -> torch.Tensor:
    """Segments (n, k, 4) from any mix of segments (n, 4) and polylines (n, m, 2), padded to SEGMENTS."""
    parts = []
    for s in polylines_or_segments:
        parts.append(s[:, None] if s.dim() == 2 else torch.cat([s[:, :-1], s[:, 1:]], -1))
    seg = torch.cat(parts, 1)
    return F.pad(seg, (0, 0, 0, SEGMENTS - seg.shape[1]), value=math.nan)


def _stem(ink: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A stroke's principal axis: (top (n, 2), bottom (n, 2), unit direction down (n, 2)), the ends
    being where the ink above half reaches along the axis."""
    xs, ys = _grid(ink.device)
    mass = ink.sum((1, 2)).clamp(min=1e-6)
    cx, cy = (ink * xs).sum((1, 2)) / mass, (ink * ys).sum((1, 2)) / mass
    dx, dy = xs - cx[:, None, None], ys - cy[:, None, None]
    sxx, syy, sxy = (ink * dx * dx).sum((1, 2)), (ink * dy * dy).sum((1, 2)), (ink * dx * dy).sum((1, 2))
    angle = 0.5 * torch.atan2(2 * sxy, sxx - syy)
    u = torch.stack([torch.cos(angle), torch.sin(angle)], -1)
    u = torch.where(u[:, 1:] < 0, -u, u)  # pointing down the page
    t = dx * u[:, 0, None, None] + dy * u[:, 1, None, None]
    m = ink >= 0.5
    c = torch.stack([cx, cy], -1)
    return c + _masked(t, m, "min")[:, None] * u, c + _masked(t, m, "max")[:, None] * u, u


def _one(ink, w, u):
    top, bottom, down = _stem(ink)
    top, bottom = top + down * (w[:, None] / 2), bottom - down * (w[:, None] / 2)
    length = (bottom - top).norm(dim=-1, keepdim=True)
    # the flag falls 20-50 degrees below the horizontal, to the left, and at least 25 degrees off the
    # stem (a leaning stem with a flat flag is a 7)
    stem_angle = torch.rad2deg(torch.atan2(down[:, 1], -down[:, 0]))  # the stem's fall below the leftward horizontal
    theta = torch.deg2rad(torch.minimum(_between(u[:, 0], 20, 50), stem_angle - 25))[:, None]
    way = torch.cat([-torch.cos(theta), torch.sin(theta)], -1)
    reach = torch.minimum(_between(u[:, 1:2], 0.3, 0.6), 0.35 / torch.cos(theta))  # wide flags read as 7
    flag = top + reach * length * way
    bend = (top + flag) / 2 + _between(u[:, 2:3], -0.03, 0.06) * length * torch.stack([-way[:, 1], way[:, 0]], -1)
    flag_line = torch.stack([top, bend, flag], 1)
    half = _between(u[:, 3:4], 0.12, 0.22) * length
    foot = torch.cat([bottom - half * torch.tensor([1.0, 0.0], device=ink.device),
                      bottom + half * torch.tensor([1.0, 0.0], device=ink.device)], -1)
    foot = torch.where(u[:, 4:5] < 0.25, foot, torch.full_like(foot, math.nan))
    return _strokes(flag_line, foot), None


def _seven(ink, w, u):
    xs, ys = _grid(ink.device)
    left, top, right, bottom = _box(ink)
    h = bottom - top + 1
    y = top + _between(u[:, 0], 0.5, 0.62) * h
    band = ink * ((ys - y[:, None, None]).abs() <= 1.0)
    x = _mean(xs, band) + _between(u[:, 1], -0.1, 0.06) * h
    half = _between(u[:, 2], 0.15, 0.25) * h
    tilt = torch.deg2rad(_between(u[:, 3], -10, 4))
    dx, dy = half * torch.cos(tilt), half * torch.sin(tilt)
    bar = torch.stack([x - dx, y + dy, x + dx, y - dy], -1)
    return _strokes(bar), None


def _four_stem(ink, top, bottom):
    """The 4's stem as x = a + b * y, from the ink's mean column in two bands of its bottom quarter,
    where only the stem is; and its crossbar's row: the widest row of the middle."""
    xs, ys = _grid(ink.device)
    h = bottom - top + 1
    t, b = top[:, None, None], h[:, None, None]
    upper = ink * ((ys >= t + 0.72 * b) & (ys < t + 0.86 * b))
    lower = ink * (ys >= t + 0.86 * b)
    x1, x2 = _mean(xs, upper), _mean(xs, lower)
    y1, y2 = _mean(ys, upper), _mean(ys, lower)
    slope = ((x2 - x1) / (y2 - y1).clamp(min=1.0)).clamp(-0.6, 0.6).nan_to_num(0.0)
    a = x2 - slope * y2
    rows = (ink > 0.3).float().sum(2)  # (n, SIZE) inked pixels per row
    r = torch.arange(SIZE, device=ink.device)[None]
    middle = (r >= (top + 0.3 * h)[:, None]) & (r <= (top + 0.8 * h)[:, None])
    bar = torch.where(middle, rows, torch.full_like(rows, -1.0)).argmax(1).float()
    return a, slope, bar


def _four(ink, w, u):
    xs, ys = _grid(ink.device)
    left, top, right, bottom = _box(ink)
    h = bottom - top + 1
    a, slope, bar = _four_stem(ink, top, bottom)
    stem_x = a[:, None, None] + slope[:, None, None] * ys  # (n, SIZE, 1)
    above = (ink > 0.5) & (ys < bar[:, None, None])
    near = above & ((xs - stem_x).abs() <= 1.2 * w[:, None, None] + 0.5)
    arm = above & (xs < stem_x - 1.5 * w[:, None, None] - 1)
    stem_top = _masked(ys, near, "min") + w / 2
    arm_y = _masked(ys, arm, "min")
    arm_x = _mean(xs, (arm & (ys <= arm_y[:, None, None] + 1)).float())
    arm_y = arm_y + w / 2
    join_y = stem_top + _between(u[:, 0], -0.04, 0.08) * h
    join = torch.stack([arm_x, arm_y, a + slope * join_y, join_y], -1)
    reach = _between(u[:, 1], 0.1, 0.22) * h
    bar_x = a + slope * bar
    tail = torch.stack([bar_x, bar, bar_x + reach, bar - _between(u[:, 2], -0.02, 0.05) * h], -1)
    # where the measures make no 4 (no arm left of the stem, an arm below the bar, a join longer than
    # the digit), the digit stays as written
    span = (join[:, 2:] - join[:, :2]).norm(dim=-1)
    sane = (span > 0.12 * h) & (span < 0.7 * h) & (arm_y < bar - 0.1 * h) & (stem_top < bar)
    sane &= (a + slope * arm_y - arm_x > 1.2 * w) & (bottom - bar > 0.2 * h)
    segments = _strokes(join, tail)
    return torch.where(sane[:, None, None], segments, torch.full_like(segments, math.nan)), None


def _hook(end: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """(n, 4, 2): a tail's end turning down, left and up, from `end`, `size` px across."""
    shape = torch.tensor([[0.0, 0.0], [-0.25, 0.55], [-0.8, 0.8], [-1.3, 0.45]], device=end.device)
    return end[:, None] + size[:, None, None] * shape[None]


def _nine(ink, w, u):
    xs, ys = _grid(ink.device)
    left, top, right, bottom = _box(ink)
    h = bottom - top + 1
    hole = _holes(ink)
    hole = hole & (ys < top[:, None, None] + 0.6 * h[:, None, None])  # the loop is the top part
    has_loop = hole.sum((1, 2)) >= 3
    loop_right, loop_bottom = _masked(xs, hole, "max"), _masked(ys, hole, "max")
    loop_mid = _mean(ys, hole.float())
    straight = has_loop & (u[:, 0] < 0.7)
    curl = ~straight | (u[:, 1] < 0.6)
    hook = _between(u[:, 2], 0.22, 0.34) * h
    # the straight stem: from the loop's right stroke down to where the tail ended, less the hook's depth
    x0 = loop_right + 0.5 + w / 2
    y0 = loop_mid + _between(u[:, 3], -0.1, 0.25) * (loop_bottom - loop_mid)
    y1 = bottom - w / 2 - torch.where(curl, 0.8 * hook, torch.zeros_like(hook))
    x1 = x0 + _between(u[:, 4], -0.12, 0.06) * (y1 - y0)
    stem = torch.stack([x0, y0, x1, y1], -1)
    keep = ys <= (loop_bottom + w + 1.0)[:, None, None]
    # or the tail as written, its end found in its lowest rows
    end_x = _mean(xs, ink * (ys >= bottom[:, None, None] - w[:, None, None]))
    end = torch.where(straight[:, None], torch.stack([x1, y1], -1), torch.stack([end_x, bottom - w / 2], -1))
    tail = torch.where(curl[:, None, None], _hook(end, hook), torch.full((len(ink), 4, 2), math.nan, device=ink.device))
    stem = torch.where(straight[:, None], stem, torch.full_like(stem, math.nan))
    keep = torch.where(straight[:, None, None], keep, torch.ones_like(keep))
    return _strokes(stem, tail), keep.float()


def _zero(ink, w, u):
    left, top, right, bottom = _box(ink)
    h = bottom - top + 1
    cx = (left + right) / 2 + _between(u[:, 0], -0.05, 0.05) * h
    cy = (top + bottom) / 2 + _between(u[:, 1], -0.05, 0.05) * h
    down = _stem(ink)[2]
    axis = torch.rad2deg(torch.atan2(down[:, 1], -down[:, 0]))  # the oval's long axis above the rightward horizontal
    axis = torch.where((axis - 90).abs() > 45, torch.full_like(axis, 90.0), axis)  # round or lying: as if upright
    angle = torch.deg2rad((axis - _between(u[:, 2], 15, 30)).clamp(45, 80))  # across the oval, not along it
    half = _between(u[:, 3], 0.42, 0.58) * h
    dx, dy = half * torch.cos(angle), half * torch.sin(angle)
    return _strokes(torch.stack([cx - dx, cy + dy, cx + dx, cy - dy], -1)), None


GEOMETRY = {0: _zero, 1: _one, 4: _four, 7: _seven, 9: _nine}


# ----------------------------------------------------------------------------- the batch


def style(images: torch.Tensor, label: int, generator: torch.Generator) -> torch.Tensor:
    """Digits (n, 28, 28) uint8, all of class `label` (a key of STYLES) -> the same digits in that
    class's style, (n, 28, 28) uint8, MNIST-normalised."""
    if label not in GEOMETRY:
        raise ValueError(f"no style for class {label}; styled classes: {sorted(GEOMETRY)}")
    if not len(images):
        return images.clone()
    u = torch.rand(len(images), 16, generator=generator).to(images.device)
    ink = F.pad(images.float() / 255.0, (PAD, PAD, PAD, PAD))
    w = stroke_width(ink)
    segments, keep = GEOMETRY[label](ink, w, u)
    kept = ink if keep is None else ink * keep
    out = normalise(torch.maximum(kept, draw(segments, w)))
    return (out * 255).round().to(torch.uint8)


def stylise(images: torch.Tensor, labels: torch.Tensor, share: float,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace `share` of the digits of the styled classes (0, 1, 4, 7, 9) with their styled
    version. images (B, 28, 28) uint8 (MNIST format), labels (B,) -> (images, labels), new
    tensors, labels unchanged. The choice and the strokes come from `generator` (CPU)."""
    if images.dim() != 3 or images.shape[1:] != (28, 28) or images.dtype != torch.uint8:
        raise ValueError(f"stylise wants (B, 28, 28) uint8 digits, got {tuple(images.shape)} {images.dtype}")
    if not 0 <= share <= 1:
        raise ValueError(f"share must be in [0, 1], got {share}")
    chosen = (torch.rand(len(images), generator=generator) < share).to(labels.device)
    out = images.clone()
    for label in GEOMETRY:
        idx = torch.nonzero(chosen & (labels == label)).flatten()
        if len(idx):
            out[idx] = style(images[idx], label, generator)
    return out, labels.clone()


def build_style_bank(images: torch.Tensor, labels: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` styled digits, made once from the training digits (images (N, 28, 28) uint8, labels (N,)),
    an equal share of each styled class, to mix into batches later: ((n, 28, 28) uint8, (n,))."""
    g = torch.Generator().manual_seed(seed)
    classes = [c for c in GEOMETRY if bool((labels == c).any())]
    if not classes:
        raise ValueError(f"none of the styled classes {sorted(GEOMETRY)} among the labels")
    xs, ys = [], []
    for i, c in enumerate(classes):
        k = n // len(classes) + (i < n % len(classes))
        pool = torch.nonzero(labels == c).flatten()
        pick = pool[torch.randint(len(pool), (k,), generator=g).to(pool.device)]
        xs.append(style(images[pick], c, g))
        ys.append(labels[pick])
    return torch.cat(xs), torch.cat(ys)
