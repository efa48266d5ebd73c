"""gunicorn's own refusals (malformed requests, 414, 431, 501) answer Specks' JSON envelope, live.

Raw bytes over a socket to a real one-worker server: these requests never reach Flask.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from conftest import MODELS, LiveServer, live_server_for, serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(cache_dir: Path) -> Iterator[LiveServer]:
    yield from serving(live_server_for(MODELS / "yolov5n.onnx", cache_dir, workers=1))


def exchange(server: LiveServer, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``raw``, read the answer to the end (the server closes): status, headers, body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


MALFORMED = [
    ("bad request line", b"GARBAGE-<script>\r\n\r\n", 400, "invalid_request"),
    ("bad header name", b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400, "invalid_request"),
    ("uri too long", b"GET /health?q=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    (
        "too many headers",
        b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(150)) + b"\r\n",
        431,
        "headers_too_large",
    ),
    (
        "unknown transfer coding",
        b"POST /predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: rot13\r\n\r\n",
        501,
        "not_implemented",
    ),
]


@pytest.mark.parametrize(("case", "raw", "status", "code"), MALFORMED, ids=[case[0] for case in MALFORMED])
def test_gunicorn_refusals_are_json(server: LiveServer, case: str, raw: bytes, status: int, code: str) -> None:
    got, headers, body = exchange(server, raw)

    assert got == status
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(body))
    error = orjson.loads(body)["error"]
    assert error["code"] == code
    assert b"<" not in body and b"aaaa" not in body  # no HTML, no echo of the request


def test_a_doubled_slash_is_not_redirected_to_the_clients_host(server: LiveServer) -> None:
    raw = b"GET /model//registry HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"

    status, headers, _ = exchange(server, raw)

    assert status == 404
    assert "location" not in headers
