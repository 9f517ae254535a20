#!/usr/bin/env bash
# `make image`: builds the project's image from the Dockerfile (the same file users
# build with Docker) with buildah, daemonless and without any registry but the
# package registries:
#
#   1. the base: Debian 12 (Python 3.11) made by mmdebstrap from Debian packages and
#      imported as localhost/modelzoo-base:<key>, passed in as PYTHON_IMAGE (the
#      Dockerfile keeps python:3.11-slim-bookworm as its default). The rootfs tarball
#      is cached in $MODELZOO_CACHE/image/, keyed by the package list below.
#   2. the image: `buildah build --layers` with the zoo that `make models` built given
#      as the build context `models` (it replaces the Dockerfile's npm stage), so a
#      rebuild after a code change reuses the dependency layer and takes a minute.
#   3. an archive of the image for the real node's containerd
#      ($MODELZOO_CACHE/image/modelzoo-<image id>.tar, docker-archive format).
#
# Usage: image.sh [--print-archive]   (the last line on stdout is the archive's path)
# Env:   IMAGE (default localhost/modelzoo:dev), ZOO_DIR (default: `modelzoo_models build`)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE=${MODELZOO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelzoo}/image
IMAGE=${IMAGE:-localhost/modelzoo:dev}
PY=${PY:-$ROOT/.venv/bin/python}

log() { printf '[image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
fmt_secs() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

archive_path() {
    local id
    id=$(buildah images --noheading --format '{{.ID}}' "$IMAGE" 2>/dev/null | head -1) || true
    [ -n "$id" ] || return 1
    echo "$CACHE/modelzoo-${id:0:12}.tar"
}
if [ "${1:-}" = "--print-archive" ]; then archive_path || die "no image $IMAGE: run make image"; exit 0; fi

# `image.sh pause`: the real node's sandbox ("pause") image: Debian's static catatonit
# in an empty image, running as a pause process (-P) that keeps the pod's namespaces
# alive (an image whose command exits breaks every container of the pod). Cached as
# $MODELZOO_CACHE/image/pause-<catatonit version>.tar; prints its path and name.
if [ "${1:-}" = "pause" ]; then
    bash "$HERE/host-packages.sh" image >&2
    bash "$HERE/host-packages.sh" node >&2
    ver=$(dpkg-query -W -f='${Version}' catatonit | tr -c 'A-Za-z0-9.\n' '-')
    name=localhost/modelzoo-pause:$ver
    tar=$CACHE/pause-$ver.tar
    if [ ! -s "$tar" ]; then
        mkdir -p "$CACHE"
        log "pause image: catatonit $ver -> $name"
        ctr=$(buildah from scratch)
        trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
        buildah copy --quiet "$ctr" /usr/bin/catatonit /catatonit >/dev/null
        buildah config --entrypoint '["/catatonit", "-P"]' --user 65535:65535 \
            --os linux --arch "$(dpkg --print-architecture)" "$ctr"
        buildah commit --quiet --rm "$ctr" "$name" >/dev/null
        trap - EXIT
        buildah push --quiet "$name" "docker-archive:$tar.tmp:$name" >&2
        mv "$tar.tmp" "$tar"
    fi
    echo "$name"
    echo "$tar"
    exit 0
fi

bash "$HERE/host-packages.sh" image
mkdir -p "$CACHE"
T0=$(date +%s)

# ---------------------------------------------------------------- 1. base image
# Debian's python3 is /usr/bin/python3: python-is-python3 gives the Dockerfile its
# `python`; python3-venv its `python -m venv`; passwd its groupadd/useradd.
SUITE=bookworm
BASE_PKGS=(python3 python3-venv python-is-python3 passwd ca-certificates)
MIRRORS=(
    "deb http://deb.debian.org/debian $SUITE main"
    "deb http://deb.debian.org/debian $SUITE-updates main"
    "deb http://deb.debian.org/debian-security $SUITE-security main"
)
BASE_REV=2  # bump when the mmdebstrap options change
# The base trusts what the host trusts: CAs added under /usr/local/share/ca-certificates
# (a proxy that inspects TLS, as on the machines this was written on) are copied in,
# and pip reads the system bundle (/etc/pip.conf), so `pip install` in the build
# reaches PyPI wherever the host's pip does.
LOCAL_CAS=/usr/local/share/ca-certificates
CA_HOOKS=(--customize-hook='mkdir -p "$1/etc" && printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > "$1/etc/pip.conf"')
if compgen -G "$LOCAL_CAS/*.crt" >/dev/null; then
    CA_HOOKS+=(--customize-hook="copy-in $LOCAL_CAS /usr/local/share" --customize-hook='chroot "$1" update-ca-certificates')
fi
BASE_KEY=$( {
    printf '%s\n' "$SUITE" "${BASE_PKGS[@]}" "${MIRRORS[@]}" "$BASE_REV" "$(uname -m)"
    cat "$LOCAL_CAS"/*.crt 2>/dev/null || true
} | sha256sum | cut -c1-12)
BASE_IMAGE=localhost/modelzoo-base:$BASE_KEY
BASE_TAR=$CACHE/debian-$SUITE-python-$BASE_KEY.tar

if buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base $BASE_IMAGE: present"
else
    if [ ! -s "$BASE_TAR" ]; then
        t=$(date +%s)
        log "base: mmdebstrap $SUITE + ${BASE_PKGS[*]} (Debian packages; about a minute)"
        # minbase + the packages; docs, man pages and locales are left out of the rootfs.
        mmdebstrap --variant=minbase --format=tar --include="$(IFS=,; echo "${BASE_PKGS[*]}")" \
            --aptopt='Acquire::Languages "none"' \
            --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            "${CA_HOOKS[@]}" \
            "$SUITE" "$BASE_TAR.tmp" "${MIRRORS[@]}" >&2
        mv "$BASE_TAR.tmp" "$BASE_TAR"
        log "base: rootfs $(du -h "$BASE_TAR" | cut -f1) in $(fmt_secs $(( $(date +%s) - t )))"
    fi
    log "base: importing $BASE_TAR as $BASE_IMAGE"
    ctr=$(buildah from scratch)
    trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
    buildah add --quiet "$ctr" "$BASE_TAR" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd python3 --os linux --arch "$(dpkg --print-architecture)" "$ctr"
    buildah commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
    trap - EXIT
fi

# ---------------------------------------------------------------- 2. the image
if [ -z "${ZOO_DIR:-}" ]; then
    log "zoo: modelzoo_models build (cached entries are reused)"
    ZOO_DIR=$("$PY" -m modelzoo_models build | tail -1)
fi
[ -s "$ZOO_DIR/catalog.json" ] || die "no built zoo in '$ZOO_DIR' (make models)"
# The `models` context mirrors the models stage's layout: /opt/modelzoo/models.
ZOO_CTX=$CACHE/zoo-context/$(basename "$ZOO_DIR")
if [ ! -d "$ZOO_CTX" ]; then
    rm -rf "$CACHE/zoo-context"
    mkdir -p "$ZOO_CTX/opt/modelzoo"
    cp -a "$ZOO_DIR" "$ZOO_CTX/opt/modelzoo/models"
fi

previous=$(buildah images --noheading --format '{{.ID}}' "$IMAGE" 2>/dev/null | head -1) || true
t=$(date +%s)
log "building $IMAGE from Dockerfile (base $BASE_IMAGE, zoo $ZOO_DIR)"
# --network host: the build reaches PyPI the way the host does, with no bridge or NAT
# rules of buildah's own; --layers caches each step for the next build.
buildah build --layers --network host \
    --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
    --build-context "models=$ZOO_CTX" \
    -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT" >&2
log "built $IMAGE in $(fmt_secs $(( $(date +%s) - t )))"
# The image it replaced: its own top layers (the copied venv, 1.5 GB) would pile up in
# the store; the cached step layers stay, so the next build still reuses them.
current=$(buildah images --noheading --format '{{.ID}}' "$IMAGE" | head -1)
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
    buildah rmi "$previous" >/dev/null 2>&1 || true
fi

# ---------------------------------------------------------------- 3. the archive
ARCHIVE=$(archive_path)
if [ ! -s "$ARCHIVE" ]; then
    log "saving $IMAGE to $ARCHIVE (for the real node's containerd)"
    rm -f "$CACHE"/modelzoo-*.tar
    buildah push --quiet "$IMAGE" "docker-archive:$ARCHIVE.tmp:$IMAGE" >&2
    mv "$ARCHIVE.tmp" "$ARCHIVE"
fi
size=$(buildah images --noheading --format '{{.Size}}' "$IMAGE" | head -1)
log "$IMAGE: $size (archive $(du -h "$ARCHIVE" | cut -f1)); all in $(fmt_secs $(( $(date +%s) - T0 )))"
echo "$ARCHIVE"
