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
from digitrec.inference.find import group_lines, merge_pieces, pieces
from digitrec.inference.reader import read
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
    (row,) = group_lines(found)
    assert len(merge_pieces(row)) == 3, "the 5's bar shares its body's columns; the 4's stem stands apart"
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


def test_an_image_holding_more_than_a_reading_takes_is_refused_in_words(shipped):
    """Bounded work (issue 23): pieces, lines and candidate characters are counted before the
    work they cost, and an image over a limit is refused with the count, the limit and the fix."""
    from digitrec.errors import PreprocessError, TooMuchInk
    from digitrec.inference.find import Limits
    from synth import many_strokes_png, random_dots_png

    for image, what in ((many_strokes_png(), "1,600 pieces of ink"), (random_dots_png(), "pieces of ink")):
        with pytest.raises(TooMuchInk) as e:
            read(image, shipped)
        assert what in str(e.value) and "--max-characters" in str(e.value) and e.value.found > e.value.allowed
        assert isinstance(e.value, PreprocessError) and e.value.kind == "too_much_ink"
    eleven = png(draw_text(["7"] * 11, height=60))
    with pytest.raises(TooMuchInk, match="11 lines, more than one reading takes on \\(at most 10 "):
        read(eleven, shipped)
    assert read(eleven, shipped, limits=Limits(44)).text == "\n".join(["7"] * 11)
    touching = png(draw_text(["00"], gap=-0.1))  # one piece, tried cut at 6 places: 28 candidates
    with pytest.raises(TooMuchInk, match="28 candidate characters, more than one reading takes on \\(at most 25 "):
        read(touching, shipped, limits=Limits(1))
    assert len(read(touching, shipped, limits=Limits(2)).characters) == 2


def test_read_command_refuses_too_much_ink_with_code_2_and_lifts_the_limit(tmp_path, capsys):
    draw_text(["7"] * 11, height=60).save(tmp_path / "eleven.png")
    draw_text(["2026"]).save(tmp_path / "year.png")
    assert main(["read", str(tmp_path), "--json"]) == 2, "one image over the limit: code 2, the other still read"
    rows = {json.loads(line)["path"]: json.loads(line) for line in capsys.readouterr().out.splitlines()}
    assert rows[str(tmp_path / "year.png")]["text"] == "2026"
    refused = rows[str(tmp_path / "eleven.png")]
    assert refused["status"] == "error" and "11 lines" in refused["error"] and "--max-characters" in refused["error"]
    assert main(["read", str(tmp_path / "eleven.png"), "--max-characters", "44"]) == 0
    assert capsys.readouterr().out.split()[1] == "7"
    assert main(["read", str(tmp_path / "year.png"), "--max-characters", "0"]) == 2
    assert "max_characters must be at least 1" in capsys.readouterr().err


def test_a_digit_count_or_a_pattern_chooses_among_the_readings(shipped):
    """--digits / --pattern (issue 23): the reading chosen has what was asked for, where one can be
    read; where none can, the text is unsure and says why."""
    from digitrec.inference.expect import expect

    year = png(draw_text(["2026"]))
    assert read(year, shipped).text == "2026"
    for n in (3, 5):  # the dynamic programme's best split into n characters
        r = read(year, shipped, expected=expect(n))
        assert len(r.text) == n and r.lines == [n] and r.reason is None
    r = read(year, shipped, expected=expect(pattern=r"\d{4}"))
    assert (r.text, r.status, r.reason) == ("2026", "ok", None)
    r = read(year, shipped, expected=expect(pattern=r"19\d\d"))
    assert r.text == "2026" and r.status == "unsure"
    assert r.reason == r"no reading of line 1 matches the pattern 19\d\d (read: 2026)" and r.reason in r.describe()


def test_patterns_match_as_regular_expressions_do_and_bad_ones_are_refused_in_words():
    import random
    import re

    from digitrec.errors import UserError
    from digitrec.inference.expect import expect

    rng = random.Random(0)
    for p in (r"\d{4}", r"\d{3,6}", r"^19\d\d$", r"[0-3]\d/[01]\d", r"7?2*3+", r"[^0]\d{2,}", r".{2}", r"1\.5"):
        e = expect(pattern=p)
        for _ in range(300):
            s = "".join(rng.choice("0123719/.x") for _ in range(rng.randint(0, 7)))
            assert e.matches(s) == bool(re.fullmatch(p, s)), (p, s)
    assert expect(digits=4).matches("ABCD") and not expect(digits=4).matches("123")  # characters, not only digits
    assert expect() is None
    for kw, words in (({"pattern": r"(\d)+"}, "'(' at position 1"), ({"pattern": "a|b"}, "'|' at position 2"),
                      ({"pattern": "[0-9"}, "'[' has no ']'"), ({"pattern": r"\w"}, r"'\w' is not supported"),
                      ({"pattern": r"\d{5,2}"}, "{5,2} is empty"), ({"digits": 0}, "--digits must be 1 to 100"),
                      ({"digits": 4, "pattern": r"\d{4}"}, "not both")):
        with pytest.raises(UserError, match=re.escape(words)):
            expect(**kw)


def test_read_command_takes_digits_and_pattern(tmp_path, capsys):
    draw_text(["2026"]).save(tmp_path / "year.png")
    assert main(["read", str(tmp_path / "year.png"), "--digits", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["text"]) == 3
    assert main(["read", str(tmp_path / "year.png"), "--pattern", r"19\d\d", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["status"] == "unsure" and "matches the pattern 19\\d\\d" in row["reason"]
    assert main(["read", str(tmp_path / "year.png"), "--pattern", "(1|2)"]) == 2
    assert "--pattern '(1|2)': '(' at position 1 is not supported" in capsys.readouterr().err
    assert main(["read", str(tmp_path / "year.png"), "--digits", "101"]) == 2
    assert "--digits must be 1 to 100, not 101" in capsys.readouterr().err
