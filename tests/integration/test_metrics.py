"""GET /metrics parses as Prometheus text and moves after requests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from modelzoo_server.__main__ import build_model
from modelzoo_server.metrics import Metrics
from modelzoo_server.settings import Settings
from tests import photos

pytestmark = pytest.mark.integration


async def _samples(client) -> dict[tuple[str, tuple], float]:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _labels(**labels: str) -> tuple[tuple[str, str], ...]:
    """A REST request's labels on mtcnn, sorted as _samples keys them."""
    return tuple(sorted({"model": "mtcnn", "protocol": "rest", **labels}.items()))


async def test_an_image_that_does_not_decode_is_no_graph_call(mtcnn_client) -> None:
    # /infer decodes and runs the graph in one executor job: the graph call's metrics
    # must still count only the requests that reached the graph.
    before = await _samples(mtcnn_client)
    response = await mtcnn_client.post("/infer", data=b"not an image")
    assert response.status == 415, await response.text()
    after = await _samples(mtcnn_client)
    for histogram in ("batch_size", "queue_duration_seconds", "inference_duration_seconds"):
        key = (f"modelzoo_{histogram}_count", (("model", "mtcnn"),))
        assert after.get(key, 0) == before.get(key, 0), histogram
    failed = ("modelzoo_requests_total", _labels(code="415", endpoint="/infer"))
    assert after[failed] == before.get(failed, 0) + 1


async def test_metrics_move_after_a_request(mtcnn_client, mtcnn_settings) -> None:
    before = await _samples(mtcnn_client)
    form = aiohttp.FormData()
    form.add_field("image_file", photos.grace_hopper_jpeg(), filename="g.jpg")
    assert (await mtcnn_client.post("/infer", data=form)).status == 200
    after = await _samples(mtcnn_client)

    ok = ("modelzoo_requests_total", _labels(code="200", endpoint="/infer"))
    assert after[ok] == before.get(ok, 0) + 1
    for histogram in ("inference", "queue"):
        key = (f"modelzoo_{histogram}_duration_seconds_count", (("model", "mtcnn"),))
        assert after[key] > before.get(key, 0)
    assert after[("modelzoo_inflight_requests", (("model", "mtcnn"),))] == 0
    limit = ("modelzoo_max_inflight_requests", (("model", "mtcnn"),))
    assert after[limit] == mtcnn_settings.max_inflight  # what saturation is measured against
    assert after[("modelzoo_model_load_seconds", (("model", "mtcnn"),))] > 0
    info = [k for k in after if k[0] == "modelzoo_model_info"]
    assert info and dict(info[0][1])["task"] == "face-detection"
    assert len(dict(info[0][1])["sha256"]) == 64
    assert dict(info[0][1])["runtime"] == "litert"  # mtcnn's three networks, verified
    buckets = {
        dict(k[1])["le"] for k in after if k[0] == "modelzoo_request_duration_seconds_bucket"
    }
    assert {"0.0001", "0.001", "10.0"} <= buckets  # below a millisecond, for LiteRT


def test_a_model_no_request_reached_exports_zero_in_flight(
    mtcnn_settings: Settings, executor: ThreadPoolExecutor
) -> None:
    """An autoscaler reading a new pod's gauge finds it idle, not missing (an HPA cannot
    act on a missing metric)."""
    registry = CollectorRegistry()
    build_model(mtcnn_settings, Metrics(registry), executor)
    assert registry.get_sample_value("modelzoo_inflight_requests", {"model": "mtcnn"}) == 0


async def test_errors_are_counted_by_code(mtcnn_client) -> None:
    before = await _samples(mtcnn_client)
    await mtcnn_client.post("/infer", data=b"nope", headers={"Content-Type": "image/jpeg"})
    after = await _samples(mtcnn_client)
    key = ("modelzoo_requests_total", _labels(code="415", endpoint="/infer"))
    assert after[key] == before.get(key, 0) + 1
