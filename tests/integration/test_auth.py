"""Bearer tokens from a file: inference needs one, probes and scraping stay open."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from modelzoo_server.app import create_app
from modelzoo_server.auth import TokenFile
from tests import photos

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-token-value"


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"# tokens for the test\n\n{SECRET}\nanother-token\n")
    return path


async def _client(aiohttp_client, settings, model, token_file: Path, scope: str):
    settings = dataclasses.replace(settings, token_file=token_file, auth_scope=scope)
    return await aiohttp_client(create_app(settings, model, TokenFile(token_file)))


async def _infer(client, token: str | None):
    headers = {"Content-Type": "image/jpeg"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await client.post("/infer", data=photos.grace_hopper_jpeg(), headers=headers)


async def test_inference_needs_a_valid_token(
    aiohttp_client, mtcnn_settings, mtcnn_model, token_file, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    client = await _client(aiohttp_client, mtcnn_settings, mtcnn_model, token_file, "inference")
    for token, reason in ((None, "missing bearer token"), ("wrong", "invalid bearer token")):
        response = await _infer(client, token)
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert reason in (await response.json())["error"]
    v2 = await client.post("/v2/models/mtcnn/infer", data=b"{}")
    assert v2.status == 401
    assert (await _infer(client, SECRET)).status == 200
    assert (await _infer(client, "another-token")).status == 200
    # Probes, scraping, metadata and the page stay open.
    for path in ("/v2/health/ready", "/v2/health/live", "/metrics", "/v2/models/mtcnn", "/"):
        assert (await client.get(path)).status == 200, path
    metrics = await (await client.get("/metrics")).text()
    assert 'code="401"' in metrics
    assert SECRET not in metrics
    assert SECRET not in caplog.text


async def test_scope_all_protects_probes_and_metrics_too(
    aiohttp_client, mtcnn_settings, mtcnn_model, token_file
) -> None:
    client = await _client(aiohttp_client, mtcnn_settings, mtcnn_model, token_file, "all")
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/v2/health/ready")).status == 401
    authorized = {"Authorization": f"Bearer {SECRET}"}
    assert (await client.get("/metrics", headers=authorized)).status == 200
    assert (await client.get("/")).status == 200


async def test_rotated_token_file_takes_effect(
    aiohttp_client, mtcnn_settings, mtcnn_model, token_file
) -> None:
    client = await _client(aiohttp_client, mtcnn_settings, mtcnn_model, token_file, "inference")
    token_file.write_text("rotated-token\n")
    assert (await _infer(client, SECRET)).status == 401
    assert (await _infer(client, "rotated-token")).status == 200


def test_an_empty_token_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "tokens"
    empty.write_text("# nothing here\n")
    with pytest.raises(ValueError, match="holds no token"):
        TokenFile(empty)
