"""A zoo's status, computed from its spec and its Deployments as they are (pure).

One function builds the whole status; the handlers write it in one patch, from one
place, so there is never a half-updated status or two writers racing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelzoo_models.contract import LITERT, TENSORFLOW
from modelzoo_operator.builders import grpc_address, model_url
from modelzoo_operator.settings import Settings
from modelzoo_operator.spec import ModelSpec, ZooSpec

READY, PROGRESSING, DEGRADED = "Ready", "Progressing", "Degraded"
PHASE_PENDING, PHASE_PROGRESSING, PHASE_READY, PHASE_FAILED = (
    "Pending",
    "Progressing",
    "Ready",
    "Failed",
)


def deployment_phase(
    deployment: Mapping[str, Any] | None, floor: int = 0
) -> tuple[str, str, int, int]:
    """(phase, message, desired replicas, ready replicas) of one model's Deployment.

    `floor` is the autoscaler's minReplicas: a new Deployment starts at one replica and
    the autoscaler (ours or an external one) raises it, so the model is not ready before
    it has that many."""
    if deployment is None:
        return PHASE_PENDING, "creating the Deployment", 0, 0
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    meta = deployment.get("metadata") or {}
    desired = max(int(spec.get("replicas", 1)), floor)
    ready = int(status.get("readyReplicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    observed = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    for condition in status.get("conditions") or ():
        if (
            condition.get("type") == "Progressing"
            and condition.get("status") == "False"
            and condition.get("reason") == "ProgressDeadlineExceeded"
        ):
            return (
                PHASE_FAILED,
                f"pods did not become ready in time ({ready}/{desired} ready): "
                f"{condition.get('message', '')}".strip(),
                desired,
                ready,
            )
    if observed and ready >= desired and updated >= desired:
        message = "scaled to zero" if desired == 0 else f"{ready}/{desired} replicas ready"
        return PHASE_READY, message, desired, ready
    return PHASE_PROGRESSING, f"{ready}/{desired} replicas ready", desired, ready


def model_phase(
    model: ModelSpec, deployment: Mapping[str, Any] | None
) -> tuple[str, str, int, int]:
    """`deployment_phase` with the model's autoscaling floor."""
    floor = model.autoscaling.min_replicas if model.autoscaling else 0
    return deployment_phase(deployment, floor)


def model_runtime(model: ModelSpec, outcome: tuple[str, str] | None) -> tuple[str, str]:
    """(runtime, why) of the model's pods: from the spec where it decides, else from what
    the pods' prepare step found (`outcome`, pod_runtime.py); ("", "") until one says."""
    if model.served_runtime == TENSORFLOW:
        if model.runtime:
            return TENSORFLOW, "the spec asks for runtime tensorflow"
        return TENSORFLOW, "a GPU pod runs the graph on TensorFlow"
    if model.record is None:  # a zoo entry: its catalog record decides
        if model.on_litert:
            return LITERT, "the zoo entry's verified .tflite"
        return TENSORFLOW, "the zoo entry has no verified .tflite (see its catalog record)"
    if not model.prepared:
        return TENSORFLOW, "a tensor model is not prepared for LiteRT (it is verified on images)"
    return outcome or ("", "")


def _condition(
    kind: str,
    true: bool,
    reason: str,
    message: str,
    generation: int,
    before: Mapping[str, Any],
    now: str,
) -> dict[str, Any]:
    status = "True" if true else "False"
    # The transition time moves only when the status flips.
    since = before.get("lastTransitionTime") if before.get("status") == status else None
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message[:32000],
        "observedGeneration": generation,
        "lastTransitionTime": since or now,
    }


def _model_entry(
    zoo: ZooSpec,
    name: str,
    model: ModelSpec | None,
    deployment: Mapping[str, Any] | None,
    failure: str | None,
    pod_failure: str | None,
    outcome: tuple[str, str] | None,
    settings: Settings,
) -> dict[str, Any]:
    """One model's line of `status.models`."""
    entry: dict[str, Any] = {"name": name, "replicas": 0, "readyReplicas": 0}
    if failure or model is None:
        entry.update(phase=PHASE_FAILED, message=failure or "cannot be served")
        return entry
    phase, message, desired, ready = model_phase(model, deployment)
    if deployment is None:
        desired = model.min_replicas
    if phase != PHASE_READY and pod_failure:
        # Failing pods say why long before the Deployment's progress deadline does.
        phase, message = PHASE_FAILED, pod_failure
    entry.update(
        replicas=desired,
        readyReplicas=ready,
        url=model_url(zoo, model, settings),
        grpcAddress=grpc_address(zoo, model, settings),
        phase=phase,
        message=message,
    )
    runtime, why = model_runtime(model, outcome)
    if runtime:
        entry.update(runtime=runtime, runtimeReason=why)
    return entry


def _listing(entries: list[dict[str, Any]]) -> str:
    return "; ".join(f"{m['name']}: {m['message']}" for m in entries)


def _conditions(
    models: list[dict[str, Any]], generation: int, previous: Mapping[str, Any] | None, now: str
) -> list[dict[str, Any]]:
    """Ready, Progressing and Degraded, from the models' phases."""
    failed = [m for m in models if m["phase"] == PHASE_FAILED]
    waiting = [m for m in models if m["phase"] in (PHASE_PENDING, PHASE_PROGRESSING)]
    ready = [m for m in models if m["phase"] == PHASE_READY]
    all_ready = len(ready) == len(models) and bool(models)
    not_ready = "ModelsFailed" if failed else "ModelsNotReady"
    # (type, is true, (reason, message) when true, (reason, message) when false)
    table = (
        (
            READY,
            all_ready,
            ("AllModelsReady", "every model has its ready replicas"),
            (not_ready, _listing(failed + waiting) or "no models"),
        ),
        (
            PROGRESSING,
            bool(waiting),
            ("RollingOut", _listing(waiting)),
            ("Settled", "no model is rolling out"),
        ),
        (
            DEGRADED,
            bool(failed),
            ("ModelsFailed", _listing(failed)),
            ("AllModelsWorkable", "every model can be served"),
        ),
    )
    before = {c.get("type"): c for c in (previous or {}).get("conditions") or ()}
    conditions = []
    for kind, true, if_true, if_false in table:
        reason, message = if_true if true else if_false
        was = before.get(kind) or {}
        conditions.append(_condition(kind, true, reason, message, generation, was, now))
    return conditions


def zoo_status(
    zoo: ZooSpec,
    deployments: Mapping[str, Mapping[str, Any]],
    failures: Mapping[str, str],
    settings: Settings,
    previous: Mapping[str, Any] | None,
    now: str,
    pod_failures: Mapping[str, str] | None = None,
    runtimes: Mapping[str, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """The complete status: per model, the summary columns and the three conditions.

    `deployments` maps model names to their live Deployments; `failures` maps model
    names to why they cannot work (spec problems, a missing PVC, a refused apply);
    `pod_failures` to why their pods do not start (pod_failures.py); `runtimes` to what
    their prepare step chose (pod_runtime.py).
    """
    pod_failures = pod_failures or {}
    runtimes = runtimes or {}
    by_name = {m.name: m for m in zoo.models}
    models = [
        _model_entry(
            zoo,
            name,
            by_name.get(name),
            deployments.get(name),
            failures.get(name) or zoo.problems.get(name),
            pod_failures.get(name),
            runtimes.get(name),
            settings,
        )
        for name in zoo.all_names
    ]
    gpus = sum(by_name[m["name"]].gpu * m["replicas"] for m in models if m["phase"] != PHASE_FAILED)
    urls = [m["url"] for m in models if m.get("url")]
    return {
        "observedGeneration": zoo.generation,
        "modelNames": ",".join(zoo.all_names),
        "ready": f"{sum(m['phase'] == PHASE_READY for m in models)}/{len(models)}",
        "gpus": gpus,
        "urls": ",".join(urls),
        "conditions": _conditions(models, zoo.generation, previous, now),
        "models": models,
    }


def same_status(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """True when writing `new` would change nothing the schema keeps."""
    old = old or {}
    return all(old.get(key) == value for key, value in new.items())


def true_condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The condition of type `kind` when its status is True, else None."""
    for condition in status.get("conditions") or ():
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def degraded_message(status: Mapping[str, Any]) -> str:
    """The Degraded condition's message when it is True, else ''."""
    condition = true_condition(status, DEGRADED)
    return str(condition.get("message") or "") if condition else ""
