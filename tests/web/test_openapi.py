"""The OpenAPI document (specks.web.openapi) and the docs served by the app (/openapi.json, /docs)."""

from __future__ import annotations

import base64
import io
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

import specks.web.docs
from specks import __version__
from specks.config import Observability, Security, Settings
from specks.core.pipeline import Detector
from specks.web import create_app
from specks.web.openapi import EXAMPLE_IMAGE_BASE64, build_openapi
from specks.web.schemas import PredictRequest

KEYS = Security(api_keys=("k3y",))
OPERATIONS = {
    ("/predict", "post"),
    ("/health", "get"),
    ("/ready", "get"),
    ("/model", "get"),
    ("/models", "get"),
    ("/metrics", "get"),
    ("/v1/vision/detection", "post"),
    ("/v1/vision/custom/{model}", "post"),
    ("/infer/object_detection", "post"),
    ("/v1/predict/{model_id}", "post"),
}


def operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item}


def deref(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow local $refs (#/components/...) to the object they name."""
    while "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def schema_validator(document: dict[str, Any], name: str) -> Draft202012Validator:
    """A JSON Schema validator for #/components/schemas/<name> with the document's refs resolvable."""
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": document["components"]})


def property_schema(document: dict[str, Any], model: str, field: str) -> dict[str, Any]:
    """A property's schema, with the null alternative of an optional field stripped."""
    schema: dict[str, Any] = document["components"]["schemas"][model]["properties"][field]
    not_null = [s for s in schema.get("anyOf", []) if s != {"type": "null"}]
    return not_null[0] if len(not_null) == 1 else schema


# -- the document --------------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [Settings(), Settings(security=KEYS)], ids=["open", "api-keys"])
def test_document_is_valid_openapi_3_1(settings: Settings) -> None:
    document = build_openapi(settings)
    validate(document)
    assert document["openapi"].startswith("3.1.")


def test_info_names_specks_its_version_and_the_seed_client() -> None:
    info = build_openapi(Settings())["info"]
    assert info["title"] == "Specks"
    assert info["version"] == __version__
    assert 'payload = {"image": base64.b64encode(f.read()).decode("utf-8")}' in info["description"]


def test_document_lists_every_route() -> None:
    assert operations(build_openapi(Settings())) == OPERATIONS


def test_metrics_route_is_documented_only_when_metrics_are_on() -> None:
    document = build_openapi(Settings(observability=Observability(metrics_enabled=False)))
    assert operations(document) == OPERATIONS - {("/metrics", "get")}


def test_metrics_are_plain_text() -> None:
    content = build_openapi(Settings())["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"text/plain", "application/openmetrics-text"}


def test_predict_takes_one_image_a_batch_or_a_url_and_answers_in_kind() -> None:
    document = build_openapi(Settings())
    operation = document["paths"]["/predict"]["post"]
    body = operation["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/json"]["schema"] == {
        "oneOf": [
            {"$ref": "#/components/schemas/PredictRequest"},
            {"$ref": "#/components/schemas/BatchPredictRequest"},
            {"$ref": "#/components/schemas/UrlPredictRequest"},
        ]
    }
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {
        "oneOf": [
            {"$ref": "#/components/schemas/PredictResponse"},
            {"$ref": "#/components/schemas/BatchPredictResponse"},
        ]
    }


def test_a_body_with_both_image_and_images_matches_neither_request_schema() -> None:
    document = build_openapi(Settings())
    both = {"image": EXAMPLE_IMAGE_BASE64, "images": [EXAMPLE_IMAGE_BASE64]}
    assert not schema_validator(document, "PredictRequest").is_valid(both)
    assert not schema_validator(document, "BatchPredictRequest").is_valid(both)
    schema_validator(document, "BatchPredictRequest").validate({"images": [EXAMPLE_IMAGE_BASE64], "visualize": True})


def test_request_schema_requires_only_the_image_and_refuses_unknown_fields() -> None:
    schema = build_openapi(Settings())["components"]["schemas"]["PredictRequest"]
    assert schema["required"] == ["image"]
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(PredictRequest.model_fields)


@pytest.mark.parametrize(
    ("field", "kind", "minimum", "maximum"),
    [
        ("iou", "number", 0, 1),
        ("max_det", "integer", 1, 10_000),
        ("imgsz", "integer", 32, 4096),
        ("tile", "integer", 64, 4096),
        ("tile_scale", "number", 0.25, 4),
        ("overlap", "number", 0, 0.75),
        ("merge_threshold", "number", 0, 1),
    ],
)
def test_request_schema_carries_the_bounds(field: str, kind: str, minimum: float, maximum: float) -> None:
    schema = property_schema(build_openapi(Settings()), "PredictRequest", field)
    assert (schema["type"], schema["minimum"], schema["maximum"]) == (kind, minimum, maximum)


def test_conf_is_a_number_or_an_object_of_per_class_numbers_each_0_to_1() -> None:
    schema = property_schema(build_openapi(Settings()), "PredictRequest", "conf")
    number, per_class, omitted = schema["anyOf"]
    assert (number["type"], number["minimum"], number["maximum"]) == ("number", 0, 1)
    value = per_class["additionalProperties"]
    assert (per_class["type"], value["minimum"], value["maximum"]) == ("object", 0, 1)
    assert omitted == {"type": "null"} and schema.get("default") is None  # the model profile's, else 0.25
    assert "else 0.25" in schema["description"]


@pytest.mark.parametrize(
    ("field", "choices"),
    [("merge", ["nms", "nmm", "wbf"]), ("merge_metric", ["iou", "ios"])],
)
def test_request_schema_lists_the_choices(field: str, choices: list[str]) -> None:
    document = build_openapi(Settings())
    schema = property_schema(document, "PredictRequest", field)
    if "$ref" in schema:  # an enum is a component of its own
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert schema["enum"] == choices


def test_request_example_is_a_valid_request() -> None:
    document = build_openapi(Settings())
    example = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert example["image"] == EXAMPLE_IMAGE_BASE64
    schema_validator(document, "PredictRequest").validate(example)
    PredictRequest.model_validate(example)


def test_error_schema_is_the_envelope() -> None:
    document = build_openapi(Settings())
    envelope = schema_validator(document, "ErrorResponse")
    envelope.validate({"error": {"code": "invalid_field", "message": "'conf' should be ...", "field": "conf"}})
    envelope.validate({"error": {"code": "internal_error", "message": "internal server error"}})
    assert not envelope.is_valid({"error": {"code": "invalid_field"}})
    assert not envelope.is_valid({"detail": "not found"})


@pytest.mark.parametrize(
    ("path", "method", "statuses"),
    [
        ("/predict", "post", {"200", "400", "403", "404", "413", "415", "500", "503"}),
        ("/health", "get", {"200"}),
        ("/ready", "get", {"200", "503"}),
        ("/model", "get", {"200", "404", "500", "503"}),
        ("/models", "get", {"200", "500", "503"}),
    ],
)
def test_errors_are_documented_with_the_envelope(path: str, method: str, statuses: set[str]) -> None:
    document = build_openapi(Settings())
    responses = document["paths"][path][method]["responses"]
    assert set(responses) == statuses
    for status in statuses - {"200"}:
        response = deref(document, responses[status])
        assert response["description"]
        assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}


def test_no_security_without_api_keys() -> None:
    document = build_openapi(Settings())
    assert "security" not in document
    assert "securitySchemes" not in document["components"]
    assert "Unauthorized" not in document["components"]["responses"]
    assert all("401" not in item[m]["responses"] for item in document["paths"].values() for m in item)


def test_security_schemes_with_api_keys() -> None:
    document = build_openapi(Settings(security=KEYS))
    assert document["components"]["securitySchemes"] == {
        "ApiKey": {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "One of the server's API keys.",
        },
        "Bearer": {"type": "http", "scheme": "bearer", "description": "One of the server's API keys."},
    }
    assert document["security"] == [{"ApiKey": []}, {"Bearer": []}]


@pytest.mark.parametrize("open_paths", [Security.open_paths, ("/docs",), ("/predict", "/model/")])
def test_open_paths_need_no_key_as_auth_decides(open_paths: tuple[str, ...]) -> None:
    document = build_openapi(Settings(security=Security(api_keys=("k3y",), open_paths=open_paths)))
    for path, item in document["paths"].items():
        operation = next(iter(item.values()))
        if Security(open_paths=open_paths).is_open(path):
            assert operation["security"] == [], path
            assert "401" not in operation["responses"], path
        else:
            assert "security" not in operation, path  # the document-wide requirement applies
            assert deref(document, operation["responses"]["401"])["content"]["application/json"]


# -- served by the app ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_app(yolov5n_detector: Detector) -> Flask:
    return create_app(Settings(security=KEYS), detector=yolov5n_detector)


def test_app_serves_the_document(client: FlaskClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == build_openapi(Settings())


def test_app_builds_the_document_once(yolov5n_detector: Detector, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Settings] = []

    def counting_build(settings: Settings) -> dict[str, Any]:
        calls.append(settings)
        return build_openapi(settings)

    monkeypatch.setattr(specks.web.docs, "build_openapi", counting_build)
    client = create_app(Settings(), detector=yolov5n_detector).test_client()
    bodies = {client.get("/openapi.json").data for _ in range(3)}
    assert len(bodies) == 1
    assert len(calls) == 1


def test_app_documents_only_routes_it_serves(yolov5n_detector: Detector) -> None:
    app = create_app(Settings(observability=Observability(metrics_enabled=False)), detector=yolov5n_detector)
    assert operations(app.test_client().get("/openapi.json").get_json()) == OPERATIONS - {("/metrics", "get")}


def test_keyed_app_serves_docs_without_a_key_and_documents_its_security(keyed_app: Flask) -> None:
    client = keyed_app.test_client()
    document = client.get("/openapi.json").get_json()
    assert document["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert client.get("/docs").status_code == 200
    assert client.get("/docs/swagger-ui.css").status_code == 200
    assert client.get("/model").status_code == 401


def test_the_request_example_is_answered(client: FlaskClient) -> None:
    response = client.post("/predict", json={"image": EXAMPLE_IMAGE_BASE64})
    assert response.status_code == 200
    assert response.get_json()["image"] == {"width": 32, "height": 32}


@pytest.mark.parametrize(
    ("path", "name"),
    [("/health", "HealthResponse"), ("/ready", "ReadyResponse"), ("/model", "ModelDetails"), ("/models", "ModelList")],
)
def test_get_answers_match_their_schemas(client: FlaskClient, path: str, name: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    schema_validator(build_openapi(Settings()), name).validate(response.get_json())


def test_predict_answer_and_errors_match_their_schemas(client: FlaskClient) -> None:
    document = build_openapi(Settings())
    ok = client.post("/predict", json={"image": EXAMPLE_IMAGE_BASE64, "conf": 0.01, "visualize": True})
    schema_validator(document, "PredictResponse").validate(ok.get_json())
    batch = client.post("/predict", json={"images": [EXAMPLE_IMAGE_BASE64, "%%%"]})
    schema_validator(document, "BatchPredictResponse").validate(batch.get_json())
    assert not schema_validator(document, "PredictResponse").is_valid(batch.get_json())
    for bad in ({"image": "%%%"}, {"image": EXAMPLE_IMAGE_BASE64, "conf": 2}, {"nope": 1}):
        response = client.post("/predict", json=bad)
        assert response.status_code == 400
        schema_validator(document, "ErrorResponse").validate(response.get_json())


def test_compatible_answers_and_errors_match_their_schemas(client: FlaskClient) -> None:
    document = build_openapi(Settings())
    jpeg = base64.b64decode(EXAMPLE_IMAGE_BASE64)
    ok = client.post("/v1/vision/detection", data={"image": (io.BytesIO(jpeg), "a.png"), "min_confidence": "0.01"})
    assert ok.status_code == 200
    schema_validator(document, "DeepStackResponse").validate(ok.get_json())
    bad = client.post("/v1/vision/detection", data={"image": (io.BytesIO(b"text"), "a.txt")})
    assert bad.status_code == 400
    schema_validator(document, "DeepStackError").validate(bad.get_json())

    image = {"type": "base64", "value": EXAMPLE_IMAGE_BASE64}
    one = client.post("/infer/object_detection", json={"model_id": "coco/3", "image": image, "confidence": 0.01})
    assert one.status_code == 200
    schema_validator(document, "RoboflowResponse").validate(one.get_json())
    refused = client.post("/infer/object_detection", json={"model_id": "coco/3", "image": {"type": "url"}})
    assert refused.status_code == 400
    schema_validator(document, "RoboflowError").validate(refused.get_json())
    schema_validator(document, "ObjectDetectionRequest").validate({"image": image, "class_agnostic_nms": True})

    hub = client.post("/v1/predict/abc123", data={"file": (io.BytesIO(jpeg), "a.png"), "conf": "0.01"})
    assert hub.status_code == 200
    schema_validator(document, "HubResponse").validate(hub.get_json())
    hub_bad = client.post("/v1/predict/abc123", data={"file": (io.BytesIO(jpeg), "a.png"), "conf": "2"})
    assert hub_bad.status_code == 400
    schema_validator(document, "HubError").validate(hub_bad.get_json())


def test_compatible_routes_keep_their_own_error_bodies_with_api_keys() -> None:
    document = build_openapi(Settings(security=KEYS))
    unauthorized = document["paths"]["/v1/vision/detection"]["post"]["responses"]["401"]
    assert unauthorized["content"]["application/json"]["schema"]["$ref"].endswith("/DeepStackError")
    assert document["paths"]["/predict"]["post"]["responses"]["401"]["$ref"].endswith("/Unauthorized")


# -- Swagger UI ----------------------------------------------------------------------------------

ASSET_TYPES = {
    ".css": "text/css",
    ".js": "text/javascript",
    ".png": "image/png",
}


def page_urls(page: str) -> list[str]:
    return re.findall(r'(?:href|src|data-openapi-url)="([^"]*)"', page)


def test_docs_page_loads_nothing_from_outside(client: FlaskClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "http://" not in page
    assert "https://" not in page
    assert "//" not in "".join(page_urls(page))
    assert "<script>" not in page  # no inline script: a CSP of script-src 'self' allows the page


def test_docs_page_references_swagger_ui_and_the_document(client: FlaskClient) -> None:
    urls = page_urls(client.get("/docs").get_data(as_text=True))
    assert {"/docs/swagger-ui.css", "/docs/swagger-ui-bundle.js", "/openapi.json"} <= set(urls)


def test_every_asset_of_the_docs_page_is_served(client: FlaskClient) -> None:
    urls = page_urls(client.get("/docs").get_data(as_text=True))
    assets = [url for url in urls if url != "/openapi.json"]
    assert len(assets) >= 4
    for url in assets:
        response = client.get(url)
        assert response.status_code == 200, url
        suffix = url[url.rindex(".") :]
        assert response.mimetype == ASSET_TYPES[suffix], url
        assert len(response.data) > 0, url
        response.close()


def test_swagger_ui_is_configured_offline(client: FlaskClient) -> None:
    script = client.get("/docs/specks-docs.js").get_data(as_text=True)
    assert "validatorUrl: null" in script  # else Swagger UI calls validator.swagger.io
    assert "dataset.openapiUrl" in script


def test_swagger_ui_bundle_is_the_real_thing(client: FlaskClient) -> None:
    response = client.get("/docs/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in response.data
    assert response.headers["Cache-Control"] == "public, max-age=3600"
    response.close()


@pytest.mark.parametrize(
    "path",
    ["/docs/index.j2", "/docs/swagger-initializer.js", "/docs/..%2F__init__.py", "/docs/../openapi.py", "/docs/"],
)
def test_docs_serve_only_the_listed_assets(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
