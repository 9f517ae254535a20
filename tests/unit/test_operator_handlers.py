"""The reconciler's logic against an in-memory API (no cluster): apply, prune, status,
events, coalescing, peering, and the kopf registration. The real API server is exercised
by tests/e2e."""

from __future__ import annotations

import asyncio
import copy
import datetime

import pytest

from modelzoo_operator import handlers
from modelzoo_operator.kube import ApiError
from modelzoo_operator.peering import is_active_peer
from modelzoo_operator.reconciler import Reconciler
from modelzoo_operator.settings import Settings
from tests.samples import CATALOG, SAMPLES, zoo_body

pytestmark = pytest.mark.unit


class FakeKube:
    """Objects by (kind, namespace, name); apply replaces, like a fresh server-side apply."""

    def __init__(self):
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.events: list[dict] = []
        self.refuse: dict[str, ApiError] = {}
        self.serial = 0

    def put(self, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace", ""), meta["name"])
        old = self.objects.get(key)
        self.serial += 1
        meta.setdefault("uid", old["metadata"]["uid"] if old else f"uid-{self.serial}")
        if old:  # what the server keeps across an apply
            obj.setdefault("status", old.get("status"))
            if "generation" in old["metadata"]:
                meta.setdefault("generation", old["metadata"]["generation"])
        if obj.get("status") is None:
            obj.pop("status", None)
        self.objects[key] = obj
        return obj

    def get(self, api_version, kind, namespace, name):
        self.calls.append(("get", kind, name))
        found = self.objects.get((kind, namespace, name))
        return copy.deepcopy(found) if found else None

    def list(self, api_version, kind, namespace="", label_selector=""):
        key, _, value = label_selector.partition("=")
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in sorted(self.objects.items())
            if k == kind
            and (not namespace or ns == namespace)
            and (not key or (o["metadata"].get("labels") or {}).get(key) == value)
        ]

    def apply(self, manifest):
        self.calls.append(("apply", manifest["kind"], manifest["metadata"]["name"]))
        if manifest["kind"] in self.refuse:
            raise self.refuse[manifest["kind"]]
        return self.put(manifest)

    def delete(self, api_version, kind, namespace, name, uid=""):
        self.calls.append(("delete", kind, name))
        return self.objects.pop((kind, namespace, name), None) is not None

    def patch_status(self, api_version, kind, namespace, name, status):
        self.calls.append(("status", kind, name))
        obj = self.objects[(kind, namespace, name)]
        obj["status"] = {**obj.get("status", {}), **copy.deepcopy(status)}
        return obj

    def create(self, manifest):
        self.events.append(manifest)
        return manifest

    # helpers for the tests
    def zoo(self) -> dict:
        return self.objects[("ModelZoo", "ml", "demo")]

    def kinds(self) -> list[tuple[str, str]]:
        return sorted(
            (k, n) for (k, _, n) in self.objects if k not in ("ModelZoo", "PersistentVolumeClaim")
        )

    def conditions(self) -> dict[str, dict]:
        return {c["type"]: c for c in self.zoo()["status"]["conditions"]}


def setup(*models, settings: Settings | None = None) -> tuple[FakeKube, Reconciler]:
    kube = FakeKube()
    body = zoo_body(*models)
    body["metadata"]["uid"] = "uid-1234"
    kube.put(body)
    return kube, Reconciler(settings or Settings(), kube, CATALOG)


def set_spec(kube: FakeKube, *models) -> None:
    zoo = kube.zoo()
    zoo["spec"]["models"] = [copy.deepcopy(m) for m in models]
    zoo["metadata"]["generation"] += 1


def make_ready(kube: FakeKube) -> None:
    for (kind, _, _), obj in kube.objects.items():
        if kind == "Deployment":
            replicas = obj["spec"].get("replicas", 1)
            obj["metadata"]["generation"] = 1
            obj["status"] = {"observedGeneration": 1, "readyReplicas": replicas,
                             "updatedReplicas": replicas}  # fmt: skip


async def test_create_then_ready_then_a_rerun_changes_nothing():
    kube, reconciler = setup(SAMPLES["zoo-gpu"], SAMPLES["zoo-cpu"])
    await reconciler.request("ml", "demo")
    assert kube.kinds() == [
        ("Deployment", "demo-classify"), ("Deployment", "demo-faces"),
        ("PodDisruptionBudget", "demo-classify"),
        ("Service", "demo-classify"), ("Service", "demo-faces"),
    ]  # fmt: skip
    assert kube.conditions()["Ready"]["status"] == "False"
    assert kube.zoo()["status"]["ready"] == "0/2"
    make_ready(kube)
    await reconciler.request("ml", "demo", full=False)
    assert kube.conditions()["Ready"]["status"] == "True"
    assert [e["reason"] for e in kube.events] == ["Ready"]
    before = copy.deepcopy(kube.objects)
    kube.calls.clear()
    await reconciler.request("ml", "demo")
    assert kube.objects == before
    assert not [c for c in kube.calls if c[0] in ("status", "delete")]
    assert [e["reason"] for e in kube.events] == ["Ready"], "no new event"


async def test_a_removed_model_loses_its_objects_and_extras_follow_the_spec():
    kube, reconciler = setup(SAMPLES["zoo-gpu"], SAMPLES["zoo-cpu"])
    await reconciler.request("ml", "demo")
    one_replica = {**SAMPLES["zoo-cpu"], "replicas": 1}
    set_spec(kube, one_replica)
    await reconciler.request("ml", "demo")
    assert kube.kinds() == [("Deployment", "demo-classify"), ("Service", "demo-classify")]
    assert [m["name"] for m in kube.zoo()["status"]["models"]] == ["classify"]


async def test_objects_of_other_owners_are_never_pruned():
    kube, reconciler = setup(SAMPLES["zoo-cpu"])
    stranger = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "demo-old", "namespace": "ml",
                     "labels": {"modelzoo.dev/zoo": "demo", "modelzoo.dev/model": "old"},
                     "ownerReferences": [{"uid": "someone-else"}]},
    }  # fmt: skip
    kube.put(stranger)
    await reconciler.request("ml", "demo")
    assert ("Service", "demo-old") in kube.kinds()


async def test_an_unworkable_model_degrades_once_and_the_others_are_served():
    kube, reconciler = setup(SAMPLES["zoo-cpu"], {"name": "x", "zoo": "resnet"})
    await reconciler.request("ml", "demo")
    assert ("Deployment", "demo-classify") in kube.kinds()
    assert not [k for k in kube.kinds() if k[1] == "demo-x"]
    degraded = kube.conditions()["Degraded"]
    assert degraded["status"] == "True" and "unknown zoo entry 'resnet'" in degraded["message"]
    warnings = [e for e in kube.events if e["type"] == "Warning"]
    assert len(warnings) == 1
    assert warnings[0]["involvedObject"]["kind"] == "ModelZoo"
    assert warnings[0]["reason"] == "Degraded"
    for _ in range(3):  # the drift sweep, again and again
        await reconciler.request("ml", "demo")
    assert len([e for e in kube.events if e["type"] == "Warning"]) == 1, "no event storm"


async def test_a_missing_pvc_degrades_until_it_appears():
    kube, reconciler = setup(SAMPLES["pvc-placement"])
    await reconciler.request("ml", "demo")
    assert "PersistentVolumeClaim 'graphs' not found" in kube.conditions()["Degraded"]["message"]
    assert kube.kinds() == []
    kube.put({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
              "metadata": {"name": "graphs", "namespace": "ml"}})  # fmt: skip
    await reconciler.request("ml", "demo")
    assert kube.conditions()["Degraded"]["status"] == "False"
    assert ("Deployment", "demo-tensors") in kube.kinds()


async def test_a_model_that_becomes_unworkable_keeps_its_running_objects():
    kube, reconciler = setup(SAMPLES["zoo-cpu"])
    await reconciler.request("ml", "demo")
    set_spec(kube, {**SAMPLES["zoo-cpu"], "zoo": "resnet"})
    await reconciler.request("ml", "demo")
    assert ("Deployment", "demo-classify") in kube.kinds()
    assert kube.conditions()["Degraded"]["status"] == "True"


async def test_an_api_refusal_is_recorded_not_retried_forever():
    kube, reconciler = setup(SAMPLES["zoo-cpu"])
    kube.refuse["Deployment"] = ApiError(422, "Invalid", "spec.template: bad")
    await reconciler.request("ml", "demo")
    assert (
        "refused Deployment demo-classify: spec.template: bad"
        in (kube.conditions()["Degraded"]["message"])
    )
    kube.refuse["Deployment"] = ApiError(503, "ServiceUnavailable", "etcd")
    with pytest.raises(ApiError):
        await reconciler.request("ml", "demo")


async def test_a_deleted_child_comes_back_and_a_gone_zoo_is_left_alone():
    kube, reconciler = setup(SAMPLES["zoo-cpu"])
    await reconciler.request("ml", "demo")
    del kube.objects[("Deployment", "ml", "demo-classify")]
    await reconciler.request("ml", "demo")
    assert ("Deployment", "demo-classify") in kube.kinds()
    del kube.objects[("ModelZoo", "ml", "demo")]
    kube.calls.clear()
    await reconciler.request("ml", "demo")
    assert kube.calls == [("get", "ModelZoo", "demo")]


async def test_status_only_passes_do_not_apply():
    kube, reconciler = setup(SAMPLES["zoo-cpu"])
    await reconciler.request("ml", "demo")
    kube.calls.clear()
    await reconciler.request("ml", "demo", full=False)
    assert not [c for c in kube.calls if c[0] == "apply"]
    set_spec(kube, {**SAMPLES["zoo-cpu"], "replicas": 3})
    await reconciler.request("ml", "demo", full=False)
    assert kube.objects[("Deployment", "ml", "demo-classify")]["spec"]["replicas"] == 3, (
        "a new generation always gets a full pass"
    )


async def test_requests_during_a_pass_are_coalesced():
    _, reconciler = setup(SAMPLES["zoo-cpu"])
    passes = 0
    original = reconciler._pass

    async def counted(*args):
        nonlocal passes
        passes += 1
        await asyncio.sleep(0.01)
        return await original(*args)

    reconciler._pass = counted
    await asyncio.gather(*(reconciler.request("ml", "demo", full=i == 0) for i in range(10)))
    assert passes == 2, "the running pass, then one more for everything that came meanwhile"


def test_only_the_highest_priority_live_peer_sweeps():
    kube = FakeKube()
    settings = Settings(peering="modelzoo", peering_priority=10, identity="me")
    now = datetime.datetime.now(datetime.UTC)

    def peers(**others):
        kube.objects[("ClusterKopfPeering", "", "modelzoo")] = {
            "metadata": {"name": "modelzoo"},
            "status": {
                "me": {"priority": 10, "lastseen": now.isoformat(), "lifetime": 60},
                **others,
            },
        }

    peers(other={"priority": 5, "lastseen": now.isoformat(), "lifetime": 60})
    assert is_active_peer(settings, kube)
    peers(other={"priority": 20, "lastseen": now.isoformat(), "lifetime": 60})
    assert not is_active_peer(settings, kube)
    stale = (now - datetime.timedelta(minutes=5)).isoformat()
    peers(other={"priority": 20, "lastseen": stale, "lifetime": 60})
    assert is_active_peer(settings, kube), "a dead peer does not count"
    assert is_active_peer(Settings(), kube), "standalone always sweeps"


def test_children_handlers_watch_only_labelled_objects():
    registry = handlers.register(Settings())
    watched = {h.id for h in registry._watching.get_all_handlers()}
    assert {"deployments-changed", "services-deleted", "configmaps-deleted"} <= watched
    assert not registry._spawning.get_all_handlers(), "no timers/daemons: they add finalizers"
