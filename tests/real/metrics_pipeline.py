"""The metrics pipeline a platform team installs for autoscaling, run against the real node:
Prometheus (built from its Go module by tests/cluster/build.sh: Debian's leaves out
Kubernetes service discovery) discovering the model pods through the API server (Kubernetes service
discovery, `role: pod`) and scraping them, and prometheus-adapter (built from its Go
module by tests/cluster/build.sh) serving `modelzoo_inflight_requests` through the
aggregated custom metrics API, for the cluster's real HPA controller.

    host                                   node netns
    prometheus 127.0.0.1:<p> -- scrapes --> model pods 10.244.0.x:8080 (routes via the veth)
    prometheus-adapter 10.251.0.1:<a> <-- kube-apiserver's aggregator, through
        APIService v1beta2/v1beta1.custom.metrics.k8s.io -> Service monitoring/prometheus-adapter
        -> EndpointSlice 10.251.0.1:<a> (the host end of the veth: an EndpointSlice may not
        hold a loopback address)

Each of the two runs under its own user with the RBAC its chart would grant (client
certificates of the cluster's CA), not as the admin. The adapter serves the rules of
charts/modelzoo/files/prometheus-adapter-rules.yaml, the file the chart README gives
users, with a 5 s relist instead of 10 min so a new model's series are found at once.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.cluster import realnode
from tests.e2e.kube import eventually, get_json
from tests.prometheus_process import Prometheus, run_prometheus
from tests.servers import free_port, stop

ROOT = Path(__file__).resolve().parents[2]
ADAPTER_RULES = ROOT / "charts" / "modelzoo" / "files" / "prometheus-adapter-rules.yaml"
NAMESPACE = "monitoring"
ADAPTER = "prometheus-adapter"
CUSTOM_METRICS = "custom.metrics.k8s.io"
PROMETHEUS_USER = "system:modelzoo-prometheus"
ADAPTER_USER = "system:modelzoo-prometheus-adapter"
SCRAPE_JOB = "modelzoo-pods"


def pod_scrape_config(api_server: str, ca: Path, crt: Path, key: Path) -> dict:
    """A `role: pod` scrape job keyed on the pods' prometheus.io/* annotations (the operator
    sets them), labelled with `namespace` and `pod` as the adapter's rule needs. One
    target per pod: its container port named `http` (the gRPC port would be a second)."""
    return {
        "job_name": SCRAPE_JOB,
        "kubernetes_sd_configs": [
            {
                "role": "pod",
                "api_server": api_server,
                "tls_config": {"ca_file": str(ca), "cert_file": str(crt), "key_file": str(key)},
            }
        ],
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                "regex": "true",
                "action": "keep",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                "regex": "http",
                "action": "keep",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                "regex": "(.+)",
                "target_label": "__metrics_path__",
            },
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }


def rbac_objects() -> list[dict]:
    """What the two users may do: Prometheus lists and watches pods; the adapter delegates
    authentication and authorization to the API server, reads its front-proxy CA and looks
    up the objects its metrics describe (the prometheus-adapter chart's grants)."""

    def cluster_role(name: str, resources: list[str]) -> dict:
        rule = {"apiGroups": [""], "resources": resources, "verbs": ["get", "list", "watch"]}
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [rule],
        }

    def binding(kind: str, name: str, role_kind: str, role: str, user: str, ns: str = "") -> dict:
        metadata = {"name": name, **({"namespace": ns} if ns else {})}
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": kind,
            "metadata": metadata,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }

    crb = "ClusterRoleBinding"
    return [
        cluster_role("modelzoo-prometheus", ["pods"]),
        binding(crb, "modelzoo-prometheus", "ClusterRole", "modelzoo-prometheus", PROMETHEUS_USER),
        cluster_role("modelzoo-adapter-resources", ["namespaces", "pods", "services", "nodes"]),
        binding(
            crb, "modelzoo-adapter-resources", "ClusterRole", "modelzoo-adapter-resources",
            ADAPTER_USER,
        ),
        binding(crb, "modelzoo-adapter-delegator", "ClusterRole", "system:auth-delegator",
                ADAPTER_USER),
        binding(
            "RoleBinding", "modelzoo-adapter-auth-reader", "Role",
            "extension-apiserver-authentication-reader", ADAPTER_USER, ns="kube-system",
        ),
    ]  # fmt: skip


def registration_objects(port: int, ca_bundle: bytes) -> list[dict]:
    """The adapter's Service (no selector: its one endpoint is the host end of the veth)
    and the APIServices that route custom.metrics.k8s.io to it."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": ADAPTER, "namespace": NAMESPACE},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
    }
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": ADAPTER,
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": ADAPTER},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [realnode.LINK_HOST], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }
    apiservices = [
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": f"{version}.{CUSTOM_METRICS}"},
            "spec": {
                "group": CUSTOM_METRICS,
                "version": version,
                "service": {"namespace": NAMESPACE, "name": ADAPTER, "port": 443},
                "caBundle": base64.b64encode(ca_bundle).decode(),
                "groupPriorityMinimum": 100,
                "versionPriority": priority,
            },
        }
        for version, priority in (("v1beta2", 200), ("v1beta1", 100))
    ]
    return [service, endpoints, *apiservices]


def as_list(objects: list[dict]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})


@dataclass(frozen=True)
class MetricsPipeline:
    prometheus: Prometheus
    adapter_log: Path

    def custom_metric(self, cluster, namespace: str, metric: str) -> dict[str, float]:
        """pod → value of `metric`, as the HPA controller reads it (the custom metrics API)."""
        path = f"/apis/{CUSTOM_METRICS}/v1beta2/namespaces/{namespace}/pods/*/{metric}"
        items = json.loads(cluster.kubectl("get", "--raw", path).stdout)["items"]
        return {i["describedObject"]["name"]: _quantity(i["value"]) for i in items}


def _quantity(value: str) -> float:
    """A metric value as the custom metrics API writes it: a plain number or milli-units."""
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def _api_server(cluster) -> str:
    config = json.loads(cluster.kubectl("config", "view", "-o", "json").stdout)
    return config["clusters"][0]["cluster"]["server"]


def _available(cluster) -> bool:
    service = get_json(cluster, "apiservice", f"v1beta2.{CUSTOM_METRICS}")
    conditions = service.get("status", {}).get("conditions", [])
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)


@contextlib.contextmanager
def metrics_pipeline(cluster, bin: Path, workdir: Path) -> Iterator[MetricsPipeline]:
    """Prometheus and prometheus-adapter running, the adapter registered and Available;
    everything stopped and deregistered on exit."""
    node = cluster.node
    ca, _ = node.cluster_ca()
    server = _api_server(cluster)
    workdir.mkdir(parents=True, exist_ok=True)
    prom_crt, prom_key = node.client_cert("prometheus", PROMETHEUS_USER, "modelzoo:monitoring")
    adapter_crt, adapter_key = node.client_cert("adapter", ADAPTER_USER, "modelzoo:monitoring")
    serving = realnode.issue_cert(
        node.cluster_ca(), node.pki, "adapter-serving", f"/CN={ADAPTER}",
        f"subjectAltName=DNS:{ADAPTER}.{NAMESPACE}.svc,IP:{realnode.LINK_HOST}\n"
        "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
    )  # fmt: skip
    kubeconfig = node.client_kubeconfig("adapter", adapter_crt, adapter_key, server)
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl("apply", "-f", "-", input=as_list(rbac_objects()))
    scrape = pod_scrape_config(server, ca, prom_crt, prom_key)
    port = free_port()
    log = workdir / "prometheus-adapter.log"
    try:
        with run_prometheus([scrape], workdir / "prometheus", bin / "prometheus") as prometheus:
            with log.open("wb") as sink:
                adapter = subprocess.Popen(
                    [
                        str(bin / "prometheus-adapter"),
                        f"--bind-address={realnode.LINK_HOST}",
                        f"--secure-port={port}",
                        f"--tls-cert-file={serving[0]}",
                        f"--tls-private-key-file={serving[1]}",
                        f"--cert-dir={workdir / 'adapter-certs'}",
                        f"--lister-kubeconfig={kubeconfig}",
                        f"--authentication-kubeconfig={kubeconfig}",
                        f"--authorization-kubeconfig={kubeconfig}",
                        f"--prometheus-url={prometheus.url}/",
                        "--metrics-relist-interval=5s",
                        f"--config={ADAPTER_RULES}",
                    ],
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    cwd=workdir,
                )
            try:
                objects = registration_objects(port, ca.read_bytes())
                cluster.kubectl("apply", "-f", "-", input=as_list(objects))
                eventually(
                    lambda: adapter.poll() is None and _available(cluster),
                    120,
                    f"the custom metrics API to be Available (adapter log: {log})",
                )
                yield MetricsPipeline(prometheus, log)
            finally:
                for version in ("v1beta2", "v1beta1"):
                    cluster.kubectl(
                        "delete", "apiservice", f"{version}.{CUSTOM_METRICS}", check=False
                    )
                stop(adapter, grace=10)
    finally:
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)
        cluster.kubectl("delete", "-f", "-", "--ignore-not-found", check=False,
                        input=as_list(rbac_objects()))  # fmt: skip
