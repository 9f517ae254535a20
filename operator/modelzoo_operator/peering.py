"""Which operator replica is the active one, read from kopf's peering object.

kopf pauses the handlers of every replica but the highest-priority live one; the drift
sweep is not a kopf handler, so it asks here before it runs. This reads kopf's
(Cluster)KopfPeering status the way kopf writes it: per peer identity, its `priority`,
`lastseen` and `lifetime` in seconds.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from modelzoo_operator.kube import Kube
from modelzoo_operator.settings import Settings

PEERING_API_VERSION = "kopf.dev/v1"


def _alive_priority(info: Any, moment: datetime.datetime) -> int | None:
    """A peer's priority while its last heartbeat is within its lifetime, else None."""
    if not isinstance(info, dict):
        return None
    try:
        seen = datetime.datetime.fromisoformat(str(info["lastseen"]))
        if seen.tzinfo is None:
            seen = seen.replace(tzinfo=datetime.UTC)
        alive = seen + datetime.timedelta(seconds=float(info.get("lifetime", 60))) > moment
        return int(info.get("priority", 0)) if alive else None
    except (KeyError, ValueError, TypeError):
        return None


def outranked(
    peers: Mapping[str, Any], identity: str, priority: int, moment: datetime.datetime
) -> bool:
    """True when another live peer has this replica's priority or a higher one."""
    for other, info in peers.items():
        if other == identity:
            continue
        theirs = _alive_priority(info, moment)
        if theirs is not None and theirs >= priority:
            return True
    return False


def is_active_peer(settings: Settings, kube: Kube) -> bool:
    """True for a standalone operator and for the replica kopf lets work."""
    if not settings.peering:
        return True
    if settings.clusterwide:
        peering = kube.get(PEERING_API_VERSION, "ClusterKopfPeering", "", settings.peering)
    else:
        peering = kube.get(
            PEERING_API_VERSION, "KopfPeering", settings.namespaces[0], settings.peering
        )
    peers = (peering or {}).get("status") or {}
    moment = datetime.datetime.now(datetime.UTC)
    return not outranked(peers, settings.identity, settings.peering_priority, moment)
