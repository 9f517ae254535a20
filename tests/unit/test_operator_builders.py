"""The pure builders: placement, Pod Security, probes, sources, and the server contract."""

from __future__ import annotations

import copy
import math

import pytest

from modelzoo_models.contract import Preprocessing
from modelzoo_operator import builders
from modelzoo_operator.settings import Settings
from modelzoo_operator.spec import ZooEntryNames, parse_zoo
from modelzoo_server.fetch import argument_parser
from modelzoo_server.model_entry import from_files
from modelzoo_server.settings import parse_settings
from tests.samples import CATALOG, SAMPLES, built, zoo_body

pytestmark = pytest.mark.unit

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def by_kind(manifests: list[dict]) -> dict[str, dict]:
    out = {m["kind"]: m for m in manifests}
    assert len(out) == len(manifests), "one object per kind and model"
    return out


def pod(manifests: list[dict]) -> dict:
    return by_kind(manifests)["Deployment"]["spec"]["template"]["spec"]


def server(manifests: list[dict]) -> dict:
    (container,) = pod(manifests)["containers"]
    return container


# ------------------------------------------------------------------ Pod Security
# The checks of the Pod Security Standards (baseline + restricted), written from
# https://kubernetes.io/docs/concepts/security/pod-security-standards/ independently of
# the builders, plus the extras the issue asks for.
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
}  # fmt: skip


def restricted_violations(spec: dict) -> list[str]:
    problems = []
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(flag)
    pod_sc = spec.get("securityContext") or {}
    for volume in spec.get("volumes") or ():
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']} of type {kinds}")
    for container in (spec.get("initContainers") or []) + spec["containers"]:
        sc = container.get("securityContext") or {}
        name = container["name"]
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation must be false")
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            problems.append(f"{name}: runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or ()):
            problems.append(f"{name}: capabilities must drop ALL")
        if set(caps.get("add") or ()) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities")
        if any(p.get("hostPort") for p in container.get("ports") or ()):
            problems.append(f"{name}: hostPort")
        if not sc.get("readOnlyRootFilesystem"):
            problems.append(f"{name}: readOnlyRootFilesystem")
        if not any(m["mountPath"] == "/tmp" for m in container.get("volumeMounts") or ()):
            problems.append(f"{name}: no writable /tmp")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append("automountServiceAccountToken must be false")
    return problems


@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_pods_meet_the_restricted_pod_security_standard(sample):
    spec = pod(built(SAMPLES[sample]))
    assert restricted_violations(spec) == []
    tmp = next(v for v in spec["volumes"] if v["name"] == "tmp")
    assert "emptyDir" in tmp


def test_the_restricted_check_itself_catches_violations():
    spec = copy.deepcopy(pod(built(SAMPLES["zoo-cpu"])))
    spec["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    spec["hostNetwork"] = True
    spec["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    assert len(restricted_violations(spec)) == 3


# ------------------------------------------------------------------ GPU placement
def test_a_gpu_model_gets_the_gpu_limit_toleration_and_node_selector():
    manifests = built(SAMPLES["zoo-gpu"])
    spec = pod(manifests)
    assert server(manifests)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["tolerations"] == [GPU_TOLERATION]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    strategy = by_kind(manifests)["Deployment"]["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 0, "maxUnavailable": 1}, "no spare GPU needed to roll"


def test_a_cpu_model_gets_no_gpu_toleration_selector_or_limit():
    manifests = built(SAMPLES["zoo-cpu"])
    spec = pod(manifests)
    assert "tolerations" not in spec
    assert "nodeSelector" not in spec
    assert "nvidia.com/gpu" not in server(manifests)["resources"].get("limits", {})
    assert server(manifests)["resources"]["requests"] == builders.DEFAULT_REQUESTS


def test_gpu_pods_run_tensorflow_and_cpu_pods_let_the_server_choose():
    assert _server_settings(server(built(SAMPLES["zoo-gpu"]))).runtime == "tensorflow"
    assert _server_settings(server(built(SAMPLES["zoo-cpu"]))).runtime == "auto"


def test_a_models_runtime_overrides_the_operators_choice():
    cpu_tf = {**SAMPLES["zoo-cpu"], "runtime": "tensorflow"}
    gpu_auto = {**SAMPLES["zoo-gpu"], "runtime": "auto"}
    assert _server_settings(server(built(cpu_tf))).runtime == "tensorflow"
    assert _server_settings(server(built(gpu_auto))).runtime == "auto"


def test_gpu_placement_comes_from_the_settings():
    settings = Settings(
        gpu_resource="amd.com/gpu",
        gpu_node_selector={"accelerator": "mi300"},
        gpu_tolerations=({"key": "amd.com/gpu", "operator": "Exists"},),
        gpu_image="zoo:gpu",
    )
    manifests = built(SAMPLES["zoo-gpu"], settings=settings)
    spec = pod(manifests)
    assert server(manifests)["resources"]["limits"] == {"amd.com/gpu": "1"}
    assert spec["nodeSelector"] == {"accelerator": "mi300"}
    assert spec["tolerations"] == [{"key": "amd.com/gpu", "operator": "Exists"}]
    assert server(manifests)["image"] == "zoo:gpu"
    assert server(built(SAMPLES["zoo-cpu"], settings=settings))["image"] == Settings().image


def test_user_placement_and_resources_are_honoured_and_merged():
    sample = SAMPLES["pvc-placement"]
    manifests = built(sample)
    spec = pod(manifests)
    assert spec["nodeSelector"] == {
        "nvidia.com/gpu.present": "true",
        "topology.kubernetes.io/zone": "eu-1a",
    }
    assert spec["tolerations"] == [GPU_TOLERATION, *sample["tolerations"]]
    assert spec["affinity"] == sample["affinity"]
    assert server(manifests)["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"memory": "8Gi", "nvidia.com/gpu": "2"},
    }


def test_the_image_of_the_zoo_overrides_the_settings():
    body = zoo_body(SAMPLES["zoo-gpu"])
    body["spec"].update(image="registry.local/zoo:dev", imagePullPolicy="Always")
    zoo = parse_zoo(body, CATALOG)
    deployment = builders.deployment(zoo, zoo.models[0], Settings())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["imagePullPolicy"]) == (
        "registry.local/zoo:dev",
        "Always",
    )


# ------------------------------------------------------------------ probes, ports, lifecycle
def test_probes_ports_metrics_and_drain():
    settings = Settings(drain_seconds=25, prestop_seconds=5, startup_seconds=900)
    manifests = built(SAMPLES["zoo-cpu"], settings=settings)
    container, spec = server(manifests), pod(manifests)
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 900
    assert container["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 8081, "protocol": "TCP"},
    ]
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert spec["terminationGracePeriodSeconds"] > 25 + 5
    assert container["args"][container["args"].index("--drain-seconds") + 1] == "25"
    annotations = by_kind(manifests)["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080"
    assert annotations["prometheus.io/path"] == "/metrics"
    ports = {p["name"]: p for p in by_kind(manifests)["Service"]["spec"]["ports"]}
    assert ports["http"]["port"] == 80 and ports["http"]["targetPort"] == "http"
    assert ports["metrics"]["targetPort"] == "http"
    assert ports["grpc"] == {
        "name": "grpc", "port": 8081, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"
    }  # fmt: skip
    # The container's gRPC port is the one the server listens on by default.
    assert "--grpc-port" not in container["args"]
    assert parse_settings(container["args"], env={}).grpc_port == builders.GRPC_PORT


# ------------------------------------------------------------------ sources & the server
def sha_of(sample: dict) -> str:
    return sample["source"]["sha256"]


def _server_settings(container: dict):
    """The server's own parser accepts exactly what the pod runs."""
    assert container["command"] == ["modelzoo-server"]
    return parse_settings(container["args"], env={})


def test_a_zoo_entry_runs_from_the_baked_model_dir():
    manifests = built(SAMPLES["zoo-gpu"])
    parsed = _server_settings(server(manifests))
    assert (parsed.zoo, parsed.name, str(parsed.model_dir)) == (
        "mtcnn",
        "faces",
        "/opt/modelzoo/models",
    )
    assert (parsed.host, parsed.port) == ("0.0.0.0", 8080)
    assert "ConfigMap" not in by_kind(manifests)
    assert "initContainers" not in pod(manifests)


def test_a_url_model_is_fetched_by_an_init_container_and_checked(tmp_path):
    sample = SAMPLES["url-batching-autoscaling"]
    manifests = built(sample)
    spec = pod(manifests)
    init, _ = spec["initContainers"]  # then prepare-model (test_operator_prepare.py)
    assert init["command"] == ["modelzoo-fetch"]
    assert init["args"] == [
        "--url", sample["source"]["url"], "--sha256", sha_of(sample), "--out", "/models/model.pb"
    ]  # fmt: skip
    assert init["image"] == server(manifests)["image"]
    model_volume = next(v for v in spec["volumes"] if v["name"] == "model")
    assert "emptyDir" in model_volume
    parsed = _server_settings(server(manifests))
    assert str(parsed.graph) == "/models/model.pb"
    assert parsed.sha256 == sha_of(sample)
    assert (parsed.max_batch_size, parsed.max_delay_ms, parsed.max_inflight) == (16, 2.5, 32)
    assert next(m for m in server(manifests)["volumeMounts"] if m["name"] == "model")["readOnly"]


def test_the_signature_configmap_is_what_the_server_reads(tmp_path):
    sample = SAMPLES["url-batching-autoscaling"]
    manifests = built(sample)
    configmap = by_kind(manifests)["ConfigMap"]
    container = server(manifests)
    parsed = _server_settings(container)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "signature")
    assert str(parsed.signature) == f"{mount['mountPath']}/{builders.SIGNATURE_FILE}"
    volume = next(v for v in pod(manifests)["volumes"] if v["name"] == "signature")
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    # Write the ConfigMap's file and load it with the server's own reader.
    signature_file = tmp_path / builders.SIGNATURE_FILE
    signature_file.write_text(configmap["data"][builders.SIGNATURE_FILE])
    entry = from_files(tmp_path / "model.pb", signature_file, "custom", sha_of(sample))
    assert entry.task == "image-classification"
    assert [t.name for t in entry.signature.inputs] == ["images"]
    assert entry.signature.inputs[0].shape == (-1, 224, 224, 3)
    assert entry.signature.outputs[0].tensor == "out:0"
    assert entry.labels == ("background", "cat", "dog")
    assert entry.preprocessing == Preprocessing(size=(224, 224), scale=1 / 127.5, offset=-1.0)
    assert entry.batchable


def test_a_pvc_model_mounts_the_claim_read_only():
    manifests = built(SAMPLES["pvc-placement"])
    volume = next(v for v in pod(manifests)["volumes"] if v["name"] == "model")
    assert volume["persistentVolumeClaim"] == {"claimName": "graphs", "readOnly": True}
    parsed = _server_settings(server(manifests))
    assert str(parsed.graph) == "/models/v3/model.pb"
    assert parsed.sha256 == sha_of(SAMPLES["pvc-placement"])


def test_a_signature_change_rolls_the_pods():
    sample = copy.deepcopy(SAMPLES["url-batching-autoscaling"])
    before = by_kind(built(sample))["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    sample["labels"] = ["background", "cat", "dog", "bird"]
    after = by_kind(built(sample))["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert before[builders.CONFIG_HASH] != after[builders.CONFIG_HASH]


# ------------------------------------------------------------------ PDB and HPA
def test_a_pdb_only_with_more_than_one_replica():
    assert "PodDisruptionBudget" not in by_kind(built(SAMPLES["zoo-gpu"]))
    pdb = by_kind(built(SAMPLES["zoo-cpu"]))["PodDisruptionBudget"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == {
        "modelzoo.dev/zoo": "demo",
        "modelzoo.dev/model": "classify",
    }
    assert "PodDisruptionBudget" in by_kind(built(SAMPLES["url-batching-autoscaling"]))


def test_autoscaling_builds_an_hpa_on_inflight_requests_and_leaves_replicas_to_it():
    kinds = by_kind(built(SAMPLES["url-batching-autoscaling"]))
    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "demo-custom",
    }
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    (metric,) = hpa["metrics"]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == "modelzoo_inflight_requests"
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "8"}
    assert "replicas" not in kinds["Deployment"]["spec"]
    assert "HorizontalPodAutoscaler" not in by_kind(built(SAMPLES["zoo-cpu"]))
    assert by_kind(built(SAMPLES["zoo-cpu"]))["Deployment"]["spec"]["replicas"] == 2


def test_hpa_behavior_is_passed_through_verbatim_and_left_out_without_it():
    behavior = {
        "scaleUp": {"stabilizationWindowSeconds": 0},
        "scaleDown": {
            "stabilizationWindowSeconds": 30,
            "selectPolicy": "Min",
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}],
        },
    }
    sample = copy.deepcopy(SAMPLES["url-batching-autoscaling"])
    sample["autoscaling"]["behavior"] = behavior
    zoo = parse_zoo(zoo_body(sample), CATALOG)
    (model,) = zoo.models
    hpa = builders.horizontal_pod_autoscaler(zoo, model)["spec"]
    assert hpa["behavior"] == behavior
    hpa["behavior"]["scaleDown"]["policies"].clear()
    assert model.autoscaling.behavior == behavior, "the manifest does not share the spec's"
    plain = by_kind(built(SAMPLES["url-batching-autoscaling"]))["HorizontalPodAutoscaler"]
    assert "behavior" not in plain["spec"], "the HPA's own defaults apply"


def test_an_external_autoscaler_gets_no_hpa_and_the_replicas_but_the_same_pdb():
    """autoscalerClass external (KEDA, ...): the replicas are the other autoscaler's to set,
    and minReplicas still guards drains as it does with our HPA."""
    external = copy.deepcopy(SAMPLES["url-batching-autoscaling"])
    external["autoscaling"]["autoscalerClass"] = "external"
    kinds = by_kind(built(external))
    assert "HorizontalPodAutoscaler" not in kinds
    assert "replicas" not in kinds["Deployment"]["spec"]
    ours = by_kind(built(SAMPLES["url-batching-autoscaling"]))
    assert kinds["PodDisruptionBudget"] == ours["PodDisruptionBudget"]
    assert set(kinds) == set(ours) - {"HorizontalPodAutoscaler"}
    external["autoscaling"]["minReplicas"] = 1
    assert "PodDisruptionBudget" not in by_kind(built(external)), "one pod may be drained"


# ------------------------------------------------------------------ ownership, names, purity
@pytest.mark.parametrize("sample", sorted(SAMPLES))
def test_every_child_is_owned_labelled_and_named_after_zoo_and_model(sample):
    model = SAMPLES[sample]["name"]
    for manifest in built(SAMPLES[sample]):
        meta = manifest["metadata"]
        assert meta["namespace"] == "ml"
        assert meta["name"].startswith(f"demo-{model}")
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "modelzoo.dev/v1alpha1",
                "kind": "ModelZoo",
                "name": "demo",
                "uid": "uid-1234",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["labels"]["modelzoo.dev/zoo"] == "demo"
        assert meta["labels"]["modelzoo.dev/model"] == model
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "modelzoo-operator"
        assert "finalizers" not in meta


def test_the_deployment_selects_its_own_pods_only():
    deployment = by_kind(built(SAMPLES["zoo-cpu"]))["Deployment"]["spec"]
    selector = deployment["selector"]["matchLabels"]
    assert selector.items() <= deployment["template"]["metadata"]["labels"].items()
    assert set(selector) == {"modelzoo.dev/zoo", "modelzoo.dev/model"}


def test_builders_are_pure():
    models = list(SAMPLES.values())
    assert built(*models) == built(*models)
    zoo = parse_zoo(zoo_body(*models), CATALOG)
    before = copy.deepcopy(zoo)
    for model in zoo.models:
        builders.model_children(zoo, model, Settings())
    assert zoo == before


def test_model_url_and_children_of_several_models():
    manifests = built(SAMPLES["zoo-gpu"], SAMPLES["zoo-cpu"])
    names = sorted((m["kind"], m["metadata"]["name"]) for m in manifests)
    assert names == [
        ("Deployment", "demo-classify"),
        ("Deployment", "demo-faces"),
        ("PodDisruptionBudget", "demo-classify"),
        ("Service", "demo-classify"),
        ("Service", "demo-faces"),
    ]
    zoo = parse_zoo(zoo_body(SAMPLES["zoo-gpu"]), CATALOG)
    assert builders.model_url(zoo, zoo.models[0], Settings()) == (
        "http://demo-faces.ml.svc.cluster.local/infer"
    )


def test_startup_probe_threshold_rounds_up():
    manifests = built(SAMPLES["zoo-cpu"], settings=Settings(startup_seconds=601))
    startup = server(manifests)["startupProbe"]
    assert startup["failureThreshold"] == math.ceil(601 / startup["periodSeconds"])


def test_an_s3_model_gets_its_credentials_in_the_init_container_only():
    (deployment,) = [m for m in built(SAMPLES["s3-private-store"]) if m["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (fetch,) = pod["initContainers"]
    args = fetch["args"]
    assert args[: args.index("--sha256")] == [
        "--s3-endpoint", "https://store.storage.svc:9000", "--s3-bucket", "models",
        "--s3-key", "resnet/v2/model.pb", "--s3-region", "us-east-1", "--s3-path-style",
    ]  # fmt: skip
    env = {e["name"]: e for e in fetch["env"]}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "model-store", "key": name}
    assert env["MODELZOO_S3_CA_BUNDLE"]["value"].startswith("-----BEGIN CERTIFICATE-----")
    (server,) = pod["containers"]
    assert not any(e["name"].startswith("AWS_") for e in server.get("env", []))
    assert "--graph" in server["args"] and "/models/model.pb" in server["args"]
    # The fetch CLI takes exactly these flags.
    parsed = argument_parser().parse_args(args)
    assert parsed.s3_path_style and parsed.s3_key == "resnet/v2/model.pb"


def test_an_anonymous_s3_model_gets_no_secret():
    model = copy.deepcopy(SAMPLES["s3-private-store"])
    del model["source"]["s3"]["secretName"], model["source"]["s3"]["caBundle"]
    (deployment,) = [m for m in built(model) if m["kind"] == "Deployment"]
    (fetch,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert [e["name"] for e in fetch["env"]] == ["HOME"]


def test_a_cpu_zoo_entry_on_litert_asks_for_less_memory_by_default():
    entries = ZooEntryNames(
        frozenset({"mobilenet", "mtcnn", "nsfw"}),
        "test",
        frozenset({"mobilenet", "mtcnn"}),
        frozenset({"mtcnn"}),
    )

    def requests(model: dict) -> dict:
        zoo = parse_zoo(zoo_body(model), entries)
        return builders.resources(zoo.models[0], Settings())["requests"]

    base = {"name": "m", "replicas": 1, "gpu": 0}
    assert requests({**base, "zoo": "mobilenet"}) == builders.LITERT_REQUESTS
    # A pipeline's buffers grow with the photos: more than one interpreter, less than TF.
    assert requests({**base, "zoo": "mtcnn"}) == builders.LITERT_PIPELINE_REQUESTS
    assert requests({**base, "zoo": "mtcnn", "gpu": 1}) == builders.DEFAULT_REQUESTS
    assert requests({**base, "zoo": "nsfw"}) == builders.DEFAULT_REQUESTS  # no .tflite
    on_tf = {**base, "zoo": "mobilenet", "runtime": "tensorflow"}
    assert requests(on_tf) == builders.DEFAULT_REQUESTS
    assert requests({**base, "zoo": "mobilenet", "gpu": 1}) == builders.DEFAULT_REQUESTS
    own = {**base, "zoo": "mobilenet", "resources": {"requests": {"memory": "3Gi"}}}
    assert requests(own) == {"memory": "3Gi"}
