"""Operator faults on the real control plane (the private, audited cluster of
audit.py, so the session's shared cluster never sees its API server go away):

* the API server restarted under the running operator: it reconnects, a later change
  converges;
* the API server paused (SIGSTOP) past the watch client timeout, and a watch connection
  that goes silent for good (a relay that swallows its bytes and its close): the operator
  still picks up a new zoo, and only because `settings.watching.client_timeout` is set;
* a zoo deleted while its children are being made: no orphans, no error loop;
* two operator replicas at once: one writer, no duplicates.

Each operator gets DRIFT_INTERVAL=3600 where the drift sweep (which lists every zoo)
would otherwise hide a dead watch. Waits are `kubectl wait` or bounded polls of the
cluster; the only sleeps are the faults' own durations.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from tests.e2e.audit import AuditedCluster, audit_stamp
from tests.e2e.kube import (
    WAIT,
    apply,
    eventually,
    get_json,
    kubectl_wait,
    namespace_state,
    wait_for_zoo,
    zoo_manifest,
)
from tests.e2e.operators import DRIFT_INTERVAL, LocalOperator
from tests.samples import SHA, SIGNATURE

pytestmark = pytest.mark.e2e
NO_SWEEP = {"MODELZOO_OPERATOR_DRIFT_INTERVAL": "3600"}
KINDS = (
    "deployments", "services", "configmaps", "poddisruptionbudgets",
    "horizontalpodautoscalers", "networkpolicies", "replicasets", "pods",
)  # fmt: skip
MUTATING = {"create", "update", "patch", "delete", "deletecollection"}


@pytest.fixture
def operators() -> Iterator[list[LocalOperator]]:
    """Operators a test starts; all stopped at its end."""
    started: list[LocalOperator] = []
    yield started
    for op in started:
        op.stop()


def start(audited: AuditedCluster, operators: list, name: str, env=None, server="", priority=0):
    op, jti = audited.operator(name, env, server, priority)
    operators.append(op)
    return op, jti


def explainer(audited: AuditedCluster, namespace: str, *ops: LocalOperator):
    """What a failed wait needs to be understood: the namespace's objects and events, the
    tail of each operator's log, and the control plane's."""

    def explain() -> str:
        logs = "\n".join(f"--- {op.workdir.name}\n{op.output()[-3000:]}" for op in ops)
        state = namespace_state(audited.cluster, namespace)
        return f"{state}\n{logs}\n{audited.cluster.logs_tail(6)}"

    return explain


def wait_ready(
    audited: AuditedCluster, namespace: str, zoo: str, timeout: int = WAIT, ops=()
) -> dict:
    explain = explainer(audited, namespace, *ops)
    return wait_for_zoo(audited.cluster, namespace, zoo, timeout=timeout, explain=explain)


def labelled(audited: AuditedCluster, namespace: str, zoo: str) -> dict[str, list[dict]]:
    out = {}
    for kind in KINDS:
        items = get_json(audited.cluster, kind, "-n", namespace, "-l", f"modelzoo.dev/zoo={zoo}")
        out[kind] = items["items"]
    return out


def api_server_ready(audited: AuditedCluster) -> bool:
    return audited.kubectl("get", "--raw", "/readyz", check=False, timeout=20).returncode == 0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return False


# kube-controller-manager and kube-scheduler exit when they cannot renew their leader
# lease (an API server away for more than ~10 s), and kwokctl's binary runtime does not
# restart them. So after a fault the test restarts those two itself: the cluster must
# recover for the test to see whether the OPERATOR did. (kwok's controller survives the
# outage; a new one would wait on the node leases its predecessor holds.)
CONTROLLERS = ("kube-controller-manager", "kube-scheduler")


def pid_file(audited: AuditedCluster, name: str) -> Path:
    return audited.cluster.cluster_dir / "pids" / f"{name}.pid"


def kill(audited: AuditedCluster, name: str) -> int:
    """SIGKILL a component (as `kwokctl stop` does) and forget its pid file: kwokctl's
    start skips a component whose recorded pid still answers signal 0, which an exited
    but not yet reaped process does."""
    path = pid_file(audited, name)
    if not path.exists():
        return 0
    pid = int(path.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    eventually(lambda: not alive(pid), 60, f"{name} ({pid}) to exit")
    path.unlink()
    return pid


def restart_controllers(audited: AuditedCluster) -> None:
    """Start fresh controllers, and the API server if it is down; return once the API
    server answers."""
    for name in CONTROLLERS:
        kill(audited, name)
    audited.cluster.kwokctl("start", "cluster", timeout=180)  # starts what is not running
    eventually(lambda: api_server_ready(audited), 120, "the API server")
    for name in (*CONTROLLERS, "kube-apiserver"):
        assert alive(int(pid_file(audited, name).read_text())), name


def watch_timeouts(audited: AuditedCluster, jti: str, resource: str, since: str) -> set[str]:
    """The timeoutSeconds of the operator's watch requests (its server_timeout, as sent)."""
    out = set()
    for event in audited.audit_events(since):
        ref = event.get("objectRef") or {}
        credential = (
            event["user"].get("extra", {}).get("authentication.kubernetes.io/credential-id")
        )
        if (
            event["verb"] == "watch"
            and ref.get("resource") == resource
            and credential == [f"JTI={jti}"]
        ):
            query = urlparse(event["requestURI"]).query
            out |= {p.split("=", 1)[1] for p in query.split("&") if p.startswith("timeoutSeconds=")}
    return out


# ------------------------------------------------------------------ (a) API server restart
def test_the_operator_reconnects_after_the_api_server_restarts(
    audited, operators, audited_namespace
):
    ns = audited_namespace
    op, _ = start(audited, operators, "restart", NO_SWEEP)
    apply(audited.cluster, ns, zoo_manifest("steady", {"name": "m", "zoo": "mobilenet"}))
    wait_ready(audited, ns, "steady")

    # SIGKILL: after SIGTERM this kube-apiserver stops listening at once but lingers for
    # minutes with its watches open.
    pid = kill(audited, "kube-apiserver")
    assert not api_server_ready(audited)
    time.sleep(10)  # the outage itself: the operator's requests and watches fail meanwhile
    restart_controllers(audited)
    assert audited.api_server_pid() != pid

    # Changes made afterwards reach the operator only through its (re-opened) watches.
    audited.kubectl(
        "patch", "mz", "steady", "-n", ns, "--type=json",
        "-p", '[{"op": "replace", "path": "/spec/models/0/replicas", "value": 2}]',
    )  # fmt: skip
    apply(audited.cluster, ns, zoo_manifest("fresh", {"name": "m", "zoo": "nsfw"}))
    old_service = get_json(audited.cluster, "service", "steady-m", "-n", ns)["metadata"]["uid"]
    audited.kubectl("delete", "service", "steady-m", "-n", ns)

    kubectl_wait(
        audited.cluster, ns, "jsonpath={.status.readyReplicas}=2", "deployment/steady-m",
        explain=explainer(audited, ns, op),
    )  # fmt: skip
    eventually(
        lambda: (
            (z := get_json(audited.cluster, "modelzoo", "steady", "-n", ns))["status"].get(
                "observedGeneration"
            )
            == z["metadata"]["generation"]
            and z["status"]["models"][0]["readyReplicas"] == 2
        ),
        120, "the status to follow the change",
    )  # fmt: skip
    wait_ready(audited, ns, "fresh", ops=(op,))
    eventually(
        lambda: get_json(audited.cluster, "service", "steady-m", "-n", ns)["metadata"]["uid"]
        != old_service,
        60, "the deleted Service to come back",
    )  # fmt: skip
    children = labelled(audited, ns, "steady")
    assert [d["metadata"]["name"] for d in children["deployments"]] == ["steady-m"]
    assert len(children["replicasets"]) == 1, "scaling made no new ReplicaSet"
    assert op.alive()


# ------------------------------------------------------------------ (b) silent watches
def test_a_paused_api_server_does_not_freeze_the_operator(audited, operators, audited_namespace):
    ns = audited_namespace
    timeouts = {
        "MODELZOO_OPERATOR_WATCH_SERVER_TIMEOUT": "8",
        "MODELZOO_OPERATOR_WATCH_CLIENT_TIMEOUT": "12",
        "MODELZOO_OPERATOR_REQUEST_TIMEOUT": "5",
    }
    since = audit_stamp()
    op, jti = start(audited, operators, "paused", {**NO_SWEEP, **timeouts})
    apply(audited.cluster, ns, zoo_manifest("before", {"name": "m", "zoo": "mobilenet"}))
    wait_ready(audited, ns, "before")
    # handlers.py's start-up sets kopf's watch timeouts from the settings: the API server
    # saw them on the operator's watches.
    assert watch_timeouts(audited, jti, "modelzoos", since) == {"8"}

    pid = audited.api_server_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        assert not api_server_ready(audited)
        time.sleep(12 + 8)  # the pause: longer than the client timeout
    finally:
        os.kill(pid, signal.SIGCONT)
    eventually(lambda: api_server_ready(audited), 60, "the API server to answer again")
    restart_controllers(audited)
    assert audited.api_server_pid() == pid, "the same API server, only paused"

    apply(audited.cluster, ns, zoo_manifest("after", {"name": "m", "zoo": "nsfw"}))
    wait_ready(audited, ns, "after", timeout=120, ops=(op,))
    wait_ready(audited, ns, "before", timeout=30, ops=(op,))
    assert op.alive()


class FreezingRelay:
    """A TCP relay in front of the API server. `freeze()` makes every connection open at
    that moment silent for good, both ways (bytes and closes are swallowed), like a NAT
    entry or load balancer that dropped the flow without telling anyone; connections made
    later are relayed as usual. TLS passes through untouched."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.frozen: set[int] = set()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += 1
                ident = self.connections
                self.sockets += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(ident, src, dst), daemon=True).start()

    def _pump(self, ident: int, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if ident in self.frozen:
                if not data:
                    return  # a close is swallowed like everything else
                continue
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            try:
                dst.sendall(data)
            except OSError:
                return

    def freeze(self) -> int:
        with self.lock:
            self.frozen |= set(range(1, self.connections + 1))
            return len(self.frozen)

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


@pytest.fixture
def relay(audited) -> Iterator[FreezingRelay]:
    config = yaml.safe_load(audited.cluster.kubeconfig.read_text())
    server = urlparse(config["clusters"][0]["cluster"]["server"])
    started = FreezingRelay((server.hostname, server.port))
    yield started
    started.close()


def created_within(audited, namespace: str, name: str, seconds: int) -> bool:
    result = audited.kubectl(
        "wait", "--for=create", f"deployment/{name}", "-n", namespace,
        f"--timeout={seconds}s", timeout=seconds + 30, check=False,
    )  # fmt: skip
    return result.returncode == 0


def test_a_silently_dropped_watch_is_reopened_after_the_client_timeout(
    audited, relay, operators, audited_namespace
):  # the relay outlives the operators: they stop through it
    ns = audited_namespace
    through_relay = f"https://127.0.0.1:{relay.port}"

    # Control: without a client timeout (an hour), a frozen watch freezes the operator.
    hour = {
        "MODELZOO_OPERATOR_WATCH_SERVER_TIMEOUT": "3500",
        "MODELZOO_OPERATOR_WATCH_CLIENT_TIMEOUT": "3600",
    }
    stuck, _ = start(audited, operators, "no-client-timeout", {**NO_SWEEP, **hour}, through_relay)
    apply(audited.cluster, ns, zoo_manifest("seen", {"name": "m", "zoo": "mobilenet"}))
    assert created_within(audited, ns, "seen-m", 120), "the relay works"
    assert relay.freeze() > 0
    apply(audited.cluster, ns, zoo_manifest("missed", {"name": "m", "zoo": "mobilenet"}))
    assert not created_within(audited, ns, "missed-m", 40), "the control did not freeze"
    stuck.stop()
    operators.remove(stuck)

    # The operator's setting: the frozen watch is given up and re-opened.
    timeouts = {
        "MODELZOO_OPERATOR_WATCH_SERVER_TIMEOUT": "20",
        "MODELZOO_OPERATOR_WATCH_CLIENT_TIMEOUT": "25",
        "MODELZOO_OPERATOR_REQUEST_TIMEOUT": "5",
    }
    op, _ = start(audited, operators, "client-timeout", {**NO_SWEEP, **timeouts}, through_relay)
    assert created_within(audited, ns, "missed-m", 120), "resumed at start-up, as any zoo"
    wait_ready(audited, ns, "missed")
    frozen_at = time.monotonic()
    assert relay.freeze() > 0
    apply(audited.cluster, ns, zoo_manifest("late", {"name": "m", "zoo": "nsfw"}))
    assert created_within(audited, ns, "late-m", 120), "the frozen watch was never replaced"
    assert time.monotonic() - frozen_at < 25 + 60
    wait_ready(audited, ns, "late")
    assert op.alive()


# ------------------------------------------------------------------ (c) delete mid-create
def race_models() -> list[dict]:
    url = {"url": "https://models.example/m.pb", "sha256": SHA}
    return [
        {"name": f"u{i}", "source": url, "task": "tensor", "signature": SIGNATURE,
         "replicas": 2, "autoscaling": {"minReplicas": 2, "maxReplicas": 3}}
        for i in range(3)
    ] + [{"name": f"z{i}", "zoo": "mobilenet", "replicas": 2} for i in range(3)]  # fmt: skip


def test_a_zoo_deleted_while_its_children_are_made_leaves_no_orphans(
    audited, operators, audited_namespace
):
    ns = audited_namespace
    start(audited, operators, "race")  # with the drift sweep (every DRIFT_INTERVAL seconds)
    began = audit_stamp()

    def children_made(zoos: list[str]) -> set[str]:
        """Children the operator applied for these zoos (it was mid-creation for them)."""
        prefixes = tuple(f"{zoo}-" for zoo in zoos)
        return {
            e["objectRef"]["name"]
            for e in audited.audit_events(began)
            if e["verb"] == "patch" and e["objectRef"].get("name", "").startswith(prefixes)
        }

    # Apply and delete at once, until the operator was caught making children of a zoo
    # being deleted (at least 4 rounds, at most 12).
    doomed: list[str] = []
    while len(doomed) < 4 or (not children_made(doomed) and len(doomed) < 12):
        name = f"race-{len(doomed)}"
        doomed.append(name)
        apply(audited.cluster, ns, zoo_manifest(name, *race_models()))
        audited.kubectl("delete", "mz", name, "-n", ns, "--wait=false")
    # A name used again: the old zoo's children (uid A) may still be there when the new
    # zoo (uid B) is applied; in the end B owns one of each, and nothing is owned by A.
    apply(audited.cluster, ns, zoo_manifest("again", *race_models()))
    audited.kubectl("delete", "mz", "again", "-n", ns, "--wait=false")
    eventually(
        lambda: not get_json(audited.cluster, "modelzoos", "-n", ns)["items"],
        60, "the deleted zoos to be gone",
    )  # fmt: skip
    apply(audited.cluster, ns, zoo_manifest("again", *race_models()))

    def leftovers() -> dict[str, list[str]]:
        out = {}
        for name in doomed:
            for kind, items in labelled(audited, ns, name).items():
                if items:
                    out[f"{name}/{kind}"] = [i["metadata"]["name"] for i in items]
        return out

    eventually(lambda: not leftovers(), 240, "the garbage collector to remove every child")
    assert children_made(doomed), "the operator never got to a doomed zoo: no race happened"
    zoo = wait_ready(audited, ns, "again", timeout=240)
    children = labelled(audited, ns, "again")
    expected = sorted(f"again-{m['name']}" for m in race_models())
    for kind in ("deployments", "services", "networkpolicies"):
        assert sorted(i["metadata"]["name"] for i in children[kind]) == expected, kind
        for item in children[kind]:
            owners = [o["uid"] for o in item["metadata"]["ownerReferences"]]
            assert owners == [zoo["metadata"]["uid"]], (kind, item["metadata"]["name"])
    assert len(children["configmaps"]) == 3 and len(children["horizontalpodautoscalers"]) == 3

    # No error loop: over two drift sweeps, the operator asks nothing about the deleted zoos.
    since = audit_stamp()

    def sweeps() -> list[dict]:
        events = audited.audit_events(since)
        peering = [e for e in events if (e.get("objectRef") or {}).get("resource")
                   == "clusterkopfpeerings" and e["verb"] == "get"]  # fmt: skip
        return events if len(peering) >= 2 else []

    events = eventually(sweeps, 10 * DRIFT_INTERVAL + 60, "two drift sweeps")
    about_doomed = [
        (e["verb"], e["requestURI"])
        for e in events
        if any(name in e["requestURI"] for name in doomed)
    ]
    assert about_doomed == []
    assert all(o.alive() for o in operators)


# ------------------------------------------------------------------ (d) two replicas
def test_two_replicas_at_once_make_each_object_once_with_one_status_writer(
    audited, operators, audited_namespace
):
    ns = audited_namespace
    # The higher priority first: the second starts paused (kopf's peering is mandatory
    # here) and stays so, as it sees a live peer above it.
    low, high = audited.priority(), audited.priority()
    active, active_id = start(audited, operators, "active", priority=high)
    standby, standby_id = start(audited, operators, "standby", priority=low)
    peering = audited.chart.peering
    eventually(
        lambda: {active.identity, standby.identity}
        <= set(get_json(audited.cluster, "clusterkopfpeering", peering).get("status", {})),
        60, "both replicas in the peering",
    )  # fmt: skip
    since = audit_stamp()
    models = [{"name": f"m{i}", "zoo": "mobilenet", "replicas": 2} for i in range(3)]
    apply(audited.cluster, ns, zoo_manifest("pair", *models))
    zoo = wait_ready(audited, ns, "pair")
    audited.kubectl(
        "patch", "mz", "pair", "-n", ns, "--type=json",
        "-p", '[{"op": "replace", "path": "/spec/models/0/replicas", "value": 3}]',
    )  # fmt: skip
    kubectl_wait(
        audited.cluster, ns, "jsonpath={.status.readyReplicas}=3", "deployment/pair-m0",
        explain=explainer(audited, ns, active),
    )  # fmt: skip
    zoo = wait_ready(audited, ns, "pair")
    assert zoo["status"]["observedGeneration"] == zoo["metadata"]["generation"]

    children = labelled(audited, ns, "pair")
    assert sorted(d["metadata"]["name"] for d in children["deployments"]) == [
        "pair-m0", "pair-m1", "pair-m2",
    ]  # fmt: skip
    assert len(children["services"]) == 3 and len(children["replicasets"]) == 3
    assert len(children["poddisruptionbudgets"]) == 3
    ready_events = [
        e for e in get_json(audited.cluster, "events", "-n", ns,
                            "--field-selector", "involvedObject.name=pair")["items"]
        if e["reason"] == "Ready"
    ]  # fmt: skip
    assert len(ready_events) == 1, "one writer, one Ready event"

    writers: dict[str, set[str]] = {}
    status_writes = 0
    for event in audited.audit_events(since):
        ref = event.get("objectRef") or {}
        if event["verb"] not in MUTATING or not ref.get("name", "").startswith("pair"):
            continue
        credential = event["user"]["extra"]["authentication.kubernetes.io/credential-id"][0]
        writers.setdefault(credential, set()).add(ref["resource"])
        status_writes += ref.get("subresource") == "status"
    assert set(writers) == {f"JTI={active_id}"}, writers
    assert f"JTI={standby_id}" not in writers
    assert {"modelzoos", "deployments", "services"} <= writers[f"JTI={active_id}"]
    assert status_writes >= 2, "the status was written (by the active replica only)"
    assert standby.alive() and active.alive()
