"""The reconcile pass: one zoo's spec → its children (apply, prune) and its status.

Flow: spec → parse (spec.py) → build (builders.py) → server-side apply (kube.py) →
status (status.py) → Events (events.py). Requests for one zoo are serialised and
coalesced, so the status has one writer and a burst of events costs one pass. Nothing
adds a finalizer: the children carry ownerReferences and the garbage collector removes
them with their zoo, even when the operator is not running.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelzoo_operator import builders, events
from modelzoo_operator.kube import ApiError, Kube
from modelzoo_operator.metrics import OperatorMetrics
from modelzoo_operator.pod_failures import model_pod_failures
from modelzoo_operator.pod_runtime import model_runtimes
from modelzoo_operator.settings import Settings
from modelzoo_operator.spec import (
    API_VERSION,
    KIND,
    ModelSpec,
    SpecError,
    ZooEntryNames,
    ZooSpec,
    child_name,
    parse_zoo,
)
from modelzoo_operator.status import PHASE_READY, model_phase, same_status, zoo_status

log = logging.getLogger("modelzoo.operator")
# Refusals that retrying cannot fix: they end in the Degraded condition, not in a retry loop.
PERMANENT_API_ERRORS = (400, 403, 404, 409, 422)


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _owned_by(meta: Mapping[str, Any], uid: str) -> bool:
    """A child of this zoo object (not of an earlier zoo of the same name)."""
    return any(r.get("uid") == uid for r in meta.get("ownerReferences") or ())


@dataclass
class _ZooState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    wanted: bool = False
    want_full: bool = False
    # What the last full pass found unworkable, for the status-only passes in between.
    failures: tuple[str, int, Mapping[str, str]] | None = None


class Reconciler:
    """Brings one zoo's children and status in line with its spec, one pass at a time."""

    def __init__(
        self,
        settings: Settings,
        kube: Kube,
        entry_names: ZooEntryNames,
        metrics: OperatorMetrics | None = None,
    ):
        self.settings = settings
        self.kube = kube
        self.entry_names = entry_names
        self.metrics = metrics or OperatorMetrics()
        self._zoos: dict[tuple[str, str], _ZooState] = {}

    async def request(self, namespace: str, name: str, *, full: bool = True) -> None:
        """Reconcile the zoo now, or fold this request into the pass already running.

        A full pass applies and prunes; the others (a child Deployment's readiness moved)
        only recompute the status, unless the spec changed since the last full pass."""
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
                    gone = await self._measured_pass(namespace, name, full, state)
            except BaseException:
                state.wanted = state.want_full = False
                raise
        if gone and not state.wanted and self._zoos.get(key) is state:
            del self._zoos[key]

    async def _measured_pass(self, namespace: str, name: str, full: bool, state: _ZooState) -> bool:
        kind = "full" if full else "status"
        started = time.perf_counter()
        result = "error"
        try:
            gone = await self._pass(namespace, name, full, state)
            result = "gone" if gone else "ok"
        finally:
            self.metrics.reconciles.labels(kind, result).inc()
            self.metrics.duration.labels(kind).observe(time.perf_counter() - started)
        if gone:
            self.metrics.forget(namespace, name)
        return gone

    async def _pass(self, namespace: str, name: str, full: bool, state: _ZooState) -> bool:
        """One reconciliation; True when the zoo is gone."""
        body = await asyncio.to_thread(self.kube.get, API_VERSION, KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return True  # the garbage collector removes the children
        zoo = parse_zoo(body, self.entry_names)
        known = state.failures
        if full or known is None or known[:2] != (zoo.uid, zoo.generation):
            failures = await asyncio.to_thread(self._apply, zoo)
            state.failures = (zoo.uid, zoo.generation, failures)
        else:
            failures = known[2]
        deployments = await asyncio.to_thread(self._deployments, zoo)
        # Pods are listed for what only they can tell: why a model that is not ready
        # fails, and which runtime a prepared graph got. A zoo of ready zoo entries
        # (most passes) costs no pod listing.
        waiting = any(model_phase(m, deployments.get(m.name))[0] != PHASE_READY for m in zoo.models)
        pods = await asyncio.to_thread(self._pods, zoo) if waiting or zoo_prepares(zoo) else []
        previous = body.get("status") or {}
        stamp = now()
        status = zoo_status(
            zoo,
            deployments,
            failures,
            self.settings,
            previous,
            stamp,
            model_pod_failures(pods),
            model_runtimes(pods),
        )
        self.metrics.observe_status(namespace, name, status)
        if same_status(previous, status):
            return False
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
        reporter = self.settings.identity or builders.MANAGER
        news = events.transition_events(body, previous, status, reporter, stamp)
        await asyncio.to_thread(events.post, self.kube, news)
        return False

    # The blocking parts below run in a worker thread.
    def _apply(self, zoo: ZooSpec) -> dict[str, str]:
        """Apply every workable model's children, prune what no model needs any more;
        return {model: why it cannot work}."""
        failures: dict[str, str] = {}
        desired: set[tuple[str, str]] = set()
        for model in zoo.models:
            try:
                self._check_references(zoo, model)
                for manifest in builders.model_children(zoo, model, self.settings):
                    desired.add((manifest["kind"], manifest["metadata"]["name"]))
                    self._apply_one(manifest)
            except SpecError as exc:
                failures[model.name] = str(exc)
        failures.update(zoo.problems)
        self._prune(zoo, desired, keep_models=set(failures))
        return failures

    def _apply_one(self, manifest: Mapping[str, Any]) -> None:
        try:
            self.kube.apply(manifest)
        except ApiError as exc:
            if exc.status not in PERMANENT_API_ERRORS:
                raise
            raise SpecError(
                f"the API server refused {manifest['kind']} "
                f"{manifest['metadata']['name']}: {exc.message}"
            ) from exc

    def _check_references(self, zoo: ZooSpec, model: ModelSpec) -> None:
        """The objects a model's pods mount must exist, or the pods hang in
        ContainerCreating: the PVC of a `source.pvc`, the auth and `source.s3` Secrets."""
        if model.source.kind == "pvc":
            claim = model.source.claim_name
            if self.kube.get("v1", "PersistentVolumeClaim", zoo.namespace, claim) is None:
                raise SpecError(
                    f"PersistentVolumeClaim {claim!r} not found in namespace {zoo.namespace!r}"
                )
        if not self.settings.check_secrets:
            return
        if model.auth:
            self._check_secret(zoo.namespace, model.auth.secret_name, "auth.secretName")
        s3 = model.source.s3
        if s3 and s3.secret_name:
            self._check_secret(zoo.namespace, s3.secret_name, "source.s3.secretName")

    def _check_secret(self, namespace: str, name: str, field: str) -> None:
        """Metadata only: the tokens never reach the operator, and no list/watch on Secrets
        is needed; a Secret created later is found by the drift sweep. Whether it holds the
        `key` cannot be seen without reading it: a missing key shows as the pods'
        FailedMount event."""
        try:
            found = self.kube.exists("v1", "Secret", namespace, name)
        except ApiError as exc:
            if exc.status != 403:
                raise
            raise SpecError(
                f"the operator may not check Secret {name!r} ({field}): grant it `get` "
                "on secrets (the chart's models.checkAuthSecrets) or turn the check off"
            ) from exc
        if not found:
            raise SpecError(f"Secret {name!r} ({field}) not found in namespace {namespace!r}")

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
        """The zoo's live Deployments, by model name."""
        selector = f"{builders.LABEL_ZOO}={zoo.name}"
        wanted = {child_name(zoo.name, m.name): m.name for m in zoo.models}
        found = {}
        for item in self.kube.list("apps/v1", "Deployment", zoo.namespace, selector):
            model = wanted.get(item["metadata"]["name"])
            if model and _owned_by(item["metadata"], zoo.uid):
                found[model] = item
        return found

    def _pods(self, zoo: ZooSpec) -> list[dict[str, Any]]:
        selector = f"{builders.LABEL_ZOO}={zoo.name}"
        return self.kube.list("v1", "Pod", zoo.namespace, selector)


def zoo_prepares(zoo: ZooSpec) -> bool:
    """Whether a model's runtime comes from its pods' prepare step (pod_runtime.py)."""
    return any(m.prepared for m in zoo.models)
