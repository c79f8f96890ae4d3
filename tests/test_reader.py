"""Reading whole numbers: characters found, merged, split, ordered and read, with their boxes,
through the library, the command line and (test_api.py) the HTTP API."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from digitrec.cli.main import main
from digitrec.inference.predictor import Predictor
from digitrec.inference.reader import characters, lines, pieces, read
from synth import draw_text


@pytest.fixture(scope="module")
def shipped():
    return Predictor()


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def test_digits_with_clear_gaps_are_read_in_order_with_their_boxes(shipped):
    im = draw_text(["0123456789"])
    r = read(png(im), shipped)
    assert r.text == "0123456789" and r.status == "ok" and r.lines == [10]
    lefts = [c.box[0] for c in r.characters]
    assert lefts == sorted(lefts)
    ink = np.asarray(im) < 128
    for c in r.characters:  # each box holds ink and the boxes do not overlap
        left, top, right, bottom = c.box
        assert ink[top:bottom, left:right].any() and 0 <= left < right <= im.width and 0 <= top < bottom <= im.height
    assert all(a.box[2] <= b.box[0] for a, b in zip(r.characters, r.characters[1:]))
    assert r.confidence == pytest.approx(float(np.prod([c.answer.confidence for c in r.characters])))


def test_a_two_stroke_4_and_a_5_with_its_bar_apart_are_one_character_each(shipped):
    im = draw_text(["45"])
    ink = np.asarray(im, np.float32) < 128
    found = pieces(ink.astype(np.float32))
    assert len(found) == 4, "the 4 and the 5 are each drawn in two separate strokes"
    (row,) = lines(found)
    assert len(characters(row)) == 3, "the 5's bar shares its body's columns; the 4's stem stands apart"
    r = read(png(im), shipped)
    assert r.text == "45" and len(r.characters) == 2


def test_several_lines_are_read_top_to_bottom(shipped):
    r = read(png(draw_text(["12", "345"])), shipped)
    assert r.text == "12\n345" and r.lines == [2, 3]
    assert max(c.box[3] for c in r.characters[:2]) < min(c.box[1] for c in r.characters[2:])


def test_a_blank_page_reads_nothing(shipped):
    r = read(png(Image.new("L", (400, 200), 250)), shipped)
    assert (r.text, r.status, r.confidence, r.characters) == ("", "blank", None, [])


def test_nothing_assumes_digits(synth_run, tmp_path):
    """A model whose classes are letters reads letters: the labels come from its card."""
    from digitrec.card import ModelCard
    from digitrec.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(synth_run / "best.pt")
    card = ModelCard("letters", tuple("ABCDEFGHIJ"), ckpt.card.mean, ckpt.card.std, calibrated=True)
    save_checkpoint(tmp_path / "letters.pt", ckpt.build(), ckpt.name, ckpt.model["args"],
                    {**ckpt.meta, "card": card.to_json()})
    r = read(png(draw_text(["17"])), Predictor(tmp_path / "letters.pt"))
    assert len(r.text) == 2 and set(r.text) <= set("ABCDEFGHIJ")
    assert set(r.characters[0].answer.probabilities) == set("ABCDEFGHIJ")


def test_read_command_json_csv_and_text(tmp_path, capsys):
    draw_text(["2026"]).save(tmp_path / "year.png")
    Image.new("L", (300, 200), 255).save(tmp_path / "empty.png")
    assert main(["read", str(tmp_path), "--json"]) == 0
    rows = {json.loads(line)["path"]: json.loads(line) for line in capsys.readouterr().out.splitlines()}
    year, empty = rows[str(tmp_path / "year.png")], rows[str(tmp_path / "empty.png")]
    assert year["text"] == "2026" and year["status"] == "ok" and 0 < year["confidence"] <= 1
    assert [c["label"] for c in year["characters"]] == list("2026")
    assert all(len(c["box"]) == 4 and len(c["probabilities"]) == 10 for c in year["characters"])
    assert empty["status"] == "blank" and empty["text"] == "" and empty["characters"] == []
    assert main(["read", str(tmp_path / "year.png"), "--csv"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("path,status,text,confidence,line,position,left,top,right,bottom,char_status")
    assert len(table) == 5 and all(row.split(",")[2] == "2026" for row in table[1:])
    assert main(["read", str(tmp_path / "year.png")]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'year.png'}: 2026  (")


def test_read_explains_and_takes_standard_input(tmp_path, capsys):
    draw_text(["57"]).save(tmp_path / "n.png")
    assert main(["read", str(tmp_path / "n.png"), "--explain", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    picture = Image.open(row["explanation"])
    assert row["explanation"] == str(tmp_path / "n.png.explain.png") and picture.size[0] > 0
    proc = subprocess.run([sys.executable, "-m", "digitrec", "read", "-", "--json"], input=(tmp_path / "n.png").read_bytes(),
                          capture_output=True, timeout=120)
    assert proc.returncode == 0 and json.loads(proc.stdout)["text"] == "57", proc.stderr
