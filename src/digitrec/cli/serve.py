"""`digitrec serve`: the HTTP API and the drawing page (digitrec.serve builds the app)."""

from __future__ import annotations

import socket

from ..errors import UserError, require
from .options import model_args


def add_arguments(p) -> None:
    model_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--max-upload", type=int, default=5_000_000, help="largest accepted upload in bytes")
    p.add_argument("--max-concurrency", type=int, default=4, help="predictions computed at the same time")


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


def run(args) -> int:
    from ..inference.predictor import Predictor
    from ..serve import create_app
    from ..util import say

    require("serve", "`digitrec serve`")
    import uvicorn

    if args.max_upload < 1 or args.max_concurrency < 1:
        raise UserError("--max-upload and --max-concurrency must be at least 1")
    _check_port(args.host, args.port)
    # A request is one small forward pass; requests run side by side (--max-concurrency).
    # Several intra-op threads per request only wait on each other when cores are busy:
    # 31 ms instead of 0.4 ms per prediction, measured on 2 shared cores. So one thread each,
    # in ONNX Runtime (threads=1) or in PyTorch (process-wide).
    predictor = Predictor(args.checkpoint, backend=args.backend, device=args.device, threads=1)  # loaded once
    if predictor.backend == "torch":
        import torch

        torch.set_num_threads(1)
    app = create_app(predictor, max_upload=args.max_upload, max_concurrency=args.max_concurrency)
    predictor.predict([[[0] * 28] * 28])  # warm up, so the first visitor does not wait
    info = predictor.info()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        say(f"warning: listening on {args.host}: other machines can reach this server")
    host = f"[{args.host}]" if ":" in args.host else args.host
    say(f"digitrec: {info['checkpoint']} ({info['dataset']}, {len(predictor.classes)} classes, {info['backend']}) "
        f"on http://{host}:{args.port}/  API docs: http://{host}:{args.port}/docs")
    # Bodies are read before a prediction slot is free, so memory is bounded by connections x
    # --max-upload: past 16 connections per slot, uvicorn answers 503 at once.
    uvicorn.run(app, host=args.host, port=args.port, log_level="info", server_header=False,
                limit_concurrency=16 * args.max_concurrency)
    return 0
