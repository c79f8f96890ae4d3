import json
import subprocess
import sys

import pytest
from PIL import Image

from digitrec.cli.main import main

FIGURES = ["loss_curve.png", "correct_grid.png", "errors_grid.png", "errors_saliency.png", "confusion.png", "per_class.png", "ink.png",
           "reliability.png"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "digitrec", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_train_takes_a_fractional_number_of_epochs(synth_dir, tmp_path):
    # 500 training images at batch 50: 10 steps an epoch; 1.5 epochs stop after 15 steps
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(synth_dir), "--epochs", "1.5", "--batch-size", "50", "--val-size", "100",
                 "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["epochs"] == 1.5
    assert len((out / "steps.csv").read_text().splitlines()) - 1 == 15
    assert len((out / "history.csv").read_text().splitlines()) - 1 == 2


def test_train_then_evaluate_writes_everything(synth_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", str(synth_dir), "--epochs", "4", "--batch-size", "32", "--val-size", "100",
                 "--device", "cpu", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("epoch") for line in lines) == 4
    for name in ("config.json", "history.csv", "steps.csv", "metrics.json", "best.pt", "last.pt"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("train_accuracy", "val_accuracy", "test_accuracy", "train_loss", "val_loss", "test_loss",
                "per_class_accuracy", "confusion", "wall_seconds", "device", "seed", "torch", "git_commit"):
        assert key in metrics, key
    assert len(metrics["dataset"]["checksums"]) == 4
    assert sum(map(sum, metrics["confusion"])) == 200
    assert metrics["test_accuracy"] > 0.3  # the synthetic glyphs are learnable

    assert main(["evaluate", "--checkpoint", str(out / "best.pt")]) == 0
    printed = capsys.readouterr().out
    assert f"test accuracy {100 * metrics['test_accuracy']:.2f}% (same as in training)" in printed
    for fig in FIGURES:
        with Image.open(out / fig) as im:  # a real, non-trivial PNG
            assert im.format == "PNG" and im.width > 200 and im.height > 150
    report = (out / "report.md").read_text()
    for fig in FIGURES:
        assert f"({fig})" in report
    assert "Most-confused pairs" in report and "faint strokes" in report


def test_same_seed_same_metrics(synth_dir, tmp_path):
    results = []
    for name in ("a", "b", "c"):
        seed = "1" if name != "c" else "2"
        assert main(["train", "--dataset", str(synth_dir), "--epochs", "1", "--val-size", "100", "--seed", seed,
                     "--device", "cpu", "--quiet", "--out", str(tmp_path / name)]) == 0
        m = json.loads((tmp_path / name / "metrics.json").read_text())
        results.append((m["test_loss"], m["val_loss"], m["confusion"]))
    assert results[0] == results[1]
    assert results[0] != results[2]


def test_ensemble_evaluation(synth_run, tmp_path, synth_dir):
    other = tmp_path / "other"
    assert main(["train", "--dataset", str(synth_dir), "--epochs", "1", "--val-size", "100", "--seed", "5",
                 "--device", "cpu", "--quiet", "--out", str(other)]) == 0
    out = tmp_path / "ens"
    assert main(["evaluate", "--checkpoint", str(synth_run / "best.pt"), str(other / "best.pt"),
                 "--out", str(out)]) == 0
    summary = json.loads((out / "evaluation.json").read_text())
    assert len(summary["members"]) == 2
    assert "ensemble of 2" in (out / "report.md").read_text()
    assert (out / "errors_grid.png").exists() and (out / "loss_curve.png").exists()


@pytest.mark.parametrize("args, message", [
    (["evaluate", "--checkpoint", "/nonexistent/best.pt"], "does not exist"),
    (["train", "--dataset", "no-such-dataset"], "unknown dataset"),
    (["train", "--model", "no-such-model", "--dataset", "{synth}"], "unknown model"),
    (["train", "--schedule", "sideways", "--dataset", "{synth}", "--val-size", "100"],
     "argument --schedule: invalid choice: 'sideways'"),
    (["train", "--resume", "/nonexistent"], "not a run folder that can be resumed"),
    (["train", "--model-arg", "depth=3", "--dataset", "{synth}"], "model 'seed' takes no argument depth"),
    (["train", "--epochs", "0", "--dataset", "{synth}"], "must be positive"),
    (["train", "--recipe", "best", "--val-size", "0", "--dataset", "{synth}"], "--val-size"),
])
def test_bad_input_is_a_message_not_a_traceback(args, message, synth_dir):
    proc = run_cli(*[a.format(synth=synth_dir) for a in args])
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_enum_options_are_refused_when_parsed_before_torch_loads():
    """`--optimizer rmsprop --amp fp16` is refused by the parser itself: choices come from the
    config's Literal annotations, so a bad value costs no torch import and no data load."""
    code = ("import sys; from digitrec.cli.main import main\n"
            "try:\n    main(['train', '--optimizer', 'rmsprop', '--amp', 'fp16'])\n"
            "except SystemExit as e:\n    print(e.code, 'torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["2", "False"], proc.stderr
    assert "argument --optimizer: invalid choice: 'rmsprop' (choose from 'adam', 'adamw', 'sgd')" in proc.stderr


def test_config_errors_are_user_errors():
    from digitrec.errors import UserError
    from digitrec.training.config import config_from

    with pytest.raises(UserError, match="unknown recipe 'nope'"):
        config_from("nope")
    with pytest.raises(UserError, match="unknown optimizer 'rmsprop'"):
        config_from("seed", optimizer="rmsprop")
    with pytest.raises(UserError, match="does not know: colour"):
        config_from("seed", colour="blue")


def test_a_bug_is_a_traceback_not_a_user_error(monkeypatch, capsys):
    """Only errors the user can fix become one line; a ValueError from deep inside is a bug and
    keeps its traceback."""
    import digitrec.cli.fetch

    def broken(args):
        raise ValueError("a bug deep inside")

    monkeypatch.setattr(digitrec.cli.fetch, "run", broken)
    with pytest.raises(ValueError, match="a bug deep inside"):
        main(["fetch"])


def test_refuses_to_overwrite_a_run(synth_run):
    proc = run_cli("train", "--out", synth_run)
    assert proc.returncode == 2 and "already holds a run" in proc.stderr


def test_keep_last_keeps_the_final_weights(synth_dir, tmp_path):
    import torch

    out = tmp_path / "last"
    assert main(["train", "--dataset", str(synth_dir), "--epochs", "3", "--val-size", "100", "--lr", "0.05",
                 "--keep", "last", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == 3
    kept = torch.load(out / "best.pt", weights_only=True)
    final = torch.load(out / "last.pt", weights_only=True)
    assert kept["meta"]["epoch"] == final["meta"]["epoch"] == 3
    assert all(torch.equal(kept["state_dict"][k], final["state_dict"][k]) for k in final["state_dict"])
    assert kept["meta"]["card"]["calibrated"] and "metrics" in kept["meta"]


def test_the_gpu_recipe_without_cuda_asks_for_device_cpu(monkeypatch, tmp_path, capsys):
    """Issue first-use 6: `--recipe gpu` on a machine without CUDA would run for hours on the
    CPU; it is refused in words (exit 2) unless --device cpu says so."""
    import torch

    import digitrec.training.loop as loop

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    started = []
    monkeypatch.setattr(loop, "train", lambda cfg, out, **kw: started.append(cfg))
    assert main(["train", "--recipe", "gpu", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "--device cpu" in err and "CUDA" in err and not started
    assert main(["train", "--recipe", "gpu", "--device", "cpu", "--quiet", "--out", str(tmp_path / "b")]) == 0
    assert started[0].device == "cpu" and started[0].model_args == {"width": 96}


def test_evaluating_a_checkpoint_inside_the_package_writes_under_runs(synth_run, synth_dir, tmp_path, monkeypatch,
                                                                       capsys):
    """The shipped model lives in the installed package: its report goes to a new runs/ folder,
    never into the package, and every file written is named."""
    import shutil

    import digitrec.evaluate

    package = tmp_path / "site-packages" / "digitrec"
    (package / "pretrained").mkdir(parents=True)
    shutil.copy(synth_run / "best.pt", package / "pretrained" / "mnist.pt")
    monkeypatch.setattr(digitrec.evaluate, "PACKAGE", package)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = sorted(package.rglob("*"))
    assert main(["evaluate", "--checkpoint", str(package / "pretrained" / "mnist.pt"), "--dataset", str(synth_dir)]) == 0
    assert sorted(package.rglob("*")) == before
    out = capsys.readouterr().out
    (folder,) = (work / "runs").iterdir()
    assert folder.name.startswith("evaluate-mnist-") and f"report folder: runs/{folder.name}" in out
    written = sorted(p.relative_to(work) for p in folder.rglob("*") if p.is_file())
    assert len(written) > 3 and all(f"wrote {p}" in out for p in written)
