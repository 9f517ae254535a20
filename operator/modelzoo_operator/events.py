"""The Events a zoo gets when its status changes in a way a person should hear about.

Which events to post is decided from the status before and after a pass (pure); posting
them is a courtesy that never fails the pass.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from modelzoo_operator.builders import MANAGER
from modelzoo_operator.kube import ApiError, Kube
from modelzoo_operator.spec import API_VERSION, KIND
from modelzoo_operator.status import READY, degraded_message, true_condition

log = logging.getLogger("modelzoo.operator")


def event(
    zoo: Mapping[str, Any], kind: str, reason: str, message: str, reporter: str, now: str
) -> dict[str, Any]:
    """A core/v1 Event of `kind` (Normal or Warning) about the zoo object `zoo`."""
    meta = zoo["metadata"]
    return {
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
        "source": {"component": MANAGER},
        "reportingComponent": MANAGER,
        "reportingInstance": reporter,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def transition_events(
    zoo: Mapping[str, Any],
    previous: Mapping[str, Any],
    status: Mapping[str, Any],
    reporter: str,
    now: str,
) -> list[dict[str, Any]]:
    """A Warning when the zoo becomes (differently) degraded, a Normal one when it becomes
    ready; nothing while it stays the same, so a broken spec never floods the events."""
    events = []
    message = degraded_message(status)
    if message and message != degraded_message(previous):
        events.append(event(zoo, "Warning", "Degraded", message, reporter, now))
    if true_condition(status, READY) and not true_condition(previous, READY):
        ready = f"all models ready: {status.get('urls', '')}"
        events.append(event(zoo, "Normal", "Ready", ready, reporter, now))
    return events


def post(kube: Kube, events: list[dict[str, Any]]) -> None:
    for manifest in events:
        try:
            kube.create(manifest)
        except ApiError as exc:  # an event is a courtesy: never fail the pass for it
            name = manifest["involvedObject"]["name"]
            log.warning("could not post a %s event on %s: %s", manifest["reason"], name, exc)
