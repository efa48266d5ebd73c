"""Images by URL: every rule of specks.service.fetch, against a server on loopback that the tests allow explicitly."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from conftest import jpeg_bytes
from factories import b64
from specks.errors import ImageUrlForbiddenError, InvalidImageUrlError, PayloadTooLargeError
from specks.service import fetch
from specks.service.fetch import UrlPolicy, fetch_image, normalised_prefix

PHOTO = jpeg_bytes(64, 48)


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        status, headers, body = self.routes.get(self.path, (404, {"Content-Type": "text/plain"}, b"no"))
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a small image server (stopped after the module)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    base = f"http://127.0.0.1:{server.server_port}"
    _Handler.routes = {
        "/cams/photo.jpg": (200, {"Content-Type": "image/jpeg"}, PHOTO),
        "/cams/page.html": (200, {"Content-Type": "text/html"}, b"<html>secret</html>"),
        "/cams/big.jpg": (200, {"Content-Type": "image/jpeg"}, b"\xff" * 5000),
        "/cams/moved": (302, {"Location": "/cams/photo.jpg"}, b""),
        "/cams/away": (302, {"Location": "http://example.invalid/photo.jpg"}, b""),
        "/cams/to-localhost": (302, {"Location": base.replace("127.0.0.1", "localhost") + "/cams/photo.jpg"}, b""),
        "/cams/loop": (302, {"Location": "/cams/loop"}, b""),
        "/private/photo.jpg": (200, {"Content-Type": "image/jpeg"}, PHOTO),
    }
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()


def allowing(*prefixes: str, max_bytes: int = 1_000_000) -> UrlPolicy:
    return UrlPolicy(prefixes, max_bytes=max_bytes, connect_timeout_s=2, total_timeout_s=5)


def test_an_allowed_url_is_fetched_and_redirects_inside_the_prefix_are_followed(origin: str) -> None:
    policy = allowing(origin + "/cams/")
    assert fetch_image(origin + "/cams/photo.jpg", policy) == PHOTO
    assert fetch_image(origin + "/cams/moved", policy) == PHOTO


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("{o}/private/photo.jpg", "not under a prefix"),  # another path of the same host
        ("{o}/cams/away", "not under a prefix"),  # a redirect out of the allowed prefixes
        ("http://user:pw@127.0.0.1/cams/photo.jpg", "user name or password"),
    ],
)
def test_urls_outside_the_rules_are_refused_with_403(origin: str, url: str, rule: str) -> None:
    with pytest.raises(ImageUrlForbiddenError, match=rule) as refused:
        fetch_image(url.format(o=origin), allowing(origin + "/cams/"))
    assert refused.value.field == "image_url"


def test_urls_are_off_unless_the_operator_lists_prefixes(origin: str) -> None:
    with pytest.raises(ImageUrlForbiddenError, match="images by URL are off"):
        fetch_image(origin + "/cams/photo.jpg", UrlPolicy())


def test_a_host_name_that_resolves_to_a_private_address_is_refused_even_when_its_prefix_is_allowed(
    origin: str,
) -> None:
    by_name = origin.replace("127.0.0.1", "localhost")
    with pytest.raises(ImageUrlForbiddenError, match="loopback address"):
        fetch_image(by_name + "/cams/photo.jpg", allowing(by_name + "/cams/"))
    # ... and so is a redirect from an allowed address to it, although both prefixes are listed
    with pytest.raises(ImageUrlForbiddenError, match="loopback address"):
        fetch_image(origin + "/cams/to-localhost", allowing(origin + "/cams/", by_name + "/cams/"))


@pytest.mark.parametrize(
    ("resolved", "kind"),
    [("169.254.169.254", "link-local"), ("10.1.2.3", "private"), ("100.64.0.1", "non-public"), ("::1", "loopback")],
)
def test_metadata_private_and_shared_addresses_are_refused(
    monkeypatch: pytest.MonkeyPatch, resolved: str, kind: str
) -> None:
    def resolve(host: str, port: int, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (resolved, port))]

    monkeypatch.setattr(fetch.socket, "getaddrinfo", resolve)
    with pytest.raises(ImageUrlForbiddenError, match=f"a {kind} address"):
        fetch_image("http://cams.example.org/photo.jpg", allowing("http://cams.example.org/"))


def test_a_prefix_ends_at_a_path_boundary() -> None:
    assert normalised_prefix("HTTPS://Cams.Example.org") == "https://cams.example.org/"
    assert normalised_prefix("https://cams.example.org:443/a") == "https://cams.example.org/a/"
    with pytest.raises(ImageUrlForbiddenError, match="not under a prefix"):
        fetch_image("https://cams.example.org.evil.net/photo.jpg", allowing("https://cams.example.org"))


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ("/cams/page.html", InvalidImageUrlError, "text/html, not an image"),
        ("/cams/missing.jpg", InvalidImageUrlError, "HTTP 404"),
        ("/cams/loop", InvalidImageUrlError, "redirected more than 3 times"),
        ("/cams/big.jpg", PayloadTooLargeError, "more than the server accepts"),
    ],
)
def test_a_fetch_that_is_not_an_image_within_the_limits_is_refused(
    origin: str, path: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as refused:
        fetch_image(origin + path, allowing(origin + "/cams/", max_bytes=4000))
    assert "secret" not in str(refused.value)  # what was fetched is never echoed


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/cams/x.jpg", "http://127.0.0.1:99999/cams/x.jpg", "not a url"])
def test_malformed_urls_are_a_400(url: str) -> None:
    with pytest.raises(InvalidImageUrlError):
        fetch_image(url, allowing("http://127.0.0.1/cams/"))


def test_an_image_url_is_answered_like_the_same_image_in_base64(origin: str, cache_dir, yolov5n_detector) -> None:  # type: ignore[no-untyped-def]
    from conftest import app_for

    client = app_for(yolov5n_detector, cache_dir, image_urls=(origin + "/cams/",)).test_client()
    by_url = client.post("/predict", json={"image_url": origin + "/cams/photo.jpg", "conf": 0.05})
    by_value = client.post("/predict", json={"image": b64(PHOTO), "conf": 0.05})
    assert by_url.status_code == 200
    assert by_url.get_json()["detections"] == by_value.get_json()["detections"]
    refused = client.post("/predict", json={"image_url": origin + "/private/photo.jpg"})
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "image_url_forbidden"
    both = client.post("/predict", json={"image_url": origin + "/cams/photo.jpg", "image": b64(PHOTO)})
    assert both.status_code == 400 and both.get_json()["error"]["field"] == "image_url"


def test_roboflow_url_images_are_fetched_under_the_same_rules(origin: str, cache_dir, yolov5n_detector) -> None:  # type: ignore[no-untyped-def]
    from conftest import app_for

    client = app_for(yolov5n_detector, cache_dir, image_urls=(origin + "/cams/",)).test_client()
    body = {"model_id": "coco/3", "confidence": 0.05}
    fetched = client.post(
        "/infer/object_detection", json={**body, "image": {"type": "url", "value": origin + "/cams/photo.jpg"}}
    )
    sent = client.post("/infer/object_detection", json={**body, "image": {"type": "base64", "value": b64(PHOTO)}})
    assert fetched.status_code == 200
    strip = lambda answer: [{k: v for k, v in p.items() if k != "detection_id"} for p in answer["predictions"]]  # noqa: E731
    assert strip(fetched.get_json()) == strip(sent.get_json())
    refused = client.post(
        "/infer/object_detection", json={**body, "image": {"type": "url", "value": origin + "/private/photo.jpg"}}
    )
    assert refused.status_code == 403
