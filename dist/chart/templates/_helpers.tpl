{{/*
The prefix of every object's name: fullnameOverride, else the release name.
A release named "registry-auth" gets the names of the kustomize install
(config/default's namePrefix). At most 28 characters: the longest name,
"<prefix>-controller-manager-metrics-service", must fit a Service's 63.
*/}}
{{- define "registry-auth-operator.prefix" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 28 | trimSuffix "-" -}}
{{- end -}}

{{- define "registry-auth-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the pods: Deployment, Services, PDB, NetworkPolicies. */}}
{{- define "registry-auth-operator.selectorLabels" -}}
control-plane: controller-manager
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "registry-auth-operator.labels" -}}
{{ include "registry-auth-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "registry-auth-operator.chart" . }}
{{- end -}}

{{- define "registry-auth-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s-controller-manager" (include "registry-auth-operator.prefix" .)) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "registry-auth-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
