#!/usr/bin/env bash
# Builds the e2e control plane's binaries from their Go modules (through the
# Go module proxy) into a cache outside git, keyed by version:
#
#   ${MODELZOO_CLUSTER_CACHE:-${MODELZOO_CACHE:-~/.cache/modelzoo}/cluster}/<key>/bin
#
#   kube-apiserver kube-controller-manager kube-scheduler kubectl   (tests/cluster/go/kube)
#   kubelet kube-proxy (the real node)                              (tests/cluster/go/kube)
#   etcd                                                            (tests/cluster/go/etcd)
#   kwok kwokctl                                                    (tests/cluster/go/kwok)
#   helm                                                            (tests/cluster/go/helm)
#   coredns (the real node's cluster DNS; a few plugins)            (tests/cluster/go/coredns)
#   s3server (the tests' S3-compatible store: gofakes3, SigV4)       (tests/cluster/go/s3server)
#   otelcol (the tests' OTLP receiver: otlp receiver + file exporter) (tests/cluster/go/otelcol)
#   prometheus-adapter (the real tier's custom metrics API)          (tests/cluster/go/adapter)
#   prometheus (the real tier's, with Kubernetes service discovery)  (tests/cluster/go/prometheus)
#
# <key> = k8s-<K8S_VERSION>-<12 hex of sha256 over versions.env (sans comments),
# every wrapper go.mod/go.sum/*.go, the Go version and GOOS/GOARCH>. A complete
# build leaves <key>/stamp; when it is there (and the binaries are) the script
# prints "cached" and builds nothing. Progress goes to stderr; the last line
# on stdout is the bin dir. GOMODCACHE/GOCACHE are the go command's defaults
# (shared, never wiped).
#
# Usage: build.sh               build what is missing, print the bin dir
#        build.sh --print-bin-dir   print the bin dir only (no build, no network)
#        build.sh --check           check the wrapper modules agree with versions.env
#        build.sh --sync            rewrite the wrapper modules from versions.env (go mod tidy)
#
# Kubernetes note: v1.34 commits pkg/generated/openapi/zz_generated.openapi.go
# (and the other generated files), so a plain `go build` of
# k8s.io/kubernetes/cmd/kube-apiserver from the module works without running
# any code generator: checked with v1.34.4.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GODIR=$HERE/go
# shellcheck source=versions.env
. "$HERE/versions.env"

export GOTOOLCHAIN=${CLUSTER_GOTOOLCHAIN:-local}
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -mod=readonly"
if ! command -v go >/dev/null 2>&1; then
    export PATH="$PATH:/usr/local/go/bin"
fi

log() { printf '[cluster-build] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# k8s.io/kubernetes vX.Y.Z publishes its staging modules as v0.Y.Z
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
KUBE_MAJOR=1
KUBE_MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)

cache_root() { echo "${MODELZOO_CLUSTER_CACHE:-${MODELZOO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelzoo}/cluster}"; }

cache_key() {
    local h
    h=$( {
        grep -v '^[[:space:]]*#' "$HERE/versions.env" | grep -v '^[[:space:]]*$'
        # go.mod/go.sum, and the .go files that pick what is built (tools.go, main.go)
        for f in "$GODIR"/*/go.mod "$GODIR"/*/go.sum "$GODIR"/*/*.go; do
            echo "== ${f#"$GODIR"/}"; cat "$f"
        done
        go env GOVERSION GOOS GOARCH
    } | sha256sum | cut -c1-12)
    echo "k8s-${K8S_VERSION}-${h}"
}

KEY=$(cache_key)
KEYDIR=$(cache_root)/$KEY
BIN=$KEYDIR/bin
STAMP=$KEYDIR/stamp
ALL_BINS=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy etcd kwok kwokctl helm coredns s3server otelcol prometheus-adapter prometheus)

# ---------------------------------------------------------------- check/sync
mod_version() { (cd "$GODIR/$1" && go list -m -f '{{.Version}}' "$2"); }

check_modules() {
    local ok=0 v
    v=$(mod_version kube k8s.io/kubernetes);  [ "$v" = "$K8S_VERSION" ]  || { log "go/kube requires k8s.io/kubernetes $v, versions.env says $K8S_VERSION"; ok=1; }
    v=$(mod_version etcd go.etcd.io/etcd/server/v3); [ "$v" = "$ETCD_VERSION" ] || { log "go/etcd requires etcd $v, versions.env says $ETCD_VERSION"; ok=1; }
    v=$(mod_version kwok sigs.k8s.io/kwok);   [ "$v" = "$KWOK_VERSION" ]  || { log "go/kwok requires kwok $v, versions.env says $KWOK_VERSION"; ok=1; }
    v=$(mod_version helm helm.sh/helm/v3);    [ "$v" = "$HELM_VERSION" ]  || { log "go/helm requires helm $v, versions.env says $HELM_VERSION"; ok=1; }
    v=$(mod_version coredns github.com/coredns/coredns); [ "$v" = "$COREDNS_VERSION" ] || { log "go/coredns requires coredns $v, versions.env says $COREDNS_VERSION"; ok=1; }
    v=$(mod_version s3server github.com/rclone/gofakes3); [ "$v" = "$GOFAKES3_VERSION" ] || { log "go/s3server requires gofakes3 $v, versions.env says $GOFAKES3_VERSION"; ok=1; }
    v=$(mod_version otelcol go.opentelemetry.io/collector/receiver/otlpreceiver); [ "$v" = "$OTELCOL_VERSION" ] || { log "go/otelcol requires otlpreceiver $v, versions.env says $OTELCOL_VERSION"; ok=1; }
    v=$(mod_version otelcol github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter); [ "$v" = "$OTELCOL_FILEEXPORTER_VERSION" ] || { log "go/otelcol requires fileexporter $v, versions.env says $OTELCOL_FILEEXPORTER_VERSION"; ok=1; }
    v=$(mod_version adapter sigs.k8s.io/prometheus-adapter); [ "$v" = "$PROMETHEUS_ADAPTER_VERSION" ] || { log "go/adapter requires prometheus-adapter $v, versions.env says $PROMETHEUS_ADAPTER_VERSION"; ok=1; }
    v=$(mod_version prometheus github.com/prometheus/prometheus); [ "$v" = "$PROMETHEUS_VERSION" ] || { log "go/prometheus requires prometheus $v, versions.env says $PROMETHEUS_VERSION"; ok=1; }
    if grep -E '^\s*k8s\.io/\S+ => k8s\.io/\S+ v' "$GODIR/kube/go.mod" | grep -vq " ${STAGING_VERSION}\$"; then
        log "go/kube replaces staging modules with a version other than $STAGING_VERSION"; ok=1
    fi
    [ $ok = 0 ] || die "wrapper modules disagree with versions.env: run tests/cluster/build.sh --sync"
}

sync_modules() {
    local gomod staging
    log "syncing go/kube to k8s.io/kubernetes $K8S_VERSION (staging modules $STAGING_VERSION)"
    gomod=$(cd "$GODIR/kube" && GOFLAGS= go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')
    [ -f "$gomod" ] || die "could not download k8s.io/kubernetes@$K8S_VERSION"
    # The staging modules are exactly those k8s.io/kubernetes replaces with ./staging/...
    staging=$(sed -n 's#^\s*\(k8s\.io/[^ ]*\) => \./staging/.*#\1#p' "$gomod")
    # Rewrite the replace block (kept last in go.mod, after its explanatory comment) by hand,
    # so the comment and the block's layout survive; then let go mod tidy do the rest.
    local gm="$GODIR/kube/go.mod" marker='^// Why this replace block exists'
    grep -q "$marker" "$gm" || die "go/kube/go.mod lost its replace-block comment"
    {
        sed "\\#$marker#,\$d" "$gm"
        sed -n "\\#$marker#,/^replace (/p" "$gm" | sed '$d'
        echo "replace ("
        for m in $staging; do printf '\t%s => %s %s\n' "$m" "$m" "$STAGING_VERSION"; done
        echo ")"
    } >"$gm.tmp"
    mv "$gm.tmp" "$gm"
    (cd "$GODIR/kube" && go mod edit "-require=k8s.io/kubernetes@$K8S_VERSION" && GOFLAGS= go mod tidy)
    log "syncing go/etcd, go/kwok, go/helm"
    (cd "$GODIR/etcd" && go mod edit "-require=go.etcd.io/etcd/server/v3@$ETCD_VERSION" && GOFLAGS= go mod tidy)
    (cd "$GODIR/kwok" && go mod edit "-require=sigs.k8s.io/kwok@$KWOK_VERSION" && GOFLAGS= go mod tidy)
    (cd "$GODIR/helm" && go mod edit "-require=helm.sh/helm/v3@$HELM_VERSION" && GOFLAGS= go mod tidy)
    (cd "$GODIR/coredns" && go mod edit "-require=github.com/coredns/coredns@$COREDNS_VERSION" && GOFLAGS= go mod tidy)
    (cd "$GODIR/s3server" && go mod edit "-require=github.com/rclone/gofakes3@$GOFAKES3_VERSION" && GOFLAGS= go mod tidy)
    # -e: tidy also resolves the dependencies' tests, and one module only the file exporter's
    # tests import (contrib's otlpencodingextension v0.165.1) is not on the module proxy.
    (cd "$GODIR/otelcol" && go mod edit "-require=go.opentelemetry.io/collector/receiver/otlpreceiver@$OTELCOL_VERSION" \
        "-require=github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter@$OTELCOL_FILEEXPORTER_VERSION" && GOFLAGS= go mod tidy -e)
    (cd "$GODIR/prometheus" && go mod edit "-require=github.com/prometheus/prometheus@$PROMETHEUS_VERSION" && GOFLAGS= go mod tidy)
    (cd "$GODIR/adapter" && go mod edit "-require=sigs.k8s.io/prometheus-adapter@$PROMETHEUS_ADAPTER_VERSION" && GOFLAGS= go mod tidy)
    check_modules
    log "modules in sync; new cache key: $(cache_key)"
}

# ---------------------------------------------------------------- build
fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# go_build <label> <module dir> <ldflags> <pkg>... : builds the main packages
# into $BIN.tmp/, printing progress every 20 s while the go command runs; with the
# build tags in $GO_TAGS when set.
go_build() {
    local label=$1 dir=$2 ldflags=$3; shift 3
    local logf="$KEYDIR/build-$label.log" total start pid rc=0 n el
    start=$(date +%s)
    log "$label: loading packages (downloads modules through the Go module proxy on a cold machine)"
    total=$(cd "$dir" && go list -tags "${GO_TAGS:-}" -deps "$@" | wc -l) || die "$label: go list failed (module download?)"
    log "$label: building $* ($total packages incl. std; log: $logf)"
    (cd "$dir" && exec go build -v -trimpath -tags "${GO_TAGS:-}" -ldflags "$ldflags" -o "$BIN.tmp/" "$@") >"$logf" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        kill -0 "$pid" 2>/dev/null || break
        n=$(grep -vc '^#\|^go: ' "$logf" || true)
        el=$(( $(date +%s) - start ))
        if [ "$n" -ge "$total" ]; then
            log "$label: linking … ($(fmt_secs "$el") elapsed)"
        else
            log "$label: compiled $n of ~$total packages not yet in GOCACHE ($(fmt_secs "$el") elapsed)"
        fi
    done
    wait "$pid" || rc=$?
    if [ "$rc" != 0 ]; then
        tail -40 "$logf" >&2
        die "$label: go build failed (exit $rc); full log: $logf"
    fi
    log "$label: done in $(fmt_secs $(( $(date +%s) - start )))"
}

missing() { local b; for b in "$@"; do [ -x "$BIN/$b" ] || return 0; done; return 1; }

# Each binary must report the pinned version (kwokctl and helm check the
# Kubernetes version; a mislabelled build would be caught here).
verify() {
    local out
    out=$("$BIN/kube-apiserver" --version);          [[ $out == "Kubernetes $K8S_VERSION" ]] || die "kube-apiserver says '$out'"
    out=$("$BIN/kube-controller-manager" --version); [[ $out == "Kubernetes $K8S_VERSION" ]] || die "kube-controller-manager says '$out'"
    out=$("$BIN/kube-scheduler" --version);          [[ $out == "Kubernetes $K8S_VERSION" ]] || die "kube-scheduler says '$out'"
    out=$("$BIN/kubectl" version --client);          [[ $out == *"Client Version: $K8S_VERSION"* ]] || die "kubectl says '$out'"
    out=$("$BIN/kubelet" --version);                 [[ $out == "Kubernetes $K8S_VERSION" ]] || die "kubelet says '$out'"
    out=$("$BIN/kube-proxy" --version);              [[ $out == "Kubernetes $K8S_VERSION" ]] || die "kube-proxy says '$out'"
    out=$("$BIN/etcd" --version);                    [[ $out == *"etcd Version: ${ETCD_VERSION#v}"* ]] || die "etcd says '$out'"
    out=$("$BIN/kwokctl" --version);                 [[ $out == *"${KWOK_VERSION#v}"* ]] || die "kwokctl says '$out'"
    out=$("$BIN/kwok" --version);                    [[ $out == *"${KWOK_VERSION#v}"* ]] || die "kwok says '$out'"
    out=$("$BIN/helm" version --short);              [[ $out == "$HELM_VERSION"* ]] || die "helm says '$out'"
    out=$("$BIN/coredns" -version);                  [[ $out == *"CoreDNS-${COREDNS_VERSION#v}"* ]] || die "coredns says '$out'"
    out=$("$BIN/s3server" -version);                 [[ $out == *"gofakes3 $GOFAKES3_VERSION"* ]] || die "s3server says '$out'"
    # The adapter has no --version: the module version go embeds in the binary.
    out=$(go version -m "$BIN/prometheus-adapter" | awk '$1 == "mod" && $2 == "sigs.k8s.io/prometheus-adapter" {print $3}')
    [[ $out == "$PROMETHEUS_ADAPTER_VERSION" ]] || die "prometheus-adapter is built from '$out'"
    out=$("$BIN/prometheus" --version | head -1);   [[ $out == "prometheus, version 3.${PROMETHEUS_VERSION#v0.}"* ]] || die "prometheus says '$out'"
    out=$("$BIN/otelcol" --version);                 [[ $out == *"$OTELCOL_VERSION (fileexporter $OTELCOL_FILEEXPORTER_VERSION)"* ]] || die "otelcol says '$out'"
}

build_all() {
    if [ -f "$STAMP" ] && ! missing "${ALL_BINS[@]}"; then
        log "cached: $KEY (nothing to build)"
        return 0
    fi
    check_modules
    local t0 kube_date kube_ld k8s_client minor
    t0=$(date +%s)
    log "building control-plane binaries into $BIN (key $KEY)"
    mkdir -p "$BIN" "$BIN.tmp"

    if missing kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; then
        kube_date=$(cd "$GODIR/kube" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
        kube_ld="-s -w"
        for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
            kube_ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$KUBE_MAJOR -X $pkg.gitMinor=$KUBE_MINOR"
            kube_ld+=" -X $pkg.gitTreeState=archive -X $pkg.buildDate=$kube_date"
        done
        go_build kubernetes "$GODIR/kube" "$kube_ld" \
            k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
            k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
            k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
    fi
    if missing etcd; then
        go_build etcd "$GODIR/etcd" "-s -w" go.etcd.io/etcd/server/v3
        # go names the binary after the last non-/vN element of the import path
        for n in server v3; do [ ! -f "$BIN.tmp/$n" ] || mv "$BIN.tmp/$n" "$BIN.tmp/etcd"; done
    fi
    if missing kwok kwokctl; then
        go_build kwok "$GODIR/kwok" \
            "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${K8S_VERSION#v}" \
            sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl
    fi
    if missing helm; then
        k8s_client=$(mod_version helm k8s.io/client-go)   # v0.Y.Z -> Kubernetes 1.Y, as helm's Makefile does
        minor=$(echo "$k8s_client" | cut -d. -f2)
        go_build helm "$GODIR/helm" \
            "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean
             -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor
             -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
            helm.sh/helm/v3/cmd/helm
    fi
    if missing coredns; then
        go_build coredns "$GODIR/coredns" "-s -w" .
    fi
    if missing s3server; then
        go_build s3server "$GODIR/s3server" "-s -w" .
    fi
    if missing otelcol; then
        go_build otelcol "$GODIR/otelcol" "-s -w" .
    fi
    if missing prometheus-adapter; then
        go_build prometheus-adapter "$GODIR/adapter" "-s -w" sigs.k8s.io/prometheus-adapter/cmd/adapter
        mv "$BIN.tmp/adapter" "$BIN.tmp/prometheus-adapter"
    fi
    if missing prometheus; then
        # v0.3XX.Y is Prometheus 3.XX.Y; of the service discoveries only Kubernetes (and
        # file, http), which leaves out every cloud provider's SDK.
        local pv="3.${PROMETHEUS_VERSION#v0.}"
        GO_TAGS=remove_all_sd,enable_kubernetes_sd go_build prometheus "$GODIR/prometheus" \
            "-s -w -X github.com/prometheus/common/version.Version=$pv -X github.com/prometheus/common/version.Branch=module
             -X github.com/prometheus/common/version.Revision=$PROMETHEUS_VERSION" \
            github.com/prometheus/prometheus/cmd/prometheus
    fi
    shopt -s nullglob
    for f in "$BIN.tmp"/*; do mv -f "$f" "$BIN/"; done
    rmdir "$BIN.tmp"
    verify
    {
        echo "key=$KEY"
        grep -v '^[[:space:]]*#' "$HERE/versions.env" | grep -v '^[[:space:]]*$'
        echo "go=$(go env GOVERSION)"
        echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ) seconds=$(( $(date +%s) - t0 ))"
    } >"$STAMP.tmp"
    mv "$STAMP.tmp" "$STAMP"
    log "built all in $(fmt_secs $(( $(date +%s) - t0 ))); $(du -sh "$BIN" | cut -f1) in $BIN"
}

case "${1:-}" in
    --print-bin-dir) echo "$BIN" ;;
    --check) check_modules; log "wrapper modules agree with versions.env" ;;
    --sync) sync_modules ;;
    "")
        mkdir -p "$KEYDIR"
        # One build per key at a time (two `make test` runs at once wait here).
        exec 9>"$KEYDIR/lock"
        if ! flock -n 9; then log "another build of $KEY is running; waiting for it"; flock 9; fi
        build_all
        echo "$BIN"
        ;;
    *) die "unknown argument: $1 (see the header of $0)" ;;
esac
