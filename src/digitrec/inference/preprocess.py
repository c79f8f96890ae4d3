"""One preprocessing function: any user image -> the 28x28 input the model saw in training.

The CLI (`digitrec predict`), the HTTP API and the web page all call `preprocess()`.
MNIST digits were made like this (LeCun et al.): the ink's bounding box scaled, keeping
its aspect ratio, so that its longer side is 20 pixels, with anti-aliasing; then the
20x20 patch placed in a 28x28 field so that its centre of mass lands on the centre
(pixel index 14; the training set's mean is 13.996 +- 0.29). White ink on black.

The steps, in order (the first three in decode.py, the rest in ink.py):
  decode       PNG, JPEG, GIF (first frame), BMP, WebP, TIFF, HEIC; byte, pixel and memory limits first
  orient       EXIF orientation, so phone photos are upright
  composite    transparency over a background that contrasts with the visible strokes;
               palette, 16-bit, CMYK, ... -> float values in [0, 1], never clipped
  analyse      photos are block-averaged to at most 640 px a side to find the ink
  polarity     dark ink on light paper, unless light ink clearly dominates a dark background;
               a large, solid light region (a sheet on a dark table) is paper
  paper        a grey opening wider than three strokes models the paper where it is, so
               lighting, shadows and dark surroundings drop out; dark ink's contrast is
               divided by the light falling on it (flat-fielding)
  noise        a floor of 3 sigmas of the noise, measured from second differences (ink
               filling the frame is not noise); `blank` below a 12% contrast
  clean        rule lines removed except where strokes cross them; things along the image
               edge (scan margins, table strips, form frames) removed; specks dropped
  thicken      strokes much thinner than MNIST's (fine pen, big photo) are widened
  fit          the ink's box (its 50% coverage edge) scaled to 20 px, anti-aliased
  centre       integer shift putting the centre of mass at (14, 14) in 28x28
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..errors import PreprocessError  # noqa: F401  (re-exported: what preprocess raises)
from ..ink import PREPARATION, SIZE, Preparation, ink_map, noise_sigma
from ..marks import choose_mark, fit, ink_box, thicken
from .decode import MAX_BYTES, MAX_PIXELS, Decoded, decode


@dataclass
class Preprocessed:
    image: np.ndarray  # (28, 28) uint8, white ink on black: exactly what the model sees
    blank: bool  # no ink found; `image` is all zeros
    inverted: bool  # the input was dark ink on a light background
    box: tuple[int, int, int, int] | None  # the ink's (left, top, right, bottom) in the original's pixels
    decoded: Decoded = field(repr=False)  # the one decode of the image: explanations and previews draw on it
    found_ink: bool = False  # ink was found, but nothing character-sized survived (noise, a dot)

    @property
    def size(self) -> tuple[int, int]:
        """The original image's (width, height), after EXIF rotation."""
        return self.decoded.size

    @property
    def format(self) -> str | None:
        return self.decoded.format

    def png(self, scale: int = 1) -> bytes:
        """The model input as a PNG, optionally scaled up with square pixels for people."""
        im = Image.fromarray(self.image, "L")
        if scale > 1:
            im = im.resize((SIZE * scale, SIZE * scale), Image.Resampling.NEAREST)
        buf = io.BytesIO()
        im.save(buf, "PNG")
        return buf.getvalue()


def preprocess(source, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS,
               prep: Preparation = PREPARATION) -> Preprocessed:
    """Any image (bytes, a path, a PIL image or a Decoded) -> the 28x28 model input, or PreprocessError."""
    decoded = decode(source, max_bytes, max_pixels)
    gray = decoded.gray(prep.analysis)
    ink, blank, inverted = ink_map(gray, prep)
    if not blank:
        ink = choose_mark(ink, prep)  # the handwritten mark alone, where the crop holds more
    box = None if blank else ink_box(ink, prep)
    if box is None or max(box[2] - box[0], box[3] - box[1]) < 2:  # a dot is not a character
        # Ink that left nothing (specks, a frame) or a page of noise is no blank page: "no digit found".
        noisy = blank and prep.noise_sigmas * noise_sigma(gray) >= prep.min_contrast
        return Preprocessed(np.zeros((SIZE, SIZE), np.uint8), True, inverted, None, decoded,
                            found_ink=not blank or noisy)
    image = np.round(fit(*thicken(ink, box, prep)) * 255).astype(np.uint8)
    # The box in the original's pixels (the analysis may have run on a shrunk copy).
    size = decoded.size
    k = size[0] / gray.shape[1], size[1] / gray.shape[0]
    orig_box = (int(box[0] * k[0]), int(box[1] * k[1]), min(size[0], int(np.ceil(box[2] * k[0]))),
                min(size[1], int(np.ceil(box[3] * k[1]))))
    return Preprocessed(image, not image.any(), inverted, orig_box, decoded, found_ink=not image.any())
