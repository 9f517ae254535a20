"""The drift sweep: every `drift_interval` seconds, a full pass over every zoo.

A full pass server-side applies with force, which undoes hand edits of the fields the
operator sets, and finds what appeared meanwhile (a PVC, an auth Secret). It is one
operator-wide task rather than kopf's @timer, which would add a finalizer to every zoo.
Only the active peer sweeps.
"""

from __future__ import annotations

import asyncio
import logging

from modelzoo_operator.kube import Kube
from modelzoo_operator.peering import is_active_peer
from modelzoo_operator.reconciler import Reconciler
from modelzoo_operator.settings import Settings
from modelzoo_operator.spec import API_VERSION, KIND

log = logging.getLogger("modelzoo.operator")


def list_zoos(settings: Settings, kube: Kube) -> list[tuple[str, str]]:
    """(namespace, name) of every zoo in the namespaces the operator watches."""
    spaces = settings.namespaces or ("",)
    return [
        (z["metadata"]["namespace"], z["metadata"]["name"])
        for ns in spaces
        for z in kube.list(API_VERSION, KIND, ns)
    ]


async def sweep_forever(reconciler: Reconciler, parallel: int = 4) -> None:
    settings, kube = reconciler.settings, reconciler.kube
    gate = asyncio.Semaphore(parallel)

    async def one(namespace: str, name: str) -> None:
        async with gate:
            try:
                await reconciler.request(namespace, name, full=True)
            except Exception as exc:
                log.warning("drift repair of %s/%s failed: %s", namespace, name, exc)

    while True:
        await asyncio.sleep(settings.drift_interval)
        try:
            if not await asyncio.to_thread(is_active_peer, settings, kube):
                continue
            zoos = await asyncio.to_thread(list_zoos, settings, kube)
        except Exception as exc:
            log.warning("drift sweep skipped: %s", exc)
            continue
        await asyncio.gather(*(one(ns, name) for ns, name in zoos))
