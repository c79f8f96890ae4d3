"""`digitrec serve`: the HTTP API and the drawing page, on 127.0.0.1 unless told otherwise.

    POST /api/predict   an image as the raw body (any image/* type) or as multipart field
                        `file` -> the answer (label, status, confidence, all probabilities,
                        top guesses), the class names in order, and the 28x28 model input
                        as a base64 PNG (`preview`)
    GET  /api/health    the model: class names, calibration, limits
    GET  /              a page to draw on (static/index.html, app.js, style.css)
    GET  /docs          the OpenAPI documentation (/openapi.json for machines)

Bad input of any kind gets a 4xx with {"detail": "what was wrong"}: 400 empty or malformed
body, 413 too many bytes or pixels, 415 not an image we decode, 422 a damaged image.
The model is loaded once, before the server starts listening; at most `max_concurrency`
predictions run at the same time, each in a worker thread.
"""


import asyncio
import base64
import time
from importlib import resources

from .errors import PreprocessError
from .inference.preprocess import MAX_PIXELS

STATUS_FOR = {"empty": 400, "too_large": 413, "too_many_pixels": 413, "unsupported": 415, "damaged": 422}
STATIC = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}
# The page loads nothing from elsewhere and runs no inline script.
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
                                           "form-action 'none'; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}
QUEUE_SECONDS = 30.0  # a request waiting longer than this for a free slot gets 503


class ApiError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


async def read_body(request, limit: int) -> bytes:
    """The request body, refused as soon as it passes `limit` bytes (whatever Content-Length says)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the upload is {int(declared):,} bytes; the limit is {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the upload is larger than the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def file_from_multipart(request, body: bytes) -> bytes:
    """The uploaded file in a multipart body already read: field `file`, else the only file."""
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.requests import Request

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


def create_app(predictor, max_upload: int = 5_000_000, max_concurrency: int = 4,
               max_pixels: int = MAX_PIXELS):
    """The FastAPI app around a loaded `Predictor` (tests drive it with fastapi.testclient)."""
    from fastapi import FastAPI, Query, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    from . import __version__

    if max_upload < 1 or max_concurrency < 1:
        raise ValueError("--max-upload and --max-concurrency must be at least 1")
    static = {name: (resources.files("digitrec") / "static" / name).read_bytes() for name in STATIC}
    gate = asyncio.Semaphore(max_concurrency)
    info = predictor.info()
    app = FastAPI(title="digitrec", version=__version__,
                  description=f"Recognises handwritten characters ({info['dataset']}: "
                              f"{len(predictor.classes)} classes). Draw at `/`.")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return JSONResponse({"detail": e.detail}, status_code=e.status)

    @app.exception_handler(PreprocessError)
    async def preprocess_error(request: Request, e: PreprocessError):
        return JSONResponse({"detail": f"cannot use this image: {e}", "kind": e.kind},
                            status_code=STATUS_FOR.get(e.kind, 422))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):  # a bug, not bad input: still JSON
        return JSONResponse({"detail": f"internal error ({type(e).__name__}); see the server log"},
                            status_code=500)

    @app.get("/", include_in_schema=False)
    async def page():
        return Response(static["index.html"], media_type=STATIC["index.html"], headers=PAGE_HEADERS)

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str):
        if name not in static:
            raise ApiError(404, f"no static file {name!r}")
        return Response(static[name], media_type=STATIC[name], headers=PAGE_HEADERS)

    @app.get("/api/health", summary="Is the server up, and which model does it run?")
    async def health():
        return {"status": "ok", **info, "max_upload": max_upload, "max_pixels": max_pixels}

    image_body = {"schema": {"type": "string", "format": "binary"}}
    openapi_body = {"requestBody": {"required": True, "content": {
        "image/png": image_body, "image/jpeg": image_body, "application/octet-stream": image_body,
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                           "properties": {"file": {"type": "string", "format": "binary"}}}}}}}
    errors = {code: {"description": text, "content": {"application/json": {"example": {"detail": text}}}}
              for code, text in ((400, "empty or malformed body"), (413, "too many bytes or pixels"),
                                 (415, "not an image in a supported format"), (422, "damaged image"),
                                 (503, "busy: try again"))}

    @app.post("/api/predict", summary="Recognise the character in one image", openapi_extra=openapi_body,
              responses=errors)
    async def predict(request: Request,
                      preview: bool = Query(True, description="include the 28x28 model input as a base64 PNG"),
                      top_k: int = Query(3, ge=1, description="how many best guesses to list in `top`")):
        t0 = time.perf_counter()
        body = await read_body(request, max_upload)
        if request.headers.get("content-type", "").lower().startswith("multipart/"):
            body = await file_from_multipart(request, body)
        if not body:
            raise ApiError(400, "the request has no image: send it as the body (e.g. Content-Type: image/png) "
                                "or as a multipart field named 'file'")
        try:
            await asyncio.wait_for(gate.acquire(), QUEUE_SECONDS)
        except asyncio.TimeoutError:
            raise ApiError(503, "the server is busy; try again in a moment") from None
        try:
            answer, pre = await run_in_threadpool(predictor.predict_image, body, max_upload, max_pixels, top_k)
        finally:
            gate.release()
        out = {**answer.to_json(), "classes": predictor.classes,
               "input": {"width": pre.size[0], "height": pre.size[1], "format": pre.format,
                         "inverted": pre.inverted, "box": pre.box}}
        if preview:
            out["preview"] = base64.b64encode(pre.png()).decode("ascii")
        out["ms"] = round(1000 * (time.perf_counter() - t0), 2)
        return out

    return app
