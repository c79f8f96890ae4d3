"""Connection hygiene for `digitrec serve`: slow or idle clients cost a socket, never a turn.

uvicorn by itself never times out a connection that has not finished sending its request
head (its keep-alive timer is cancelled by any byte), and its only cap, limit_concurrency,
answers *everyone* 503 once that many sockets are open: 64 idle sockets were enough to shut
out every other client. This module is uvicorn's h11 protocol with three rules added:

  head timeout   a request head (request line and headers) must arrive within
                 `head_timeout` seconds of the connection opening or of the previous
                 response; else 408 (when some of it came) or a silent close (when none did)
  idle cap       at most `max_idle` connections may be waiting for a request head; past
                 that, the one waiting longest is closed (once it has waited a second: a
                 burst of new clients whose headers are on their way is not idleness)
  connection cap at most `max_connections` open sockets; a new one first displaces the
                 longest-waiting idle one, and is refused with 503 only if none is idle

The body has its own time limit in the app (serve.read_body: `body_timeout` seconds plus
one more for every `min_rate` bytes received, as Apache's mod_reqtimeout). Every error this
layer sends is JSON {"detail": ...}, as the app's are.
"""

from __future__ import annotations

import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("uvicorn.error")
IDLE_GRACE = 1.0  # seconds a new connection may wait before the idle cap can close it
REASONS = {400: "Bad Request", 408: "Request Timeout", 503: "Service Unavailable"}


@dataclass(frozen=True)
class ConnectionLimits:
    head_timeout: float = 10.0  # seconds to send a request's line and headers
    body_timeout: float = 20.0  # seconds to send its body, plus one for every `min_rate` bytes
    min_rate: int = 500  # bytes a second that earn a slow upload more time
    max_idle: int = 256  # connections waiting for a request head; the oldest goes past this
    max_connections: int = 1024  # open sockets; past this, new ones are refused with 503
    keep_alive: int = 5  # seconds an idle keep-alive connection is kept after a response


def json_response(status: int, detail: str) -> bytes:
    """A whole HTTP/1.1 response with body {"detail": detail}, closing the connection."""
    body = json.dumps({"detail": detail}).encode()
    return (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


def guarded_protocol(limits: ConnectionLimits) -> type:
    """uvicorn's h11 protocol class with `limits` enforced; pass it as uvicorn's `http`."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits, "waiting": OrderedDict()})


class GuardedH11Protocol(H11Protocol):
    limits: ConnectionLimits = ConnectionLimits()
    waiting: OrderedDict  # shared by every connection of one server: protocol -> since when

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._timer, self._seen_cycle, self._got_bytes = None, None, False
        if len(self.connections) > self.limits.max_connections and not self._displace():
            log.warning("%s: refused: %d connections are open", self._who(), len(self.connections) - 1)
            self._close(503, "the server has too many open connections; try again in a moment")
            return
        self._wait()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self in self.waiting:  # part of a new request's head? (not the rest of a refused body)
            self._got_bytes = self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and self.cycle is not self._seen_cycle:  # a request head arrived
            self._seen_cycle = self.cycle
            self._unwait()

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self._wait()  # first: a pipelined request handled below ends the wait at once
        super().on_response_complete()

    def connection_lost(self, exc) -> None:
        self._unwait()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """h11 refused the request (malformed, or a head over its size limit): JSON, not text."""
        self._close(400, "malformed HTTP request, or its headers are over 16 KB")

    # --------------------------------------------------------------------- the rules

    def _who(self) -> str:
        return "%s:%d" % self.client if self.client else "a client"

    def _wait(self) -> None:
        """No request in progress: count as waiting, and start the head timer."""
        self._got_bytes = False
        self.waiting[self] = time.monotonic()
        self.waiting.move_to_end(self)
        self._cancel()
        self._timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)
        grace = min(IDLE_GRACE, self.limits.head_timeout / 2)  # a burst of new clients is not idleness
        while len(self.waiting) > self.limits.max_idle:
            oldest, since = next(iter(self.waiting.items()))
            if oldest is self or time.monotonic() - since < grace:
                break
            log.info("%s: closed: more than %d idle connections", oldest._who(), self.limits.max_idle)
            oldest._close(503 if oldest._got_bytes else None, "the server has too many idle connections")

    def _unwait(self) -> None:
        self.waiting.pop(self, None)
        self._cancel()

    def _cancel(self) -> None:
        if getattr(self, "_timer", None) is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self._got_bytes:
            log.info("%s: closed: no complete request head within %.0f s", self._who(), self.limits.head_timeout)
            self._close(408, f"the request's headers did not arrive within {self.limits.head_timeout:.0f} s")
        else:
            self._close(None, "")

    def _displace(self) -> bool:
        """Close the longest-waiting idle connection to make room; False if none is idle."""
        for other in self.waiting:
            if other is not self:
                log.info("%s: closed to make room for a new connection", other._who())
                other._close(None, "")
                return True
        return False

    def _close(self, status: int | None, detail: str) -> None:
        """Answer `status` with a JSON detail (None: say nothing), then close."""
        self._unwait()
        if self.transport.is_closing():
            return
        if status is not None:
            self.transport.write(json_response(status, detail))
        self.transport.close()
