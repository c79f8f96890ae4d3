"""The corrections folder: MNIST-format, appended safely (a kill loses at most the sample in
flight), capped, refusing what is not a sample; importing labelled images into it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from digitrec.corrections import (IMAGES, LABELS, LOG, LOG_FIELDS, META, Corrections, CorrectionsFull,
                                  import_labelled)
from digitrec.errors import DataError, UserError

DIGITS = tuple("0123456789")


def sample(i: int) -> np.ndarray:
    """A recognisable image for sample i: every pixel holds i % 251, plus a marker row."""
    im = np.full((28, 28), i % 251, np.uint8)
    im[0, : i % 28] = 255
    return im


def fill(folder, n: int) -> Corrections:
    c = Corrections(folder, DIGITS)
    for i in range(n):
        assert c.add(sample(i), str(i % 10), f"file{i}.png") == i
    return c


def test_samples_round_trip_and_the_folder_is_an_mnist_format_dataset(tmp_path):
    c = fill(tmp_path / "c", 7)
    images, labels, rows = c.load()
    assert images.shape == (7, 28, 28) and [int(v) for v in labels] == [i % 10 for i in range(7)]
    assert all(np.array_equal(images[i], sample(i)) for i in range(7))
    assert [r["original"] for r in rows] == [f"file{i}.png" for i in range(7)] and rows[3]["time"].endswith("+00:00")
    # the IDX files parse with digitrec's own loader (given empty test files beside them)
    from digitrec.data.idx import parse_idx

    x = parse_idx((tmp_path / "c" / IMAGES).read_bytes(), IMAGES, 3)
    y = parse_idx((tmp_path / "c" / LABELS).read_bytes(), LABELS, 1)
    assert x.shape == (7, 28, 28) and y.tolist() == [i % 10 for i in range(7)]


@pytest.mark.parametrize("crash", ["images appended", "labels appended", "log row cut short"])
def test_a_crash_mid_append_loses_only_that_sample(tmp_path, crash):
    c = fill(tmp_path / "c", 5)
    folder = tmp_path / "c"
    # What a kill leaves at each moment of the next append:
    with open(folder / IMAGES, "ab") as f:
        f.write(sample(5).tobytes()[:300])  # the in-flight sample, half written
    if crash != "images appended":
        with open(folder / LABELS, "ab") as f:
            f.write(bytes([5]))
    if crash == "log row cut short":
        with open(folder / LOG, "a") as f:
            f.write("5,2026-11")
    images, labels, _ = c.load()
    assert len(images) == 5 and all(np.array_equal(images[i], sample(i)) for i in range(5))
    assert c.add(sample(6), "6", "next.png") == 5  # the next append repairs the folder first
    images, labels, rows = c.load()
    assert len(images) == 6 and np.array_equal(images[5], sample(6)) and int(labels[5]) == 6
    assert (folder / IMAGES).stat().st_size == 16 + 6 * 784 and (folder / LABELS).stat().st_size == 8 + 6
    assert [r["index"] for r in rows] == [str(i) for i in range(6)]


APPENDER = """
import sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_corrections import DIGITS, sample
from digitrec.corrections import Corrections
c = Corrections({folder!r}, DIGITS)
i = len(c)
while True:
    c.add(sample(i), str(i % 10), f"file{{i}}.png")
    print(i, flush=True)
    i += 1
"""


def test_sigkill_at_random_moments_never_corrupts_the_folder(tmp_path):
    folder = tmp_path / "c"
    code = APPENDER.format(tests=os.path.dirname(__file__), folder=str(folder))
    rng = np.random.default_rng(0)
    committed = 0
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while proc.stdout.readline() and time.monotonic() < deadline:
            if rng.random() < 0.15:
                break
        time.sleep(rng.uniform(0, 0.01))  # somewhere inside the next append
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        images, labels, rows = Corrections(folder, DIGITS).load()
        assert len(images) >= committed, "a committed sample was lost"
        committed = len(images)
        assert all(np.array_equal(images[i], sample(i)) for i in range(committed))
        assert [int(v) for v in labels] == [i % 10 for i in range(committed)]
    assert committed > 6


def test_cap_labels_and_shapes_are_checked(tmp_path):
    c = Corrections(tmp_path / "c", DIGITS, max_samples=2)
    c.add(sample(0), "0")
    c.add(sample(1), "1")
    with pytest.raises(CorrectionsFull, match="cap of 2 samples"):
        c.add(sample(2), "2")
    with pytest.raises(UserError, match="label 'X' is not one of the model's classes"):
        c.add(sample(0), "X")
    with pytest.raises(UserError, match=r"\(28, 28\) uint8"):
        c.add(np.zeros((28, 29), np.uint8), "1")
    with pytest.raises(UserError, match="collects 0, 1, 2"):
        Corrections(tmp_path / "c", tuple("ABC")).add(sample(0), "A")
    assert len(c) == 2


def test_import_class_folders_and_csv(tmp_path):
    src = tmp_path / "src"
    for label in ("3", "digit_7"):
        (src / label).mkdir(parents=True)
        for k in range(2):
            im = Image.new("L", (80, 80), 255)
            im.paste(0, (30 + k, 15, 45 + k, 65))  # a dark bar on white
            im.save(src / label / f"{k}.png")
    (src / "3" / "broken.png").write_bytes(b"not an image")
    c = Corrections(tmp_path / "c", DIGITS)
    added, skipped = import_labelled(c, src)
    assert added == 4 and [p.name for p, _ in skipped] == ["broken.png"]
    images, labels, rows = c.load()
    assert sorted(int(v) for v in labels) == [3, 3, 7, 7] and all(im.max() == 255 for im in images)
    (tmp_path / "list.csv").write_text("path,label\nsrc/3/0.png,5\n")
    assert import_labelled(c, tmp_path / "list.csv") == (1, [])
    (tmp_path / "bad.csv").write_text("src/3/0.png,Q\n")
    with pytest.raises(UserError, match="not `path,label`"):
        import_labelled(c, tmp_path / "bad.csv")
    (src / "nine").mkdir()
    with pytest.raises(UserError, match="names no class"):
        import_labelled(c, src)


# ----------------------------------------------------------------------------- damaged folders


def sizes(folder) -> tuple[int, int]:
    return (folder / IMAGES).stat().st_size, (folder / LABELS).stat().st_size


@pytest.mark.parametrize("log", ["missing", "header only"])
def test_idx_files_holding_more_than_the_log_are_recovered_never_cut_back(tmp_path, log):
    """Issue: with log.csv gone, the first new correction cut the IDX files back to one sample."""
    folder = tmp_path / "c"
    fill(folder, 48)
    if log == "missing":
        (folder / LOG).unlink()
    else:
        (folder / LOG).write_text(",".join(LOG_FIELDS) + "\n")
    c = Corrections(folder, DIGITS)
    assert len(c) == 48 and c.check().recovered == 48
    images, labels, rows = c.load()
    assert len(images) == 48 and all(np.array_equal(images[i], sample(i)) for i in range(48))
    assert all(r["recovered"] == "1" and r["label"] == str(i % 10) for i, r in enumerate(rows))
    assert c.add(sample(48), "8", "new.png") == 48
    images, labels, rows = Corrections(folder, DIGITS).load()
    assert len(images) == 49 and all(np.array_equal(images[i], sample(i)) for i in range(49))
    assert [int(v) for v in labels] == [i % 10 for i in range(49)]
    assert [r["recovered"] for r in rows] == ["1"] * 48 + [""] and rows[48]["original"] == "new.png"


def damage(folder, how: str) -> None:
    if how == "images truncated":
        with open(folder / IMAGES, "r+b") as f:
            f.truncate(16 + 3 * 784 + 100)
    elif how == "images missing":
        (folder / IMAGES).unlink()
    elif how == "garbage row":
        with open(folder / LOG, "a") as f:
            f.write("garbage\n")
    elif how == "unreadable log":
        (folder / LOG).write_bytes(b"\xff\xfe\x00junk\x00\n\x81\x82\n")
    elif how == "bad dataset.json":
        (folder / META).write_text("{not json")
    elif how.startswith("label byte"):
        with open(folder / LABELS, "r+b") as f:
            f.seek(8 + 2)
            f.write(bytes([int(how.split()[-1])]))
    elif how == "labels disagree with the log":
        with open(folder / LABELS, "r+b") as f:
            f.seek(8 + 2)
            f.write(bytes([7]))
    elif how == "log lists more than the files":
        with open(folder / LOG, "a") as f:
            f.write("6,2026-01-01T00:00:00+00:00,6,,x.png,\n")


DAMAGE = {"images truncated": "truncated", "images missing": "is missing", "garbage row": "line 8",
          "unreadable log": "log.csv", "bad dataset.json": "dataset.json", "label byte 10": "label byte 10",
          "label byte 200": "label byte 200", "labels disagree with the log": "log.csv says",
          "log lists more than the files": "log.csv lists 7"}


@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_folder_is_refused_in_words_and_left_as_it_was(tmp_path, how):
    folder = tmp_path / "c"
    fill(folder, 6)
    damage(folder, how)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    c = Corrections(folder, DIGITS)
    for attempt in (c.check, c.load, lambda: c.add(sample(9), "9"), c.prepare):
        with pytest.raises(DataError, match=DAMAGE[how]) as e:
            attempt()
        assert str(folder) in str(e.value)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before, "a refused folder is not touched"


def test_spreadsheet_formulas_are_neutralised_in_the_log(tmp_path):
    c = Corrections(tmp_path / "c", DIGITS)
    for name in ("=1+1", "+cmd|' /C calc'!A0", "-1", "@x", "\tx", "'=quoted already", "plain"):
        c.add(sample(0), "0", name, predicted="=2")
    text = (tmp_path / "c" / LOG).read_text()
    assert "\n=" not in text and ",=" not in text and ",+" not in text and ",-" not in text and ",@" not in text
    _, _, rows = c.load()
    assert [r["original"] for r in rows] == ["=1+1", "+cmd|' /C calc'!A0", "-1", "@x", "\tx", "'=quoted already",
                                             "plain"]
    assert {r["predicted"] for r in rows} == {"=2"}


def test_a_folder_that_cannot_be_one_is_refused_in_words(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(DataError, match="cannot be used as a corrections folder"):
        Corrections(tmp_path / "file", DIGITS).prepare()
    with pytest.raises(DataError, match="cannot be used as a corrections folder"):
        Corrections(tmp_path / "file", DIGITS).add(sample(0), "0")
