"""The training step's pieces: the learning-rate schedule, and the CUDA-graph step's body, which
runs eagerly here (CPU) and must train exactly as the ordinary step does."""

from __future__ import annotations

import math

import pytest
import torch

from digitrec.training import graph
from digitrec.training.config import TrainConfig
from digitrec.training.loop import lr_factor, setup, train_step


@pytest.mark.parametrize("schedule, warmup", [("constant", 0.0), ("cosine", 0.0), ("cosine", 0.2),
                                              ("onecycle", 0.25), ("onecycle", 0.0)])
def test_the_device_schedule_is_the_host_schedule(schedule, warmup):
    cfg = TrainConfig(schedule=schedule, warmup=warmup)
    total = 97
    for step in range(total + 1):
        want = lr_factor(cfg, step, total)
        got = float(graph.lr_factor_tensor(cfg, torch.tensor(float(step)), total))
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-7), (step, got, want)


def test_graph_step_body_trains_like_the_ordinary_step(synth_dir, tmp_path):
    """The body GraphStep captures on a GPU, run eagerly: the same batches give the same losses,
    learning rates and weights as loop.train_step (up to float rounding: Adam with its learning
    rate in a tensor takes another code path)."""
    cfg = TrainConfig(model="fast", dataset=str(synth_dir), val_size=100, batch_size=32, epochs=1, lr=3e-3,
                      schedule="onecycle", warmup=0.3, label_smoothing=0.1, device="cpu")
    eager, graphed = setup(cfg, tmp_path / "a", None, True), setup(cfg, tmp_path / "b", None, True)
    step = graph.GraphStep(graphed, capture=False)
    perm = torch.randperm(len(eager.x_train), generator=torch.Generator().manual_seed(0))
    eager.model.train(), graphed.model.train()
    for i in range(eager.total_steps):
        batch = perm[i * cfg.batch_size : (i + 1) * cfg.batch_size]  # the last one is shorter
        used = eager.optimizer.param_groups[0]["lr"]  # the rate the ordinary step is about to use
        a, b = train_step(eager, batch), step(batch)
        assert float(a) == pytest.approx(float(b), rel=1e-4), i
        assert float(graphed.optimizer.param_groups[0]["lr"]) == pytest.approx(used, rel=1e-6), i
    assert graphed.scheduler.last_epoch == eager.scheduler.last_epoch == eager.total_steps
    for (k, v), w in zip(eager.model.state_dict().items(), graphed.model.state_dict().values()):
        torch.testing.assert_close(w, v, rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("options", [{}, {"augment": True}, {"aug_elastic": 2.0},
                                     {"aug_stroke": 1.0, "aug_blur": 1.5, "aug_contrast": 1.0},
                                     {"augment": True, "outliers": 0.125}])
def test_every_training_option_is_captured_in_a_cuda_graph(synth_dir, tmp_path, options):
    """Capture fails on anything that waits for or copies from the host (a CPU tensor made in
    the step): every augmentation and the outlier shapes must be captured, then train."""
    cfg = TrainConfig(model="fast", dataset=str(synth_dir), val_size=100, batch_size=32, epochs=1, lr=3e-3,
                      device="cuda", **options)
    run = setup(cfg, tmp_path, None, True)
    run.model.train()
    step = graph.GraphStep(run)
    assert step.graph is not None
    before = [p.detach().clone() for p in run.model.parameters()]
    losses = [float(step(torch.arange(32, device="cuda") + 32 * i)) for i in range(8)]
    assert all(math.isfinite(v) for v in losses), losses
    assert any(not torch.equal(a, b) for a, b in zip(before, run.model.parameters()))


def test_graphs_are_refused_where_they_cannot_work(synth_dir, tmp_path):
    from digitrec.errors import UserError
    from digitrec.training.loop import train

    cfg = TrainConfig(dataset=str(synth_dir), val_size=100, epochs=1, device="cpu", graph="on")
    with pytest.raises(UserError, match="--graph on cannot be used here: CUDA graphs need a CUDA device"):
        train(cfg, tmp_path / "run", quiet=True)
    run = setup(TrainConfig(dataset=str(synth_dir), val_size=100, ema=0.9, device="cpu"), tmp_path / "r", None, True)
    run.device = "cuda"  # as if on a GPU: EMA still rules graphs out
    assert "ema" in graph.supported(run)


def test_distillation_with_no_teacher_share_is_the_ordinary_loss():
    from types import SimpleNamespace

    from digitrec.training.step import _distilled

    torch.manual_seed(0)
    logits, y = torch.randn(16, 10), torch.randint(0, 10, (16,))
    soft = torch.rand(16, 10).softmax(1)
    run = SimpleNamespace(cfg=TrainConfig(label_smoothing=0.1, distill=0.0))
    want = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1)
    assert float(_distilled(run, logits, y, soft, 0, 1)) == pytest.approx(float(want), rel=1e-6)


def test_distillation_pulls_towards_the_teachers_probabilities_except_for_renders():
    from types import SimpleNamespace

    from digitrec.training.step import _distilled

    torch.manual_seed(0)
    y = torch.randint(0, 10, (8,))
    soft = torch.rand(8, 10).softmax(1)
    run = SimpleNamespace(cfg=TrainConfig(label_smoothing=0.0, distill=1.0))
    logits = soft.log().clone().requires_grad_(True)  # the student already says what the teachers say
    _distilled(run, logits, y, soft, 3, 1).backward()
    assert logits.grad[3:].abs().max() < 1e-6  # no pull where the teachers are the target
    assert logits.grad[:3].abs().max() > 1e-3  # the first 3 (renders) are pulled towards their labels


def test_training_with_a_teacher_uses_its_probabilities(synth_dir, synth_run, tmp_path):
    from digitrec.errors import CheckpointError, UserError
    from digitrec.training.loop import train

    teacher = synth_run / "best.pt"
    cfg = TrainConfig(dataset=str(synth_dir), val_size=100, epochs=1, device="cpu", teacher=f"{teacher},{teacher}")
    run = setup(cfg, tmp_path / "a", None, True)
    assert run.soft.shape == (len(run.x_train), 10)
    assert torch.allclose(run.soft.sum(1), torch.ones(len(run.x_train)), atol=1e-5)
    # the teacher's own training images: it agrees with most of their labels
    assert float((run.soft.argmax(1) == run.y_train).float().mean()) > 0.5
    m = train(cfg, tmp_path / "run", quiet=True)
    assert m["val_accuracy"] >= 0
    with pytest.raises((CheckpointError, UserError), match="nothing.pt|nothing"):
        train(TrainConfig(dataset=str(synth_dir), val_size=100, epochs=1, device="cpu", teacher=str(tmp_path / "nothing.pt")),
              tmp_path / "run2", quiet=True)
    with pytest.raises(UserError, match="distill"):
        TrainConfig(distill=1.5).check()


def test_the_split_is_computed_once_per_run_and_handed_on(synth_dir, tmp_path, monkeypatch):
    """One run draws its training/validation split once (inputs.Split, kept in Run.split): the
    banks, the validation set and the final scores all use it, and it is the documented split."""
    import sys

    import digitrec.data.load
    from digitrec.training.loop import train

    real, calls = digitrec.data.load.split_indices, []

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    for module in [m for name, m in sys.modules.items() if name.startswith("digitrec") and m is not None]:
        if getattr(module, "split_indices", None) is real:
            monkeypatch.setattr(module, "split_indices", counted)
    cfg = TrainConfig(dataset=str(synth_dir), val_size=100, split_seed=3, epochs=1, batch_size=100, outliers=0.1,
                      device="cpu")
    metrics = train(cfg, tmp_path / "run", quiet=True)
    assert calls == [(600, 100, 3)]
    run = setup(cfg, tmp_path / "again", None, True)
    tr, va = real(600, 100, 3)
    assert torch.equal(run.split.train, tr) and torch.equal(run.split.val, va) and len(run.x_val) == 100
    assert 0 <= metrics["val_accuracy"] <= 1


def test_real_handwriting_and_styles_replace_their_share_of_each_batch(synth_dir, tmp_path, monkeypatch):
    """--real-sets and --styles: a bank each, made once; each step's batch takes its share of
    digits from them (after the real-world renders), labels with them, and trains on them."""
    import digitrec.data.real as real
    from digitrec.training.step import batch_loss

    made = []

    def fake_prepared(name, split, data_dir=None):  # USPS and Semeion are not downloaded in tests
        made.append((name, split))
        images = torch.full((40, 28, 28), 7 if name == "usps" else 9, dtype=torch.uint8)
        return real.RealDigits(name, split, images, torch.full((40,), 3 if name == "usps" else 5), torch.arange(40))

    monkeypatch.setattr(real, "prepared", fake_prepared)
    cfg = TrainConfig(model="fast", dataset=str(synth_dir), val_size=100, batch_size=40, epochs=1,
                      real_sets=0.25, styles=0.25, style_bank=30, device="cpu")
    run = setup(cfg, tmp_path / "a", None, True)
    assert made == [("usps", "train"), ("semeion", "train")], "the training writers only"
    (real_x, real_y, real_share), (style_x, style_y, style_share) = run.extras
    assert len(real_x) == 80 and set(real_y.tolist()) == {3, 5} and real_share == 0.25
    assert len(style_x) == 30 and set(style_y.tolist()) <= {0, 1, 4, 7, 9} and style_share == 0.25
    seen = []
    monkeypatch.setattr(run, "forward", lambda x: seen.append(x.clone()) or run.model(x))
    batch_loss(run, torch.arange(40), 40)
    x = seen[0]
    bank = torch.cat([real_x, style_x])
    from_banks = [bool(((bank - xi[None]).abs().flatten(1).max(1).values < 1e-6).any()) for xi in x]
    assert sum(from_banks) == 20 and all(from_banks[:20]) and not any(from_banks[20:]), \
        "the first quarter from the real sets, the next from the styles, the rest the run's own digits"
