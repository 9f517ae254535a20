"""The ModelZoo operator (imported as `modelzoo_operator`; the folder keeps the design's name).

spec → parse (spec.py) → build (builders.py, pure) → apply (kube.py) → status (status.py);
handlers.py wires it to kopf, settings.py reads the environment once, __main__.py runs it.
fetch.py and healthcheck.py are small standard-library steps the pods run in the same image.
"""
