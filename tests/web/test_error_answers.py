"""The one mapping of the exception tree to HTTP (``web.errors``): statuses, safe messages, log levels."""

from __future__ import annotations

import logging

import orjson
import pytest

from specks import errors
from specks.web.errors import INTERNAL_ERROR_MESSAGE, encode_error, status_for


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (errors.InvalidBase64Error("bad char '!' at 3", field="image"), 400, "invalid_base64"),
        (errors.ImageTooLargeError("too many pixels"), 413, "image_too_large"),
        (errors.UnsupportedMediaTypeError("not json"), 415, "unsupported_media_type"),
        (errors.AuthenticationError("no key"), 401, "unauthorized"),
        (errors.NotFoundError("no model 'x'"), 404, "not_found"),
        (errors.ModelNotReadyError("loading"), 503, "model_not_ready"),
    ],
)
def test_expected_refusals_keep_their_message_and_log_no_traceback(
    exc: errors.SpecksError, status: int, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="specks")
    answer = encode_error(exc)
    assert (answer.status, answer.code, answer.message) == (status, code, exc.message)
    assert answer.envelope()["error"]["message"] == exc.message
    records = [r for r in caplog.records if r.name == "specks.web.errors"]
    assert len(records) == 1
    assert records[0].exc_info is None
    assert records[0].levelno == (logging.WARNING if status == 503 else logging.INFO)


@pytest.mark.parametrize(
    "exc",
    [
        errors.InferenceError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : /srv/models/secret.onnx Got invalid dims"),
        errors.ModelLoadError("cannot read /srv/models/secret.onnx"),
        RuntimeError("secret internal detail /srv"),
    ],
)
def test_5xx_answers_leak_nothing_and_are_logged_with_the_traceback(
    exc: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        raise exc
    except Exception as raised:
        answer = encode_error(raised)
    assert answer.status == 500
    assert answer.message == INTERNAL_ERROR_MESSAGE
    assert "/srv" not in orjson.dumps(answer.envelope()).decode()
    (record,) = [r for r in caplog.records if r.name == "specks.web.errors"]
    assert record.levelno == logging.ERROR and record.exc_info is not None


def test_a_subclass_takes_its_parent_s_status() -> None:
    assert status_for(errors.ImageUrlForbiddenError("no")) == 403
    assert status_for(errors.TooManyTilesError("many")) == 413
    assert status_for(errors.DeadlineExceededError("late")) == 503
