"""The README's screenshots of the page, from a real `digitrec serve` (the packaged model) in
Debian's headless Chromium: docs/canvas.png (a digit drawn with the mouse, the answer explained
with the runner-up, and the correction control of `serve --collect`), docs/upload.png (a photo
of a handwritten digit, with the box of ink the model read) and docs/number.png (number mode:
a whole number written along the wide pad, its digits touching, a box and label per digit, and
a correction control per digit), and the same at a phone's width (390 x 844): docs/phone.png (a
digit drawn with a finger) and docs/phone-number.png.

    python benchmarks/screenshots.py [--out docs]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from _common import server

# Strokes of digits in a unit box, for the number mode's 840 x 280 pad.
NUMBER = {"2": [[(0.1, 0.25), (0.35, 0.02), (0.72, 0.05), (0.85, 0.3), (0.55, 0.62), (0.08, 1.0), (0.95, 0.98)]],
          "0": [[(0.5, 0.0), (0.12, 0.2), (0.05, 0.55), (0.2, 0.9), (0.5, 1.0), (0.82, 0.85), (0.95, 0.45),
                 (0.8, 0.1), (0.5, 0.0)]],
          "6": [[(0.8, 0.02), (0.3, 0.3), (0.1, 0.7), (0.35, 1.0), (0.75, 0.9), (0.8, 0.6), (0.4, 0.5), (0.12, 0.7)]]}


def draw(page, strokes, width: int) -> None:
    """Mouse strokes given in pad pixels (the pad is `width` x 280)."""
    box = page.locator("#pad").bounding_box()
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0] * box["width"] / width, box["y"] + stroke[0][1] * box["height"] / 280)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * box["width"] / width, box["y"] + y * box["height"] / 280, steps=6)
        page.mouse.up()

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]
THREE = [[(95, 70), (140, 52), (185, 70), (185, 110), (140, 135)], [(140, 135), (190, 160), (190, 210),
                                                                     (140, 232), (92, 215)]]


def photo() -> bytes:
    """A phone photo of a 4 written with a felt pen on lined paper, lit from one side."""
    rng = np.random.default_rng(3)
    w, h = 1600, 1200
    light = 200 + 40 * np.linspace(1, 0, w)[None, :] * np.linspace(0.8, 1, h)[:, None]
    paper = np.stack([light, light * 0.98, light * 0.93], -1) + rng.normal(0, 2.5, (h, w, 1))
    im = Image.fromarray(np.clip(paper, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for y in range(90, h, 95):  # ruled lines
        d.line([(0, y), (w, y)], fill=(150, 170, 205), width=3)
    ink = (30, 32, 70)
    d.line([(1010, 330), (900, 690), (1190, 680)], fill=ink, width=30, joint="curve")
    d.line([(1120, 450), (1105, 930)], fill=ink, width=30, joint="curve")
    im = im.filter(ImageFilter.GaussianBlur(1.2))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=88)
    return buf.getvalue()


def wait(page, attr: str, value: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while page.get_attribute("body", attr) != value:
        if time.monotonic() > deadline:
            raise SystemExit(f"the page did not reach {attr}={value}")
        page.wait_for_timeout(50)


def settle(page) -> None:
    page.wait_for_timeout(600)
    wait(page, "data-pending", "0")
    page.wait_for_timeout(300)


def phone(browser, base: str, out: Path) -> None:
    """The page at a phone's width: a digit, then a number, drawn with a finger."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    page = context.new_page()
    page.goto(base + "/")
    wait(page, "data-ready", "1")
    draw(page, THREE, 280)
    settle(page)
    print("phone:", page.inner_text("#label"), page.inner_text("#detail"), file=sys.stderr)
    page.screenshot(path=str(out / "phone.png"), full_page=True)
    page.click("#clear")
    page.click("#kind-number")
    for k, digit in enumerate("2026"):
        draw(page, [[(120 + 160 * k + 80 * x, 50 + 180 * y) for x, y in stroke] for stroke in NUMBER[digit]], 840)
    settle(page)
    print("phone number:", page.inner_text("#label"), page.inner_text("#detail"), file=sys.stderr)
    page.screenshot(path=str(out / "phone-number.png"), full_page=True)
    context.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    import tempfile

    with tempfile.TemporaryDirectory() as collect, server("--collect", collect) as (base, _, health), \
            sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 900, "height": 900})
        page.goto(base + "/")
        wait(page, "data-ready", "1")
        draw(page, THREE, 280)
        page.wait_for_timeout(600)
        wait(page, "data-pending", "0")
        page.wait_for_timeout(300)
        print("drawn:", page.inner_text("#label"), page.inner_text("#detail"), file=sys.stderr)
        page.screenshot(path=str(args.out / "canvas.png"), full_page=True)
        page.click("#clear")
        path = args.out / "my-four.jpg"
        path.write_bytes(photo())
        try:
            page.set_input_files("#file", str(path))
            page.wait_for_timeout(300)
            wait(page, "data-pending", "0")
            page.wait_for_timeout(300)
        finally:
            path.unlink()
        print("photo:", page.inner_text("#label"), page.inner_text("#detail"), file=sys.stderr)
        page.screenshot(path=str(args.out / "upload.png"), full_page=True)
        page.click("#clear")
        page.click("#kind-number")
        for k, digit in enumerate("2026"):  # written close: the strokes of neighbours touch
            draw(page, [[(190 + 92 * k + 90 * x, 50 + 180 * y) for x, y in stroke] for stroke in NUMBER[digit]], 840)
        page.wait_for_timeout(600)
        wait(page, "data-pending", "0")
        page.wait_for_timeout(300)
        print("number:", page.inner_text("#label"), page.inner_text("#detail"), file=sys.stderr)
        page.screenshot(path=str(args.out / "number.png"), full_page=True)
        phone(browser, base, args.out)
        browser.close()
    print(f"wrote canvas.png, upload.png, number.png, phone.png and phone-number.png in {args.out} "
          f"({health['checkpoint']}, "
          f"{health.get('test_accuracy')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
