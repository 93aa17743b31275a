{{/*
Plain (non-secret) environment: the variables every service reads, from config.* and otel.*,
then the service's own `env` map. Mounted with envFrom; a change rolls the pods (checksum/config).
*/}}
{{- define "opsplane-lib.configmap" -}}
{{- $data := dict
  "PORT" (toString .Values.port)
  "HOST" "0.0.0.0"
  "BUS" .Values.config.bus
  "LOG_LEVEL" .Values.config.logLevel
  "DATABASE_POOL_MAX" (toString (int .Values.config.databasePoolMax))
  "BODY_LIMIT_BYTES" (toString (int64 .Values.config.bodyLimitBytes))
  "SHUTDOWN_TIMEOUT_MS" (toString (int64 .Values.config.shutdownTimeoutMs))
  "OTEL_SERVICE_NAME" (default (include "opsplane-lib.name" .) .Values.otel.serviceName)
}}
{{- with .Values.config.kafkaBrokers }}
{{- $_ := set $data "KAFKA_BROKERS" . }}
{{- end }}
{{- with .Values.otel.endpoint }}
{{- $_ := set $data "OTEL_EXPORTER_OTLP_ENDPOINT" . }}
{{- $_ := set $data "OTEL_EXPORTER_OTLP_PROTOCOL" $.Values.otel.protocol }}
{{- $_ := set $data "OTEL_TRACES_SAMPLER" $.Values.otel.sampler }}
{{- $_ := set $data "OTEL_TRACES_SAMPLER_ARG" (toString $.Values.otel.samplerArg) }}
{{- end }}
{{- range $k, $v := .Values.env }}
{{- $_ := set $data $k (toString $v) }}
{{- end }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "opsplane-lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "opsplane-lib.labels" . | nindent 4 }}
data:
  {{- range $k, $v := $data }}
  {{ $k }}: {{ $v | quote }}
  {{- end }}
{{- end }}
