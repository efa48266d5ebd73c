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
- The compatible APIs' clients put the key where their servers read it: DeepStack clients in the
  form field ``api_key``, Roboflow's inference-sdk in the query (``?api_key=``) and the JSON body.
  A view marked ``accepts_key_in(KeySource.QUERY)`` also takes the query's key; one marked
  ``accepts_key_in(KeySource.BODY)`` without a header or query key is let through to read its body,
  and must call ``check_key_in_body`` on the body it read before it parses it (``check_body_key``
  where it has no body); an answer below 400 from such a view that never checked is replaced by a
  401. The key is found in the body by a byte search (``web.body_key``), so a client without a
  valid key never gets its body parsed. Only those views read keys outside the headers: a key in a
  URL ends up in proxy logs. The values clients send for "no key" (deepstack-python's ``""``,
  inference-sdk's ``api_key=None``) count as no key.
- Keys are compared as SHA-256 digests (equal length, so the comparison time does not depend
  on the key lengths) with ``hmac.compare_digest``, against every configured key without
  stopping at the first match. Keys are never logged, and error messages never echo them.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

from flask import Flask, Response, current_app, g, request
from werkzeug.datastructures import Headers

from ..config import Settings
from ..errors import AuthenticationError
from .body_key import body_key
from .errors import answer_response, encode_error
from .page import is_page_request

log = logging.getLogger(__name__)

KEY_HEADER = "X-API-Key"
MISSING_KEY_MESSAGE = "an API key is required: send it in the X-API-Key header or as 'Authorization: Bearer <key>'"
INVALID_KEY_MESSAGE = "the API key is not valid"
MISSING_FIELD_KEY_MESSAGE = (
    "an API key is required: send it as api_key (a form or JSON field, or ?api_key= where the client does), "
    "in the X-API-Key header or as 'Authorization: Bearer <key>'"
)
# The field (and query parameter) the compatible APIs' clients send their key in.
KEY_FIELD = "api_key"
# What clients send when they have no key: deepstack-python's default "", inference-sdk's str(None).
NO_KEY_VALUES = frozenset({"", "None"})

_EXTENSION = "specks.auth"
_BODY_KEY_PENDING = "specks_body_key_pending"
_SOURCES_ATTRIBUTE = "specks_key_sources"

View = TypeVar("View", bound=Callable[..., object])


class KeySource(enum.Enum):
    """Where a view's clients may put the key besides the headers."""

    QUERY = "query"  # ?api_key=<key>
    BODY = "body"  # the api_key field of the form or JSON body, read by the view


def accepts_key_in(*sources: KeySource) -> Callable[[View], View]:
    """Mark a view whose clients send the key in the query or body (put it under the route decorator)."""

    def mark(view: View) -> View:
        setattr(view, _SOURCES_ATTRIBUTE, frozenset(sources))
        return view

    return mark


class KeyChecker:
    """The configured keys' digests, and the check of a presented key against them."""

    def __init__(self, keys: Iterable[str]) -> None:
        self.key_digests = tuple(_digest(key.encode("utf-8")) for key in keys)

    def check(self, presented: str | bytes | None, missing_message: str = MISSING_KEY_MESSAGE) -> None:
        """Raise AuthenticationError unless ``presented`` is a configured key (bytes: exactly as sent)."""
        if presented is None:
            raise AuthenticationError(missing_message)
        if not key_matches(presented, self.key_digests):
            raise AuthenticationError(INVALID_KEY_MESSAGE)


def register_auth(app: Flask, settings: Settings) -> None:
    """Require an API key on every request when ``settings.security`` configures any."""
    security = settings.security
    if not security.enabled:
        return
    checker = KeyChecker(security.api_keys)
    app.extensions[_EXTENSION] = checker
    open_paths = security.open_paths

    def require_api_key() -> None:
        if security.is_open(request.path) or _is_cors_preflight() or is_page_request(request):
            return
        sources = _view_key_sources()
        presented: str | bytes | None = presented_key(request.headers)
        if presented is None and KeySource.QUERY in sources:
            presented = _utf8(field_key(request.args.get(KEY_FIELD)))
        if presented is None and KeySource.BODY in sources:
            setattr(g, _BODY_KEY_PENDING, True)  # the view reads its body, then calls check_key_in_body
            return
        checker.check(presented, MISSING_FIELD_KEY_MESSAGE if sources else MISSING_KEY_MESSAGE)

    app.before_request(require_api_key)
    # after_request functions run last-registered first: the refusal below gets its challenge too.
    app.after_request(_add_bearer_challenge)
    app.after_request(_refuse_unchecked_body_key)
    log.info(
        "API keys required (%d configured); open paths: %s", len(checker.key_digests), ", ".join(open_paths) or "none"
    )


def check_body_key(value: object) -> None:
    """Check the key a marked view found in its body (``value``: the api_key field, None when absent).

    Does nothing when keys are off, or when the headers or the query already carried a valid key.
    """
    if not g.pop(_BODY_KEY_PENDING, False):
        return
    checker: KeyChecker = current_app.extensions[_EXTENSION]
    checker.check(_utf8(field_key(value)), MISSING_FIELD_KEY_MESSAGE)


def check_key_in_body(raw: bytes, content_type: str | None) -> None:
    """Check the api_key field of a marked view's body (JSON or form) before the body is parsed.

    Does nothing when keys are off, or when the headers or the query already carried a valid key.
    """
    if not g.get(_BODY_KEY_PENDING, False):
        return
    check_body_key(body_key(raw, content_type, KEY_FIELD, invalid_message=INVALID_KEY_MESSAGE))


def field_key(value: object) -> str | None:
    """The key in a query parameter or body field, or None for none (absent, not text, or a no-key value)."""
    if not isinstance(value, str) or value.strip() in NO_KEY_VALUES:
        return None
    return value.strip()


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


def key_matches(presented: str | bytes, key_digests: Iterable[bytes]) -> bool:
    """Compare ``presented`` with every configured key's SHA-256 digest, in constant time.

    A str is a header value (see ``_header_bytes``); bytes are the key as the client wrote it
    (query parameters and body fields, decoded and re-encoded as UTF-8).

    Every digest is compared even after a match, so the time taken tells nothing about which
    key matched or how many keys there are before it.
    """
    presented_digest = _digest(presented if isinstance(presented, bytes) else _header_bytes(presented))
    matched = False
    for key_digest in key_digests:
        matched |= hmac.compare_digest(presented_digest, key_digest)
    return matched


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def _utf8(key: str | None) -> bytes | None:
    return None if key is None else key.encode("utf-8")


def _header_bytes(value: str) -> bytes:
    """The bytes a client sent: WSGI hands header values over decoded as latin-1 (PEP 3333)."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:  # not from a WSGI server (e.g. the test client): text as given
        return value.encode("utf-8")


def _view_key_sources() -> frozenset[KeySource]:
    """Where the matched view's clients may put their key besides the headers (none for unmatched paths)."""
    view = current_app.view_functions.get(request.endpoint or "")
    sources: frozenset[KeySource] = getattr(view, _SOURCES_ATTRIBUTE, frozenset())
    return sources


def _refuse_unchecked_body_key(response: Response) -> Response:
    """A safety net: a marked view that answered without calling check_body_key is refused."""
    if g.pop(_BODY_KEY_PENDING, False) and response.status_code < 400:
        log.error("%s answered without checking the API key in its body; refused with 401", request.endpoint)
        return answer_response(encode_error(AuthenticationError(MISSING_FIELD_KEY_MESSAGE)))
    return response


def _is_cors_preflight() -> bool:
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


def _add_bearer_challenge(response: Response) -> Response:
    if response.status_code == 401:
        response.headers.setdefault("WWW-Authenticate", "Bearer")
    return response
