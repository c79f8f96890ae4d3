"""Real digit sets beyond MNIST (USPS, Semeion): parsing their text layouts, checked fetching,
the writer splits, and rendering onto paper then preprocessing, all on tiny synthetic files
written here in each set's published layout. No test touches the network."""

import gzip
import hashlib
from dataclasses import replace

import numpy as np
import pytest
import torch
from synth import render

from digitrec.data import fetch as data
from digitrec.data import real
from digitrec.data.fetch import fetch_real
from digitrec.data.registry import REAL_SETS, RawFile
from digitrec.data.textsets import check_records, content_sha256, parse_semeion, parse_usps
from digitrec.errors import DataError, UserError


def glyph16(d: int, shift: int = 0) -> np.ndarray:
    """A digit drawn small, stretched to fill 16x16 as both sets do: (16, 16) float in [0, 1], ink 1."""
    g = render(str(d), dx=shift).float()
    rows, cols = torch.nonzero(g.sum(1) > 0).flatten(), torch.nonzero(g.sum(0) > 0).flatten()
    crop = g[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1][None, None]
    return torch.nn.functional.interpolate(crop, size=(16, 16), mode="area")[0, 0].div(255).numpy()


def usps_text(labels, extra_on: int | None = None) -> bytes:
    """zip.train's layout: the label, then 256 values in [-1, 1] (-1 paper); one line with an extra value."""
    lines = []
    for i, y in enumerate(labels):
        px = glyph16(y, i % 3) * 2 - 1
        vals = [f"{y}.0000"] + [f"{v:.4f}" for v in px.ravel()] + (["-1.0000"] if i == extra_on else [])
        lines.append(" ".join(vals))
    return ("\n".join(lines) + "\n").encode()


def semeion_records(blocks: int = 6, writers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Records in Semeion's order: `blocks` runs through 0..9, each writer writing each digit twice."""
    labels = np.array([d for _ in range(blocks) for d in range(10) for _ in range(2 * writers)])
    images = np.stack([glyph16(int(d), i % 4) > 0.3 for i, d in enumerate(labels)]).astype(np.uint8)
    return images, labels


def semeion_text(images, labels, layout: str = "uci") -> bytes:
    """uci: "0.0000"/"1.0000", ten label digits, trailing spaces, CRLF. tabs: 0/1 with tabs and an
    extra column (the digit). wrapped: tabs, the first record spread over 17 lines."""
    out = []
    for i, (im, y) in enumerate(zip(images, labels)):
        onehot = ["1" if c == y else "0" for c in range(10)]
        if layout == "uci":
            out.append(" ".join([f"{v}.0000" for v in im.ravel()] + onehot) + " \r\n")
        elif layout == "wrapped" and i == 0:
            rows = ["\t".join(str(v) for v in r) for r in im]
            out.append("\n".join(rows) + "\n" + "\t".join(onehot) + "\t" + "".join(onehot) + "\n")
        else:
            out.append("\t".join([str(v) for v in im.ravel()] + onehot + [str(y)]) + "\n")
    return "".join(out).encode()


def raw_file(name: str, blob: bytes, images, labels) -> RawFile:
    return RawFile(name, (f"http://127.0.0.1:9/{name}",), hashlib.sha256(blob).hexdigest(),
                   content_sha256(images, labels), len(labels), tuple(np.bincount(labels, minlength=10).tolist()))


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(url, *args, **kwargs):
        raise OSError(f"no network in tests ({url})")

    monkeypatch.setattr(data, "_download", refuse)


@pytest.fixture
def tiny_usps(tmp_path, monkeypatch):
    """A registered 'usps' of 40 training and 12 test records, published files in the cache."""
    folder = tmp_path / "usps"
    folder.mkdir()
    files = {}
    for part, n, extra in (("train", 40, None), ("test", 12, 5)):
        labels = np.arange(n) % 10
        blob = gzip.compress(usps_text(labels, extra), mtime=0)
        (folder / f"zip.{part}.gz").write_bytes(blob)
        files[part] = raw_file(f"zip.{part}.gz", blob, *parse_usps(blob))
    monkeypatch.setitem(REAL_SETS, "usps", replace(REAL_SETS["usps"], files=files))
    monkeypatch.setattr(real, "USPS_TRAIN", 30)
    return tmp_path


@pytest.fixture
def tiny_semeion(tmp_path, monkeypatch):
    """A registered 'semeion' of six writer blocks (one writer, 20 records each), in the cache."""
    images, labels = semeion_records()
    blob = semeion_text(images, labels)
    (tmp_path / "semeion").mkdir()
    (tmp_path / "semeion" / "semeion.data").write_bytes(blob)
    monkeypatch.setitem(REAL_SETS, "semeion", replace(REAL_SETS["semeion"], files={
        "all": raw_file("semeion.data", blob, (images * 255).astype(np.uint8), labels)}))
    return tmp_path


# ---------------------------------------------------------------- parsing


def test_usps_parse_scales_and_ignores_the_extra_trailing_value():
    text = usps_text([3, 7, 0], extra_on=1)
    assert len(text.splitlines()[1].split()) == 258
    images, labels = parse_usps(gzip.compress(text), "zip.test.gz")
    assert images.shape == (3, 16, 16) and images.dtype == np.uint8 and labels.tolist() == [3, 7, 0]
    expect = np.round((glyph16(7, 1) * 2 - 1 + 1) * 127.5)
    assert np.abs(images[1].astype(int) - expect).max() <= 1  # -1 (paper) -> 0, 1 (ink) -> 255
    assert images.min() == 0 and images.max() >= 250


def test_usps_short_line_and_bad_values_are_refused_in_words():
    lines = usps_text([1, 2, 3]).splitlines()
    with pytest.raises(DataError, match="zip.train.gz: line 2 has 101 values, a record has 257"):
        parse_usps(b"\n".join([lines[0], b" ".join(lines[1].split()[:101]), lines[2]]), "zip.train.gz")
    with pytest.raises(DataError, match=r"labels must be the digits 0 to 9"):
        parse_usps(b"12 " + b" ".join(lines[0].split()[1:]), "zip.train.gz")
    with pytest.raises(DataError, match=r"pixel values must lie in \[-1, 1\]"):
        parse_usps(lines[0].replace(b"-1.0000", b"-3.0000", 1), "zip.train.gz")
    with pytest.raises(DataError, match="is not a number"):
        parse_usps(lines[0].replace(b"-1.0000", b"abc", 1), "zip.train.gz")


def test_semeion_layouts_parse_to_the_same_records():
    images, labels = semeion_records(blocks=1)
    parsed = [parse_semeion(semeion_text(images, labels, layout)) for layout in ("uci", "tabs", "wrapped")]
    assert len(semeion_text(images, labels, "wrapped").splitlines()) == len(labels) + 16
    for x, y in parsed:
        assert np.array_equal(x, images * 255) and np.array_equal(y, labels)
    assert len({content_sha256(x, y) for x, y in parsed}) == 1


def test_semeion_truncated_and_bad_labels_are_refused():
    images, labels = semeion_records(blocks=1)
    text = semeion_text(images, labels)
    with pytest.raises(DataError, match="the record starting on line 20 ends after 100 of 266 values"):
        parse_semeion(text[: text.rindex(b"\r\n", 0, -2) + 2] + b" ".join(text.splitlines()[-1].split()[:100]))
    assert text.endswith(b" 0 1 \r\n")  # the last record is a 9
    with pytest.raises(DataError, match="record 20 does not mark exactly one of the ten classes"):
        parse_semeion(text[: -len(b"0 1 \r\n")] + b"1 1 \r\n")
    with pytest.raises(DataError, match="values other than 0 and 1"):
        parse_semeion(text.replace(b"1.0000", b"0.5000", 1))


def test_class_counts_and_contents_are_checked():
    images, labels = semeion_records(blocks=1)
    rf = raw_file("semeion.data", b"", images * 255, labels)
    assert check_records(images * 255, labels, rf) is None
    moved = labels.copy()
    moved[0] = 1
    assert "class counts are 1/3/2/2/2/2/2/2/2/2, the published 2/2/2" in check_records(images * 255, moved, rf)
    assert "holds 19 records, the published file 20" in check_records(images[1:] * 255, labels[1:], rf)
    other = images.copy()
    other[0, 0, 0] ^= 1
    assert "records differ" in check_records(other * 255, labels, rf)


# ---------------------------------------------------------------- fetching, checked


def test_cached_files_load_and_a_reformatted_copy_is_accepted(tiny_semeion):
    assert len(real.load_semeion("all", tiny_semeion).labels) == 120
    images, labels = semeion_records()
    (tiny_semeion / "semeion" / "semeion.data").write_bytes(semeion_text(images, labels, "wrapped"))
    assert torch.equal(real.load_semeion("all", tiny_semeion).labels, torch.from_numpy(labels))


def test_damaged_file_is_refused_in_words_and_kept(tiny_usps):
    path = tiny_usps / "usps" / "zip.test.gz"
    blob = bytearray(gzip.decompress(path.read_bytes()))
    blob[blob.index(b" 1.0000")] = ord("-")  # one ink pixel turned to paper (gzip no more)
    path.write_bytes(bytes(blob))
    with pytest.raises(DataError) as e:
        real.load_usps("test", tiny_usps)
    msg = str(e.value)
    assert "could not fetch usps: zip.test.gz missing or damaged" in msg and "zip.train.gz" not in msg
    assert "http://127.0.0.1:9/zip.test.gz: no network in tests" in msg
    assert f"put them in {tiny_usps / 'usps'}/" in msg and REAL_SETS["usps"].files["test"].sha256 in msg
    assert path.read_bytes() == bytes(blob)  # nothing the user put there is lost


def test_download_is_checked_and_atomic(tmp_path, monkeypatch):
    images, labels = semeion_records()
    good = semeion_text(images, labels)
    spec = replace(REAL_SETS["semeion"], files={"all": raw_file("semeion.data", good, images * 255, labels)})
    served = {"body": good.replace(b"1.0000", b"0.0000", 1)}  # first a copy with one pixel lost

    def fake_download(url, md5, folder, fname, timeout=15.0):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / fname).write_bytes(served["body"])
        return folder / fname

    monkeypatch.setattr(data, "_download", fake_download)
    (tmp_path / "semeion").mkdir()
    (tmp_path / "semeion" / "semeion.data").write_bytes(b"a damaged copy")
    with pytest.raises(DataError, match=r"127.0.0.1:9/semeion.data is not the published file \(its records differ"):
        fetch_real(spec, tmp_path)
    assert (tmp_path / "semeion" / "semeion.data").read_bytes() == b"a damaged copy"  # replaced only by a good one
    assert sorted(p.name for p in (tmp_path / "semeion").iterdir()) == ["semeion.data"]  # no partial file left
    served["body"] = good
    assert fetch_real(spec, tmp_path) == tmp_path / "semeion"
    assert (tmp_path / "semeion" / "semeion.data").read_bytes() == good
    assert sorted(p.name for p in (tmp_path / "semeion").iterdir()) == ["semeion.data"]


def test_unreachable_site_is_said_in_words(tmp_path, monkeypatch):
    def offline(url, *args, **kwargs):
        raise OSError("HTTPSConnectionPool(host='x', port=443): Max retries exceeded (Caused by NameResolutionError)")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(DataError) as e:
        fetch_real("usps", tmp_path)
    msg = str(e.value)
    assert "zip.train.gz, zip.test.gz missing" in msg and "Max retries" not in msg
    assert msg.count("unreachable (no network connection, or the site is down)") == 4  # two files, two sites each
    assert "https://hastie.su.domains/ElemStatLearn/datasets/zip.test.gz  (SHA-256 8dacc3c6" in msg
    assert sorted(p.name for p in (tmp_path / "usps").iterdir()) == []


def test_users_folder_is_tried_first(tmp_path):
    images, labels = semeion_records()
    blob = semeion_text(images, labels, "tabs")
    spec = replace(REAL_SETS["semeion"], files={"all": raw_file("semeion.data", b"x", images * 255, labels)})
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "semeion.data").write_bytes(blob)
    assert (fetch_real(spec, tmp_path / "cache", source=tmp_path / "mine") / "semeion.data").read_bytes() == blob
    with pytest.raises(DataError, match="nowhere is not a folder"):
        fetch_real(spec, tmp_path / "cache", source=tmp_path / "nowhere")


# ---------------------------------------------------------------- writer splits


def test_semeion_split_holds_out_whole_writer_blocks(tiny_semeion):
    train, val = real.load_semeion("train", tiny_semeion), real.load_semeion("val", tiny_semeion)
    labels = real.load_semeion("all", tiny_semeion).labels.numpy()
    blocks = real.writer_blocks(labels)
    assert set(blocks[val.indices.numpy()].tolist()) == {2, 5}  # the third and the sixth
    assert set(blocks[train.indices.numpy()].tolist()) == {0, 1, 3, 4}
    assert not set(train.indices.tolist()) & set(val.indices.tolist())
    assert len(train.labels) + len(val.labels) == len(labels) == 120
    assert np.bincount(val.labels.numpy()).tolist() == [4] * 10


def test_semeion_order_is_required(tiny_semeion):
    labels = real.load_semeion("all", tiny_semeion).labels.numpy()
    rng = np.random.default_rng(0)
    with pytest.raises(DataError, match="not in the published order"):
        real.writer_blocks(rng.permutation(labels))
    with pytest.raises(DataError, match="not in the published order"):
        real.writer_blocks(labels[:100])  # five runs through the digits


def test_usps_splits_are_contiguous_and_disjoint(tiny_usps):
    train, val, test = (real.load_usps(s, tiny_usps) for s in ("train", "val", "test"))
    assert train.indices.tolist() == list(range(30)) and val.indices.tolist() == list(range(30, 40))
    assert len(test.labels) == 12 and test.labels.tolist() == [i % 10 for i in range(12)]
    with pytest.raises(UserError, match="usps has no split 'all': choose one of train, val, test"):
        real.load_usps("all", tiny_usps)


# ---------------------------------------------------------------- onto paper, then preprocess


def ink_stats(x: np.ndarray) -> tuple[int, float, float]:
    """The ink's longer box side and its centre of mass in a (28, 28) input."""
    rows, cols = np.nonzero(x.max(1) > 64)[0], np.nonzero(x.max(0) > 64)[0]
    w = x.astype(float) / x.sum()
    return max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1, float(w.sum(1) @ np.arange(28)), float(w.sum(0) @ np.arange(28))


def mnist_like(ink16: np.ndarray) -> np.ndarray:
    """What MNIST's recipe makes of a 16x16 digit: 20x20, centred by its centre of mass in 28x28."""
    up = torch.nn.functional.interpolate(torch.from_numpy(ink16).float()[None, None], size=(20, 20),
                                         mode="bilinear", align_corners=False)[0, 0].numpy()
    field = np.zeros((28, 28))
    field[4:24, 4:24] = up
    w = field / field.sum()
    dy, dx = round(14 - float(w.sum(1) @ np.arange(28))), round(14 - float(w.sum(0) @ np.arange(28)))
    return np.roll(field, (dy, dx), axis=(0, 1))


@pytest.mark.parametrize("binary", [False, True])
def test_render_then_preprocess_gives_a_digit_like_input(binary):
    from digitrec.inference.preprocess import preprocess

    digits = np.stack([glyph16(d) for d in (7, 2, 0)])
    images = torch.from_numpy(((digits > 0.3) * 255 if binary else digits * 255).astype(np.uint8))
    pages = real.render_paper(images, binary=binary, seed=1)
    assert pages.shape == (3, real.CANVAS, real.CANVAS) and pages.dtype == torch.uint8
    assert torch.equal(pages, real.render_paper(images, binary=binary, seed=1))
    for page, d in zip(pages.numpy(), (7, 2, 0)):  # each page reads as its own digit, MNIST-style
        assert np.median(page) > 200 and page.min() < 80  # dark ink on light paper
        ink = np.nonzero((page < 128).any(1))[0]
        assert 36 <= ink[-1] - ink[0] + 1 <= 82 and ink[0] > 4 and ink[-1] < real.CANVAS - 5  # margins
        x = real._prepare_pages(torch.from_numpy(page[None]), "preprocess")[0]
        assert np.array_equal(x, preprocess(__import__("PIL.Image").Image.fromarray(page)).image)
        side, cy, cx = ink_stats(x)
        assert 18 <= side <= 22 and abs(cy - 14) < 1.5 and abs(cx - 14) < 1.5
        score = {k: float(np.corrcoef(x.ravel(), mnist_like(digits[i]).ravel())[0, 1]) for i, k in enumerate((7, 2, 0))}
        assert score[d] > 0.75 and score[d] == max(score.values()), (d, score)


def test_prepared_inputs_are_cached_by_code_version(tiny_semeion, monkeypatch):
    first = real.prepared("semeion", "val", "textbook", tiny_semeion)
    assert first.images.shape == (40, 28, 28) and first.images.dtype == torch.uint8
    assert (first.images.flatten(1).max(1).values > 0).all()
    cache = tiny_semeion / "semeion" / "prepared"
    [path] = cache.glob("val-textbook-*.pt")
    (cache / "val-textbook-s0-0123456789ab.pt").write_bytes(b"an older version's cache")

    def no_work(*args):
        raise AssertionError("the cache was not used")

    work = real._prepare_pages
    monkeypatch.setattr(real, "_prepare_pages", no_work)
    again = real.prepared("semeion", "val", "textbook", tiny_semeion)
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    monkeypatch.setattr(real, "RENDER_VERSION", real.RENDER_VERSION + 1)  # other code: made again
    with pytest.raises(AssertionError, match="the cache was not used"):
        real.prepared("semeion", "val", "textbook", tiny_semeion)
    monkeypatch.setattr(real, "_prepare_pages", work)
    assert torch.equal(real.prepared("semeion", "val", "textbook", tiny_semeion).images, first.images)
    [newer] = cache.glob("val-textbook-*.pt")  # the older caches are gone
    assert newer != path
    with pytest.raises(UserError, match="unknown preparation 'raw'"):
        real.prepared("semeion", "val", "raw", tiny_semeion)
