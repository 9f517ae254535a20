"""Failing pods turn their model Degraded at once, with the container's last line."""

from __future__ import annotations

import pytest

from modelzoo_operator.builders import LABEL_MODEL
from modelzoo_operator.pod_failures import container_failure, model_pod_failures, pod_failure
from modelzoo_operator.settings import Settings
from modelzoo_operator.spec import parse_zoo
from modelzoo_operator.status import zoo_status
from tests.samples import CATALOG, SAMPLES, zoo_body

pytestmark = pytest.mark.unit
WRONG_SHA = "modelzoo-fetch: sha256 mismatch: expected 00aa…, got 3f1c…"


def pod(name: str, model: str, *, init=(), containers=(), deleting=False) -> dict:
    meta = {"name": name, "labels": {LABEL_MODEL: model}}
    if deleting:
        meta["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    status = {"initContainerStatuses": list(init), "containerStatuses": list(containers)}
    return {"metadata": meta, "status": status}


def terminated(code: int, message: str = "", reason: str = "Error") -> dict:
    return {"exitCode": code, "reason": reason, "message": message}


def container(name: str, *, ready=False, state=None, last=None) -> dict:
    out = {"name": name, "ready": ready, "state": state or {"running": {}}}
    if last:
        out["lastState"] = {"terminated": last}
    return out


def test_an_init_container_that_exits_non_zero_fails_the_pod_with_its_last_line():
    log = f"downloading https://models.example/g.pb\n{WRONG_SHA}\n"
    failed = container("fetch-model", state={"terminated": terminated(1, log)})
    why = pod_failure(pod("p-1", "faces", init=[failed], containers=[container("server")]))
    assert why == f"pod p-1: init container fetch-model Error (exit code 1): {WRONG_SHA}"
    # Retrying after the failure (back-off, or running again) still counts as failing.
    retry = container("fetch-model", state={"waiting": {"reason": "PodInitializing"}})
    retry["lastState"] = {"terminated": terminated(1, log)}
    assert WRONG_SHA in container_failure(retry, init=True)


def test_healthy_or_starting_containers_are_not_failures():
    done = container("fetch-model", state={"terminated": terminated(0)})
    assert container_failure(done, init=True) is None
    assert container_failure(container("fetch-model"), init=True) is None
    starting = container("server", state={"waiting": {"reason": "ContainerCreating"}})
    assert container_failure(starting, init=False) is None
    # A server that crashed once but is ready again is fine.
    recovered = container("server", ready=True, last=terminated(137, reason="OOMKilled"))
    assert container_failure(recovered, init=False) is None


def test_crash_loops_and_stuck_images_are_failures():
    loop = container(
        "server",
        state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
        last=terminated(2, "modelzoo-server: refused graph: op ReadFile is not allowed"),
    )
    assert container_failure(loop, init=False) == (
        "Error (exit code 2): modelzoo-server: refused graph: op ReadFile is not allowed"
    )
    pull = container("server", state={"waiting": {"reason": "ErrImageNeverPull", "message": "x"}})
    assert container_failure(pull, init=False) == "ErrImageNeverPull: x"


def test_one_failure_per_model_and_none_from_pods_being_deleted():
    bad = container("server", state={"terminated": terminated(2, "refused")})
    pods = [
        pod("a-2", "a", containers=[bad]),
        pod("a-1", "a", containers=[bad]),
        pod("b-1", "b", containers=[bad], deleting=True),
        pod("c-1", "c", containers=[container("server", ready=True)]),
    ]
    assert model_pod_failures(pods) == {
        "a": "pod a-1: container server Error (exit code 2): refused"
    }


def test_a_pod_failure_degrades_a_model_until_its_deployment_is_ready():
    zoo = parse_zoo(zoo_body(SAMPLES["zoo-cpu"]), CATALOG)
    rolling = {"metadata": {"generation": 1}, "spec": {"replicas": 1}, "status": {}}
    why = {"classify": "pod p: init container fetch-model Error (exit code 1): sha256 mismatch"}
    status = zoo_status(zoo, {"classify": rolling}, {}, Settings(), None, "t", why)
    (model,) = status["models"]
    assert model["phase"] == "Failed" and model["message"] == why["classify"]
    degraded = {c["type"]: c for c in status["conditions"]}["Degraded"]
    assert degraded["status"] == "True" and "sha256 mismatch" in degraded["message"]
    ready = {
        **rolling,
        "status": {"observedGeneration": 1, "readyReplicas": 1, "updatedReplicas": 1},
    }
    healed = zoo_status(zoo, {"classify": ready}, {}, Settings(), None, "t", why)
    assert healed["models"][0]["phase"] == "Ready"
