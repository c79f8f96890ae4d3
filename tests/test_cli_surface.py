"""What the command line shows and reads, beyond the answers: every option's default in
--help, `-` for standard input, regular files only (FIFOs and devices refused without
reading them), skipped folder entries listed with why, previews that keep the extension,
and `evaluate` given an ONNX file. No traceback anywhere."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading

import pytest
from PIL import Image

from digitrec.cli.main import build_parser, main
from synth import render


def subcommands():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("name", ["fetch", "train", "evaluate", "predict", "serve", "export", "finetune", "train-lines"])
def test_help_shows_every_default(name):
    p = subcommands()[name]
    text = p.format_help()
    assert "(default: None)" not in text
    for action in p._actions:
        if not action.option_strings or action.required or isinstance(action, (
                argparse._HelpAction, argparse._StoreTrueAction, argparse._StoreFalseAction,
                argparse._AppendAction)):
            continue
        help_text = p._get_formatter()._expand_help(action) if action.help else ""
        assert "default" in help_text, f"{name} {action.option_strings[0]}: {help_text!r} shows no default"


@pytest.fixture(scope="module")
def ckpt(synth_run):
    return synth_run / "best.pt"


def glyph(path):
    Image.fromarray(255 - render("7").numpy()).resize((112, 112)).save(path)
    return path


def run(capsys, *argv):
    code = main(["predict", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_stdin(ckpt, tmp_path):
    data = glyph(tmp_path / "seven.png").read_bytes()
    proc = subprocess.run([sys.executable, "-m", "digitrec", "predict", "-", "--checkpoint", str(ckpt), "--json"],
                          input=data, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert row["path"] == "-" and row["status"] in ("ok", "unsure")
    too_big = subprocess.run([sys.executable, "-m", "digitrec", "predict", "-", "--checkpoint", str(ckpt)],
                             input=b"\0" * 20_000_001, capture_output=True, timeout=300)
    assert too_big.returncode == 2 and b"limit of 20,000,000 bytes" in too_big.stderr
    assert b"Traceback" not in too_big.stderr


def test_fifo_and_device_are_refused_without_reading(ckpt, tmp_path, capsys):
    os.mkfifo(tmp_path / "pipe.png")
    writer_done = threading.Event()
    result = {}

    def go():
        result["out"] = run(capsys, tmp_path / "pipe.png", "/dev/zero", "--checkpoint", ckpt)
        writer_done.set()

    t = threading.Thread(target=go, daemon=True)
    t.start()
    t.join(120)
    if not writer_done.is_set():  # it hangs on the FIFO: open it for writing so the test ends
        with open(tmp_path / "pipe.png", "wb"):
            pass
        pytest.fail("predict blocked on a FIFO")
    code, _, err = result["out"]
    assert code == 1
    assert "pipe.png: error: it is a FIFO (named pipe), not an image file" in err
    assert "/dev/zero: error: it is a device, not an image file" in err and "Traceback" not in err


def test_skipped_entries_are_listed_with_why(ckpt, tmp_path, capsys):
    glyph(tmp_path / "good.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "notes.txt").write_text("not an image: not listed")
    code, out, err = run(capsys, tmp_path, "--checkpoint", ckpt)
    assert code == 1, "something was not read"
    assert f"{tmp_path / 'loop.png'}: skipped: a symbolic link that loops" in err
    assert f"{tmp_path / 'dangling.jpg'}: skipped: a symbolic link that leads nowhere" in err
    assert f"{tmp_path / 'pipe.png'}: skipped: it is a FIFO (named pipe), not an image file" in err
    assert "notes.txt" not in err and "4 images: " in err and "0 failed; 3 skipped" in err
    assert out.startswith(str(tmp_path / "good.png"))


def test_unreadable_file_is_skipped(ckpt, tmp_path, capsys, monkeypatch):
    locked = glyph(tmp_path / "locked.png")
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads files whatever their mode: make it look as a user sees it
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(locked) else real(p, mode))
    code, _, err = run(capsys, tmp_path, "--checkpoint", ckpt)
    assert code == 1 and "locked.png: skipped: not readable" in err


def test_previews_keep_the_extension(ckpt, tmp_path, capsys):
    glyph(tmp_path / "x.png")
    Image.open(tmp_path / "x.png").convert("RGB").save(tmp_path / "x.jpg")
    code, _, _ = run(capsys, tmp_path, "--checkpoint", ckpt, "--save-preview")
    assert code == 0
    assert sorted(p.name for p in tmp_path.glob("*.preview.png")) == ["x.jpg.preview.png", "x.png.preview.png"]
    code, _, err = run(capsys, tmp_path, "--checkpoint", ckpt)  # previews are not read back as images
    assert "2 images" in err


def test_evaluate_says_it_needs_a_checkpoint(capsys):
    from digitrec.inference.backends import packaged_onnx

    assert main(["evaluate", "--checkpoint", str(packaged_onnx())]) == 2
    err = capsys.readouterr().err
    assert "is an ONNX export; this needs a PyTorch checkpoint (.pt)" in err and "pickle" not in err


def test_heic_photo_is_read(ckpt, tmp_path, capsys):
    """A real HEIC file, written by pillow-heif (libheif's encoder), read by predict and preprocess."""
    pillow_heif = pytest.importorskip("pillow_heif")
    from digitrec.inference.preprocess import preprocess

    im = Image.fromarray(255 - render("7").numpy()).resize((224, 224)).convert("RGB")
    heif = pillow_heif.from_pillow(im)
    heif.save(tmp_path / "seven.heic", quality=90)
    assert (tmp_path / "seven.heic").read_bytes()[4:12] == b"ftypheic"
    pre = preprocess(tmp_path / "seven.heic")
    assert pre.format == "HEIF" and pre.size == (224, 224) and not pre.blank
    png = preprocess(im)  # the same pixels, not encoded
    assert abs(int(pre.image.astype(int).sum()) - int(png.image.astype(int).sum())) < 0.1 * png.image.sum()
    code, out, _ = run(capsys, tmp_path / "seven.heic", "--checkpoint", ckpt)
    assert code == 0 and out.startswith(f"{tmp_path / 'seven.heic'}: ")
