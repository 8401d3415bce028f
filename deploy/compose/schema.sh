#!/usr/bin/env bash
# The Compose Specification's JSON schema, for validating docker-compose.yml without a Docker engine
# (tests/unit/test_compose.py). It is the schema Docker Compose itself validates with: compose-go's embedded
# schema/compose-spec.json, fetched through the Go module proxy (checked against the Go checksum database).
#
#   deploy/compose/schema.sh ensure   fetch once into the cache, print the schema's path
#   deploy/compose/schema.sh path     print the path without fetching
#
# Cache: ${DCR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dcr-gateway}/compose-spec-<version>/compose-spec.json
set -euo pipefail

# The newest compose-go release the Go toolchain here accepts (v2.17.0 requires go >= 1.26.11).
COMPOSE_GO_VERSION=v2.16.2
module=github.com/compose-spec/compose-go/v2

cache_root="${DCR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dcr-gateway}"
dest_dir="$cache_root/compose-spec-$COMPOSE_GO_VERSION"
schema="$dest_dir/compose-spec.json"

log() { printf 'schema.sh: %s\n' "$*" >&2; }

fetch() {
    command -v go >/dev/null || { log "go is not installed (the schema comes through the Go module proxy)"; exit 1; }
    local work dir
    work="$(mktemp -d)"
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    log "fetching $module@$COMPOSE_GO_VERSION through the Go module proxy"
    # Outside any module (the temporary directory), with a module cache of its own that is removed afterwards.
    dir="$(cd "$work" && GOFLAGS=-modcacherw GOMODCACHE="$work/mod" go mod download -json "$module@$COMPOSE_GO_VERSION" |
        sed -n 's/^\s*"Dir": "\(.*\)",\?$/\1/p')"
    [[ -n "$dir" && -f "$dir/schema/compose-spec.json" ]] || { log "no schema/compose-spec.json in $module@$COMPOSE_GO_VERSION"; exit 1; }
    mkdir -p "$dest_dir"
    install -m 0644 "$dir/schema/compose-spec.json" "$schema.tmp.$$"
    mv -f "$schema.tmp.$$" "$schema"
    log "cached $schema"
}

case "${1:-ensure}" in
    ensure)
        if [[ ! -f "$schema" ]]; then
            mkdir -p "$cache_root"
            exec 9>"$cache_root/.compose-spec-$COMPOSE_GO_VERSION.lock"
            flock 9
            [[ -f "$schema" ]] || fetch
        fi
        echo "$schema"
        ;;
    path)
        echo "$schema"
        ;;
    *)
        echo "usage: $0 [ensure|path]" >&2
        exit 2
        ;;
esac
