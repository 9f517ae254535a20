"""More requests in flight than the limit get 429 with Retry-After, not a queue."""

from __future__ import annotations

import pytest

from tests import photos

pytestmark = pytest.mark.integration


async def test_over_the_inflight_limit_gets_429(mtcnn_client, mtcnn_model, monkeypatch) -> None:
    monkeypatch.setattr(mtcnn_model, "max_inflight", 1)
    with mtcnn_model.admit():  # one request is being handled
        response = await mtcnn_client.post(
            "/infer", data=photos.grace_hopper_jpeg(), headers={"Content-Type": "image/jpeg"}
        )
        assert response.status == 429
        assert response.headers["Retry-After"] == "1"
        assert "in flight" in (await response.json())["error"]
        # Health and metrics stay open while inference is saturated.
        assert (await mtcnn_client.get("/v2/health/live")).status == 200
        assert (await mtcnn_client.get("/metrics")).status == 200
    response = await mtcnn_client.post(
        "/infer", data=photos.grace_hopper_jpeg(), headers={"Content-Type": "image/jpeg"}
    )
    assert response.status == 200
