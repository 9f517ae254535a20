"""The per-model NetworkPolicy: off by default; on, ingress to the server port only, from
the configured peers, egress open unless configured; valid for the pinned Kubernetes;
settings from the environment the chart sets; pruned with its model."""

from __future__ import annotations

import json

import pytest

from modelzoo_operator import builders
from modelzoo_operator.reconciler import Reconciler
from modelzoo_operator.settings import Settings, SettingsError, from_env
from modelzoo_operator.spec import parse_zoo
from tests.samples import CATALOG, DNS, GATEWAY, MONITORING, SAMPLES, built, zoo_body
from tests.unit.test_operator_handlers import FakeKube, set_spec

HTTP = {"protocol": "TCP", "port": 8080}
GRPC = {"protocol": "TCP", "port": 8081}

pytestmark = pytest.mark.unit

ON = Settings(
    network_policy=True,
    network_policy_inference_from=(GATEWAY,),
    network_policy_scrape_from=(MONITORING,),
)


def policies(*models: dict, settings: Settings = ON) -> list[dict]:
    return [m for m in built(*models, settings=settings) if m["kind"] == "NetworkPolicy"]


def test_off_by_default():
    assert Settings().network_policy is False
    assert policies(*SAMPLES.values(), settings=Settings()) == []
    assert builders.NETWORK_POLICY_KIND not in builders.child_kinds(Settings())
    assert builders.NETWORK_POLICY_KIND in builders.child_kinds(ON)


def test_one_policy_per_model_owned_labelled_and_selecting_its_pods():
    manifests = built(SAMPLES["zoo-gpu"], SAMPLES["zoo-cpu"], settings=ON)
    found = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "NetworkPolicy"}
    assert sorted(found) == ["demo-classify", "demo-faces"]
    deployments = {m["metadata"]["name"]: m for m in manifests if m["kind"] == "Deployment"}
    for name, policy in found.items():
        meta = policy["metadata"]
        assert meta["namespace"] == "ml"
        assert [o["uid"] for o in meta["ownerReferences"]] == ["uid-1234"]
        assert meta["ownerReferences"][0]["controller"] is True
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "modelzoo-operator"
        selector = policy["spec"]["podSelector"]["matchLabels"]
        template = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert selector == deployments[name]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template.items(), "it selects exactly the model's pods"
        other = next(n for n in deployments if n != name)
        other_labels = deployments[other]["spec"]["template"]["metadata"]["labels"]
        assert not selector.items() <= other_labels.items(), "and not the other model's"


def test_ingress_on_the_server_port_only_from_the_configured_peers():
    (policy,) = policies(SAMPLES["zoo-cpu"])
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"], "egress is not restricted by default"
    assert "egress" not in spec
    assert spec["ingress"] == [
        {"from": [GATEWAY], "ports": [HTTP, GRPC]},
        {"from": [MONITORING], "ports": [HTTP]},
    ]
    # The ports that serve /infer, /v2 and /metrics, and gRPC: the container's, which the
    # Service's ports target.
    deployment = next(
        m for m in built(SAMPLES["zoo-cpu"], settings=ON) if m["kind"] == "Deployment"
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert [(p["containerPort"], p["protocol"]) for p in container["ports"]] == [
        (HTTP["port"], "TCP"),
        (GRPC["port"], "TCP"),
    ]


def test_the_default_peers_are_the_zoos_own_namespace():
    (policy,) = policies(SAMPLES["zoo-cpu"], settings=Settings(network_policy=True))
    assert policy["spec"]["ingress"] == [{"from": [{"podSelector": {}}], "ports": [HTTP, GRPC]}]


def test_no_peers_at_all_still_closes_every_other_port():
    settings = Settings(
        network_policy=True, network_policy_inference_from=(), network_policy_scrape_from=()
    )
    (policy,) = policies(SAMPLES["zoo-cpu"], settings=settings)
    assert policy["spec"]["ingress"] == [{"ports": [HTTP, GRPC]}]


def test_egress_rules_when_configured():
    settings = Settings(
        network_policy=True,
        network_policy_egress=(DNS, {"ports": [{"protocol": "TCP", "port": 443}]}),
    )
    (policy,) = policies(SAMPLES["url-batching-autoscaling"], settings=settings)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["egress"] == [DNS, {"ports": [{"protocol": "TCP", "port": 443}]}]


def test_the_policy_is_applied_before_the_pods_it_guards():
    kinds = [m["kind"] for m in built(SAMPLES["url-batching-autoscaling"], settings=ON)]
    assert kinds.index("NetworkPolicy") < kinds.index("Deployment")


def test_builders_stay_pure_with_policies():
    zoo = parse_zoo(zoo_body(*SAMPLES.values()), CATALOG)
    first = [builders.model_children(zoo, model, ON) for model in zoo.models]
    assert [builders.model_children(zoo, model, ON) for model in zoo.models] == first
    assert ON.network_policy_inference_from == (GATEWAY,), "settings are not mutated"


# ------------------------------------------------------------------ settings
def test_settings_from_the_environment_the_chart_sets():
    env = {
        "MODELZOO_OPERATOR_NETWORK_POLICY": "true",
        "MODELZOO_OPERATOR_NETWORK_POLICY_INFERENCE_FROM": json.dumps([GATEWAY]),
        "MODELZOO_OPERATOR_NETWORK_POLICY_SCRAPE_FROM": json.dumps([MONITORING]),
        "MODELZOO_OPERATOR_NETWORK_POLICY_EGRESS": json.dumps([DNS]),
    }
    settings = from_env(env)
    assert settings.network_policy is True
    assert settings.network_policy_inference_from == (GATEWAY,)
    assert settings.network_policy_scrape_from == (MONITORING,)
    assert settings.network_policy_egress == (DNS,)
    # The chart renders empty lists as "[]": no scrape rule, egress left open.
    env.update(
        MODELZOO_OPERATOR_NETWORK_POLICY_SCRAPE_FROM="[]",
        MODELZOO_OPERATOR_NETWORK_POLICY_EGRESS="[]",
    )
    settings = from_env(env)
    assert settings.network_policy_scrape_from == ()
    assert settings.network_policy_egress is None
    defaults = from_env({})
    assert defaults.network_policy is False
    assert defaults.network_policy_inference_from == ({"podSelector": {}},)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NETWORK_POLICY", "yes"),
        ("NETWORK_POLICY_INFERENCE_FROM", "{"),
        ("NETWORK_POLICY_INFERENCE_FROM", json.dumps({"podSelector": {}})),
        ("NETWORK_POLICY_SCRAPE_FROM", json.dumps([{"podSelecter": {}}])),  # a typo widens
        ("NETWORK_POLICY_EGRESS", json.dumps([{"too": []}])),
    ],
)
def test_bad_settings_are_refused_with_the_variable_named(name, value):
    with pytest.raises(SettingsError, match=name):
        from_env({f"MODELZOO_OPERATOR_{name}": value})


# ------------------------------------------------------------------ the reconciler
def setup(settings: Settings, *models) -> tuple[FakeKube, Reconciler]:
    kube = FakeKube()
    kube.put(zoo_body(*models))
    return kube, Reconciler(settings, kube, CATALOG)


async def test_a_removed_model_loses_its_policy():
    kube, reconciler = setup(ON, SAMPLES["zoo-gpu"], SAMPLES["zoo-cpu"])
    await reconciler.request("ml", "demo")
    assert ("NetworkPolicy", "demo-faces") in kube.kinds()
    set_spec(kube, SAMPLES["zoo-cpu"])
    await reconciler.request("ml", "demo")
    assert [k for k in kube.kinds() if k[0] == "NetworkPolicy"] == [
        ("NetworkPolicy", "demo-classify")
    ]


async def test_without_the_setting_policies_are_never_touched():
    kube, reconciler = setup(Settings(), SAMPLES["zoo-cpu"])
    listed = []
    original = kube.list

    def recording(api_version, kind, namespace="", label_selector=""):
        listed.append(kind)
        return original(api_version, kind, namespace, label_selector)

    kube.list = recording
    await reconciler.request("ml", "demo")
    assert "NetworkPolicy" not in listed, "no rights on them: never listed or pruned"
    assert "Deployment" in listed
