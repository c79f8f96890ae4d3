"""`digitrec serve`: the HTTP API and the drawing page, on 127.0.0.1 unless told otherwise.

    POST /api/predict   an image as the raw body (any image/* type), as multipart field
                        `file`, or as JSON {"image": "<base64 or a data: URL>"} -> the answer
                        (label, status, confidence, all probabilities, top guesses), the class
                        names in order, the input's size and the ink's box in its pixels, and
                        the 28x28 model input as a base64 PNG (`preview`)
    GET  /api/health    the model: class names, calibration, limits (max_upload: the one size
                        limit of the page, the API and the CLI)
    GET  /              a page to draw on (static/index.html, app.js, style.css)
    GET  /docs          the OpenAPI documentation, served from here: it works offline
                        (/openapi.json for machines)

Every error is JSON {"detail": "a sentence"}: 400 empty or malformed body, 408 a request
that arrives too slowly, 413 too many bytes or pixels, 415 not an image we decode, 422 a
damaged image, 503 busy. The model is loaded once, before the server starts listening.
Predictions run in worker threads, at most `max_concurrency` at a time for images that decode
small (drawings, small photos) and as many again for big ones, which also share the decoding
budget of inference/decode.py; so a flood of huge images slows only itself. The bodies
waiting for their turn hold at most `upload_memory` bytes of memory together; the rest go to
temporary files. Slow and idle
connections are dealt with before they reach the app (connections.py).
"""


import asyncio
import base64
import dataclasses
import json
import logging
import time
import typing
from importlib import resources

from .connections import ConnectionLimits
from ..errors import DigitrecError, PreprocessError
from ..inference.decode import MAX_BYTES, MAX_PIXELS
from ..inference.predictor import Answer
from .guard import RequestGuard
from .uploads import ApiError, ClientGone, ImageQueue, UploadMemory

STATUS_FOR = {"empty": 400, "too_large": 413, "too_many_pixels": 413, "unsupported": 415, "damaged": 422,
              "too_much_ink": 422, "busy": 503}
STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
DOCS_ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8",
               "favicon.png": "image/png"}
# The page loads nothing from elsewhere and runs no inline script.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; base-uri 'none'; "
                                           "form-action 'none'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
# Swagger UI starts itself with an inline script; it may load nothing from elsewhere either.
DOCS_HEADERS = {**PAGE_HEADERS, "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'"}
log = logging.getLogger("uvicorn.error")


# ----------------------------------------------------------------------------- OpenAPI


def _answer_fields() -> dict:
    """The Answer dataclass's fields as pydantic fields: a field added there appears in /docs."""
    hints = typing.get_type_hints(Answer)
    return {f.name: (hints[f.name], ...) for f in dataclasses.fields(Answer)}


def response_model():
    """/api/predict's schema for /docs: the Answer plus what the API adds to it."""
    from pydantic import create_model

    Opt = typing.Optional
    image = create_model("ImageInput", width=(int, ...), height=(int, ...), format=(Opt[str], None),
                         inverted=(bool, ...), box=(Opt[tuple[int, int, int, int]], None))
    explanation = create_model("Explanation", label=(str, ...), runner_up=(str, ...), input_png=(str, ...),
                               runner_up_png=(str, ...), image_png=(str, ...))
    return create_model("Prediction", **_answer_fields(), classes=(list[str], ...), input=(image, ...),
                        preview=(Opt[str], None), explanation=(Opt[explanation], None), ms=(float, ...))


def reading_model():
    """/api/read's schema for /docs: the text, and each character as an Answer with its box."""
    from pydantic import create_model

    character = create_model("Character", box=(tuple[int, int, int, int], ...),
                             model=(typing.Literal["line", "classifier"], ...), **_answer_fields())
    size = create_model("ImageSize", width=(int, ...), height=(int, ...))
    return create_model("Reading", text=(str, ...), status=(str, ...), confidence=(typing.Optional[float], None),
                        reason=(typing.Optional[str], None), lines=(list[int], ...),
                        characters=(list[character], ...), input=(size, ...),
                        classes=(list[str], ...), ms=(float, ...))


def openapi_extra(max_upload: int) -> dict:
    image = {"schema": {"type": "string", "format": "binary"}}
    as_json = {"schema": {"type": "object", "required": ["image"], "properties": {"image": {
        "type": "string", "description": "the image file in base64, or a data URL (data:image/png;base64,...)"}}}}
    return {"requestBody": {"required": True, "description": f"one image of at most {max_upload:,} bytes",
                            "content": {"image/png": image, "image/jpeg": image, "image/heic": image,
                                        "application/octet-stream": image, "application/json": as_json,
                                        "multipart/form-data": {"schema": {
                                            "type": "object", "required": ["file"],
                                            "properties": {"file": {"type": "string", "format": "binary"}}}}}}}


ERRORS = {code: {"description": text, "content": {"application/json": {"example": {"detail": text}}}}
          for code, text in ((400, "empty or malformed body"), (408, "the upload arrived too slowly"),
                             (413, "too many bytes or pixels"), (415, "not an image in a supported format"),
                             (422, "damaged image, or (/api/read) more ink than one reading takes on"),
                             (503, "busy: try again"))}


# ----------------------------------------------------------------------------- the app


def _error_handlers(app) -> None:
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return JSONResponse({"detail": e.detail}, status_code=e.status,
                            headers={"Connection": "close"} if e.close else None)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, e: ClientGone):
        client = request.client
        log.info("%s: the client left in the middle of its upload (%s)", f"{client.host}:{client.port}"
                 if client else "a client", e)
        return Response(status_code=400)  # nobody reads it

    @app.exception_handler(PreprocessError)
    async def preprocess_error(request: Request, e: PreprocessError):
        return JSONResponse({"detail": f"cannot use this image: {e}", "kind": e.kind},
                            status_code=STATUS_FOR.get(e.kind, 422))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        detail = e.detail if isinstance(e.detail, str) else json.dumps(e.detail)
        return JSONResponse({"detail": detail}, status_code=e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        words = "; ".join(f"{'.'.join(str(p) for p in err['loc'][1:]) or 'request'}: {err['msg']}"
                          for err in e.errors())
        return JSONResponse({"detail": f"invalid request: {words}"}, status_code=422)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):  # a bug, not bad input: still JSON
        return JSONResponse({"detail": f"internal error ({type(e).__name__}); see the server log"},
                            status_code=500)


def _pages(app, title: str) -> None:
    """The drawing page and its files, and /docs with Swagger UI's files from fastapi-offline."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import Response

    static = {name: (resources.files("digitrec") / "static" / name).read_bytes() for name in STATIC}
    assets = resources.files("fastapi_offline") / "static"

    @app.get("/", include_in_schema=False)
    async def page():
        return Response(static["index.html"], media_type=STATIC["index.html"], headers=PAGE_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str):
        if name not in static:
            raise ApiError(404, f"no static file {name!r}")
        return Response(static[name], media_type=STATIC[name], headers=PAGE_HEADERS)

    @app.get("/docs", include_in_schema=False)
    async def docs():
        html = get_swagger_ui_html(openapi_url="/openapi.json", title=f"{title} API",
                                   swagger_js_url="/docs/swagger-ui-bundle.js", swagger_css_url="/docs/swagger-ui.css",
                                   swagger_favicon_url="/docs/favicon.png", oauth2_redirect_url=None,
                                   swagger_ui_parameters={"validatorUrl": None, "tryItOutEnabled": True})
        return Response(html.body, media_type="text/html; charset=utf-8", headers=DOCS_HEADERS)

    @app.get("/docs/{name}", include_in_schema=False)
    async def docs_asset(name: str):
        if name not in DOCS_ASSETS:
            raise ApiError(404, f"no documentation file {name!r}")
        data = await asyncio.to_thread((assets / name).read_bytes)
        return Response(data, media_type=DOCS_ASSETS[name], headers={"Cache-Control": "max-age=86400"})


def create_app(predictor, max_upload: int = MAX_BYTES, max_concurrency: int = 4, max_pixels: int = MAX_PIXELS,
               limits: ConnectionLimits = ConnectionLimits(), upload_memory: int | None = None, collect=None,
               read_limits=None, allowed_hosts: tuple[str, ...] | None = None):
    """The FastAPI app around a loaded `Predictor` (tests drive it with fastapi.testclient).
    `upload_memory` (bytes) bounds the bodies held at once; default: 4 x max_upload. `collect`
    (a corrections.Corrections) turns on /api/feedback. `read_limits` (reader.Limits; default
    its defaults) bounds what one image may cost /api/read. `allowed_hosts` (guard.allowed_hosts):
    the host names it answers; None answers any (tests)."""
    from fastapi import FastAPI

    from .. import __version__

    if max_upload < 1 or max_concurrency < 1:
        raise ValueError("--max-upload and --max-concurrency must be at least 1")
    info = {**predictor.info(), "collect": collect is not None}
    # redirect_slashes off: FastAPI's /path/ -> /path redirect is built from the Host header,
    # so `Host: evil.example` got a redirect to that host.
    app = FastAPI(title="digitrec", version=__version__, docs_url=None, redoc_url=None, redirect_slashes=False,
                  description=f"Recognises handwritten characters ({info['dataset']}: "
                              f"{len(predictor.classes)} classes). Draw at `/`.")
    _error_handlers(app)
    app.add_middleware(RequestGuard, hosts=allowed_hosts)  # hosts, writes from elsewhere, repeated parameters
    _pages(app, "digitrec")

    @app.get("/api/health", summary="Is the server up, and which model does it run?")
    async def health():
        return {"status": "ok", **info, "max_upload": max_upload, "max_pixels": max_pixels}

    queue = ImageQueue(max_upload, max_concurrency, limits, UploadMemory(upload_memory or 4 * max_upload))
    _predict_route(app, predictor, queue, max_pixels)
    _read_route(app, predictor, queue, max_pixels, read_limits)
    _feedback_route(app, predictor, queue, max_pixels, collect)
    return app


def _image_info(pre) -> dict:
    return {"width": pre.size[0], "height": pre.size[1], "format": pre.format, "inverted": pre.inverted, "box": pre.box}


def _explanation(predictor, pre, answer) -> dict | None:
    """What the answer rests on, and why not the runner-up, as base64 PNGs (inference/explain.py),
    drawn on the image's one decode."""
    from ..inference.explain import explain_answer

    got = explain_answer(pre, answer, predictor)
    return {k: base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v for k, v in got.items()} or None


def _predict_route(app, predictor, queue: ImageQueue, max_pixels: int) -> None:
    from fastapi import Query, Request

    @app.post("/api/predict", summary="Recognise the character in one image",
              openapi_extra=openapi_extra(queue.max_upload), responses=ERRORS, response_model=response_model(),
              response_model_exclude_unset=True)
    async def predict(request: Request,
                      preview: bool = Query(True, description="include the 28x28 model input as a base64 PNG"),
                      top_k: int = Query(3, ge=1, description="how many best guesses to list in `top`"),
                      explain: bool = Query(False, description="include what the answer rests on, and why not the "
                                                               "runner-up: saliency maps as base64 PNGs")):
        t0 = time.perf_counter()

        def work(image: bytes):
            answer, pre = predictor.predict_image(image, queue.max_upload, max_pixels, top_k)
            return answer, pre, (_explanation(predictor, pre, answer) if explain else None)

        answer, pre, explanation = await queue.run(request, work)
        out = {**answer.to_json(), "classes": predictor.classes, "input": _image_info(pre)}
        if preview:
            out["preview"] = base64.b64encode(pre.png()).decode("ascii")
        if explanation:
            out["explanation"] = explanation
        out["ms"] = round(1000 * (time.perf_counter() - t0), 2)
        return out


def _read_route(app, predictor, queue: ImageQueue, max_pixels: int, limits) -> None:
    from fastapi import Query, Request

    from ..errors import UserError
    from ..inference.expect import MAX_DIGITS, MAX_PATTERN, expect
    from ..inference.find import Limits
    from ..inference.reader import read

    limits = limits or Limits()

    @app.post("/api/read", summary="Read every character in one image: a number, a code, several lines",
              openapi_extra=openapi_extra(queue.max_upload), responses=ERRORS, response_model=reading_model())
    async def read_image(request: Request,
                         top_k: int = Query(3, ge=1, description="best guesses listed for each character"),
                         digits: typing.Optional[int] = Query(None, ge=1, le=MAX_DIGITS, description=(
                             "each line holds this many characters, as a form's field does: the likeliest reading "
                             "with that many is chosen; where none can be read, the status is unsure and `reason` "
                             "says why")),
                         pattern: typing.Optional[str] = Query(None, max_length=MAX_PATTERN, description=(
                             "each line matches this pattern, e.g. \\d{4} or \\d{3,6}: characters, '.', \\d and "
                             "[classes], each optionally counted (?, *, +, {N}, {N,M}); chosen as with `digits`"))):
        t0 = time.perf_counter()
        try:
            expected = expect(digits, pattern)
        except UserError as e:
            raise ApiError(422, str(e).replace("--", "")) from None
        reading = await queue.run(request, lambda image: read(image, predictor, queue.max_upload, max_pixels, top_k,
                                                               limits=limits, expected=expected))
        return {**reading.to_json(), "classes": predictor.classes, "ms": round(1000 * (time.perf_counter() - t0), 2)}


def _feedback_route(app, predictor, queue: ImageQueue, max_pixels: int, collect) -> None:
    from fastapi import Query, Request

    extra = openapi_extra(queue.max_upload)
    del extra["requestBody"]["content"]["multipart/form-data"]  # a page elsewhere may send it: refused (guard.py)

    @app.post("/api/feedback", summary="Keep a correction: this image is this label (with --collect)",
              openapi_extra=extra,
              responses={**ERRORS, 403: {"description": "the server was not started with --collect, or the request "
                                                        "came from another site's page or named an unknown host"},
                         415: {"description": "not an image, or a text/plain or form body"},
                         422: {"description": "a label not among the classes, no ink, a parameter given twice"},
                         503: {"description": "busy, or the corrections folder was damaged"},
                         507: {"description": "the corrections folder is full"}})
    async def feedback(request: Request,
                       label: str = Query(..., description="the right label, one of the model's classes"),
                       input: bool = Query(False, description="the image is the 28x28 model input (the `preview` "
                                                              "an answer carried), not a photo or drawing"),
                       original: str = Query("", max_length=300, description="where the image came from (a file "
                                                                              "name), for the log")):
        if collect is None:
            raise ApiError(403, "this server does not keep corrections; start it with `digitrec serve --collect DIR` "
                                "to collect them into DIR")
        if label not in predictor.classes:
            shown = label if len(label) <= 20 else label[:20] + "..."  # never the whole of what was sent
            raise ApiError(422, f"label {shown!r} is not one of the model's classes ({', '.join(predictor.classes)})")
        index = await queue.run(request, lambda image: _keep(predictor, collect, image, label, input, original,
                                                             queue.max_upload, max_pixels))
        return {"saved": index, "label": label, "samples": len(collect)}


def _keep(predictor, collect, image: bytes, label: str, is_input: bool, original: str, max_upload: int,
          max_pixels: int) -> int:
    """Add one correction: the model's input made from `image` (or `image` itself, a 28x28 input),
    with the model's answer for it in the log."""
    from ..corrections import CorrectionsFull

    x = _model_input(image, is_input, max_upload, max_pixels)
    try:
        return collect.add(x, label, original, predicted=predictor.predict([x])[0].label)
    except CorrectionsFull as e:
        raise ApiError(507, str(e)) from None
    except DigitrecError as e:  # damaged since the server started (checked then): said, not a 500
        log.error("corrections refused: %s", e)
        raise ApiError(503, f"the corrections folder cannot take samples: {e}") from None


def _model_input(image: bytes, is_input: bool, max_upload: int, max_pixels: int):
    """(28, 28) uint8: `image` preprocessed, or (input=1) taken as it is; refused without ink, by
    the one rule of preprocess() either way (an all-black or all-white square teaches nothing)."""
    import numpy as np

    from ..inference.decode import decode
    from ..inference.preprocess import preprocess

    decoded = decode(image, max_upload, max_pixels)  # once: the size check and the ink rule read it
    if is_input and decoded.size != (28, 28):
        raise ApiError(422, f"input=1 takes the 28x28 model input (an answer's `preview`), not a "
                            f"{decoded.size[0]}x{decoded.size[1]} image; send the photo or drawing without input=1")
    pre = preprocess(decoded)
    if pre.blank:
        raise ApiError(422, "no ink found in this image: there is nothing to learn from")
    return np.round(decoded.gray() * 255).astype(np.uint8) if is_input else pre.image
