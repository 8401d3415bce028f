#!/usr/bin/env bash
# Validate the Helm chart (deploy/helm/dcr-gateway) offline, with tools the project builds (deploy/helm/tools.sh)
# and the pinned kubernetes-validate wheel (pyproject.toml's dev extra):
#
#   1. helm lint --strict with every ci/*-values.yaml (values.schema.json included), at the oldest and newest
#      Kubernetes the chart supports;
#   2. helm template of every ci/*-values.yaml, without and with the monitoring.coreos.com/v1 and
#      gateway.networking.k8s.io/v1 APIs, at both Kubernetes versions;
#   3. each rendering validated strictly (unknown fields are errors) against that version's Kubernetes schemas,
#      and ServiceMonitor/HTTPRoute against the project's schemas (validate_manifests.py);
#   4. each rendering's Pods and Pod templates checked against Pod Security Standards "restricted" (psacheck);
#   5. the chart README's values table is the one values.yaml's `# --` comments give (values_doc.py);
#   6. helm-unittest --strict over dcr-gateway/tests/*_test.yaml.
#
#   deploy/helm/check.sh            (make chart-check)
#   PYTHON=.venv/bin/python OUT=dir deploy/helm/check.sh
#
# Exits non-zero on the first failing step; the renderings stay in $OUT (default: a temporary directory).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
chart="$here/dcr-gateway"
python="${PYTHON:-$root/.venv/bin/python}"
# Oldest and newest Kubernetes the chart supports (Chart.yaml kubeVersion; the wheel bundles 1.25 to 1.37).
kube_versions=(${KUBE_VERSIONS:-1.29.0 1.37.0})
crd_apis=(--api-versions monitoring.coreos.com/v1 --api-versions gateway.networking.k8s.io/v1)

declare -A tool
while read -r name path; do tool[$name]="$path"; done < <("$here/tools.sh" ensure)

out="${OUT:-$(mktemp -d)}"
mkdir -p "$out"
start=$SECONDS
step() { printf '\n== %s\n' "$*"; }

shopt -s nullglob
values=("$chart"/ci/*-values.yaml)
((${#values[@]})) || { echo "check.sh: no ci/*-values.yaml" >&2; exit 1; }

step "helm lint --strict (${#values[@]} values files x Kubernetes ${kube_versions[*]})"
for version in "${kube_versions[@]}"; do
    for file in "${values[@]}"; do
        "${tool[helm]}" lint --strict --quiet --kube-version "$version" "$chart" -f "$file" >"$out/lint.log" 2>&1 \
            || { cat "$out/lint.log"; echo "check.sh: helm lint failed: $(basename "$file") on $version" >&2; exit 1; }
    done
done
echo "ok"

step "helm template (without and with the CRD APIs)"
rendered=()
for version in "${kube_versions[@]}"; do
    for file in "${values[@]}"; do
        name="$(basename "$file" -values.yaml)"
        for apis in plain crds; do
            target="$out/$name-$version-$apis.yaml"
            args=()
            [[ $apis == crds ]] && args=("${crd_apis[@]}")
            "${tool[helm]}" template check "$chart" --namespace dcr --kube-version "$version" -f "$file" \
                "${args[@]}" >"$target"
            rendered+=("$target")
        done
    done
done
echo "${#rendered[@]} renderings in $out"

step "Kubernetes schemas, strict (validate_manifests.py)"
for version in "${kube_versions[@]}"; do
    "$python" "$here/validate_manifests.py" --kube-version "$version" "$out"/*-"$version"-*.yaml
done

step "Pod Security Standards: restricted (psacheck)"
"${tool[psacheck]}" "${rendered[@]}"

step "README values table (values_doc.py --check)"
"$python" "$here/values_doc.py" --check && echo "ok"

step "helm-unittest --strict"
"${tool[helm-unittest]}" --strict -f 'tests/*_test.yaml' "$chart"

echo
echo "chart-check: ok in $((SECONDS - start)) s"
