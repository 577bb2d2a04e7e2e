{{/* Chart name, overridable. */}}
{{- define "datasync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release name, plus the chart name unless it already has it. */}}
{{- define "datasync.fullname" -}}
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

{{- define "datasync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the release, without a component. */}}
{{- define "datasync.commonLabels" -}}
helm.sh/chart: {{ include "datasync.chart" . }}
{{ include "datasync.instanceLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: datasync
{{- end }}

{{/* Labels of the operator and the objects serving it (RBAC, ServiceAccount, ...). */}}
{{- define "datasync.labels" -}}
{{ include "datasync.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "datasync.instanceLabels" -}}
app.kubernetes.io/name: {{ include "datasync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels that select the operator pod. */}}
{{- define "datasync.selectorLabels" -}}
{{ include "datasync.instanceLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "datasync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "datasync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image, "repository:tag", tag defaulting to the chart's appVersion. */}}
{{- define "datasync.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The sync Jobs' image: syncJob.image, else the operator's. */}}
{{- define "datasync.syncImage" -}}
{{- default (include "datasync.image" .) .Values.syncJob.image }}
{{- end }}

{{- define "datasync.metricsServiceName" -}}
{{- printf "%s-metrics" (include "datasync.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Hardened container security context, shared by the operator and the test pods. */}}
{{- define "datasync.containerSecurityContext" -}}
{{- toYaml .Values.securityContext }}
{{- end }}
