"""A real `digitrec serve` on a free loopback port, driven with raw sockets: idle, slow and
vanishing clients cost a socket and never a well-behaved client's turn; every error is JSON;
the server log holds no traceback. Short limits (--head-timeout 1, --body-timeout 2) keep it
quick; every wait has a bound, and nothing asserts how fast anything was."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest
from PIL import Image, ImageDraw

pytest.importorskip("uvicorn")
pytest.importorskip("fastapi_offline")

MAX_IDLE, MAX_CONNECTIONS = 8, 24
WAIT = 30.0  # seconds any one socket operation may take before the test fails


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(folder, *args: str):
    """`digitrec serve ARGS` on a free port: yields the port; its log must hold no traceback."""
    port, log = free_port(), folder / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "digitrec", "serve", "--port", str(port), *args],
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        while "Uvicorn running" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(20)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(port, path of the server's log), with short limits."""
    folder = tmp_path_factory.mktemp("serve")
    with serve(folder, "--head-timeout", "1", "--body-timeout", "2", "--max-idle", str(MAX_IDLE),
               "--max-connections", str(MAX_CONNECTIONS), "--max-upload", "300000") as port:
        yield port, folder / "serve.log"


def canvas() -> bytes:
    im = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(im).line([(70, 60), (210, 60), (120, 240)], fill=(17, 17, 17, 255), width=20)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    return s


def read_all(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by WAIT)."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def parse(data: bytes) -> tuple[int, dict, bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def request(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    head = {"host": f"127.0.0.1:{port}", "content-length": str(len(body)), "connection": "close", **(headers or {})}
    with connect(port) as s:
        s.sendall(f"{method} {path} HTTP/1.1\r\n".encode() + b"".join(f"{k}: {v}\r\n".encode() for k, v in head.items())
                  + b"\r\n" + body)
        return parse(read_all(s))


def good(port: int) -> int:
    status, headers, body = request(port, "POST", "/api/predict?preview=false", canvas(),
                                    {"content-type": "image/png"})
    assert headers["content-type"] == "application/json"
    return status


def json_error(status_headers_body, status: int, words: str):
    got, headers, body = status_headers_body
    assert got == status and headers["content-type"] == "application/json", (got, headers, body)
    assert words in json.loads(body)["detail"]


# ----------------------------------------------------------------------------- slow and idle


def test_an_idle_connection_is_closed_silently(server):
    port, _ = server
    with connect(port) as s:
        assert read_all(s) == b"", "closed, with nothing said: it asked nothing"


def test_half_sent_headers_get_408(server):
    port, _ = server
    with connect(port) as s:
        s.sendall(b"POST /api/predict HTTP/1.1\r\nhost: 127.0.0.1\r\n")
        json_error(parse(read_all(s)), 408, "headers did not arrive within 1 s")


def test_a_slow_body_gets_408_and_the_connection_closes(server):
    port, _ = server
    with connect(port) as s:
        s.sendall(b"POST /api/predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: image/png\r\ncontent-length: 5000\r\n\r\n")
        s.sendall(b"\x89PNG")
        json_error(parse(read_all(s)), 408, "the upload was too slow")


def test_idle_and_slow_clients_never_starve_others(server):
    """More idle connections than --max-idle, and slow uploads, while a client asks: it gets 200."""
    port, _ = server
    idle = [connect(port) for _ in range(MAX_IDLE + 4)]
    slow = [connect(port) for _ in range(6)]
    for s in slow:
        s.sendall(b"POST /api/predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 100000\r\n\r\n\0")
    try:
        assert [good(port) for _ in range(5)] == [200] * 5
    finally:
        for s in idle + slow:
            s.close()


def test_past_max_idle_the_longest_waiting_are_closed(tmp_path):
    """With a long head timeout, only the idle cap can close them: the oldest go first."""
    with serve(tmp_path, "--head-timeout", "60", "--max-idle", "4") as port:
        first = [connect(port) for _ in range(4)]
        time.sleep(1.5)  # older than the grace a new connection gets
        later = [connect(port) for _ in range(2)]
        for s in first[:2]:
            assert read_all(s) == b"", "closed to keep at most 4 idle"
        for s in first[2:] + later:
            s.settimeout(1.0)
            with pytest.raises(socket.timeout):
                s.recv(1)  # still open
        assert good(port) == 200
        for s in first + later:
            s.close()


def test_at_the_connection_limit_new_clients_get_json_503(server):
    port, _ = server
    busy = []
    try:
        for _ in range(MAX_CONNECTIONS):  # every one mid-upload: none idle, none to displace
            s = connect(port)
            s.sendall(b"POST /api/predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 100000\r\n\r\n\0")
            busy.append(s)
        time.sleep(0.3)  # let the server take them in
        with connect(port) as s:
            json_error(parse(read_all(s)), 503, "too many open connections")
    finally:
        for s in busy:
            s.close()
    time.sleep(0.3)
    assert good(port) == 200


def test_dropped_uploads_are_one_line_each_in_the_log(server):
    port, log = server
    before = log.read_text().count("left in the middle of its upload")
    body = canvas()
    for _ in range(5):
        with connect(port) as s:
            s.sendall(f"POST /api/predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {len(body)}\r\n\r\n".encode()
                      + body[: len(body) // 2])
            time.sleep(0.1)
    deadline = time.monotonic() + WAIT
    while log.read_text().count("left in the middle of its upload") < before + 5:
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.1)
    assert "Traceback" not in log.read_text()


# ----------------------------------------------------------------------------- every error is JSON


def test_malformed_and_oversized_requests_get_json(server):
    port, _ = server
    with connect(port) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        json_error(parse(read_all(s)), 400, "malformed HTTP request")
    with connect(port) as s:  # refused on its Content-Length, before the body is sent
        s.sendall(b"POST /api/predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 300001\r\n\r\n")
        json_error(parse(read_all(s)), 413, "the limit is 300,000")
    with connect(port) as s:  # a keep-alive client that sends it all before reading still reads its 413
        s.sendall(b"POST /api/predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 300001\r\n\r\n" + b"\0" * 300_001)
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < int(
                re.search(rb"content-length: (\d+)", data, re.I).group(1)):
            data += s.recv(65536)
        json_error(parse(data), 413, "the limit is 300,000")
    json_error(request(port, "GET", "/nowhere"), 404, "Not Found")
    json_error(request(port, "DELETE", "/api/predict"), 405, "Method Not Allowed")


def test_no_redirect_to_a_foreign_host(server):
    port, _ = server
    for path in ("/docs/", "/api/predict/", "/api/health/", "/static/", "/docs/../docs"):
        status, headers, _ = request(port, "GET", path, headers={"host": "evil.example"})
        assert "evil.example" not in headers.get("location", ""), (path, status, headers)
        assert status not in (301, 302, 303, 307, 308)


def test_docs_work_offline(server):
    """/docs refers only to this server, and the files it refers to are served here."""
    port, _ = server
    status, headers, body = request(port, "GET", "/docs")
    html = body.decode()
    assert status == 200 and "SwaggerUIBundle" in html
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)
    assert urls and not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls
    assert "default-src 'self'" in headers["content-security-policy"]
    for url in urls:
        status, headers, body = request(port, "GET", url)
        assert status == 200 and len(body) > 1000, url
    status, _, body = request(port, "GET", "/docs/swagger-ui-bundle.js")
    assert len(body) > 500_000 and b"SwaggerUIBundle" in body


def test_feedback_survives_a_kill_of_the_server(tmp_path):
    """Corrections sent to a real server killed (SIGKILL) while they arrive: every one it answered
    is in the folder, intact, and the folder takes more after a restart."""
    from digitrec.corrections import Corrections

    folder, sent = tmp_path / "c", []
    classes = tuple("0123456789")
    port, log = free_port(), tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "digitrec", "serve", "--port", str(port), "--collect",
                                 str(folder)], stdout=out, stderr=subprocess.STDOUT)
    try:
        import httpx

        deadline = time.monotonic() + 120
        while "Uvicorn running" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=WAIT) as client:
            for i in range(40):
                r = client.post(f"/api/feedback?label={i % 10}&original=n{i}.png", content=canvas())
                assert r.status_code == 200, r.text
                sent.append(r.json()["saved"])
                if i == 25:
                    proc.kill()  # mid-stream: the next requests find no server
                    break
    finally:
        proc.kill()
        proc.wait(20)
    images, labels, rows = Corrections(folder, classes).load()
    assert len(images) >= len(sent) and sent == list(range(len(sent)))
    assert [int(v) for v in labels[: len(sent)]] == [i % 10 for i in range(len(sent))]
    assert len(set(images[i].tobytes() for i in range(len(sent)))) == 1, "the same canvas, stored intact each time"
    assert Corrections(folder, classes).add(images[0], "7") == len(images)


def test_sigterm_finishes_the_request_in_flight_and_exits_0(tmp_path):
    """Issue: SIGTERM ended `serve` with -15. A request half sent when SIGTERM arrives is still
    answered; then the server exits with 0 and no traceback."""
    import signal

    port, log = free_port(), tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "digitrec", "serve", "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 120
        while "Uvicorn running" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)
        body = canvas()
        with connect(port) as s:
            s.sendall(f"POST /api/predict?preview=false HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\ncontent-type: image/png"
                      f"\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body[:100])
            time.sleep(0.5)  # the request is in the app, waiting for the rest of its body
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            s.sendall(body[100:])
            status, _, answer = parse(read_all(s))
        assert status == 200 and "label" in json.loads(answer)
        assert proc.wait(timeout=WAIT) == 0, log.read_text()[-2000:]
    finally:
        proc.kill()
        proc.wait(20)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
