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


def saliency(probabilities, image: np.ndarray, classes: list[int], patch: int = PATCH,
             stride: int = STRIDE) -> np.ndarray:
    """(len(classes), 28, 28) float32 saliency of one (28, 28) uint8 image for each class index.

    `probabilities(list of (28, 28) uint8) -> (N, C)` is the model (Predictor.probabilities)."""
    masks = squares(image.shape[0], patch, stride)
    masks = masks[(masks & (image > 0)).any((1, 2))]  # squares that wipe some ink
    occluded = np.where(masks, 0, image[None]).astype(np.uint8)  # (K, 28, 28)
    probs = np.asarray(probabilities([image, *occluded]))  # (1 + K, C)
    drop = probs[:1, classes] - probs[1:, classes]  # (K, len(classes))
    flat = masks.reshape(len(masks), -1).astype(np.float64)
    total = drop.T @ flat  # (len(classes), 784): the drops of the squares covering each pixel
    count = np.maximum(flat.sum(0), 1)
    return (total / count).reshape(len(classes), *image.shape).astype(np.float32)


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


def overlay_original(original: Image.Image, image: np.ndarray, sal: np.ndarray, box, max_side: int = 512) -> bytes:
    """The original image with the saliency of its 28x28 input laid over the box the
    preprocessing cut from it (the input's ink box maps onto that box), as a PNG at most
    `max_side` pixels a side."""
    rgb = original.convert("RGB")
    k = min(1.0, max_side / max(rgb.size))
    if k < 1:
        rgb = rgb.resize((max(1, round(rgb.width * k)), max(1, round(rgb.height * k))), Image.Resampling.BOX)
    base = np.asarray(rgb, np.float32) / 255
    inner = input_box(image)
    if box is None or inner is None:
        return _png(base)
    l, t, r, b = (round(v * k) for v in box)
    il, it, ir, ib = inner
    w, h = max(r - l, 1), max(b - t, 1)
    crop = sal[it:ib, il:ir]
    patch = np.asarray(Image.fromarray(crop, "F").resize((w, h), Image.Resampling.BILINEAR))
    colour = heat(patch, scale=float(np.abs(sal).max()))
    region = base[t : t + h, l : l + w]
    base[t : t + h, l : l + w] = blend(region, colour[: region.shape[0], : region.shape[1]])
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


def _side_by_side(images: list[Image.Image], gap: int = 8) -> bytes:
    h = max(im.height for im in images)
    out = Image.new("RGB", (sum(im.width for im in images) + gap * (len(images) - 1), h), "white")
    x = 0
    for im in images:
        out.paste(im, (x, 0))
        x += im.width + gap
    buf = io.BytesIO()
    out.save(buf, "PNG")
    return buf.getvalue()


def _open_png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def explain_answer(original: Image.Image, image: np.ndarray, box, answer, predictor) -> dict:
    """Saliency of an answer's label and of the runner-up: {label, runner_up, input_png (the
    28x28 input, for the label), runner_up_png, image_png (over the original image)} with PNG bytes."""
    classes = [predictor.classes.index(t["label"]) for t in answer.top[:2]] if answer.top else []
    if answer.label is None or not classes:  # blank, or not a digit: nothing to explain
        return {}
    if len(classes) == 1:
        classes.append(classes[0])
    sal = saliency(predictor.probabilities, image, classes)
    return {"label": predictor.classes[classes[0]], "runner_up": predictor.classes[classes[1]],
            "input_png": overlay_input(image, sal[0]), "runner_up_png": overlay_input(image, sal[1]),
            "image_png": overlay_original(original, image, sal[0], box)}


def explanation_picture(original: Image.Image, image: np.ndarray, box, answer, predictor) -> bytes:
    """One PNG for a person: the original image with the evidence for the answer laid over what
    was read, and the model's input showing why it is this label and why not the runner-up."""
    got = explain_answer(original, image, box, answer, predictor)
    if not got:
        return _side_by_side([_caption(original.convert("RGB"), "no ink found")])
    side = [_caption(_open_png(got["image_png"]), f"read as {got['label']} ({100 * answer.confidence:.1f}%)"),
            _caption(_open_png(got["input_png"]), f"why {got['label']}"),
            _caption(_open_png(got["runner_up_png"]), f"why not {got['runner_up']}")]
    return _side_by_side(side)


def explain_reading(source, reading, predictor) -> bytes:
    """One PNG for a whole reading: the original image with each character's evidence for its
    label over its box, and the label above the box."""
    from PIL import ImageDraw

    from .decode import decode

    original = decode(source)[0].convert("RGB")
    k = min(1.0, 1024 / max(original.size))
    if k < 1:
        original = original.resize((round(original.width * k), round(original.height * k)), Image.Resampling.BOX)
    base = np.asarray(original, np.float32) / 255
    sals = [saliency(predictor.probabilities, c.image, [predictor.classes.index(c.answer.label)])[0]
            if c.answer.label is not None else np.zeros((28, 28), np.float32) for c in reading.characters]
    scale = max([float(np.abs(s).max()) for s in sals] + [1e-9])
    for c, sal in zip(reading.characters, sals):
        inner = input_box(c.image)
        l, t, r, b = (round(v * k) for v in c.box)
        if inner is None or r <= l or b <= t:
            continue
        crop = sal[inner[1] : inner[3], inner[0] : inner[2]]
        patch = np.asarray(Image.fromarray(crop, "F").resize((r - l, b - t), Image.Resampling.BILINEAR))
        base[t:b, l:r] = blend(base[t:b, l:r], heat(patch, scale)[: b - t, : r - l])
    im = Image.fromarray(np.round(base * 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    font = _font(max(12, min(32, int(0.25 * (reading.characters[0].box[3] - reading.characters[0].box[1]) * k)))
                 if reading.characters else 14)
    for c in reading.characters:
        l, t, r, _ = (round(v * k) for v in c.box)
        draw.rectangle((l, t, r, round(c.box[3] * k)), outline=(47, 111, 223), width=2)
        draw.text((l + 2, max(0, t - font.size - 2) if hasattr(font, "size") else t), c.answer.label or "?",
                  fill=(200, 30, 30) if c.answer.status != "ok" else (30, 90, 200), font=font)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()
