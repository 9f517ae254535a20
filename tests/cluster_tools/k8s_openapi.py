"""The OpenAPI schema of the pinned Kubernetes release (tests/cluster/versions.env), made
strict, to validate manifests without an API server.

The schema is the release's own `api/openapi-spec/swagger.json`, read from the Go module
cache (downloaded with `go mod download` when the cluster harness has not fetched it
yet). It is made strict here: unknown fields are errors (the API server would drop them
silently, which hides typos such as `readinessprobe`), and int-or-string fields accept
both forms.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import jsonschema

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ROOT / "tests" / "cluster" / "versions.env"


def _go() -> str:
    found = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(found).exists():
        raise RuntimeError("the Go toolchain is needed to fetch the Kubernetes OpenAPI schema")
    return found


def k8s_version() -> str:
    for line in VERSIONS.read_text().splitlines():
        if line.startswith("K8S_VERSION="):
            return line.split("=", 1)[1].strip()
    raise RuntimeError(f"no K8S_VERSION in {VERSIONS}")


def swagger_path() -> Path:
    """swagger.json of the pinned k8s.io/kubernetes module (fetched once if missing)."""
    version = k8s_version()
    go = _go()
    modcache = subprocess.run(
        [go, "env", "GOMODCACHE"], check=True, capture_output=True, text=True
    ).stdout.strip()
    path = Path(modcache) / f"k8s.io/kubernetes@{version}/api/openapi-spec/swagger.json"
    if not path.exists():
        with tempfile.TemporaryDirectory() as tmp:
            env = {**os.environ, "GOFLAGS": "-mod=mod"}
            subprocess.run([go, "mod", "init", "swaggerfetch"], cwd=tmp, check=True, env=env)
            out = subprocess.run(
                [go, "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
                cwd=tmp,
                check=True,
                capture_output=True,
                text=True,
                env=env,
                timeout=1800,
            ).stdout
            path = Path(json.loads(out)["Dir"]) / "api" / "openapi-spec" / "swagger.json"
    return path


def _strict(schema: Any) -> None:
    """Forbid unknown properties in every object schema (in place)."""
    if not isinstance(schema, dict):
        return
    if "properties" in schema and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    for sub in (schema.get("properties") or {}).values():
        _strict(sub)
    for key in ("items", "additionalProperties"):
        _strict(schema.get(key))
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key) or ():
            _strict(sub)


@functools.cache
def schema_definitions() -> tuple[dict[str, Any], dict[tuple[str, str], str]]:
    definitions = json.loads(swagger_path().read_text())["definitions"]
    for schema in definitions.values():
        _strict(schema)
    definitions["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {
        "anyOf": [{"type": "integer"}, {"type": "string"}]
    }
    by_kind = {}
    for name, schema in definitions.items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or ():
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            by_kind.setdefault((api_version, gvk["kind"]), name)
    return definitions, by_kind


def _validator(api_version: str, kind: str) -> jsonschema.Draft4Validator:
    definitions, by_kind = schema_definitions()
    name = by_kind[(api_version, kind)]
    return jsonschema.Draft4Validator({"$ref": f"#/definitions/{name}", "definitions": definitions})


def k8s_errors(manifest: dict[str, Any]) -> list[str]:
    validator = _validator(manifest["apiVersion"], manifest["kind"])
    return [
        f"{manifest['kind']} {'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(manifest)
    ]
