"""`digitrec serve`: the HTTP API and the drawing page (digitrec.server.app builds the app,
digitrec.server.connections guards the connections)."""

from __future__ import annotations

import signal
import socket
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError, require
from .options import model_args
from .read import limit_args

LIMITS = ("head_timeout", "body_timeout", "max_connections", "max_idle")


def add_arguments(p) -> None:
    from ..corrections import MAX_SAMPLES
    from ..inference.decode import MAX_BYTES

    model_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a host name the server is reached by, besides --host, localhost, 127.0.0.1 and [::1] "
                        "(repeatable); requests naming any other host are refused (default: none)")
    p.add_argument("--max-upload", type=int, default=MAX_BYTES,
                   help="largest accepted image in bytes (the page reads it from /api/health)")
    p.add_argument("--max-concurrency", type=int, default=4, help="predictions computed at the same time")
    p.add_argument("--head-timeout", type=float, default=10.0,
                   help="seconds a client has to send a request's headers before it gets 408")
    p.add_argument("--body-timeout", type=float, default=20.0,
                   help="seconds a client has to send an image, plus one for every 500 bytes sent")
    p.add_argument("--max-connections", type=int, default=1024,
                   help="open connections; at the limit an idle one is closed to make room, else 503")
    p.add_argument("--max-idle", type=int, default=256,
                   help="connections waiting for a request; past this the longest-waiting is closed")
    limit_args(p)
    p.add_argument("--collect", type=Path, default=None, metavar="DIR",
                   help="keep the corrections people send (the page's 'wrong? it is ...') in DIR, an MNIST-format "
                        "dataset for `digitrec finetune` (default: corrections are refused, nothing is stored)")
    p.add_argument("--collect-max", type=int, default=MAX_SAMPLES,
                   help="most corrections DIR may hold; past it they are refused (507)")


def _check_port(host: str, port: int) -> None:
    if not 0 < port < 65536:
        raise UserError(f"--port {port} is not a TCP port (1-65535)")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}; "
                            "choose another --port or --host") from None


def _limits(args):
    from ..server.connections import ConnectionLimits

    for name in LIMITS:
        if getattr(args, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, not {getattr(args, name)}")
    if args.max_upload < 1 or args.max_concurrency < 1:
        raise UserError("--max-upload and --max-concurrency must be at least 1")
    return ConnectionLimits(**{name: getattr(args, name) for name in LIMITS})


def _collect(args, card):
    """The corrections folder of --collect, checked (a damaged one is refused here, in words,
    not at every request), or None."""
    if args.collect is None:
        return None
    from ..corrections import Corrections
    from ..util import say

    if args.collect_max < 1:
        raise UserError(f"--collect-max must be at least 1, not {args.collect_max}")
    collect = Corrections(args.collect, card.classes, card.mean, card.std, args.collect_max)
    state = collect.prepare()
    recovered = (f", {state.recovered:,} recovered from the IDX files: their log rows were missing"
                 if state.recovered else "")
    say(f"collecting corrections in {args.collect} ({state.samples:,} so far{recovered}; at most {args.collect_max:,})")
    return collect


@contextmanager
def _exit_quietly_on_sigterm():
    """SIGTERM (systemd, docker stop, kill) ends `serve` with exit code 0. uvicorn catches it,
    finishes the requests in flight, restores the handler it found and raises the signal again:
    with the default handler that killed the process (-15). Ours ends it as an exit, there and
    before uvicorn takes over; the handler before is restored after."""
    def stop(signum, frame):
        raise SystemExit(0)

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def run(args) -> int:
    require("serve", "`digitrec serve`")
    import uvicorn

    from ..server.connections import guarded_protocol
    from ..inference.decode import give_freed_memory_back
    from ..inference.predictor import Predictor
    from ..inference.find import Limits
    from ..server.app import create_app
    from ..server.guard import LOOPBACK, allowed_hosts
    from ..util import say

    limits = _limits(args)
    _check_port(args.host, args.port)
    give_freed_memory_back()  # before threads start: the decoding budget then bounds the memory
    # A request is one small forward pass; requests run side by side (--max-concurrency).
    # Several intra-op threads per request only wait on each other when cores are busy:
    # 31 ms instead of 0.4 ms per prediction, measured on 2 shared cores. So one thread each,
    # in ONNX Runtime (threads=1) or in PyTorch (process-wide).
    predictor = Predictor(args.checkpoint, backend=args.backend, device=args.device, threads=1)  # loaded once
    if predictor.backend == "torch":
        import torch

        torch.set_num_threads(1)
    collect = _collect(args, predictor.card)
    app = create_app(predictor, max_upload=args.max_upload, max_concurrency=args.max_concurrency, limits=limits,
                     collect=collect, read_limits=Limits(args.max_characters),
                     allowed_hosts=allowed_hosts(args.host, args.allowed_host))
    predictor.predict([[[0] * 28] * 28])  # warm up, so the first visitor does not wait
    info = predictor.info()
    if args.host not in LOOPBACK:
        say(f"warning: listening on {args.host}: other machines can reach this server"
            + (f", and anyone who can reach it can store labels in {args.collect}" if collect is not None else ""))
    host = f"[{args.host}]" if ":" in args.host else args.host
    say(f"digitrec: {info['checkpoint']} ({info['dataset']}, {len(predictor.classes)} classes, {info['backend']}) "
        f"on http://{host}:{args.port}/  API docs: http://{host}:{args.port}/docs")
    # No limit_concurrency: it answers everyone 503 once that many sockets are open, which is
    # what let 64 idle clients shut out the rest. connections.py times out and caps idle and
    # slow connections instead; serve.py bounds the bodies held and the predictions running.
    with _exit_quietly_on_sigterm():
        uvicorn.run(app, host=args.host, port=args.port, log_level="info", server_header=False,
                    http=guarded_protocol(limits), timeout_keep_alive=limits.keep_alive)
    return 0
