"""End to end in a real headless Chromium: load the page, draw digits on the canvas with the
mouse (and one with a touchscreen), read the label the page shows.

Needs Debian's chromium (`apt-get install chromium`; Playwright drives it, no browser
download) and a model that reads real handwriting: the packaged one, else a seed model
trained here for 2 epochs on the cached real MNIST (about 15 s), else the test skips.
"""

import math
import socket
import threading
import time
from importlib import resources
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]
WAIT_MS = 15_000  # longest wait for any one thing the page does

pytestmark = pytest.mark.browser

# Strokes in the canvas's own pixels (280 x 280), as a person would draw them.
STROKES = {
    "1": [[(145, 45), (140, 100), (136, 160), (132, 235)]],
    "0": [[(140 + 62 * math.sin(t * math.pi / 10), 140 - 92 * math.cos(t * math.pi / 10)) for t in range(22)]],
    "7": [[(70, 60), (140, 58), (210, 60), (175, 120), (145, 180), (120, 240)]],
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    packaged = resources.files("digitrec") / "pretrained" / "mnist.pt"
    if packaged.is_file():
        return Path(str(packaged))
    from digitrec.data.load import load
    from digitrec.errors import DataError
    from digitrec.training.config import TrainConfig
    from digitrec.training.loop import train

    try:
        data = load("mnist", fetch_missing=False)
    except DataError as e:
        pytest.skip(f"no packaged model and real MNIST is not cached ({e}); run `digitrec fetch` first")
    out = tmp_path_factory.mktemp("browser-run")
    train(TrainConfig(epochs=2, device="cpu"), out, data=data, quiet=True)
    return out / "best.pt"


@pytest.fixture(scope="module")
def server(checkpoint):
    """uvicorn serving the app on a free loopback port, in a background thread."""
    uvicorn = pytest.importorskip("uvicorn")
    from digitrec.inference.predictor import Predictor
    from digitrec.serve import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(create_app(Predictor(checkpoint)), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start within 20 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (Debian's build; no Playwright download)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True, timeout=WAIT_MS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 900, "height": 800}, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server + "/")
    page.wait_for_selector("body[data-ready='1']")
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def to_page(page, x, y):
    box = page.locator("#pad").bounding_box()
    return box["x"] + x * box["width"] / 280, box["y"] + y * box["height"] / 280


def answers(page) -> int:
    return int(page.get_attribute("body", "data-answers") or 0)


def wait_for_final_answer(page, before: int) -> None:
    """Until an answer newer than `before` is shown and none is on its way. (Polled from here:
    the page's Content-Security-Policy rightly forbids the eval behind wait_for_function.)"""
    deadline = time.monotonic() + WAIT_MS / 1000
    while not (page.get_attribute("body", "data-pending") == "0" and answers(page) > before):
        if time.monotonic() > deadline:
            pytest.fail(f"no answer within {WAIT_MS / 1000:.0f} s; the page says {shown(page)}")
        page.wait_for_timeout(50)


def draw_with_mouse(page, strokes) -> None:
    for stroke in strokes:
        page.mouse.move(*to_page(page, *stroke[0]))
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(*to_page(page, x, y), steps=4)
        page.mouse.up()


def draw_with_touch(page, strokes) -> None:
    cdp = page.context.new_cdp_session(page)
    for stroke in strokes:
        for i, (x, y) in enumerate(stroke):
            px, py = to_page(page, x, y)
            cdp.send("Input.dispatchTouchEvent", {"type": "touchStart" if i == 0 else "touchMove",
                                                  "touchPoints": [{"x": px, "y": py}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def shown(page) -> tuple[str, str]:
    return page.inner_text("#label").strip(), page.get_attribute("body", "data-status")


def test_page_shows_the_model_and_one_bar_per_class(page, server):
    import json
    import urllib.request

    with urllib.request.urlopen(server + "/api/health", timeout=10) as r:
        classes = json.load(r)["classes"]
    assert page.locator("#bars .bar").count() == len(classes)
    assert page.locator("#bars .bar .name").all_inner_texts() == classes
    assert "classes" in page.inner_text("#model")


@pytest.mark.parametrize("digit", ["1", "0", "7"])
def test_drawn_digit_is_recognised(page, digit):
    before = answers(page)
    draw_with_mouse(page, STROKES[digit])
    wait_for_final_answer(page, before)
    label, status = shown(page)
    assert label == digit, f"drew a {digit}, the page says {label!r} ({status}): {page.inner_text('#detail')}"
    assert status in ("ok", "unsure")
    assert page.get_attribute("#preview", "src").startswith("data:image/png;base64,")
    tallest = page.locator("#bars .bar.top .name").inner_text()
    assert tallest == digit, "the highlighted bar is the answer"


def test_live_answers_while_drawing_then_clear(page):
    before = answers(page)
    page.mouse.move(*to_page(page, 140, 40))
    page.mouse.down()
    for y in range(40, 240, 10):  # a slow stroke: about 1 s
        page.mouse.move(*to_page(page, 140, y))
        page.wait_for_timeout(50)
    assert answers(page) > before, "answers arrive before the pen is lifted"
    page.mouse.up()
    wait_for_final_answer(page, before)
    page.click("#clear")
    assert shown(page) == ("–", "idle")
    assert page.get_attribute("#preview", "src") is None


def test_touch_drawing(page):
    before = answers(page)
    draw_with_touch(page, STROKES["1"])
    wait_for_final_answer(page, before)
    assert shown(page)[0] == "1"
