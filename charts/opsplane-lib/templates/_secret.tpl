{{/*
A Secret from secretEnv, only when no existingSecret is named. Production installs should
prefer existingSecret (managed by External Secrets, Sealed Secrets or Vault) so credentials
never pass through Helm values or release history.
*/}}
{{- define "opsplane-lib.secret" -}}
{{- if include "opsplane-lib.createSecret" . }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ include "opsplane-lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "opsplane-lib.labels" . | nindent 4 }}
type: Opaque
data:
  {{- range $k, $v := .Values.secretEnv }}
  {{ $k }}: {{ toString $v | b64enc | quote }}
  {{- end }}
{{- end }}
{{- end }}
