"""kopf wiring: which events reach the reconciler, and kopf's settings.

Every trigger ends in `Reconciler.request(namespace, name)` (reconciler.py):

* a ModelZoo is created, changed, or found at start-up (resume);
* a child Deployment changes (its readiness goes into the status) or a child of any
  kind is deleted (it is put back at once);
* a model pod fails to start (pod_failures.py: the status says why within seconds,
  not after the Deployment's progress deadline);
* the drift sweep (sweep.py), started here, runs beside kopf's handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import kopf
from prometheus_client import start_http_server

from modelzoo_operator import builders
from modelzoo_operator.kube import PLURALS, ApiError, Kube
from modelzoo_operator.metrics import OperatorMetrics
from modelzoo_operator.pod_failures import pod_failure
from modelzoo_operator.reconciler import Reconciler
from modelzoo_operator.settings import Settings
from modelzoo_operator.spec import GROUP, PLURAL, VERSION, load_zoo_entry_names
from modelzoo_operator.sweep import sweep_forever

log = logging.getLogger("modelzoo.operator")
CHILDREN = {builders.LABEL_MANAGED_BY: builders.MANAGER, builders.LABEL_ZOO: kopf.PRESENT}


def register(
    config: Settings, registry: kopf.OperatorRegistry | None = None
) -> kopf.OperatorRegistry:
    """Register the operator's handlers, bound to `config`, in `registry`."""
    registry = registry if registry is not None else kopf.OperatorRegistry()
    background: list[asyncio.Task] = []
    servers: list[Any] = []  # the metrics endpoint (prometheus_client's WSGI server)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        ours = config
        # A watch that goes silent (a dropped connection nobody noticed) is given up and
        # re-opened instead of freezing the operator.
        settings.watching.server_timeout = ours.watch_server_timeout
        settings.watching.client_timeout = ours.watch_client_timeout
        settings.watching.connect_timeout = 30
        settings.networking.request_timeout = ours.request_timeout
        # Progress and the last-handled spec live in annotations: the CRD's structural
        # schema would prune unknown status fields.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
            prefix="modelzoo.dev"
        )
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="modelzoo.dev", key="last-handled-configuration"
        )
        # Our own events say what matters; kopf's per-handler chatter stays in the log.
        settings.posting.level = logging.ERROR
        settings.peering.lifetime = 60
        kube = Kube.from_environment(timeout=ours.request_timeout)
        entry_names = load_zoo_entry_names(ours.catalog, ours.zoo_entries)
        log.info("zoo entries from %s: %s", entry_names.origin, sorted(entry_names.names or ()))
        metrics = OperatorMetrics()
        if ours.metrics_port:
            server, _ = start_http_server(ours.metrics_port, registry=metrics.registry)
            servers.append(server)
            log.info("metrics on http://0.0.0.0:%d/metrics", ours.metrics_port)
        memo.reconciler = Reconciler(ours, kube, entry_names, metrics)
        background.append(asyncio.create_task(sweep_forever(memo.reconciler)))

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for server in servers:
            server.shutdown()
            server.server_close()

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry, id="reconcile")
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry, id="reconcile")
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry, id="reconcile")
    async def zoo_changed(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
        try:
            await memo.reconciler.request(namespace, name, full=True)
        except ApiError as exc:
            raise kopf.TemporaryError(f"API request failed: {exc}", delay=10) from exc
        except OSError as exc:  # connection trouble: try again soon, not in a tight loop
            raise kopf.TemporaryError(f"cannot reach the API server: {exc}", delay=10) from exc

    def changed(type: str | None, **_: Any) -> bool:
        return type is not None  # not the initial listing: resume handlers cover every zoo

    def deleted(type: str | None, **_: Any) -> bool:
        return type == "DELETED"

    @kopf.on.event(
        "apps/v1",
        "deployments",
        labels=CHILDREN,
        when=changed,
        registry=registry,
        id="deployments-changed",
    )
    async def deployment_event(
        type: str | None, namespace: str, labels: Mapping[str, str], memo: kopf.Memo, **_: Any
    ) -> None:
        # A deleted Deployment is put back; any other change may move readiness.
        await memo.reconciler.request(namespace, labels[builders.LABEL_ZOO], full=type == "DELETED")

    def failing(body: Mapping[str, Any], **_: Any) -> bool:
        return pod_failure(body) is not None  # recovery shows in the Deployment's readiness

    @kopf.on.event(
        "v1", "pods", labels=CHILDREN, when=failing, registry=registry, id="pods-failing"
    )
    async def pod_event(
        namespace: str, labels: Mapping[str, str], memo: kopf.Memo, **_: Any
    ) -> None:
        await memo.reconciler.request(namespace, labels[builders.LABEL_ZOO], full=False)

    async def child_deleted(
        namespace: str, labels: Mapping[str, str], memo: kopf.Memo, **_: Any
    ) -> None:
        await memo.reconciler.request(namespace, labels[builders.LABEL_ZOO], full=True)

    # The Deployment has its own handler above; the NetworkPolicy kind only where the
    # operator has rights on it (child_kinds knows).
    for group_version, kind in builders.child_kinds(config):
        if kind == "Deployment":
            continue
        plural, _ = PLURALS[kind]
        kopf.on.event(
            group_version,
            plural,
            labels=CHILDREN,
            when=deleted,
            registry=registry,
            id=f"{plural}-deleted",
        )(child_deleted)

    return registry
