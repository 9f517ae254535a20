"""The real node of the test cluster: containerd + runc + CNI, kubelet and kube-proxy.

It runs next to kwok's simulated nodes and runs pods for real (tests/real/). Layout
(README.md "The real node"):

    host (root netns)                         node netns  mz-<id>
    kube-apiserver 127.0.0.1:<port>           containerd kubelet kube-proxy coredns (nsenter --net)
    socat 10.251.0.1:<port> -> 127.0.0.1 ---- veth  mzh<id> 10.251.0.1/30 <-> eth0 10.251.0.2/30
    routes 10.244.0.0/24, 10.96.0.0/16        bridge mzbr0 10.244.0.1/24 -> pods 10.244.0.0/24
           via 10.251.0.2                     no default route: nothing leaves the machine

containerd, kubelet and kube-proxy join only the node's network namespace (nsenter
--net, not `ip netns exec`, which would also give each its own mount namespace and
hide the kubelet's volume mounts from containerd). Every state directory lives in
<workdir>/node; the pods' cgroups under /<cgroup controller>/mz-<id>.

`RealNode.down()` removes every process, mount, network namespace, veth, route and
cgroup it made, also after a failed start, and `leftovers()` says what is left.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMAGE_SH = HERE / "image.sh"

NODE_NAME = "real-node-0"
LABEL_KEY, LABEL_VALUE = "modelzoo.dev/node", "real"
TAINT = {"key": LABEL_KEY, "value": LABEL_VALUE, "effect": "NoSchedule"}
LINK_HOST = "10.251.0.1"  # the host end of the veth: the API server's address for pods
LINK_NODE = "10.251.0.2"  # the node's InternalIP (kubelet, logs/exec/port-forward)
POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_USER = "system:modelzoo-coredns"  # CoreDNS's client certificate
CNI_BIN = Path("/usr/lib/cni")
# Made by containerd's shims (sockets), libcni (result cache) and `ip netns`.
SYSTEM_DIRS = (Path("/run/containerd"), Path("/var/lib/cni"), Path("/run/netns"))
CGROUP_ROOT = Path("/sys/fs/cgroup")

REQUIRED_COMMANDS = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "socat": "socat",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "openssl": "openssl",
    "buildah": "buildah",
}


class RealNodeMissing(RuntimeError):
    """What this machine lacks to run the real node, in one line."""


def log(msg: str) -> None:
    print(f"[real-node] {msg}", file=sys.stderr, flush=True)


def preflight(bin: Path) -> None:
    """Raise RealNodeMissing naming the first thing the real node cannot do without."""
    if os.geteuid() != 0:
        raise RealNodeMissing("real node: needs root (containerd, network namespaces, cgroups)")
    for cmd, pkg in REQUIRED_COMMANDS.items():
        if not shutil.which(cmd):
            raise RealNodeMissing(
                f"real node: missing {cmd} (Debian package {pkg}: "
                "tests/cluster/host-packages.sh node)"
            )
    for plugin in ("bridge", "host-local", "loopback", "portmap"):
        if not (CNI_BIN / plugin).exists():
            raise RealNodeMissing(
                f"real node: missing CNI plugin {CNI_BIN / plugin} "
                "(containernetworking-plugins: tests/cluster/host-packages.sh node)"
            )
    for b in ("kubelet", "kube-proxy", "coredns"):
        if not (bin / b).exists():
            raise RealNodeMissing(f"real node: missing {bin / b} (tests/cluster/build.sh)")
    if not (CGROUP_ROOT / "memory").is_dir() and not (CGROUP_ROOT / "cgroup.controllers").exists():
        raise RealNodeMissing(f"real node: no cgroup hierarchy at {CGROUP_ROOT}")


def _run(*args, check=True, input=None, timeout=120) -> subprocess.CompletedProcess:
    cmd = [str(a) for a in args]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, input=input, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


def _is_mountpoint(path: str) -> bool:
    # os.path.ismount misses a directory bind-mounted onto itself, as `ip netns` does
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    return any(line.split()[4] == path for line in mounts)


def _cgroup_dirs(name: str) -> list[Path]:
    """The node's cgroup in every mounted hierarchy (v1: one per controller; v2: one)."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        return [CGROUP_ROOT / name]
    return [d / name for d in sorted(CGROUP_ROOT.iterdir()) if d.is_dir() and not d.is_symlink()]


CLIENT_AUTH = "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n"
FRONT_PROXY_CA = "front-proxy-ca"
FRONT_PROXY_CLIENT = "front-proxy-client"  # the CN aggregated API servers accept


def _new_key_args(key: Path) -> list:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key]


def make_ca(dir: Path, name: str, cn: str) -> tuple[Path, Path]:
    """A self-signed CA valid for a week: (<dir>/<name>.crt, <dir>/<name>.key)."""
    crt, key = dir / f"{name}.crt", dir / f"{name}.key"
    _run("openssl", "req", "-x509", "-new", *_new_key_args(key), "-out", crt,
         "-subj", f"/CN={cn}", "-days", "7")  # fmt: skip
    return crt, key


def issue_cert(
    ca: tuple[Path, Path], dir: Path, name: str, subject: str, extensions: str
) -> tuple[Path, Path]:
    """A certificate for `subject` signed by `ca` (crt, key) with the given x509v3
    `extensions` (openssl's extfile syntax), valid for a week: (crt, key) in `dir`."""
    key, csr, crt = (dir / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
    ext = dir / f"{name}.ext"
    ext.write_text(extensions)
    _run("openssl", "req", "-new", *_new_key_args(key), "-out", csr, "-subj", subject)
    _run("openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
         "-CAcreateserial", "-days", "7", "-extfile", ext, "-out", crt)  # fmt: skip
    return crt, key


class RealNode:
    """The real node of the cluster in `cluster.workdir` (see the module's docstring)."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.dir = cluster.workdir / "node"
        self.id = hashlib.sha256(str(cluster.workdir).encode()).hexdigest()[:6]
        self.netns = f"mz-{self.id}"
        self.veth_host = f"mzh{self.id}"
        self.veth_node = f"mzn{self.id}"  # renamed to eth0 inside the netns
        self.cgroup = f"mz-{self.id}"
        self.sock = self.dir / "containerd.sock"
        self.pki = self.dir / "pki"

    # ------------------------------------------------------------ helpers
    def nsexec(self, *args) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}", "--", *map(str, args)]

    def ctr(self, *args, check=True, timeout=600) -> subprocess.CompletedProcess:
        return _run(
            "ctr", "--address", self.sock, "-n", "k8s.io", *args, check=check, timeout=timeout
        )

    def _pidfile(self, name: str) -> Path:
        return self.dir / "pids" / f"{name}.pid"

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen:
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        (self.dir / "pids").mkdir(parents=True, exist_ok=True)
        logf = open(self.dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115 (the child owns it)
        proc = subprocess.Popen(
            [str(a) for a in argv],
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives `harness.py up`
        )
        logf.close()
        self._pidfile(name).write_text(str(proc.pid))
        return proc

    def log_tail(self, name: str, lines: int = 25) -> str:
        f = self.dir / "logs" / f"{name}.log"
        if not f.exists():
            return ""
        return "\n".join(f.read_text(errors="replace").splitlines()[-lines:])

    def _wait(self, ok, timeout: float, what: str, logs: str = "") -> None:
        end = time.monotonic() + timeout
        while not ok():
            if time.monotonic() > end:
                tail = self.log_tail(logs) if logs else ""
                raise TimeoutError(f"real node: timed out waiting for {what}\n{tail}")
            time.sleep(0.5)

    # ------------------------------------------------------------ kwokctl options
    def kwokctl_options(self) -> dict:
        """What the control plane needs for a real node (merged into kwokctl's options)."""
        pki = self.cluster.cluster_dir / "pki"
        return {
            # The API server's serving cert also names the addresses pods use.
            "kubeApiserverCertSANs": [LINK_HOST, KUBERNETES_SERVICE_IP],
            "componentsPatches": [
                {
                    "name": "kube-apiserver",
                    "extraArgs": [
                        # The `kubernetes` Service's endpoint: the host end of the veth,
                        # where socat forwards to the loopback-bound API server.
                        {"key": "advertise-address", "value": LINK_HOST},
                        {"key": "service-cluster-ip-range", "value": SERVICE_CIDR},
                        # logs/exec/port-forward: the API server authenticates to the
                        # kubelet with the admin cert (the kubelet trusts the same CA).
                        {"key": "kubelet-client-certificate", "value": str(pki / "admin.crt")},
                        {"key": "kubelet-client-key", "value": str(pki / "admin.key")},
                        {"key": "kubelet-preferred-address-types", "value": "InternalIP"},
                        # Namespace annotations may then pin all their pods to a node
                        # (scheduler.alpha.kubernetes.io/node-selector, .../defaultTolerations):
                        # tests/real pins its namespaces to the real node this way.
                        {
                            "key": "enable-admission-plugins",
                            "value": "PodNodeSelector,PodTolerationRestriction",
                        },
                        *self._aggregation_args(),
                    ],
                },
                {
                    # The autoscaling test waits for the HPA: it re-reads metrics every 5 s
                    # instead of every 15 s.
                    "name": "kube-controller-manager",
                    "extraArgs": [{"key": "horizontal-pod-autoscaler-sync-period", "value": "5s"}],
                },
                {
                    # kwokctl's binary runtime starts kwok with --manage-all-nodes=true: it
                    # would fight the kubelet over the real node.
                    "name": "kwok-controller",
                    "extraArgs": [
                        {"key": "manage-all-nodes", "value": "false", "override": True},
                        {
                            "key": "manage-nodes-with-annotation-selector",
                            "value": "kwok.x-k8s.io/node=fake",
                        },
                    ],
                },
            ],
        }

    def _aggregation_args(self) -> list[dict]:
        """The aggregation layer as a cluster made by kubeadm has it: the API server proxies
        to aggregated APIs with a front-proxy client certificate of its own CA (kwokctl's
        default is the admin certificate, which carries no user for the X-Remote-* headers)
        and dials an APIService's endpoints directly (it runs no kube-proxy of its own)."""
        fp = self.pki
        return [
            {"key": "requestheader-client-ca-file", "value": str(fp / f"{FRONT_PROXY_CA}.crt")},
            {"key": "requestheader-allowed-names", "value": FRONT_PROXY_CLIENT},
            {"key": "requestheader-username-headers", "value": "X-Remote-User"},
            {"key": "requestheader-group-headers", "value": "X-Remote-Group"},
            {"key": "requestheader-extra-headers-prefix", "value": "X-Remote-Extra-"},
            {
                "key": "proxy-client-cert-file",
                "value": str(fp / f"{FRONT_PROXY_CLIENT}.crt"),
                "override": True,
            },
            {
                "key": "proxy-client-key-file",
                "value": str(fp / f"{FRONT_PROXY_CLIENT}.key"),
                "override": True,
            },
            {"key": "enable-aggregator-routing", "value": "true"},
        ]

    # ------------------------------------------------------------ network
    def setup_network(self) -> None:
        """The netns, the veth pair and the host routes into it (before the control plane,
        so the API server's advertised address exists)."""
        if Path(f"/run/netns/{self.netns}").exists():
            raise RuntimeError(f"network namespace {self.netns} exists: a real node is up")
        for other in Path("/sys/class/net").glob("mzh*"):
            # One real node per machine: the addresses below are fixed.
            raise RuntimeError(f"another real node's veth {other.name} exists (harness down)")
        log(
            f"network namespace {self.netns}, veth {self.veth_host} {LINK_HOST} <-> "
            f"eth0 {LINK_NODE}, pods {POD_CIDR}, services {SERVICE_CIDR}"
        )
        self.dir.mkdir(parents=True, exist_ok=True)
        # Directories containerd, CNI and `ip netns` make outside the workdir when missing:
        # removed again at teardown (when empty) if they were not there before.
        (self.dir / "created-dirs").write_text(
            "\n".join(str(p) for p in SYSTEM_DIRS if not p.exists())
        )
        _run("ip", "netns", "add", self.netns)
        _run("ip", "link", "add", self.veth_host, "type", "veth", "peer", "name", self.veth_node)
        _run("ip", "link", "set", self.veth_node, "netns", self.netns)
        _run("ip", "addr", "add", f"{LINK_HOST}/30", "dev", self.veth_host)
        _run("ip", "link", "set", self.veth_host, "up")
        ns = ["ip", "-n", self.netns]
        _run(*ns, "link", "set", self.veth_node, "name", "eth0")
        _run(*ns, "addr", "add", f"{LINK_NODE}/30", "dev", "eth0")
        _run(*ns, "link", "set", "eth0", "up")
        _run(*ns, "link", "set", "lo", "up")
        # No default route in the netns: pod and Service traffic ends here or at the host.
        _run(*self.nsexec("sysctl", "-qw", "net.ipv4.ip_forward=1"))
        for cidr in (POD_CIDR, SERVICE_CIDR):
            _run("ip", "route", "add", cidr, "via", LINK_NODE, "dev", self.veth_host)

    # ------------------------------------------------------------ certificates
    def cluster_ca(self) -> tuple[Path, Path]:
        """The cluster's CA (crt, key), which kwokctl made and every component trusts."""
        pki = self.cluster.cluster_dir / "pki"
        return pki / "ca.crt", pki / "ca.key"

    def client_cert(self, name: str, cn: str, org: str) -> tuple[Path, Path]:
        """A client certificate of the cluster's CA for user `cn` in group `org`."""
        return issue_cert(self.cluster_ca(), self.pki, name, f"/O={org}/CN={cn}", CLIENT_AUTH)

    def setup_front_proxy(self) -> None:
        """The aggregation layer's own CA and the API server's proxy client certificate
        (before the control plane: the API server reads them at start). An aggregated API
        server (the real tier's prometheus-adapter) trusts the user names the API server
        passes in X-Remote-User only from a client certificate of this CA."""
        self.pki.mkdir(parents=True, exist_ok=True)
        ca = make_ca(self.pki, FRONT_PROXY_CA, "modelzoo-front-proxy-ca")
        issue_cert(ca, self.pki, FRONT_PROXY_CLIENT, f"/CN={FRONT_PROXY_CLIENT}", CLIENT_AUTH)

    def client_kubeconfig(self, name: str, crt: Path, key: Path, server: str) -> Path:
        ca = self.cluster.cluster_dir / "pki" / "ca.crt"
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "c", "cluster": {"server": server, "certificate-authority": str(ca)}}
            ],
            "users": [
                {"name": "u", "user": {"client-certificate": str(crt), "client-key": str(key)}}
            ],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
        path = self.dir / f"{name}.kubeconfig"
        path.write_text(json.dumps(doc, indent=2))
        return path

    # ------------------------------------------------------------ start
    def start(self, images: list[Path], timeout: float = 300) -> None:
        """socat, containerd (+ images), kubelet, kube-proxy; wait until the node is Ready."""
        t0 = time.monotonic()
        for d in (
            "pki",
            "logs",
            "pids",
            "cni/net.d",
            "cni/ipam",
            "kubelet",
            "pod-logs",
            "containerd/root",
            "containerd/state",
            "runc",
            "plugins",
        ):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        api_port = self.api_port()
        server = f"https://{LINK_HOST}:{api_port}"
        self._start(
            "socat",
            [
                "socat",
                f"TCP-LISTEN:{api_port},bind={LINK_HOST},fork,reuseaddr",
                f"TCP:127.0.0.1:{api_port}",
            ],
        )
        base = Path("/run/netns")
        (self.dir / "netns-before").write_text(
            "\n".join(str(f) for f in base.glob("cni-*")) if base.exists() else ""
        )
        self._cgroups_create()
        self._start_containerd()
        for archive in images:
            t = time.monotonic()
            self.ctr("images", "import", "--all-platforms", archive, timeout=900)
            log(f"imported {archive.name} in {time.monotonic() - t:.0f}s")
        # Pinned: the kubelet's image garbage collection never removes them.
        for ref in self.ctr("images", "ls", "-q").stdout.split():
            if not ref.startswith("sha256:"):
                self.ctr("images", "label", ref, "io.cri-containerd.pinned=pinned")
        kcrt, kkey = self.client_cert("kubelet", f"system:node:{NODE_NAME}", "system:nodes")
        pcrt, pkey = self.client_cert("kube-proxy", "system:kube-proxy", "system:node-proxier")
        dcrt, dkey = self.client_cert("coredns", DNS_USER, "modelzoo:dns")
        self._start_kubelet(self.client_kubeconfig("kubelet", kcrt, kkey, server))
        self._start_kube_proxy(self.client_kubeconfig("kube-proxy", pcrt, pkey, server))
        self._start_coredns(self.client_kubeconfig("coredns", dcrt, dkey, server))
        kubectl = self.cluster.kubectl
        self._wait(
            lambda: kubectl("get", "node", NODE_NAME, check=False).returncode == 0,
            max(30, timeout - (time.monotonic() - t0)),
            "the kubelet to register",
            "kubelet",
        )
        kubectl(
            "wait",
            "--for=condition=Ready",
            f"node/{NODE_NAME}",
            f"--timeout={max(10, int(timeout - (time.monotonic() - t0)))}s",
            timeout=timeout + 10,
        )
        log(f"node {NODE_NAME} Ready in {time.monotonic() - t0:.0f}s")

    def api_port(self) -> int:
        server = json.loads(self.cluster.kubectl("config", "view", "-o", "json").stdout)
        url = server["clusters"][0]["cluster"]["server"]
        return int(url.rsplit(":", 1)[1])

    def _cgroups_create(self) -> None:
        for d in _cgroup_dirs(self.cgroup):
            d.mkdir(exist_ok=True)
            if d.parent.name == "cpuset":  # a v1 cpuset starts empty: inherit the root's
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (d / f).write_text((d.parent / f).read_text())

    def _start_containerd(self) -> None:
        pause_name, pause_tar = _run("bash", IMAGE_SH, "pause", timeout=300).stdout.split()[-2:]
        self.pause_image = pause_name
        self._pause_tar = Path(pause_tar)
        d = self.dir
        cni = {
            "cniVersion": "0.4.0",
            "name": f"modelzoo-{self.id}",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "mzbr0",
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": str(d / "cni/ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }
        (d / "cni/net.d/10-modelzoo.conflist").write_text(json.dumps(cni, indent=2))
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""# The real node's containerd (tests/cluster/realnode.py); every path in {d}.
version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
                    "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{self.sock}"
[ttrpc]
  address = "{self.sock}.ttrpc"
[{cri}]
  sandbox_image = "{pause_name}"
  # root on this machine cannot lower oom_score_adj; without this every sandbox fails
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d}/runc"
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{d}/cni/net.d"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"
"""
        (d / "containerd/config.toml").write_text(config)
        self._start(
            "containerd", self.nsexec("containerd", "--config", d / "containerd/config.toml")
        )
        self._wait(
            lambda: self.ctr("version", check=False, timeout=10).returncode == 0,
            60,
            "containerd",
            "containerd",
        )
        t = time.monotonic()
        self.ctr("images", "import", self._pause_tar)
        log(f"containerd up; pause image {pause_name} imported in {time.monotonic() - t:.1f}s")

    def _start_kubelet(self, kubeconfig: Path) -> None:
        d = self.dir
        ca = self.cluster.cluster_dir / "pki" / "ca.crt"
        (d / "resolv.conf").write_text("")  # no cluster DNS yet: pods get no nameserver
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "cgroupDriver": "cgroupfs",
            "failCgroupV1": False,  # this machine has cgroup v1
            "cgroupRoot": f"/{self.cgroup}",
            "address": LINK_NODE,
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(ca)},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.sock}",
            "registerWithTaints": [TAINT],
            "podCIDR": POD_CIDR,
            "clusterDomain": "cluster.local",
            # CoreDNS listens on the node's address in the netns (see _start_coredns).
            "clusterDNS": [LINK_NODE],
            "resolvConf": str(d / "resolv.conf"),
            "failSwapOn": False,
            "maxPods": 30,
            "podLogsDir": str(d / "pod-logs"),
            "volumePluginDir": str(d / "plugins"),
            "serializeImagePulls": False,
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            # This is a shared test machine: only evict when really out of room.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
                "nodefs.inodesFree": "1%",
            },
            "syncFrequency": "10s",
            "nodeStatusUpdateFrequency": "5s",
            "protectKernelDefaults": False,
            "makeIPTablesUtilChains": False,
            "localStorageCapacityIsolation": True,
        }
        (d / "kubelet.yaml").write_text(json.dumps(config, indent=2))
        self._start(
            "kubelet",
            self.nsexec(
                self.cluster.bin / "kubelet",
                "--config",
                d / "kubelet.yaml",
                "--kubeconfig",
                kubeconfig,
                "--root-dir",
                d / "kubelet",
                "--cert-dir",
                d / "pki/kubelet-serving",
                "--hostname-override",
                NODE_NAME,
                "--node-ip",
                LINK_NODE,
                "--node-labels",
                f"{LABEL_KEY}={LABEL_VALUE}",
                "--v=2",
            ),
        )

    def _start_kube_proxy(self, kubeconfig: Path) -> None:
        d = self.dir
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "hostnameOverride": NODE_NAME,
            "clusterCIDR": POD_CIDR,
            "bindAddress": LINK_NODE,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            # Pod -> Service -> pod on the same bridge: SNAT every Service connection so the
            # reply comes back through the netns's conntrack.
            "iptables": {"masqueradeAll": True, "localhostNodePorts": False},
            # Leave the machine-wide conntrack sysctls alone.
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
            },
            "nodePortAddresses": [f"{LINK_NODE}/32"],
        }
        (d / "kube-proxy.yaml").write_text(json.dumps(config, indent=2))
        self._start(
            "kube-proxy",
            self.nsexec(
                self.cluster.bin / "kube-proxy", "--config", d / "kube-proxy.yaml", "--v=2"
            ),
        )

    def _start_coredns(self, kubeconfig: Path) -> None:
        """Cluster DNS: CoreDNS (built from its Go module by build.sh) as a process of the
        node, in its netns on port 53 of every address there; pods reach it at the node's
        address (kubelet's clusterDNS), so <service>.<namespace>.svc resolves as on any
        cluster. Names outside cluster.local are not answered: nothing leaves the node."""
        rbac = {
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": "modelzoo:coredns"},
                    "rules": [
                        {
                            "apiGroups": [""],
                            "resources": ["services", "pods", "namespaces"],
                            "verbs": ["list", "watch"],
                        },
                        {
                            "apiGroups": ["discovery.k8s.io"],
                            "resources": ["endpointslices"],
                            "verbs": ["list", "watch"],
                        },
                    ],
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": "modelzoo:coredns"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "modelzoo:coredns",
                    },
                    "subjects": [
                        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": DNS_USER}
                    ],
                },
            ],
        }
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(rbac))
        corefile = self.dir / "Corefile"
        corefile.write_text(
            f""".:53 {{
    errors
    health 127.0.0.1:18080
    ready 127.0.0.1:18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
}}
"""
        )
        self._start("coredns", self.nsexec(self.cluster.bin / "coredns", "-conf", corefile))

    # ------------------------------------------------------------ teardown
    def _pids(self) -> list[int]:
        """Our daemons (pid files) and every process that names this node's directory or
        socket (containerd's shims), plus every process in the node's cgroups (pods)."""
        pids = set()
        for f in (self.dir / "pids").glob("*.pid"):
            with suppress(OSError, ValueError):
                pids.add(int(f.read_text()))
        marker = str(self.dir).encode()
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                with suppress(OSError):
                    if marker in (p / "cmdline").read_bytes():
                        pids.add(int(p.name))
        for d in _cgroup_dirs(self.cgroup):
            if d.exists():
                for procs in d.rglob("cgroup.procs"):
                    with suppress(OSError, ValueError):
                        pids.update(int(x) for x in procs.read_text().split())
        pids.discard(os.getpid())
        return sorted(p for p in pids if _alive(p))

    def _mounts(self) -> list[str]:
        out = []
        marker = str(self.dir)
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mp = line.split()[4].replace("\\040", " ")
            if mp.startswith(marker) or (mp.startswith("/run/netns/") and mp in self._netns_new()):
                out.append(mp)
        return out

    def _netns_new(self) -> set[str]:
        """Pod network namespaces (containerd 1.6 names them /run/netns/cni-<uuid>) made
        since this node started (one real node per machine, so they are its own)."""
        before = self.dir / "netns-before"
        if not before.exists():
            return set()
        old = set(before.read_text().split())
        base = Path("/run/netns")
        return {str(f) for f in base.glob("cni-*")} - old if base.exists() else set()

    def leftovers(self) -> list[str]:
        left = [f"process {p}" for p in self._pids()]
        left += [f"mount {m}" for m in self._mounts()]
        if Path(f"/run/netns/{self.netns}").exists():
            left.append(f"netns {self.netns}")
        if Path(f"/sys/class/net/{self.veth_host}").exists():
            left.append(f"veth {self.veth_host}")
        routes = _run("ip", "route", "show", check=False).stdout
        left += [f"route {c}" for c in (POD_CIDR, SERVICE_CIDR) if f"{c} via {LINK_NODE}" in routes]
        left += [f"cgroup {d}" for d in _cgroup_dirs(self.cgroup) if d.exists()]
        # The node's iptables rules live in its netns; none may appear on the host.
        host_rules = _run("iptables-save", check=False).stdout.splitlines()
        left += [
            f"host iptables rule {r!r}"
            for r in host_rules
            if self.veth_host in r or "10.244.0." in r or "10.251.0." in r
        ]
        created = self.dir / "created-dirs"
        left += [
            f"directory {d}"
            for d in (created.read_text().split() if created.exists() else [])
            if Path(d).exists()
        ]
        return left

    def drain(self, timeout: float = 60) -> None:
        """Delete the node's pods through the API while the kubelet runs, so it stops
        every sandbox the proper way (CNI DEL, pod netns removed)."""
        kubectl = self.cluster.kubectl
        if kubectl("get", "node", NODE_NAME, check=False, timeout=20).returncode != 0:
            return
        kubectl("cordon", NODE_NAME, check=False, timeout=20)
        kubectl(
            "delete",
            "pods",
            "-A",
            f"--field-selector=spec.nodeName={NODE_NAME}",
            "--grace-period=1",
            "--wait=false",
            check=False,
            timeout=30,
        )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            # No task left: every sandbox is stopped (the kubelet keeps the dead
            # containers' records, which go with containerd's root directory).
            tasks = self.ctr("tasks", "ls", "-q", check=False, timeout=20)
            if tasks.returncode != 0 or not tasks.stdout.strip():
                time.sleep(2)  # the CNI DEL and netns removal follow the sandbox's stop
                return
            time.sleep(1)
        log("pods still present after drain; killing them")

    def down(self) -> list[str]:
        """Remove everything the node made; returns what could not be removed."""
        if not self.dir.exists() and not Path(f"/run/netns/{self.netns}").exists():
            return []
        t0 = time.monotonic()
        if (self.dir / "pids" / "kubelet.pid").exists():
            with suppress(Exception):
                self.drain()
        # kubelet and kube-proxy first (they recreate what we remove), then containerd.
        for name in ("kubelet", "kube-proxy", "coredns", "containerd", "socat"):
            self._stop_pidfile(name)
        pods_netns = self._netns_new()
        # Shims and any container left: TERM, then KILL (by pid, only ours).
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = self._pids()
            if not pids:
                break
            for p in pids:
                with suppress(ProcessLookupError):
                    os.kill(p, sig)
            end = time.monotonic() + 10
            while time.monotonic() < end and any(_alive(p) for p in pids):
                time.sleep(0.2)
        # Mounts: deepest first (container rootfs overlays, volumes, the kubelet's bind
        # mount of its root dir), then the pod netns files.
        for mp in sorted(self._mounts() + sorted(pods_netns), key=len, reverse=True):
            if _run("umount", mp, check=False).returncode != 0:
                _run("umount", "-l", mp, check=False)
        for ns in pods_netns:
            with suppress(OSError):
                Path(ns).unlink()
        # CNI's result cache of our network (the rest of its state is in self.dir).
        for f in Path("/var/lib/cni/results").glob(f"modelzoo-{self.id}-*"):
            with suppress(OSError):
                f.unlink()
        # Routes go with the veth, the veth with the netns; the bridge, the pods' veths and
        # kube-proxy's iptables rules live in the netns.
        for cidr in (POD_CIDR, SERVICE_CIDR):
            _run("ip", "route", "del", cidr, "via", LINK_NODE, check=False)
        _run("ip", "link", "del", self.veth_host, check=False)
        _run("ip", "netns", "del", self.netns, check=False)
        self._cgroups_remove()
        created = self.dir / "created-dirs"
        for top in created.read_text().split() if created.exists() else []:
            # only empty directories, deepest first: anything else is not ours
            for d in sorted(Path(top).rglob("*"), key=lambda p: len(p.parts), reverse=True):
                with suppress(OSError):
                    d.rmdir()
            if _is_mountpoint(top) and not any(Path(top).iterdir()):
                _run("umount", top, check=False)  # `ip netns add` bind-mounts /run/netns
            with suppress(OSError):
                Path(top).rmdir()
        left = self.leftovers()
        if left:
            log(f"teardown left: {left}")
        else:
            log(
                f"node {NODE_NAME} removed in {time.monotonic() - t0:.0f}s "
                "(no process, mount, netns, veth, route or cgroup left)"
            )
        return left

    def _stop_pidfile(self, name: str) -> None:
        f = self._pidfile(name)
        try:
            pid = int(f.read_text())
        except (OSError, ValueError):
            return
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            if not _alive(pid):
                break
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
            end = time.monotonic() + wait
            while time.monotonic() < end and _alive(pid):
                time.sleep(0.2)
        with suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)

    def _cgroups_remove(self) -> None:
        for root in _cgroup_dirs(self.cgroup):
            if not root.exists():
                continue
            dirs = sorted(
                (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            )
            for d in [*dirs, root]:
                for _ in range(20):  # a cgroup is busy for a moment after its last task exits
                    try:
                        d.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.1)
