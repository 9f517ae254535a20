"""Why a model's pods cannot start, read from their container statuses (pure).

A Deployment only reports a stuck rollout after its progress deadline (minutes). The
pods know at once: an init container that exited non-zero (a refused download, a wrong
sha256), a server that exits 2 on a refused graph and restarts in a loop, an image that
cannot be found. Their termination message (FallbackToLogsOnError: the one line our
CLIs print) says why, and becomes the model's status message.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from modelzoo_operator.builders import LABEL_MODEL

# Waiting reasons that do not clear up on their own.
STUCK_WAITING = frozenset(
    {
        "CrashLoopBackOff",
        "ErrImagePull",
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
MESSAGE_CHARS = 400


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:MESSAGE_CHARS] if lines else ""


def _terminated(term: Mapping[str, Any]) -> str:
    code = term.get("exitCode")
    reason = term.get("reason") or "Error"
    why = _last_line(term.get("message") or "")
    return f"{reason} (exit code {code})" + (f": {why}" if why else "")


def container_failure(status: Mapping[str, Any], *, init: bool) -> str | None:
    """Why this container cannot get going, or None while it is fine or still starting."""
    state = status.get("state") or {}
    now = state.get("terminated")
    if init and now and now.get("exitCode") == 0:
        return None  # done
    if not init and status.get("ready"):
        return None
    if now and now.get("exitCode") not in (0, None):
        return _terminated(now)
    last = (status.get("lastState") or {}).get("terminated")
    if last and last.get("exitCode") not in (0, None):
        return _terminated(last)
    waiting = state.get("waiting") or {}
    if waiting.get("reason") in STUCK_WAITING:
        return f"{waiting['reason']}: {_last_line(waiting.get('message') or '')}".rstrip(": ")
    return None


def pod_failure(pod: Mapping[str, Any]) -> str | None:
    """The first failing container of a pod that is not being deleted, as one line."""
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None
    status = pod.get("status") or {}
    kinds = (("initContainerStatuses", True), ("containerStatuses", False))
    for key, init in kinds:
        for container in status.get(key) or ():
            why = container_failure(container, init=init)
            if why:
                role = "init container" if init else "container"
                return f"pod {meta.get('name')}: {role} {container.get('name')} {why}"
    return None


def model_pod_failures(pods: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """{model name: why its pods fail}, from the first failing pod of each model."""
    failures: dict[str, str] = {}
    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("name", "")):
        model = ((pod.get("metadata") or {}).get("labels") or {}).get(LABEL_MODEL)
        if model and model not in failures:
            why = pod_failure(pod)
            if why:
                failures[model] = why
    return failures
