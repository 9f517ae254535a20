"""The pod contract with auth: the container the operator builds for a model with
`auth`, run exactly as built, its Secret volume materialised the way the kubelet does it
(the volume's one item written as a file with the volume's mode, at the mount path mapped
to a temp dir). Its own probes, run as the kubelet would (no token: a probe can only send
what the pod spec holds), must pass; `/infer` without a token gets 401 with
`WWW-Authenticate`, with the token 200; a rotated Secret takes effect without a restart.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from modelzoo_operator import builders
from modelzoo_operator.spec import ZooEntryNames
from tests import photos
from tests.integration.test_pod_contract import (
    SETTINGS,
    build,
    launch,
)
from tests.servers import stop

pytestmark = pytest.mark.integration
TOKEN = "e2e-pod-token-1"
ROTATED = "rotated-pod-token-22"


def materialise_secret(spec: dict, secret_data: dict[str, str], root: Path) -> dict[str, str]:
    """Write the pod's secret volume as the kubelet would; return {mountPath: local dir}."""
    (container,) = spec["containers"]
    mapping = {}
    for volume in spec["volumes"]:
        if "secret" not in volume:
            continue
        local = root / volume["name"]
        local.mkdir()
        for item in volume["secret"]["items"]:
            target = local / item["path"]
            target.write_text(secret_data[item["key"]])
            target.chmod(volume["secret"]["defaultMode"])
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["readOnly"] is True
        mapping[mount["mountPath"]] = str(local)
    return mapping


def request(
    url: str, token: str | None = None, data: bytes | None = None
) -> tuple[int, dict, bytes]:
    headers = {"Content-Type": "image/jpeg"} if data else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def probe_passes(probe: dict, port: int) -> bool:
    """One kubelet probe, as the pod spec writes it (no headers beyond the spec's)."""
    assert probe.get("httpGet", {}).get("port", "http") == "http"
    assert "exec" not in probe, "no exec probes"
    if "tcpSocket" in probe:
        assert probe["tcpSocket"] == {"port": "http"}
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=probe["timeoutSeconds"]):
                return True
        except OSError:
            return False
    assert "httpHeaders" not in probe["httpGet"], "a token in a probe would be in the pod spec"
    try:
        status, _, _ = request(f"http://127.0.0.1:{port}{probe['httpGet']['path']}")
    except OSError:
        return False
    return 200 <= status < 400  # the kubelet's success range


@contextmanager
def running(container: dict, mapping: dict[str, str], tmp: Path) -> Iterator[tuple[str, int]]:
    process, port, log = launch(container, mapping, tmp)
    try:
        # The startup probe's budget, then the readiness probe, as the kubelet runs them.
        startup, readiness = container["startupProbe"], container["readinessProbe"]
        deadline = time.monotonic() + startup["periodSeconds"] * startup["failureThreshold"]
        while not probe_passes(startup, port):
            assert process.poll() is None, f"the server exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"startup probe never passed:\n{log.read_text()}"
            time.sleep(0.5)
        assert probe_passes(readiness, port), log.read_text()
        assert probe_passes(container["livenessProbe"], port), log.read_text()
        yield f"http://127.0.0.1:{port}", port
    finally:
        drained = stop(process, grace=SETTINGS.termination_grace_seconds)
    assert drained, f"the server did not stop within the grace period:\n{log.read_text()}"
    output = log.read_text()
    assert TOKEN not in output and ROTATED not in output


def auth_pod(zoo_dir: Path, tmp_path: Path, scope: str) -> tuple[dict, dict[str, str]]:
    auth = {"secretName": "faces-tokens", "key": "api-tokens", "scope": scope}
    spec, _ = build({"name": "faces", "zoo": "mtcnn", "auth": auth}, ZooEntryNames(None, ""))
    secret = {"api-tokens": f"# issued to the e2e client\n{TOKEN}\n", "other": "not mounted"}
    mapping = materialise_secret(spec, secret, tmp_path)
    (container,) = spec["containers"]
    args = container["args"]
    token_file = Path(mapping[builders.AUTH_MOUNT]) / Path(builders.TOKEN_FILE).name
    assert args[args.index("--token-file") + 1] == builders.TOKEN_FILE
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o440
    assert sorted(os.listdir(mapping[builders.AUTH_MOUNT])) == ["tokens"], "only the one key"
    return container, {SETTINGS.model_dir: str(zoo_dir), **mapping}


def test_inference_scope_needs_the_token_and_the_probes_stay_open(zoo_dir: Path, tmp_path: Path):
    container, mapping = auth_pod(zoo_dir, tmp_path, "inference")
    assert "httpGet" in container["readinessProbe"]
    with running(container, mapping, tmp_path) as (url, _):
        status, headers, body = request(f"{url}/infer", data=photos.grace_hopper_jpeg())
        assert status == 401
        assert headers["WWW-Authenticate"].startswith("Bearer")
        assert "missing bearer token" in json.loads(body)["error"]
        status, _, _ = request(f"{url}/infer", token="wrong", data=photos.grace_hopper_jpeg())
        assert status == 401
        status, _, body = request(f"{url}/infer", token=TOKEN, data=photos.grace_hopper_jpeg())
        assert status == 200
        result = json.loads(body)
        assert result["model"] == "faces" and len(result["detections"]) == 1
        assert request(f"{url}/metrics")[0] == 200, "scraping needs no token"

        # The kubelet swaps a rotated Secret in under the mount: no restart needed.
        token_file = Path(mapping[builders.AUTH_MOUNT]) / Path(builders.TOKEN_FILE).name
        token_file.chmod(0o640)
        token_file.write_text(f"{ROTATED}\n")
        token_file.chmod(0o440)
        assert request(f"{url}/infer", token=TOKEN, data=photos.grace_hopper_jpeg())[0] == 401
        assert request(f"{url}/infer", token=ROTATED, data=photos.grace_hopper_jpeg())[0] == 200


def test_all_scope_locks_health_too_so_the_probes_check_the_port(zoo_dir: Path, tmp_path: Path):
    container, mapping = auth_pod(zoo_dir, tmp_path, "all")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["tcpSocket"] == {"port": "http"}
    with running(container, mapping, tmp_path) as (url, _):
        # What an httpGet probe would get: so it could not be one.
        status, headers, _ = request(f"{url}/v2/health/ready")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        assert request(f"{url}/v2/health/ready", token=TOKEN)[0] == 200
        assert request(f"{url}/metrics")[0] == 401
        assert request(f"{url}/infer", data=photos.grace_hopper_jpeg())[0] == 401
        status, _, body = request(f"{url}/infer", token=TOKEN, data=photos.grace_hopper_jpeg())
        assert status == 200 and len(json.loads(body)["detections"]) == 1
        assert request(f"{url}/")[0] == 200, "the upload page stays open"
