"""The operator's one settings object, read once from MODELZOO_OPERATOR_* environment variables.

Nothing below `__main__` reads the environment: handlers and builders get this object.
The Helm chart sets these variables from its values (charts/modelzoo/values.yaml).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelzoo_models.contract import CATALOG_FILE, MODEL_DIR

PREFIX = "MODELZOO_OPERATOR_"

DEFAULT_IMAGE = "ghcr.io/modelzoo/modelzoo:0.1.0"
# The NVIDIA device plugin's resource, the GPU Operator's node label and the usual taint.
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_GPU_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
DEFAULT_GPU_TOLERATIONS = ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)


class SettingsError(ValueError):
    """An environment variable has a value the operator cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    image: str = DEFAULT_IMAGE
    # Image for models with gpu > 0 (the `tensorflow[and-cuda]` build); defaults to `image`.
    gpu_image: str = ""
    image_pull_policy: str = "IfNotPresent"
    model_dir: str = MODEL_DIR
    # The built catalog in the image; `zoo_entries` overrides it (a comma list).
    catalog: str = f"{MODEL_DIR}/{CATALOG_FILE}"
    zoo_entries: tuple[str, ...] = ()
    gpu_resource: str = DEFAULT_GPU_RESOURCE
    gpu_node_selector: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_GPU_NODE_SELECTOR)
    )
    gpu_tolerations: tuple[Mapping[str, Any], ...] = DEFAULT_GPU_TOLERATIONS
    # Namespaces to watch; empty means the whole cluster.
    namespaces: tuple[str, ...] = ()
    # How often every zoo is re-applied (repairs hand-edited or lost children).
    drift_interval: float = 60.0
    cluster_domain: str = "cluster.local"
    # The server's SIGTERM drain; the pod's grace period adds the preStop delay and a margin.
    drain_seconds: int = 20
    prestop_seconds: int = 5
    # How long a model may take to load (and warm up) before the startup probe gives up.
    startup_seconds: int = 600
    # kopf peering: the name of the (Cluster)KopfPeering object; empty means standalone.
    peering: str = ""
    peering_priority: int = 0
    identity: str = ""
    # Watch-stream timeouts: a silent connection is dropped and re-established.
    watch_server_timeout: int = 270
    watch_client_timeout: int = 300
    request_timeout: int = 30
    health_port: int = 8080
    # The operator's own Prometheus metrics (metrics.py) on /metrics; 0 turns them off.
    metrics_port: int = 8081
    log_level: str = "info"
    # A model with `auth` has its Secret checked (metadata only) before its pods are made;
    # off, the operator needs no access to Secrets and a missing one shows as FailedMount.
    check_secrets: bool = True
    # One NetworkPolicy per model: ingress on the server port only, from these peers
    # (NetworkPolicyPeer objects). Empty peers on both lists admit any source to that port.
    network_policy: bool = False
    network_policy_inference_from: tuple[Mapping[str, Any], ...] = ({"podSelector": {}},)
    network_policy_scrape_from: tuple[Mapping[str, Any], ...] = ()
    # NetworkPolicyEgressRule objects; None leaves egress unrestricted.
    network_policy_egress: tuple[Mapping[str, Any], ...] | None = None

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    @property
    def termination_grace_seconds(self) -> int:
        return self.prestop_seconds + self.drain_seconds + 10

    def image_for(self, gpu: int) -> str:
        return (self.gpu_image or self.image) if gpu > 0 else self.image


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(PREFIX + name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{PREFIX}{name}={value} must be at least {minimum}")
    return value


def _json(env: Mapping[str, str], name: str, default: Any, kind: type) -> Any:
    raw = env.get(PREFIX + name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}{name} is not JSON: {exc}") from None
    if not isinstance(value, kind):
        raise SettingsError(f"{PREFIX}{name} must be a JSON {kind.__name__}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(PREFIX + name) or "").strip().lower()
    if raw == "":
        return default
    if raw not in ("true", "false"):
        raise SettingsError(f"{PREFIX}{name}={raw!r}: true or false")
    return raw == "true"


def _objects(
    env: Mapping[str, str], name: str, default: Any, allowed: frozenset[str]
) -> tuple[dict[str, Any], ...]:
    """A JSON list of objects whose keys are all in `allowed` (a typo must not widen a
    policy by being ignored)."""
    items = _json(env, name, default, list)
    for item in items:
        if not isinstance(item, dict) or not set(item) <= allowed:
            raise SettingsError(
                f"{PREFIX}{name} must be a JSON list of objects with keys among "
                f"{', '.join(sorted(allowed))}"
            )
    return tuple(items)


_PEER_KEYS = frozenset({"podSelector", "namespaceSelector", "ipBlock"})
_EGRESS_KEYS = frozenset({"to", "ports"})


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in env.get(PREFIX + name, "").split(",") if x.strip())


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    get = lambda name, default: env.get(PREFIX + name) or default  # noqa: E731
    defaults = Settings()  # what an unset variable means lives in one place: the fields

    selector = _json(env, "GPU_NODE_SELECTOR", dict(defaults.gpu_node_selector), dict)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in selector.items()):
        raise SettingsError(f"{PREFIX}GPU_NODE_SELECTOR must map strings to strings")
    tolerations = _json(env, "GPU_TOLERATIONS", list(defaults.gpu_tolerations), list)
    if not all(isinstance(t, dict) for t in tolerations):
        raise SettingsError(f"{PREFIX}GPU_TOLERATIONS must be a JSON list of tolerations")
    pull = get("IMAGE_PULL_POLICY", defaults.image_pull_policy)
    if pull not in ("Always", "IfNotPresent", "Never"):
        raise SettingsError(f"{PREFIX}IMAGE_PULL_POLICY={pull!r}: Always, IfNotPresent or Never")
    level = get("LOG_LEVEL", defaults.log_level).lower()
    if level not in ("debug", "info", "warning", "error"):
        raise SettingsError(f"{PREFIX}LOG_LEVEL={level!r}: debug, info, warning or error")
    try:
        drift = float(get("DRIFT_INTERVAL", defaults.drift_interval))
    except ValueError:
        raise SettingsError(f"{PREFIX}DRIFT_INTERVAL is not a number of seconds") from None
    if drift < 1:
        raise SettingsError(f"{PREFIX}DRIFT_INTERVAL must be at least 1 second")
    model_dir = get("MODEL_DIR", defaults.model_dir)
    server_timeout = _int(env, "WATCH_SERVER_TIMEOUT", defaults.watch_server_timeout, minimum=1)
    client_timeout = _int(env, "WATCH_CLIENT_TIMEOUT", server_timeout + 30, minimum=1)
    if client_timeout <= server_timeout:
        raise SettingsError(
            f"{PREFIX}WATCH_CLIENT_TIMEOUT must exceed {PREFIX}WATCH_SERVER_TIMEOUT, so the "
            "server closes a quiet watch before the client gives up on it"
        )
    egress = _objects(env, "NETWORK_POLICY_EGRESS", [], _EGRESS_KEYS)
    # Peers with equal priorities pause each other (kopf), so each replica draws its own.
    priority = _int(env, "PEERING_PRIORITY", random.randint(1, 2**30), minimum=0)
    return Settings(
        image=get("IMAGE", defaults.image),
        gpu_image=get("GPU_IMAGE", defaults.gpu_image),
        image_pull_policy=pull,
        model_dir=model_dir,
        catalog=get("CATALOG", model_dir.rstrip("/") + "/catalog.json"),
        zoo_entries=_list(env, "ZOO_ENTRIES"),
        gpu_resource=get("GPU_RESOURCE", defaults.gpu_resource),
        gpu_node_selector=selector,
        gpu_tolerations=tuple(tolerations),
        namespaces=_list(env, "NAMESPACES"),
        drift_interval=drift,
        cluster_domain=get("CLUSTER_DOMAIN", defaults.cluster_domain),
        drain_seconds=_int(env, "DRAIN_SECONDS", defaults.drain_seconds),
        prestop_seconds=_int(env, "PRESTOP_SECONDS", defaults.prestop_seconds),
        startup_seconds=_int(env, "STARTUP_SECONDS", defaults.startup_seconds, minimum=10),
        peering=get("PEERING", defaults.peering),
        peering_priority=priority,
        identity=env.get("POD_ID", "") or get("IDENTITY", ""),
        watch_server_timeout=server_timeout,
        watch_client_timeout=client_timeout,
        request_timeout=_int(env, "REQUEST_TIMEOUT", defaults.request_timeout, minimum=1),
        health_port=_int(env, "HEALTH_PORT", defaults.health_port),
        metrics_port=_int(env, "METRICS_PORT", defaults.metrics_port),
        log_level=level,
        check_secrets=_bool(env, "CHECK_SECRETS", defaults.check_secrets),
        network_policy=_bool(env, "NETWORK_POLICY", defaults.network_policy),
        network_policy_inference_from=_objects(
            env,
            "NETWORK_POLICY_INFERENCE_FROM",
            list(defaults.network_policy_inference_from),
            _PEER_KEYS,
        ),
        network_policy_scrape_from=_objects(
            env, "NETWORK_POLICY_SCRAPE_FROM", list(defaults.network_policy_scrape_from), _PEER_KEYS
        ),
        # An empty list means "not configured": egress stays open.
        network_policy_egress=egress or None,
    )
