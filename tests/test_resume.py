"""Resumable training: a run killed at any moment, then resumed, ends as if nothing happened.

Each training runs in a subprocess (tests/faults.py: the real CLI with a fault hook) that
pauses at a chosen moment: after optimiser step K (mid-epoch), or halfway through
writing a chosen file (the temp file holds half of the bytes). The test then delivers a real
SIGKILL or SIGINT to the paused process. Everything is seeded and on one CPU thread, so the
resumed run must end with exactly the weights, history and metrics of an uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from digitrec.checkpoint import load_checkpoint
from digitrec.cli.main import main

FAULTS = Path(__file__).with_name("faults.py")  # the CLI with a fault hook; see its docstring
TIMEOUT = 120  # seconds any one training process may take; all of them take a few


def train_args(synth_dir: Path, out: Path) -> list[str]:
    # Augmentation and EMA on, so that their generator and averaged weights must resume too.
    return ["train", "--dataset", str(synth_dir), "--epochs", "3", "--batch-size", "64", "--val-size", "100",
            "--augment", "--ema", "0.9", "--seed", "1", "--device", "cpu", "--threads", "1", "--quiet",
            "--out", str(out)]


def start(args: list[str], fault: str, go: Path) -> subprocess.Popen:
    env = {**os.environ, "DIGITREC_FAULT": fault, "DIGITREC_GO": str(go)}
    return subprocess.Popen([sys.executable, str(FAULTS), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def wait_paused(proc: subprocess.Popen) -> str:
    """The PAUSED line of `proc`, read with a deadline (a hung process fails the test, never blocks it)."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        while True:
            line = lines.get(timeout=TIMEOUT)
            if line.startswith("PAUSED"):
                return line
    except queue.Empty:
        proc.kill()
        pytest.fail(f"the training never reached its fault point:\n{proc.stderr.read()}")


def kill_when_paused(args: list[str], fault: str, go: Path) -> str:
    proc = start(args, fault, go)
    where = wait_paused(proc)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
    return where


def resume(out: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "digitrec", "train", "--resume", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr


def read_csv(path: Path, drop: tuple[str, ...] = ("epoch_seconds",)) -> list[dict]:
    with open(path) as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def reference(synth_dir, tmp_path_factory) -> Path:
    """The same run, uninterrupted (in this process, through the same CLI)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    threads = torch.get_num_threads()
    try:
        assert main(train_args(synth_dir, out)) == 0
    finally:
        torch.set_num_threads(threads)  # --threads 1 is process-wide
    return out


def untimed(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.endswith("_seconds") and k not in ("git_commit", "phases")}


def assert_same_run(out: Path, ref: Path) -> None:
    """`out` is a finished, valid run folder identical to `ref` except for timings."""
    assert [int(r["epoch"]) for r in read_csv(out / "history.csv")] == [1, 2, 3]  # each epoch once, in order
    assert read_csv(out / "history.csv") == read_csv(ref / "history.csv")
    assert (out / "steps.csv").read_text() == (ref / "steps.csv").read_text()
    for name in ("best.pt", "last.pt"):
        got, want = load_checkpoint(out / name), load_checkpoint(ref / name)
        assert got.state_dict.keys() == want.state_dict.keys()
        for k, v in want.state_dict.items():
            assert torch.equal(got.state_dict[k], v), f"{name}: {k} differs"
    metrics, ref_metrics = (json.loads((d / "metrics.json").read_text()) for d in (out, ref))
    assert untimed(metrics) == untimed(ref_metrics)
    assert not list(out.glob(".*.tmp")), "half-written temp files were left behind"


def test_sigkill_at_any_moment_then_resume_is_exact(synth_dir, tmp_path, reference):
    out, go = tmp_path / "run", tmp_path / "never"
    # Killed in epoch 1, before any checkpoint: resuming starts again from the beginning.
    kill_when_paused(train_args(synth_dir, out), "step:5", go)
    assert (out / "config.json").exists() and not (out / "last.pt").exists()
    # 8 steps per epoch: step 13 is in the middle of epoch 2.
    assert "after step 13" in kill_when_paused(["train", "--resume", str(out), "--quiet"], "step:13", go)
    epoch_1 = load_checkpoint(out / "last.pt").train_state
    assert (epoch_1["epoch"], epoch_1["batch"]) == (1, 0)
    assert [r["epoch"] for r in read_csv(out / "history.csv")] == ["1"]

    # Resumed at epoch 2, then killed while last.pt for epoch 2 is half written.
    where = kill_when_paused(["train", "--resume", str(out), "--quiet"], "write:last.pt:1", go)
    half = Path(where.split(" into ")[1].strip())
    assert half.exists() and half.stat().st_size < (out / "last.pt").stat().st_size
    assert load_checkpoint(out / "last.pt").train_state["epoch"] == 1  # the old one, intact

    # Resumed again (history.csv is rewritten from last.pt on resume, then after epochs 2
    # and 3), and killed while the last epoch's history.csv is written: after the final
    # last.pt, before the history that goes with it.
    kill_when_paused(["train", "--resume", str(out), "--quiet"], "write:history.csv:3", go)
    assert load_checkpoint(out / "last.pt").train_state["epoch"] == 3
    assert len(read_csv(out / "history.csv")) == 2

    resume(out)
    assert_same_run(out, reference)


def test_ctrl_c_saves_mid_epoch_and_resumes_exactly(synth_dir, tmp_path, reference):
    out, go = tmp_path / "run", tmp_path / "go"
    proc = start(train_args(synth_dir, out), "step:11", go)
    wait_paused(proc)
    proc.send_signal(signal.SIGINT)
    go.touch()  # let it go on: it finishes step 11, saves, and stops
    assert proc.wait(timeout=TIMEOUT) == 130
    err = proc.stderr.read()
    assert f"digitrec train --resume {out}" in err and "Traceback" not in err
    state = load_checkpoint(out / "last.pt").train_state
    assert (state["epoch"], state["batch"]) == (1, 3)  # epoch 2, three batches done
    assert len(state["step_losses"]) == 11

    resume(out)
    assert_same_run(out, reference)


def test_resume_needs_a_run_folder(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "can be resumed (it has no config.json)" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_exact(synth_dir, tmp_path, reference):
    """Killed again and again at random moments (slowed down, so that the kills land in steps
    and in writes, not only in start-up), then resumed to the end."""
    rng = random.Random(0)
    out = tmp_path / "run"
    for _ in range(8):
        args = ["train", "--resume", str(out), "--quiet"] if (out / "config.json").exists() else \
            train_args(synth_dir, out)
        proc = start(args, "slow:0.1", tmp_path / "never")
        time.sleep(rng.uniform(2.0, 6.0))
        proc.kill()
        if proc.wait(timeout=TIMEOUT) == 0:
            break
    resume(out)
    assert_same_run(out, reference)
