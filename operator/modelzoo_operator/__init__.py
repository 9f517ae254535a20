"""The ModelZoo operator (imported as `modelzoo_operator`; the folder keeps the design's name).

spec → parse (spec.py) → build (builders.py, pure) → apply and prune (reconciler.py, through
kube.py) → status (status.py, pure) and Events (events.py). handlers.py wires it to kopf,
sweep.py repairs drift on the active peer (peering.py), settings.py reads the environment
once, __main__.py runs it. What model pods run (fetch, health check) is in modelzoo_server.
"""
