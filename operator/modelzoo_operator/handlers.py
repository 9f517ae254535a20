"""kopf handlers: read the event, reconcile through the pure builders, write the status.

Flow: spec → parse (spec.py) → build (builders.py) → server-side apply (kube.py) →
status (status.py). Every trigger ends in `Reconciler.request(namespace, name)`:

* a ModelZoo is created, changed, or found at start-up (resume);
* a child Deployment changes (its readiness goes into the status) or a child of any
  kind is deleted (it is put back at once);
* the drift sweep, every `drift_interval` seconds, re-applies every zoo, which undoes
  hand edits of the fields the operator sets (server-side apply with force).

Requests for one zoo are serialised and coalesced, so the status has one writer and
a burst of events costs one pass. Nothing adds a finalizer: the children carry
ownerReferences and the garbage collector removes them with their zoo, even when the
operator is not running. (kopf's @timer would add a finalizer to every zoo, which is
why the sweep is one operator-wide task instead.)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from modelzoo_operator import builders
from modelzoo_operator.kube import PLURALS, ApiError, Kube
from modelzoo_operator.settings import Settings
from modelzoo_operator.spec import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    Catalog,
    SpecError,
    ZooSpec,
    child_name,
    load_catalog,
    parse_zoo,
)
from modelzoo_operator.status import (
    READY,
    degraded_message,
    same_status,
    true_condition,
    zoo_status,
)

log = logging.getLogger("modelzoo.operator")
CHILDREN = {builders.LABEL_MANAGED_BY: builders.MANAGER, builders.LABEL_ZOO: kopf.PRESENT}
# Refusals that retrying cannot fix: they end in the Degraded condition, not in a retry loop.
PERMANENT_API_ERRORS = (400, 403, 404, 409, 422)


def _owned_by(meta: Mapping[str, Any], uid: str) -> bool:
    """A child of this zoo object (not of an earlier zoo of the same name)."""
    return any(r.get("uid") == uid for r in meta.get("ownerReferences") or ())


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _ZooState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wanted: bool = False
    want_full: bool = False
    # What the last full pass found unworkable, for the status-only passes in between.
    failures: tuple[str, int, Mapping[str, str]] | None = None


class Reconciler:
    """Brings one zoo's children and status in line with its spec, one pass at a time."""

    def __init__(self, settings: Settings, kube: Kube, catalog: Catalog):
        self.settings = settings
        self.kube = kube
        self.catalog = catalog
        self._zoos: dict[tuple[str, str], _ZooState] = {}

    async def request(self, namespace: str, name: str, *, full: bool = True) -> None:
        """Reconcile the zoo now, or fold this request into the pass already running."""
        key = (namespace, name)
        state = self._zoos.setdefault(key, _ZooState())
        state.wanted = True
        state.want_full = state.want_full or full
        if state.lock.locked():
            return  # the running pass loops once more and sees this request
        gone = False
        async with state.lock:
            try:
                while state.wanted:
                    full, state.wanted, state.want_full = state.want_full, False, False
                    gone = await self._pass(namespace, name, full, state)
            except BaseException:
                state.wanted = state.want_full = False
                raise
        if gone and not state.wanted and self._zoos.get(key) is state:
            del self._zoos[key]

    async def _pass(self, namespace: str, name: str, full: bool, state: _ZooState) -> bool:
        """One reconciliation; True when the zoo is gone."""
        body = await asyncio.to_thread(self.kube.get, API_VERSION, KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return True  # the garbage collector removes the children
        zoo = parse_zoo(body, self.catalog)
        known = state.failures
        if full or known is None or known[:2] != (zoo.uid, zoo.generation):
            failures = await asyncio.to_thread(self._apply, zoo)
            state.failures = (zoo.uid, zoo.generation, failures)
        else:
            failures = known[2]
        deployments = await asyncio.to_thread(self._deployments, zoo)
        previous = body.get("status") or {}
        status = zoo_status(zoo, deployments, failures, self.settings, previous, now())
        if not same_status(previous, status):
            try:
                await asyncio.to_thread(
                    self.kube.patch_status, API_VERSION, KIND, namespace, name, status
                )
            except ApiError as exc:
                if exc.status == 404:
                    # Deleted during this pass: what was applied meanwhile carries an
                    # ownerReference to it, so the garbage collector removes it too.
                    return True
                raise
            await asyncio.to_thread(self._events, body, previous, status)
        return False

    # ---------------------------------------------------------------- blocking parts
    def _apply(self, zoo: ZooSpec) -> dict[str, str]:
        """Apply every workable model's children, prune what no model needs any more;
        return {model: why it cannot work}."""
        failures: dict[str, str] = {}
        desired: set[tuple[str, str]] = set()
        for model in zoo.models:
            try:
                if model.source.kind == "pvc":
                    claim = model.source.claim_name
                    if self.kube.get("v1", "PersistentVolumeClaim", zoo.namespace, claim) is None:
                        raise SpecError(
                            f"PersistentVolumeClaim {claim!r} not found in namespace "
                            f"{zoo.namespace!r}"
                        )
                if model.auth and self.settings.check_secrets:
                    self._check_secret(zoo.namespace, model.auth.secret_name)
                for manifest in builders.model_children(zoo, model, self.settings):
                    desired.add((manifest["kind"], manifest["metadata"]["name"]))
                    try:
                        self.kube.apply(manifest)
                    except ApiError as exc:
                        if exc.status not in PERMANENT_API_ERRORS:
                            raise
                        raise SpecError(
                            f"the API server refused {manifest['kind']} "
                            f"{manifest['metadata']['name']}: {exc.message}"
                        ) from exc
            except SpecError as exc:
                failures[model.name] = str(exc)
        failures.update(zoo.problems)
        self._prune(zoo, desired, keep_models=set(failures))
        return failures

    def _check_secret(self, namespace: str, name: str) -> None:
        """The auth Secret must exist before pods mount it (they would hang in
        ContainerCreating). Metadata only: the tokens never reach the operator, and no
        list/watch on Secrets is needed; a Secret created later is found by the drift sweep.
        Whether it holds the `key` cannot be seen without reading it: a missing key shows
        as the pods' FailedMount event."""
        try:
            found = self.kube.exists("v1", "Secret", namespace, name)
        except ApiError as exc:
            if exc.status != 403:
                raise
            raise SpecError(
                f"the operator may not check Secret {name!r} (auth.secretName): grant it `get` "
                "on secrets (the chart's models.checkAuthSecrets) or turn the check off"
            ) from exc
        if not found:
            raise SpecError(
                f"Secret {name!r} (auth.secretName) not found in namespace {namespace!r}"
            )

    def _prune(self, zoo: ZooSpec, desired: set[tuple[str, str]], keep_models: set[str]) -> None:
        """Delete children of this zoo that no model needs: removed models, a PDB or HPA
        no longer asked for. A model that cannot work now keeps what it had."""
        selector = f"{builders.LABEL_ZOO}={zoo.name}"
        for api_version, kind in builders.child_kinds(self.settings):
            for item in self.kube.list(api_version, kind, zoo.namespace, selector):
                meta = item["metadata"]
                model = (meta.get("labels") or {}).get(builders.LABEL_MODEL, "")
                if (
                    not _owned_by(meta, zoo.uid)
                    or (kind, meta["name"]) in desired
                    or model in keep_models
                ):
                    continue
                log.info(
                    "deleting %s %s/%s (no longer in the spec)", kind, zoo.namespace, meta["name"]
                )
                self.kube.delete(api_version, kind, zoo.namespace, meta["name"], uid=meta["uid"])

    def _deployments(self, zoo: ZooSpec) -> dict[str, dict[str, Any]]:
        selector = f"{builders.LABEL_ZOO}={zoo.name}"
        wanted = {child_name(zoo.name, m.name): m.name for m in zoo.models}
        found = {}
        for item in self.kube.list("apps/v1", "Deployment", zoo.namespace, selector):
            model = wanted.get(item["metadata"]["name"])
            if model and _owned_by(item["metadata"], zoo.uid):
                found[model] = item
        return found

    def _events(
        self, body: Mapping[str, Any], previous: Mapping[str, Any], status: Mapping[str, Any]
    ) -> None:
        """A Warning when the zoo becomes (differently) degraded, a Normal one when it becomes
        ready; nothing while it stays the same, so a broken spec never floods the events."""
        message = degraded_message(status)
        if message and message != degraded_message(previous):
            self._event(body, "Warning", "Degraded", message)
        if true_condition(status, READY) and not true_condition(previous, READY):
            self._event(body, "Normal", "Ready", f"all models ready: {status.get('urls', '')}")

    def _event(self, body: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        meta = body["metadata"]
        stamp = now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": kind,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": builders.MANAGER},
            "reportingComponent": builders.MANAGER,
            "reportingInstance": self.settings.identity or builders.MANAGER,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.kube.create(event)
        except ApiError as exc:  # an event is a courtesy: never fail the pass for it
            log.warning("could not post a %s event on %s: %s", reason, meta["name"], exc)

    # ---------------------------------------------------------------- the drift sweep
    def is_active_peer(self) -> bool:
        """With peering, only the replica that kopf lets run (the highest priority alive)
        sweeps; kopf pauses the others' handlers, and this keeps their sweeps quiet too."""
        if not self.settings.peering:
            return True
        if self.settings.clusterwide:
            peering = self.kube.get("kopf.dev/v1", "ClusterKopfPeering", "", self.settings.peering)
        else:
            peering = self.kube.get(
                "kopf.dev/v1", "KopfPeering", self.settings.namespaces[0], self.settings.peering
            )
        me, mine = self.settings.identity, self.settings.peering_priority
        moment = datetime.datetime.now(datetime.UTC)
        for identity, info in ((peering or {}).get("status") or {}).items():
            if identity == me or not isinstance(info, dict):
                continue
            try:
                seen = datetime.datetime.fromisoformat(str(info["lastseen"]))
                if seen.tzinfo is None:
                    seen = seen.replace(tzinfo=datetime.UTC)
                alive = seen + datetime.timedelta(seconds=float(info.get("lifetime", 60))) > moment
            except (KeyError, ValueError, TypeError):
                continue
            if alive and int(info.get("priority", 0)) >= mine:
                return False
        return True

    def list_zoos(self) -> list[tuple[str, str]]:
        spaces = self.settings.namespaces or ("",)
        return [
            (z["metadata"]["namespace"], z["metadata"]["name"])
            for ns in spaces
            for z in self.kube.list(API_VERSION, KIND, ns)
        ]

    async def sweep_forever(self, parallel: int = 4) -> None:
        gate = asyncio.Semaphore(parallel)

        async def one(namespace: str, name: str) -> None:
            async with gate:
                try:
                    await self.request(namespace, name, full=True)
                except Exception as exc:
                    log.warning("drift repair of %s/%s failed: %s", namespace, name, exc)

        while True:
            await asyncio.sleep(self.settings.drift_interval)
            try:
                if not await asyncio.to_thread(self.is_active_peer):
                    continue
                zoos = await asyncio.to_thread(self.list_zoos)
            except Exception as exc:
                log.warning("drift sweep skipped: %s", exc)
                continue
            await asyncio.gather(*(one(ns, name) for ns, name in zoos))


def register(
    config: Settings, registry: kopf.OperatorRegistry | None = None
) -> kopf.OperatorRegistry:
    """Register the operator's handlers, bound to `config`, in `registry`."""
    registry = registry if registry is not None else kopf.OperatorRegistry()
    background: list[asyncio.Task] = []

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
        catalog = load_catalog(ours.catalog, ours.zoo_entries)
        log.info("zoo entries from %s: %s", catalog.origin, sorted(catalog.entries or ()))
        memo.reconciler = Reconciler(ours, kube, catalog)
        background.append(asyncio.create_task(memo.reconciler.sweep_forever()))

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

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
