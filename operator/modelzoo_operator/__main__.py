"""`modelzoo-operator`: read the settings once, register the handlers, run kopf.

Peering: with MODELZOO_OPERATOR_PEERING set (the chart sets it), replicas find each
other through the (Cluster)KopfPeering object the chart ships and only the one with
the highest priority works; each replica draws a random priority unless
MODELZOO_OPERATOR_PEERING_PRIORITY fixes it. Without it the operator runs standalone.
"""

from __future__ import annotations

import dataclasses
import getpass
import logging
import os
import socket
import sys
import uuid
from collections.abc import Sequence

import kopf

from modelzoo_operator.handlers import register
from modelzoo_operator.settings import Settings, SettingsError, from_env


def identity(settings: Settings) -> str:
    """This replica's name among its peers: the pod name in a pod, else user@host/pid."""
    if settings.identity:
        return settings.identity
    return f"{getpass.getuser()}@{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:6]}"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        print("Configuration comes from MODELZOO_OPERATOR_* variables: see settings.py.")
        return 0
    try:
        settings = from_env()
    except SettingsError as exc:
        print(f"modelzoo-operator: {exc}", file=sys.stderr)
        return 2
    settings = dataclasses.replace(settings, identity=identity(settings))
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Health probes every few seconds are not news.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    registry = register(settings)
    health = f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None
    kopf.run(
        registry=registry,
        standalone=not settings.peering,
        peering_name=settings.peering or None,
        priority=settings.peering_priority,
        identity=settings.identity,
        clusterwide=settings.clusterwide,
        namespaces=list(settings.namespaces),
        liveness_endpoint=health,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
