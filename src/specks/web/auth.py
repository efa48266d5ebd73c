"""Optional API keys: every request needs a configured key, except open paths and CORS preflights.

A client sends its key as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>`` (scheme in
any case); when both are present, ``X-API-Key`` is the one checked. A missing or wrong key
raises ``AuthenticationError`` (401 in ``web.errors``), and the answer carries
``WWW-Authenticate: Bearer``.

Choices worth knowing:

- The key is checked before routing, so a client without a valid key gets 401 for every path,
  existing or not (404 and 405 would tell it which paths exist).
- An open path opens itself and the paths below it: ``/docs`` also opens ``/docs/swagger.css``.
  ``/`` opens only itself.
- The web page is open: a browser's ``GET /`` (HTML preferred, ``web.page``) gets it without a
  key, and its assets are below the open path ``/page``. It is static; the API calls it makes
  carry the key the user types in. An API client's ``GET /`` (the JSON index) still needs one.
- CORS preflights (``OPTIONS`` with ``Access-Control-Request-Method``) pass without a key, because
  browsers never send credentials on them; this lets anyone learn which methods a path allows.
- Keys are compared as SHA-256 digests (equal length, so the comparison time does not depend
  on the key lengths) with ``hmac.compare_digest``, against every configured key without
  stopping at the first match. Keys are never logged, and error messages never echo them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable

from flask import Flask, Response, request
from werkzeug.datastructures import Headers

from ..config import Settings
from ..errors import AuthenticationError
from .page import is_page_request

log = logging.getLogger(__name__)

KEY_HEADER = "X-API-Key"
MISSING_KEY_MESSAGE = "an API key is required: send it in the X-API-Key header or as 'Authorization: Bearer <key>'"
INVALID_KEY_MESSAGE = "the API key is not valid"


def register_auth(app: Flask, settings: Settings) -> None:
    """Require an API key on every request when ``settings.security`` configures any."""
    security = settings.security
    if not security.enabled:
        return
    key_digests = tuple(_digest(key.encode("utf-8")) for key in security.api_keys)
    open_paths = security.open_paths

    def require_api_key() -> None:
        if security.is_open(request.path) or _is_cors_preflight() or is_page_request(request):
            return
        presented = presented_key(request.headers)
        if presented is None:
            raise AuthenticationError(MISSING_KEY_MESSAGE)
        if not key_matches(presented, key_digests):
            raise AuthenticationError(INVALID_KEY_MESSAGE)

    app.before_request(require_api_key)
    app.after_request(_add_bearer_challenge)
    log.info("API keys required (%d configured); open paths: %s", len(key_digests), ", ".join(open_paths) or "none")


def presented_key(headers: Headers) -> str | None:
    """The key a request presents, or None when it sends none (or an empty one).

    ``X-API-Key`` wins over ``Authorization``; only the Bearer scheme counts (any case).
    """
    key = headers.get(KEY_HEADER, "").strip()
    if key:
        return key
    scheme, _, credentials = headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def key_matches(presented: str, key_digests: Iterable[bytes]) -> bool:
    """Compare ``presented`` with every configured key's SHA-256 digest, in constant time.

    Every digest is compared even after a match, so the time taken tells nothing about which
    key matched or how many keys there are before it.
    """
    presented_digest = _digest(_header_bytes(presented))
    matched = False
    for key_digest in key_digests:
        matched |= hmac.compare_digest(presented_digest, key_digest)
    return matched


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def _header_bytes(value: str) -> bytes:
    """The bytes a client sent: WSGI hands header values over decoded as latin-1 (PEP 3333)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:  # not from a WSGI server (e.g. the test client): text as given
        return value.encode("utf-8")


def _is_cors_preflight() -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


def _add_bearer_challenge(response: Response) -> Response:
    if response.status_code == 401:
        response.headers.setdefault("WWW-Authenticate", "Bearer")
    return response
