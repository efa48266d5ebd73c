"""Images by URL, fetched only where the operator allows: the classic way to make a server fetch
what it must not, so every step is checked.

- Off unless ``SPECKS_IMAGE_URLS`` lists URL prefixes (``https://cams.example.org/``); a URL must
  start with one of them, compared on its normalised form (scheme and host in lower case, an
  explicit default port dropped), and a prefix always ends at a path boundary, so
  ``https://cams.example.org`` never admits ``https://cams.example.org.evil.net/``.
- Only http and https, no user name or password in the URL.
- The host is resolved once and the connection goes to that address (no second lookup for an
  attacker's DNS to change). Loopback, private, link-local (cloud metadata), shared, multicast and
  reserved addresses are refused unless the matching prefix names that very address as its host.
- Redirects are followed (at most ``MAX_REDIRECTS``) only to URLs that pass the same checks.
- A connect timeout and a total time limit, the body limit (``SPECKS_MAX_BODY_BYTES``) counted while
  reading, and an image content type; the pixel limit applies when the image is decoded, as always.
- Refusals are ``ImageUrlForbiddenError`` (403: which rule) or ``InvalidImageUrlError`` (400: a bad
  URL or a failed fetch); neither echoes what was fetched.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit

from ..errors import ImageUrlForbiddenError, InvalidImageUrlError, PayloadTooLargeError, clipped

MAX_REDIRECTS = 3
MAX_URL_CHARS = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: not the internet either
_READ_CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class UrlPolicy:
    """What an image URL may be: ``allowed_prefixes`` (empty: URLs are off), and the fetch's limits."""

    allowed_prefixes: tuple[str, ...] = ()
    max_bytes: int = 20 * 1024 * 1024
    connect_timeout_s: float = 3.0
    total_timeout_s: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.allowed_prefixes)


def normalised_url(url: str) -> str:
    """``url`` with its scheme and host in lower case and an explicit default port dropped."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port and parts.port != _DEFAULT_PORTS.get(parts.scheme.lower()) else ""
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme.lower()}://{host}{port}{path}{query}"


def normalised_prefix(prefix: str) -> str:
    """A prefix as URLs are compared with it: normalised, ending at a path boundary ("/")."""
    normal = normalised_url(prefix)
    return normal if normal.endswith("/") else normal + "/"


def fetch_image(url: str, policy: UrlPolicy) -> bytes:
    """The bytes at ``url``, once every rule of this module allows it (see the module docstring)."""
    if not policy.enabled:
        raise ImageUrlForbiddenError(
            "images by URL are off on this server; send the image as base64 in 'image', "
            "or ask the operator to allow your URLs with SPECKS_IMAGE_URLS",
            field="image_url",
        )
    deadline = time.monotonic() + policy.total_timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        parts, prefix = _checked_url(url, policy)
        address = _checked_address(parts, prefix)
        status, location, body = _get(parts, address, policy, deadline)
        if status in (301, 302, 303, 307, 308) and location:
            url = urljoin(url, location)
            continue
        if status != 200:
            raise InvalidImageUrlError(f"the image URL answered HTTP {status}, not 200", field="image_url")
        return body
    raise InvalidImageUrlError(f"the image URL redirected more than {MAX_REDIRECTS} times", field="image_url")


def _checked_url(url: str, policy: UrlPolicy) -> tuple[SplitResult, str]:
    """The URL's parts and the allowed prefix it starts with; refusals name the rule."""
    if len(url) > MAX_URL_CHARS:
        raise InvalidImageUrlError(f"the image URL is longer than {MAX_URL_CHARS} characters", field="image_url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError as exc:
        raise InvalidImageUrlError(f"not a valid URL: {clipped(url, 200)}", field="image_url") from exc
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        raise InvalidImageUrlError("an image URL must be http:// or https:// with a host", field="image_url")
    if parts.username or parts.password:
        raise ImageUrlForbiddenError("an image URL may not carry a user name or password", field="image_url")
    normal = normalised_url(url)
    for prefix in policy.allowed_prefixes:
        if normal.startswith(normalised_prefix(prefix)):
            return parts, normalised_prefix(prefix)
    raise ImageUrlForbiddenError(
        f"the image URL {clipped(url, 200)} is not under a prefix this server allows (SPECKS_IMAGE_URLS)",
        field="image_url",
    )


def _checked_address(parts: SplitResult, prefix: str) -> str:
    """The one address the connection goes to: resolved once, refused when not public unless the
    prefix names that very address."""
    host = parts.hostname or ""
    port = parts.port or _DEFAULT_PORTS[parts.scheme.lower()]
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        message = f"the image URL's host {clipped(host, 100)} does not resolve"
        raise InvalidImageUrlError(message, field="image_url") from exc
    address = ipaddress.ip_address(str(found[0][4][0]).split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if _is_public(address):
        return str(address)
    prefix_host = urlsplit(prefix).hostname or ""
    try:
        named = ipaddress.ip_address(prefix_host)
    except ValueError:
        named = None
    if named is not None and (named == address or getattr(named, "ipv4_mapped", None) == address):
        return str(address)
    raise ImageUrlForbiddenError(
        f"the image URL's host resolves to {address}, a {_kind(address)} address; only a prefix that names "
        "that address itself in SPECKS_IMAGE_URLS allows it",
        field="image_url",
    )


def _is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED_ADDRESS_SPACE:
        return False
    return address.is_global and not address.is_multicast


def _kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    for kind in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(address, f"is_{kind}"):
            return kind.replace("_", "-")
    return "non-public"


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to ``address``, whatever the host name says (the name was resolved and checked once)."""

    def __init__(self, host: str, port: int, address: str, timeout_s: float) -> None:
        super().__init__(host, port, timeout=timeout_s)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), timeout=self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``address``, the certificate checked against the host name."""

    def __init__(self, host: str, port: int, address: str, timeout_s: float) -> None:
        super().__init__(host, port, timeout=timeout_s, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), timeout=self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def _get(parts: SplitResult, address: str, policy: UrlPolicy, deadline: float) -> tuple[int, str | None, bytes]:
    """(status, Location, body) of one GET; the body only for a 200 with an image content type."""
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS[scheme]
    pinned = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    connection = pinned(parts.hostname or "", port, address, policy.connect_timeout_s)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("GET", target, headers={"Accept": "image/*", "User-Agent": "specks"})
        response = connection.getresponse()
        if response.status != 200:
            return response.status, response.getheader("Location"), b""
        content_type = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
        if not content_type.startswith("image/"):
            raise InvalidImageUrlError(
                f"the image URL answered with {clipped(content_type or 'no content type', 80)}, not an image/* type",
                field="image_url",
            )
        return 200, None, _read_body(response, policy, deadline)
    except (OSError, http.client.HTTPException) as exc:
        raise InvalidImageUrlError(
            f"the image URL could not be fetched ({type(exc).__name__})", field="image_url"
        ) from exc
    finally:
        connection.close()


def _read_body(response: http.client.HTTPResponse, policy: UrlPolicy, deadline: float) -> bytes:
    declared = response.getheader("Content-Length")
    if declared is not None and declared.isdigit() and int(declared) > policy.max_bytes:
        raise PayloadTooLargeError(
            f"the image at the URL is {int(declared)} bytes, more than the server accepts ({policy.max_bytes}; "
            "SPECKS_MAX_BODY_BYTES)",
            field="image_url",
        )
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise InvalidImageUrlError(
                f"the image URL took longer than {policy.total_timeout_s:g} s to send the image", field="image_url"
            )
        chunk = response.read1(_READ_CHUNK_BYTES) if hasattr(response, "read1") else response.read(_READ_CHUNK_BYTES)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > policy.max_bytes:
            raise PayloadTooLargeError(
                f"the image at the URL is more than the server accepts ({policy.max_bytes} bytes; "
                "SPECKS_MAX_BODY_BYTES)",
                field="image_url",
            )
        chunks.append(chunk)
