{{/*
Ingress: the HTTP port from the peers in networkPolicy.ingressFrom (the ingress controller,
Prometheus, other opsplane services), from every pod of the namespaces named in
networkPolicy.ingressNamespaces (by their kubernetes.io/metadata.name label, which Kubernetes sets),
and, when allowSameNamespace, from the release namespace.
Egress is restricted only when networkPolicy.egress.restrict is true: then DNS plus the rules
in networkPolicy.egress.rules (PostgreSQL, Redis, Kafka, OTLP collector, routed-to targets).
*/}}
{{- define "opsplane-lib.networkpolicy" -}}
{{- if .Values.networkPolicy.enabled }}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "opsplane-lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "opsplane-lib.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "opsplane-lib.selectorLabels" . | nindent 6 }}
  policyTypes:
    - Ingress
    {{- if .Values.networkPolicy.egress.restrict }}
    - Egress
    {{- end }}
  ingress:
    {{- if or .Values.networkPolicy.allowSameNamespace .Values.networkPolicy.ingressNamespaces .Values.networkPolicy.ingressFrom }}
    - ports:
        - port: http
          protocol: TCP
      from:
        {{- if .Values.networkPolicy.allowSameNamespace }}
        - podSelector: {}
        {{- end }}
        {{- range .Values.networkPolicy.ingressNamespaces }}
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ . | quote }}
        {{- end }}
        {{- with .Values.networkPolicy.ingressFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    {{- end }}
  {{- if .Values.networkPolicy.egress.restrict }}
  egress:
    {{- if .Values.networkPolicy.egress.dns }}
    - to:
        - namespaceSelector: {}
          podSelector:
            matchLabels:
              k8s-app: kube-dns
      ports:
        - port: 53
          protocol: UDP
        - port: 53
          protocol: TCP
    {{- end }}
    {{- with .Values.networkPolicy.egress.rules }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
{{- end }}
{{- end }}
