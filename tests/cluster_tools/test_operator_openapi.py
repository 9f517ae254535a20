"""Every manifest the operator builds, and the CRD itself, validate against the strict
OpenAPI schema of the pinned Kubernetes release (k8s_openapi.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from modelzoo_operator import builders
from modelzoo_operator.settings import Settings
from tests.cluster_tools.k8s_openapi import k8s_errors, schema_definitions
from tests.samples import DNS, GATEWAY, MONITORING, SAMPLES, built

pytestmark = pytest.mark.cluster
CRD = Path(__file__).resolve().parents[2] / "crds" / "modelzoo.yaml"


def test_the_strict_schema_catches_typos_and_wrong_types():
    deployment = built(SAMPLES["zoo-cpu"])[0]
    assert k8s_errors(deployment) == []
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    assert any("readinessprobe" in e for e in k8s_errors(typo))
    wrong = copy.deepcopy(deployment)
    wrong["spec"]["replicas"] = "two"
    assert k8s_errors(wrong)


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_built_manifests_validate_against_the_pinned_openapi_schema(sample):
    manifests = built(SAMPLES[sample])
    assert manifests
    for manifest in manifests:
        assert k8s_errors(manifest) == [], manifest["kind"]


def test_every_kind_the_operator_may_own_is_in_the_schema():
    _, by_kind = schema_definitions()
    for api_version, kind in builders.CHILD_KINDS:
        assert (api_version, kind) in by_kind


def test_the_crd_validates_as_a_customresourcedefinition():
    crd = yaml.safe_load(CRD.read_text())
    assert k8s_errors(crd) == []


@pytest.mark.parametrize(
    "settings",
    [
        Settings(
            network_policy=True,
            network_policy_inference_from=(GATEWAY,),
            network_policy_scrape_from=(MONITORING,),
        ),
        Settings(network_policy=True),
        Settings(
            network_policy=True, network_policy_inference_from=(), network_policy_scrape_from=()
        ),
        Settings(
            network_policy=True,
            network_policy_inference_from=(
                {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
            ),
            network_policy_egress=(DNS,),
        ),
    ],
)
def test_network_policies_validate_against_the_pinned_openapi_schema(settings):
    manifests = built(*SAMPLES.values(), settings=settings)
    policies = [m for m in manifests if m["kind"] == "NetworkPolicy"]
    assert policies
    for policy in policies:
        assert k8s_errors(policy) == []


@pytest.mark.parametrize("sample", sorted(SAMPLES))
@pytest.mark.parametrize("scope", ["inference", "all"])
def test_models_with_auth_validate(sample: str, scope: str) -> None:
    model = {**copy.deepcopy(SAMPLES[sample]), "auth": {"secretName": "tokens", "scope": scope}}
    manifests = built(model)
    assert manifests
    for manifest in manifests:
        assert k8s_errors(manifest) == [], manifest["kind"]
