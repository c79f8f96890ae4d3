"""Doodles are not digits: how often does the shipped model answer `ok` to something that is no digit?

For every kind of shape (the doodles of `digitrec.doodles`: smileys, hearts, stars, arrows,
letters, ticks, crosses; and the shapes of `scenes.non_digit`: dots, blobs, frames,
scribbles, letters), N of them are drawn, written on paper under the real-world conditions
(a different condition for each, in turn), read back through `preprocess()` and the shipped
`Predictor`, and counted: the share answered `ok` (the model claims a digit, confidently),
`unsure` and `blank`. The goal is at most 3% `ok` for every kind. (benchmarks/conditions.py
--non-digits does the same for the `scenes` shapes through the CLI, beside the digits.)

    python benchmarks/nondigits.py [--n 50] [--checkpoint PATH] [--seed 0] [--expect 0.03]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine  # noqa: E402

CONDITIONS = ("clean_paper", "blue_pen", "faint_pencil", "lined_paper", "squared_paper", "phone_shadow",
              "very_thick", "very_thin", "jpeg_low", "rotated")


def kinds() -> dict[str, object]:
    """{kind: a function (rng) -> glyph}: every doodle, then every scenes shape."""
    from digitrec import scenes
    from digitrec.scenes import doodles

    out = {k: (lambda rng, k=k: doodles.doodle(k, rng)) for k in doodles.DOODLES}
    out |= {k: (lambda rng, k=k: scenes.non_digit(k, rng)) for k in scenes.NON_DIGITS}
    return out


def read(kind_draw, n: int, seed: int, predictor) -> list[str]:
    """The statuses of `n` shapes drawn by `kind_draw`, rendered on paper and read as a user's images."""
    from digitrec import scenes
    from digitrec.errors import DigitrecError
    from digitrec.inference.preprocess import preprocess

    images, statuses = [], []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        data, _ = scenes.render_glyph(kind_draw(rng), CONDITIONS[i % len(CONDITIONS)], rng)
        try:
            p = preprocess(data)
        except DigitrecError:
            statuses.append("blank")
            continue
        if p.blank:
            statuses.append("blank")
        else:
            images.append(p.image)
    return statuses + [a.status for a in predictor.predict(images)] if images else statuses


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--n", type=int, default=50, help="shapes drawn per kind")
    ap.add_argument("--checkpoint", type=Path, default=None, help="model (default: the packaged one)")
    ap.add_argument("--seed", type=int, default=0, help="how each shape is drawn and rendered")
    ap.add_argument("--expect", type=float, default=None, help="exit 1 if any kind is answered `ok` more often")
    args = ap.parse_args(argv)
    if args.n < 1:
        ap.error("--n must be at least 1")

    from digitrec.inference.predictor import Predictor

    predictor = Predictor(args.checkpoint)
    print(f"machine: {machine()}")
    print(f"checkpoint: {predictor.path}; {args.n} shapes per kind on paper ({', '.join(CONDITIONS)} in turn), "
          f"seed {args.seed}\n")
    print("| kind | n | ok | unsure | blank |")
    print("|---|---:|---:|---:|---:|")
    worst, every = 0.0, []
    for j, (kind, draw) in enumerate(kinds().items()):
        s = read(draw, args.n, args.seed * 1000 + j, predictor)
        every += s
        ok = s.count("ok") / len(s)
        worst = max(worst, ok)
        print(f"| {kind} | {len(s)} | {100 * ok:.1f}% | {100 * s.count('unsure') / len(s):.1f}% | "
              f"{100 * s.count('blank') / len(s):.1f}% |")
    print(f"| **all** | {len(every)} | **{100 * every.count('ok') / len(every):.1f}%** | "
          f"{100 * every.count('unsure') / len(every):.1f}% | {100 * every.count('blank') / len(every):.1f}% |")
    if args.expect is not None and worst > args.expect:
        print(f"\nFAIL: a kind is answered `ok` {100 * worst:.1f}% of the time, above --expect {100 * args.expect:.1f}%")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
