{{/* Names and labels, used by every template. */}}

{{- define "modelzoo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelzoo.fullname" -}}
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

{{- define "modelzoo.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "modelzoo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelzoo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "modelzoo.labels" -}}
helm.sh/chart: {{ include "modelzoo.chart" . }}
{{ include "modelzoo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: modelzoo
{{- end }}

{{- define "modelzoo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelzoo.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The project image (operator, and model servers unless overridden). */}}
{{- define "modelzoo.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "modelzoo.modelImage" -}}
{{- default (include "modelzoo.image" .) .Values.models.image }}
{{- end }}

{{- define "modelzoo.gpuImage" -}}
{{- default (printf "%s-gpu" (include "modelzoo.image" .)) .Values.models.gpuImage }}
{{- end }}

{{- define "modelzoo.peeringName" -}}
{{- default (include "modelzoo.fullname" .) .Values.peering.name }}
{{- end }}

{{/* The container security context every pod of the chart uses (PSS restricted). */}}
{{- define "modelzoo.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "modelzoo.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}
