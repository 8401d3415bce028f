#!/usr/bin/env bash
# Run by hydra.sh in the build's work directory, beside this version's go.mod and go.sum.
#
# Hydra v2.2.0's own go.mod replaces github.com/ory/hydra-client-go/v2 (the generated API client its CLI commands
# use; the server does not) with its ./internal/httpclient, a nested module the proxy's zip of Hydra leaves out,
# and a dependency's replace directives do not apply to the module that builds it. No published version of the
# client matches: v2.2.0 renamed the API types (OAuth2Api -> OAuth2API), v2.2.0-rc.3 has the old names but lacks
# the one field Hydra v2.2.0's CLI sets (OAuth2Client.SkipLogoutConsent). So rc.3 is taken from the Go module
# proxy (checksum-verified) and given that field; go.mod replaces the client with this copy.
set -euo pipefail
client=github.com/ory/hydra-client-go/v2@v2.2.0-rc.3
dir="$(cd "$(mktemp -d)" && GOFLAGS=-mod=mod go mod download -json "$client" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[[ -d "$dir" ]] || { echo "prepare.sh: could not download $client" >&2; exit 1; }
cp -r "$dir" hydra-client-go
chmod -R u+w hydra-client-go
model=hydra-client-go/model_o_auth2_client.go
grep -q 'SkipConsent \*bool' "$model" || { echo "prepare.sh: $model has no SkipConsent field to follow" >&2; exit 1; }
sed -i '/SkipConsent \*bool/a\	SkipLogoutConsent *bool `json:"skip_logout_consent,omitempty"`' "$model"
