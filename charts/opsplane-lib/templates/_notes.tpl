{{- define "opsplane-lib.notes" -}}
{{- $fullname := include "opsplane-lib.fullname" . -}}
{{ .Chart.Name }} {{ include "opsplane-lib.imageTag" . }} is installed as {{ $fullname }} in namespace {{ .Release.Namespace }}.

Watch the rollout (pods become ready once PostgreSQL answers and migrations have run):
  kubectl -n {{ .Release.Namespace }} rollout status deployment/{{ $fullname }}

Why a pod is not ready (names the failing dependency):
  kubectl -n {{ .Release.Namespace }} port-forward svc/{{ $fullname }} {{ .Values.port }}:{{ .Values.port }}
  curl -s http://127.0.0.1:{{ .Values.port }}/readyz

Logs (JSON, one line per event, with request ids):
  kubectl -n {{ .Release.Namespace }} logs -l app.kubernetes.io/instance={{ .Release.Name }} --tail=100 -f
{{- if .Values.ingress.enabled }}

Reachable at:
{{- range .Values.ingress.hosts }}
  http{{ if $.Values.ingress.tls }}s{{ end }}://{{ .host }}{{ (first .paths).path }}
{{- end }}
{{- end }}

Secrets come from Secret "{{ include "opsplane-lib.secretName" . }}"{{ if .Values.existingSecret }} (yours){{ else }} (created by this chart from secretEnv){{ end }}.
Metrics: http://{{ $fullname }}.{{ .Release.Namespace }}.svc:{{ .Values.port }}/metrics{{ if .Values.serviceMonitor.enabled }} (ServiceMonitor {{ $fullname }}){{ else if .Values.metrics.scrapeAnnotations }} (prometheus.io/* pod annotations){{ end }}
{{- end }}
