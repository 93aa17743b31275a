{{/*
Names and labels. Every resource of a release carries the same app.kubernetes.io/* labels;
the selector uses only name and instance, which never change across upgrades.
*/}}

{{- define "opsplane-lib.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "opsplane-lib.fullname" -}}
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

{{- define "opsplane-lib.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "opsplane-lib.selectorLabels" -}}
app.kubernetes.io/name: {{ include "opsplane-lib.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "opsplane-lib.labels" -}}
helm.sh/chart: {{ include "opsplane-lib.chart" . }}
{{ include "opsplane-lib.selectorLabels" . }}
app.kubernetes.io/version: {{ include "opsplane-lib.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: service
app.kubernetes.io/part-of: opsplane
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "opsplane-lib.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "opsplane-lib.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "opsplane-lib.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/* A digest pins the image exactly; the tag is then informational. */}}
{{- define "opsplane-lib.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "opsplane-lib.imageTag" .) }}
{{- end }}
{{- end }}

{{/* The Secret the service's secret variables come from: an existing one, or the chart's own. */}}
{{- define "opsplane-lib.secretName" -}}
{{- default (include "opsplane-lib.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* Whether this release creates its own Secret from secretEnv. */}}
{{- define "opsplane-lib.createSecret" -}}
{{- if and (not .Values.existingSecret) .Values.secretEnv }}true{{ end }}
{{- end }}

{{/*
Whole seconds the pod may take to stop: the preStop sleep, then the service's own
SHUTDOWN_TIMEOUT_MS, then a margin so Kubernetes never SIGKILLs a process that is
still closing its pools within its own bound.
*/}}
{{- define "opsplane-lib.terminationGracePeriodSeconds" -}}
{{- $shutdown := div (add (int .Values.config.shutdownTimeoutMs) 999) 1000 }}
{{- add $shutdown (int .Values.lifecycle.preStopSleepSeconds) 5 }}
{{- end }}

{{/* Install-time checks for combinations the schema cannot express. */}}
{{- define "opsplane-lib.validate" -}}
{{- if and .Values.existingSecret .Values.secretEnv }}
{{- fail "set either existingSecret (a Secret you manage) or secretEnv (values for a Secret the chart creates), not both" }}
{{- end }}
{{- if not .Values.existingSecret }}
{{- range (prepend .Values.secretKeys.required "DATABASE_URL") }}
{{- if not (hasKey $.Values.secretEnv .) }}
{{- fail (printf "%s is required: set existingSecret to a Secret holding it, or secretEnv.%s" . .) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and (eq .Values.config.bus "kafka") (not .Values.config.kafkaBrokers) }}
{{- fail "config.kafkaBrokers is required when config.bus is kafka" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- $reserved := dict "PORT" "port" "BUS" "config.bus" "KAFKA_BROKERS" "config.kafkaBrokers" "LOG_LEVEL" "config.logLevel" "DATABASE_POOL_MAX" "config.databasePoolMax" "BODY_LIMIT_BYTES" "config.bodyLimitBytes" "SHUTDOWN_TIMEOUT_MS" "config.shutdownTimeoutMs" "OTEL_SERVICE_NAME" "otel.serviceName" "OTEL_EXPORTER_OTLP_ENDPOINT" "otel.endpoint" "OTEL_EXPORTER_OTLP_PROTOCOL" "otel.protocol" "OTEL_TRACES_SAMPLER" "otel.sampler" "OTEL_TRACES_SAMPLER_ARG" "otel.samplerArg" "OTEL_RESOURCE_ATTRIBUTES" "otel.resourceAttributes" "DATABASE_URL" "existingSecret or secretEnv" "REDIS_URL" "existingSecret or secretEnv" "AUTH_API_KEYS" "existingSecret or secretEnv" "AUTH_APP_CREDENTIALS" "existingSecret or secretEnv" }}
{{- range $k, $_ := .Values.env }}
{{- if hasKey $reserved $k }}
{{- fail (printf "env.%s is set by the chart: use %s instead" $k (get $reserved $k)) }}
{{- end }}
{{- end }}
{{- range $k, $_ := .Values.secretEnv }}
{{- if hasKey $.Values.env $k }}
{{- fail (printf "%s is in both env and secretEnv: keep it in one" $k) }}
{{- end }}
{{- end }}
{{- end }}
