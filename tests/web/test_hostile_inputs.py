"""Hostile and odd inputs: each gets the exact status and error code, and the server keeps serving."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from conftest import jpeg_bytes
from factories import (
    animated_gif,
    b64,
    cmyk_jpeg,
    encode,
    exif_rotated_jpeg,
    huge_bilevel_png,
    sixteen_bit_png,
    solid,
)

JSON = "application/json"
# The first box of an iPhone photo (ftyp, major brand heic): refused with a message to convert.
HEIC_HEAD = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"
PHOTO = jpeg_bytes(320, 240)
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def image_body(data: bytes, **fields: Any) -> bytes:
    return body(image=b64(data), **fields)


def nested(depth: int) -> bytes:
    return b'{"image": ' + b"[" * depth + b"]" * depth + b"}"


# (case id, raw body, content type, expected status, expected error code or None for success)
CASES: list[tuple[str, Callable[[], bytes], str | None, int, str | None]] = [
    ("jpeg", lambda: image_body(PHOTO), JSON, 200, None),
    ("json with charset", lambda: image_body(PHOTO), "application/json; charset=utf-8", 200, None),
    ("utf-8 byte order mark", lambda: b"\xef\xbb\xbf" + image_body(PHOTO), JSON, 200, None),
    ("utf-16 body", lambda: json.dumps({"image": b64(PHOTO)}).encode("utf-16"), JSON, 400, "invalid_json"),
    ("data uri", lambda: body(image="data:image/jpeg;base64," + b64(PHOTO)), JSON, 200, None),
    ("url-safe base64", lambda: body(image=base64.urlsafe_b64encode(PHOTO).decode()), JSON, 200, None),
    ("mime line breaks", lambda: body(image=base64.encodebytes(PHOTO).decode()), JSON, 200, None),
    ("png rgba", lambda: image_body(encode(solid("RGBA", color=(10, 20, 30, 0)), "PNG")), JSON, 200, None),
    ("png la", lambda: image_body(encode(solid("LA", color=(10, 128)), "PNG")), JSON, 200, None),
    ("png palette", lambda: image_body(encode(solid("P", color=3), "PNG")), JSON, 200, None),
    ("png grey", lambda: image_body(encode(solid("L"), "PNG")), JSON, 200, None),
    ("png 1-bit", lambda: image_body(encode(solid("1", color=1), "PNG")), JSON, 200, None),
    ("png 16-bit", lambda: image_body(sixteen_bit_png()), JSON, 200, None),
    ("cmyk jpeg", lambda: image_body(cmyk_jpeg()), JSON, 200, None),
    ("exif rotated jpeg", lambda: image_body(exif_rotated_jpeg((80, 60), 8)), JSON, 200, None),
    ("animated gif", lambda: image_body(animated_gif()), JSON, 200, None),
    ("webp", lambda: image_body(encode(solid("RGB", color=(1, 2, 3)), "WEBP")), JSON, 200, None),
    ("bmp", lambda: image_body(encode(solid("RGB", color=(1, 2, 3)), "BMP")), JSON, 200, None),
    ("avif", lambda: image_body(encode(solid("RGB", color=(1, 2, 3)), "AVIF")), JSON, 200, None),
    ("heic", lambda: image_body(HEIC_HEAD + bytes(64)), JSON, 400, "invalid_image"),
    ("tiny 1x1 image", lambda: image_body(encode(solid("RGB", (1, 1)), "PNG")), JSON, 200, None),
    ("extreme aspect 4000x2", lambda: image_body(encode(solid("RGB", (4000, 2)), "PNG")), JSON, 200, None),
    ("invalid base64 char", lambda: body(image="abc$def"), JSON, 400, "invalid_base64"),
    ("empty image string", lambda: body(image=""), JSON, 400, "invalid_base64"),
    ("base64 impossible length", lambda: body(image="abcde"), JSON, 400, "invalid_base64"),
    ("random bytes", lambda: image_body(bytes(range(256)) * 8), JSON, 400, "invalid_image"),
    ("text not image", lambda: image_body(b"hello world"), JSON, 400, "invalid_image"),
    ("svg", lambda: image_body(SVG), JSON, 400, "invalid_image"),
    ("truncated jpeg", lambda: image_body(PHOTO[: len(PHOTO) // 2]), JSON, 400, "invalid_image"),
    ("truncated png", lambda: image_body(encode(solid("RGB", (200, 200)), "PNG")[:120]), JSON, 400, "invalid_image"),
    ("1-bit png 40000x40000", lambda: image_body(huge_bilevel_png()), JSON, 413, "image_too_large"),
    ("missing image", lambda: body(conf=0.5), JSON, 400, "invalid_field"),
    ("image is a number", lambda: body(image=123), JSON, 400, "invalid_field"),
    ("image is null", lambda: body(image=None), JSON, 400, "invalid_field"),
    ("unknown field", lambda: image_body(PHOTO, confidence=0.5), JSON, 400, "invalid_field"),
    ("conf above 1", lambda: image_body(PHOTO, conf=1.5), JSON, 400, "invalid_field"),
    ("conf negative", lambda: image_body(PHOTO, conf=-0.1), JSON, 400, "invalid_field"),
    ("conf as string", lambda: image_body(PHOTO, conf="0.5"), JSON, 400, "invalid_field"),
    ("iou above 1", lambda: image_body(PHOTO, iou=2), JSON, 400, "invalid_field"),
    ("max_det zero", lambda: image_body(PHOTO, max_det=0), JSON, 400, "invalid_field"),
    ("max_det float", lambda: image_body(PHOTO, max_det=2.5), JSON, 400, "invalid_field"),
    ("unknown class name", lambda: image_body(PHOTO, classes=["unicorn"]), JSON, 400, "invalid_field"),
    ("class id out of range", lambda: image_body(PHOTO, classes=[80]), JSON, 400, "invalid_field"),
    ("classes not a list", lambda: image_body(PHOTO, classes="person"), JSON, 400, "invalid_field"),
    ("imgsz on a static model", lambda: image_body(PHOTO, imgsz=1280), JSON, 400, "invalid_field"),
    ("body is a list", lambda: b'["image"]', JSON, 400, "invalid_request"),
    ("body is a string", lambda: b'"image"', JSON, 400, "invalid_request"),
    ("malformed json", lambda: b'{"image": ', JSON, 400, "invalid_json"),
    ("empty body", lambda: b"", JSON, 400, "invalid_json"),
    ("deeply nested json", lambda: nested(100_000), JSON, 400, "invalid_json"),
    ("moderately nested json", lambda: nested(50), JSON, 400, "invalid_json"),
    ("nan in json", lambda: b'{"image": "AAAA", "conf": NaN}', JSON, 400, "invalid_json"),
    ("text/plain", lambda: image_body(PHOTO), "text/plain", 415, "unsupported_media_type"),
    ("form encoded", lambda: b"image=abc", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ("no content type", lambda: image_body(PHOTO), None, 415, "unsupported_media_type"),
    ("body over the byte limit", lambda: body(image="A" * (9 * 1024 * 1024)), JSON, 413, "payload_too_large"),
]


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code"),
    [pytest.param(make, ctype, status, code, id=name) for name, make, ctype, status, code in CASES],
)
def test_hostile_input_table(client, raw, content_type, status, code) -> None:  # type: ignore[no-untyped-def]
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/predict", data=raw(), headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json"
    payload = response.get_json()
    if code is None:
        assert isinstance(payload["detections"], list)
    else:
        assert payload["error"]["code"] == code
        assert len(payload["error"]["message"]) > 10
        assert "Traceback" not in payload["error"]["message"]
    # The server keeps serving after every case.
    assert client.post("/predict", data=image_body(PHOTO), headers={"Content-Type": JSON}).status_code == 200


def test_invalid_field_names_the_field(client) -> None:  # type: ignore[no-untyped-def]
    error = client.post("/predict", json={"image": b64(PHOTO), "conf": 3}).get_json()["error"]
    assert error["field"] == "conf"
    assert "3" in error["message"]


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/predict", 405, "method_not_allowed"),
        ("PUT", "/predict", 405, "method_not_allowed"),
        ("GET", "/nope", 404, "not_found"),
        ("POST", "/health", 405, "method_not_allowed"),
    ],
)
def test_routing_errors_are_json(client, method, path, status, code) -> None:  # type: ignore[no-untyped-def]
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code


def test_unexpected_errors_are_generic_500(client, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from specks.core.pipeline import Detector

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(Detector, "predict_bytes", explode)
    response = client.post("/predict", json={"image": b64(PHOTO)})
    assert response.status_code == 500
    error = response.get_json()["error"]
    assert error["code"] == "internal_error"
    assert "secret" not in error["message"]
