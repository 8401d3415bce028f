#!/usr/bin/env bash
# The chart's validation tools, built from the Go module proxy through the committed tools module (tools/go.mod,
# tools/go.sum; no download other than Go modules, no plugin install):
#
#   helm           helm.sh/helm/v3 (lint, template)
#   helm-unittest  github.com/helm-unittest/helm-unittest standalone binary (chart unit tests; needs the
#                  yaml-jsonpath replace that lives in tools/go.mod, so it cannot be `go install`ed directly)
#   psacheck       tools/psacheck: Pod Security Admission "restricted" (k8s.io/pod-security-admission) over
#                  rendered manifests
#
#   deploy/helm/tools.sh ensure   build what is missing into the cache, print "name path" lines
#   deploy/helm/tools.sh path     print the paths without building
#
# Cache: ${DCR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dcr-gateway}/<tool>-<version>/<tool>; psacheck's
# "version" is the pod-security-admission version plus a hash of its source and go.sum, so an edit rebuilds it.
# The module is copied to a temporary directory so a build never rewrites the checked-in go.mod/go.sum.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="$here/tools"
cache_root="${DCR_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dcr-gateway}"

log() { printf 'tools.sh: %s\n' "$*" >&2; }
modversion() { sed -n "s#^\s*$1 \(v[^ ]*\).*#\1#p" "$tools/go.mod" | head -n1; }

HELM_VERSION="$(modversion helm.sh/helm/v3)"
UNITTEST_VERSION="$(modversion github.com/helm-unittest/helm-unittest)"
PSA_VERSION="$(modversion k8s.io/pod-security-admission)"
CLIENT_GO_VERSION="$(modversion k8s.io/client-go)"   # v0.37.0 -> helm's default Capabilities.KubeVersion 1.37
PSA_HASH="$(cat "$tools/psacheck/main.go" "$tools/go.sum" | sha256sum | cut -c1-12)"

helm_bin="$cache_root/helm-$HELM_VERSION/helm"
unittest_bin="$cache_root/helm-unittest-$UNITTEST_VERSION/helm-unittest"
psacheck_bin="$cache_root/psacheck-$PSA_VERSION-$PSA_HASH/psacheck"

# build NAME DEST PACKAGE [go build flags...]
build() {
    local name="$1" dest="$2" pkg="$3"; shift 3
    command -v go >/dev/null || { log "go is not installed"; exit 1; }
    local work start=$SECONDS
    work="$(mktemp -d)"
    # shellcheck disable=SC2064
    trap "rm -rf '$work'" RETURN
    cp -r "$tools/." "$work/"
    log "building $name ($pkg; once per cache)"
    (cd "$work" && GOFLAGS="-mod=readonly ${GOFLAGS:-}" CGO_ENABLED=0 go build -trimpath "$@" -o "$work/$name.bin" "$pkg")
    mkdir -p "$(dirname "$dest")"
    mv -f "$work/$name.bin" "$dest.tmp.$$"
    mv -f "$dest.tmp.$$" "$dest"
    log "built $name in $((SECONDS - start)) s: $dest"
}

ensure() {
    local minor="${CLIENT_GO_VERSION#v0.}"; minor="${minor%%.*}"
    mkdir -p "$cache_root"
    exec 9>"$cache_root/.helm-tools.lock"
    flock 9
    [[ -x "$helm_bin" ]] || build helm "$helm_bin" helm.sh/helm/v3/cmd/helm -ldflags "-s -w \
        -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
        -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor \
        -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
    [[ -x "$unittest_bin" ]] || build helm-unittest "$unittest_bin" \
        github.com/helm-unittest/helm-unittest/cmd/helm-unittest -ldflags "-s -w"
    [[ -x "$psacheck_bin" ]] || build psacheck "$psacheck_bin" ./psacheck -ldflags "-s -w"
}

case "${1:-ensure}" in
    ensure) ensure ;;
    path) ;;
    *) echo "usage: $0 ensure|path" >&2; exit 2 ;;
esac
printf 'helm %s\nhelm-unittest %s\npsacheck %s\n' "$helm_bin" "$unittest_bin" "$psacheck_bin"
