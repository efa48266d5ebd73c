"""Schemathesis against the live gunicorn server, driven by the server's OpenAPI document.

Every operation gets its documented examples, boundary values (the coverage phase) and up to
MAX_EXAMPLES generated requests, valid and invalid; each answer must not be a 5xx, must have a
documented status code and content type, must match its documented schema; an invalid request
must be refused, and an undocumented method answered 405.

The schema is loaded at collection time from ``build_openapi`` (per-operation test items need it
then, before the live server exists), and ``test_live_server_serves_the_tested_document`` checks
that the live server's /openapi.json is that very document. Schemathesis' lazy
``schemathesis.pytest.from_fixture`` would fetch it from the server, but it breaks on pytest 9.2
(it sets ``Function._nodeid``, which pytest 9.2 removed).
"""

from __future__ import annotations

import pytest
import requests
import schemathesis

from conftest import LiveServer
from specks.config import Settings
from specks.web.openapi import build_openapi

MAX_EXAMPLES = 40
SEED = 20240611
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "unsupported_method",
    "response_headers_conformance",
)
# What `fuzzed_server` runs with: default settings, metrics on, no API keys.
DOCUMENT = build_openapi(Settings())

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "request-timeout": 30,
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    }
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


@pytest.fixture(scope="module")
def fuzzed_server(live_server: LiveServer) -> LiveServer:
    """The session's live gunicorn server (its output goes to a file, so hundreds of
    access-log lines cannot stall it)."""
    return live_server


@pytest.mark.slow
def test_live_server_serves_the_tested_document(fuzzed_server: LiveServer) -> None:
    assert requests.get(fuzzed_server.url + "/openapi.json", timeout=10).json() == DOCUMENT


@pytest.mark.slow
@schema.parametrize()
def test_live_server_conforms_to_its_openapi_document(case: schemathesis.Case, fuzzed_server: LiveServer) -> None:
    case.call_and_validate(base_url=fuzzed_server.url)
