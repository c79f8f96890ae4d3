"""The line model: strips prepared as the reader prepares them, CTC decoding, training (with
resume) and export, and the reader keeping its reading where segmentation cannot cut."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from digitrec.errors import CheckpointError
from digitrec.inference.linemodel import HEIGHT, INK_HEIGHT, PAD, STRIDE, LineModel, Read, greedy, spans, strip
from digitrec.inference.predictor import Predictor
from digitrec.inference.lineread import line_model_for, packaged_line_model
from digitrec.inference.reader import read
from digitrec.training.config import LineConfig
from digitrec.models import LineNet
from digitrec.training.lines import load_lines, train_lines


def test_strip_scales_the_ink_to_its_height_and_pads_it_with_paper():
    ink = np.zeros((100, 300), np.float32)
    ink[20:80, 50:170] = 1.0  # 60 high, 120 wide
    x, k, left = strip(ink)
    assert x.shape[0] == HEIGHT and x.shape[1] % STRIDE == 0
    assert k == pytest.approx(INK_HEIGHT / 60) and left == 50
    rows, cols = np.nonzero(x.max(1) > 0.5)[0], np.nonzero(x.max(0) > 0.5)[0]
    assert rows[-1] - rows[0] + 1 == INK_HEIGHT and cols[0] == PAD
    assert cols[-1] + 1 - cols[0] == pytest.approx(120 * k, abs=1)
    empty, _, _ = strip(np.zeros((10, 10), np.float32))
    assert not empty.any() and empty.shape[0] == HEIGHT


def test_decode_collapses_runs_and_keeps_repeats_split_by_a_blank():
    # classes a, b and the blank (last); frames: a a - a b b -
    seq = [0, 0, 2, 0, 1, 1, 2]
    frames = np.full((len(seq), 3), 0.05, np.float32)
    frames[np.arange(len(seq)), seq] = 0.9
    frames[5, 1] = 0.95  # the b is read at its more certain frame
    got = greedy(frames / frames.sum(1, keepdims=True))
    assert [r.index for r in got] == [0, 0, 1] and [r.frame for r in got] == [0, 3, 5]
    assert all(abs(r.probabilities.sum() - 1) < 1e-5 for r in got)
    assert greedy(np.tile([[0.1, 0.1, 0.8]], (5, 1))) == []


def test_decode_counts_finds_the_best_path_with_each_number_of_characters():
    """Against every path through small random frames: the best with exactly k characters."""
    import itertools

    from digitrec.inference.linemodel import decode_counts

    rng = np.random.default_rng(0)
    for _ in range(60):
        t, n = int(rng.integers(2, 7)), int(rng.integers(2, 4))
        frames = rng.dirichlet(np.ones(n) * 0.5, size=t)
        best: dict[int, tuple[float, list[int]]] = {}
        for path in itertools.product(range(n), repeat=t):
            chars = [s for i, s in enumerate(path) if s != n - 1 and (i == 0 or path[i - 1] != s)]
            lp = float(sum(np.log(frames[i, s]) for i, s in enumerate(path)))
            if chars and (len(chars) not in best or lp > best[len(chars)][0] + 1e-9):
                best[len(chars)] = (lp, chars)
        got = decode_counts(frames, t)
        assert set(got) == set(best)
        for k, (lp, chars) in best.items():
            assert got[k][0] == pytest.approx(lp) and [r.index for r in got[k][1]] == chars


def test_spans_cover_the_ink_in_reading_order_whatever_the_frames_offset():
    x = np.zeros((HEIGHT, 200), np.float32)
    x[4:28, 20:60] = x[4:28, 80:120] = x[4:28, 140:180] = 1  # three characters, centres 40, 100, 160
    for offset in (0, 3, 6):  # frames late by this many (the model reads at a steady lag)
        reads = [Read(0, np.ones(1), (c // STRIDE) + offset) for c in (40, 100, 160)]
        got = spans(reads, x)
        assert got[0][0] == 20 and got[-1][1] == 180
        assert [round(a) for a, _ in got[1:]] == [70, 130]  # halfway between the centres


def test_the_network_takes_any_width_and_gives_a_frame_per_stride():
    net = LineNet(10, 8).eval()
    for w in (16, 64, 132):
        assert net(torch.zeros(2, 1, HEIGHT, w)).shape == (2, 11, w // STRIDE)


def test_training_resumes_and_exports_a_model_onnx_runtime_agrees_with(synth_dir, tmp_path):
    cfg = LineConfig(steps=4, batch=4, width=8, max_length=3, val_lines=6, val_size=100, dataset=str(synth_dir),
                     conditions=0.0)
    first = train_lines(tmp_path / "a", cfg, log=lambda m: None)
    assert 0 <= first["val_line_accuracy"] <= 1 and (tmp_path / "a" / "state.pt").is_file()
    said = []
    again = train_lines(tmp_path / "a", cfg, log=said.append)  # the saved state is at the last step
    assert any("going on from step 4" in m for m in said)
    model, card = load_lines(tmp_path / "a" / "lines.pt")
    onnx = LineModel(tmp_path / "a" / "lines.onnx")
    assert onnx.classes == list(card.classes) == [str(i) for i in range(10)] and onnx.card == card
    x = np.random.default_rng(0).random((HEIGHT, 96), dtype=np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)[None, None]).softmax(1)[0].T.numpy()
    assert np.abs(onnx.frames(x) - want).max() < 1e-4
    assert again["val_line_accuracy"] == pytest.approx(first["val_line_accuracy"])


def test_a_broken_line_model_file_is_refused_in_words(tmp_path):
    bad = tmp_path / "lines.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="not a readable ONNX model"):
        LineModel(bad)


@pytest.fixture(scope="module")
def shipped():
    return Predictor()


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.skipif(not packaged_line_model().is_file(), reason="no packaged line model")
def test_touching_digits_are_read_whole_where_no_cut_separates_them(real_mnist, shipped):
    """MNIST training digits pushed into each other by a quarter of their width: the reader with
    the line model reads most such lines; segmentation alone reads fewer."""
    from digitrec.scenes import compose_line, glyph_of

    rng = np.random.default_rng(3)
    x, y = real_mnist.train_x.numpy(), real_mnist.train_y.numpy()
    right = {"auto": 0, "none": 0}
    for _ in range(12):
        idx = rng.integers(0, len(x), 4)
        ink = compose_line([glyph_of(d) for d in x[idx]], rng, gap=(-0.25, -0.15)).ink
        page = np.pad(255 - np.round(ink * 255).astype(np.uint8), 20, constant_values=255)
        truth = "".join(str(int(v)) for v in y[idx])
        for how in right:
            right[how] += read(_png(page), shipped, line_model=how).text == truth
    assert right["auto"] >= 9 and right["auto"] > right["none"]
    assert line_model_for(shipped, "auto") is not None and line_model_for(shipped, "none") is None


def test_read_takes_a_line_model_or_none_and_refuses_a_bad_one_in_words(tmp_path, capsys, shipped):
    from digitrec.cli.main import main
    from synth import draw_text

    page = tmp_path / "n.png"
    draw_text(["2026"]).save(page)
    for how in ("none", "auto"):
        assert main(["read", str(page), "--lines", how]) == 0
        assert capsys.readouterr().out.split()[1] == "2026"
    assert main(["read", str(page), "--lines", str(tmp_path / "missing.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.skipif(not packaged_line_model().is_file(), reason="no packaged line model")
def test_the_line_model_reads_first_and_segmentation_runs_only_where_it_is_unsure(monkeypatch, shipped):
    """Issue 23: the line model (~10 ms a line) reads each line; where it is sure, the dynamic
    programme (the costly part) never runs. A 4 drawn in two strokes, which the line model reads
    as one character among more pieces, is still segmented."""
    import digitrec.inference.reader as reader
    from synth import draw_text

    segmented = []
    real = reader.segmentations
    monkeypatch.setattr(reader, "segmentations", lambda *a: segmented.append(1) or real(*a))
    assert read(_png(np.asarray(draw_text(["2026"]))), shipped).text == "2026" and not segmented
    assert read(_png(np.asarray(draw_text(["45"]))), shipped).text == "45" and segmented


def test_a_line_model_starts_from_an_onnx_export_computing_what_it_computes(synth_dir, tmp_path):
    from digitrec.data.load import load
    from digitrec.training.lines import batch_of, start_from

    ds = load(str(synth_dir))
    x, y = ds.train_x.numpy(), ds.train_y.numpy()
    calibration = batch_of(x, y, np.random.default_rng(0), 32, 4)[0]
    model = LineNet(10, 32)
    start_from(model, packaged_line_model(), calibration)  # batch norms unfolded from the export's convolutions
    shipped = LineModel(packaged_line_model())
    model.eval()
    for strip_x in batch_of(x, y, np.random.default_rng(1), 3, 6)[0]:
        with torch.no_grad():
            mine = model(strip_x[None]).softmax(1)[0].T.numpy()
        assert np.abs(mine - shipped.frames(strip_x[0].numpy())).max() < 1e-4
    with pytest.raises(CheckpointError, match="does not exist"):
        start_from(LineNet(10, 32), packaged_line_model().with_name("missing.onnx"), calibration)
    with pytest.raises(CheckpointError, match="not a line model of this shape"):
        start_from(LineNet(10, 16), packaged_line_model(), calibration)
    from digitrec.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "narrow.pt", LineNet(10, 8), "lines", {"num_classes": 10, "width": 8}, {})
    with pytest.raises(CheckpointError, match="not a line model of this shape"):
        start_from(LineNet(10, 32), tmp_path / "narrow.pt", calibration)


def test_the_line_bank_is_the_readers_strips_of_rendered_lines_cached_in_parts(synth_dir, tmp_path):
    from digitrec.data.load import load
    from digitrec.training import linebank

    ds = load(str(synth_dir))
    x, y = ds.train_x[:50].numpy(), ds.train_y[:50].numpy()
    strips, labels, facts = linebank.bank(x, y, 6, 0, tmp_path, max_length=3, jobs=1, part=3)
    assert facts["rendered_now"] == 6 and facts["kept"] == len(strips) == len(labels) >= 5
    assert all(s.shape[0] == HEIGHT and s.shape[1] % STRIDE == 0 and s.dtype == np.uint8 and s.max() > 100 for s in strips)
    assert all(1 <= len(t) <= 3 for t in labels)
    which, _, _ = linebank.plan(len(x), 6, 0, 3, linebank.MIX)
    kept = [i for i in range(6) if len(which[i])]  # every planned line has its digits' labels, in order
    assert [list(t) for t in labels] == [list(y[which[i]]) for i in kept][: len(labels)]
    folder = Path(facts["folder"])
    (folder / "part-0000003.npz").unlink()  # as if interrupted: only that part is made again
    again, labels2, facts2 = linebank.bank(x, y, 6, 0, tmp_path, max_length=3, jobs=1, part=3)
    assert facts2["rendered_now"] == 3
    assert all(np.array_equal(a, b) for a, b in zip(strips, again)) and len(again) == len(strips)


def test_a_share_of_each_batch_comes_from_the_bank(synth_dir):
    from digitrec.data.load import load
    from digitrec.training.lines import batch_of

    ds = load(str(synth_dir))
    x, y = ds.train_x.numpy(), ds.train_y.numpy()
    marked = {n: [(np.full((HEIGHT, 8 * n), 255, np.uint8), np.full(n, 7))] for n in range(1, 4)}
    xb, yb, frames = batch_of(x, y, np.random.default_rng(0), 8, 3, marked, 0.5)
    assert (yb[:4] == 7).all() and (xb[:4, 0, :, :8] == 1).all()  # the first half: the bank's lines
    assert frames[0] == 8 * yb.shape[1] // STRIDE
    xb, yb, _ = batch_of(x, y, np.random.default_rng(0), 8, 3, None, 0.5)
    assert not (xb[:, 0] == 1).all(dim=(1, 2)).any()  # without a bank: lines made as before


def test_training_on_rendered_lines_reports_them_and_starts_from_an_export(synth_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("DIGITREC_DATA", str(tmp_path / "cache"))  # the banks are cached beside the data
    cfg = LineConfig(steps=3, batch=4, width=8, max_length=3, val_lines=6, val_size=100, dataset=str(synth_dir),
                     conditions=0.5, bank=6)
    said = []
    first = train_lines(tmp_path / "a", cfg, log=said.append)
    assert first["val_rendered_lines"] >= 2 and 0 <= first["val_rendered_accuracy"] <= 1
    assert len(list((tmp_path / "cache").glob("lines-*"))) == 2  # validation lines and the training bank
    assert any("rendering 6 lines" in m for m in said)
    again = train_lines(tmp_path / "b", LineConfig(**{**cfg.__dict__, "init": str(tmp_path / "a" / "lines.onnx")}),
                        log=said.append)
    assert any("(cached)" in m for m in said) and any("starting from the weights" in m for m in said)
    assert 0 <= again["val_line_accuracy"] <= 1


def _with_card(tmp_path, **card) -> Path:
    """A copy of the shipped line model whose metadata holds `card` (its weights unchanged)."""
    import json

    import onnx

    proto = onnx.load(str(packaged_line_model()))
    entry = next(p for p in proto.metadata_props if p.key == "digitrec.lines")
    entry.value = json.dumps(card)
    path = tmp_path / "lines.onnx"
    onnx.save_model(proto, str(path))
    return path


@pytest.mark.skipif(not packaged_line_model().is_file(), reason="no packaged line model")
def test_the_shipped_line_models_card_takes_todays_geometry_where_it_does_not_say():
    from digitrec.card import LineCard

    shipped = LineModel(packaged_line_model())
    assert shipped.card == LineCard(tuple("0123456789"), shipped.threshold, HEIGHT, INK_HEIGHT, PAD, STRIDE)
    assert 0 < shipped.threshold < 1 and shipped.classes == list("0123456789")


@pytest.mark.skipif(not packaged_line_model().is_file(), reason="no packaged line model")
def test_a_line_model_reads_strips_in_its_cards_geometry_and_a_bad_card_is_refused(tmp_path):
    """Issue One house 3: the geometry is the card's, not module constants; a card that cannot
    work is refused naming the file and the field."""
    classes = [str(i) for i in range(10)]
    model = LineModel(_with_card(tmp_path, classes=classes, threshold=0.7, ink_height=16, pad=4))
    assert (model.card.height, model.card.ink_height, model.card.pad, model.card.stride) == (32, 16, 4, 4)
    ink = np.zeros((100, 300), np.float32)
    ink[20:80, 50:170] = 1.0
    x, k, _ = model.strip(ink)
    rows, cols = np.nonzero(x.max(1) > 0.5)[0], np.nonzero(x.max(0) > 0.5)[0]
    assert k == pytest.approx(16 / 60) and rows[-1] - rows[0] + 1 == 16 and cols[0] == 4
    assert model.frames(x).shape == (x.shape[1] // 4, 11)
    for card, words in (({"classes": classes}, "no threshold"),
                        ({"classes": classes, "threshold": 0.5, "stride": 0}, "stride is 0"),
                        ({"classes": classes, "threshold": 0.5, "ink_height": 40}, "ink_height 40 is more"),
                        ({"classes": ["1", "1"], "threshold": 0.5}, "the same name twice"),
                        ({"classes": classes, "threshold": 2}, "threshold is 2.0")):
        with pytest.raises(CheckpointError, match="lines.onnx has an unusable line model card: .*" + words):
            LineModel(_with_card(tmp_path, **card))
