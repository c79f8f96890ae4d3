"""How fast is digitrec? Everything measured side by side in one run, on one machine.

    python benchmarks/speed.py                              # the CPU: every table (about 15 minutes on 2 cores)
    python benchmarks/speed.py --device cuda --seeds 10     # a GPU: the race and the start-up
    python benchmarks/speed.py --seeds 3 --textbook-batches 200   # a quicker look

Prints Markdown tables:
1. the textbook pipeline (per-sample Dataset with a PIL-style transform, DataLoader, batch 64)
   against digitrec's tensor pipeline, same `seed` model and Adam: seconds per epoch, ratio;
2. the race to 99%: the anchor (benchmarks/anchor.py, tuomaso/train_mnist_fast re-implemented)
   and the `speedrun` recipe, seed by seed, taking turns, on `--device`: training seconds to
   98% and 99% test accuracy, per seed and mean, and the ratio (data already on the device;
   warm-up reported separately; evaluation off the clock; every clock read after the device
   caught up);
3. where the wall time of a whole `digitrec train --recipe speedrun` goes;
4. the augmentation's cost per training step;
5. inference throughput of every registered model at batch 1 and 1,024, and peak memory;
6. process start to first answer of `digitrec predict one.png`: the default backend (ONNX
   Runtime, which never imports torch) against `--backend torch`.
The test set is used here only to time the way to a fixed accuracy; no choice is made on it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _common import clock, machine  # noqa: F401  (clock: anchor.py's)
from digitrec.data.load import load
from digitrec.metrics import logits_of
from digitrec.models import MODELS, count_parameters, create_model
from digitrec.training.config import config_from
from digitrec.training.loop import train


# ----------------------------------------------------------------------------- 1. pipelines


class TextbookMNIST(torch.utils.data.Dataset):
    """What the tutorials do: one sample at a time, through PIL, ToTensor and Normalize."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images.numpy(), labels.tolist()

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        import numpy as np
        from PIL import Image

        img = Image.fromarray(self.images[i], mode="L")  # torchvision's MNIST returns a PIL image
        x = torch.from_numpy(np.array(img, dtype=np.uint8)).float().div(255).unsqueeze(0)  # ToTensor
        x = (x - 0.1307) / 0.3081  # Normalize((0.1307,), (0.3081,))
        return x, self.labels[i]


def textbook_epoch(ds, max_batches: int | None) -> tuple[float, int]:
    torch.manual_seed(0)
    model = create_model("seed")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(TextbookMNIST(ds.train_x, ds.train_y), batch_size=64, shuffle=True)
    model.train()
    t0, batches = time.perf_counter(), 0
    for x, y in loader:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        batches += 1
        if max_batches and batches >= max_batches:
            break
    return time.perf_counter() - t0, batches


def digitrec_epoch(ds, max_batches: int | None) -> tuple[float, int]:
    n = len(ds.train_x) - 5000
    epochs = min(1.0, max_batches * 64 / n) if max_batches else 1.0
    cfg = config_from("seed", epochs=epochs, batch_size=64, schedule="constant", eval_every=10**6, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        m = train(cfg, tmp, data=ds, quiet=True)
    return m["train_seconds"], -(-int(epochs * n) // 64)


def data_only(ds) -> tuple[float, float]:
    """Seconds to produce one epoch of batch-64 training batches, with no model: (textbook, digitrec)."""
    from digitrec.data.load import split_indices

    loader = torch.utils.data.DataLoader(TextbookMNIST(ds.train_x, ds.train_y), batch_size=64, shuffle=True)
    t0 = time.perf_counter()
    for x, y in loader:
        pass
    textbook = time.perf_counter() - t0
    t0 = time.perf_counter()
    tr, _ = split_indices(len(ds.train_x), 5000)
    x_all, y_all = ds.spec.card().normalise(ds.train_x[tr]), ds.train_y[tr]  # once per run
    perm = torch.randperm(len(x_all))
    for i in range(0, len(x_all), 64):
        batch = perm[i : i + 64]
        x_all[batch], y_all[batch]  # noqa: B018  (making the batch is what is timed)
    return textbook, time.perf_counter() - t0


# ----------------------------------------------------------------------------- 2. time to accuracy


class Watch:
    """Test accuracy every `every` steps (the clock stopped: training's `observe`), and the
    training seconds at which each target was first reached."""

    def __init__(self, ds, device: str, targets=(0.98, 0.99)):
        self.ds, self.device, self.targets, self.reached = ds, device, targets, {}
        self.card = ds.spec.card()
        self.test_x, self.test_y = ds.test_x, ds.test_y.to(device)

    def __call__(self, step, seconds, model):
        acc = float((logits_of(model, self.test_x, self.card, self.device).argmax(1).to(self.device)
                     == self.test_y).float().mean())
        for t in self.targets:
            if acc >= t and t not in self.reached:
                self.reached[t] = seconds

    def row(self, who: str, seed: int, train_seconds: float, accuracy: float, warmup: float = 0.0) -> dict:
        return {"who": who, "seed": seed, "train_seconds": train_seconds, "warmup_seconds": warmup,
                "test_accuracy": accuracy, **{f"t{round(t * 100)}": self.reached.get(t) for t in self.targets}}


def run_anchor(ds, device: str, seed: int, every: int) -> dict:
    from anchor import train_anchor

    watch = Watch(ds, device)
    got = train_anchor(ds.train_x, ds.train_y, device, seed, observe=watch, every=every)
    acc = float((logits_of(got["model"], ds.test_x, ds.spec.card(), device).argmax(1) == ds.test_y).float().mean())
    return watch.row("anchor", seed, got["train_seconds"], acc)


def run_digitrec(ds, device: str, seed: int, every: int, recipe: str, graph: str = "auto") -> dict:
    watch = Watch(ds, device)
    cfg = config_from(recipe, seed=seed, device=device, graph=graph)
    with tempfile.TemporaryDirectory() as tmp:
        m = train(cfg, tmp, data=ds, quiet=True, observe=watch, observe_every=every)
    return watch.row(f"digitrec `{recipe}`", seed, m["train_seconds"], m["test_accuracy"], m["warmup_seconds"])


def warm_process(device: str) -> None:
    """One Adam step on a throwaway layer: the process's first optimizer step imports
    torch._dynamo (about 2.7 s here), which would otherwise land in the first run's training time."""
    layer = torch.nn.Linear(2, 2).to(device)
    opt = torch.optim.Adam(layer.parameters())
    layer(torch.zeros(1, 2, device=device)).sum().backward()
    opt.step()


def race(ds, device: str, seeds: int, every: int, recipe: str, graph: str = "auto") -> list[dict]:
    """The anchor and digitrec, seed by seed, taking turns on who goes first (so both see the
    same machine load), on the same data and device."""
    warm_process(device)
    rows = []
    for seed in range(seeds):
        pair = [lambda s=seed: run_anchor(ds, device, s, every), lambda s=seed: run_digitrec(ds, device, s, every, recipe, graph)]
        for run in (pair if seed % 2 == 0 else pair[::-1]):
            rows.append(run())
            print("  " + json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


def race_table(rows: list[dict]) -> None:
    who = list(dict.fromkeys(r["who"] for r in rows))
    print("| | " + " | ".join(who) + " |\n|---|" + "---:|" * len(who))
    for key, label in (("t99", "seconds of training to 99% test accuracy, mean"),
                       ("t98", "seconds of training to 98%, mean"),
                       ("train_seconds", "seconds of training in all, mean"),
                       ("test_accuracy", "final test accuracy, mean"),
                       ("warmup_seconds", "warm-up (untimed: compilation, graph capture), mean")):
        cells = []
        for w in who:
            vals = [r[key] for r in rows if r["who"] == w and r[key] is not None]
            missed = sum(1 for r in rows if r["who"] == w) - len(vals)
            if key == "test_accuracy":
                cells.append(f"{100 * statistics.mean(vals):.2f}%")
            else:
                cells.append((f"{statistics.mean(vals):.3f}" if vals else "-") + (f" ({missed} never)" if missed else ""))
        print(f"| {label} | " + " | ".join(cells) + " |")
    t99 = {w: [r["t99"] for r in rows if r["who"] == w] for w in who}
    both = [i for i in range(len(t99[who[0]])) if all(t99[w][i] is not None for w in who)] if len(who) == 2 else []
    if both:
        ratio = statistics.mean(t99[who[0]][i] for i in both) / statistics.mean(t99[who[1]][i] for i in both)
        print(f"\n{who[1]} reaches 99% **{ratio:.2f}x** as fast as the {who[0]} (mean over the {len(both)} seeds "
              "where both did, same run)")
    print("\n| seed | " + " | ".join(f"{w}: t99 s | final %" for w in who) + " |\n|---:|" + "---:|---:|" * len(who))
    for seed in sorted({r["seed"] for r in rows}):
        cells = []
        for w in who:
            r = next(r for r in rows if r["who"] == w and r["seed"] == seed)
            cells += [f"{r['t99']:.3f}" if r["t99"] is not None else "never", f"{100 * r['test_accuracy']:.2f}"]
        print(f"| {seed} | " + " | ".join(cells) + " |")
    print()


def startup(recipe: str, device: str) -> dict:
    """Where the wall time of a whole `digitrec train --recipe RECIPE` goes: the run's own phases
    (metrics.json) and, by difference, the process start and imports before training begins."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "digitrec", "train", "--recipe", recipe, "--device", device, "--quiet",
                        "--out", str(Path(tmp) / "run")], check=True, capture_output=True, timeout=3600)
        wall = time.perf_counter() - t0
        m = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
    phases = m["phases"]
    return {"wall": wall, "start and imports": wall - m["wall_seconds"] - phases.get("writing", 0.0), **phases}


def augmentation_overhead(steps: int = 30) -> list[dict]:
    """Training-step time with and without the per-image affine augmentation, same batches."""
    from digitrec.augment import AffineAug

    rows = []
    for name, kwargs, bs in (("deep", {"width": 32}, 128), ("fast", {}, 256)):
        torch.manual_seed(0)
        model = create_model(name, **kwargs).to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters())
        x = torch.randn(bs, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (bs,))
        aug, gen = AffineAug(), torch.Generator().manual_seed(0)
        times = {False: [], True: []}
        for i in range(2 * steps + 4):  # alternate, so both see the same machine load
            augment = bool(i % 2)
            t0 = time.perf_counter()
            xb = aug(x, -0.4242, gen) if augment else x
            loss = F.cross_entropy(model(xb), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= 4:
                times[augment].append(time.perf_counter() - t0)
        plain, augd = statistics.median(times[False]), statistics.median(times[True])
        rows.append({"model": name, "batch": bs, "plain_ms": 1000 * plain, "aug_ms": 1000 * augd,
                     "overhead": augd / plain - 1})
    return rows


# ----------------------------------------------------------------------------- 3. inference


def inference_child(name: str) -> None:
    """Run in a fresh process so that peak memory belongs to this model alone."""
    from digitrec.models import for_inference

    torch.manual_seed(0)
    model = create_model(name).eval()
    out = {"model": name, "parameters": count_parameters(model)}
    model = for_inference(model)  # as `digitrec predict` and `serve` run it
    with torch.inference_mode():
        for bs, min_time in ((1, 2.0), (1024, 3.0)):
            x = torch.randn(bs, 1, 28, 28)
            for _ in range(3):
                model(x)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < min_time:
                model(x)
                n += bs
            out[f"batch{bs}"] = n / (time.perf_counter() - t0)
    out["peak_mib"] = int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024
    print(json.dumps(out))


def inference_all() -> list[dict]:
    rows = []
    for name in sorted(MODELS):
        proc = subprocess.run([sys.executable, __file__, "--inference-child", name], capture_output=True, text=True,
                              timeout=300, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return rows


# ----------------------------------------------------------------------------- 4. CLI start-up


PREDICT_BACKENDS = {"default (auto: ONNX Runtime, no torch import)": [], "`--backend torch`": ["--backend", "torch"]}


def predict_latency(ds, repeats: int = 10) -> dict[str, list[float]] | str:
    """Seconds from process start to answer, per backend; the backends take turns, so that
    both see the same machine load."""
    from PIL import Image

    exe = Path(sys.executable).with_name("digitrec")
    times: dict[str, list[float]] = {name: [] for name in PREDICT_BACKENDS}
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "one.png"
        Image.fromarray(255 - ds.test_x[0].numpy()).save(png)  # dark ink on white, like a scan
        for _ in range(repeats):
            for name, extra in PREDICT_BACKENDS.items():
                t0 = time.perf_counter()
                proc = subprocess.run([str(exe), "predict", str(png), *extra], capture_output=True, text=True,
                                      timeout=120)
                times[name].append(time.perf_counter() - t0)
                if proc.returncode != 0:
                    return f"digitrec predict {' '.join(extra)} failed: {proc.stderr.strip()[:200]}"
    return times


# ----------------------------------------------------------------------------- main


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=10, help="seeds for the time-to-accuracy runs")
    p.add_argument("--textbook-batches", type=int, default=0,
                   help="time only this many batches of each pipeline (0 = one full epoch)")
    p.add_argument("--recipe", default="speedrun")
    p.add_argument("--device", default="cpu", help="cpu or cuda: where both trainings of the race run")
    p.add_argument("--graph", default="auto", choices=("auto", "on", "off"),
                   help="digitrec's CUDA-graph training step in the race (training's --graph)")
    p.add_argument("--every", type=int, default=10, help="steps between accuracy checks in the race")
    p.add_argument("--skip", default="",
                   help="comma-separated parts to skip: pipeline,accuracy,startup,augment,inference,predict")
    p.add_argument("--inference-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.inference_child:
        return inference_child(args.inference_child)
    skip = set(args.skip.split(","))
    if args.device != "cpu":
        skip |= {"pipeline", "augment", "inference", "predict"}  # CPU-only parts
    ds = load("mnist")
    print(f"Machine: {machine()}\n")

    if "pipeline" not in skip:
        tb, nb = textbook_epoch(ds, args.textbook_batches or None)
        dr, nd = digitrec_epoch(ds, args.textbook_batches or None)
        full = (len(ds.train_x) - 5000) / 64
        tb_epoch, dr_epoch = tb * full / nb, dr * full / nd
        print("| pipeline (seed model, Adam, batch 64) | seconds per epoch | ratio |\n|---|---:|---:|")
        print(f"| textbook: per-sample Dataset + DataLoader | {tb_epoch:.1f} | 1.0x |")
        print(f"| digitrec: tensors + randperm | {dr_epoch:.1f} | {tb_epoch / dr_epoch:.1f}x faster |")
        tb_data, dr_data = data_only(ds)
        print(f"| data only, no model: textbook | {tb_data:.2f} | 1.0x |")
        print(f"| data only, no model: digitrec (including the one-off conversion to float) | {dr_data:.2f} | "
              f"{tb_data / dr_data:.0f}x faster |")
        if args.textbook_batches:
            print(f"\n(timed {nb} textbook and {nd} digitrec batches, scaled to a {len(ds.train_x) - 5000:,}-image epoch)")
        print()

    if "accuracy" not in skip:
        print(f"Time to 99% on {args.device}: the anchor (benchmarks/anchor.py, a faithful re-implementation of "
              f"tuomaso/train_mnist_fast) and `digitrec train --recipe {args.recipe}`, {args.seeds} seeds each, "
              "taking turns, the same data on the same device; test accuracy every "
              f"{args.every} steps with the clock stopped.\n")
        race_table(race(ds, args.device, args.seeds, args.every, args.recipe, args.graph))

    if "startup" not in skip:
        phases = startup(args.recipe, args.device)
        print(f"| `digitrec train --recipe {args.recipe} --device {args.device}`, where the wall time goes | seconds |"
              "\n|---|---:|")
        for k, v in phases.items():
            print(f"| {k} | {v:.2f} |")
        print()

    if "augment" not in skip:
        print("| training step | batch | ms without augmentation | ms with | overhead |\n|---|---:|---:|---:|---:|")
        for r in augmentation_overhead():
            print(f"| {r['model']} | {r['batch']} | {r['plain_ms']:.1f} | {r['aug_ms']:.1f} | {100 * r['overhead']:+.1f}% |")
        print()

    if "inference" not in skip:
        print("| model | parameters | images/s at batch 1 | images/s at batch 1,024 | peak memory (MiB) |")
        print("|---|---:|---:|---:|---:|")
        for r in inference_all():
            print(f"| {r['model']} | {r['parameters']:,} | {r['batch1']:,.0f} | {r['batch1024']:,.0f} | {r['peak_mib']:.0f} |")
        print()

    if "predict" not in skip:
        times = predict_latency(ds)
        if isinstance(times, str):
            print(f"`digitrec predict one.png`: {times}")
        else:
            print("| `digitrec predict one.png`, process start to answer | median s | min | max | runs |\n"
                  "|---|---:|---:|---:|---:|")
            for name, t in times.items():
                print(f"| {name} | {statistics.median(t):.2f} | {min(t):.2f} | {max(t):.2f} | {len(t)} |")


if __name__ == "__main__":
    main()
