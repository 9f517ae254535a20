"""Which runtime the prepare step chose for a model's graph, read from its pods (pure).

The `prepare-model` init container ends with one outcome line as its termination message
(modelzoo_models.contract.outcome_line): "litert: verified, …" or "tensorflow: <why not>".
The kubelet keeps it in the pod's status for the pod's life, so it is read from the pod
listing the reconciler makes anyway, with no channel of its own. The newest pod that has
one speaks for the model: during a rollout, that is a pod of the new template.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from modelzoo_models.contract import parse_outcome
from modelzoo_operator.builders import LABEL_MODEL, PREPARE_CONTAINER


def prepare_outcome(pod: Mapping[str, Any]) -> tuple[str, str] | None:
    """(runtime, why) from the pod's prepare-model container once it has succeeded."""
    for status in (pod.get("status") or {}).get("initContainerStatuses") or ():
        if status.get("name") != PREPARE_CONTAINER:
            continue
        # After the pod's sandbox is recreated the container runs again: until it ends,
        # its last run still tells.
        for state in (status.get("state") or {}, status.get("lastState") or {}):
            done = state.get("terminated")
            if done and done.get("exitCode") == 0:
                return parse_outcome(done.get("message") or "")
    return None


def model_runtimes(pods: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
    """{model name: (runtime, why)} from the newest pod of each model that says."""
    found: dict[str, tuple[str, str]] = {}

    def age(pod: Mapping[str, Any]) -> tuple[str, str]:
        meta = pod.get("metadata") or {}
        return str(meta.get("creationTimestamp") or ""), str(meta.get("name") or "")

    for pod in sorted(pods, key=age, reverse=True):
        meta = pod.get("metadata") or {}
        model = (meta.get("labels") or {}).get(LABEL_MODEL)
        if not model or model in found or meta.get("deletionTimestamp"):
            continue
        outcome = prepare_outcome(pod)
        if outcome:
            found[model] = outcome
    return found
