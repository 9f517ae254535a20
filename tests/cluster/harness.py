"""A real Kubernetes control plane on loopback for the e2e tests.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler (built from
their Go modules by build.sh) run as local processes under kwokctl's
``binary`` runtime; the kwok controller simulates nodes and pod lifecycles.
Everything listens on 127.0.0.1 only and lives in one temporary directory.

Optionally (``real_node=True``) a real node runs next to them: containerd,
kubelet and kube-proxy in a network namespace of its own (realnode.py), reached
over a veth pair (10.251.0.1 on the host side, where socat forwards to the API server).

Nodes (see NODES): two CPU nodes (cpu 8, memory 32Gi) and two GPU nodes
(also ``nvidia.com/gpu: 4``, label ``nvidia.com/gpu.present=true``, taint
``nvidia.com/gpu=present:NoSchedule``).

CLI (used by tests/cluster/cluster.mk)::

    python tests/cluster/harness.py up           # build if needed, start, print kubeconfig path
    python tests/cluster/harness.py up --real-node --image <archive>   # + the real node
    python tests/cluster/harness.py kubeconfig   # print the kubeconfig path of the running cluster
    python tests/cluster/harness.py down         # stop everything, check no process/port is left

The CLI keeps its cluster in $MODELZOO_CLUSTER_DIR (default
<tmp>/modelzoo-cluster-<uid>); the pytest fixture uses a fresh mkdtemp.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

if __package__:
    from tests.cluster import realnode
else:  # run as a script: python tests/cluster/harness.py
    import realnode

HERE = Path(__file__).resolve().parent
VERSIONS_FILE = HERE / "versions.env"
BUILD_SH = HERE / "build.sh"
CLUSTER_NAME = "modelzoo"

GPU_RESOURCE = "nvidia.com/gpu"
GPU_LABEL = "nvidia.com/gpu.present"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}

# name -> (extra capacity, extra labels, taints)
NODES = {
    "cpu-node-0": ({}, {}, []),
    "cpu-node-1": ({}, {}, []),
    "gpu-node-0": ({GPU_RESOURCE: "4"}, {GPU_LABEL: "true"}, [GPU_TAINT]),
    "gpu-node-1": ({GPU_RESOURCE: "4"}, {GPU_LABEL: "true"}, [GPU_TAINT]),
}


def log(msg: str) -> None:
    print(f"[cluster] {msg}", file=sys.stderr, flush=True)


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """The KEY=value pins of versions.env."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def bin_dir() -> Path:
    """Where build.sh puts (or has put) the binaries of the pinned versions."""
    out = subprocess.run(
        ["bash", str(BUILD_SH), "--print-bin-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def ensure_binaries() -> Path:
    """Run build.sh (a no-op printing "cached" when the stamp is there); its
    progress goes straight to our stderr. Returns the bin dir."""
    out = subprocess.run(["bash", str(BUILD_SH)], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def node_manifest(name: str) -> dict:
    extra_cap, extra_labels, taints = NODES[name]
    capacity = {"cpu": "8", "memory": "32Gi", "pods": "110", **extra_cap}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            # kwokctl's kwok controller manages nodes carrying this annotation
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/role": "agent",
                "node-role.kubernetes.io/agent": "",
                "type": "kwok",
                **extra_labels,
            },
        },
        "spec": {"taints": taints} if taints else {},
        "status": {
            "capacity": dict(capacity),
            "allocatable": dict(capacity),
        },
    }


def _port_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine, LISTEN is not
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for our purposes
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def _listening_sockets() -> dict[int, tuple[str, int]]:
    """inode -> (ip, port) of every TCP socket in LISTEN state."""
    out = {}
    for name, fam in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] != "0A":  # LISTEN
                continue
            hexip, hexport = f[1].split(":")
            raw = bytes.fromhex(hexip)
            if fam == socket.AF_INET:
                ip = socket.inet_ntop(fam, raw[::-1])
            else:
                ip = socket.inet_ntop(fam, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
            out[int(f[9])] = (ip, int(hexport, 16))
    return out


class CommandError(subprocess.CalledProcessError):
    """A failed command, with its output in the message."""

    def __str__(self) -> str:
        out = (self.stdout or "").strip()[-2000:]
        err = (self.stderr or "").strip()[-2000:]
        return f"{super().__str__()}\nstdout: {out}\nstderr: {err}"


class Cluster:
    """One kwok cluster in `workdir`, driven by kwokctl with local binaries."""

    def __init__(
        self,
        workdir: Path | str,
        bin: Path | str | None = None,
        name: str = CLUSTER_NAME,
        audit_policy: Path | str | None = None,
        real_node: bool = False,
        images: list[Path] | tuple[Path, ...] = (),
    ):
        self.workdir = Path(workdir).resolve()
        self.bin = Path(bin) if bin else bin_dir()
        self.name = name
        # Optional: an audit.k8s.io Policy file; the API server then writes `audit_log`.
        self.audit_policy = Path(audit_policy).resolve() if audit_policy else None
        self.versions = read_versions()
        self.kubeconfig = self.workdir / "kubeconfig.yaml"
        self.kwok_workdir = self.workdir / "kwok"
        self.cluster_dir = self.kwok_workdir / "clusters" / name
        self.audit_log = self.cluster_dir / "logs" / "audit.log"  # with audit_policy only
        # Optional: a real node (realnode.py) next to the simulated ones; `images` are
        # image archives (image.sh) loaded and pinned into its containerd.
        self.node = None
        self.images = [Path(i) for i in images]
        if real_node:
            self.node = realnode.RealNode(self)

    # ------------------------------------------------------------ helpers
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["KWOK_WORKDIR"] = str(self.kwok_workdir)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["HOME"] = str(self.workdir / "home")  # helm/kubectl caches stay in the temp dir
        env["HELM_CACHE_HOME"] = str(self.workdir / "home" / "helm-cache")
        env["HELM_CONFIG_HOME"] = str(self.workdir / "home" / "helm-config")
        env["HELM_DATA_HOME"] = str(self.workdir / "home" / "helm-data")
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        for k in (
            "KUBERNETES_SERVICE_HOST",
            "HTTPS_PROXY",
            "HTTP_PROXY",
            "https_proxy",
            "http_proxy",
        ):
            env.pop(k, None)
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
        return env

    def run(self, *args, check=True, timeout=180, input=None) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in args]
        proc = subprocess.run(
            cmd, env=self._env(), capture_output=True, text=True, timeout=timeout, input=input
        )
        if check and proc.returncode != 0:
            raise CommandError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def kubectl(self, *args, check=True, timeout=180, input=None) -> subprocess.CompletedProcess:
        return self.run(
            self.bin / "kubectl",
            "--kubeconfig",
            self.kubeconfig,
            *args,
            check=check,
            timeout=timeout,
            input=input,
        )

    def helm(self, *args, check=True, timeout=300) -> subprocess.CompletedProcess:
        return self.run(
            self.bin / "helm", "--kubeconfig", self.kubeconfig, *args, check=check, timeout=timeout
        )

    def kwokctl(self, *args, check=True, timeout=600) -> subprocess.CompletedProcess:
        return self.run(
            self.bin / "kwokctl", "--name", self.name, *args, check=check, timeout=timeout
        )

    def _config_yaml(self) -> str:
        b = self.bin
        nowhere = str(self.workdir / "no-downloads")  # any download attempt fails fast, offline
        options = {
            "runtime": "binary",
            "bindAddress": "127.0.0.1",
            "kubeVersion": self.versions["K8S_VERSION"],
            "securePort": True,
            "kubeAuthorization": True,  # --authorization-mode=Node,RBAC
            "kubeAdmission": True,
            "disableQPSLimits": True,
            "quietPull": True,
            "components": [
                "etcd",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kwok-controller",
            ],
            "kubeApiserverBinary": str(b / "kube-apiserver"),
            "kubeControllerManagerBinary": str(b / "kube-controller-manager"),
            "kubeSchedulerBinary": str(b / "kube-scheduler"),
            "kubectlBinary": str(b / "kubectl"),
            "etcdBinary": str(b / "etcd"),
            "kwokControllerBinary": str(b / "kwok"),
            "etcdctlBinary": nowhere + "/etcdctl",
            "kectlBinary": nowhere + "/kectl",
            "kubeBinaryPrefix": nowhere,
            "etcdBinaryPrefix": nowhere,
            "kwokBinaryPrefix": nowhere,
            "prometheusBinaryPrefix": nowhere,
            "jaegerBinaryPrefix": nowhere,
            "metricsServerBinaryPrefix": nowhere,
            "dashboardBinaryPrefix": nowhere,
            "cacheDir": str(self.workdir / "kwok-cache"),
        }
        if self.audit_policy:
            options["kubeAuditPolicy"] = str(self.audit_policy)
        doc = {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokctlConfiguration",
            "options": options,
        }
        if self.node:
            extra = self.node.kwokctl_options()
            doc["componentsPatches"] = extra.pop("componentsPatches")
            options.update(extra)
        return json.dumps(doc, indent=2)  # JSON is YAML

    def pids(self) -> list[int]:
        """PIDs of this cluster's component processes: kwokctl's pid files,
        plus any process whose command line names this cluster's private
        directory (a safety net if a pid file went missing)."""
        pids = set()
        for f in (self.cluster_dir / "pids").glob("*.pid"):
            with suppress(OSError, ValueError):
                pids.add(int(f.read_text().strip()))
        marker = str(self.workdir).encode()
        bindir = self.bin.resolve()
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                # only our own binaries, running for this cluster's directory
                if (
                    Path(os.readlink(p / "exe")).parent == bindir
                    and marker in (p / "cmdline").read_bytes()
                ):
                    pids.add(int(p.name))
            except OSError:
                pass
        return sorted(pid for pid in pids if _pid_alive(pid))

    def ports(self) -> list[int]:
        """The TCP ports this cluster's components use (from kwokctl's saved config)."""
        cfg = self.cluster_dir / "kwok.yaml"
        ports = set()
        if cfg.exists():
            for line in cfg.read_text().splitlines():
                key, _, value = line.strip().partition(":")
                if key.endswith("Port") and value.strip().isdigit() and int(value) > 0:
                    ports.add(int(value))
        return sorted(ports)

    def listening(self) -> list[tuple[int, str, int]]:
        """(pid, ip, port) of every TCP socket the cluster's processes listen on."""
        socks = _listening_sockets()
        out = []
        for pid in self.pids():
            try:
                fds = list(Path(f"/proc/{pid}/fd").iterdir())
            except OSError:
                continue
            for fd in fds:
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inode = int(target[8:-1])
                    if inode in socks:
                        out.append((pid, *socks[inode]))
        return sorted(set(out))

    def logs_tail(self, lines: int = 30) -> str:
        out = []
        for f in sorted((self.cluster_dir / "logs").glob("*.log")):
            text = f.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {f.name}\n" + "\n".join(text))
        return "\n".join(out)

    # ------------------------------------------------------------ lifecycle
    def up(self, timeout: float = 600) -> Cluster:
        deadline = time.monotonic() + timeout
        if self.cluster_dir.exists():
            raise RuntimeError(f"a cluster already exists in {self.workdir}; run `down` first")
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "home").mkdir(exist_ok=True)
        cfg = self.workdir / "kwokctl.yaml"
        cfg.write_text(self._config_yaml())
        t0 = time.monotonic()
        if self.node:
            realnode.preflight(self.bin)  # one line naming what is missing, before anything starts
        log(f"creating kwok cluster {self.name!r} in {self.workdir} (binaries: {self.bin})")
        try:
            if self.node:
                self.node.setup_network()
                self.node.setup_front_proxy()
            proc = self.kwokctl(
                "--config",
                cfg,
                "create",
                "cluster",
                "--runtime",
                "binary",
                "--kubeconfig",
                "",
                "--wait",
                "5m",
                "--quiet-pull",
                check=False,
                timeout=max(60, deadline - time.monotonic()),
            )
            if proc.returncode != 0:
                raise RuntimeError(
                    f"kwokctl create cluster failed ({proc.returncode}):\n"
                    f"{proc.stdout}\n{proc.stderr}\n{self.logs_tail()}"
                )
            if "Download" in proc.stdout + proc.stderr:  # every binary must be a local file
                raise RuntimeError(f"kwokctl tried to download something:\n{proc.stderr}")
            kc = self.kwokctl("get", "kubeconfig", timeout=60).stdout
            self.kubeconfig.write_text(kc)
            self.kubeconfig.chmod(0o600)
            self._wait(
                lambda: self.kubectl("get", "--raw", "/readyz", check=False).returncode == 0,
                deadline,
                "the API server to be ready",
            )
            nodes = {"apiVersion": "v1", "kind": "List", "items": [node_manifest(n) for n in NODES]}
            self.kubectl("apply", "-f", "-", input=json.dumps(nodes))
            self.kubectl(
                "wait",
                "--for=condition=Ready",
                "node",
                *NODES,
                f"--timeout={max(10, int(deadline - time.monotonic()))}s",
                timeout=max(20, deadline - time.monotonic() + 10),
            )
            # Pods need the namespace's default ServiceAccount (made by kube-controller-manager).
            self._wait(
                lambda: (
                    self.kubectl("get", "serviceaccount", "default", check=False).returncode == 0
                ),
                deadline,
                "the default ServiceAccount",
            )
            if self.node:
                self.node.start(self.images, timeout=max(120, deadline - time.monotonic()))
        except BaseException:
            log("cluster did not come up; tearing it down")
            self.down()
            raise
        log(f"cluster up in {time.monotonic() - t0:.0f}s; KUBECONFIG={self.kubeconfig}")
        return self

    def _wait(self, ok, deadline: float, what: str) -> None:
        while not ok():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}\n{self.logs_tail()}")
            time.sleep(1)

    def down(self, remove: bool = True) -> None:
        """Stop every process of the cluster, check that none and no port is
        left, and remove the temp directory. Safe to call more than once."""
        node_left = []
        if self.node:
            try:  # the real node first: its kubelet needs the API server to drain
                node_left = self.node.down()
            except Exception as exc:  # the control plane must still go down
                node_left = [f"real node teardown failed: {exc!r}"]
        ports = self.ports()
        pids = self.pids()
        if self.cluster_dir.exists() and (self.bin / "kwokctl").exists():
            proc = self.kwokctl("delete", "cluster", check=False, timeout=180)
            if proc.returncode != 0:
                err = proc.stderr.strip()[-2000:]
                log(f"kwokctl delete cluster failed ({proc.returncode}): {err}")
        # kwokctl only signals the components: give them time to shut down gracefully,
        # then TERM, then KILL whatever is left (only this cluster's own pids).
        pids = sorted(set(pids) | set(self.pids()))
        end = time.monotonic() + 20
        while time.monotonic() < end and any(_pid_alive(p) for p in pids):
            time.sleep(0.2)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = [p for p in pids if _pid_alive(p)]
            if not alive:
                break
            log(f"sending {sig.name} to leftover cluster processes {alive}")
            for p in alive:
                with suppress(ProcessLookupError):
                    os.kill(p, sig)
            end = time.monotonic() + 15
            while time.monotonic() < end and any(_pid_alive(p) for p in alive):
                time.sleep(0.2)
        left = [p for p in pids if _pid_alive(p)] + [p for p in self.pids() if p not in pids]
        end = time.monotonic() + 30
        busy = [p for p in ports if not _port_free(p)]
        while busy and time.monotonic() < end:
            time.sleep(0.5)
            busy = [p for p in busy if not _port_free(p)]
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if left or busy or node_left:
            raise RuntimeError(
                f"teardown left processes {left} / ports {busy} / real node {node_left} behind"
            )
        log(f"cluster {self.name!r} down (no process, no port left)")


@contextmanager
def session(
    workdir: Path | str | None = None,
    bin: Path | str | None = None,
    audit_policy: Path | str | None = None,
    real_node: bool = False,
    images: list[Path] | tuple[Path, ...] = (),
) -> Iterator[Cluster]:
    """Build the binaries if missing, bring a cluster up in a fresh temp dir,
    yield it, and always tear it down (also when the body raises). With
    `audit_policy`, the API server writes its audit log to `cluster.audit_log`.
    With `real_node`, a real node (realnode.py) runs next to the simulated ones,
    with the image archives `images` loaded into its containerd."""
    bin = Path(bin) if bin else ensure_binaries()
    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="modelzoo-cluster-"))
    cluster = Cluster(workdir, bin, audit_policy=audit_policy, real_node=real_node, images=images)
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()


# ---------------------------------------------------------------- CLI
def default_workdir() -> Path:
    env = os.environ.get("MODELZOO_CLUSTER_DIR")
    return Path(env) if env else Path(tempfile.gettempdir()) / f"modelzoo-cluster-{os.getuid()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("command", choices=["up", "down", "kubeconfig", "bin-dir"])
    ap.add_argument("--workdir", type=Path, default=default_workdir())
    ap.add_argument(
        "--real-node", action="store_true", help="up: add the real node (containerd + kubelet)"
    )
    ap.add_argument(
        "--image",
        type=Path,
        action="append",
        default=[],
        help="up --real-node: an image archive to load into the node (image.sh prints it)",
    )
    args = ap.parse_args(argv)
    if args.command == "bin-dir":
        print(bin_dir())
        return 0
    if args.command == "up":
        bin = ensure_binaries()
        cluster = Cluster(args.workdir, bin, real_node=args.real_node, images=args.image)
        try:
            cluster.up()
        except realnode.RealNodeMissing as exc:
            print(exc, file=sys.stderr)
            return 1
        print(cluster.kubeconfig)
        return 0
    # down/kubeconfig: the workdir says whether the cluster has a real node
    cluster = Cluster(args.workdir, bin_dir(), real_node=(args.workdir / "node").exists())
    if args.command == "kubeconfig":
        if not cluster.kubeconfig.exists():
            print(f"no cluster in {args.workdir}; run `make cluster-up`", file=sys.stderr)
            return 1
        print(cluster.kubeconfig)
        return 0
    cluster.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
