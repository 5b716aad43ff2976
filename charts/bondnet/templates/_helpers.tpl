{{/* Name prefix of every object: the release name, or "bondnet" when the release is called that. */}}
{{- define "bondnet.fullname" -}}
{{- if eq .Release.Name "bondnet" -}}bondnet{{- else -}}{{ printf "%s-bondnet" .Release.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "bondnet.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "bondnet.labels" -}}
app.kubernetes.io/name: bondnet
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "bondnet.selector" -}}
app.kubernetes.io/name: bondnet
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The pods each agent restarts on its node when the node's device-plugin config changes. */}}
{{- define "bondnet.devicePluginSelector" -}}
{{- if .Values.devicePlugin.podSelector -}}
{{ .Values.devicePlugin.podSelector }}
{{- else if .Values.devicePlugin.enabled -}}
app.kubernetes.io/instance={{ .Release.Name }},app.kubernetes.io/component=device-plugin
{{- end -}}
{{- end -}}

{{- define "bondnet.webhookName" -}}{{ include "bondnet.fullname" . }}-webhook{{- end -}}

{{/* A restricted container security context: no privilege, nothing added, read-only root. */}}
{{- define "bondnet.restricted" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}
