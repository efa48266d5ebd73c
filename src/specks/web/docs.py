"""API documentation served by Specks itself: ``/openapi.json`` and Swagger UI at ``/docs``.

Deployments are often offline, so the docs page loads nothing from outside: its assets come from
the installed ``swagger-ui-bundle-v2`` package's files and are served under ``/docs/``, and Swagger
UI's online validator is switched off. The document is built once per app, on first request, and
lists only the routes this app really serves (``/metrics`` only when metrics are on).
"""

from __future__ import annotations

import html
import re
import threading
from pathlib import Path
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, abort, current_app, send_file, url_for
from swagger_ui_bundle import swagger_ui_path

from ..config import Settings
from .openapi import build_openapi

SWAGGER_UI_DIR = Path(swagger_ui_path)

# The Swagger UI files the page may load, with their media types; anything else under /docs/ is a 404.
SWAGGER_UI_ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui.css.map": "application/json",
    "index.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-bundle.js.map": "application/json",
    "favicon-32x32.png": "image/png",
    "favicon-16x16.png": "image/png",
}
ASSET_MAX_AGE_S = 3600

# Ours, not the package's: its swagger-initializer.js points at the petstore demo. Kept out of the
# page (no inline script) so a Content-Security-Policy of script-src 'self' allows it.
INITIALIZER_NAME = "specks-docs.js"
INITIALIZER_JS = """\
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapiUrl,
    domNode: root,
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
"""

PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Specks API</title>
  <link rel="stylesheet" href="{swagger_css}">
  <link rel="stylesheet" href="{index_css}">
  <link rel="icon" type="image/png" href="{favicon_32}" sizes="32x32">
  <link rel="icon" type="image/png" href="{favicon_16}" sizes="16x16">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
  <script src="{bundle_js}"></script>
  <script src="{initializer_js}"></script>
</body>
</html>
"""

docs = Blueprint("docs", __name__)


class OpenAPIDocument:
    """The app's OpenAPI document as JSON bytes, built on first use (when every route is registered)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._body: bytes | None = None
        self._lock = threading.Lock()

    def json_bytes(self, app: Flask) -> bytes:
        with self._lock:
            if self._body is None:
                self._body = orjson.dumps(_served_only(build_openapi(self.settings), app))
            return self._body


def _openapi_path(rule: str) -> str:
    """A Flask rule in OpenAPI's spelling: ``/custom/<model>`` -> ``/custom/{model}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _served_only(document: dict[str, Any], app: Flask) -> dict[str, Any]:
    """Drop the documented operations this app has no route for (e.g. /metrics before it is wired)."""
    served = {
        (_openapi_path(rule.rule), method.lower()) for rule in app.url_map.iter_rules() for method in rule.methods or ()
    }
    kept = {}
    for path, item in document["paths"].items():
        operations = {method: op for method, op in item.items() if (path, method) in served}
        if operations:
            kept[path] = operations
    return {**document, "paths": kept}


@docs.get("/openapi.json")
def openapi_json() -> Response:
    document: OpenAPIDocument = current_app.extensions["specks.openapi"]
    return Response(document.json_bytes(current_app), mimetype="application/json")


@docs.get("/docs")
def docs_page() -> Response:
    def asset(name: str) -> str:
        return html.escape(url_for("docs.docs_asset", filename=name))

    page = PAGE.format(
        swagger_css=asset("swagger-ui.css"),
        index_css=asset("index.css"),
        favicon_32=asset("favicon-32x32.png"),
        favicon_16=asset("favicon-16x16.png"),
        bundle_js=asset("swagger-ui-bundle.js"),
        initializer_js=asset(INITIALIZER_NAME),
        openapi_url=html.escape(url_for("docs.openapi_json")),
    )
    return Response(page, mimetype="text/html")


@docs.get("/docs/<filename>")
def docs_asset(filename: str) -> Response:
    if filename == INITIALIZER_NAME:
        response = Response(INITIALIZER_JS, mimetype="text/javascript")
        response.cache_control.max_age = ASSET_MAX_AGE_S
        return response
    mimetype = SWAGGER_UI_ASSETS.get(filename)
    if mimetype is None:
        abort(404)
    return send_file(SWAGGER_UI_DIR / filename, mimetype=mimetype, max_age=ASSET_MAX_AGE_S)


def register_docs(app: Flask, settings: Settings) -> None:
    app.extensions["specks.openapi"] = OpenAPIDocument(settings)
    app.register_blueprint(docs)
