"""The web page's serving: ``GET /`` negotiation, its assets, what stays open with API keys, and
that nothing in it points outside the server. The page in a real browser: test_page_browser.py."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from conftest import REPO_ROOT
from specks.config import Security, Settings
from specks.core.pipeline import Detector
from specks.web import create_app
from specks.web.page import CONTENT_SECURITY_POLICY, PAGE_DIR, prefers_page

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
ASSETS = {
    "page.js": "text/javascript",
    "page.css": "text/css",
    "favicon.svg": "image/svg+xml",
}


class _LinkCollector(HTMLParser):
    """Every src and href in a document."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [value for name, value in attrs if name in ("src", "href") and value]


def page_links(html: str) -> list[str]:
    collector = _LinkCollector()
    collector.feed(html)
    return collector.links


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (BROWSER_ACCEPT, "text/html"),  # Chromium and Firefox send this
        ("text/html", "text/html"),
        ("text/*", "text/html"),
        ("*/*", "application/json"),  # requests, curl
        ("application/json", "application/json"),
        ("text/html, application/json", "application/json"),  # a tie goes to the API
        ("application/json, text/html;q=0.5", "application/json"),
        (None, "application/json"),  # no Accept header
    ],
)
def test_index_answers_browsers_with_the_page_and_clients_with_json(
    client: FlaskClient, accept: str | None, expected: str
) -> None:
    response = client.get("/", headers={"Accept": accept} if accept else {})
    assert response.status_code == 200
    assert response.mimetype == expected
    assert "Accept" in response.headers.get("Vary", "")
    if expected == "application/json":
        assert response.get_json()["name"] == "specks"
    else:
        assert b'<script src="page/page.js"' in response.data


def test_the_page_may_reach_this_server_only(client: FlaskClient) -> None:
    response = client.get("/", headers={"Accept": BROWSER_ACCEPT})
    policy = response.headers["Content-Security-Policy"]
    assert policy == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy and "http" not in policy


def test_every_asset_the_page_links_is_served_from_this_server(client: FlaskClient) -> None:
    html = client.get("/", headers={"Accept": BROWSER_ACCEPT}).get_data(as_text=True)
    links = page_links(html)
    assert {"page/page.js", "page/page.css", "page/favicon.svg"} <= set(links)
    for link in links:
        if link.startswith("#"):
            continue
        assert not re.match(r"^([a-z]+:)?//", link), f"{link} points outside the server"
        response = client.get("/" + link)
        assert response.status_code == 200, link
        assert response.mimetype == ASSETS[link.removeprefix("page/")]
        assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("name", sorted(path.name for path in PAGE_DIR.iterdir()))
def test_no_asset_names_an_outside_address(name: str) -> None:
    text = (PAGE_DIR / name).read_text()
    text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a namespace name, never fetched
    assert not re.search(r"https?://", text), f"{name} names an outside address"
    assert not re.search(r"@import|url\(\s*['\"]?(?!#|data:)", text), f"{name} loads a stylesheet resource"


@pytest.mark.parametrize("path", ["/page/nothing.js", "/page/../routes.py", "/page/%2e%2e/routes.py", "/page/"])
def test_only_page_files_are_served(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_assets_are_revalidated_so_an_upgrade_never_runs_a_stale_script(client: FlaskClient) -> None:
    first = client.get("/page/page.js")
    assert "no-cache" in first.headers["Cache-Control"]
    again = client.get("/page/page.js", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304


@pytest.fixture(scope="module")
def secured_app(yolov5n_detector: Detector, cache_dir: Path) -> Flask:
    application = create_app(
        Settings(cache_dir=cache_dir, security=Security(api_keys=("k3y",))), detector=yolov5n_detector
    )
    application.testing = True
    return application


@pytest.mark.parametrize(
    ("method", "path", "accept", "status"),
    [
        ("GET", "/", BROWSER_ACCEPT, 200),  # the page is static: no key needed
        ("HEAD", "/", BROWSER_ACCEPT, 200),
        ("GET", "/page/page.js", "*/*", 200),
        ("GET", "/page/page.css", "*/*", 200),
        ("GET", "/", "*/*", 401),  # the JSON index still needs one
        ("GET", "/", None, 401),
        ("POST", "/", BROWSER_ACCEPT, 401),  # only a GET for the page
        ("GET", "/model", BROWSER_ACCEPT, 401),  # the API the page calls needs the key
        ("POST", "/predict", BROWSER_ACCEPT, 401),
    ],
)
def test_with_api_keys_the_page_is_open_and_the_api_is_not(
    secured_app: Flask, method: str, path: str, accept: str | None, status: int
) -> None:
    response = secured_app.test_client().open(path, method=method, headers={"Accept": accept} if accept else {})
    assert response.status_code == status


def test_page_assets_are_an_open_path_by_default() -> None:
    assert Security().is_open("/page/page.js")
    assert not Security(open_paths=("/health",)).is_open("/page/page.js")  # an operator may close them


def test_prefers_page_ranks_html_above_json() -> None:
    from werkzeug.datastructures import MIMEAccept
    from werkzeug.http import parse_accept_header

    assert prefers_page(parse_accept_header(BROWSER_ACCEPT, MIMEAccept))
    assert not prefers_page(parse_accept_header("", MIMEAccept))


@pytest.mark.slow
def test_the_package_build_ships_the_page(tmp_path: Path) -> None:
    """The assets are package data: a built (non-editable) Specks serves the page too.

    ``build_py`` is the step that fills a wheel with the package's files. It runs on a copy of
    the sources without the editable install's egg-info, whose file list would hide a missing
    package-data rule.
    """
    tree = tmp_path / "tree"
    shutil.copytree(REPO_ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, tree / name)
    build = (
        "import sys, setuptools; sys.argv = ['setup.py', '-q', 'build_py', '--build-lib', 'out']; setuptools.setup()"
    )
    result = subprocess.run([sys.executable, "-c", build], cwd=tree, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    built = tree / "out" / "specks" / "web" / "static" / "page"
    assert built.is_dir(), "the page's files are not package data"
    assert sorted(path.name for path in built.iterdir()) == sorted(path.name for path in PAGE_DIR.iterdir())
