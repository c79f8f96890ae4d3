"""Why the model answered what it did: occlusion saliency over its 28x28 input.

For a class c, each pixel's saliency is how much the probability of c falls, on average, when
a small square of the input around that pixel is wiped to the background (no ink). Positive:
that ink speaks for c; negative: it speaks against c. It is the deletion test itself taken one
square at a time, so it is faithful by construction, and it needs nothing but the model's
answers: it runs on ONNX Runtime as on PyTorch, in one batch per image (the squares that touch
no ink change nothing and are skipped). `deletion_curve` measures faithfulness: wiping the most
salient pixels first must drop the probability faster than wiping pixels in random order.

`overlay` draws a saliency map over the 28x28 input or, mapped back through the box the
preprocessing cut, over the original image. Torch-free.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

PATCH = 3  # the wiped square's side, in input pixels
STRIDE = 1


def squares(size: int = 28, patch: int = PATCH, stride: int = STRIDE) -> np.ndarray:
    """(K, size, size) boolean masks, one per square of side `patch`, every `stride` pixels."""
    starts = np.arange(0, size - patch + 1, stride)
    inside = (np.arange(size)[None] >= starts[:, None]) & (np.arange(size)[None] < starts[:, None] + patch)  # (S, size)
    masks = inside[:, None, :, None] & inside[None, :, None, :]  # (S, S, size, size): rows x columns
    return masks.reshape(-1, size, size)


def log_odds(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), with p kept off 0 and 1: a confident answer's evidence stays visible
    (a square that takes 99.99% to 99.9% moves it by 2.3, where its probability moves by 0.0009)."""
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def saliency(probabilities, image: np.ndarray, classes: list[int], patch: int = PATCH,
             stride: int = STRIDE) -> np.ndarray:
    """(len(classes), 28, 28) float32 saliency of one (28, 28) uint8 image for each class index:
    how far the class's log-odds fall, on average, when a square over that pixel is wiped.

    `probabilities(list of (28, 28) uint8) -> (N, C)` is the model (Predictor.probabilities)."""
    masks = squares(image.shape[0], patch, stride)
    masks = masks[(masks & (image > 0)).any((1, 2))]  # squares that wipe some ink
    occluded = np.where(masks, 0, image[None]).astype(np.uint8)  # (K, 28, 28)
    probs = np.asarray(probabilities([image, *occluded]))  # (1 + K, C)
    return _spread(log_odds(probs[:1, classes]) - log_odds(probs[1:, classes]), masks)


def _spread(drop: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(K, n) drops of K occluded squares (K, H, W) -> (n, H, W): each pixel's mean over the squares covering it."""
    flat = masks.reshape(len(masks), -1).astype(np.float64)
    total = drop.T @ flat  # (n, H*W): the drops of the squares covering each pixel
    count = np.maximum(flat.sum(0), 1)
    return (total / count).reshape(drop.shape[1], *masks.shape[1:]).astype(np.float32)


def line_saliency(frames_of, x: np.ndarray, frame: int, index: int, span: tuple[float, float],
                  patch: int = 4) -> np.ndarray:
    """(H, W) saliency over a line model's strip `x` for the character `index` it read at `frame`:
    how far that frame's log-odds of the character fall when a square of the strip is wiped,
    for the squares over the character's columns `span` and a square's width around them.
    `frames_of((N, H, W) strips) -> (N, T, C + 1)` is the line model (LineModel.frames_batch)."""
    h, w = x.shape
    lo, hi = max(0, int(span[0]) - patch), min(w, int(np.ceil(span[1])) + patch)
    ys, xs = np.arange(0, h - patch + 1, 2), np.arange(lo, max(lo + 1, hi - patch + 1), 2)
    masks = np.zeros((len(ys) * len(xs), h, w), bool)
    for n, (y, c) in enumerate((y, c) for y in ys for c in xs):
        masks[n, y : y + patch, c : c + patch] = True
    masks = masks[(masks & (x > 0.05)).any((1, 2))]
    if not len(masks):
        return np.zeros_like(x)
    frames = np.asarray(frames_of(np.concatenate([x[None], np.where(masks, 0, x[None])])))[:, frame, index]
    return _spread(log_odds(frames[:1, None]) - log_odds(frames[1:, None]), masks)[0]


def deletion_curve(probabilities, images: np.ndarray, targets: np.ndarray, order: np.ndarray,
                   steps: int = 20) -> np.ndarray:
    """Mean probability of each image's target class as its pixels are wiped in `order`.

    images (N, 28, 28) uint8; targets (N,) class indices; order (N, 784) pixel indices, first
    wiped first (only inked pixels count: the k-th step wipes k/steps of each image's ink
    pixels). Returns (steps + 1,) mean probabilities, step 0 being the untouched images."""
    n = len(images)
    flat = images.reshape(n, -1)
    inked = flat > 0
    ranks = np.empty_like(order)
    ranks[np.arange(n)[:, None], order] = np.arange(order.shape[1])[None]
    ranks = np.where(inked, ranks, np.iinfo(ranks.dtype).max)  # background last: wiping it changes nothing
    ink_counts = inked.sum(1)
    position = np.argsort(np.argsort(ranks, 1, kind="stable"), 1, kind="stable")  # 0 = first wiped
    curve = []
    for s in range(steps + 1):
        cut = np.ceil(ink_counts * s / steps)[:, None]
        wiped = np.where(position < cut, 0, flat).reshape(images.shape).astype(np.uint8)
        probs = np.asarray(probabilities(list(wiped)))
        curve.append(float(probs[np.arange(n), targets].mean()))
    return np.array(curve)


# ----------------------------------------------------------------------------- pictures

def heat(sal: np.ndarray, scale: float | None = None) -> np.ndarray:
    """(H, W) saliency -> (H, W, 4) RGBA: red for evidence for the class, blue against,
    opacity with strength. `scale` is the saliency that is fully opaque (default: the map's own peak)."""
    peak = float(np.abs(sal).max()) if scale is None else scale
    s = sal / max(peak, 1e-9)
    rgba = np.zeros(sal.shape + (4,), np.float32)
    rgba[..., 0] = (s > 0)
    rgba[..., 1] = 0.25 * (s > 0)
    rgba[..., 2] = (s < 0)
    rgba[..., 3] = np.clip(np.abs(s), 0, 1) * 0.85
    return rgba


def blend(base: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """(H, W, 3) float base in [0, 1] under (H, W, 4) colour."""
    a = rgba[..., 3:]
    return base * (1 - a) + rgba[..., :3] * a


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB").save(buf, "PNG")
    return buf.getvalue()


def overlay_input(image: np.ndarray, sal: np.ndarray, scale: int = 8) -> bytes:
    """The 28x28 input (white ink on black, shown as dark ink on white) with its saliency, as a
    PNG scaled up `scale` times with square pixels."""
    base = np.repeat((1 - image.astype(np.float32) / 255)[..., None], 3, -1)
    rgb = blend(base, heat(sal))
    return _png(np.kron(rgb, np.ones((scale, scale, 1), np.float32)))


def input_box(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """The (left, top, right, bottom) of the ink in the 28x28 input: the part that came from
    the preprocessing's box in the original image."""
    rows, cols = np.nonzero(image.any(1))[0], np.nonzero(image.any(0))[0]
    if not len(rows):
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def shown(decoded, max_side: int = 512) -> tuple[np.ndarray, float]:
    """The decoded image as (H, W, 3) float RGB at most `max_side` a side, and the factor from
    the original's pixels (where every box is measured) to the picture's."""
    rgb = decoded.image.convert("RGB")
    k = min(1.0, max_side / max(rgb.size))
    if k < 1:
        rgb = rgb.resize((max(1, round(rgb.width * k)), max(1, round(rgb.height * k))), Image.Resampling.BOX)
    return np.asarray(rgb, np.float32) / 255, rgb.width / decoded.size[0]


def lay_over(base: np.ndarray, sal: np.ndarray, box, scale: float) -> None:
    """Lay a saliency map (any shape) stretched over `box` (left, top, right, bottom, in the
    picture's pixels) of `base`, in place, red for and blue against, `scale` fully opaque."""
    l, t, r, b = (int(round(v)) for v in box)
    l, t, r, b = max(l, 0), max(t, 0), min(r, base.shape[1]), min(b, base.shape[0])
    if r <= l or b <= t or sal.size == 0:
        return
    patch = np.asarray(Image.fromarray(sal.astype(np.float32), "F").resize((r - l, b - t), Image.Resampling.BILINEAR))
    base[t:b, l:r] = blend(base[t:b, l:r], heat(patch, scale))


def overlay_original(decoded, image: np.ndarray, sal: np.ndarray, box, max_side: int = 512) -> bytes:
    """The decoded image with the saliency of its 28x28 input laid over the box the
    preprocessing cut from it (`box` in the original's pixels; the input's ink box maps onto
    it), as a PNG at most `max_side` pixels a side."""
    base, k = shown(decoded, max_side)
    inner = input_box(image)
    if box is not None and inner is not None:
        il, it, ir, ib = inner
        lay_over(base, sal[it:ib, il:ir], [v * k for v in box], float(np.abs(sal).max()))
    return _png(base)


# ----------------------------------------------------------------------------- answers explained


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _caption(im: Image.Image, text: str, height: int = 22) -> Image.Image:
    from PIL import ImageDraw

    out = Image.new("RGB", (im.width, im.height + height), "white")
    out.paste(im, (0, height))
    ImageDraw.Draw(out).text((4, 3), text, fill=(30, 30, 30), font=_font(height - 6))
    return out


def _side_by_side(images: list[Image.Image], gap: int = 8) -> Image.Image:
    h = max(im.height for im in images)
    out = Image.new("RGB", (sum(im.width for im in images) + gap * (len(images) - 1), h), "white")
    x = 0
    for im in images:
        out.paste(im, (x, 0))
        x += im.width + gap
    return out


def _open_png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def runner_up(answer, classes: list[str]) -> tuple[int, int] | None:
    """The class indices of an answer's label and of its runner-up (the second most probable class,
    whatever top-k the answer lists); None for an answer without a label."""
    if answer.label is None or not answer.probabilities or len(classes) < 2:
        return None
    p = np.array([answer.probabilities[c] for c in classes])
    first = classes.index(answer.label)
    p[first] = -np.inf
    return first, int(np.argmax(p))


def explain_answer(pre, answer, predictor) -> dict:
    """Saliency of an answer's label and of the runner-up: {label, runner_up, input_png (the
    28x28 input, for the label), runner_up_png, image_png (over the decoded image)} with PNG bytes;
    {} for an answer without a label. `pre` is the Preprocessed the answer was made from."""
    pair = runner_up(answer, predictor.classes)
    if pair is None:
        return {}
    sal = saliency(predictor.probabilities, pre.image, list(pair))
    return {"label": predictor.classes[pair[0]], "runner_up": predictor.classes[pair[1]],
            "input_png": overlay_input(pre.image, sal[0]), "runner_up_png": overlay_input(pre.image, sal[1]),
            "image_png": overlay_original(pre.decoded, pre.image, sal[0], pre.box)}


def key(width: int, what: str) -> Image.Image:
    """The key under a picture: what red and blue mean, and the scale."""
    from PIL import ImageDraw

    im = Image.new("RGB", (max(width, 360), 40), "white")
    draw, font = ImageDraw.Draw(im), _font(12)
    for x, colour, text in ((6, (255, 64, 0), f"red: ink that speaks for {what}"),
                            (6, (0, 0, 255), f"blue: ink that speaks against {what}")):
        y = 4 if colour[2] == 0 else 22
        draw.rectangle((x, y + 2, x + 10, y + 12), fill=colour)
        draw.text((x + 16, y), text, fill=(30, 30, 30), font=font)
    draw.text((im.width - 150, 13), "strength: log-odds lost", fill=(90, 90, 90), font=font)
    return im


def with_key(picture: Image.Image, what: str) -> bytes:
    out = Image.new("RGB", (max(picture.width, 360), picture.height + 40), "white")
    out.paste(picture, (0, 0))
    out.paste(key(out.width, what), (0, picture.height))
    buf = io.BytesIO()
    out.save(buf, "PNG")
    return buf.getvalue()


def explanation_picture(pre, answer, predictor) -> bytes:
    """One PNG for a person: the image with the evidence for the answer laid over what was read,
    the model's input showing why it is this label and why not the runner-up, and a key."""
    got = explain_answer(pre, answer, predictor)
    if not got:
        return with_key(_caption(pre.decoded.image.convert("RGB"), "nothing read"), "the answer")
    side = [_caption(_open_png(got["image_png"]), f"read as {got['label']} ({100 * answer.confidence:.1f}%)"),
            _caption(_open_png(got["input_png"]), f"why {got['label']}"),
            _caption(_open_png(got["runner_up_png"]), f"why not {got['runner_up']}")]
    return with_key(_side_by_side(side), "the label above it")


def _character_saliency(c, predictor, line_model) -> tuple[np.ndarray, tuple]:
    """A character's saliency and the box (in the ink map) it covers, from the model that gave it:
    the classifier's over its 28x28 input, or the line model's over its part of the line strip."""
    index = predictor.classes.index(c.answer.label)
    if c.line is not None and line_model is not None:
        whole, span = c.line.whole, c.line.span
        sal = line_saliency(line_model.frames_batch, whole.x, c.line.read.frame, index, span)
        return sal[:, int(span[0]) : int(np.ceil(span[1]))], whole.box_of(span)
    inner = input_box(c.image)
    sal = saliency(predictor.probabilities, c.image, [index])[0]
    return (sal[inner[1] : inner[3], inner[0] : inner[2]] if inner else sal[:0]), c.ink_box


def explain_reading(reading, predictor, line_model=None) -> bytes:
    """One PNG for a whole reading: the image with each character's evidence for its label, from
    the model that answered it, over its box, the label above the box, and a key."""
    from PIL import ImageDraw

    base, k = shown(reading.decoded, 1024)
    maps = [_character_saliency(c, predictor, line_model) if c.answer.label is not None else (np.zeros((0, 0)), None)
            for c in reading.characters]
    scale = max([float(np.abs(s).max()) for s, _ in maps if s.size] + [1e-9])
    ink_to_picture = k * reading.ink_scale
    for sal, box in maps:
        if box is not None:
            lay_over(base, sal, [v * ink_to_picture for v in box], scale)
    im = Image.fromarray(np.round(base * 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    tall = max([c.box[3] - c.box[1] for c in reading.characters] + [56])
    font = _font(max(12, min(32, int(0.25 * tall * k))))
    for c in reading.characters:
        l, t, r, b = (round(v * k) for v in c.box)
        draw.rectangle((l, t, r, b), outline=(47, 111, 223), width=2)
        draw.text((l + 2, max(0, t - getattr(font, "size", 12) - 2)), c.answer.label or "?",
                  fill=(200, 30, 30) if c.answer.status != "ok" else (30, 90, 200), font=font)
    return with_key(im, "each label")
