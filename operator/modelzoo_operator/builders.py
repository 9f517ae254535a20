"""Pure functions from a parsed ModelZoo to the manifests of its children.

No API calls, no clock, no environment: the same spec and settings always give the
same dicts, which the handlers server-side-apply. Every child carries the common
labels and a controller ownerReference to its zoo, so the garbage collector removes
it with the zoo (no finalizers).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from modelzoo_models.contract import TENSORFLOW
from modelzoo_operator.settings import Settings
from modelzoo_operator.spec import API_VERSION, KIND, ModelSpec, S3Object, ZooSpec, child_name

LABEL_ZOO = "modelzoo.dev/zoo"
LABEL_MODEL = "modelzoo.dev/model"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "modelzoo-operator"
CONFIG_HASH = "modelzoo.dev/config-hash"

PORT = 8080  # the server's HTTP port: /infer, /v2/..., /metrics
SERVICE_PORT = 80
# The server's Open Inference Protocol gRPC port (its --grpc-port default), the same on
# the Service, as gRPC clients expect it.
GRPC_PORT = 8081
GRAPH_MOUNT = "/models"  # the fetched graph (emptyDir) or the PVC
# The prepare step's record and .tflite (emptyDir; modelzoo_models.prepared): written by
# the `prepare-model` init container, read by the server, which converts nothing itself.
PREPARED_MOUNT = "/prepared"
PREPARE_CONTAINER = "prepare-model"
# Its one-line outcome, which the operator reads from the pod (pod_runtime.py).
TERMINATION_LOG = "/dev/termination-log"
# Conversion and verification import TensorFlow. Measured (peak RSS of modelzoo-prepare,
# /usr/bin/time): 608 MiB for emotion (a 0.8 MB graph), 955 MiB for mobilenet (17 MB).
# The request is the server's default on TensorFlow, so the pod asks for no more than it
# did; the limit leaves room for graphs a few times mobilenet's size.
PREPARE_RESOURCES = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
SIGNATURE_MOUNT = "/etc/modelzoo"
SIGNATURE_FILE = "signature.json"
FETCHED_GRAPH = f"{GRAPH_MOUNT}/model.pb"
# source.s3: the Secret's keys (the AWS SDKs' names) and the CA bundle's variable, which
# modelzoo-fetch reads.
S3_KEY_ID, S3_SECRET_KEY = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"
S3_CA_BUNDLE = "MODELZOO_S3_CA_BUNDLE"
# The auth Secret's one key, mounted as a file (a whole-volume mount, not subPath, so the
# kubelet swaps in a rotated Secret and the server re-reads it without a restart).
AUTH_MOUNT = "/var/run/modelzoo/auth"
TOKEN_FILE = f"{AUTH_MOUNT}/tokens"
# Owner and group read: the files are root:fsGroup (10001), the server runs as 10001.
AUTH_FILE_MODE = 0o440
INFLIGHT_METRIC = "modelzoo_inflight_requests"
# Without resources in the spec, a model asks for this much (TensorFlow + one graph).
DEFAULT_REQUESTS = {"cpu": "500m", "memory": "1Gi"}
# A server on LiteRT never imports TensorFlow: measured, a mobilenet server holds 139 MiB
# where TensorFlow's holds 962 MiB (README, Runtimes). The request leaves room for
# requests in flight and batches; there is no limit by default, as for TensorFlow.
LITERT_REQUESTS = {"cpu": "500m", "memory": "256Mi"}
# mtcnn on LiteRT runs one P/R/O-Net pipeline whose PNet buffers grow with the photos'
# pyramid levels: measured 385 MiB after the bench's photos, 769 MiB after 2000×1500 ones
# (TensorFlow's server: 779 MiB after the bench's photos).
LITERT_PIPELINE_REQUESTS = {"cpu": "500m", "memory": "512Mi"}

# Every kind a zoo may own, as (apiVersion, kind): the handlers list these to prune.
CHILD_KINDS = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("policy/v1", "PodDisruptionBudget"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
)
# Only with `networkPolicy.enabled` in the chart: the operator has no rights on these
# otherwise, so it neither lists nor prunes them.
NETWORK_POLICY_KIND = ("networking.k8s.io/v1", "NetworkPolicy")

Manifest = dict[str, Any]


def selector_labels(zoo: ZooSpec, model: ModelSpec) -> dict[str, str]:
    return {LABEL_ZOO: zoo.name, LABEL_MODEL: model.name}


def labels(zoo: ZooSpec, model: ModelSpec) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "modelzoo-server",
        "app.kubernetes.io/instance": child_name(zoo.name, model.name),
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/part-of": "modelzoo",
        LABEL_MANAGED_BY: MANAGER,
        **selector_labels(zoo, model),
    }


def owner_reference(zoo: ZooSpec) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": zoo.name,
        "uid": zoo.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(zoo: ZooSpec, model: ModelSpec, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": zoo.namespace,
        "labels": labels(zoo, model),
        "ownerReferences": [owner_reference(zoo)],
    }


def child_kinds(settings: Settings) -> tuple[tuple[str, str], ...]:
    """The kinds this operator's settings let a zoo own (what the handlers list to prune)."""
    return (*CHILD_KINDS, NETWORK_POLICY_KIND) if settings.network_policy else CHILD_KINDS


def _service_host(zoo: ZooSpec, model: ModelSpec, settings: Settings) -> str:
    return f"{child_name(zoo.name, model.name)}.{zoo.namespace}.svc.{settings.cluster_domain}"


def model_url(zoo: ZooSpec, model: ModelSpec, settings: Settings) -> str:
    return f"http://{_service_host(zoo, model, settings)}/infer"


def grpc_address(zoo: ZooSpec, model: ModelSpec, settings: Settings) -> str:
    """host:port of the model's gRPC service, as tritonclient.grpc takes it."""
    return f"{_service_host(zoo, model, settings)}:{GRPC_PORT}"


def _number(value: float) -> str:
    return f"{value:g}"


def signature_document(model: ModelSpec) -> dict[str, Any] | None:
    """The --signature file of a non-zoo model: its contract record, as the server reads it."""
    return model.record.to_json() if model.record is not None else None


def _graph_args(model: ModelSpec) -> list[str]:
    """A graph from `source` as the server and the prepare step both take it."""
    source = model.source
    graph = FETCHED_GRAPH if source.fetched else f"{GRAPH_MOUNT}/{source.path}"
    args = ["--graph", graph, "--signature", f"{SIGNATURE_MOUNT}/{SIGNATURE_FILE}"]
    return args + (["--sha256", source.sha256] if source.sha256 else [])


def server_args(model: ModelSpec, settings: Settings) -> list[str]:
    """The server's flags (modelzoo_server/settings.py) for this model."""
    args = ["--name", model.name]
    source = model.source
    if source.kind == "zoo":
        args += ["--zoo", source.zoo, "--model-dir", settings.model_dir]
    else:
        args += _graph_args(model)
        if model.prepared:
            args += ["--prepared", PREPARED_MOUNT]
    if model.runtime:
        args += ["--runtime", model.runtime]
    elif model.gpu:
        # A GPU pod runs the graph on TensorFlow; CPU pods keep the server's `auto`, which
        # takes a zoo entry's verified .tflite on LiteRT.
        args += ["--runtime", TENSORFLOW]
    args += [
        "--host",
        "0.0.0.0",
        "--port",
        str(PORT),
        "--drain-seconds",
        str(settings.drain_seconds),
    ]
    if model.batching:
        args += [
            "--max-batch-size",
            str(model.batching.max_batch_size),
            "--max-delay-ms",
            _number(model.batching.max_delay_ms),
        ]
    if model.max_inflight:
        args += ["--max-inflight", str(model.max_inflight)]
    if model.auth:
        # A path and a word: the tokens themselves never appear in the pod spec.
        args += ["--token-file", TOKEN_FILE, "--auth-scope", model.auth.scope]
    return args


def prepare_args(model: ModelSpec) -> list[str]:
    """`modelzoo-prepare`'s flags: the record into the `prepared` volume, the outcome into
    the termination message."""
    return [
        *_graph_args(model),
        "--prepared",
        PREPARED_MOUNT,
        "--termination-log",
        TERMINATION_LOG,
    ]


def fetch_args(model: ModelSpec) -> list[str]:
    source = model.source
    if source.s3 is None:
        where = ["--url", source.url]
    else:
        s3 = source.s3
        where = ["--s3-endpoint", s3.endpoint, "--s3-bucket", s3.bucket, "--s3-key", s3.key]
        if s3.region:
            where += ["--s3-region", s3.region]
        if s3.path_style:
            where.append("--s3-path-style")
    return [*where, "--sha256", source.sha256, "--out", FETCHED_GRAPH]


def _s3_env(s3: S3Object) -> list[dict[str, Any]]:
    """The store's credentials from the model's Secret, for the init container only (the
    server container never sees them); and the CA bundle, which is public."""
    env: list[dict[str, Any]] = [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": s3.secret_name, "key": name}}}
        for name in (S3_KEY_ID, S3_SECRET_KEY)
        if s3.secret_name
    ]
    if s3.ca_bundle:
        env.append({"name": S3_CA_BUNDLE, "value": s3.ca_bundle})
    return env


def _container_security() -> dict[str, Any]:
    # Pod Security Standard `restricted`, plus a read-only root filesystem.
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _quantities(values: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (values or {}).items()}


def _default_requests(model: ModelSpec) -> dict[str, str]:
    if model.litert_pipeline:
        return LITERT_PIPELINE_REQUESTS
    return LITERT_REQUESTS if model.on_litert else DEFAULT_REQUESTS


def resources(model: ModelSpec, settings: Settings) -> dict[str, Any]:
    limits = _quantities(model.resources.get("limits"))
    requests = _quantities(model.resources.get("requests"))
    if not limits and not requests:
        requests = dict(_default_requests(model))
    limits.pop(settings.gpu_resource, None)
    requests.pop(settings.gpu_resource, None)
    if model.gpu > 0:
        # Extended resources are requested through limits (requests default to them).
        limits[settings.gpu_resource] = str(model.gpu)
    out: dict[str, Any] = {}
    if limits:
        out["limits"] = limits
    if requests:
        out["requests"] = requests
    return out


def _probe(model: ModelSpec, path: str, period: int, timeout: int, failures: int) -> dict[str, Any]:
    if model.auth and model.auth.scope == "all":
        # With --auth-scope all, /v2/health/* want a bearer token too, and a probe could
        # only send one from the pod spec (httpHeaders), where it must never be. So the
        # probes are tcpSocket: the server binds its port only after the model is loaded
        # and warmed up, so an open port still means "ready"; what is lost is the
        # draining signal (endpoints drop terminating pods anyway) and the detection of
        # a hung event loop behind an open socket.
        action: dict[str, Any] = {"tcpSocket": {"port": "http"}}
    else:
        action = {"httpGet": {"path": path, "port": "http"}}
    return {
        **action,
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _probes(model: ModelSpec, settings: Settings) -> dict[str, Any]:
    # The startup probe waits out loading and warm-up; the other two take over after it
    # (the kubelet runs the readiness probe as soon as it succeeds). It asks every second:
    # a LiteRT server is ready about a second after it starts, and a 5 s period made it
    # wait 5 s more for its endpoints (measured on the real node; a refused connection
    # costs the pod nothing while it loads).
    startup_period = 1
    startup_failures = max(1, math.ceil(settings.startup_seconds / startup_period))
    return {
        "startupProbe": _probe(model, "/v2/health/live", startup_period, 1, startup_failures),
        "readinessProbe": _probe(model, "/v2/health/ready", 5, 2, 3),
        "livenessProbe": _probe(model, "/v2/health/live", 10, 3, 3),
    }


def _tolerations(model: ModelSpec, settings: Settings) -> list[dict[str, Any]]:
    own = [dict(t) for t in settings.gpu_tolerations] if model.gpu > 0 else []
    return own + [dict(t) for t in model.tolerations if dict(t) not in own]


def _scheduling(model: ModelSpec, settings: Settings) -> dict[str, Any]:
    """nodeSelector, tolerations and affinity of the pod, each only when non-empty: GPU
    models get the GPU node selection and toleration, CPU models only what they ask for."""
    out: dict[str, Any] = {}
    node_selector = {
        **(settings.gpu_node_selector if model.gpu > 0 else {}),
        **model.node_selector,
    }
    if node_selector:
        out["nodeSelector"] = dict(node_selector)
    tolerations = _tolerations(model, settings)
    if tolerations:
        out["tolerations"] = tolerations
    if model.affinity:
        out["affinity"] = dict(model.affinity)
    return out


def config_hash(model: ModelSpec) -> str:
    """Changes when the mounted signature does, so the pods roll to pick it up."""
    doc = signature_document(model)
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _volumes(zoo: ZooSpec, model: ModelSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the pod's volumes, the server container's mounts of them)."""
    source = model.source
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if source.fetched:
        volumes.append({"name": "model", "emptyDir": {"sizeLimit": "8Gi"}})
    elif source.kind == "pvc":
        claim = {"claimName": source.claim_name, "readOnly": True}
        volumes.append({"name": "model", "persistentVolumeClaim": claim})
    if source.kind != "zoo":
        mounts.append({"name": "model", "mountPath": GRAPH_MOUNT, "readOnly": True})
        signature = {"name": signature_configmap_name(zoo, model)}
        volumes.append({"name": "signature", "configMap": signature})
        mounts.append({"name": "signature", "mountPath": SIGNATURE_MOUNT, "readOnly": True})
    if model.prepared:
        # Its own volume: a PVC stays read-only, and a fetched graph's volume only ever
        # holds what was downloaded and checked.
        volumes.append({"name": "prepared", "emptyDir": {"sizeLimit": "8Gi"}})
        mounts.append({"name": "prepared", "mountPath": PREPARED_MOUNT, "readOnly": True})
    if model.auth:
        secret = {
            "secretName": model.auth.secret_name,
            # Only the one key, under a fixed name.
            "items": [{"key": model.auth.key, "path": TOKEN_FILE.rsplit("/", 1)[1]}],
            "defaultMode": AUTH_FILE_MODE,
        }
        volumes.append({"name": "auth", "secret": secret})
        mounts.append({"name": "auth", "mountPath": AUTH_MOUNT, "readOnly": True})
    return volumes, mounts


def _fetch_container(model: ModelSpec, image: str, pull: str) -> dict[str, Any]:
    """The init container that downloads a `source.url` or `source.s3` graph into the
    `model` volume."""
    s3 = model.source.s3
    return {
        "name": "fetch-model",
        "image": image,
        "imagePullPolicy": pull,
        # A console script of the image, so moving its module changes no manifest.
        "command": ["modelzoo-fetch"],
        "args": fetch_args(model),
        "env": [{"name": "HOME", "value": "/tmp"}, *(_s3_env(s3) if s3 else [])],
        # Its last line (why the download was refused) reaches the zoo's status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "model", "mountPath": GRAPH_MOUNT},
        ],
    }


def _prepare_container(model: ModelSpec, image: str, pull: str) -> dict[str, Any]:
    """The init container that converts the graph to a verified `.tflite` for LiteRT, or
    records why TensorFlow serves it; it fails only for a refused graph."""
    return {
        "name": PREPARE_CONTAINER,
        "image": image,
        "imagePullPolicy": pull,
        "command": ["modelzoo-prepare"],
        "args": prepare_args(model),
        "env": [{"name": "HOME", "value": "/tmp"}],
        # The outcome is written to the file; a crash (OOMKilled, a converter abort)
        # leaves its last log line instead, which reaches the zoo's status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": copy.deepcopy(PREPARE_RESOURCES),
        "securityContext": _container_security(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "model", "mountPath": GRAPH_MOUNT, "readOnly": True},
            {"name": "signature", "mountPath": SIGNATURE_MOUNT, "readOnly": True},
            {"name": "prepared", "mountPath": PREPARED_MOUNT},
        ],
    }


def _server_container(
    model: ModelSpec, settings: Settings, image: str, pull: str, mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "server",
        "image": image,
        "imagePullPolicy": pull,
        "command": ["modelzoo-server"],
        "args": server_args(model, settings),
        # The root filesystem is read-only: anything that wants a home writes to /tmp.
        "env": [{"name": "HOME", "value": "/tmp"}],
        # A refused graph's one line (exit 2) reaches the zoo's status.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "ports": [
            {"name": "http", "containerPort": PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
        ],
        "resources": resources(model, settings),
        **_probes(model, settings),
        "securityContext": _container_security(),
        "volumeMounts": mounts,
    }
    if settings.prestop_seconds > 0:
        # Endpoints take a moment to drop a terminating pod: keep serving, then drain.
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": settings.prestop_seconds}}}
    return container


def _pod_spec(zoo: ZooSpec, model: ModelSpec, settings: Settings) -> dict[str, Any]:
    image = zoo.image or settings.image_for(model.gpu)
    pull = zoo.image_pull_policy or settings.image_pull_policy
    volumes, mounts = _volumes(zoo, model)
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security(),
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "containers": [_server_container(model, settings, image, pull, mounts)],
        "volumes": volumes,
    }
    init = [_fetch_container(model, image, pull)] if model.source.fetched else []
    if model.prepared:
        init.append(_prepare_container(model, image, pull))  # after the fetch
    if init:
        pod_spec["initContainers"] = init
    return {**pod_spec, **_scheduling(model, settings)}


def _pod_annotations(model: ModelSpec) -> dict[str, str]:
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(PORT),
        "prometheus.io/path": "/metrics",
    }
    if model.source.kind != "zoo":
        annotations[CONFIG_HASH] = config_hash(model)
    return annotations


def _rolling_update(model: ModelSpec) -> dict[str, int]:
    if model.gpu > 0:
        # A GPU is scarce: replace pods in place rather than asking for one more GPU.
        return {"maxSurge": 0, "maxUnavailable": 1}
    return {"maxSurge": 1, "maxUnavailable": 0}


def deployment(zoo: ZooSpec, model: ModelSpec, settings: Settings) -> Manifest:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(zoo, model)},
        "revisionHistoryLimit": 3,
        "progressDeadlineSeconds": settings.startup_seconds + 60,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": _rolling_update(model)},
        "template": {
            "metadata": {"labels": labels(zoo, model), "annotations": _pod_annotations(model)},
            "spec": _pod_spec(zoo, model, settings),
        },
    }
    if model.autoscaling is None:
        # With autoscaling, replicas belong to the autoscaler (our HPA or an external one
        # such as KEDA's): leaving the field out keeps apply from fighting it.
        spec = {"replicas": model.replicas, **spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(zoo, model, child_name(zoo.name, model.name)),
        "spec": spec,
    }


def service(zoo: ZooSpec, model: ModelSpec) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(zoo, model, child_name(zoo.name, model.name)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(zoo, model),
            "ports": [
                {"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"},
                # The same server port, named for ServiceMonitors that select `metrics`.
                {"name": "metrics", "port": PORT, "targetPort": "http", "protocol": "TCP"},
                {
                    "name": "grpc",
                    "port": GRPC_PORT,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "grpc",
                },
            ],
        },
    }


def signature_configmap_name(zoo: ZooSpec, model: ModelSpec) -> str:
    return f"{child_name(zoo.name, model.name)}-signature"


def signature_configmap(zoo: ZooSpec, model: ModelSpec) -> Manifest | None:
    doc = signature_document(model)
    if doc is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(zoo, model, signature_configmap_name(zoo, model)),
        "data": {SIGNATURE_FILE: json.dumps(doc, indent=2, sort_keys=True) + "\n"},
    }


def pod_disruption_budget(zoo: ZooSpec, model: ModelSpec) -> Manifest | None:
    if model.min_replicas <= 1:
        return None  # a PDB on one replica would block every node drain
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(zoo, model, child_name(zoo.name, model.name)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(zoo, model)}},
    }


def horizontal_pod_autoscaler(zoo: ZooSpec, model: ModelSpec) -> Manifest | None:
    scaling = model.autoscaling
    if scaling is None or scaling.external:
        # None: an HPA made for an earlier spec is pruned as no longer needed.
        return None
    name = child_name(zoo.name, model.name)
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "minReplicas": scaling.min_replicas,
        "maxReplicas": scaling.max_replicas,
        # A per-pod custom metric: needs prometheus-adapter (or another custom
        # metrics API) serving modelzoo_inflight_requests from the pods' /metrics.
        "metrics": [
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": INFLIGHT_METRIC},
                    "target": {
                        "type": "AverageValue",
                        "averageValue": str(scaling.target_inflight),
                    },
                },
            }
        ],
    }
    if scaling.behavior:
        # Verbatim; without it the key stays out, so the HPA's defaults apply (and a
        # behavior removed from the spec is removed from the HPA by the next apply).
        spec["behavior"] = copy.deepcopy(dict(scaling.behavior))
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(zoo, model, name),
        "spec": spec,
    }


def network_policy(zoo: ZooSpec, model: ModelSpec, settings: Settings) -> Manifest | None:
    """Admit only inference and scraping: ingress to the server port, from the peers in the
    settings (the chart's networkPolicy values); every other port of the pods is closed.
    Egress stays open unless rules are configured."""
    if not settings.network_policy:
        return None
    http = {"protocol": "TCP", "port": PORT}
    inference = [http, {"protocol": "TCP", "port": GRPC_PORT}]  # REST and gRPC
    ingress = [
        {"from": [dict(p) for p in peers], "ports": ports}
        for peers, ports in (
            (settings.network_policy_inference_from, inference),
            (settings.network_policy_scrape_from, [http]),  # /metrics is on the HTTP port
        )
        if peers
    ] or [{"ports": inference}]  # no peers listed at all: any source, but only these ports
    spec: dict[str, Any] = {
        "podSelector": {"matchLabels": selector_labels(zoo, model)},
        "policyTypes": ["Ingress"],
        "ingress": ingress,
    }
    if settings.network_policy_egress is not None:
        spec["policyTypes"].append("Egress")
        spec["egress"] = [dict(rule) for rule in settings.network_policy_egress]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(zoo, model, child_name(zoo.name, model.name)),
        "spec": spec,
    }


def model_children(zoo: ZooSpec, model: ModelSpec, settings: Settings) -> list[Manifest]:
    """A model's objects, in apply order (the ConfigMap before the pods that mount it, the
    NetworkPolicy before the pods it guards)."""
    built = [
        signature_configmap(zoo, model),
        network_policy(zoo, model, settings),
        deployment(zoo, model, settings),
        service(zoo, model),
        pod_disruption_budget(zoo, model),
        horizontal_pod_autoscaler(zoo, model),
    ]
    return [m for m in built if m is not None]
