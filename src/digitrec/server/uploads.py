"""Requests that carry an image: reading the body safely, finding the image in it, and queueing
the work it costs. Shared by every route of the API that takes an image (serve.py).

A body is read within a byte limit and a time limit (a second for every `min_rate` bytes past
`body_timeout`), into memory while the bodies held together leave room (UploadMemory), else
into a temporary file. The image may be the raw body, a multipart field `file`, or JSON
{"image": "<base64 or a data: URL>"}. The work then waits in one of two queues: images that
decode small (drawings, small photos) never wait behind big ones; and it runs in a worker
thread holding the image's whole cost in the decoding budget of inference/decode.py.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
import tempfile
from typing import Callable, TypeVar

from .connections import ConnectionLimits
from ..inference.decode import BUDGET, decoded_cost

QUEUE_SECONDS = 30.0  # a request waiting longer than this for a free slot gets 503
LIGHT_BYTES = 16 * 2**20  # images decoding to at most this (a 2 MP photo, any drawing) queue apart
DATA_URL = re.compile(r"^data:(?P<type>[\w.+/-]*)(?:;[\w=.+-]+)*?(?P<b64>;base64)?,", re.I)
T = TypeVar("T")


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
    except RecursionError:
        raise ApiError(400, f"the JSON body is nested too deeply; {usage}") from None
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


def within_budget(work: Callable[[bytes], T], image: bytes, cost: int | None = None) -> T:
    """work(image), holding the image's whole cost (decoding and analysis: `cost`, read from its
    header when not given) in the process-wide budget of inference/decode.py, so that all
    requests together stay within it."""
    with BUDGET.hold(decoded_cost(image) if cost is None else cost):
        return work(image)


class ImageQueue:
    """Runs the work of requests that carry an image: two queues of `max_concurrency` each
    (light and heavy images), bodies sharing `memory`."""

    def __init__(self, max_upload: int, max_concurrency: int, limits: ConnectionLimits, memory: UploadMemory):
        self.max_upload, self.limits, self.memory = max_upload, limits, memory
        self.gates = {"light": asyncio.Semaphore(max_concurrency), "heavy": asyncio.Semaphore(max_concurrency)}

    async def run(self, request, work: Callable[[bytes], T]) -> T:
        """Read the request's image and return work(image), run in a worker thread."""
        from starlette.concurrency import run_in_threadpool

        body = Body(self.memory)
        is_json = request.headers.get("content-type", "").lower().startswith("application/json")
        try:
            await read_body(request, self.max_upload * 4 // 3 + 4096 if is_json else self.max_upload, body,
                            self.limits)
            # A body in memory is looked at now, to queue it by what it costs to decode; one
            # that went to disk (the memory for bodies was full) is big: it waits with the heavy.
            image = None if body.on_disk else await image_from_request(request, body.read())
            cost = None if image is None else await run_in_threadpool(decoded_cost, image)  # once: queue and budget
            heavy = cost is None or cost > LIGHT_BYTES
            gate = self.gates["heavy" if heavy else "light"]
            try:
                await asyncio.wait_for(gate.acquire(), QUEUE_SECONDS)
            except asyncio.TimeoutError:
                raise ApiError(503, "the server is busy; try again in a moment") from None
            try:
                if image is None:
                    image = await image_from_request(request, await run_in_threadpool(body.read))
                return await run_in_threadpool(within_budget, work, image, cost)
            finally:
                gate.release()
        finally:
            body.close()
