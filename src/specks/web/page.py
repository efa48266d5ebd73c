"""The web page a person opens first: drop an image, see the boxes. Served by Specks itself.

``GET /`` negotiates: a browser (``text/html`` preferred over JSON) gets the page, an API client
(``*/*``, ``application/json`` or no ``Accept``, as requests and curl send) gets the JSON index.
The page is static files under ``static/page/`` (HTML, CSS and vanilla JavaScript: no build step,
nothing loaded from outside, so it works offline). It is one more client of the API: it sends
``POST /predict`` with base64 JSON like any other, and an API key, when the server needs one,
travels with those calls. So the page and its assets are served without a key (``/page`` is an
open path by default, and ``web.auth`` lets a browser's ``GET /`` through).

A Content-Security-Policy on the page allows requests to this server only: a mistake that would
load something from elsewhere fails in the browser instead of leaking the user's images.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, Request, Response, request, send_from_directory
from werkzeug.datastructures import MIMEAccept

PAGE_DIR = Path(__file__).parent / "static" / "page"
PAGE_FILE = "index.html"
ASSETS_URL_PATH = "/page"  # keep in Security.open_paths' default (config.py)

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

page = Blueprint("page", __name__)


def prefers_page(accept: MIMEAccept) -> bool:
    """True when the client ranks HTML above JSON (a browser); ties and ``*/*`` go to JSON."""
    return accept.best_match(["application/json", "text/html"]) == "text/html"


def is_page_request(req: Request) -> bool:
    """A browser asking for the page itself (``GET /`` or ``HEAD /``, HTML preferred)."""
    return req.method in ("GET", "HEAD") and req.path == "/" and prefers_page(req.accept_mimetypes)


def page_response() -> Response:
    """The page's HTML, with a policy that lets it reach this server only."""
    response = send_from_directory(PAGE_DIR, PAGE_FILE, mimetype="text/html", max_age=0)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@page.get(f"{ASSETS_URL_PATH}/<path:filename>")
def asset(filename: str) -> Response:
    """A page asset; revalidated on every load (ETag, 304), so a new version never runs a stale script."""
    response = send_from_directory(PAGE_DIR, filename, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _vary_on_accept(response: Response) -> Response:
    """``/`` answers HTML or JSON by ``Accept``: caches must keep them apart."""
    if request.path == "/":
        response.vary.add("Accept")
    return response


def register_page(app: Flask) -> None:
    app.register_blueprint(page)
    app.after_request(_vary_on_accept)
