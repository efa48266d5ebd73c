"""Cross-origin requests from browsers (CORS), through flask-cors; off unless origins are allowed.

``SPECKS_CORS_ORIGINS`` lists the origins whose pages may call the API, exactly as browsers send
them (``https://app.example.com``), or ``*`` for any. Every route answers them, the detection
routes (``/predict``, the DeepStack and Roboflow ones) included, error answers too, so a page can
read a 401 or a 413's message. Preflights allow the request headers a client sends
(``Content-Type``, ``X-API-Key``, ``Authorization``, ``X-Request-ID``) and pass without an API key
(browsers never send one on them: see ``web.auth``); the key is checked on the request itself.
Credentials (cookies) are never allowed: Specks' keys travel in headers. ``X-Request-ID`` is
exposed to the page.
"""

from __future__ import annotations

import logging

from flask import Flask
from flask_cors import CORS

from ..config import Settings

log = logging.getLogger(__name__)

ALLOWED_HEADERS = ("Content-Type", "X-API-Key", "Authorization", "X-Request-ID")
EXPOSED_HEADERS = ("X-Request-ID",)
ALLOWED_METHODS = ("GET", "HEAD", "POST", "OPTIONS")
# How long a browser may reuse a preflight's answer.
PREFLIGHT_MAX_AGE_S = 600


def register_cors(app: Flask, settings: Settings) -> None:
    """Answer cross-origin requests from the allowed origins (nothing happens when none is)."""
    cors = settings.cors
    if not cors.enabled:
        return
    CORS(
        app,
        origins=list(cors.allowed_origins),
        methods=list(ALLOWED_METHODS),
        allow_headers=list(ALLOWED_HEADERS),
        expose_headers=list(EXPOSED_HEADERS),
        supports_credentials=False,
        send_wildcard=cors.allows_any_origin,
        max_age=PREFLIGHT_MAX_AGE_S,
        always_send=False,  # only answers to requests with an Origin (browsers) carry CORS headers
    )
    log.info("CORS: requests from %s allowed", ", ".join(cors.allowed_origins))
