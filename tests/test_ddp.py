"""Multi-process training: `torchrun --nproc-per-node 2 -m digitrec train` on CPU (gloo).

Two processes, each with its own shard of every batch, must train the same model as one
process does (up to float summation order), and only rank 0 writes the run folder.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

import digitrec.training.loop
from digitrec.checkpoint import load_checkpoint
from digitrec.cli.main import main

FAULTS = Path(__file__).with_name("faults.py")  # the CLI with a fault hook; see its docstring
TIMEOUT = 180


def train_args(synth_dir: Path, out: Path) -> list[str]:
    # 600 - 151 = 449 training images in batches of 64: the last batch holds one image, so
    # one rank's shard of it is empty and the shards of the others differ in size.
    return ["train", "--dataset", str(synth_dir), "--epochs", "2", "--batch-size", "64", "--val-size", "151",
            "--device", "cpu", "--threads", "1", "--seed", "3", "--quiet", "--out", str(out)]


def torchrun(args: list[str], env: dict | None = None, **popen) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc-per-node", "2",
           str(FAULTS), *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})}, **popen)


class RankCrashed(Exception):
    """A process of the run died (a signal, an error, a hang): the run says nothing about the
    weights, right or wrong. Raised instead of an AssertionError, so a crash is never read
    as a wrong result, nor a wrong result as a crash."""


def ended(proc: subprocess.Popen) -> tuple[str, str]:
    """torchrun's (stdout, stderr) once every rank has ended cleanly; RankCrashed otherwise."""
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        raise RankCrashed(f"torchrun still running after {TIMEOUT} s:\n{stderr[-4000:]}") from None
    if proc.returncode != 0:
        raise RankCrashed(f"torchrun exited with {proc.returncode}:\n{stderr[-4000:]}")
    return stdout, stderr


def history(out: Path) -> list[dict]:
    with open(out / "history.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def single(synth_dir, tmp_path_factory):
    """One process, in this process, recording the pixel sums of each training batch."""
    out = tmp_path_factory.mktemp("single") / "run"
    batches = []
    create_model = digitrec.training.loop.create_model

    def create_recorded_model(*args, **kwargs):
        model = create_model(*args, **kwargs)
        model.register_forward_pre_hook(
            lambda m, inp: batches.append(inp[0].flatten(1).sum(1).tolist()) if m.training else None)
        return model

    threads = torch.get_num_threads()
    digitrec.training.loop.create_model = create_recorded_model
    try:
        assert main(train_args(synth_dir, out)) == 0
    finally:
        digitrec.training.loop.create_model = create_model
        torch.set_num_threads(threads)
    return out, batches


EPS32 = torch.finfo(torch.float32).eps


def assert_trained_alike(got: dict, want: dict, steps: int, lr: float, what: str = "") -> None:
    """Weights trained by two processes against one, allowing for float32 summation order.

    The same sums taken in another order (two shards, another CPU's kernels) differ in their
    last bits, and training carries those differences along: after `steps` steps each weight may
    have drifted by a few rounding units per step, and Adam, which divides each gradient by its
    own running size, can turn a last-bit difference in a near-zero gradient into a different
    step for that one weight (seen: one weight of 216,320 off by 1.08e-5 on an AMD EPYC). So:
      - no weight may differ by more than training could have moved it (`steps` Adam steps of
        at most `lr` each): a NaN, a swapped or stale tensor fails here;
      - over each tensor, the root-mean-square difference must stay at the level of rounding,
        100 rounding units per step of the tensor's own root-mean-square size. A real
        difference, such as gradients not averaged over the ranks, moves every weight and
        lands tens to thousands of times above it (test_a_broken_gradient_reduction_is_caught)."""
    assert got.keys() == want.keys(), what
    for k, b in want.items():
        a, b = got[k].double(), b.double()
        assert a.shape == b.shape, f"{what}{k}: shape {tuple(a.shape)} != {tuple(b.shape)}"
        diff = (a - b).abs()
        assert float(diff.max()) <= steps * lr, f"{what}{k}: a weight is {float(diff.max()):.3g} off"
        rms, size = float(diff.square().mean().sqrt()), float(b.square().mean().sqrt())
        allowed = 100 * EPS32 * steps * max(size, 1e-12)
        assert rms <= allowed, f"{what}{k}: RMS difference {rms:.3g} > {allowed:.3g} allowed for rounding"


def assert_matches(out: Path, ref: Path) -> None:
    got, want = history(out), history(ref)
    assert [r["epoch"] for r in got] == ["1", "2"]
    for g, w in zip(got, want):
        assert g["step"] == w["step"] and g["val_accuracy"] == w["val_accuracy"]
        for key in ("train_loss", "val_loss", "lr"):
            assert float(g[key]) == pytest.approx(float(w[key]), rel=1e-5, abs=1e-7), key
    config = json.loads((ref / "config.json").read_text())
    for name in ("best.pt", "last.pt"):
        assert_trained_alike(load_checkpoint(out / name).state_dict, load_checkpoint(ref / name).state_dict,
                             steps=int(want[-1]["step"]), lr=config["lr"], what=f"{name}: ")
    m, r = (json.loads((d / "metrics.json").read_text()) for d in (out, ref))
    assert m["test_accuracy"] == r["test_accuracy"] and m["confusion"] == r["confusion"]


def test_the_comparison_allows_rounding_and_catches_a_real_difference(single):
    """On the single-process run's own weights: one weight off by 1.08e-5 (the AMD case) and
    last-bit noise everywhere pass; a difference the size of a training step in every weight fails."""
    ref, _ = single
    want = load_checkpoint(ref / "last.pt").state_dict
    g = torch.Generator().manual_seed(0)
    rounded = {k: v * (1 + 4 * EPS32 * torch.randn(v.shape, generator=g)) for k, v in want.items()}
    rounded["3.weight"].view(-1)[12345] += 1.08e-5
    assert_trained_alike(rounded, want, steps=16, lr=1e-3)
    shifted = {k: v + 1e-4 * torch.randn(v.shape, generator=g) for k, v in want.items()}
    with pytest.raises(AssertionError, match="RMS difference"):
        assert_trained_alike(shifted, want, steps=16, lr=1e-3)
    with pytest.raises(AssertionError, match="off"):
        assert_trained_alike({**want, "3.bias": want["3.bias"] + 1}, want, steps=16, lr=1e-3)


def test_two_processes_train_like_one(synth_dir, tmp_path, single):
    ref, ref_batches = single
    out = tmp_path / "run"
    stdout, _ = ended(torchrun(train_args(synth_dir, out), env={"DIGITREC_RECORD": str(tmp_path / "batches")}))
    assert stdout.count("run folder:") == 1  # rank 0 speaks, rank 1 does not

    # Each rank trained on its own shard of every batch; together, on exactly the batch.
    # (The last 16 forward passes in training mode are the 16 steps; any before are warm-up.)
    ranks = [json.loads((tmp_path / f"batches.{r}.json").read_text())[-16:] for r in (0, 1)]
    for step, (a, b, whole) in enumerate(zip(*ranks, ref_batches[-16:])):
        assert abs(len(a) - len(b)) <= 1 and len(a) + len(b) == len(whole), step
        assert Counter(a) + Counter(b) == Counter(whole), step
    assert len(ranks[1][-1]) == 0  # the one-image batch: rank 1's shard is empty

    # Only rank 0 wrote, and wrote what one process writes.
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ref.iterdir())
    assert_matches(out, ref)


def test_a_broken_gradient_reduction_is_caught(synth_dir, tmp_path, single):
    """Two processes that do not average their gradients (each steps on its own shard) must fail
    the comparison that real two-process training passes."""
    ref, _ = single
    out = tmp_path / "run"
    ended(torchrun(train_args(synth_dir, out), env={"DIGITREC_FAULT": "nosync"}))  # both ranks end cleanly
    with pytest.raises(AssertionError, match="RMS difference"):
        assert_trained_alike(load_checkpoint(out / "last.pt").state_dict, load_checkpoint(ref / "last.pt").state_dict,
                             steps=16, lr=1e-3)


def test_a_crashed_rank_is_reported_as_a_crash(synth_dir, tmp_path):
    """Rank 1 aborts in the middle of training (SIGABRT, what a crash inside gloo looks like):
    the run ends at once, non-zero, naming the signal; the tests report it as RankCrashed,
    never as a comparison of weights, and nothing is written as if the run had finished."""
    out = tmp_path / "run"
    proc = torchrun(train_args(synth_dir, out), env={"DIGITREC_FAULT": "crash:5", "DIGITREC_FAULT_RANK": "1"})
    with pytest.raises(RankCrashed, match="SIGABRT") as crashed:
        ended(proc)
    assert not isinstance(crashed.value, AssertionError)
    assert not (out / "metrics.json").exists()


def test_ctrl_c_under_torchrun_saves_and_resumes(synth_dir, tmp_path, single):
    """Ctrl-C reaches torchrun and every worker, whatever step each is in; they must agree on
    one step to stop after, or one waits forever for the other (or crashes without saving)."""
    ref, _ = single
    out, go = tmp_path / "run", tmp_path / "go"
    # Rank 1 pauses after step 11; rank 0 runs on until it needs rank 1.
    env = {"DIGITREC_FAULT": "step:11", "DIGITREC_FAULT_RANK": "1", "DIGITREC_GO": str(go)}
    proc = torchrun(train_args(synth_dir, out), env=env, start_new_session=True)  # a terminal's foreground job
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        while not lines.get(timeout=TIMEOUT).startswith("PAUSED rank 1"):
            pass
    except queue.Empty:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"rank 1 never paused:\n{proc.stderr.read()}")
    time.sleep(0.5)  # rank 0 is now blocked, waiting for rank 1
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    go.touch()
    try:
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    err = proc.stderr.read()
    assert proc.returncode != 0
    state = load_checkpoint(out / "last.pt").train_state
    assert (state["epoch"], state["batch"]) == (1, 3), err  # saved after step 11: epoch 2, batch 3

    ended(torchrun(["train", "--resume", str(out), "--quiet"]))
    assert_matches(out, ref)
