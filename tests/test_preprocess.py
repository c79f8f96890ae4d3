"""preprocess(): every kind of input a person may hand us ends as the same MNIST-like 28x28 image.

The reference is a "7" drawn as white ink on black. Each test presents the same drawing
another way (dark on light, transparent, 16-bit, CMYK, rotated by EXIF, off-centre, tiny,
huge, noisy, in every supported format) and checks the model input barely changes.
"""

import functools
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digitrec.inference.preprocess import MAX_PIXELS, PreprocessError, preprocess

SEVEN = [(0.15, 0.1), (0.85, 0.1), (0.4, 0.95)]  # polyline of a "7", in units of its box


@functools.lru_cache(maxsize=1)
def _master() -> Image.Image:
    """The "7" drawn once, large: every test image is this drawing, resized and placed."""
    im = Image.new("L", (800, 800))
    ImageDraw.Draw(im).line([(800 * x, 800 * y) for x, y in SEVEN], fill=255, width=80, joint="curve")
    return im


def coverage(canvas=(300, 300), box=(80, 50, 180, 250)) -> np.ndarray:
    """The "7" filling `box` (left, top, right, bottom) on `canvas` (w, h): ink coverage in [0, 1]."""
    left, top, right, bottom = box
    glyph = _master().resize((right - left, bottom - top), Image.Resampling.BOX)  # anti-aliased
    im = Image.new("L", canvas)
    im.paste(glyph, (left, top))  # may hang over the edge: that part is cut off
    return np.asarray(im, np.float32) / 255.0


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def gray_image(cov: np.ndarray, ink: float = 0.0, paper: float = 1.0) -> Image.Image:
    return Image.fromarray(np.round(255 * (paper + (ink - paper) * cov)).astype(np.uint8), "L")


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    out = preprocess(encode(gray_image(coverage(), ink=1.0, paper=0.0)))
    assert not out.blank and not out.inverted
    return out.image


def _blur(a: np.ndarray) -> np.ndarray:
    for axis in (0, 1):
        a = (np.roll(a, 1, axis) + 2 * a + np.roll(a, -1, axis)) / 4
    return a


def diff(a: np.ndarray, b: np.ndarray) -> float:
    """How different two model inputs look: relative L1 distance (sum |a - b| over the sum of
    the larger) after a slight blur, at the best of the nine one-pixel shifts. Centring
    rounds to whole pixels, so the same drawing can land half a pixel apart; the blur and
    the shifts forgive that. The same drawing scores under 0.15; another one near 1."""
    a, b = _blur(a.astype(np.float64)), _blur(b.astype(np.float64))
    scale = max(a.sum(), b.sum(), 1.0)
    return min(float(np.abs(np.roll(a, (dy, dx), (0, 1)) - b).sum() / scale)
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def centre_of_mass(img: np.ndarray) -> tuple[float, float]:
    idx = np.arange(28)
    total = img.sum()
    return float(img.sum(1) @ idx / total), float(img.sum(0) @ idx / total)


# ----------------------------------------------------------------------------- MNIST geometry


def test_reference_has_mnist_geometry(reference):
    assert reference.shape == (28, 28) and reference.dtype == np.uint8
    rows = np.nonzero((reference >= 128).any(1))[0]
    cols = np.nonzero((reference >= 128).any(0))[0]
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    assert 19 <= height <= 21, "the longer side of the ink's box is 20 px, as in MNIST"
    assert width < height, "the aspect ratio is kept"
    cy, cx = centre_of_mass(reference)
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5, "centre of mass at (14, 14)"
    assert reference.max() >= 250, "stroke cores are full white, like MNIST's"
    assert reference[:, :2].max() == 0 and reference[:2].max() == 0, "a clean border"


def test_a_different_drawing_is_far_from_the_reference(reference):
    # Calibrates `diff`: another shape is far away, so the tests below can fail.
    other = coverage(box=(80, 50, 180, 250))[::-1].copy()  # the 7 upside down
    assert diff(preprocess(encode(gray_image(other, 1.0, 0.0))).image, reference) > 0.5


def test_output_is_a_fixed_point(reference):
    again = preprocess(encode(Image.fromarray(reference, "L"))).image
    assert diff(again, reference) < 0.05


# ----------------------------------------------------------------------------- polarity and colour


@pytest.mark.parametrize("ink,paper,inverted", [(0.0, 1.0, True), (0.2, 0.85, True), (1.0, 0.0, False),
                                                (0.9, 0.3, False)])
def test_polarity(reference, ink, paper, inverted):
    out = preprocess(encode(gray_image(coverage(), ink, paper)))
    assert out.inverted is inverted
    assert diff(out.image, reference) < 0.1


def test_colour_ink_on_tinted_paper(reference):
    cov = coverage()[..., None]
    rgb = np.array([250, 240, 200]) * (1 - cov) + np.array([20, 40, 160]) * cov  # blue pen, yellow paper
    out = preprocess(encode(Image.fromarray(rgb.round().astype(np.uint8), "RGB")))
    assert out.inverted and diff(out.image, reference) < 0.1


# ----------------------------------------------------------------------------- transparency


def rgba(cov: np.ndarray, colour, hidden=(0, 0, 0)) -> Image.Image:
    """Strokes of `colour` with alpha = coverage; fully transparent pixels hold `hidden`."""
    a = np.empty(cov.shape + (4,), np.uint8)
    a[..., :3] = np.where(cov[..., None] > 0, colour, hidden)
    a[..., 3] = np.round(cov * 255)
    return Image.fromarray(a, "RGBA")


@pytest.mark.parametrize("colour,hidden", [((0, 0, 0), (0, 0, 0)),  # canvas export: black on transparent black
                                           ((20, 20, 20), (255, 255, 255)),
                                           ((255, 255, 255), (0, 0, 0)),  # light strokes on transparent
                                           ((240, 240, 240), (255, 255, 255)),
                                           ((30, 60, 200), (123, 45, 67))])  # garbage under transparency
def test_strokes_on_transparent_background(reference, colour, hidden):
    out = preprocess(encode(rgba(coverage(), colour, hidden)))
    assert not out.blank
    assert diff(out.image, reference) < 0.1


def test_opaque_paper_with_transparent_margin(reference):
    cov = coverage()
    a = np.zeros(cov.shape + (4,), np.uint8)
    a[..., :3] = np.round(255 * (1 - cov))[..., None]  # dark ink on white paper...
    a[..., 3] = 255
    a[:, :40, 3] = 0  # ...with a transparent strip holding black
    a[:, :40, :3] = 0
    out = preprocess(encode(Image.fromarray(a, "RGBA")))
    assert diff(out.image, reference) < 0.1


def test_gray_with_alpha_and_palette_with_transparency(reference):
    cov = coverage()
    la = Image.fromarray(np.stack([np.zeros_like(cov), cov * 255], -1).round().astype(np.uint8), "LA")
    assert diff(preprocess(encode(la)).image, reference) < 0.1
    # A GIF-style palette image: index 0 transparent, index 1 black ink.
    p = Image.fromarray((cov > 0.5).astype(np.uint8), "P")
    p.putpalette([255, 0, 255, 0, 0, 0] + [0] * 762)
    out = preprocess(encode(p, "GIF", transparency=0))
    assert diff(out.image, reference) < 0.2  # binary ink: no anti-aliasing to begin with


def test_fully_transparent_is_blank():
    im = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    assert preprocess(encode(im)).blank


# ----------------------------------------------------------------------------- deep and odd modes


def test_16_bit_is_scaled_not_clipped(reference):
    cov = coverage()
    for ink, paper in ((2000, 60000), (300, 3000), (40000, 1000)):  # 300-3000: cut to 8 bits, all 255
        a = np.round(paper + (ink - paper) * cov).astype(np.uint16)
        im = Image.fromarray(a)
        assert im.mode == "I;16"
        for fmt in ("PNG", "TIFF"):
            out = preprocess(encode(im, fmt))
            assert not out.blank, (ink, paper, fmt)
            assert diff(out.image, reference) < 0.1, (ink, paper, fmt)


def test_32_bit_and_float_images(reference):
    cov = coverage()
    i32 = Image.fromarray(np.round(70000 * (1 - cov)).astype(np.int32), "I")
    f32 = Image.fromarray((0.25 * (1 - cov)).astype(np.float32), "F")
    for im in (i32, f32):
        assert diff(preprocess(encode(im, "TIFF")).image, reference) < 0.1, im.mode


def test_cmyk(reference):
    cov = coverage()
    cmyk = np.zeros(cov.shape + (4,), np.uint8)
    cmyk[..., 3] = np.round(255 * cov)  # black (K) ink on white
    im = Image.fromarray(cmyk, "CMYK")
    assert diff(preprocess(encode(im, "TIFF")).image, reference) < 0.1
    assert diff(preprocess(encode(im, "JPEG", quality=95)).image, reference) < 0.15


def test_palette_and_bilevel(reference):
    g = gray_image(coverage())
    assert diff(preprocess(encode(g.convert("P", palette=Image.Palette.ADAPTIVE, colors=16))).image, reference) < 0.1
    assert diff(preprocess(encode(g.convert("1"), "BMP")).image, reference) < 0.2


# ----------------------------------------------------------------------------- formats and orientation


@pytest.mark.parametrize("fmt,kw,tol", [("PNG", {}, 0.1), ("JPEG", {"quality": 85}, 0.15), ("GIF", {}, 0.1),
                                        ("BMP", {}, 0.1), ("WEBP", {"lossless": True}, 0.1),
                                        ("WEBP", {"quality": 80}, 0.15), ("TIFF", {}, 0.1)])
def test_formats(reference, fmt, kw, tol):
    out = preprocess(encode(gray_image(coverage()).convert("RGB"), fmt, **kw))
    assert out.format == fmt
    assert diff(out.image, reference) < tol


def test_gif_first_frame(reference):
    first, second = gray_image(coverage()), gray_image(coverage(box=(150, 150, 180, 200)))
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert diff(preprocess(data).image, reference) < 0.1


@pytest.mark.parametrize("orientation,stored", [(6, Image.Transpose.ROTATE_90), (3, Image.Transpose.ROTATE_180),
                                                (8, Image.Transpose.ROTATE_270), (2, Image.Transpose.FLIP_LEFT_RIGHT)])
def test_exif_orientation(reference, orientation, stored):
    upright = gray_image(coverage())
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(upright.transpose(stored), "JPEG", quality=95, exif=exif)
    assert diff(preprocess(data).image, reference) < 0.15
    plain = encode(upright.transpose(stored), "JPEG", quality=95)
    assert diff(preprocess(plain).image, reference) > 0.5  # so the orientation really was applied


def test_pil_image_and_path(reference, tmp_path):
    im = gray_image(coverage())
    assert diff(preprocess(im).image, reference) < 0.1
    path = tmp_path / "seven.png"
    im.save(path)
    out = preprocess(path)
    assert diff(out.image, reference) < 0.1 and out.size == (300, 300) and out.format == "PNG"


# ----------------------------------------------------------------------------- where and how big


@pytest.mark.parametrize("canvas,box", [((300, 300), (5, 5, 55, 105)),  # top-left corner, small
                                        ((400, 220), (330, 105, 385, 215)),  # bottom-right, wide canvas
                                        ((200, 600), (10, 100, 190, 460)),  # filling a narrow canvas
                                        ((300, 300), (-30, 40, 70, 240))])  # partly off the left edge
def test_position_and_scale_do_not_matter(reference, canvas, box):
    out = preprocess(encode(gray_image(coverage(canvas, box))))
    tol = 0.3 if box[0] < 0 else 0.1  # cut off by the edge: the visible part differs
    assert diff(out.image, reference) < tol
    if box[0] >= 0:
        left, top, right, bottom = out.box
        assert abs(left - box[0]) < 0.2 * (box[3] - box[1]) and abs(bottom - box[3]) < 0.1 * (box[3] - box[1])


def test_tiny_images(reference):
    small = gray_image(coverage((300, 300), (80, 50, 180, 250))).crop((60, 30, 200, 270)).resize((12, 20))
    out = preprocess(encode(small))
    assert not out.blank and diff(out.image, reference) < 0.35
    rows = np.nonzero((out.image >= 128).any(1))[0]
    assert 18 <= rows[-1] - rows[0] + 1 <= 22, "upscaled so the box is 20 px"
    for size in ((1, 1), (3, 2)):
        assert preprocess(encode(Image.new("L", size, 255))).blank


def test_huge_image(reference):
    cov = coverage((300, 300)).repeat(12, 0).repeat(12, 1)  # 3600 x 3600 pixels, 13 MP
    data = encode(gray_image(cov), "JPEG", quality=90)
    out = preprocess(data)
    assert out.size == (3600, 3600)
    assert diff(out.image, reference) < 0.15
    with pytest.raises(PreprocessError) as e:
        preprocess(data, max_pixels=10_000_000)
    assert e.value.kind == "too_many_pixels" and "10,000,000" in str(e.value)


@pytest.mark.parametrize("width", [1, 2, 6])
def test_fine_pen_on_a_big_page_is_thickened(reference, width):
    """A 1-6 px line on a 400 px tall digit would shrink to a faint trace 0.05-0.3 px wide."""
    im = Image.new("L", (600, 600), 255)
    ImageDraw.Draw(im).line([(150 + 200 * x, 80 + 400 * y) for x, y in SEVEN], fill=30, width=width,
                            joint="curve")
    out = preprocess(encode(im))
    assert not out.blank and out.image.max() >= 250
    assert (out.image >= 128).sum() >= (reference >= 128).sum(), "strokes at least as solid as the reference"
    assert diff(out.image, reference) < 0.7, "and still the same 7 (upside down scores 1.2)"


# ----------------------------------------------------------------------------- blank and noise


@pytest.mark.parametrize("make", [lambda: Image.new("L", (300, 300), 255), lambda: Image.new("L", (300, 300), 0),
                                  lambda: Image.new("RGB", (300, 300), (120, 130, 140)),
                                  lambda: gray_image(np.clip(np.random.default_rng(0).normal(0, 0.02, (300, 300)),
                                                             0, 1)),  # paper grain only
                                  lambda: gray_image(np.pad(np.ones((1, 1)), ((150, 149), (150, 149))))])  # one speck
def test_blank(make):
    out = preprocess(encode(make()))
    assert out.blank and out.box is None and not out.image.any()


def test_paper_noise_and_specks_are_ignored(reference):
    rng = np.random.default_rng(1)
    cov = coverage()
    paper = 0.92 + rng.normal(0, 0.04, cov.shape)  # grainy gray paper
    img = paper + (0.1 - paper) * cov
    ys, xs = rng.integers(0, 300, 40), rng.integers(0, 300, 40)
    img[ys, xs] = 0.1  # pencil dust everywhere
    img[5:8, 280:283] = 0.1  # and a bigger speck in a far corner
    out = preprocess(encode(Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8), "L")))
    assert out.inverted
    assert diff(out.image, reference) < 0.1
    assert out.box[2] < 200 and out.box[1] > 30, "the specks did not stretch the ink's box"


# ----------------------------------------------------------------------------- bad input and limits


def png_claiming(width: int, height: int) -> bytes:
    """A valid little PNG whose header declares a huge image: a decompression bomb's shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000, 9)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("data,kind,words", [
    (b"", "empty", "empty"),
    (b"hello, this is text", "unsupported", "PNG, JPEG"),
    (b"%PDF-1.4\n" + b"x" * 100, "unsupported", "supported format"),
    (png_claiming(100_000, 100_000), "too_many_pixels", "pixels"),  # Pillow's own bomb limit
    (png_claiming(10_000, 5_000), "too_many_pixels", f"{MAX_PIXELS:,}"),  # ours
])
def test_bad_bytes(data, kind, words):
    with pytest.raises(PreprocessError) as e:
        preprocess(data)
    assert e.value.kind == kind and words in str(e.value)


def test_truncated_and_damaged():
    data = encode(gray_image(coverage()))
    with pytest.raises(PreprocessError) as e:
        preprocess(data[: len(data) // 2])
    assert e.value.kind == "damaged" and "truncated" in str(e.value)
    broken = bytearray(encode(gray_image(coverage()), "JPEG"))
    broken[200:400] = b"\xff" * 200
    try:
        out = preprocess(bytes(broken))  # libjpeg may recover a damaged JPEG, or refuse it
        assert out.image.shape == (28, 28)
    except PreprocessError as e:
        assert e.kind in ("damaged", "unsupported")


def test_byte_limit(tmp_path):
    data = encode(gray_image(coverage()))
    with pytest.raises(PreprocessError) as e:
        preprocess(data, max_bytes=len(data) - 1)
    assert e.value.kind == "too_large"
    path = tmp_path / "big.png"
    path.write_bytes(data)
    with pytest.raises(PreprocessError, match="limit"):
        preprocess(path, max_bytes=100)
    with pytest.raises(PreprocessError, match="folder"):
        preprocess(tmp_path)
    with pytest.raises(PreprocessError, match="no such file"):
        preprocess(tmp_path / "missing.png")


def test_preview_png(reference):
    out = preprocess(encode(Image.fromarray(reference, "L")))
    again = Image.open(io.BytesIO(out.png()))
    assert again.size == (28, 28) and np.array_equal(np.asarray(again), out.image)
    assert Image.open(io.BytesIO(out.png(scale=4))).size == (112, 112)
