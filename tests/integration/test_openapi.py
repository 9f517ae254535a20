"""The OpenAPI document covers every route, and the running server survives fuzzing from it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings

from modelzoo_server.app import create_app

pytestmark = pytest.mark.integration

# Per operation; `make soak` raises it.
FUZZ_EXAMPLES = int(os.environ.get("MODELZOO_FUZZ_EXAMPLES", "30"))


def _template(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


async def test_every_registered_route_is_documented(aiohttp_client, mtcnn_settings, mtcnn_model):
    app = create_app(mtcnn_settings, mtcnn_model)
    client = await aiohttp_client(app)
    document = await (await client.get("/openapi.json")).json()
    documented = {
        (_template(path), method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "put", "delete", "patch"}
    }
    registered = {
        (_template(route.resource.canonical), route.method)
        for route in app.router.routes()
        if route.method != "HEAD"
    }
    assert registered - documented == set()
    assert documented - registered == set()


DOCUMENT = (
    Path(__file__).resolve().parents[2] / "server" / "modelzoo_server" / "static" / "openapi.yaml"
)
SCHEMA = schemathesis.openapi.from_dict(yaml.safe_load(DOCUMENT.read_text()))
OPERATIONS = {result.ok().label: result.ok() for result in SCHEMA.get_all_operations()}
FUZZED: dict[str, int] = {}
# Negative cases need something a schema can forbid: the request bodies (a path
# parameter typed "any string" has no invalid value).
CASES = [(label, schemathesis.GenerationMode.POSITIVE) for label in sorted(OPERATIONS)] + [
    (label, schemathesis.GenerationMode.NEGATIVE)
    for label, operation in sorted(OPERATIONS.items())
    if len(operation.body)
]


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{m.value}-{op}" for op, m in CASES])
def test_fuzzed_requests_get_no_5xx_and_json_errors(mtcnn_server, label: str, mode) -> None:
    """Positive (valid by the schema) and negative (invalid) requests from the document."""

    @given(case=OPERATIONS[label].as_strategy(generation_mode=mode))
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def fuzz(case) -> None:
        FUZZED[label] = FUZZED.get(label, 0) + 1
        response = case.call(base_url=mtcnn_server.url, timeout=60)
        headers = {name.lower(): values[0] for name, values in response.headers.items()}
        # 503 only as "not ready / draining" with Retry-After, never a crash.
        assert response.status_code < 500 or (
            response.status_code == 503 and "retry-after" in headers
        ), (response.status_code, response.text[:500])
        if response.status_code >= 400 and case.path != "/v2/health/ready":
            assert headers.get("content-type", "").startswith("application/json"), (
                case.method,
                case.path,
                response.status_code,
                response.text[:300],
            )
            body = json.loads(response.text)
            assert set(body) == {"error"} and body["error"]

    fuzz()


def test_the_server_still_serves_after_fuzzing(mtcnn_server) -> None:
    from tests import photos

    response = requests.post(
        f"{mtcnn_server.url}/infer",
        files={"image_file": ("g.jpg", photos.grace_hopper_jpeg(), "image/jpeg")},
        timeout=60,
    )
    assert response.status_code == 200
    assert len(response.json()["detections"]) == 1
    print(f"fuzzed {sum(FUZZED.values())} requests over {len(FUZZED)} operations: no 5xx")
