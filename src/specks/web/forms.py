"""Reading a ``multipart/form-data`` (or url-encoded) upload, for the APIs whose clients post files.

The DeepStack / CodeProject.AI and Ultralytics HUB adapters both take the picture as a file part;
the body is read through the service's size limit, then parsed with a cap on its parts.
"""

from __future__ import annotations

import io
from typing import Any

from flask import request
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header

from ..errors import InvalidRequestError, UnsupportedMediaTypeError, clipped
from ..service.service import DetectionService
from .http import body_reader

# A client of these APIs sends an image and a few fields; many more parts is not one of them.
MAX_FORM_PARTS = 32
FORM_MEDIA_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def read_form(service: DetectionService, *, file_part: str) -> MultiDict[str, Any]:
    """The request's files and form fields, files first (the body read through the service's size limit).

    file_part: the part the picture is expected in, named when the body is not a form.
    """
    raw = service.read_body(body_reader(request), request.content_length)
    return form_from_body(raw, request.content_type, file_part=file_part)


def form_from_body(raw: bytes, content_type: str | None, *, file_part: str) -> MultiDict[str, Any]:
    """A body already read -> its files and form fields, files first (see ``read_form``)."""
    form, files = parse_form(raw, content_type, file_part=file_part)
    merged: MultiDict[str, Any] = MultiDict(files)
    merged.update(form)  # a text field named like the file part (a URL, say) never hides the file
    return merged


def parse_form(
    raw: bytes, content_type: str | None, *, file_part: str
) -> tuple[MultiDict[str, str], MultiDict[str, FileStorage]]:
    """A form body -> its text fields and files (an empty body is an empty form)."""
    if not raw:
        return MultiDict(), MultiDict()
    mimetype, options = parse_options_header(content_type or "")
    if mimetype not in FORM_MEDIA_TYPES:
        raise UnsupportedMediaTypeError(
            f"send the picture as multipart/form-data with the file part '{file_part}' "
            f"(got Content-Type: {clipped(content_type or 'none')})"
        )
    parser = FormDataParser(silent=False, max_form_parts=MAX_FORM_PARTS)
    try:
        _, form, files = parser.parse(io.BytesIO(raw), mimetype, len(raw), options)
    except RequestEntityTooLarge as exc:
        raise InvalidRequestError(f"the form has more than {MAX_FORM_PARTS} parts") from exc
    except ValueError as exc:  # Werkzeug's reasons name its parser's states: say what to send instead
        raise InvalidRequestError(malformed_form_message(mimetype, options, file_part)) from exc
    return form, files


def uploaded_file(form: MultiDict[str, Any], parts: tuple[str, ...]) -> bytes | None:
    """The bytes of the first of ``parts`` that is a file part (None: none is)."""
    for part in parts:
        file = form.get(part)
        if isinstance(file, FileStorage):
            return file.read()
    return None


def malformed_form_message(mimetype: str, options: dict[str, str], file_part: str) -> str:
    """Why a form body cannot be read, in the client's terms (Werkzeug's own reasons name parser states)."""
    if mimetype == "multipart/form-data" and not options.get("boundary"):
        problem = "its Content-Type has no boundary parameter"
    else:
        problem = "its parts are malformed or cut short"
    return (
        f"the {mimetype} body cannot be read: {problem}; let the HTTP client build the form, e.g. "
        f"requests.post(url, files={{'{file_part}': image_bytes}})"
    )
