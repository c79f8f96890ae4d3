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
import binascii
import dataclasses
import json
import logging
import re
import tempfile
import time
import typing
from importlib import resources

from .connections import ConnectionLimits
from .errors import PreprocessError
from .inference.decode import BUDGET, MAX_BYTES, MAX_PIXELS, decoded_cost
from .inference.predictor import Answer

STATUS_FOR = {"empty": 400, "too_large": 413, "too_many_pixels": 413, "unsupported": 415, "damaged": 422,
              "busy": 503}
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
QUEUE_SECONDS = 30.0  # a request waiting longer than this for a free slot gets 503
LIGHT_BYTES = 16 * 2**20  # images decoding to at most this (a 2 MP photo, any drawing) queue apart
DATA_URL = re.compile(r"^data:(?P<type>[\w.+/-]*)(?:;[\w=.+-]+)*?(?P<b64>;base64)?,", re.I)
log = logging.getLogger("uvicorn.error")


class ApiError(Exception):
    def __init__(self, status: int, detail: str, close: bool = False):
        super().__init__(detail)
        self.status, self.detail, self.close = status, detail, close


class ClientGone(Exception):
    """The client closed the connection before its upload was complete."""


class UploadMemory:
    """Bytes of request bodies held in memory, by every request together (all on the event
    loop's thread). A body takes its bytes as they arrive while there is room; past `total`
    the rest of it goes to a temporary file instead. Nothing waits, so uploads can never
    deadlock each other, and memory stays bounded however many clients upload at once."""

    def __init__(self, total: int):
        self.total, self.used = total, 0

    def take(self, n: int) -> bool:
        if self.used + n > self.total:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


class Body:
    """A request body as it arrives: in memory while UploadMemory has room, else on disk."""

    def __init__(self, memory: UploadMemory):
        self.memory, self.held, self.size = memory, 0, 0
        self.file = tempfile.SpooledTemporaryFile(max_size=2**62)  # rolls over only when told

    @property
    def on_disk(self) -> bool:
        return bool(getattr(self.file, "_rolled", False))

    def write(self, chunk: bytes) -> None:
        if not self.on_disk and not self.memory.take(len(chunk)):
            self.release()
            self.file.rollover()
        elif not self.on_disk:
            self.held += len(chunk)
        self.file.write(chunk)
        self.size += len(chunk)

    def read(self) -> bytes:
        self.file.seek(0)
        return self.file.read()

    def release(self) -> None:
        self.memory.give(self.held)
        self.held = 0

    def close(self) -> None:
        self.release()
        self.file.close()


async def read_body(request, limit: int, body: Body, limits: ConnectionLimits) -> Body:
    """The request body, refused as soon as it passes `limit` bytes (whatever Content-Length
    says) or arrives too slowly (limits.body_timeout, plus a second for every limits.min_rate
    bytes), written into `body`."""
    from starlette.requests import ClientDisconnect

    declared = request.headers.get("content-length", "")
    # 413s keep the connection: the client may still be sending, and would see a reset instead
    # of the answer; the rest of its body is read and dropped (for at most --head-timeout).
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the upload is {int(declared):,} bytes; the limit is {limit:,}")
    loop = asyncio.get_running_loop()
    start = loop.time()
    stream = request.stream().__aiter__()
    while True:
        allowed = start + limits.body_timeout + body.size / limits.min_rate - loop.time()
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), max(allowed, 0.001))
        except StopAsyncIteration:
            return body
        except asyncio.TimeoutError:
            raise ApiError(408, f"the upload was too slow: {body.size:,} bytes in {loop.time() - start:.0f} s",
                           close=True) from None
        except ClientDisconnect:
            raise ClientGone(f"{body.size:,} of {declared or '?'} bytes") from None
        if body.size + len(chunk) > limit:
            raise ApiError(413, f"the upload is larger than the limit of {limit:,} bytes")
        body.write(chunk)


def image_from_json(body: bytes) -> bytes:
    """{"image": "<base64>"} or {"image": "data:image/png;base64,..."} -> the image's bytes."""
    usage = 'send {"image": "<the image in base64>"} or {"image": "data:image/png;base64,..."}'
    try:
        doc = json.loads(body)
    except ValueError as e:
        raise ApiError(400, f"the JSON body is not valid JSON ({e}); {usage}") from None
    text = doc.get("image") if isinstance(doc, dict) else None
    if not isinstance(text, str) or not text:
        raise ApiError(400, f"the JSON body has no 'image' string; {usage}")
    m = DATA_URL.match(text)
    if m and not m.group("b64"):
        raise ApiError(400, "the data URL is not base64-encoded (it needs ';base64,')")
    try:
        return base64.b64decode(text[m.end():] if m else text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"the 'image' is not valid base64; {usage}") from None


async def file_from_multipart(request, body: bytes) -> bytes:
    """The uploaded file in a multipart body already read: field `file`, else the only file."""
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.requests import Request

    boundary = re.search(r"boundary=\"?([^\";]+)", request.headers.get("content-type", ""))
    if boundary is None:
        raise ApiError(400, "malformed multipart body: its Content-Type names no boundary")
    if f"--{boundary.group(1)}--".encode() not in body[-4096:]:
        raise ApiError(400, f"malformed multipart body: it does not end with its closing boundary "
                            f"(--{boundary.group(1)}--); was the upload cut short?")
    sent = False

    async def receive():  # replays the body we read (under the size limit) to the form parser
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, receive).form(max_files=1, max_fields=20)
    except HTTPException as e:
        raise ApiError(400, f"malformed multipart body: {e.detail}") from None
    except Exception as e:  # noqa: BLE001  the parser's own errors vary by version
        raise ApiError(400, f"malformed multipart body: {e}") from None
    files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
    upload = form.get("file") if isinstance(form.get("file"), UploadFile) else (files[0] if files else None)
    if upload is None:
        raise ApiError(400, "the multipart body holds no file; send the image in a field named 'file'")
    return await upload.read()


async def image_from_request(request, body: bytes) -> bytes:
    """The image in a body of any accepted kind: raw, multipart or JSON."""
    kind = request.headers.get("content-type", "").lower()
    if kind.startswith("multipart/"):
        body = await file_from_multipart(request, body)
    elif kind.startswith("application/json"):
        body = image_from_json(body)
    if not body:
        raise ApiError(400, "the request has no image: send it as the body (e.g. Content-Type: image/png), "
                            "as a multipart field named 'file', or as JSON {\"image\": \"<base64>\"}")
    return body


def predict_within_budget(predictor, image: bytes, max_upload: int, max_pixels: int, top_k: int):
    """predictor.predict_image, holding the image's whole cost (decoding and analysis) in the
    process-wide budget of inference/decode.py, so that all requests together stay within it."""
    with BUDGET.hold(decoded_cost(image)):
        return predictor.predict_image(image, max_upload, max_pixels, top_k)


# ----------------------------------------------------------------------------- OpenAPI


def response_model():
    """The answer's schema for /docs, built from the Answer dataclass (a field added there
    appears here) plus what the API adds to it."""
    from pydantic import create_model

    hints = typing.get_type_hints(Answer)
    image = create_model("ImageInput", width=(int, ...), height=(int, ...), format=(typing.Optional[str], None),
                         inverted=(bool, ...), box=(typing.Optional[tuple[int, int, int, int]], None))
    return create_model("Prediction", **{f.name: (hints[f.name], ...) for f in dataclasses.fields(Answer)},
                        classes=(list[str], ...), input=(image, ...), preview=(typing.Optional[str], None),
                        ms=(float, ...))


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
                             (422, "damaged image"), (503, "busy: try again"))}


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
               limits: ConnectionLimits = ConnectionLimits(), upload_memory: int | None = None):
    """The FastAPI app around a loaded `Predictor` (tests drive it with fastapi.testclient).
    `upload_memory` (bytes) bounds the bodies held at once; default: 4 x max_upload."""
    from fastapi import FastAPI

    from . import __version__

    if max_upload < 1 or max_concurrency < 1:
        raise ValueError("--max-upload and --max-concurrency must be at least 1")
    info = predictor.info()
    # redirect_slashes off: FastAPI's /path/ -> /path redirect is built from the Host header,
    # so `Host: evil.example` got a redirect to that host.
    app = FastAPI(title="digitrec", version=__version__, docs_url=None, redoc_url=None, redirect_slashes=False,
                  description=f"Recognises handwritten characters ({info['dataset']}: "
                              f"{len(predictor.classes)} classes). Draw at `/`.")
    _error_handlers(app)
    _pages(app, "digitrec")

    @app.get("/api/health", summary="Is the server up, and which model does it run?")
    async def health():
        return {"status": "ok", **info, "max_upload": max_upload, "max_pixels": max_pixels}

    _predict_route(app, predictor, max_upload, max_pixels, max_concurrency, limits,
                   UploadMemory(upload_memory or 4 * max_upload))
    return app


def _predict_route(app, predictor, max_upload: int, max_pixels: int, max_concurrency: int,
                   limits: ConnectionLimits, memory: UploadMemory) -> None:
    from fastapi import Query, Request
    from starlette.concurrency import run_in_threadpool

    # Two queues of max_concurrency each: images that decode small never wait behind big ones.
    gates = {"light": asyncio.Semaphore(max_concurrency), "heavy": asyncio.Semaphore(max_concurrency)}

    @app.post("/api/predict", summary="Recognise the character in one image", openapi_extra=openapi_extra(max_upload),
              responses=ERRORS, response_model=response_model(), response_model_exclude_unset=True)
    async def predict(request: Request,
                      preview: bool = Query(True, description="include the 28x28 model input as a base64 PNG"),
                      top_k: int = Query(3, ge=1, description="how many best guesses to list in `top`")):
        t0, body = time.perf_counter(), Body(memory)
        is_json = request.headers.get("content-type", "").lower().startswith("application/json")
        try:
            await read_body(request, max_upload * 4 // 3 + 4096 if is_json else max_upload, body, limits)
            # A body in memory is looked at now, to queue it by what it costs to decode; one
            # that went to disk (the memory for bodies was full) is big: it waits with the heavy.
            image = None if body.on_disk else await image_from_request(request, body.read())
            heavy = image is None or await run_in_threadpool(decoded_cost, image) > LIGHT_BYTES
            try:
                await asyncio.wait_for(gates["heavy" if heavy else "light"].acquire(), QUEUE_SECONDS)
            except asyncio.TimeoutError:
                raise ApiError(503, "the server is busy; try again in a moment") from None
            try:
                if image is None:
                    image = await image_from_request(request, await run_in_threadpool(body.read))
                answer, pre = await run_in_threadpool(predict_within_budget, predictor, image, max_upload,
                                                      max_pixels, top_k)
            finally:
                gates["heavy" if heavy else "light"].release()
        finally:
            body.close()
        out = {**answer.to_json(), "classes": predictor.classes,
               "input": {"width": pre.size[0], "height": pre.size[1], "format": pre.format,
                         "inverted": pre.inverted, "box": pre.box}}
        if preview:
            out["preview"] = base64.b64encode(pre.png()).decode("ascii")
        out["ms"] = round(1000 * (time.perf_counter() - t0), 2)
        return out
