"""A ModelZoo's spec, parsed into plain values, and the checks the schema cannot make.

The API server has already applied the CRD's schema (types, ranges, CEL rules) and
its defaults. What is left is what needs knowledge outside one object: the zoo entries
the image carries, and names that must fit Kubernetes' limits once combined. A few of
the schema's own rules (unique model names, DNS labels) are checked again, so a zoo
stored under an older CRD cannot slip past them. A model that fails these checks does
not stop the others: it is reported per model.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from modelzoo_models.contract import (
    AUTO,
    LITERT,
    RUNTIMES,
    TASKS,
    TENSOR,
    TENSORFLOW,
    TFLITE,
    ModelRecord,
    RecordError,
)

GROUP = "modelzoo.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelZoo"
PLURAL = "modelzoos"

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
AUTH_SCOPES = ("inference", "all")
# autoscaling.autoscalerClass: `hpa`, the operator's HPA; `external`, an autoscaler the
# operator does not manage (KEDA's ScaledObject, ...) that owns the Deployment's replicas.
HPA, EXTERNAL = "hpa", "external"
AUTOSCALER_CLASSES = (HPA, EXTERNAL)
# autoscaling.behavior: the bounds of the CRD, which are those of autoscaling/v2's
# HorizontalPodAutoscalerBehavior (an HPA outside them is refused when applied).
SCALE_DIRECTIONS = ("scaleUp", "scaleDown")
SCALING_RULES = ("stabilizationWindowSeconds", "selectPolicy", "policies")
SCALING_POLICY = ("type", "value", "periodSeconds")
SELECT_POLICIES = ("Max", "Min", "Disabled")
POLICY_TYPES = ("Pods", "Percent")
MAX_STABILIZATION_SECONDS = 3600
MAX_PERIOD_SECONDS = 1800
MAX_POLICIES = 10
# The longest suffix added to `<zoo>-<model>` for a child's name ("-signature").
_SUFFIX = len("-signature")


class SpecError(ValueError):
    """This model (or zoo) cannot work as written; the message says why, for a person."""


@dataclass(frozen=True)
class S3Object:
    """One object of an S3-compatible store; the credentials stay in the Secret, which
    only the init container reads (as environment variables)."""

    endpoint: str
    bucket: str
    key: str
    region: str = ""
    secret_name: str = ""
    path_style: bool = False
    ca_bundle: str = ""  # PEM


@dataclass(frozen=True)
class Source:
    kind: Literal["zoo", "url", "pvc", "s3"]
    zoo: str = ""
    url: str = ""
    sha256: str = ""
    claim_name: str = ""
    path: str = ""
    s3: S3Object | None = None

    @property
    def fetched(self) -> bool:
        """Downloaded by the init container into the pod's own volume."""
        return self.kind in ("url", "s3")


@dataclass(frozen=True)
class Batching:
    max_batch_size: int
    max_delay_ms: float


@dataclass(frozen=True)
class Auth:
    """Bearer tokens for the model's endpoints: the key of a Secret in the zoo's namespace
    (one token per line). Only the names travel; the operator never reads the tokens."""

    secret_name: str
    key: str = "tokens"
    scope: str = "inference"


@dataclass(frozen=True)
class Autoscaling:
    min_replicas: int
    max_replicas: int
    target_inflight: int
    # The HPA's spec.behavior as the spec gives it (camelCase keys), checked against the
    # CRD's bounds; None leaves the HPA's defaults. Read-only, like `resources`.
    behavior: Mapping[str, Any] | None = None
    autoscaler_class: str = HPA

    @property
    def external(self) -> bool:
        """Scaled by an autoscaler the operator does not create (no HPA of ours)."""
        return self.autoscaler_class == EXTERNAL


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: Source
    # A graph from `source`: its record (task, signature, preprocessing, labels), checked
    # by the contract the server reads its --signature file with. None for zoo entries.
    record: ModelRecord | None = None
    replicas: int = 1
    gpu: int = 0
    resources: Mapping[str, Any] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    affinity: Mapping[str, Any] = field(default_factory=dict)
    batching: Batching | None = None
    autoscaling: Autoscaling | None = None
    max_inflight: int | None = None
    auth: Auth | None = None
    # The server's --runtime; "" lets the operator choose (TensorFlow on a GPU, else auto).
    runtime: str = ""
    # A zoo entry with a verified .tflite on a CPU pod: the server runs it on LiteRT,
    # without TensorFlow, in a fraction of the memory.
    on_litert: bool = False
    # On LiteRT as a pipeline of networks (mtcnn), whose buffers grow with the photos.
    litert_pipeline: bool = False

    @property
    def min_replicas(self) -> int:
        """Replicas the model keeps at least (the autoscaler's floor when autoscaled)."""
        return self.autoscaling.min_replicas if self.autoscaling else self.replicas

    @property
    def served_runtime(self) -> str:
        """The server's --runtime: the spec's, else TensorFlow on a GPU and auto on a CPU."""
        return self.runtime or (TENSORFLOW if self.gpu > 0 else AUTO)

    @property
    def prepared(self) -> bool:
        """A graph from `source` that LiteRT may serve: the pod's `prepare-model` init
        container converts and verifies it first. Not a tensor model, whose verification
        would need images through a preprocessing it does not have."""
        return (
            self.record is not None
            and self.record.task != TENSOR
            and self.served_runtime != TENSORFLOW
        )


@dataclass(frozen=True)
class ZooSpec:
    name: str
    namespace: str
    uid: str
    generation: int
    image: str = ""
    image_pull_policy: str = ""
    models: tuple[ModelSpec, ...] = ()
    # Models that cannot work, by name, with the reason: they get no objects.
    problems: Mapping[str, str] = field(default_factory=dict)
    # Every model the spec lists, workable or not, in spec order.
    all_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class ZooEntryNames:
    """The names of the zoo entries the image carries (None: unknown, so not checked), and
    those with a verified .tflite, which a CPU pod serves on LiteRT."""

    names: frozenset[str] | None
    origin: str
    litert: frozenset[str] = frozenset()
    # Of those, the ones whose .tflite runs as a pipeline of networks (mtcnn).
    pipelines: frozenset[str] = frozenset()

    def check(self, zoo: str) -> None:
        if self.names is not None and zoo not in self.names:
            known = ", ".join(sorted(self.names)) or "none"
            raise SpecError(f"unknown zoo entry {zoo!r}; this image's zoo has: {known}")


def load_zoo_entry_names(catalog_path: str, zoo_entries: Sequence[str] = ()) -> ZooEntryNames:
    """The entries named in settings, else those of the built catalog.json, else unknown;
    which of them run on LiteRT always comes from the catalog (none if unreadable)."""
    try:
        records = json.loads(Path(catalog_path).read_text())["models"]
        names = frozenset(str(r["name"]) for r in records)
        tflites = {
            str(r["name"]): a
            for r in records
            for a in r.get("artifacts") or ()
            if a.get("format") == TFLITE
        }
        litert = frozenset(tflites)
        pipelines = frozenset(name for name, a in tflites.items() if a.get("pipeline"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        names, litert, pipelines = None, frozenset(), frozenset()
    if zoo_entries:
        origin = "MODELZOO_OPERATOR_ZOO_ENTRIES"
        return ZooEntryNames(frozenset(zoo_entries), origin, litert, pipelines)
    if names is None:
        return ZooEntryNames(None, f"{catalog_path} (unreadable: zoo entries are not checked)")
    return ZooEntryNames(names, catalog_path, litert, pipelines)


def child_name(zoo: str, model: str) -> str:
    """The name shared by a model's Deployment, Service, PDB and HPA."""
    return f"{zoo}-{model}"


def _source(model: Mapping[str, Any]) -> Source:
    if model.get("zoo"):
        if model.get("source"):
            raise SpecError("set exactly one of `zoo` or `source`")
        return Source("zoo", zoo=str(model["zoo"]))
    source = model.get("source") or {}
    url, pvc, s3 = source.get("url"), source.get("pvc"), source.get("s3")
    if sum(map(bool, (url, pvc, s3))) != 1:
        raise SpecError("set exactly one of `zoo`, `source.url`, `source.pvc` or `source.s3`")
    sha256 = str(source.get("sha256") or "").lower()
    if sha256 and not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise SpecError("source.sha256 must be 64 hex digits")
    if s3:
        if not sha256:
            raise SpecError("source.s3 needs source.sha256 (the download is checked against it)")
        return Source("s3", sha256=sha256, s3=_s3_object(s3))
    if url:
        if not sha256:
            raise SpecError("source.url needs source.sha256 (the download is checked against it)")
        if not re.match(r"^https?://", str(url)):
            raise SpecError("source.url must be an http:// or https:// URL")
        return Source("url", url=str(url), sha256=sha256)
    claim, path = str(pvc.get("claimName") or ""), str(pvc.get("path") or "")
    if not claim or not path:
        raise SpecError("source.pvc needs claimName and path")
    if path.startswith("/") or ".." in path.split("/"):
        raise SpecError("source.pvc.path must be relative to the volume, without `..`")
    return Source("pvc", claim_name=claim, path=path, sha256=sha256)


def _s3_object(raw: Mapping[str, Any]) -> S3Object:
    s3 = S3Object(
        endpoint=str(raw.get("endpoint") or "").rstrip("/"),
        bucket=str(raw.get("bucket") or ""),
        key=str(raw.get("key") or ""),
        region=str(raw.get("region") or ""),
        secret_name=str(raw.get("secretName") or ""),
        path_style=bool(raw.get("pathStyle")),
        ca_bundle=str(raw.get("caBundle") or ""),
    )
    if not re.fullmatch(r"https?://[^/\s]+", s3.endpoint):
        raise SpecError("source.s3.endpoint must be http(s)://host[:port]")
    if not s3.bucket or not s3.key:
        raise SpecError("source.s3 needs bucket and key")
    if s3.secret_name and not DNS1123_SUBDOMAIN.match(s3.secret_name):
        raise SpecError(f"source.s3.secretName {s3.secret_name!r} is not a Secret name")
    if s3.ca_bundle and "-----BEGIN CERTIFICATE-----" not in s3.ca_bundle:
        raise SpecError("source.s3.caBundle must be PEM certificates")
    return s3


def _auth(raw: Mapping[str, Any] | None) -> Auth | None:
    if not raw:
        return None
    auth = Auth(
        secret_name=str(raw.get("secretName") or ""),
        key=str(raw.get("key") or "tokens"),
        scope=str(raw.get("scope") or "inference"),
    )
    if len(auth.secret_name) > 253 or not DNS1123_SUBDOMAIN.match(auth.secret_name):
        raise SpecError(f"auth.secretName {auth.secret_name!r} is not a Secret name")
    if len(auth.key) > 253 or not SECRET_KEY.match(auth.key):
        raise SpecError(f"auth.key {auth.key!r} is not a Secret key")
    if auth.scope not in AUTH_SCOPES:
        raise SpecError(f"auth.scope must be one of {', '.join(AUTH_SCOPES)}")
    return auth


def _name(zoo_name: str, model: Mapping[str, Any]) -> str:
    name = str(model.get("name") or "")
    if not DNS1123_LABEL.match(name):
        raise SpecError(f"model name {name!r} is not a DNS-1123 label")
    if len(child_name(zoo_name, name)) + _SUFFIX > 63:
        raise SpecError(
            f"`{child_name(zoo_name, name)}` (zoo name + model name) is too long: the two "
            f"together may have at most {63 - _SUFFIX - 1} characters"
        )
    return name


def _record(
    model: Mapping[str, Any], name: str, source: Source, entry_names: ZooEntryNames
) -> ModelRecord | None:
    """A zoo entry brings its own record; a graph from `source` must name its task and
    signature, and what it gives must be a record the server accepts."""
    if source.kind == "zoo":
        entry_names.check(source.zoo)
        if any(model.get(key) for key in ("signature", "task", "preprocessing", "labels")):
            raise SpecError(
                "a zoo entry carries its own task, signature, preprocessing and labels; "
                "remove them or use `source`"
            )
        return None
    signature = model.get("signature")
    if not signature or not signature.get("inputs") or not signature.get("outputs"):
        raise SpecError("a model from `source` needs `signature` with inputs and outputs")
    if str(model.get("task") or "") not in TASKS:
        raise SpecError(f"a model from `source` needs `task`, one of {', '.join(TASKS)}")
    document = {
        "task": model["task"],
        "signature": signature,
        "preprocessing": model.get("preprocessing") or {},
        "labels": model.get("labels") or [],
        # The user's batching block asserts the graph takes a leading batch dimension.
        "batchable": bool(model.get("batching")),
    }
    try:
        return ModelRecord.from_json(document, name=name)
    except RecordError as exc:
        raise SpecError(str(exc)) from None


def _integer(value: Any, where: str, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{where} must be an integer, not {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise SpecError(f"{where} must be {bounds}, not {value}")


def _one_of(value: Any, where: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise SpecError(f"{where} must be one of {', '.join(allowed)}, not {value!r}")


def _fields(raw: Any, where: str, known: Sequence[str]) -> Mapping[str, Any]:
    """`raw` as an object with only `known` fields: the HPA refuses any other."""
    if not isinstance(raw, Mapping):
        raise SpecError(f"{where} must be an object, not {raw!r}")
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise SpecError(f"{where} has unknown field {unknown[0]!r} (known: {', '.join(known)})")
    return raw


def _scaling_policy(raw: Any, where: str) -> None:
    policy = _fields(raw, where, SCALING_POLICY)
    missing = [key for key in SCALING_POLICY if key not in policy]
    if missing:
        raise SpecError(f"{where} needs {', '.join(missing)}")
    _one_of(policy["type"], f"{where}.type", POLICY_TYPES)
    _integer(policy["value"], f"{where}.value", 1)
    _integer(policy["periodSeconds"], f"{where}.periodSeconds", 1, MAX_PERIOD_SECONDS)


def _scaling_rules(raw: Any, where: str) -> None:
    rules = _fields(raw, where, SCALING_RULES)
    if "stabilizationWindowSeconds" in rules:
        window = rules["stabilizationWindowSeconds"]
        _integer(window, f"{where}.stabilizationWindowSeconds", 0, MAX_STABILIZATION_SECONDS)
    if "selectPolicy" in rules:
        _one_of(rules["selectPolicy"], f"{where}.selectPolicy", SELECT_POLICIES)
    if "policies" in rules:
        policies = rules["policies"]
        # An empty list is not "the defaults" to the HPA: it refuses it.
        if not isinstance(policies, list) or not 1 <= len(policies) <= MAX_POLICIES:
            raise SpecError(f"{where}.policies must list 1 to {MAX_POLICIES} policies")
        for i, policy in enumerate(policies):
            _scaling_policy(policy, f"{where}.policies[{i}]")


def _behavior(raw: Any) -> Mapping[str, Any] | None:
    """autoscaling.behavior, checked as the CRD checks it: the parser also runs on zoos
    that never met the API server's validation (tests, older CRDs)."""
    if not raw:
        return None
    behavior = _fields(raw, "autoscaling.behavior", SCALE_DIRECTIONS)
    for direction, rules in behavior.items():
        _scaling_rules(rules, f"autoscaling.behavior.{direction}")
    return copy.deepcopy(dict(behavior))  # the zoo's body stays the caller's


def _autoscaling(raw: Mapping[str, Any] | None) -> Autoscaling | None:
    if not raw:
        return None
    autoscaler_class = raw.get("autoscalerClass", HPA)
    _one_of(autoscaler_class, "autoscaling.autoscalerClass", AUTOSCALER_CLASSES)
    # Even an empty `behavior: {}`, as the CRD's has() refuses it.
    if autoscaler_class == EXTERNAL and raw.get("behavior") is not None:
        raise SpecError(
            "autoscaling.behavior only applies to autoscalerClass hpa: "
            "set it on the external autoscaler instead"
        )
    scaling = Autoscaling(
        min_replicas=int(raw.get("minReplicas", 1)),
        max_replicas=int(raw["maxReplicas"]),
        # The CRD's default fills it in for `external` too, which ignores it.
        target_inflight=int(raw.get("targetInflight", 4)),
        behavior=_behavior(raw.get("behavior")),
        autoscaler_class=autoscaler_class,
    )
    if scaling.min_replicas > scaling.max_replicas:
        raise SpecError("autoscaling.minReplicas is larger than maxReplicas")
    return scaling


def _counts(model: Mapping[str, Any]) -> tuple[int, int]:
    """(replicas, gpus per pod)."""
    replicas, gpu = int(model.get("replicas", 1)), int(model.get("gpu", 0))
    if replicas < 0 or gpu < 0:
        raise SpecError("replicas and gpu must not be negative")
    return replicas, gpu


def _batching(raw: Mapping[str, Any] | None) -> Batching | None:
    if not raw:
        return None
    return Batching(
        max_batch_size=int(raw.get("maxBatchSize", 8)),
        max_delay_ms=float(raw.get("maxDelayMs", 5)),
    )


def _runtime(raw: Any, gpu: int) -> str:
    runtime = str(raw or "")
    if runtime and runtime not in RUNTIMES:
        raise SpecError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if runtime == LITERT and gpu > 0:
        # LiteRT runs on the CPU here: the GPU would be held and never used.
        raise SpecError("runtime litert runs on the CPU: set gpu to 0, or runtime tensorflow")
    return runtime


def _model(
    zoo_name: str,
    model: Mapping[str, Any],
    entry_names: ZooEntryNames,
    zoo_auth: Mapping[str, Any] | None = None,
) -> ModelSpec:
    name = _name(zoo_name, model)
    source = _source(model)
    record = _record(model, name, source, entry_names)
    autoscaling = _autoscaling(model.get("autoscaling"))
    replicas, gpu = _counts(model)
    runtime = _runtime(model.get("runtime"), gpu)
    on_litert = (
        source.kind == "zoo"
        and source.zoo in entry_names.litert
        and gpu == 0
        and runtime in ("", AUTO, LITERT)
    )
    return ModelSpec(
        name=name,
        source=source,
        record=record,
        replicas=replicas,
        gpu=gpu,
        resources=dict(model.get("resources") or {}),
        node_selector=dict(model.get("nodeSelector") or {}),
        tolerations=tuple(model.get("tolerations") or ()),
        affinity=dict(model.get("affinity") or {}),
        batching=_batching(model.get("batching")),
        autoscaling=autoscaling,
        max_inflight=int(model["maxInflight"]) if model.get("maxInflight") else None,
        # A model's own `auth` replaces the zoo's.
        auth=_auth(model.get("auth") or zoo_auth),
        runtime=runtime,
        on_litert=on_litert,
        litert_pipeline=on_litert and source.zoo in entry_names.pipelines,
    )


def parse_zoo(body: Mapping[str, Any], entry_names: ZooEntryNames) -> ZooSpec:
    """Parse a ModelZoo object; models that cannot work are listed in `problems`."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    name = str(meta.get("name") or "")
    raw_models = spec.get("models") or []
    names = tuple(str(m.get("name") or f"#{i}") for i, m in enumerate(raw_models))
    models: list[ModelSpec] = []
    problems: dict[str, str] = {}
    zoo_problem = ""
    if not DNS1035_LABEL.match(name):
        # Services are named `<zoo>-<model>`, and a Service name must start with a letter.
        zoo_problem = f"the zoo's name {name!r} must start with a letter (DNS-1035 label)"
    seen: set[str] = set()
    for model_name, raw in zip(names, raw_models, strict=True):
        try:
            if zoo_problem:
                raise SpecError(zoo_problem)
            if model_name in seen:
                raise SpecError(f"model name {model_name!r} appears twice")
            seen.add(model_name)
            models.append(_model(name, raw, entry_names, spec.get("auth")))
        except (SpecError, KeyError, TypeError, ValueError, AttributeError) as exc:
            problems[model_name] = str(exc) if isinstance(exc, SpecError) else f"bad spec: {exc!r}"
    return ZooSpec(
        name=name,
        namespace=str(meta.get("namespace") or ""),
        uid=str(meta.get("uid") or ""),
        generation=int(meta.get("generation") or 0),
        image=str(spec.get("image") or ""),
        image_pull_policy=str(spec.get("imagePullPolicy") or ""),
        models=tuple(models),
        problems=problems,
        all_names=names,
    )
