{{/* Chart name, overridable. */}}
{{- define "minerpool-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name, at most 63 characters (a DNS label). */}}
{{- define "minerpool-operator.fullname" -}}
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

{{- define "minerpool-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "minerpool-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "minerpool-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "minerpool-operator.labels" -}}
helm.sh/chart: {{ include "minerpool-operator.chart" . }}
{{ include "minerpool-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: minerpool
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "minerpool-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "minerpool-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* "true" when the operator must elect a leader: asked for, or more than one replica. */}}
{{/* The operator's ServiceAccount, as the subject of its role bindings. */}}
{{- define "minerpool-operator.subjects" -}}
- kind: ServiceAccount
  name: {{ include "minerpool-operator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{- define "minerpool-operator.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicas) 1) }}true{{ else }}false{{ end }}
{{- end }}

{{- define "minerpool-operator.leaseName" -}}
{{- default (include "minerpool-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "minerpool-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
What the operator does in every namespace it watches, and nothing more. Secrets are only read,
to check that the Secrets a MinerPool references exist. CronJobs are one resource whether
served as batch/v1 or batch/v1beta1.
*/}}
{{- define "minerpool-operator.rules" -}}
# Exactly what the operator calls: it watches MinerPools and its children, server-side applies
# children (patch; create when absent), deletes CronJobs of disabled jobs and the optional
# children no longer wanted (ServiceMonitor, PodDisruptionBudget, NetworkPolicies; those are
# read by name, not watched), patches status, reads the Secrets a spec names by name, reads
# the payouts job's pods (a blocked run's reason, for the status), and records Events.
- apiGroups: ["minerpool.io"]
  resources: ["minerpools"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["minerpool.io"]
  resources: ["minerpools/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["batch"]
  resources: ["cronjobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
