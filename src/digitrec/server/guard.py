"""Who may use `digitrec serve`, checked before any route runs (an ASGI middleware).

  Host       every request names one of the server's own host names (the address it binds,
             localhost, 127.0.0.1, [::1], and --allowed-host): a page whose name was pointed
             at this machine (DNS rebinding) is refused, and so cannot read or write anything
  writes     a request that stores something (/api/feedback) comes from the server's own page
             or from a program: an Origin header naming another site, or Sec-Fetch-Site other
             than same-origin or none, is refused (CSRF: a page elsewhere could post with
             fetch(..., {mode: "no-cors"})); so are the bodies a page elsewhere may send without
             asking first (text/plain, form-encoded, multipart/form-data)
  parameters a query parameter given twice is refused: which one counts is not guessed
Refusals are JSON {"detail": ...} like every error of the API.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

LOOPBACK = ("localhost", "127.0.0.1", "::1")
WRITES = ("/api/feedback",)
# The bodies a page on another site can send without a CORS preflight.
SIMPLE_TYPES = ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data")


def host_name(host: str) -> str:
    """`name:port`, `[v6]:port` or a name -> the name, lower case, without brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def allowed_hosts(bind: str, extra=()) -> tuple[str, ...]:
    """The host names a server bound to `bind` answers: that, the loopback names and `extra`."""
    return tuple(dict.fromkeys(host_name(h) for h in (bind, *LOOPBACK, *extra) if h))


def _short(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


class RequestGuard:
    """ASGI middleware: refuses requests for unknown hosts (when `hosts` is given), writes from
    other origins and repeated query parameters."""

    def __init__(self, app, hosts: tuple[str, ...] | None = None, writes: tuple[str, ...] = WRITES):
        self.app, self.hosts, self.writes = app, hosts, writes

    async def __call__(self, scope, receive, send):
        refusal = self.refusal(scope) if scope["type"] == "http" else None
        if refusal is None:
            return await self.app(scope, receive, send)
        status, detail = refusal
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    def refusal(self, scope) -> tuple[int, str] | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host")
        if self.hosts is not None and host is not None and host_name(host) not in self.hosts:
            return 403, (f"this server does not answer to the host name {_short(host_name(host))}; start it with "
                         "--allowed-host NAME to add a name it is reached by")
        if scope["path"].startswith("/api/"):
            names = [k for k, _ in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)]
            twice = sorted({k for k in names if names.count(k) > 1})
            if twice:
                return 422, f"query parameter {_short(twice[0])} is given more than once; give it once"
        if scope["method"] == "POST" and scope["path"] in self.writes:
            return self.write_refusal(headers)
        return None

    @staticmethod
    def write_refusal(headers: dict) -> tuple[int, str] | None:
        origin, site = headers.get("origin"), headers.get("sec-fetch-site")
        if origin is not None and (urlsplit(origin).netloc.lower() != headers.get("host", "").lower()
                                   or urlsplit(origin).scheme not in ("http", "https")):
            return 403, (f"corrections are taken only from this server's own page or from programs, not from a "
                         f"page of {_short(origin)}")
        if site is not None and site not in ("same-origin", "none"):
            return 403, f"corrections are taken only from this server's own page, not from a {_short(site)} page"
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind in SIMPLE_TYPES:
            return 415, (f"corrections are not taken as {kind}: send the image as the body (e.g. Content-Type: "
                         "image/png) or as JSON {\"image\": \"<base64>\"}")
        return None
