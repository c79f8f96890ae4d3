"""Decoding in bounded memory: the decoded-bytes budget per image and for the whole process,
the strip-wise shrink, and the worst case of issue 13 (a 100 KB 16-bit PNG of 6300x6300
that took a gigabyte) measured in a fresh process."""

from __future__ import annotations

import io
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image, ImageDraw

from digitrec.errors import PreprocessError
from digitrec.inference import decode as dec
from digitrec.inference.preprocess import preprocess


def drawing(mode: str, size: int, paper, ink) -> Image.Image:
    im = Image.new(mode, (size, size), paper)
    ImageDraw.Draw(im).line([(size // 3, size // 5), (size // 2, 4 * size // 5)], fill=ink, width=size // 40)
    return im


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def test_cost_counts_bytes_per_pixel_and_decoder_copies():
    analysis = dec.analysis_bytes((500, 400))
    assert dec.decoded_cost(encode(Image.new("L", (500, 400)))) == 500 * 400 + analysis
    assert dec.decoded_cost(encode(Image.new("I;16", (500, 400)))) == 500 * 400 * 2 + analysis
    assert dec.decoded_cost(encode(Image.new("RGB", (500, 400)))) == 500 * 400 * 4 + analysis  # RGB in 4 bytes
    webp = dec.decoded_cost(encode(Image.new("RGB", (500, 400)), "WEBP"))
    assert webp == 500 * 400 * 4 * dec.COPIES["WEBP"] + analysis
    big = dec.decoded_cost(encode(Image.new("RGB", (4000, 3000)), "JPEG"))
    assert big < 4000 * 3000 * 4 + dec.analysis_bytes((4000, 3000)), "JPEGs are decoded at a reduced scale"
    assert dec.decoded_cost(b"not an image") == 0


def test_a_thread_holding_its_cost_is_not_charged_twice():
    budget = dec.DecodeBudget(100, wait=0.05)
    with budget.hold(80):
        with budget.hold(60):  # preprocess's decode inside the server's hold
            assert budget.used == 80
        with budget.hold(90):  # asks for more: only the difference
            assert budget.used == 90
    assert budget.used == 0


def test_an_image_over_the_budget_is_refused_before_decoding():
    data = encode(drawing("RGBA", 3000, (230, 230, 220, 255), (20, 20, 20, 255)))
    with pytest.raises(PreprocessError) as e:
        dec.decode(data, max_decoded=20 * 2**20)
    assert e.value.kind == "too_many_pixels" and "would take 55 MB" in str(e.value) and "limit is 20 MB" in str(e.value)
    assert dec.BUDGET.used == 0


def test_big_images_are_shrunk_to_the_work_size_with_the_same_answer():
    """A 16-bit, a palette and an RGBA image of 5000x5000 come back at most WORK_SIZE a side,
    and preprocess finds the same ink in each, and about what it finds in a copy drawn at
    1000x1000 (lines drawn at two scales differ a little)."""
    small = preprocess(encode(drawing("L", 1000, 230, 20)))
    outs = []
    for im in (drawing("I;16", 5000, 50000, 3000), drawing("L", 5000, 230, 20).convert("P"),
               drawing("RGBA", 5000, (230, 230, 220, 255), (20, 20, 20, 255))):
        decoded = dec.decode(encode(im))
        assert max(decoded.image.size) <= dec.WORK_SIZE and decoded.size == (5000, 5000)
        assert abs(decoded.scale * decoded.image.size[0] - 5000) < 1
        pre = preprocess(encode(im))
        assert pre.size == (5000, 5000)
        assert np.abs(pre.image.astype(int) - small.image.astype(int)).mean() < 16, im.mode
        assert [abs(a - 5 * b) <= 30 for a, b in zip(pre.box, small.box)] == [True] * 4, (pre.box, small.box)
        outs.append(pre.image.astype(int))
    assert max(np.abs(o - outs[0]).mean() for o in outs) < 2


def test_exif_orientation_is_applied_after_the_shrink():
    im = drawing("L", 3000, 230, 20).crop((0, 0, 3000, 2000))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    decoded = dec.decode(encode(im, "JPEG", exif=exif))
    assert decoded.image.size[0] < decoded.image.size[1], "upright: taller than wide"
    assert decoded.size == (2000, 3000), "the original's size, upright"


def test_the_process_wide_budget_holds_across_threads(monkeypatch):
    """Four threads decode 2000x2000 RGBA images (about 36 MB each, with the shrunk copies)
    under a 48 MB budget: they take turns, and the bytes held never pass the budget."""
    budget = dec.DecodeBudget(48 * 2**20)
    monkeypatch.setattr(dec, "BUDGET", budget)
    data = encode(drawing("RGBA", 2000, (230, 230, 220, 255), (20, 20, 20, 255)))
    need = dec.decoded_cost(data) - dec.analysis_bytes((2000, 2000))  # decode() holds the decoding alone
    assert budget.total / 2 < need <= budget.total
    errors = []

    def work():
        try:
            dec.decode(data)
        except Exception as e:  # noqa: BLE001  reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and budget.used == 0
    assert budget.peak == need, "one at a time: two would not fit"


def test_a_full_budget_says_busy():
    budget = dec.DecodeBudget(100, wait=0.05)
    errors = []

    def other():
        try:
            with budget.hold(30):
                pass
        except dec.PreprocessError as e:
            errors.append(e)

    with budget.hold(80):
        t = threading.Thread(target=other)
        t.start()
        t.join(30)
    assert [e.kind for e in errors] == ["busy"] and budget.used == 0


def test_issue_13_worst_case_png_in_bounded_memory(tmp_path):
    """The 16-bit 6300x6300 PNG: about 80 MB decoded, so its peak must stay under the
    process budget (it was about a gigabyte when decoding converted it to float64)."""
    path = tmp_path / "worst.png"
    path.write_bytes(encode(drawing("I;16", 6300, 50000, 3000)))
    code = ("import resource, sys\nfrom digitrec.inference.preprocess import preprocess\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "pre = preprocess(sys.argv[1])\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024, pre.box is not None)")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    grown, found = proc.stdout.split()
    assert found == "True"
    assert int(grown) < dec.MAX_DECODED, f"decoding took {int(grown) / 2**20:.0f} MB more"
