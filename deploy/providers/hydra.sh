#!/usr/bin/env bash
# Ory Hydra for local development and tests (no Docker): built from source through the Go module proxy.
#
#   deploy/providers/hydra.sh ensure   build once into the cache, print the binary's path
#   deploy/providers/hydra.sh path     print the path without building
#
# Version: HYDRA_VERSION of versions.env, or DCR_HYDRA_VERSION (one of HYDRA_MATRIX: `make matrix` sets it).
# Cache: ${DCR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dcr-gateway}/hydra-<version>/hydra
# The wrapper module in hydra-build/<version>/ pins Hydra and the replace directives its own go.mod needs (a
# dependency's replaces are not applied); it is copied to a temporary directory so the build never rewrites the
# checked-in go.mod/go.sum.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
. "$here/versions.env"
HYDRA_VERSION="${DCR_HYDRA_VERSION:-$HYDRA_VERSION}"
module_dir="$here/hydra-build/$HYDRA_VERSION"

cache_root="${DCR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dcr-gateway}"
dest_dir="$cache_root/hydra-$HYDRA_VERSION"
binary="$dest_dir/hydra"

log() { printf 'hydra.sh: %s\n' "$*" >&2; }

build() {
    command -v go >/dev/null || { log "go is not installed"; exit 1; }
    command -v gcc >/dev/null || { log "gcc is needed (cgo, for the in-memory SQLite DSN)"; exit 1; }
    [[ -f "$module_dir/go.mod" ]] || {
        log "no wrapper module for Hydra $HYDRA_VERSION (hydra-build/$HYDRA_VERSION/go.mod); versions: $HYDRA_MATRIX"
        exit 1
    }
    local required
    required="$(sed -n 's#^\s*github.com/ory/hydra/v2 \(v[^ ]*\).*#\1#p' "$module_dir/go.mod")"
    if [[ "$required" != "$HYDRA_VERSION" ]]; then
        log "hydra-build/$HYDRA_VERSION/go.mod requires $required"; exit 1
    fi
    local work
    work="$(mktemp -d)"
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    cp "$module_dir/go.mod" "$module_dir/go.sum" "$work/"
    # a version whose own go.mod needs more than replace directives brings a prepare.sh (hydra-build/v2.2.0/)
    if [[ -f "$module_dir/prepare.sh" ]]; then (cd "$work" && bash "$module_dir/prepare.sh"); fi
    log "building Hydra $HYDRA_VERSION (a few minutes on 2 cores; once per cache)"
    local start=$SECONDS
    (cd "$work" && CGO_ENABLED=1 GOFLAGS=-mod=readonly \
        go build -trimpath -tags sqlite,sqlite_omit_load_extension \
            -ldflags "-X github.com/ory/hydra/v2/driver/config.Version=$HYDRA_VERSION" \
            -o "$work/hydra" github.com/ory/hydra/v2)
    "$work/hydra" version >&2
    mkdir -p "$dest_dir"
    mv -f "$work/hydra" "$binary.tmp.$$"
    mv -f "$binary.tmp.$$" "$binary"
    log "built in $((SECONDS - start)) s: $binary"
}

case "${1:-ensure}" in
    ensure)
        if [[ ! -x "$binary" ]]; then
            mkdir -p "$cache_root"
            exec 9>"$cache_root/.hydra-$HYDRA_VERSION.lock"
            flock 9
            [[ -x "$binary" ]] || build
        fi
        echo "$binary"
        ;;
    path)
        echo "$binary"
        ;;
    *)
        echo "usage: $0 ensure|path" >&2
        exit 2
        ;;
esac
