"""The web page in a real browser: Playwright (PyPI) driving Debian's chromium against a live server.

Each test opens the page served by a real ``specks serve``, loads a real photo from ../shared and
checks what a person would see against what the API answers for the same image and settings.
Every request the page makes is recorded; a test fails if one leaves the server, if the page
logs an error (a Content-Security-Policy violation included) or throws.

Screenshots at phone (390 px) and desktop (1280 px) widths go to test-artifacts/ (git-ignored).
Never ``playwright install``: the browser is Debian's, installed by ``make dev``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from chromium import chromium_context
from conftest import COCO_TINY, MODELS, REPO_ROOT, SHARED, LiveServer, live_server_for, require, serving
from specks.core.regions import inside_polygon
from specks.web.auth import MISSING_KEY_MESSAGE

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARTIFACTS = REPO_ROOT / "test-artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
STREET = COCO_TINY / "images" / "000000017627.jpg"  # 640x480, people and cars
VEHICLES = SHARED / "data" / "samples" / "small-vehicles1.jpeg"  # 1068x580 aerial, many small cars
TERRAIN = SHARED / "data" / "samples" / "terrain1.jpg"  # 2048x1365: sliced in "auto" mode
API_KEY = "k3y-for-the-page"
BOX_TOLERANCE_PX = 1.0


# -- servers and the browser --------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(cache_dir: Path) -> Iterator[LiveServer]:
    yield from serving(live_server_for(MODELS / "yolov5n.onnx", cache_dir, workers=1))


@pytest.fixture(scope="module")
def secured_server(cache_dir: Path) -> Iterator[LiveServer]:
    env = {"SPECKS_API_KEYS": API_KEY, "SPECKS_SLICE": "off", "SPECKS_OVERLAP": "0.3"}  # defaults not the schema's
    yield from serving(live_server_for(MODELS / "yolov5n.onnx", cache_dir, workers=1, env=env))


@pytest.fixture(scope="module")
def limited_server(cache_dir: Path) -> Iterator[LiveServer]:
    """Small limits: the street photo (244 KB as base64, 640x480) is too many pixels, the vehicles
    photo (421 KB as base64) too large a body."""
    env = {"SPECKS_MAX_BODY_BYTES": "300000", "SPECKS_MAX_IMAGE_PIXELS": "300000"}
    yield from serving(live_server_for(MODELS / "yolov5n.onnx", cache_dir, workers=1, env=env))


@pytest.fixture(scope="module")
def browser_context() -> Iterator[Any]:
    yield from chromium_context("specks-chromium-", viewport=DESKTOP)


@dataclass
class Visit:
    """One tab on the page, with everything it asked for and complained about."""

    page: Any
    origin: str
    requests: list[Any] = field(default_factory=list)
    statuses: list[tuple[str, int]] = field(default_factory=list)  # (url, status) of each answer
    problems: list[str] = field(default_factory=list)

    def outside_requests(self) -> list[str]:
        local = (self.origin + "/", "blob:", "data:")
        return [r.url for r in self.requests if not r.url.startswith(local)]

    def predict_bodies(self) -> list[dict[str, Any]]:
        return [r.post_data_json for r in self.requests if r.url == self.origin + "/predict"]


# Chromium logs every 4xx/5xx answer to fetch; the page shows those itself (and tests check it).
HTTP_STATUS_LOG = "Failed to load resource: the server responded with a status of"


def _is_problem(message: Any) -> bool:
    return message.type == "error" and not message.text.startswith(HTTP_STATUS_LOG)


def open_page(context: Any, origin: str, viewport: dict[str, int] = DESKTOP) -> Visit:
    page = context.new_page()
    page.set_viewport_size(viewport)
    visit = Visit(page, origin)
    page.on("request", lambda request: visit.requests.append(request))
    page.on("response", lambda response: visit.statuses.append((response.url, response.status)))
    page.on("pageerror", lambda exc: visit.problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: _is_problem(msg) and visit.problems.append(f"console: {msg.text}"))
    page.goto(origin + "/")
    page.wait_for_function("() => !document.getElementById('server-model').textContent.startsWith('Asking')")
    return visit


@pytest.fixture()
def visit(browser_context: Any, server: LiveServer) -> Iterator[Visit]:
    visit = open_page(browser_context, server.url)
    yield visit
    visit.page.close()
    assert visit.outside_requests() == []
    assert visit.problems == []


# -- helpers ----------------------------------------------------------------------------------------


def b64_of(path: Path) -> str:
    return base64.b64encode(require(path).read_bytes()).decode("ascii")


def api_predict(origin: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> requests.Response:
    """The seed client's call."""
    return requests.post(
        origin + "/predict",
        data=json.dumps(body),
        headers={"Content-type": "application/json", **(headers or {})},
        timeout=120,
    )


def wait_for_answer(visit: Visit, action: Any) -> dict[str, Any]:
    """Run ``action`` (which makes the page send POST /predict) and wait until the page shows the answer."""
    with visit.page.expect_response(lambda r: r.url == visit.origin + "/predict", timeout=120_000) as info:
        action()
    response = info.value
    visit.page.wait_for_function("() => !document.getElementById('status').classList.contains('busy')")
    sent = response.request
    return {
        "status": response.status,
        "body": response.json(),
        "sent": sent.post_data_json,
        "sent_bytes": sent.post_data_buffer,
    }


def load(visit: Visit, path: Path) -> dict[str, Any]:
    return wait_for_answer(visit, lambda: visit.page.set_input_files("#file", str(require(path))))


def table_rows(visit: Visit) -> list[dict[str, Any]]:
    return visit.page.eval_on_selector_all(
        "#detections tbody tr.detection",
        """rows => rows.map(row => ({
            label: row.dataset.label,
            confidence: Number(row.dataset.confidence),
            cells: Array.from(row.cells).map(cell => cell.textContent.replaceAll("\\u00a0", " ").trim()),
        }))""",
    )


def assert_table_matches(visit: Visit, detections: list[dict[str, Any]]) -> None:
    rows = table_rows(visit)
    assert [(r["label"], r["confidence"]) for r in rows] == [(d["label"], d["confidence"]) for d in detections]
    for row, d in zip(rows, detections, strict=True):
        b = d["box"]
        assert row["cells"][1] == d["label"]
        assert float(row["cells"][2]) == pytest.approx(d["confidence"], abs=5e-4)
        assert row["cells"][3] == f"{b['x1']:.1f}, {b['y1']:.1f} – {b['x2']:.1f}, {b['y2']:.1f}"


def assert_boxes_drawn_where_the_api_says(visit: Visit, answer: dict[str, Any]) -> None:
    """Each overlay box's on-screen rectangle is the API box scaled to the displayed image."""
    page = visit.page
    image = page.locator("#photo").bounding_box()
    assert image is not None and image["width"] > 0
    scale_x = image["width"] / answer["image"]["width"]
    scale_y = image["height"] / answer["image"]["height"]
    assert scale_x == pytest.approx(scale_y, rel=0.01)  # the image keeps its aspect ratio
    for index, d in enumerate(answer["detections"]):
        drawn = page.locator(f"#overlay .box[data-index='{index}']").bounding_box()
        assert drawn is not None
        b = d["box"]
        expected = {
            "x": image["x"] + b["x1"] * scale_x,
            "y": image["y"] + b["y1"] * scale_y,
            "width": (b["x2"] - b["x1"]) * scale_x,
            "height": (b["y2"] - b["y1"]) * scale_y,
        }
        for key, value in expected.items():
            if key in ("width", "height") and value < 2:
                value = 2  # the CSS minimum that keeps a tiny box visible
            assert drawn[key] == pytest.approx(value, abs=BOX_TOLERANCE_PX), (index, key)


def screenshot(visit: Visit, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    visit.page.screenshot(path=str(path), full_page=full_page)
    return path


# -- the tests --------------------------------------------------------------------------------------


def test_the_first_look_equals_a_plain_api_call(visit: Visit) -> None:
    shown = load(visit, STREET)
    assert shown["sent"] == {"image": b64_of(STREET)}  # no option until the user changes one
    expected = api_predict(visit.origin, {"image": b64_of(STREET)}).json()
    assert shown["status"] == 200
    assert expected["detections"], "the photo should have detections"
    assert_table_matches(visit, expected["detections"])
    assert visit.page.locator("#model-field").is_visible()  # the server's model and the embedded default


@pytest.mark.parametrize(("viewport", "name"), [(DESKTOP, "desktop"), (PHONE, "phone")])
def test_boxes_sit_on_the_api_boxes_at_any_window_size(
    browser_context: Any, server: LiveServer, viewport: dict[str, int], name: str
) -> None:
    visit = open_page(browser_context, server.url, viewport)
    try:
        shown = load(visit, STREET)
        answer = shown["body"]
        assert_boxes_drawn_where_the_api_says(visit, answer)
        screenshot(visit, f"page-street-{name}.png")
        other = PHONE if viewport == DESKTOP else DESKTOP
        visit.page.set_viewport_size(other)  # resized, not reloaded
        assert_boxes_drawn_where_the_api_says(visit, answer)
        visit.page.set_viewport_size(viewport)
        visit.page.locator("#zoom").select_option("4")
        assert_boxes_drawn_where_the_api_says(visit, answer)
        zoomed = visit.page.locator("#photo").bounding_box()
        viewport_box = visit.page.locator("#viewport").bounding_box()
        assert zoomed is not None and viewport_box is not None
        assert zoomed["width"] > 2 * viewport_box["width"]  # zoomed in, scrolled inside its frame
        visit.page.locator("#stage").click()  # a click zooms back out (and in again, at the point)
        assert visit.page.locator("#zoom").input_value() == "1"
        visit.page.locator("#stage").click(position={"x": 5, "y": 5})
        assert visit.page.locator("#zoom").input_value() == "4"
        assert_boxes_drawn_where_the_api_says(visit, answer)
        # Readable at this width: nothing sticks out sideways.
        overflow = visit.page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
    finally:
        visit.page.close()
    assert visit.outside_requests() == [] and visit.problems == []


def test_small_vehicles_screenshots(browser_context: Any, server: LiveServer) -> None:
    """The aerial sample at both widths (artefacts to look at); every small car has its box."""
    for viewport, name in [(DESKTOP, "desktop"), (PHONE, "phone")]:
        visit = open_page(browser_context, server.url, viewport)
        try:
            answer = load(visit, VEHICLES)["body"]
            assert len(answer["detections"]) >= 5
            assert visit.page.locator("#overlay .box").count() == len(answer["detections"])
            assert_boxes_drawn_where_the_api_says(visit, answer)
            screenshot(visit, f"page-vehicles-{name}.png")
            screenshot(visit, f"page-vehicles-{name}-viewport.png", full_page=False)
        finally:
            visit.page.close()
        assert visit.outside_requests() == [] and visit.problems == []


def test_changing_a_control_runs_the_request_again(visit: Visit) -> None:
    page = visit.page
    first = load(visit, STREET)["body"]
    shown = wait_for_answer(visit, lambda: page.locator("#conf").fill("0.5"))
    assert shown["sent"] == {"image": b64_of(STREET), "conf": 0.5}
    expected = api_predict(visit.origin, {"image": b64_of(STREET), "conf": 0.5}).json()
    assert 0 < len(expected["detections"]) < len(first["detections"])
    assert_table_matches(visit, expected["detections"])
    assert page.locator("#conf-value").text_content() == "0.50"

    shown = wait_for_answer(visit, lambda: page.locator("#slice").select_option("false"))
    assert shown["sent"] == {"image": b64_of(STREET), "conf": 0.5, "slice": False}

    wanted = expected["detections"][-1]["label"]  # a class the photo has at these settings

    def set_classes() -> None:
        page.locator("#classes").fill(wanted)
        page.locator("#classes").press("Enter")

    shown = wait_for_answer(visit, set_classes)
    assert shown["sent"] == {"image": b64_of(STREET), "conf": 0.5, "slice": False, "classes": [wanted]}
    expected = api_predict(visit.origin, shown["sent"]).json()
    assert {d["label"] for d in expected["detections"]} == {wanted}
    assert_table_matches(visit, expected["detections"])

    # Back at the default: no longer sent.
    shown = wait_for_answer(visit, lambda: page.locator("#conf").fill("0.25"))
    assert "conf" not in shown["sent"]


def test_timing_tiles_image_size_and_raw_json_are_shown(visit: Visit) -> None:
    shown = load(visit, TERRAIN)
    answer = shown["body"]
    tiles = answer.get("tiles", answer["timing_ms"].get("tiles"))
    assert tiles and tiles > 0, "auto mode should slice a 2048-px photo"
    timing = visit.page.eval_on_selector_all(
        "#timing dt", "terms => terms.map(t => [t.textContent, t.nextElementSibling.textContent])"
    )
    shown_timing = dict(timing)
    assert shown_timing["tiles"] == str(tiles)
    for stage, ms in answer["timing_ms"].items():
        if stage != "tiles":
            assert shown_timing[stage] == f"{ms:.1f} ms"
    assert "2048 × 1365 px" in (visit.page.locator("#image-info").text_content() or "")
    raw = visit.page.eval_on_selector("#raw-json", "e => e.textContent")  # inside closed <details>
    assert json.loads(raw) == answer


def test_the_curl_and_python_snippets_send_the_same_request(visit: Visit, tmp_path: Path) -> None:
    page = visit.page
    load(visit, STREET)
    wait_for_answer(visit, lambda: page.locator("#conf").fill("0.4"))
    shown = wait_for_answer(visit, lambda: page.locator("#slice").select_option("true"))
    assert shown["sent"] == {"image": b64_of(STREET), "conf": 0.4, "slice": True}
    for summary in page.locator("details.code summary").all():
        summary.click()
    screenshot(visit, "page-snippets-desktop.png")
    curl = page.eval_on_selector("#curl", "e => e.textContent")
    python = page.eval_on_selector("#python", "e => e.textContent")
    shutil.copy(STREET, tmp_path / STREET.name)  # the snippets name the file the user chose
    from_curl = subprocess.run(["bash", "-c", curl], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    from_python = subprocess.run(
        [sys.executable, "-c", python], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert from_curl.returncode == 0, from_curl.stderr
    assert from_python.returncode == 0, from_python.stderr
    expected = shown["body"]["detections"]
    assert json.loads(from_curl.stdout)["detections"] == expected
    assert from_python.stdout.strip() == str(expected)  # the snippet prints the detections list


def test_a_text_file_shows_the_servers_message(visit: Visit, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image, just some words\n")
    shown = wait_for_answer(visit, lambda: visit.page.set_input_files("#file", str(notes)))
    expected = api_predict(visit.origin, {"image": base64.b64encode(notes.read_bytes()).decode()})
    assert shown["status"] == expected.status_code == 400
    message = expected.json()["error"]["message"]
    error = visit.page.locator("#error")
    assert error.is_visible()
    assert visit.page.locator("#error .error-message").text_content() == message
    assert "invalid_image" in (error.text_content() or "")
    assert visit.page.locator("#detections tbody tr.detection").count() == 0
    screenshot(visit, "page-error-desktop.png", full_page=False)


@pytest.mark.parametrize(("photo", "code"), [(STREET, "image_too_large"), (VEHICLES, "payload_too_large")])
def test_too_large_shows_the_servers_message(
    browser_context: Any, limited_server: LiveServer, photo: Path, code: str
) -> None:
    visit = open_page(browser_context, limited_server.url)
    try:
        shown = load(visit, photo)
        expected = requests.post(  # the very bytes the page sent: the message counts them
            visit.origin + "/predict",
            data=shown["sent_bytes"],
            headers={"Content-type": "application/json"},
            timeout=60,
        )
        assert shown["status"] == expected.status_code == 413
        assert expected.json()["error"]["code"] == code
        assert visit.page.locator("#error .error-message").text_content() == expected.json()["error"]["message"]
        assert code in (visit.page.locator("#error strong").text_content() or "")
    finally:
        visit.page.close()
    assert visit.outside_requests() == [] and visit.problems == []


def test_busy_or_loading_shows_the_servers_message(visit: Visit) -> None:
    message = "the model is still loading; try again in a few seconds"
    envelope = {"error": {"code": "model_not_ready", "message": message}}
    visit.page.route("**/predict", lambda route: route.fulfill(status=503, json=envelope))
    load(visit, STREET)
    assert "503" in (visit.page.locator("#error strong").text_content() or "")
    assert visit.page.locator("#error .error-message").text_content() == message


def test_a_missing_key_says_401_and_the_key_field_fixes_it(
    browser_context: Any, secured_server: LiveServer, tmp_path: Path
) -> None:
    visit = open_page(browser_context, secured_server.url)
    page = visit.page
    try:
        assert "needs an API key" in (page.locator("#server-model").text_content() or "")
        shown = load(visit, STREET)
        assert shown["status"] == 401
        assert "401" in (page.locator("#error strong").text_content() or "")
        assert page.locator("#error .error-message").text_content() == MISSING_KEY_MESSAGE
        screenshot(visit, "page-401-desktop.png", full_page=False)

        def enter_key() -> None:
            page.locator("#api-key").fill(API_KEY)
            page.locator("#api-key").press("Tab")

        shown = wait_for_answer(visit, enter_key)
        assert shown["status"] == 200
        # With the key, GET /model answers: the controls now show this server's own defaults.
        assert page.locator("#slice").input_value() == "false"
        assert page.locator("#overlap").input_value() == "0.3"
        assert shown["sent"] == {"image": b64_of(STREET)}
        assert page.locator("#error").is_hidden()
        expected = api_predict(visit.origin, {"image": b64_of(STREET)}, {"X-API-Key": API_KEY}).json()
        assert_table_matches(visit, expected["detections"])
        predicts = [r for r in visit.requests if r.url.endswith("/predict")]
        assert predicts[-1].headers.get("x-api-key") == API_KEY
        assert page.evaluate("() => sessionStorage.getItem('specks.apiKey')") == API_KEY
        curl = page.eval_on_selector("#curl", "e => e.textContent")
        assert API_KEY not in curl  # the snippet reads the key from the environment, never shows it
        shutil.copy(STREET, tmp_path / STREET.name)
        env = {**os.environ, "SPECKS_API_KEY": API_KEY}
        from_curl = subprocess.run(
            ["bash", "-c", curl], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120
        )
        assert json.loads(from_curl.stdout)["detections"] == expected["detections"]
    finally:
        page.close()
    # The page and its assets came without a key; the failed calls were API calls only.
    refused = {url.removeprefix(visit.origin) for url, status in visit.statuses if status == 401}
    assert refused == {"/model", "/predict"}
    assert (visit.origin + "/page/page.js", 200) in visit.statuses
    assert visit.outside_requests() == []
    assert visit.problems == []


@pytest.mark.parametrize("how", ["drop", "paste"])
def test_an_image_can_be_dropped_or_pasted(visit: Visit, how: str) -> None:
    data = b64_of(VEHICLES)
    script = """([data, how]) => {
        const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "vehicles.jpeg", {type: "image/jpeg"}));
        if (how === "drop") {
            document.getElementById("dropzone").dispatchEvent(
                new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        } else {
            document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: transfer, bubbles: true}));
        }
    }"""
    shown = wait_for_answer(visit, lambda: visit.page.evaluate(script, [data, how]))
    assert shown["sent"] == {"image": data}
    assert len(table_rows(visit)) == len(shown["body"]["detections"]) > 0


def test_keyboard_only(visit: Visit) -> None:
    page = visit.page
    load(visit, STREET)
    reached = set()
    for _ in range(40):  # Tab through the page from the top
        page.keyboard.press("Tab")
        reached.add(page.evaluate("() => document.activeElement.tagName === 'TR' ? 'row' : document.activeElement.id"))
    assert {"file", "conf", "slice", "tile", "overlap", "classes", "api-key", "zoom", "show-tags"} <= reached
    assert "row" in reached  # the table rows take focus

    page.locator("#detections tbody tr.detection").nth(2).focus()  # focusing a row highlights its box
    assert page.locator("#overlay .box.active").get_attribute("data-index") == "2"
    page.locator("#detections tbody tr.detection").nth(2).hover()
    assert page.locator("#overlay .box.active").count() == 1

    page.locator("#slice").focus()
    shown = wait_for_answer(visit, lambda: page.keyboard.press("ArrowDown"))  # auto -> on
    assert shown["sent"]["slice"] is True


def test_every_control_has_a_label(visit: Visit) -> None:
    unlabeled = visit.page.evaluate(
        """() => Array.from(document.querySelectorAll("input, select, button, textarea"))
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute("aria-label")
                         && !(e.tagName === "BUTTON" && e.textContent.trim()))
            .map(e => e.id || e.outerHTML)"""
    )
    assert unlabeled == []


def test_the_server_defaults_and_model_list_drive_the_controls(visit: Visit) -> None:
    """GET /model's ``defaults`` set the controls; GET /models with several models shows a selector."""
    page = visit.page

    def model_with_defaults(route: Any) -> None:
        info = route.fetch().json()
        info["defaults"] = {"conf": 0.4, "iou": None, "max_det": 300, "slice": False, "tile": 512, "overlap": None}
        route.fulfill(json=info)

    page.route("**/model", model_with_defaults)
    page.route("**/models", lambda route: route.fulfill(json={"models": [{"name": "yolov5n.onnx"}, {"name": "tiny"}]}))
    page.reload()
    page.wait_for_function("() => !document.getElementById('model-field').hidden")
    assert page.locator("#conf").input_value() == "0.4"
    assert page.locator("#slice").input_value() == "false"
    assert page.locator("#tile").input_value() == "512"
    assert page.locator("#overlap").input_value() == ""
    assert page.locator("#model option").all_text_contents() == ["yolov5n.onnx", "tiny"]
    shown = load(visit, STREET)
    assert shown["sent"] == {"image": b64_of(STREET)}  # the server's defaults are not sent back
    shown = wait_for_answer(visit, lambda: page.locator("#model").select_option("tiny"))
    assert shown["sent"] == {"image": b64_of(STREET), "model": "tiny"}
    page.unroute("**/model")
    page.unroute("**/models")


def test_the_page_makes_no_request_outside_the_server(visit: Visit, tmp_path: Path) -> None:
    """A whole session: load, change options, an error, copy; every request stays on the server."""
    page = visit.page
    load(visit, VEHICLES)
    wait_for_answer(visit, lambda: page.locator("#conf").fill("0.3"))
    page.locator("details.code summary").first.click()
    page.locator("button.copy").first.click()
    notes = tmp_path / "notes.txt"
    notes.write_text("words")
    wait_for_answer(visit, lambda: page.set_input_files("#file", str(notes)))
    urls = [r.url for r in visit.requests]
    assert visit.origin + "/" in urls and visit.origin + "/page/page.js" in urls
    assert visit.outside_requests() == []


# -- regions drawn on the image ----------------------------------------------------------------------

QUARTER = [(0.05, 0.35), (0.55, 0.35), (0.55, 0.85), (0.05, 0.85)]  # fractions: a quarter of the photo
TRIANGLE = [(0.3, 0.45), (0.8, 0.45), (0.55, 0.8)]  # over the parked cars in the middle of the street


def screen_point(visit: Visit, fraction: tuple[float, float]) -> tuple[float, float]:
    """Where a point given in fractions of the displayed image is on the screen."""
    photo = visit.page.locator("#photo").bounding_box()
    assert photo is not None
    return photo["x"] + fraction[0] * photo["width"], photo["y"] + fraction[1] * photo["height"]


def click_corners(visit: Visit, corners: list[tuple[float, float]]) -> None:
    """Start drawing and click each corner (the photo scrolled to the middle of the window first)."""
    visit.page.locator("#region-draw").click()
    visit.page.locator("#photo").evaluate("photo => photo.scrollIntoView({block: 'center'})")
    for corner in corners:
        visit.page.mouse.click(*screen_point(visit, corner))


def assert_points_are_the_clicks(visit: Visit, points: list[list[float]], corners: list[tuple[float, float]]) -> None:
    """Sent points are the clicks, in fractions of the displayed image to 4 decimals (a click lands on a
    whole screen pixel, so within a pixel of where it was aimed)."""
    photo = visit.page.locator("#photo").bounding_box()
    assert photo is not None
    assert len(points) == len(corners)
    for (x, y), (aimed_x, aimed_y) in zip(points, corners, strict=True):
        assert round(x, 4) == x and round(y, 4) == y
        assert x == pytest.approx(aimed_x, abs=1.5 / photo["width"])
        assert y == pytest.approx(aimed_y, abs=1.5 / photo["height"])


def anchors_inside(detections: list[dict[str, Any]], points: list[list[float]], image: dict[str, int]) -> list[bool]:
    """Whether each detection's bottom centre lies in the polygon given in fractions of ``image``."""
    polygon = np.asarray(points, np.float64) * (image["width"], image["height"])
    bottoms = np.array([[(d["box"]["x1"] + d["box"]["x2"]) / 2, d["box"]["y2"]] for d in detections], np.float64)
    return inside_polygon(bottoms.reshape(-1, 2), polygon).tolist()


def test_a_drawn_region_is_sent_in_fractions_and_only_boxes_standing_in_it_come_back(
    visit: Visit, tmp_path: Path
) -> None:
    page = visit.page
    everything = load(visit, STREET)["body"]
    click_corners(visit, QUARTER)
    shown = wait_for_answer(visit, lambda: page.mouse.click(*screen_point(visit, QUARTER[0])))  # the first closes
    sent = shown["sent"]
    assert set(sent) == {"image", "regions"}  # no region_anchor: it is the default
    [region] = sent["regions"]
    assert region["units"] == "fraction" and region.get("exclude", False) is False
    assert_points_are_the_clicks(visit, region["points"], QUARTER)

    answer = shown["body"]
    assert shown["status"] == 200
    assert 0 < len(answer["detections"]) < len(everything["detections"])
    assert all(anchors_inside(answer["detections"], region["points"], answer["image"]))
    assert not all(anchors_inside(everything["detections"], region["points"], answer["image"]))
    assert page.locator("#overlay .box").count() == len(answer["detections"])
    assert_table_matches(visit, api_predict(visit.origin, sent).json()["detections"])
    assert_boxes_drawn_where_the_api_says(visit, answer)

    drawn = page.locator("#region-shapes .region.include .region-line").bounding_box()  # where it was clicked
    top_left, bottom_right = screen_point(visit, QUARTER[0]), screen_point(visit, QUARTER[2])
    assert drawn is not None
    assert drawn["x"] == pytest.approx(top_left[0], abs=2) and drawn["y"] == pytest.approx(top_left[1], abs=2)
    assert drawn["x"] + drawn["width"] == pytest.approx(bottom_right[0], abs=2)
    assert drawn["y"] + drawn["height"] == pytest.approx(bottom_right[1], abs=2)
    assert "1 region" in (page.locator("#region-summary").text_content() or "")
    screenshot(visit, "page-regions-desktop.png", full_page=False)

    curl = page.eval_on_selector("#curl", "e => e.textContent")
    python = page.eval_on_selector("#python", "e => e.textContent")
    assert '"regions"' in curl and '"regions"' in python
    shutil.copy(STREET, tmp_path / STREET.name)
    from_curl = subprocess.run(["bash", "-c", curl], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    from_python = subprocess.run(
        [sys.executable, "-c", python], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert from_curl.returncode == 0 and from_python.returncode == 0, from_curl.stderr + from_python.stderr
    assert json.loads(from_curl.stdout)["detections"] == answer["detections"]  # the very regions that were sent
    assert from_python.stdout.strip() == str(answer["detections"])


def test_an_exclude_region_is_sent_with_exclude_true_and_leaves_out_the_boxes_standing_in_it(visit: Visit) -> None:
    page = visit.page
    everything = load(visit, STREET)["body"]
    page.locator("#region-exclude").check()
    click_corners(visit, TRIANGLE)
    shown = wait_for_answer(visit, lambda: page.keyboard.press("Enter"))
    [region] = shown["sent"]["regions"]
    assert region["exclude"] is True and region["units"] == "fraction"
    assert_points_are_the_clicks(visit, region["points"], TRIANGLE)
    answer = shown["body"]
    assert any(anchors_inside(everything["detections"], region["points"], answer["image"]))  # some were there
    assert answer["detections"] and not any(anchors_inside(answer["detections"], region["points"], answer["image"]))
    assert page.locator("#region-shapes .region.exclude .region-hatch").count() == 1
    assert page.locator("#region-shapes .region.include").count() == 0
    screenshot(visit, "page-regions-exclude-desktop.png", full_page=False)


def test_double_click_closes_escape_cancels_clear_removes_and_the_anchor_is_sent_when_changed(visit: Visit) -> None:
    page = visit.page
    load(visit, STREET)
    click_corners(visit, QUARTER[:3])
    shown = wait_for_answer(visit, lambda: page.mouse.dblclick(*screen_point(visit, QUARTER[3])))
    [region] = shown["sent"]["regions"]
    assert_points_are_the_clicks(visit, region["points"], QUARTER)  # the double-click adds its corner once
    assert page.locator("#zoom").input_value() == "1"  # clicks that draw do not zoom

    sent_before = len(visit.predict_bodies())
    assert page.locator("#region-hint").is_hidden()
    click_corners(visit, TRIANGLE[:2])
    assert page.locator("#region-shapes .region.draft").count() == 1
    assert page.locator("#region-hint").is_visible()  # how to draw, while drawing
    assert "2 corners" in (page.locator("#region-summary").text_content() or "")
    page.keyboard.press("Escape")  # cancels the polygon in progress, keeps the closed one
    assert page.locator("#region-shapes .region.draft").count() == 0
    assert page.locator("#region-hint").is_hidden()
    assert page.locator("#region-shapes .region").count() == 1
    page.locator("#stage").click()  # no longer drawing: a click zooms again
    assert page.locator("#zoom").input_value() == "4"
    assert len(visit.predict_bodies()) == sent_before

    shown = wait_for_answer(visit, lambda: page.locator("#region-anchor").select_option("center"))
    assert shown["sent"]["region_anchor"] == "center" and len(shown["sent"]["regions"]) == 1
    shown = wait_for_answer(visit, lambda: page.locator("#region-clear").click())
    assert "regions" not in shown["sent"]
    assert page.locator("#region-shapes .region").count() == 0
    assert page.locator("#region-clear").is_disabled()
    shown = wait_for_answer(visit, lambda: page.locator("#region-anchor").select_option("bottom_center"))
    assert shown["sent"] == {"image": b64_of(STREET)}


def test_a_polygon_that_crosses_itself_shows_the_servers_message(visit: Visit) -> None:
    page = visit.page
    load(visit, STREET)
    click_corners(visit, [(0.1, 0.1), (0.5, 0.5), (0.5, 0.1), (0.1, 0.5)])  # a bow tie
    shown = wait_for_answer(visit, lambda: page.keyboard.press("Enter"))
    expected = api_predict(visit.origin, shown["sent"])
    assert shown["status"] == expected.status_code == 400
    assert expected.json()["error"]["code"] == "invalid_field"
    assert page.locator("#error .error-message").text_content() == expected.json()["error"]["message"]
    assert "crosses itself" in expected.json()["error"]["message"]
    assert page.locator("#region-shapes .region").count() == 1  # still shown, to be cleared


def test_a_region_can_be_drawn_with_the_keyboard(visit: Visit) -> None:
    page = visit.page
    load(visit, STREET)
    page.locator("#region-draw").focus()
    page.keyboard.press("Enter")  # starts drawing and puts the focus on the image, the cross at its centre
    assert page.evaluate("() => document.activeElement.id") == "stage"
    assert page.locator("#region-shapes .region-cursor").count() == 1
    page.keyboard.press("Space")  # (0.5, 0.5)
    for _ in range(2):
        page.keyboard.press("Shift+ArrowRight")  # 0.05 each
    page.keyboard.press("Space")  # (0.6, 0.5)
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Space")  # (0.6, 0.51)
    shown = wait_for_answer(visit, lambda: page.keyboard.press("Enter"))
    assert shown["sent"]["regions"] == [{"points": [[0.5, 0.5], [0.6, 0.5], [0.6, 0.51]], "units": "fraction"}]
    assert page.evaluate("() => document.activeElement.id") == "region-draw"  # back where drawing began
