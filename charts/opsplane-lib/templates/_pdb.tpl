{{/* maxUnavailable rather than minAvailable: a single-replica install never blocks node drains. */}}
{{- define "opsplane-lib.pdb" -}}
{{- if .Values.pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "opsplane-lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "opsplane-lib.labels" . | nindent 4 }}
spec:
  {{- if .Values.pdb.minAvailable }}
  minAvailable: {{ .Values.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .Values.pdb.maxUnavailable }}
  {{- end }}
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "opsplane-lib.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}
