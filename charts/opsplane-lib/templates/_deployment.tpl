{{/*
The service's Deployment. Usage in a service chart: {{ include "opsplane-lib.deployment" . }}
*/}}
{{- define "opsplane-lib.deployment" -}}
{{- include "opsplane-lib.validate" . }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "opsplane-lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "opsplane-lib.labels" . | nindent 4 }}
spec:
  {{- if not .Values.autoscaling.enabled }}
  replicas: {{ .Values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: {{ .Values.revisionHistoryLimit }}
  selector:
    matchLabels:
      {{- include "opsplane-lib.selectorLabels" . | nindent 6 }}
  strategy:
    {{- toYaml .Values.strategy | nindent 4 }}
  template:
    metadata:
      labels:
        {{- include "opsplane-lib.labels" . | nindent 8 }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- /* A changed ConfigMap or chart-created Secret rolls the pods; env is read only at start. */}}
        checksum/config: {{ include "opsplane-lib.configmap" . | sha256sum }}
        {{- if include "opsplane-lib.createSecret" . }}
        checksum/secret: {{ include "opsplane-lib.secret" . | sha256sum }}
        {{- end }}
        {{- if .Values.metrics.scrapeAnnotations }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ .Values.port | quote }}
        prometheus.io/path: /metrics
        {{- end }}
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "opsplane-lib.serviceAccountName" . }}
      automountServiceAccountToken: {{ .Values.serviceAccount.automountToken }}
      {{- with .Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      enableServiceLinks: false
      terminationGracePeriodSeconds: {{ include "opsplane-lib.terminationGracePeriodSeconds" . }}
      securityContext:
        {{- $enforced := dict "runAsNonRoot" true "seccompProfile" (dict "type" "RuntimeDefault") }}
        {{- toYaml (mustMergeOverwrite (deepCopy .Values.podSecurityContext) $enforced) | nindent 8 }}
      containers:
        - name: {{ .Chart.Name }}
          image: {{ include "opsplane-lib.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          ports:
            - name: http
              containerPort: {{ .Values.port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "opsplane-lib.fullname" . }}
          env:
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
            - name: POD_NAMESPACE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.namespace
            {{- if .Values.otel.endpoint }}
            - name: OTEL_RESOURCE_ATTRIBUTES
              value: {{ include "opsplane-lib.otelResourceAttributes" . | quote }}
            {{- end }}
            {{- include "opsplane-lib.secretEnvRefs" . | trim | nindent 12 }}
            {{- with .Values.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- /* startup and readiness ask whether dependencies answer and migrations are done; liveness only whether the process serves, so a database outage never restarts pods. */}}
          startupProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: {{ .Values.probes.startup.periodSeconds }}
            timeoutSeconds: {{ .Values.probes.startup.timeoutSeconds }}
            failureThreshold: {{ .Values.probes.startup.failureThreshold }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
            timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
            failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
            successThreshold: 1
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
            timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
            failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
          lifecycle:
            preStop:
              {{- /* Keeps serving while kube-proxy and the ingress controller drop this pod's endpoint; SIGTERM follows. */}}
              exec:
                command: ["sleep", "{{ .Values.lifecycle.preStopSleepSeconds }}"]
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            runAsNonRoot: true
            privileged: false
            capabilities:
              drop: ["ALL"]
            seccompProfile:
              type: RuntimeDefault
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with .Values.extraVolumeMounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            {{- with .Values.tmp.medium }}
            medium: {{ . }}
            {{- end }}
            sizeLimit: {{ .Values.tmp.sizeLimit }}
        {{- with .Values.extraVolumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with .Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if or .Values.spreadAcrossNodes .Values.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- if .Values.spreadAcrossNodes }}
        {{- /* Soft: a small or single-zone cluster still schedules every replica. */}}
        {{- range list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
        - maxSkew: 1
          topologyKey: {{ . }}
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "opsplane-lib.selectorLabels" $ | nindent 14 }}
        {{- end }}
        {{- end }}
        {{- with .Values.topologySpreadConstraints }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
{{- end }}

{{/* service.name/version/namespace plus the pod's identity, so traces lead to the pod that served them. */}}
{{- define "opsplane-lib.otelResourceAttributes" -}}
{{- $attrs := list (printf "service.namespace=%s" .Values.otel.serviceNamespace) (printf "service.version=%s" (include "opsplane-lib.imageTag" .)) "k8s.pod.name=$(POD_NAME)" "k8s.namespace.name=$(POD_NAMESPACE)" (printf "k8s.deployment.name=%s" (include "opsplane-lib.fullname" .)) }}
{{- with .Values.otel.resourceAttributes }}
{{- $attrs = append $attrs . }}
{{- end }}
{{- join "," $attrs }}
{{- end }}

{{/*
Secret variables as secretKeyRef entries: secretKeys.required must be in the Secret (the pod
does not start otherwise), secretKeys.optional may be, and any other key given in secretEnv
is required.
*/}}
{{- define "opsplane-lib.secretEnvRefs" -}}
{{- $secret := include "opsplane-lib.secretName" . }}
{{- $seen := dict }}
{{- range .Values.secretKeys.required }}
{{- $_ := set $seen . true }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
{{- end }}
{{- range .Values.secretKeys.optional }}
{{- if not (hasKey $seen .) }}
{{- $_ := set $seen . true }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
      optional: true
{{- end }}
{{- end }}
{{- range $k, $_ := .Values.secretEnv }}
{{- if not (hasKey $seen $k) }}
- name: {{ $k }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $k }}
{{- end }}
{{- end }}
{{- end }}
