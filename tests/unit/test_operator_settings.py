"""The operator's settings: defaults, environment parsing, clear errors."""

from __future__ import annotations

import json

import pytest

from modelzoo_operator.settings import Settings, SettingsError, from_env

pytestmark = pytest.mark.unit


def test_defaults():
    settings = from_env({})
    assert settings.gpu_resource == "nvidia.com/gpu"
    assert settings.gpu_node_selector == {"nvidia.com/gpu.present": "true"}
    assert settings.gpu_tolerations == (
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    )
    assert settings.clusterwide and not settings.peering
    assert settings.watch_server_timeout < settings.watch_client_timeout
    assert settings.catalog == "/opt/modelzoo/models/catalog.json"
    assert settings.image_for(1) == settings.image_for(0) == settings.image
    assert settings.peering_priority > 0


def test_every_setting_from_the_environment():
    env = {
        "MODELZOO_OPERATOR_IMAGE": "zoo:1",
        "MODELZOO_OPERATOR_GPU_IMAGE": "zoo:1-gpu",
        "MODELZOO_OPERATOR_IMAGE_PULL_POLICY": "Always",
        "MODELZOO_OPERATOR_MODEL_DIR": "/zoo",
        "MODELZOO_OPERATOR_ZOO_ENTRIES": "mtcnn, mobilenet",
        "MODELZOO_OPERATOR_GPU_RESOURCE": "amd.com/gpu",
        "MODELZOO_OPERATOR_GPU_NODE_SELECTOR": json.dumps({"gpu": "yes"}),
        "MODELZOO_OPERATOR_GPU_TOLERATIONS": json.dumps([{"key": "gpu", "operator": "Exists"}]),
        "MODELZOO_OPERATOR_NAMESPACES": "a,b",
        "MODELZOO_OPERATOR_DRIFT_INTERVAL": "5",
        "MODELZOO_OPERATOR_PEERING": "modelzoo",
        "MODELZOO_OPERATOR_PEERING_PRIORITY": "7",
        "MODELZOO_OPERATOR_WATCH_SERVER_TIMEOUT": "60",
        "POD_ID": "operator-abc",
    }
    s = from_env(env)
    assert (s.image_for(0), s.image_for(1), s.image_pull_policy) == ("zoo:1", "zoo:1-gpu", "Always")
    assert s.catalog == "/zoo/catalog.json" and s.model_dir == "/zoo"
    assert s.zoo_entries == ("mtcnn", "mobilenet")
    assert (s.gpu_resource, s.gpu_node_selector) == ("amd.com/gpu", {"gpu": "yes"})
    assert s.gpu_tolerations == ({"key": "gpu", "operator": "Exists"},)
    assert s.namespaces == ("a", "b") and not s.clusterwide
    assert (s.drift_interval, s.peering, s.peering_priority) == (5.0, "modelzoo", 7)
    assert (s.watch_server_timeout, s.watch_client_timeout) == (60, 90)
    assert s.identity == "operator-abc"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GPU_NODE_SELECTOR", "gpu=yes"),
        ("GPU_NODE_SELECTOR", "[1]"),
        ("GPU_TOLERATIONS", "{}"),
        ("IMAGE_PULL_POLICY", "Sometimes"),
        ("DRIFT_INTERVAL", "0"),
        ("DRAIN_SECONDS", "x"),
        ("LOG_LEVEL", "loud"),
        ("WATCH_CLIENT_TIMEOUT", "10"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(SettingsError, match=f"MODELZOO_OPERATOR_{name}"):
        from_env({f"MODELZOO_OPERATOR_{name}": value})


def test_grace_period_covers_prestop_and_drain():
    s = Settings(drain_seconds=20, prestop_seconds=5)
    assert s.termination_grace_seconds > 25
