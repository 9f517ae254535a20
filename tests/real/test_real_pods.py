"""Model pods on the real node doing what users rely on: a graph fetched from a URL or
an S3-compatible store and pinned by sha256, a token Secret rotated under a running pod,
a rolling update that loses no request, and the gRPC service through the model's
Service."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import json
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc

from tests.cluster import realnode
from tests.e2e.kube import eventually, get_json, kubectl_wait, names, wait_for_zoo
from tests.real.calls import (
    KeepAliveLoad,
    output,
    service_address,
    v2_body,
    v2_infer,
    wait_routed,
    zoo_doc,
)
from tests.s3_store import READER, REGION, s3_store
from tests.servers import http_origin

pytestmark = pytest.mark.real
FACE = np.random.default_rng(7).random((1, 64, 64, 1), dtype=np.float32) * 2 - 1


@pytest.fixture(scope="module")
def emotion(zoo_dir: Path) -> tuple[bytes, dict]:
    """The zoo's emotion graph as a user's own file, and its record (signature)."""
    meta = json.loads((zoo_dir / "emotion.meta.json").read_text())
    return (zoo_dir / "emotion.pb").read_bytes(), meta


def tensorflow_answer(graph: bytes, signature: dict, x: np.ndarray) -> np.ndarray:
    """The graph run by TensorFlow in this process: the reference for the pod's answer."""
    import tensorflow as tf

    definition = tf.compat.v1.GraphDef()
    definition.ParseFromString(graph)
    with tf.Graph().as_default() as g:
        tf.import_graph_def(definition, name="")
    with tf.compat.v1.Session(graph=g) as session:
        return session.run(signature["outputs"][0]["tensor"], {signature["inputs"][0]["tensor"]: x})


def degraded_event(cluster, namespace: str, zoo: str) -> str:
    events = get_json(
        cluster, "events", "-n", namespace,
        "--field-selector", f"involvedObject.name={zoo},reason=Degraded,type=Warning",
    )["items"]  # fmt: skip
    return events[0]["message"] if events else ""


def test_a_source_url_model_is_fetched_checked_and_served(
    real_cluster, chart, restricted_namespace, emotion
):
    ns = restricted_namespace
    graph, meta = emotion
    fetched: list[str] = []

    class Origin(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            fetched.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(graph)))
            self.end_headers()
            self.wfile.write(graph)

        def log_message(self, *args):
            pass

    # The node's side of the veth: pods reach it, nothing off the machine does.
    with http_origin(Origin, host=realnode.LINK_HOST) as origin:

        def model(sha256: str) -> dict:
            return {
                "name": "feelings",
                "source": {"url": f"{origin}/emotion.pb", "sha256": sha256},
                "task": "tensor",
                "signature": meta["signature"],
            }

        sha = hashlib.sha256(graph).hexdigest()
        # The same graph as an image classifier: its pod's prepare-model init container
        # converts and verifies it, and the server runs the .tflite on LiteRT.
        classifier = {
            **model(sha),
            "name": "faces",
            "task": "image-classification",
            "preprocessing": meta["preprocessing"],
            "labels": meta["labels"],
        }
        good, bad = f"fetched-{uuid.uuid4().hex[:6]}", f"refused-{uuid.uuid4().hex[:6]}"
        t0 = time.monotonic()
        for zoo in (zoo_doc(bad, ns, model("0" * 64)), zoo_doc(good, ns, model(sha), classifier)):
            real_cluster.kubectl("apply", "-f", "-", input=json.dumps(zoo))

        # A wrong sha256: Degraded with the fetch's own reason within a minute, long
        # before the Deployment's progress deadline (startup seconds + 60).
        kubectl_wait(real_cluster, ns, "condition=Degraded", f"modelzoo/{bad}", timeout=60)
        degraded_s = time.monotonic() - t0
        status = get_json(real_cluster, "modelzoo", bad, "-n", ns)["status"]
        (entry,) = status["models"]
        assert entry["phase"] == "Failed", status
        assert "init container fetch-model" in entry["message"], entry
        assert "sha256 mismatch" in entry["message"], entry
        message = eventually(lambda: degraded_event(real_cluster, ns, bad), 30, "the Event")
        assert "sha256 mismatch" in message

        wait_for_zoo(real_cluster, ns, good, timeout=300)
    assert fetched and set(fetched) == {"/emotion.pb"}

    def runtimes() -> dict[str, tuple[str, str]] | None:
        models = get_json(real_cluster, "modelzoo", good, "-n", ns)["status"]["models"]
        found = {m["name"]: (m.get("runtime"), m.get("runtimeReason", "")) for m in models}
        return found if all(runtime for runtime, _ in found.values()) else None

    found = eventually(runtimes, 60, "each model's runtime in the status")
    assert found["faces"][0] == "litert" and found["faces"][1].startswith("verified"), found
    assert found["feelings"][0] == "tensorflow", found  # a tensor model is never converted

    expected = tensorflow_answer(graph, meta["signature"], FACE)
    name = meta["signature"]["outputs"][0]["name"]
    code, answer = v2_infer(
        wait_routed(service_address(real_cluster, ns, good, "feelings", "http")),
        "feelings",
        v2_body(meta["signature"]["inputs"][0]["name"], FACE),
    )
    assert code == 200, answer
    np.testing.assert_allclose(output(answer, name), expected, rtol=1e-5, atol=1e-6)

    # The same model over gRPC through the Service's `grpc` port (appProtocol grpc).
    client = triton_grpc.InferenceServerClient(
        service_address(real_cluster, ns, good, "feelings", "grpc")
    )
    try:
        tensor = triton_grpc.InferInput(meta["signature"]["inputs"][0]["name"], FACE.shape, "FP32")
        tensor.set_data_from_numpy(FACE)
        result = client.infer("feelings", [tensor], client_timeout=60)
        np.testing.assert_array_equal(result.as_numpy(name), output(answer, name))
    finally:
        client.close()
    # The classifier's pod answers from the .tflite, within the prepare step's tolerance.
    code, lite = v2_infer(
        wait_routed(service_address(real_cluster, ns, good, "faces", "http")),
        "faces",
        v2_body(meta["signature"]["inputs"][0]["name"], FACE),
    )
    assert code == 200, lite
    np.testing.assert_allclose(output(lite, name), expected, atol=1e-3)
    print(f"wrong sha256 -> Degraded in {degraded_s:.1f}s; faces on {found['faces']}")


def secret_doc(namespace: str, name: str, data: dict[str, str]) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "stringData": data,
        }
    )


def test_a_source_s3_model_is_fetched_with_read_only_credentials(
    real_cluster, chart, restricted_namespace, emotion, tmp_path
):
    ns = restricted_namespace
    graph, meta = emotion
    wrong = "not-the-reader-secret"
    # The store listens on the host end of the veth, where the pods reach it.
    with s3_store(real_cluster.bin, tmp_path / "s3", host=realnode.LINK_HOST) as store:
        store.put("models", "emotion/v1/model.pb", graph)
        for name, secret in (("model-store", READER[1]), ("stale-store", wrong)):
            keys = {"AWS_ACCESS_KEY_ID": READER[0], "AWS_SECRET_ACCESS_KEY": secret}
            real_cluster.kubectl("apply", "-f", "-", input=secret_doc(ns, name, keys))

        def model(secret_name: str) -> dict:
            s3 = {
                "endpoint": store.endpoint,
                "bucket": "models",
                "key": "emotion/v1/model.pb",
                "region": REGION,
                "secretName": secret_name,
                "pathStyle": True,
            }
            return {
                "name": "feelings",
                "source": {"s3": s3, "sha256": hashlib.sha256(graph).hexdigest()},
                "task": "tensor",
                "signature": meta["signature"],
            }

        good, bad = f"stored-{uuid.uuid4().hex[:6]}", f"denied-{uuid.uuid4().hex[:6]}"
        for zoo, secret_name in ((bad, "stale-store"), (good, "model-store")):
            doc = zoo_doc(zoo, ns, model(secret_name))
            real_cluster.kubectl("apply", "-f", "-", input=json.dumps(doc))
        kubectl_wait(real_cluster, ns, "condition=Degraded", f"modelzoo/{bad}", timeout=60)
        (entry,) = get_json(real_cluster, "modelzoo", bad, "-n", ns)["status"]["models"]
        assert "SignatureDoesNotMatch" in entry["message"], entry
        wait_for_zoo(real_cluster, ns, good, timeout=300)

    address = wait_routed(service_address(real_cluster, ns, good, "feelings", "http"))
    code, answer = v2_infer(address, "feelings", v2_body("input", FACE))
    assert code == 200, answer
    name = meta["signature"]["outputs"][0]["name"]
    expected = tensorflow_answer(graph, meta["signature"], FACE)
    np.testing.assert_allclose(output(answer, name), expected, rtol=1e-5, atol=1e-6)
    # The credentials reach the init container only, by reference, and nothing shows them.
    (pod,) = get_json(real_cluster, "pods", "-n", ns, "-l", f"modelzoo.dev/zoo={good}")["items"]
    (server,) = pod["spec"]["containers"]
    assert not any(e["name"].startswith("AWS_") for e in server.get("env", []))
    shown = json.dumps(
        [
            pod,
            get_json(real_cluster, "modelzoo", good, "-n", ns),
            get_json(real_cluster, "modelzoo", bad, "-n", ns),
            get_json(real_cluster, "events", "-n", ns),
        ]
    )
    assert READER[1] not in shown and wrong not in shown


def test_a_rotated_token_secret_takes_effect_in_a_running_pod(
    real_cluster, chart, restricted_namespace
):
    ns = restricted_namespace
    old, new = f"old-{uuid.uuid4().hex}", f"new-{uuid.uuid4().hex}"

    def secret(token: str) -> str:
        return secret_doc(ns, "model-tokens", {"tokens": f"{token}\n"})

    real_cluster.kubectl("apply", "-f", "-", input=secret(old))
    zoo = f"locked-{uuid.uuid4().hex[:6]}"
    model = {
        "name": "feelings",
        "zoo": "emotion",
        "auth": {"secretName": "model-tokens", "key": "tokens"},
    }
    real_cluster.kubectl("apply", "-f", "-", input=json.dumps(zoo_doc(zoo, ns, model)))
    wait_for_zoo(real_cluster, ns, zoo, timeout=300)
    address = wait_routed(service_address(real_cluster, ns, zoo, "feelings", "http"))
    body = v2_body("input", FACE)
    assert v2_infer(address, "feelings", body)[0] == 401
    assert v2_infer(address, "feelings", body, token=new)[0] == 401
    assert v2_infer(address, "feelings", body, token=old)[0] == 200

    # Bounded by the kubelet's sync of Secret volumes (syncFrequency: 1 min by default,
    # 10 s on this node) plus its Secret watch; the server re-reads the file on the next
    # request after it changes. No restart: the same pod answers.
    pods = names(real_cluster, "pods", ns, zoo)
    t0 = time.monotonic()
    real_cluster.kubectl("apply", "-f", "-", input=secret(new))

    def rotated() -> bool:
        return (
            v2_infer(address, "feelings", body, token=new)[0] == 200
            and v2_infer(address, "feelings", body, token=old)[0] == 401
        )

    eventually(rotated, 120, "the rotated token to take effect")
    assert names(real_cluster, "pods", ns, zoo) == pods
    print(f"rotated token in effect after {time.monotonic() - t0:.1f}s")


def test_a_rolling_update_under_load_loses_no_request(real_cluster, chart, restricted_namespace):
    ns = restricted_namespace
    zoo = f"rolling-{uuid.uuid4().hex[:6]}"
    model = {"name": "feelings", "zoo": "emotion", "replicas": 2}
    real_cluster.kubectl("apply", "-f", "-", input=json.dumps(zoo_doc(zoo, ns, model)))
    wait_for_zoo(real_cluster, ns, zoo, timeout=300)
    before = names(real_cluster, "pods", ns, zoo)
    address = wait_routed(service_address(real_cluster, ns, zoo, "feelings", "http"))

    # Through the ClusterIP (kube-proxy spreads connections over the pods), not a
    # port-forward that pins one pod.
    with KeepAliveLoad(address, "feelings", v2_body("input", FACE)) as load:
        eventually(lambda: load.ok >= 50, 60, "the load to get going")
        changed = zoo_doc(zoo, ns, {**model, "maxInflight": 48})
        real_cluster.kubectl("apply", "-f", "-", input=json.dumps(changed))

        def rolled() -> bool:
            now = names(real_cluster, "pods", ns, zoo)
            zoo_now = get_json(real_cluster, "modelzoo", zoo, "-n", ns)
            ready = {c["type"]: c["status"] for c in zoo_now["status"]["conditions"]}
            observed = zoo_now["status"]["observedGeneration"] == zoo_now["metadata"]["generation"]
            return observed and ready["Ready"] == "True" and len(now) == 2 and not now & before

        eventually(rolled, 300, "every pod to be replaced")
        served_during_roll = load.ok
        time.sleep(3)  # the new pods take traffic
    assert load.failures == [], load.failures[:10]
    assert load.ok > served_during_roll > 0

    real_cluster.kubectl("delete", "modelzoo", zoo, "-n", ns)

    def gone() -> bool:
        return not names(real_cluster, "pods", ns, zoo) and not names(
            real_cluster, "services", ns, zoo
        )

    eventually(gone, 120, "the zoo's pods and Service to be deleted")
    print(f"rolling update: {load.ok} requests served, none failed")
