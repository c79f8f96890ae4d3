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

import digitrec.train
from digitrec.checkpoint import load_checkpoint
from digitrec.cli import main

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


def history(out: Path) -> list[dict]:
    with open(out / "history.csv") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def single(synth_dir, tmp_path_factory):
    """One process, in this process, recording the pixel sums of each training batch."""
    out = tmp_path_factory.mktemp("single") / "run"
    batches = []
    create_model = digitrec.train.create_model

    def create_recorded_model(*args, **kwargs):
        model = create_model(*args, **kwargs)
        model.register_forward_pre_hook(
            lambda m, inp: batches.append(inp[0].flatten(1).sum(1).tolist()) if m.training else None)
        return model

    threads = torch.get_num_threads()
    digitrec.train.create_model = create_recorded_model
    try:
        assert main(train_args(synth_dir, out)) == 0
    finally:
        digitrec.train.create_model = create_model
        torch.set_num_threads(threads)
    return out, batches


def assert_matches(out: Path, ref: Path) -> None:
    got, want = history(out), history(ref)
    assert [r["epoch"] for r in got] == ["1", "2"]
    for g, w in zip(got, want):
        assert g["step"] == w["step"] and g["val_accuracy"] == w["val_accuracy"]
        for key in ("train_loss", "val_loss", "lr"):
            assert float(g[key]) == pytest.approx(float(w[key]), rel=1e-5, abs=1e-7), key
    for name in ("best.pt", "last.pt"):
        a, b = load_checkpoint(out / name)["state_dict"], load_checkpoint(ref / name)["state_dict"]
        for k in b:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=f"{name}: {k}")
    m, r = (json.loads((d / "metrics.json").read_text()) for d in (out, ref))
    assert m["test_accuracy"] == r["test_accuracy"] and m["confusion"] == r["confusion"]


def test_two_processes_train_like_one(synth_dir, tmp_path, single):
    ref, ref_batches = single
    out = tmp_path / "run"
    proc = torchrun(train_args(synth_dir, out), env={"DIGITREC_RECORD": str(tmp_path / "batches")})
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, stderr
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
    state = load_checkpoint(out / "last.pt")["train_state"]
    assert (state["epoch"], state["batch"]) == (1, 3), err  # saved after step 11: epoch 2, batch 3

    resumed = torchrun(["train", "--resume", str(out), "--quiet"])
    _, stderr = resumed.communicate(timeout=TIMEOUT)
    assert resumed.returncode == 0, stderr
    assert_matches(out, ref)
