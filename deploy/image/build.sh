#!/usr/bin/env bash
# The dcr-gateway image: localhost/dcr-gateway:<project version>, the reference docker-compose.yml uses as well.
#
#   deploy/image/build.sh deps    as root on Debian: podman, buildah, debootstrap from Debian's packages (once)
#   deploy/image/build.sh build   build the image (prints its reference)
#   deploy/image/build.sh base    only the local Debian base of a podman build (prints its reference)
#   deploy/image/build.sh ref     print the image reference without building
#
# With a Docker engine (`docker info` answers) the image is built by Docker on the Dockerfile's default base, the
# official Python slim image. Without one (this project's own machines: no engine, no registry), podman builds it
# (`--isolation=chroot`) on a Debian bookworm base bootstrapped here with `debootstrap --variant=minbase` plus
# Debian's python3 and python3-venv, imported with `podman import` as localhost/dcr-gateway-base:<tag>. The base is
# cached twice: as that podman image and as a tarball in
# ${DCR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dcr-gateway}/base-<tag>/rootfs.tar, so a second build neither
# bootstraps nor imports again. <tag> is bookworm-<year><month>: a new month bootstraps a new base (Debian's
# security updates), older ones are removed then.
#
# Environment: DCR_IMAGE_BUILDER=docker|podman (default: docker when `docker info` answers, else podman),
# BASE_IMAGE (a base for either builder instead of the default), DCR_IMAGE_BASE_TAG (the local base's tag),
# DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR (default http://deb.debian.org/debian and .../debian-security).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache_root="${DCR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dcr-gateway}"
suite=bookworm
base_tag="${DCR_IMAGE_BASE_TAG:-$suite-$(date -u +%Y%m)}"
base_ref="localhost/dcr-gateway-base:$base_tag"
base_dir="$cache_root/base-$base_tag"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security_mirror="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
image_packages=(podman buildah debootstrap fuse-overlayfs uidmap)

log() { printf 'build.sh: %s\n' "$*" >&2; }

version() {
    sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/pyproject.toml" | head -n1
}

image_ref() { echo "localhost/dcr-gateway:$(version)"; }
build_cache_ref="localhost/dcr-gateway-build-cache:latest"

revision() { git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown; }

docker_answers() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

builder() {
    if [[ -n "${DCR_IMAGE_BUILDER:-}" ]]; then echo "$DCR_IMAGE_BUILDER"
    elif docker_answers; then echo docker
    else echo podman
    fi
}

deps() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v buildah >/dev/null || missing+=(buildah)
    command -v debootstrap >/dev/null || [[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
    if [[ ${#missing[@]} -eq 0 ]]; then return; fi
    if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
        log "missing ${missing[*]} and this is not root on Debian/Ubuntu (as root: apt-get install -y --no-install-recommends ${image_packages[*]})"
        exit 1
    fi
    log "installing ${image_packages[*]} from Debian's packages"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${image_packages[@]}" >&2
}

# A bootstrap's work directory: whatever debootstrap left mounted in it first, and never across a mount.
remove_work() {
    findmnt -rn -o TARGET | grep -F "$1/" | sort -r | xargs -r umount -l || true
    rm -rf --one-file-system "$1"
}

# A Debian base with python3 and python3-venv, bootstrapped into a tarball (root: debootstrap and chroot).
bootstrap() {
    local work rootfs
    if [[ "$(id -u)" != 0 ]]; then
        log "bootstrapping the Debian base needs root (debootstrap, chroot); or set BASE_IMAGE to an image you have"
        exit 1
    fi
    work="$(mktemp -d "$cache_root/.base-work.XXXXXX")"
    # shellcheck disable=SC2064
    trap "remove_work '$work'" RETURN
    rootfs="$work/rootfs"
    log "bootstrapping Debian $suite (minbase + python3, python3-venv, ca-certificates) from $mirror"
    local start=$SECONDS
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$rootfs" "$mirror" >&2
    # As Debian's slim images: no documentation but the copyright files, no manuals, no translations (dpkg
    # leaves them out of later installs; what debootstrap put there goes below).
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/dcr-gateway-slim" <<EOF
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
    # Debian's updates and security fixes on top of the release.
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security_mirror $suite-security main
EOF
    chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -ec 'apt-get update -qq && apt-get upgrade -y -qq && apt-get clean' >&2
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log \
        "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/lib/dpkg/*-old \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/lintian/*
    find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    # A runtime provides these: none of the host's values stay in the image.
    : >"$rootfs/etc/resolv.conf"
    : >"$rootfs/etc/hostname"
    tar --numeric-owner --xattrs -C "$rootfs" -cf "$work/rootfs.tar" .
    mkdir -p "$base_dir"
    mv -f "$work/rootfs.tar" "$base_dir/rootfs.tar"
    log "bootstrapped in $((SECONDS - start)) s: $base_dir/rootfs.tar"
}

base() {
    if podman image exists "$base_ref"; then echo "$base_ref"; return; fi
    mkdir -p "$cache_root"
    exec 9>"$cache_root/.base-$base_tag.lock"
    flock 9
    if ! podman image exists "$base_ref"; then
        [[ -f "$base_dir/rootfs.tar" ]] || bootstrap
        log "importing $base_dir/rootfs.tar as $base_ref"
        podman import \
            --change 'ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV=LANG=C.UTF-8' \
            --change 'CMD=["/bin/bash"]' \
            --message "debootstrap --variant=minbase $suite + python3 python3-venv ca-certificates" \
            "$base_dir/rootfs.tar" "$base_ref" >/dev/null
        # Older months' bases: no longer used.
        local old
        for old in "$cache_root"/base-"$suite"-*; do
            [[ -d "$old" && "$old" != "$base_dir" ]] && rm -rf "$old"
        done
        podman images --format '{{.Repository}}:{{.Tag}}' localhost/dcr-gateway-base |
            grep -vxF "$base_ref" | xargs -r podman rmi >/dev/null 2>&1 || true
    fi
    echo "$base_ref"
}

build() {
    local ref tool start=$SECONDS
    ref="$(image_ref)"
    tool="$(builder)"
    local args=(--build-arg "VERSION=$(version)" --build-arg "REVISION=$(revision)" --tag "$ref" --file "$repo/Dockerfile")
    case "$tool" in
        docker)
            [[ -n "${BASE_IMAGE:-}" ]] && args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
            log "docker build $ref"
            docker build "${args[@]}" "$repo" >&2
            ;;
        podman)
            deps
            local base_image="${BASE_IMAGE:-}"
            [[ -n "$base_image" ]] || base_image="$(base)"
            log "podman build $ref on $base_image"
            # chroot isolation: crun cannot start containers in every sandbox (RLIMIT_NOFILE), RUN steps still
            # work. pip inside reaches PyPI through the host's network and trusts the host's CA bundle.
            local podman_build=(podman build --isolation=chroot --network host --pull=missing --layers
                --volume /etc/ssl/certs:/etc/ssl/certs:ro --build-arg "BASE_IMAGE=$base_image")
            # The builder stage gets a tag of its own, so that pruning the previous builds' untagged images keeps
            # its layers (the dependencies' layer above all) for the next build.
            "${podman_build[@]}" --target builder --tag "$build_cache_ref" --file "$repo/Dockerfile" "$repo" >&2
            "${podman_build[@]}" "${args[@]}" "$repo" >&2
            podman image prune --force >/dev/null
            ;;
        *) log "unknown builder $tool (docker or podman)"; exit 1 ;;
    esac
    log "built $ref with $tool in $((SECONDS - start)) s"
    echo "$ref"
}

case "${1:-build}" in
    deps) deps ;;
    base) deps; base ;;
    build) build ;;
    ref) image_ref ;;
    *) echo "usage: $0 [deps|base|build|ref]" >&2; exit 2 ;;
esac
