{{- define "opsplane-lib.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "opsplane-lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "opsplane-lib.labels" . | nindent 4 }}
  {{- with .Values.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ .Values.service.type }}
  ports:
    - name: http
      port: {{ .Values.port }}
      targetPort: http
      protocol: TCP
      appProtocol: http
  selector:
    {{- include "opsplane-lib.selectorLabels" . | nindent 4 }}
{{- end }}
