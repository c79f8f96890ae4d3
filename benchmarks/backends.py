"""Inference throughput of the two backends: PyTorch and ONNX Runtime, batch 1 and 1,024.

Both run the same checkpoint on the CPU (ONNX through `digitrec.inference.onnxmodel.OnnxModel`, as
`digitrec predict --backend onnx` does), on the same normalised (B, 1, 28, 28) input, with
each runtime's default thread count. Each figure is the best of --repeats timed runs of at
least --seconds, after a warm-up; the outputs are checked to agree first.

    python benchmarks/backends.py --checkpoint /tmp/b-run/best.pt [--threads N]

Measured 2026-11-23 (2 shared CPU cores, load average 3-5 from other jobs; torch 2.13 CPU,
onnxruntime 1.32; seed model; images per second, best of 3 runs of 2 s):

    | threads        | batch | torch  | onnx   | onnx / torch |
    |----------------|------:|-------:|-------:|-------------:|
    | defaults (2)   |     1 |  1,596 |  7,062 |        4.4x  |
    | defaults (2)   | 1,024 |  3,741 | 19,074 |        5.1x  |
    | 1 (--threads 1)|     1 |  8,706 | 13,029 |        1.5x  |
    | 1 (--threads 1)| 1,024 |  6,308 | 20,858 |        3.3x  |

On a busy machine PyTorch's two intra-op threads hurt it (batch 1 fell to 21 images/s
while other jobs trained); one thread is faster for single images.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch


def images_per_second(fn, x: torch.Tensor, seconds: float, repeats: int) -> float:
    for _ in range(3):
        fn(x)  # warm up
    best = 0.0
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            fn(x)
            n += 1
        best = max(best, n * len(x) / elapsed)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 1024])
    p.add_argument("--seconds", type=float, default=2.0, help="length of one timed run")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per figure; the best is kept")
    p.add_argument("--threads", type=int, default=0, help="threads for both runtimes; 0 = their defaults")
    args = p.parse_args(argv)

    from digitrec.checkpoint import load_model
    from digitrec.inference.onnxmodel import OnnxModel

    if args.threads:
        torch.set_num_threads(args.threads)
    model, ckpt = load_model(args.checkpoint)
    onnx_model = OnnxModel(args.checkpoint, threads=args.threads)

    @torch.inference_mode()
    def run_torch(x):
        return model(x)

    backends = {"torch": run_torch, "onnx": onnx_model}
    x = torch.randn(max(args.batches), 1, 28, 28, generator=torch.Generator().manual_seed(0))
    diff = float((run_torch(x).softmax(1) - onnx_model(x).softmax(1)).abs().max())
    print(f"{ckpt.name} model from {args.checkpoint}; ONNX export {onnx_model.path.name}; "
          f"largest difference in probability: {diff:.1e}", file=sys.stderr)

    rows = []
    for batch in args.batches:
        xb = x[:batch].contiguous()
        for name, fn in backends.items():
            rate = images_per_second(fn, xb, args.seconds, args.repeats)
            rows.append((name, batch, rate))
            print(f"{name} batch {batch}: {rate:,.0f} images/s", file=sys.stderr)

    import onnxruntime

    print(f"\n{ckpt.name} model, CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} "
          f"cores, shared), torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"onnxruntime {onnxruntime.__version__}\n")
    print("| batch | torch images/s | onnx images/s | onnx / torch |")
    print("|---:|---:|---:|---:|")
    for batch in args.batches:
        t = next(r for n, b, r in rows if n == "torch" and b == batch)
        o = next(r for n, b, r in rows if n == "onnx" and b == batch)
        print(f"| {batch:,} | {t:,.0f} | {o:,.0f} | {o / t:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
