"""A small blocking Kubernetes client: server-side apply, get, list, delete, status, events.

It talks REST through the `kubernetes` package's ApiClient (which loads kubeconfig or
the in-cluster service account and refreshes its token), one generic path per kind,
so every child kind goes through the same apply/prune code. Handlers call it in a
worker thread.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

FIELD_MANAGER = "modelzoo-operator"
# Asks the API server for an object's metadata only (PartialObjectMetadata): a Secret's
# existence without its data, which then never reaches the operator's memory or logs.
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

# kind -> (plural, namespaced)
PLURALS: dict[str, tuple[str, bool]] = {
    "Deployment": ("deployments", True),
    "Service": ("services", True),
    "ConfigMap": ("configmaps", True),
    "PodDisruptionBudget": ("poddisruptionbudgets", True),
    "HorizontalPodAutoscaler": ("horizontalpodautoscalers", True),
    "NetworkPolicy": ("networkpolicies", True),
    "Secret": ("secrets", True),
    "Pod": ("pods", True),
    "PersistentVolumeClaim": ("persistentvolumeclaims", True),
    "Event": ("events", True),
    "ModelZoo": ("modelzoos", True),
    "KopfPeering": ("kopfpeerings", True),
    "ClusterKopfPeering": ("clusterkopfpeerings", False),
}


class ApiError(Exception):
    """A refused API request: `status` is the HTTP code, the message the server's words."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def path(api_version: str, kind: str, namespace: str = "", name: str = "") -> str:
    plural, namespaced = PLURALS[kind]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    if namespaced and namespace:
        base += f"/namespaces/{namespace}"
    base += f"/{plural}"
    return f"{base}/{name}" if name else base


class Kube:
    def __init__(self, api: k8s_client.ApiClient, timeout: float = 30.0):
        self.api = api
        self.timeout = timeout

    @classmethod
    def from_environment(cls, timeout: float = 30.0) -> Kube:
        """The in-cluster service account in a pod, else $KUBECONFIG / ~/.kube/config."""
        configuration = k8s_client.Configuration()
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=configuration)
        else:
            k8s_config.load_kube_config(client_configuration=configuration)
        return cls(k8s_client.ApiClient(configuration), timeout)

    def _request(
        self,
        method: str,
        url_path: str,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Any:
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        serialized = self.api.param_serialize(
            method=method,
            resource_path=url_path,
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(*serialized, _request_timeout=self.timeout)
        response.read()
        text = response.data.decode("utf-8", "replace") if response.data else ""
        if not 200 <= response.status < 300:
            try:
                status = json.loads(text)
                reason, message = status.get("reason", ""), status.get("message", text)
            except ValueError:
                reason, message = "", text
            raise ApiError(response.status, reason or str(response.reason), message)
        return json.loads(text) if text else None

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply as the operator's field manager, taking over conflicting fields:
        a hand edit of a field the operator sets is undone, other fields are left alone."""
        meta = manifest["metadata"]
        return self._request(
            "PATCH",
            path(manifest["apiVersion"], manifest["kind"], meta.get("namespace", ""), meta["name"]),
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            body=dict(manifest),
            content_type="application/apply-patch+yaml",  # JSON is YAML
        )

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._request("GET", path(api_version, kind, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def exists(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Whether the object is there, from a metadata-only GET (RBAC: `get`, nothing more)."""
        try:
            self._request("GET", path(api_version, kind, namespace, name), accept=METADATA_ONLY)
            return True
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise

    def list(
        self, api_version: str, kind: str, namespace: str = "", label_selector: str = ""
    ) -> list[dict[str, Any]]:
        query = [("labelSelector", label_selector)] if label_selector else []
        found = self._request("GET", path(api_version, kind, namespace), query=query)
        return list(found.get("items") or [])

    def delete(self, api_version: str, kind: str, namespace: str, name: str, uid: str = "") -> bool:
        """Delete (in the background); False if it was already gone."""
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self._request("DELETE", path(api_version, kind, namespace, name), body=body)
            return True
        except ApiError as exc:
            if exc.status in (404, 409):  # gone, or replaced by a new object of that name
                return False
            raise

    def patch_status(
        self, api_version: str, kind: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self._request(
            "PATCH",
            path(api_version, kind, namespace, name) + "/status",
            body={"status": dict(status)},
            content_type="application/merge-patch+json",
        )

    def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        return self._request(
            "POST",
            path(manifest["apiVersion"], manifest["kind"], meta.get("namespace", "")),
            body=dict(manifest),
        )
