{{/*
Names, labels, and the pieces every stage's pod shares: the container (env, probes,
security context, mounts) and the volumes. Each stage's template only says its command.
*/}}

{{- define "millstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "millstream.fullname" -}}
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

{{/* A component's resource name: fullname-suffix, within the 63 characters of a label. */}}
{{- define "millstream.componentName" -}}
{{- printf "%s-%s" (include "millstream.fullname" .root) .suffix | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "millstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of objects that are no workload's own (ConfigMaps, Secrets, ...). */}}
{{- define "millstream.labels" -}}
app.kubernetes.io/name: {{ include "millstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "millstream.commonLabels" . }}
{{- end }}

{{/* Labels of a workload's objects, next to its selector labels. */}}
{{- define "millstream.commonLabels" -}}
helm.sh/chart: {{ include "millstream.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: millstream
{{- end }}

{{/* Selector labels of one workload: dict root, component, instance (the workload's name). */}}
{{- define "millstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "millstream.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
millstream.io/workload: {{ .workload }}
{{- end }}

{{- define "millstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "millstream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "millstream.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* What is configured: each returns "true" or "". */}}
{{- define "millstream.hasCatalog" -}}
{{- if or .Values.catalog.plant .Values.catalog.existingConfigMap }}true{{ end }}
{{- end }}
{{- define "millstream.hasSasl" -}}
{{- if or .Values.kafka.sasl.username .Values.kafka.sasl.existingSecret }}true{{ end }}
{{- end }}
{{- define "millstream.hasKafkaTls" -}}
{{- if or .Values.kafka.tls.caCert .Values.kafka.tls.existingSecret }}true{{ end }}
{{- end }}
{{- define "millstream.hasOpcuaEnv" -}}
{{- if or .Values.opcua.env .Values.opcua.existingSecret }}true{{ end }}
{{- end }}
{{- define "millstream.hasOpcuaOwn" -}}
{{- with .Values.opcua.pki.own }}{{ if or .certificateDer .existingSecret }}true{{ end }}{{ end }}
{{- end }}
{{- define "millstream.hasOpcuaTrusted" -}}
{{- if or .Values.opcua.pki.trusted .Values.opcua.pki.trustedExistingSecret }}true{{ end }}
{{- end }}
{{- define "millstream.hasClickhouse" -}}
{{- if or .Values.clickhouse.dsn .Values.clickhouse.existingSecret }}true{{ end }}
{{- end }}
{{- define "millstream.hasSigning" -}}
{{- with .Values.commandSigning }}{{ if or .privateKey .publicKey .operatorKeys .existingSecret }}true{{ end }}{{ end }}
{{- end }}

{{/* Secret names: the user's existing Secret, or the one this chart makes. */}}
{{- define "millstream.kafkaSaslSecret" -}}
{{- default (printf "%s-kafka-sasl" (include "millstream.fullname" .)) .Values.kafka.sasl.existingSecret }}
{{- end }}
{{- define "millstream.kafkaTlsSecret" -}}
{{- default (printf "%s-kafka-tls" (include "millstream.fullname" .)) .Values.kafka.tls.existingSecret }}
{{- end }}
{{- define "millstream.clickhouseSecret" -}}
{{- default (printf "%s-clickhouse" (include "millstream.fullname" .)) .Values.clickhouse.existingSecret }}
{{- end }}
{{- define "millstream.opcuaEnvSecret" -}}
{{- default (printf "%s-opcua-env" (include "millstream.fullname" .)) .Values.opcua.existingSecret }}
{{- end }}
{{- define "millstream.opcuaOwnSecret" -}}
{{- default (printf "%s-opcua-own" (include "millstream.fullname" .)) .Values.opcua.pki.own.existingSecret }}
{{- end }}
{{- define "millstream.opcuaTrustedSecret" -}}
{{- default (printf "%s-opcua-trusted" (include "millstream.fullname" .)) .Values.opcua.pki.trustedExistingSecret }}
{{- end }}
{{- define "millstream.signingSecret" -}}
{{- default (printf "%s-command-signing" (include "millstream.fullname" .)) .Values.commandSigning.existingSecret }}
{{- end }}
{{- define "millstream.catalogConfigMap" -}}
{{- default (printf "%s-catalog" (include "millstream.fullname" .)) .Values.catalog.existingConfigMap }}
{{- end }}

{{/*
One stage's container. dict:
  root, name, args (list), port, portName, extraPorts (list of {name, port}: more than
  the metrics port, e.g. the dashboard's page), resources, extraEnv,
  clickhouse, opcua, signing ("private" or "public"): what this stage may see.
*/}}
{{- define "millstream.container" -}}
{{- $root := .root }}
{{- $v := $root.Values -}}
- name: {{ .name }}
  image: {{ include "millstream.image" $root | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args:
    {{- toYaml .args | nindent 4 }}
  ports:
    - name: {{ .portName }}
      containerPort: {{ .port }}
      protocol: TCP
    {{- range $p := .extraPorts }}
    - name: {{ $p.name }}
      containerPort: {{ $p.port }}
      protocol: TCP
    {{- end }}
  envFrom:
    - configMapRef:
        name: {{ include "millstream.fullname" $root }}-env
    {{- if and .opcua (include "millstream.hasOpcuaEnv" $root) }}
    - secretRef:
        name: {{ include "millstream.opcuaEnvSecret" $root }}
    {{- end }}
  env:
    - name: MILLSTREAM_METRICS_PORT
      value: {{ .port | quote }}
    - name: MILLSTREAM_METRICS_HOST      # probes and Prometheus come from outside the pod
      value: "0.0.0.0"
    {{- if include "millstream.hasSasl" $root }}
    {{- if and $v.kafka.sasl.existingSecret $v.kafka.sasl.username }}
    - name: MILLSTREAM_KAFKA_SASL_USERNAME   # a Strimzi KafkaUser Secret holds only the password
      value: {{ $v.kafka.sasl.username | quote }}
    {{- else }}
    - name: MILLSTREAM_KAFKA_SASL_USERNAME
      valueFrom:
        secretKeyRef:
          name: {{ include "millstream.kafkaSaslSecret" $root }}
          key: {{ $v.kafka.sasl.usernameKey }}
    {{- end }}
    - name: MILLSTREAM_KAFKA_SASL_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ include "millstream.kafkaSaslSecret" $root }}
          key: {{ $v.kafka.sasl.passwordKey }}
    {{- end }}
    {{- if .clickhouse }}
    - name: MILLSTREAM_CLICKHOUSE_DSN
      valueFrom:
        secretKeyRef:
          name: {{ include "millstream.clickhouseSecret" $root }}
          key: {{ $v.clickhouse.dsnKey }}
    {{- end }}
    {{- if and (eq (toString .signing) "private") (include "millstream.hasSigning" $root) }}
    - name: MILLSTREAM_COMMAND_SIGNER
      value: {{ $v.commandSigning.signer | quote }}
    - name: MILLSTREAM_COMMAND_SIGNING_KEY_FILE
      value: /etc/millstream/signing/private.pem
    {{- end }}
    {{- if and (eq (toString .signing) "public") (include "millstream.hasSigning" $root) }}
    - name: MILLSTREAM_COMMAND_TRUSTED_KEYS_DIR   # <signer>.pub per trusted signer
      value: /etc/millstream/signing
    {{- end }}
    {{- with .extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  livenessProbe:
    httpGet:
      path: {{ $v.observability.livenessProbe.path }}
      port: {{ .portName }}
    initialDelaySeconds: {{ $v.observability.livenessProbe.initialDelaySeconds }}
    periodSeconds: {{ $v.observability.livenessProbe.periodSeconds }}
    timeoutSeconds: {{ $v.observability.livenessProbe.timeoutSeconds }}
    failureThreshold: {{ $v.observability.livenessProbe.failureThreshold }}
  readinessProbe:
    httpGet:
      path: {{ $v.observability.readinessProbe.path }}
      port: {{ .portName }}
    initialDelaySeconds: {{ $v.observability.readinessProbe.initialDelaySeconds }}
    periodSeconds: {{ $v.observability.readinessProbe.periodSeconds }}
    timeoutSeconds: {{ $v.observability.readinessProbe.timeoutSeconds }}
    failureThreshold: {{ $v.observability.readinessProbe.failureThreshold }}
  resources:
    {{- toYaml .resources | nindent 4 }}
  securityContext:
    {{- toYaml $v.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    - name: data
      mountPath: {{ $v.dataDir }}
    {{- if include "millstream.hasCatalog" $root }}
    - name: catalog
      mountPath: /etc/millstream/catalog
      readOnly: true
    {{- end }}
    {{- if include "millstream.hasKafkaTls" $root }}
    - name: kafka-tls
      mountPath: /etc/millstream/kafka-tls
      readOnly: true
    {{- end }}
    {{- if and .opcua (include "millstream.hasOpcuaOwn" $root) }}
    - name: opcua-own
      mountPath: {{ $v.dataDir }}/pki/opcua/own
      readOnly: true
    {{- end }}
    {{- if and .opcua (include "millstream.hasOpcuaTrusted" $root) }}
    - name: opcua-trusted
      mountPath: {{ $v.dataDir }}/pki/opcua/trusted
      readOnly: true
    {{- end }}
    {{- if and .signing (include "millstream.hasSigning" $root) }}
    - name: signing
      mountPath: /etc/millstream/signing
      readOnly: true
    {{- end }}
{{- end }}

{{/* The pod's volumes. dict: root, opcua, signing ("private"/"public"/""). */}}
{{- define "millstream.volumes" -}}
{{- $root := .root }}
{{- $v := $root.Values -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ $v.volumes.tmpSizeLimit }}
- name: data
  emptyDir:
    sizeLimit: {{ $v.volumes.dataSizeLimit }}
{{- if include "millstream.hasCatalog" $root }}
- name: catalog
  configMap:
    name: {{ include "millstream.catalogConfigMap" $root }}
{{- end }}
{{- if include "millstream.hasKafkaTls" $root }}
- name: kafka-tls
  secret:
    secretName: {{ include "millstream.kafkaTlsSecret" $root }}
    defaultMode: 0440
    items:
      - key: {{ $v.kafka.tls.caKey }}
        path: ca.crt
{{- end }}
{{- if and .opcua (include "millstream.hasOpcuaOwn" $root) }}
- name: opcua-own
  secret:
    secretName: {{ include "millstream.opcuaOwnSecret" $root }}
    defaultMode: 0440
    items:
      - {key: cert.der, path: cert.der}
      - {key: private_key.pem, path: private_key.pem}
{{- end }}
{{- if and .opcua (include "millstream.hasOpcuaTrusted" $root) }}
- name: opcua-trusted
  secret:
    secretName: {{ include "millstream.opcuaTrustedSecret" $root }}
    defaultMode: 0444
{{- end }}
{{- if and .signing (include "millstream.hasSigning" $root) }}
- name: signing
  secret:
    secretName: {{ include "millstream.signingSecret" $root }}
    defaultMode: 0440
    items:
      {{- if eq .signing "private" }}
      - {key: private.pem, path: private.pem}
      {{- else }}
      - {key: public.pem, path: {{ printf "%s.pub" $v.commandSigning.signer | quote }}}
      {{- range $id, $_ := $v.commandSigning.operatorKeys }}
      - {key: {{ printf "%s.pub" $id | quote }}, path: {{ printf "%s.pub" $id | quote }}}
      {{- end }}
      {{- end }}
{{- end }}
{{- end }}

{{/*
A stage's pod template. dict: root, component, workload, containers (rendered YAML list),
volumes (rendered YAML list), extraLabels, nodeSelector, tolerations, affinity.
*/}}
{{- define "millstream.podTemplate" -}}
{{- $root := .root }}
{{- $v := $root.Values -}}
metadata:
  labels:
    {{- include "millstream.commonLabels" $root | nindent 4 }}
    {{- include "millstream.selectorLabels" . | nindent 4 }}
    {{- with .extraLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    checksum/secrets: {{ include (print $root.Template.BasePath "/secrets.yaml") $root | sha256sum }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "millstream.serviceAccountName" $root }}
  automountServiceAccountToken: false
  {{- with $v.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml $v.podSecurityContext | nindent 4 }}
  containers:
    {{- .containers | nindent 4 }}
  volumes:
    {{- .volumes | nindent 4 }}
  {{- with (default $v.nodeSelector .nodeSelector) }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with (default $v.tolerations .tolerations) }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with (default $v.affinity .affinity) }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* The connector workloads: a list of {name, site, sources, deviceNetworks, ...}. */}}
{{- define "millstream.connectorWorkloads" -}}
{{- $out := list }}
{{- range $site := .Values.connectors.sites }}
{{- if eq $.Values.connectors.deployment "perSite" }}
{{- $out = append $out (dict "name" (printf "connect-%s" $site.name) "site" $site "sources" $site.sources) }}
{{- else }}
{{- range $src := $site.sources }}
{{- $out = append $out (dict "name" (printf "connect-%s" $src.name) "site" $site "sources" (list $src)) }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson (dict "items" $out) }}
{{- end }}

{{/* Every site's device networks, for the executor when it names none of its own. */}}
{{- define "millstream.executorNetworks" -}}
{{- $nets := .Values.executor.deviceNetworks }}
{{- if not $nets }}
{{- range $site := .Values.connectors.sites }}
{{- $nets = concat $nets (default (list) $site.deviceNetworks) }}
{{- end }}
{{- end }}
{{- toJson (dict "items" $nets) }}
{{- end }}
