"""Bearer-token auth from a Secret: the spec, the pod the builders make (mount, flags,
probes), the Secret check in the reconciler, and the spec fields that become server flags.

The server side (the token file, 401 + WWW-Authenticate) is tests/integration/test_auth.py;
the built pod run as built is tests/integration/test_pod_contract_auth.py; the real API
server is tests/e2e/test_operator_rbac.py.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from modelzoo_operator import builders
from modelzoo_operator.kube import METADATA_ONLY, ApiError, Kube
from modelzoo_operator.reconciler import Reconciler
from modelzoo_operator.settings import Settings, SettingsError, from_env
from modelzoo_operator.spec import Auth, parse_zoo
from modelzoo_server.settings import parse_settings
from tests.samples import CATALOG, SAMPLES, built, zoo_body
from tests.unit.test_crd import openapi_to_jsonschema
from tests.unit.test_operator_builders import restricted_violations
from tests.unit.test_operator_handlers import FakeKube

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
AUTH = {"secretName": "faces-tokens"}  # as written; the API server adds the defaults
TOKEN = "s3cr3t-token-value"  # what a Secret would hold: must never show up anywhere


def with_auth(sample: str, **auth) -> dict:
    return {**copy.deepcopy(SAMPLES[sample]), "auth": {**AUTH, **auth}}


def deployment(*models: dict, settings: Settings | None = None) -> dict:
    (found,) = [m for m in built(*models, settings=settings) if m["kind"] == "Deployment"]
    return found


def pod(*models: dict) -> dict:
    return deployment(*models)["spec"]["template"]["spec"]


def server(*models: dict) -> dict:
    (container,) = pod(*models)["containers"]
    return container


# ------------------------------------------------------------------ the spec
def test_zoo_auth_applies_to_every_model_and_a_models_own_replaces_it():
    body = zoo_body(SAMPLES["zoo-cpu"], with_auth("zoo-gpu", secretName="gpu", scope="all"))
    body["spec"]["auth"] = {"secretName": "team", "key": "list"}
    zoo = parse_zoo(body, CATALOG)
    assert not zoo.problems
    auths = {m.name: m.auth for m in zoo.models}
    assert auths == {
        "classify": Auth("team", "list", "inference"),
        "faces": Auth("gpu", "tokens", "all"),
    }
    assert parse_zoo(zoo_body(SAMPLES["zoo-cpu"]), CATALOG).models[0].auth is None


@pytest.mark.parametrize(
    ("auth", "words"),
    [
        ({"secretName": "Bad_Name"}, "not a Secret name"),
        ({"secretName": "ok", "key": "a/b"}, "not a Secret key"),
        ({"secretName": "ok", "scope": "some"}, "auth.scope"),
        ({"key": "tokens"}, "not a Secret name"),
    ],
)
def test_a_bad_auth_makes_that_model_unworkable(auth, words):
    zoo = parse_zoo(zoo_body(SAMPLES["zoo-cpu"], {**SAMPLES["zoo-gpu"], "auth": auth}), CATALOG)
    assert [m.name for m in zoo.models] == ["classify"]
    assert words in zoo.problems["faces"]


@pytest.fixture(scope="module")
def crd_validator() -> jsonschema.Draft4Validator:
    crd = yaml.safe_load((ROOT / "crds" / "modelzoo.yaml").read_text())
    (version,) = crd["spec"]["versions"]
    schema = openapi_to_jsonschema(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft4Validator(schema)


@pytest.mark.parametrize(
    ("where", "auth", "ok"),
    [
        ("zoo", {"secretName": "tokens"}, True),
        ("model", {"secretName": "a.b-c", "key": "k_1.txt", "scope": "all"}, True),
        ("zoo", {}, False),
        ("model", {"secretName": "x", "scope": "everything"}, False),
        ("model", {"secretName": "-x"}, False),
        ("zoo", {"secretName": "x", "key": "a/b"}, False),
        ("zoo", {"secretName": "x", "token": "inline"}, False),  # no place for a value
    ],
)
def test_the_crd_schema_checks_auth(crd_validator, where, auth, ok):
    model = {"name": "faces", "zoo": "mtcnn"}
    body = {"apiVersion": "modelzoo.dev/v1alpha1", "kind": "ModelZoo",
            "metadata": {"name": "demo"}, "spec": {"models": [model]}}  # fmt: skip
    if where == "zoo":
        body["spec"]["auth"] = auth
    else:
        model["auth"] = auth
    assert (not list(crd_validator.iter_errors(body))) == ok


def test_the_crd_documents_and_defaults_auth():
    crd = yaml.safe_load((ROOT / "crds" / "modelzoo.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    zoo_auth = spec["properties"]["auth"]
    model_auth = spec["properties"]["models"]["items"]["properties"]["auth"]
    for auth in (zoo_auth, model_auth):
        assert auth["required"] == ["secretName"]
        assert auth["properties"]["key"]["default"] == "tokens"
        assert auth["properties"]["scope"]["default"] == "inference"
        assert auth["properties"]["scope"]["enum"] == ["inference", "all"]
        assert all(p["description"] for p in auth["properties"].values())
    assert "Secret" in zoo_auth["description"] and "replacing" in model_auth["description"]


# ------------------------------------------------------------------ the pod
def test_the_secret_is_mounted_read_only_with_only_its_key():
    spec = pod(with_auth("zoo-cpu", key="api-tokens"))
    (volume,) = [v for v in spec["volumes"] if "secret" in v]
    assert volume["secret"] == {
        "secretName": "faces-tokens",
        "items": [{"key": "api-tokens", "path": "tokens"}],
        "defaultMode": 0o440,
    }
    (container,) = spec["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount == {
        "name": volume["name"],
        "mountPath": "/var/run/modelzoo/auth",
        "readOnly": True,
    }
    assert "subPath" not in mount, "a subPath mount would not see a rotated Secret"
    # 0440 is owner+group read: the kubelet makes the files root:fsGroup, the server runs
    # as a non-root user in that group.
    security = spec["securityContext"]
    assert security["fsGroup"] == security["runAsGroup"] and security["runAsUser"] != 0
    assert restricted_violations(spec) == []


@pytest.mark.parametrize("scope", ["inference", "all"])
def test_the_server_gets_the_token_file_and_scope_by_its_own_parser(scope):
    container = server(with_auth("zoo-cpu", scope=scope))
    parsed = parse_settings(container["args"], env={})
    assert str(parsed.token_file) == builders.TOKEN_FILE == "/var/run/modelzoo/auth/tokens"
    assert parsed.auth_scope == scope
    assert parse_settings(server(SAMPLES["zoo-cpu"])["args"], env={}).token_file is None


def test_inference_scope_keeps_http_probes_on_the_open_health_endpoints():
    container = server(with_auth("zoo-cpu"))
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_all_scope_probes_the_tcp_port_and_keeps_timings():
    plain, locked = server(SAMPLES["zoo-cpu"]), server(with_auth("zoo-cpu", scope="all"))
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert locked[probe]["tcpSocket"] == {"port": "http"}
        assert "httpGet" not in locked[probe] and "exec" not in locked[probe]
        timings = {k: v for k, v in plain[probe].items() if k != "httpGet"}
        assert {k: v for k, v in locked[probe].items() if k != "tcpSocket"} == timings


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_auth_pods_stay_restricted_for_every_sample(sample):
    for scope in ("inference", "all"):
        manifests = built(with_auth(sample, scope=scope))
        spec = next(m for m in manifests if m["kind"] == "Deployment")["spec"]["template"]
        assert restricted_violations(spec["spec"]) == []


def test_the_secret_is_referenced_by_name_only_never_as_env_or_annotation():
    manifests = built(with_auth("url-batching-autoscaling", scope="all"))
    spec = next(m for m in manifests if m["kind"] == "Deployment")["spec"]["template"]
    for container in spec["spec"]["containers"] + spec["spec"].get("initContainers", []):
        assert "envFrom" not in container
        assert all("valueFrom" not in e for e in container.get("env") or ())
    text = json.dumps(manifests)
    assert text.count("faces-tokens") == 1, "only the volume names the Secret"
    assert "auth" not in json.dumps(spec["metadata"].get("annotations", {}))


# ------------------------------------------------------------------ the reconciler
class SecretKube(FakeKube):
    """FakeKube plus the metadata-only existence check of the real client."""

    def __init__(self):
        super().__init__()
        self.forbid_secrets = False

    def exists(self, api_version, kind, namespace, name):
        self.calls.append(("exists", kind, name))
        if kind == "Secret" and self.forbid_secrets:
            raise ApiError(403, "Forbidden", "secrets is forbidden")
        return (kind, namespace, name) in self.objects


def secret_setup(*models, settings: Settings | None = None) -> tuple[SecretKube, Reconciler]:
    kube = SecretKube()
    body = zoo_body(*models)
    kube.put(body)
    return kube, Reconciler(settings or Settings(), kube, CATALOG)


def add_secret(kube: FakeKube) -> None:
    kube.put({"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "faces-tokens", "namespace": "ml"},
              "data": {"tokens": TOKEN}})  # fmt: skip


def kinds(kube: FakeKube) -> list[tuple[str, str]]:
    return [k for k in kube.kinds() if k[0] != "Secret"]


async def test_a_missing_secret_degrades_with_a_warning_naming_it_until_it_appears():
    kube, reconciler = secret_setup(SAMPLES["zoo-cpu"], with_auth("zoo-gpu"))
    await reconciler.request("ml", "demo")
    degraded = kube.conditions()["Degraded"]
    assert degraded["status"] == "True"
    assert (
        "Secret 'faces-tokens' (auth.secretName) not found in namespace 'ml'"
        in (degraded["message"])
    )
    assert not [k for k in kinds(kube) if k[1] == "demo-faces"], "no pods that cannot mount"
    assert ("Deployment", "demo-classify") in kinds(kube), "the other model is served"
    (warning,) = [e for e in kube.events if e["type"] == "Warning"]
    assert "faces-tokens" in warning["message"] and warning["reason"] == "Degraded"
    assert ("exists", "Secret", "faces-tokens") in kube.calls
    assert not [c for c in kube.calls if c[1] == "Secret" and c[0] != "exists"], "never read"

    add_secret(kube)
    await reconciler.request("ml", "demo")  # the drift sweep
    assert kube.conditions()["Degraded"]["status"] == "False"
    assert ("Deployment", "demo-faces") in kinds(kube)
    written = [o for (kind, _, _), o in kube.objects.items() if kind != "Secret"]
    assert TOKEN not in json.dumps([written, kube.events])


async def test_no_secret_check_without_the_setting_and_a_clear_message_when_forbidden():
    kube, reconciler = secret_setup(with_auth("zoo-cpu"), settings=Settings(check_secrets=False))
    await reconciler.request("ml", "demo")
    assert ("Deployment", "demo-classify") in kinds(kube)
    assert not [c for c in kube.calls if c[1] == "Secret"]

    kube, reconciler = secret_setup(with_auth("zoo-cpu"))
    kube.forbid_secrets = True
    await reconciler.request("ml", "demo")
    message = kube.conditions()["Degraded"]["message"]
    assert "may not check Secret 'faces-tokens'" in message
    assert "checkAuthSecrets" in message


def test_the_client_asks_for_metadata_only():
    class Recorder:
        """Stands in for kubernetes.client.ApiClient: records what would be sent."""

        def __init__(self, status: int):
            self.status, self.sent = status, []

        def param_serialize(self, **kwargs):
            self.sent.append(kwargs)
            return (kwargs["method"], kwargs["resource_path"])

        def call_api(self, *args, **kwargs):
            status = self.status

            class Response:
                reason = "x"
                data = json.dumps({"kind": "PartialObjectMetadata", "code": status}).encode()

                def read(self):
                    pass

            response = Response()
            response.status = status
            return response

    found = Recorder(200)
    assert Kube(found).exists("v1", "Secret", "ml", "faces-tokens")
    (sent,) = found.sent
    assert sent["method"] == "GET"
    assert sent["resource_path"] == "/api/v1/namespaces/ml/secrets/faces-tokens"
    assert sent["header_params"]["Accept"] == METADATA_ONLY
    assert "PartialObjectMetadata" in METADATA_ONLY
    assert not Kube(Recorder(404)).exists("v1", "Secret", "ml", "gone")
    with pytest.raises(ApiError):
        Kube(Recorder(403)).exists("v1", "Secret", "ml", "forbidden")


def test_the_secret_check_setting_from_the_environment():
    assert from_env({}).check_secrets is True
    assert from_env({"MODELZOO_OPERATOR_CHECK_SECRETS": "false"}).check_secrets is False
    with pytest.raises(SettingsError, match="CHECK_SECRETS"):
        from_env({"MODELZOO_OPERATOR_CHECK_SECRETS": "maybe"})


# ------------------------------------------------------------------ spec fields → flags
@pytest.mark.parametrize("sample", ["zoo-cpu", "url-batching-autoscaling"])
def test_batching_reaches_the_server_flags(sample):
    model = {**copy.deepcopy(SAMPLES[sample]), "batching": {"maxBatchSize": 24, "maxDelayMs": 7.5}}
    parsed = parse_settings(server(model)["args"], env={})
    assert (parsed.max_batch_size, parsed.max_delay_ms) == (24, 7.5)
    unbatched = {k: v for k, v in SAMPLES[sample].items() if k != "batching"}
    parsed = parse_settings(server(unbatched)["args"], env={})
    assert parsed.max_batch_size == 1, "no batching block: the server's default (off)"


def test_the_auth_example_is_valid_and_builds(crd_validator):
    example = yaml.safe_load((ROOT / "docs" / "examples" / "modelzoo-auth.yaml").read_text())
    assert list(crd_validator.iter_errors(example)) == []
    example["metadata"].update(namespace="ml", uid="u", generation=1)
    zoo = parse_zoo(example, CATALOG)
    assert not zoo.problems
    scopes = {m.name: m.auth.scope for m in zoo.models}
    assert scopes == {"classify": "inference", "moderate": "all"}
    assert {m.auth.secret_name for m in zoo.models} == {"private-tokens"}
