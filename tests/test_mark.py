"""The handwritten mark in a document's cell (issue "world's handwriting", item 3): frames,
rules and underlines are no digit, and a caption, a neighbour's word or a full stop beside the
digit are left out of its box; the pieces of one broken digit stay together."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digitrec.ink import EDGE, ink_map
from digitrec.marks import choose_mark
from digitrec.inference.preprocess import preprocess
from synth import draw_text


def page(size=(420, 260)) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    im = Image.new("L", size, 238)
    return im, ImageDraw.Draw(im)


def digit_at(im: Image.Image, text: str, at: tuple[int, int], height: int = 120) -> tuple[int, int, int, int]:
    """Paste a handwritten-style number; its box in the image."""
    drawn = draw_text([text], height=height, margin=4)
    im.paste(drawn, at, Image.eval(drawn, lambda v: 255 - v))
    rows, cols = np.nonzero(np.asarray(drawn) < 128)
    return at[0] + cols.min(), at[1] + rows.min(), at[0] + cols.max() + 1, at[1] + rows.max() + 1


def inside(box, region, slack=6) -> bool:
    return (box[0] >= region[0] - slack and box[1] >= region[1] - slack and box[2] <= region[2] + slack
            and box[3] <= region[3] + slack)


def test_a_digit_in_a_captioned_form_box_is_read_alone():
    im, d = page()
    d.rectangle((150, 40, 380, 230), outline=20, width=4)  # the form's printed box
    font = ImageFont.load_default(size=28)
    d.text((20, 110), "Qty", fill=30, font=font)  # its printed caption
    digit = digit_at(im, "3", (230, 70))
    pre = preprocess(im)
    assert inside(pre.box, digit), (pre.box, digit)


def test_rules_an_underline_and_a_full_stop_are_left_out():
    im, d = page()
    d.line((8, 0, 8, 259), fill=25, width=3)  # a register's column rules
    d.line((410, 0, 410, 259), fill=25, width=3)
    digit = digit_at(im, "7", (150, 40))
    d.line((120, digit[3] + 10, 300, digit[3] + 12), fill=30, width=4)  # an underline
    d.ellipse((digit[2] + 30, digit[3] - 14, digit[2] + 42, digit[3] - 2), fill=30)  # a full stop
    pre = preprocess(im)
    assert inside(pre.box, digit), (pre.box, digit)


def test_the_pieces_of_one_broken_digit_stay_together():
    im, _ = page((300, 300))
    digit = digit_at(im, "5", (90, 60), height=160)
    a = np.asarray(im).copy()
    a[digit[1] + 40 : digit[1] + 46, :] = 238  # a gap across the digit: two pieces
    ink, blank, _ = ink_map(a.astype(np.float32) / 255)
    mark = choose_mark(ink)
    assert not blank and (mark >= EDGE).sum() == (ink >= EDGE).sum(), "nothing of the digit is dropped"


def test_a_lone_digit_is_left_as_it_is():
    im, _ = page()
    digit_at(im, "8", (150, 60))
    ink, _, _ = ink_map(np.asarray(im, np.float32) / 255)
    assert choose_mark(ink) is ink
