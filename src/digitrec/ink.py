"""The ink in an image: the kernels every reader of ink shares (numpy and scipy only, torch-free).

    Preparation  every threshold of the ink finder, one frozen object: models record it in
                 their card (card.py) and are checked against it when served
    ink_map      luminance -> ink in [0, 1] with the paper at 0: the paper modelled where it is
                 (paper_level), a noise floor, rule lines and edge things removed
    stroke_width typical stroke width of ink masks (also used by the report)

marks.py takes a character's mark from the ink map and shapes it into the model's input.
preprocess.py (one digit), the reader (whole numbers), the line model's strip, the outlier
bank and the report all take these from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
from PIL import Image

EDGE = 0.5  # the ink's edge is where it covers half a pixel: boxes and masks are measured there
BOX = 20  # the longer side of a character's ink box in the 28x28 field, as in MNIST
SIZE = 28  # the field


@dataclass(frozen=True)
class Preparation:
    """The thresholds that turn an image into a model's input. A model is trained on inputs made
    under one Preparation; its card records it (ModelCard.preparation), and serving it under
    another one is reported (Predictor warns), because its inputs would no longer be what it learnt."""

    min_contrast: float = 0.12  # ink must differ from the paper by 12% of full scale (a faint pencil), else blank
    noise_sigmas: float = 3.0  # background noise below this many robust standard deviations is removed
    speck: float = 0.03  # ink blobs lighter than 3% of the largest blob are specks, ignored for the box
    structure: float = 0.3  # ink at least this strong is looked at for rule lines and edge things
    paper_scale: float = 0.25  # bright (ink) structures narrower than this share of the shorter side are not paper
    line_span: float = 0.9  # a rule line runs across at least 90% of the image...
    line_thick: float = 0.04  # ...and is at most 4% of the image (or 4 px) thick...
    line_ink: float = 0.2  # ...holding at least this much ink on average along it (dashed or faint)
    min_part: float = 0.025  # blobs smaller than this share of the image's shorter side are specks
    border_span: float = 0.5  # an edge thing touches a side along at least half its length
    min_stroke: float = 1.0  # strokes thinner than this many output pixels (MNIST's: 2 to 4)...
    stroke: float = 2.5  # ...are thickened to this many, so a fine pen on a big image stays visible
    light_ink: float = 1.5  # light ink when it stands out 1.5 times as far from the median as dark ink...
    dark_paper: float = 0.4  # ...and only on a background darker than 40% gray
    analysis: int = 640  # photos are block-averaged to at most this many pixels a side to find one character
    frame_side: float = 0.8  # a closed frame (a form's box) has ink along this share of each of its four sides...
    frame_band: float = 0.08  # ...within this share of its size of each side: its sides are wiped, what it holds kept
    mark_margin: float = 0.15  # the handwritten mark: the heaviest blob, and blobs within this times its height...
    mark_tall: float = 0.6  # ...or at least this tall (times its height) and within mark_gap of it...
    mark_gap: float = 0.35  # ...so a caption, a neighbour's word, a full stop or a tick further off is left out
    mark_join: float = 0.03  # ink closer than this share of the image's shorter side is one blob
    mark_heavy: float = 0.25  # a blob with this share of the mark's heaviest ink, within mark_gap, is part of it (a broken scan)
    rule_aspect: float = 8.0  # a blob this many times wider than tall, and thin, is a rule or an underline

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict | None) -> "Preparation | None":
        """The Preparation a card recorded; None for a card from before preparations were recorded."""
        if not d:
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def differences(self, other: "Preparation") -> list[str]:
        """'name a -> b' for every threshold that differs."""
        return [f"{f.name} {getattr(self, f.name)} -> {getattr(other, f.name)}" for f in fields(self)
                if getattr(self, f.name) != getattr(other, f.name)]


PREPARATION = Preparation()  # the one in use: what the shipped models were trained under


def stroke_width(mask: np.ndarray) -> np.ndarray:
    """Typical stroke width in pixels of boolean ink masks (..., H, W): twice the area over
    the outline length (a stroke of width w and length L has area wL and an outline of 2L).
    Outline pixels are the inked ones with an empty 4-neighbour. Counting them overstates
    slanted outlines, so this reads up to 30% low; fine for comparing strokes."""
    m = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(1, 1), (1, 1)])
    core = m[..., 1:-1, 1:-1]
    inner = core & m[..., :-2, 1:-1] & m[..., 2:, 1:-1] & m[..., 1:-1, :-2] & m[..., 1:-1, 2:]
    area = core.sum((-2, -1))
    outline = area - inner.sum((-2, -1))
    return 2 * area / np.maximum(outline, 1)


def _supported_extremes(a: np.ndarray) -> tuple[float, float]:
    """The darkest and lightest values held by at least two touching pixels (the extremes of
    min and max over every pair of neighbours): a lone speck does not count, a stroke one
    pixel wide does."""
    pairs = [(a[:, :-1], a[:, 1:]), (a[:-1], a[1:]), (a[:-1, :-1], a[1:, 1:]), (a[:-1, 1:], a[1:, :-1])]
    lightest = max(float(np.minimum(p, q).max()) for p, q in pairs)
    darkest = min(float(np.maximum(p, q).min()) for p, q in pairs)
    return darkest, lightest


def noise_sigma(a: np.ndarray) -> float:
    """The standard deviation of a float image's pixel noise, from its second differences
    (Immerkaer 1996, made robust with a median): smooth shading, blurred strokes and flat
    ink add nothing, so ink covering most of the frame does not pass for noise."""
    if min(a.shape) < 3:
        return 0.0
    rows = a[:, :-2] - 2 * a[:, 1:-1] + a[:, 2:]
    lap = np.abs(rows[:-2] - 2 * rows[1:-1] + rows[2:]).ravel()  # [1 -2 1] x [1 -2 1]
    if lap.size > 65536:
        lap = lap[:: lap.size // 65536]
    k = lap.size // 2
    return float(np.partition(lap, k)[k]) / (0.6745 * 6.0)  # the kernel's gain on white noise is 6


def _pool(a: np.ndarray, f: int, reduce=np.max) -> np.ndarray:
    """`reduce` (max, mean) of f x f blocks, the partial blocks at the right and bottom edges included."""
    h, w = a.shape
    p = np.pad(a, ((0, -h % f), (0, -w % f)), mode="edge")
    return reduce(p.reshape(p.shape[0] // f, f, p.shape[1] // f, f), axis=(1, 3)).astype(np.float32)


def paper_level(v: np.ndarray, p: Preparation = PREPARATION) -> np.ndarray:
    """The background under bright ink `v`: what is left when every bright structure narrower
    than p.paper_scale of the image's shorter side is opened away (a grey opening). Lighting
    gradients, shadows, a dark table or scan margin wider than that are background; strokes
    are not. Big images are opened on a copy shrunk by taking each block's maximum, so the
    background never dips below a dark surround's edge, then enlarged back."""
    from scipy import ndimage

    h, w = v.shape
    f = max(1, min(h, w) // 128)
    small = _pool(v, f) if f > 1 else ndimage.uniform_filter(v, 3, mode="nearest")
    # Wider than three strokes (measured in the middle, where the writing is), so that fat,
    # blurred strokes filling a tight crop are not taken for paper; at most half the image.
    sh, sw = small.shape
    mid = small[sh // 4 : sh - sh // 4, sw // 4 : sw - sw // 4]
    lo, hi = float(np.median(mid)), float(mid.max())
    stroke = float(stroke_width(mid > (lo + hi) / 2)) if hi > lo else 0.0
    k = max(3, int(round(min(max(p.paper_scale * min(sh, sw), 3 * stroke), 0.5 * min(sh, sw)))))
    bg = under_ink(small, ndimage.grey_opening(small, size=(k, k), mode="nearest"), max(2, int(round(4 * stroke))), p)
    if f > 1:
        bg = np.asarray(Image.fromarray(bg.astype(np.float32), "F").resize(
            (small.shape[1] * f, small.shape[0] * f), Image.Resampling.BILINEAR), np.float32)[:h, :w]
    return np.minimum(bg, v)


def under_ink(v: np.ndarray, bg: np.ndarray, reach: int, p: Preparation = PREPARATION) -> np.ndarray:
    """The opening's background `bg`, no brighter near the ink than the paper around it.

    An opening cuts a hill of ink wider than itself (a blurred stroke, strokes running into each
    other, a loop filled in by a fat pen) at the level where the hill is as wide as it: the
    hill's foot would count as paper and only its top as ink, a thin skeleton of a soft stroke.
    Such a cut leaves a plateau in the background, higher than all the paper around it. So
    within `reach` (four strokes) of the strongest ink, the background is at most the highest
    background just outside that reach (where there is none that close, the median of all of
    it). A shadow or light falling off across the page is no plateau (the paper on its dark side
    is as high), so it stays background. Nothing is done where the strongest ink stands out
    less than twice the faintest ink read (2 x p.min_contrast): no fat soft stroke is that faint,
    and the wisps of a shadow's edge on an empty page are (0.04-0.39 against 0.23 and more for
    digits drawn under every condition), which would otherwise be restored into ink."""
    from scipy import ndimage

    d = v - bg
    top = d > 0.5 * float(d.max())
    if not top.any() or float(d.max()) < 2 * p.min_contrast:
        return bg
    near = ndimage.maximum_filter(top.view(np.uint8), size=2 * reach + 1, mode="constant").astype(bool)
    if near.all():
        return bg
    around = ndimage.maximum_filter(np.where(near, -np.inf, bg).astype(np.float32), size=4 * reach + 1, mode="nearest")
    around = np.where(np.isfinite(around), around, float(np.median(bg[~near])))
    return np.where(near, np.minimum(bg, around), bg).astype(np.float32)


def _lines(ink: np.ndarray, p: Preparation = PREPARATION) -> np.ndarray:
    """The horizontal rule lines in `ink`: thin (at most p.line_thick of the height, or 4 px),
    faint or dashed runs across at least p.line_span of the width, tilted a little at most.
    Returns their pixels; where writing merges with a line (the line is locally thicker than
    it is elsewhere) the line is left alone."""
    from scipy import ndimage

    h, w = ink.shape
    if w < 16 or h < 8:
        return np.zeros(ink.shape, bool)
    # Morphology along rows by running minima and maxima (O(pixels), whatever the length):
    # dashes joined, a tilt of a pixel kept in one run, then only runs of w/6 or longer.
    m = (ink >= p.line_ink).view(np.uint8)
    # Quick way out: no band of three rows holds ink from one side to the other.
    has = m.any(1)
    first = np.where(has, m.argmax(1), w)
    last = np.where(has, w - 1 - m[:, ::-1].argmax(1), -1)
    lo = np.minimum(np.minimum(first[:-2], first[1:-1]), first[2:])
    hi = np.maximum(np.maximum(last[:-2], last[1:-1]), last[2:])
    if (hi - lo).max(initial=0) < p.line_span * w:
        return np.zeros(ink.shape, bool)
    mask = ndimage.minimum_filter1d(ndimage.maximum_filter1d(m, 7, axis=1), 7, axis=1)
    tall = ndimage.maximum_filter1d(mask, 3, axis=0)
    run = max(8, w // 6)
    runs = ndimage.maximum_filter1d(ndimage.minimum_filter1d(tall, run, axis=1), run, axis=1).astype(bool)
    mask = mask.astype(bool)
    labels, n = ndimage.label(runs, structure=np.ones((3, 3), bool))
    found = np.zeros(ink.shape, bool)
    thick = max(4.0, p.line_thick * h) + 2  # the runs were made two pixels taller
    for i, sl in enumerate(ndimage.find_objects(labels), 1):
        span = sl[1].stop - sl[1].start
        part = labels[sl] == i
        if span < p.line_span * w:
            continue
        across = part.sum(0)  # the line's thickness, column by column
        typical = float(np.median(across[across > 0]))
        if typical <= thick:
            found[sl] |= part & (across <= 1.5 * typical + 1)[None, :]
    return found & mask


def _unline(ink: np.ndarray, mask: np.ndarray, p: Preparation = PREPARATION) -> np.ndarray:
    """Ink with its rule lines (both ways) taken out, except where a stroke crosses them: where
    ink off the lines runs into one from either side and on out the other."""
    bands = [_lines(ink, p), _lines(ink.T, p).T]
    if not (bands[0].any() or bands[1].any()):
        return ink
    off = mask & ~bands[0] & ~bands[1]
    out = ink.copy()
    for t, band in enumerate(bands):
        if not band.any():
            continue
        b, o = (band.T, off.T) if t else (band, off)
        down = np.zeros_like(b)  # reached from ink above
        up = np.zeros_like(b)  # reached from ink below
        down[1:] = o[:-1]
        up[:-1] = o[1:]
        for _ in range(int(max(4.0, p.line_thick * b.shape[0])) + 4):
            down[1:] |= down[:-1] & b[:-1]
            up[:-1] |= up[1:] & b[1:]
        (out.T if t else out)[b & ~(down & up)] = 0.0
    return out


def _unborder(ink: np.ndarray, mask: np.ndarray, p: Preparation = PREPARATION) -> np.ndarray:
    """Ink with the things along the image edge taken out: a scan margin, a table edge, a form's
    frame. Each is a blob touching the edge along at least p.border_span of a side and lying within
    p.paper_scale of the edges; a digit cut tightly touches the edge only where strokes end."""
    from scipy import ndimage

    h, w = mask.shape
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return ink
    edges = [labels[0], labels[-1], labels[:, 0], labels[:, -1]]
    touching = np.unique(np.concatenate(edges))
    touching = touching[touching > 0]
    if touching.size == 0:
        return ink
    d = p.paper_scale * min(h, w)
    y, x = np.ogrid[0:h, 0:w]
    near = np.minimum(np.minimum(y, h - 1 - y), np.minimum(x, w - 1 - x)) < d
    out = ink
    boxes = ndimage.find_objects(labels)
    for i in touching:
        part = labels == i
        rows, cols = boxes[i - 1]
        extents = [cols.stop - cols.start] * 2 + [rows.stop - rows.start] * 2  # along each edge
        contacts = [float((e == i).sum()) for e in edges]
        # along a long stretch of a side, or along all of its own length (a strip of table)
        solid = part[rows, cols].mean() >= 0.6  # a filled blob, not strokes
        edge_like = any(c >= p.border_span * len(e) or (x >= 0.03 * len(e) and c >= 0.8 * x and solid)
                        for c, e, x in zip(contacts, edges, extents))
        if edge_like and (part & near).sum() >= 0.9 * part.sum():
            out = out.copy() if out is ink else out
            out[ndimage.binary_dilation(part)] = 0.0
    return out


def ink_map(gray: np.ndarray, p: Preparation = PREPARATION) -> tuple[np.ndarray, bool, bool]:
    """(H, W) luminance -> (ink in [0, 1] with the paper at 0, blank?, inverted?).

    The paper is modelled where paper is (paper_level), not as one value, so lighting,
    shadows and dark surroundings drop out; the noise is measured from second differences,
    so ink filling the frame is not taken for noise; rule lines and edge things go."""
    sample = gray[::2, ::2] if gray.size > 65536 else gray  # medians of a quarter are as good, and faster
    background = float(np.median(sample))
    if min(gray.shape) >= 32:  # the extremes of strokes, not of specks
        darkest, lightest = _supported_extremes(gray)
    else:  # a tiny image: every pixel counts
        darkest, lightest = float(gray.min()), float(gray.max())
    # Dark ink on light paper unless the light side clearly dominates (white chalk, MNIST's own
    # white on black): shading on an empty page then stays background, not ink.
    inverted = bool(lightest - background < p.light_ink * (background - darkest) or background > p.dark_paper)
    h, w = gray.shape
    if min(h, w) >= 64 and not inverted:
        # A light sheet on a dark table or scanner lid can be the minority of the frame: a light
        # part that is large and solid (filling its box, unlike any stroke) is paper, not ink.
        step = max(1, min(h, w) // 128)
        light = gray[::step, ::step] > (background + lightest) / 2
        rows, cols = np.nonzero(light.any(1))[0], np.nonzero(light.any(0))[0]
        if rows.size:
            box = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
            inverted = bool(light.mean() >= 0.25 and light.sum() >= 0.75 * box)
    v = (1.0 - gray) if inverted else gray.astype(np.float32)  # ink bright
    if min(gray.shape) >= 32:
        bg = paper_level(v, p)
        ink = v - bg
        if inverted:  # dark ink: its contrast scales with the light falling on the paper
            light = 1.0 - bg
            ref = float(np.quantile(light[::4, ::4], 0.9))
            ink = ink * (ref / np.maximum(light, 0.5 * ref))
    else:
        ink = v - (1.0 - background if inverted else background)
    ink = ink.astype(np.float32)
    floor = p.noise_sigmas * noise_sigma(ink)
    level = _supported_extremes(ink)[1] if min(ink.shape) >= 32 else float(ink.max())
    if level < max(p.min_contrast, 2 * floor):
        return np.zeros_like(ink), True, inverted
    ink = np.clip((ink - floor) / (level - floor), 0.0, 1.0)
    if min(ink.shape) >= 32:
        ink = _unline(ink, ink >= p.structure, p)
        ink = _unborder(ink, ink >= p.structure, p)
        if not (ink >= EDGE).any():
            return np.zeros_like(ink), True, inverted
    return ink, False, inverted
