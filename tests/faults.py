"""Run the `digitrec` CLI with a fault hook, for tests that kill or interrupt training.

    python tests/faults.py train ...                       (or under torchrun)

$DIGITREC_FAULT picks the moment to pause at:
    step:K          after optimiser step K (counted in this process)
    write:NAME:K    during the K-th write of NAME, with half of its bytes in the temp file
    slow:S          no pause: every optimiser step and every file write take S seconds longer
    nosync          no pause: under torchrun, gradients are not averaged over the ranks (a broken
                    reduction, which the multi-process tests must be able to tell apart)
    crash:K         no pause: the process aborts (SIGABRT, as a crash inside gloo would) after
                    optimiser step K, with its peers still training
At that moment the process (under torchrun: only rank $DIGITREC_FAULT_RANK, if set) prints
"PAUSED rank R <where>" and waits until the file $DIGITREC_GO exists, so a test can signal or kill it there; after two minutes it gives up.
$DIGITREC_RECORD=PREFIX writes the size and per-image pixel sums of every training batch
to PREFIX.<rank>.json, to show which images each rank trained on.
"""

from __future__ import annotations

import json
import os
import sys
import time


def pause(what: str) -> None:
    rank = os.environ.get("RANK", "0")
    if os.environ.get("DIGITREC_FAULT_RANK", rank) != rank:
        return
    print("PAUSED rank", rank, what, flush=True)
    go, deadline = os.environ.get("DIGITREC_GO", ""), time.monotonic() + 120
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            os._exit(3)  # the test is gone: never linger
        time.sleep(0.02)


def crash(what: str) -> None:
    rank = os.environ.get("RANK", "0")
    if os.environ.get("DIGITREC_FAULT_RANK", rank) == rank:
        print("CRASHING rank", rank, what, flush=True)
        os.abort()


def install(fault: str, record: str | None) -> None:
    import digitrec.checkpoint
    import digitrec.training.distributed
    import digitrec.training.loop
    import digitrec.util

    kind, _, arg = fault.partition(":")
    if kind in ("step", "crash"):
        make_optimizer = digitrec.training.loop.make_optimizer
        at_step = pause if kind == "step" else crash

        def make_paused_optimizer(cfg, model):
            opt, steps = make_optimizer(cfg, model), [0]

            def hook(*_):
                steps[0] += 1
                if steps[0] == int(arg):
                    at_step(f"after step {steps[0]}")

            opt.register_step_post_hook(hook)
            return opt

        digitrec.training.loop.make_optimizer = make_paused_optimizer
    elif kind == "write":
        name, k = arg.rsplit(":", 1)
        atomic_write, seen = digitrec.util.atomic_write, [0]

        def paused_atomic_write(path, write):
            def half_write(tmp):
                write(tmp)
                if path.name == name:
                    seen[0] += 1
                    if seen[0] == int(k):
                        os.truncate(tmp, os.path.getsize(tmp) // 2)
                        pause(f"writing {path.name} into {tmp}")

            atomic_write(path, half_write)

        digitrec.util.atomic_write = digitrec.checkpoint.atomic_write = paused_atomic_write
    elif kind == "slow":  # every step and every write take `arg` seconds longer: kills land inside them
        delay = float(arg)
        make_optimizer, atomic_write = digitrec.training.loop.make_optimizer, digitrec.util.atomic_write

        def make_slow_optimizer(cfg, model):
            opt = make_optimizer(cfg, model)
            opt.register_step_post_hook(lambda *_: time.sleep(delay))
            return opt

        def slow_atomic_write(path, write):
            atomic_write(path, lambda tmp: (write(tmp), time.sleep(delay)))

        digitrec.training.loop.make_optimizer = make_slow_optimizer
        digitrec.util.atomic_write = digitrec.checkpoint.atomic_write = slow_atomic_write
    elif kind == "nosync":
        digitrec.training.distributed.wrap = lambda model: model
    elif kind:
        raise SystemExit(f"unknown fault {fault!r}")

    if record:
        import atexit

        create_model, batches = digitrec.training.loop.create_model, []

        def create_recorded_model(*args, **kwargs):
            model = create_model(*args, **kwargs)

            def hook(module, inputs):
                if module.training:  # training batches only, not validation
                    x = inputs[0]
                    batches.append(x.flatten(1).sum(1).tolist())

            model.register_forward_pre_hook(hook)
            return model

        digitrec.training.loop.create_model = create_recorded_model
        path = f"{record}.{os.environ.get('RANK', '0')}.json"
        atexit.register(lambda: open(path, "w").write(json.dumps(batches)))


if __name__ == "__main__":
    install(os.environ.get("DIGITREC_FAULT", ""), os.environ.get("DIGITREC_RECORD"))
    from digitrec.cli.main import main

    sys.exit(main(sys.argv[1:]))
