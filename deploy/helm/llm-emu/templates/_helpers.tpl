{{/* The chart name, at most 63 characters (a DNS label). */}}
{{- define "llm-emu.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource names: the release name, suffixed with the chart name unless it already holds it. */}}
{{- define "llm-emu.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The labels the Service and the Deployment select on; never change across upgrades. */}}
{{- define "llm-emu.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-emu.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every resource of the chart. */}}
{{- define "llm-emu.labels" -}}
{{ include "llm-emu.selectorLabels" . }}
app.kubernetes.io/component: model-server
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* The model id as a label value: lower case, "/" and "." made "-", at most 63 characters. */}}
{{- define "llm-emu.modelLabel" -}}
{{- $m := .Values.llmd.modelLabel | default .Values.model | lower -}}
{{- $m = regexReplaceAll "[^a-z0-9-]" $m "-" -}}
{{- $m | trunc 63 | trimAll "-" -}}
{{- end }}

{{/* Labels of the pods: the selector's, llm-d's and production-stack's `model`. */}}
{{- define "llm-emu.podLabels" -}}
{{ include "llm-emu.labels" . }}
model: {{ include "llm-emu.modelLabel" . }}
{{- if .Values.llmd.enabled }}
llm-d.ai/inference-serving: "true"
llm-d.ai/inferenceServing: "true"
llm-d.ai/model: {{ include "llm-emu.modelLabel" . }}
{{- with .Values.llmd.role }}
llm-d.ai/role: {{ . }}
{{- end }}
{{- end }}
{{- with .Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* `llm-emu serve` arguments, as a YAML list: the model, then one flag per set value. */}}
{{- define "llm-emu.args" -}}
- serve
- {{ required "model is required" .Values.model | quote }}
- --host
- "0.0.0.0"
- --port
- {{ .Values.containerPort | quote }}
{{- with .Values.servedModelName }}
- --served-model-name
{{- range . }}
- {{ . | quote }}
{{- end }}
{{- end }}
{{- with .Values.tokenizer }}
- --tokenizer
- {{ . | quote }}
{{- end }}
{{- with .Values.gpu }}
- --gpu
- {{ . | quote }}
{{- end }}
{{- with .Values.latency }}
- --latency
- {{ . | quote }}
{{- end }}
- --tensor-parallel-size
- {{ .Values.tensorParallelSize | int | quote }}
- --data-parallel-size
- {{ .Values.dataParallelSize | int | quote }}
{{- if not (kindIs "invalid" .Values.maxNumSeqs) }}
- --max-num-seqs
- {{ .Values.maxNumSeqs | int | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.maxModelLen) }}
- --max-model-len
- {{ .Values.maxModelLen | int | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.gpuMemoryUtilization) }}
- --gpu-memory-utilization
- {{ .Values.gpuMemoryUtilization | toString | quote }}
{{- end }}
{{- range .Values.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
