{{/* Names (63 characters: DNS label). */}}
{{- define "dcr-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dcr-gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The management Service's name (room for the suffix within 63 characters). */}}
{{- define "dcr-gateway.managementName" -}}
{{- printf "%s-management" (include "dcr-gateway.fullname" . | trunc 52 | trimSuffix "-") }}
{{- end }}

{{- define "dcr-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: name and instance only (immutable in a Deployment's selector). */}}
{{- define "dcr-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dcr-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The `helm test` Pod's labels: a name of its own, so that no selector of the chart (Services, PDB, NetworkPolicy,
anti-affinity) ever matches it. */}}
{{- define "dcr-gateway.testSelectorLabels" -}}
app.kubernetes.io/name: {{ include "dcr-gateway.name" . | trunc 58 | trimSuffix "-" }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
{{- end }}

{{/* Standard labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/). */}}
{{- define "dcr-gateway.labels" -}}
{{ include "dcr-gateway.labelsWithoutComponent" . }}
app.kubernetes.io/component: gateway
{{- end }}

{{- define "dcr-gateway.labelsWithoutComponent" -}}
helm.sh/chart: {{ include "dcr-gateway.chart" . }}
{{ include "dcr-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ include "dcr-gateway.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/part-of: dcr-gateway
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* metadata.annotations from commonAnnotations merged with the given dict (call with dict "ctx" . "extra" map). */}}
{{- define "dcr-gateway.annotations" -}}
{{- $all := merge (deepCopy (default dict .extra)) (deepCopy .ctx.Values.commonAnnotations) }}
{{- with $all }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{- define "dcr-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dcr-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "dcr-gateway.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* registry/repository:tag[@digest] */}}
{{- define "dcr-gateway.image" -}}
{{- $repository := .Values.image.repository }}
{{- with .Values.image.registry }}{{ $repository = printf "%s/%s" (trimSuffix "/" .) $repository }}{{ end }}
{{- $ref := printf "%s:%s" $repository (include "dcr-gateway.imageTag" .) }}
{{- with .Values.image.digest }}{{ $ref = printf "%s@%s" $ref . }}{{ end }}
{{- $ref }}
{{- end }}

{{/* Required settings, with the value to set when missing. */}}
{{- define "dcr-gateway.publicUrl" -}}
{{- required "config.publicUrl is required: the issuer's public origin, e.g. --set config.publicUrl=https://auth.example.com" .Values.config.publicUrl | trimSuffix "/" }}
{{- end }}
{{- define "dcr-gateway.providerUrl" -}}
{{- required "config.providerUrl is required: the provider's internal URL, e.g. --set config.providerUrl=http://hydra-public:4444" .Values.config.providerUrl | trimSuffix "/" }}
{{- end }}
{{- define "dcr-gateway.hydraAdminUrl" -}}
{{- required "config.hydra.adminUrl is required with config.provider=hydra: the Hydra admin API, e.g. http://hydra-admin:4445" .Values.config.hydra.adminUrl | trimSuffix "/" }}
{{- end }}

{{/* Whether the chart creates its own Secret (inline secret values and no existing Secret). */}}
{{- define "dcr-gateway.createSecret" -}}
{{- $auth := .Values.auth }}
{{- $inline := or $auth.keycloakClientSecret $auth.hydraAdminHeaders $auth.initialAccessTokenHs256Secret }}
{{- $redis := and .Values.redis.enabled .Values.redis.url (not .Values.redis.existingSecret) }}
{{- if or (and $inline (not $auth.existingSecret)) $redis }}true{{ end }}
{{- end }}

{{- define "dcr-gateway.secretName" -}}
{{- include "dcr-gateway.fullname" . }}
{{- end }}

{{/* The port of a URL (explicit, else 80/443 by scheme). */}}
{{- define "dcr-gateway.urlPort" -}}
{{- $url := urlParse . }}
{{- $host := $url.host }}
{{- if regexMatch ":[0-9]+$" $host }}
{{- regexFind "[0-9]+$" $host }}
{{- else if has $url.scheme (list "https" "rediss") }}443
{{- else if has $url.scheme (list "redis") }}6379
{{- else }}80
{{- end }}
{{- end }}

{{/* Provider ports the gateway connects to (public URL and admin URL), as a sorted unique list. */}}
{{- define "dcr-gateway.providerPorts" -}}
{{- $urls := list (include "dcr-gateway.providerUrl" .) }}
{{- if eq .Values.config.provider "hydra" }}
{{- $urls = append $urls (include "dcr-gateway.hydraAdminUrl" .) }}
{{- else if and (eq .Values.config.provider "keycloak") .Values.config.keycloak.adminUrl }}
{{- $urls = append $urls .Values.config.keycloak.adminUrl }}
{{- end }}
{{- $ports := list }}
{{- range $urls }}{{ $ports = append $ports (include "dcr-gateway.urlPort" . | atoi) }}{{ end }}
{{- toJson ($ports | uniq | sortAlpha) }}
{{- end }}

{{/* Ports of the OTLP endpoints the gateway exports to (tracing.otlpEndpoint, and OTEL_EXPORTER_OTLP_ENDPOINT /
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT given in config.env), as a sorted unique list; empty when none is set. */}}
{{- define "dcr-gateway.otlpPorts" -}}
{{- $urls := list }}
{{- with .Values.tracing.otlpEndpoint }}{{ $urls = append $urls . }}{{ end }}
{{- range $name := list "OTEL_EXPORTER_OTLP_ENDPOINT" "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" }}
{{- with get $.Values.config.env $name }}{{ $urls = append $urls (toString .) }}{{ end }}
{{- end }}
{{- $ports := list }}
{{- range $urls }}{{ $ports = append $ports (include "dcr-gateway.urlPort" . | atoi) }}{{ end }}
{{- toJson ($ports | uniq | sortAlpha) }}
{{- end }}

{{/* The discovery path the helm test fetches (RFC 8414 section 3.1 path insertion for the first issuer). */}}
{{- define "dcr-gateway.testDiscoveryPath" -}}
{{- if .Values.tests.discoveryPath }}{{ .Values.tests.discoveryPath }}
{{- else if eq .Values.config.provider "keycloak" }}/.well-known/oauth-authorization-server/realms/{{ first .Values.config.keycloak.realms }}
{{- else }}/.well-known/oauth-authorization-server{{ .Values.config.hydra.issuerPath }}
{{- end }}
{{- end }}

{{- define "dcr-gateway.testIssuer" -}}
{{- if eq .Values.config.provider "keycloak" }}{{ include "dcr-gateway.publicUrl" . }}/realms/{{ first .Values.config.keycloak.realms }}
{{- else }}{{ include "dcr-gateway.publicUrl" . }}{{ .Values.config.hydra.issuerPath }}
{{- end }}
{{- end }}

{{/* Replicas the workload runs with at least (HPA minimum when autoscaling). */}}
{{- define "dcr-gateway.minReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ .Values.autoscaling.minReplicas }}{{ else }}{{ .Values.replicaCount }}{{ end }}
{{- end }}

{{/* The gateway's worst shutdown after SIGTERM: the drain, the bound on in-flight requests, then up to 3 x the
provider timeout for a create cut by the bound to finish and be rolled back (gateway/server.py `settle`), plus a
margin. The provider timeout is config.env.DCR_PROVIDER_TIMEOUT, else the gateway's default (10 s). */}}
{{- define "dcr-gateway.settleSeconds" -}}
{{- $timeout := get .Values.config.env "DCR_PROVIDER_TIMEOUT" | default 10 }}
{{- toString $timeout | float64 | mulf 3 | ceil | int }}
{{- end }}

{{- define "dcr-gateway.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add .Values.shutdown.drainSeconds .Values.shutdown.timeoutSeconds (include "dcr-gateway.settleSeconds" . | int) 5 }}
{{- else }}
{{- .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/* config.env is rendered into a plain ConfigMap. values.schema.json refuses secret-bearing names (SECRET, HEADERS,
REDIS_URL, PASSWORD: the nested and per-key forms pydantic-settings accepts, and OTEL_EXPORTER_OTLP_*HEADERS); this
refuses a whole section given as JSON that carries one (DCR_LIMITS='{"redis_url": ...}',
DCR_ACCESS__ISSUERS='{"/realms/mcp": {"initial_access_tokens": {"hs256_secret": ...}}}'). The value is never echoed. */}}
{{- define "dcr-gateway.checkConfigEnv" -}}
{{- /* Names the ConfigMap renders from values: a second copy in config.env would be a duplicate key, and the
grace period is computed from shutdown.* (DCR_PROVIDER_TIMEOUT alone is read from config.env). */}}
{{- $own := dict "DCR_HOST" "nothing (the chart listens on 0.0.0.0)" "DCR_PORT" "service.containerPort"
  "DCR_MANAGEMENT__HOST" "nothing (the chart listens on 0.0.0.0)" "DCR_MANAGEMENT__PORT" "management.port"
  "DCR_SHUTDOWN__DRAIN_SECONDS" "shutdown.drainSeconds" "DCR_SHUTDOWN__TIMEOUT_SECONDS" "shutdown.timeoutSeconds"
  "DCR_SHUTDOWN" "shutdown.drainSeconds and shutdown.timeoutSeconds"
  "DCR_DEPLOYMENT" "config.deployment" "DCR_PUBLIC_URL" "config.publicUrl" "DCR_PROVIDER" "config.provider"
  "DCR_PROVIDER_URL" "config.providerUrl" "DCR_TRUST_FORWARDED_FOR" "config.trustForwardedFor"
  "DCR_LOG_LEVEL" "config.logLevel" "DCR_LOG_FORMAT" "config.logFormat"
  "DCR_HYDRA__ADMIN_URL" "config.hydra.adminUrl" "DCR_HYDRA__ISSUER_PATH" "config.hydra.issuerPath"
  "DCR_KEYCLOAK__ADMIN_URL" "config.keycloak.adminUrl" "DCR_KEYCLOAK__REALMS" "config.keycloak.realms"
  "DCR_KEYCLOAK__CLIENT_ID" "config.keycloak.clientId" "DCR_KEYCLOAK__VERIFY_TLS" "config.keycloak.verifyTls"
  "DCR_LIMITS__BACKEND" "redis.enabled" "DCR_LIMITS__KEY_PREFIX" "redis.keyPrefix" }}
{{- if .Values.tracing.otlpEndpoint }}{{ $_ := set $own "OTEL_EXPORTER_OTLP_ENDPOINT" "tracing.otlpEndpoint alone" }}{{ end }}
{{- range $name, $value := .Values.config.env }}
{{- with get $own $name }}
{{- fail (printf "config.env.%s is set by the chart from its values: set %s instead" $name .) }}
{{- end }}
{{- $found := regexFind "(?i)\"(client_secret|admin_headers|hs256_secret|redis_url|password)\"\\s*:" (toString $value) }}
{{- if $found }}
{{- fail (printf "config.env.%s carries a secret (%s) and config.env is rendered into a plain ConfigMap: give it from a Secret, with auth.existingSecret and auth.existingSecretKeys (Keycloak client secret, Hydra admin headers, HS256 initial access token secret), redis.existingSecret (the Redis URL), or extraEnv: [{name: %s, valueFrom: {secretKeyRef: {name: <Secret>, key: <key>}}}]" $name (regexFind "(?i)[a-z0-9_]+" $found | lower) $name) }}
{{- end }}
{{- end }}
{{- end }}

{{/* One env entry read from a Secret key. */}}
{{- define "dcr-gateway.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
{{- end }}

{{/* Secret settings as env entries (existing Secrets, or the chart's own), with the mistakes that would start a
gateway without its credentials refused at render time. */}}
{{- define "dcr-gateway.secretEnvs" -}}
{{- $auth := .Values.auth }}
{{- $own := include "dcr-gateway.secretName" . }}
{{- $inline := or $auth.keycloakClientSecret $auth.hydraAdminHeaders $auth.initialAccessTokenHs256Secret }}
{{- if and $auth.existingSecret $inline }}
{{- fail "auth: set either auth.existingSecret or the inline secret values (keycloakClientSecret, hydraAdminHeaders, initialAccessTokenHs256Secret), not both" }}
{{- end }}
{{- if eq .Values.config.provider "keycloak" }}
{{- if and $auth.existingSecret $auth.existingSecretKeys.keycloakClientSecret }}
{{ include "dcr-gateway.secretEnv" (dict "name" "DCR_KEYCLOAK__CLIENT_SECRET" "secret" $auth.existingSecret "key" $auth.existingSecretKeys.keycloakClientSecret) }}
{{- else if $auth.keycloakClientSecret }}
{{ include "dcr-gateway.secretEnv" (dict "name" "DCR_KEYCLOAK__CLIENT_SECRET" "secret" $own "key" "keycloak-client-secret") }}
{{- else }}
{{- fail "config.provider=keycloak needs the service-account client's secret: auth.existingSecret (key auth.existingSecretKeys.keycloakClientSecret) or auth.keycloakClientSecret" }}
{{- end }}
{{- end }}
{{- if and $auth.existingSecret $auth.existingSecretKeys.hydraAdminHeaders }}
{{ include "dcr-gateway.secretEnv" (dict "name" "DCR_HYDRA__ADMIN_HEADERS" "secret" $auth.existingSecret "key" $auth.existingSecretKeys.hydraAdminHeaders) }}
{{- else if $auth.hydraAdminHeaders }}
{{ include "dcr-gateway.secretEnv" (dict "name" "DCR_HYDRA__ADMIN_HEADERS" "secret" $own "key" "hydra-admin-headers") }}
{{- end }}
{{- if and $auth.existingSecret $auth.existingSecretKeys.initialAccessTokenHs256Secret }}
{{ include "dcr-gateway.secretEnv" (dict "name" "DCR_ACCESS__INITIAL_ACCESS_TOKENS__HS256_SECRET" "secret" $auth.existingSecret "key" $auth.existingSecretKeys.initialAccessTokenHs256Secret) }}
{{- else if $auth.initialAccessTokenHs256Secret }}
{{ include "dcr-gateway.secretEnv" (dict "name" "DCR_ACCESS__INITIAL_ACCESS_TOKENS__HS256_SECRET" "secret" $own "key" "iat-hs256-secret") }}
{{- end }}
{{- if .Values.redis.enabled }}
{{- if and .Values.redis.existingSecret .Values.redis.url }}
{{- fail "redis: set either redis.existingSecret or redis.url, not both" }}
{{- else if .Values.redis.existingSecret }}
{{ include "dcr-gateway.secretEnv" (dict "name" "DCR_LIMITS__REDIS_URL" "secret" .Values.redis.existingSecret "key" .Values.redis.existingSecretKey) }}
{{- else if .Values.redis.url }}
{{ include "dcr-gateway.secretEnv" (dict "name" "DCR_LIMITS__REDIS_URL" "secret" $own "key" "redis-url") }}
{{- else }}
{{- fail "redis.enabled needs redis.existingSecret (key redis.existingSecretKey) or redis.url" }}
{{- end }}
{{- end }}
{{- end }}
