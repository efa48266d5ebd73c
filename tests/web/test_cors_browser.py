"""CORS in a real browser: a page on another origin calls POST /predict with a key and reads the answer.

Playwright (PyPI) drives Debian's chromium (``make dev`` installs it; never ``playwright install``).
The Specks server allows one origin (a page server on one local port); a second page server on
another port is not allowed, and the browser must withhold the answer from it.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from chromium import chromium_context
from conftest import COCO_TINY, MODELS, LiveServer, free_port, live_server_for, require

playwright_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.slow, pytest.mark.browser]

API_KEY = "browser-k3y"
PERSON_PHOTO = COCO_TINY / "images" / "000000085329.jpg"  # 640x449, one person
PAGE = b"<!DOCTYPE html><html><head><meta charset='utf-8'><title>another origin</title></head><body></body></html>"

# Run in the page: POST /predict across origins the way a web application would, and report.
CALL_PREDICT = """
async ([url, key, image]) => {
  try {
    const response = await fetch(url + "/predict", {
      method: "POST",
      headers: {"Content-Type": "application/json", "X-API-Key": key},
      body: JSON.stringify({image: image}),
    });
    return {status: response.status, body: await response.json(), requestId: response.headers.get("X-Request-ID")};
  } catch (error) {
    return {error: String(error)};
  }
}
"""


class _PageHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def page_origins() -> Iterator[tuple[str, str]]:
    """Two page servers on loopback: the allowed origin and another one."""
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), _PageHandler) for _ in range(2)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        allowed, other = (f"http://127.0.0.1:{s.server_address[1]}" for s in servers)
        yield allowed, other
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def cors_server(cache_dir: Path, page_origins: tuple[str, str]) -> Iterator[LiveServer]:
    allowed, _ = page_origins
    env = {"SPECKS_CORS_ORIGINS": allowed, "SPECKS_API_KEYS": API_KEY}
    server = live_server_for(MODELS / "yolov5n.onnx", cache_dir, workers=1, env=env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser_context() -> Iterator[Any]:
    yield from chromium_context("specks-cors-chromium-")


def call_from(context: Any, origin: str, server: LiveServer, key: str) -> dict[str, Any]:
    image = base64.b64encode(require(PERSON_PHOTO).read_bytes()).decode("ascii")
    page = context.new_page()
    try:
        page.goto(origin + "/")
        result: dict[str, Any] = page.evaluate(CALL_PREDICT, [server.url, key, image])
        return result
    finally:
        page.close()


def test_page_on_the_allowed_origin_reads_the_detections(
    browser_context: Any, cors_server: LiveServer, page_origins: tuple[str, str]
) -> None:
    allowed, _ = page_origins
    result = call_from(browser_context, allowed, cors_server, API_KEY)

    assert "error" not in result, result
    assert result["status"] == 200
    labels = [d["label"] for d in result["body"]["detections"]]
    assert "person" in labels
    assert result["requestId"]  # an exposed header the page may read
    assert result["body"]["image"] == {"width": 640, "height": 449}


def test_page_on_the_allowed_origin_reads_a_refusal(
    browser_context: Any, cors_server: LiveServer, page_origins: tuple[str, str]
) -> None:
    allowed, _ = page_origins
    result = call_from(browser_context, allowed, cors_server, "wrong-key")

    assert result["status"] == 401
    assert result["body"]["error"]["code"] == "unauthorized"


def test_page_on_another_origin_is_refused_by_the_browser(
    browser_context: Any, cors_server: LiveServer, page_origins: tuple[str, str]
) -> None:
    _, other = page_origins
    result = call_from(browser_context, other, cors_server, API_KEY)

    assert set(result) == {"error"}  # fetch rejects: the browser withholds the answer
    assert "Failed to fetch" in result["error"]
    # The server itself still answers a plain (non-browser) client with the key.
    body = json.dumps({"image": base64.b64encode(require(PERSON_PHOTO).read_bytes()).decode()})
    direct = requests.post(cors_server.url + "/predict", data=body, timeout=60,
                           headers={"Content-Type": "application/json", "X-API-Key": API_KEY})  # fmt: skip
    assert direct.status_code == 200
    assert "Access-Control-Allow-Origin" not in direct.headers
