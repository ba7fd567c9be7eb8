{{/*
Checks that need more than one value, which values.schema.json cannot express. Each
failure is one sentence: the value, why it is wrong, and what to do.
*/}}
{{- define "millstream.validate" -}}
{{- $v := .Values }}
{{- $parts := int $v.kafka.partitions.readings }}

{{- /* workers: a consumer group gives each partition to one member */}}
{{- if and $v.workers.enabled (not $v.workers.autoscaling.enabled) (gt (int $v.workers.replicas) $parts) }}
{{- fail (printf "workers.replicas is %d but kafka.partitions.readings is %d: a consumer group gives each partition to one worker, so %d workers would sit idle. Lower workers.replicas, or add partitions to the readings topic and raise kafka.partitions.readings." (int $v.workers.replicas) $parts (sub (int $v.workers.replicas) $parts)) }}
{{- end }}
{{- if and $v.sink.enabled (gt (int $v.sink.replicas) $parts) }}
{{- fail (printf "sink.replicas is %d but kafka.partitions.readings is %d: the sinks share the readings partitions as one consumer group, so %d would sit idle. Lower sink.replicas, or add partitions." (int $v.sink.replicas) $parts (sub (int $v.sink.replicas) $parts)) }}
{{- end }}
{{- with $v.workers.autoscaling }}
{{- if and $v.workers.enabled .enabled }}
{{- if gt (int .maxReplicas) $parts }}
{{- fail (printf "workers.autoscaling.maxReplicas is %d but kafka.partitions.readings is %d: workers past the partition count get no work. Set maxReplicas to %d or less." (int .maxReplicas) $parts $parts) }}
{{- end }}
{{- if gt (int .minReplicas) (int .maxReplicas) }}
{{- fail (printf "workers.autoscaling.minReplicas (%d) is above maxReplicas (%d): raise maxReplicas or lower minReplicas." (int .minReplicas) (int .maxReplicas)) }}
{{- end }}
{{- end }}
{{- end }}

{{- /* Kafka security: the protocol, the mechanism and the credentials go together */}}
{{- $proto := $v.kafka.securityProtocol }}
{{- $sasl := hasPrefix "SASL_" $proto }}
{{- if and $sasl (not $v.kafka.sasl.mechanism) }}
{{- fail (printf "kafka.securityProtocol is %s but kafka.sasl.mechanism is empty: set it to PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512." $proto) }}
{{- end }}
{{- if and $sasl (not (include "millstream.hasSasl" .)) }}
{{- fail (printf "kafka.securityProtocol is %s but no SASL credentials are given: set kafka.sasl.username and kafka.sasl.password, or kafka.sasl.existingSecret." $proto) }}
{{- end }}
{{- if and $v.kafka.sasl.username (not $v.kafka.sasl.existingSecret) (not $v.kafka.sasl.password) }}
{{- fail "kafka.sasl.username is set but kafka.sasl.password is empty: set the password, or name a Secret in kafka.sasl.existingSecret." }}
{{- end }}
{{- if and (not $sasl) (or (include "millstream.hasSasl" .) $v.kafka.sasl.mechanism) }}
{{- fail (printf "kafka.sasl is configured but kafka.securityProtocol is %q: SASL credentials are only sent with SASL_SSL or SASL_PLAINTEXT; set kafka.securityProtocol." $proto) }}
{{- end }}
{{- if and (include "millstream.hasKafkaTls" .) (not (has $proto (list "SSL" "SASL_SSL"))) }}
{{- fail (printf "kafka.tls has a CA but kafka.securityProtocol is %q: TLS is used only with SSL or SASL_SSL; set kafka.securityProtocol." $proto) }}
{{- end }}

{{- /* settings go into a ConfigMap: nothing secret there */}}
{{- range $key, $_ := $v.settings }}
{{- if regexMatch "PASSWORD|SECRET|TOKEN|_DSN$|PRIVATE_KEY" $key }}
{{- fail (printf "settings.%s looks like a secret, and settings are stored in a ConfigMap: use kafka.sasl.password, clickhouse.dsn, opcua.env or commandSigning (each has an existingSecret) instead." $key) }}
{{- end }}
{{- end }}

{{- /* ClickHouse: the sink needs a server */}}
{{- if and $v.sink.enabled (not $v.clickhouse.dsn) (not $v.clickhouse.existingSecret) }}
{{- fail "the sink is enabled but neither clickhouse.dsn nor clickhouse.existingSecret is set: give the ClickHouse server's DSN, http(s)://user:password@host:port/db." }}
{{- end }}

{{- /* the dashboard: its page and its metrics on two ports; an Ingress needs a host and,
with NetworkPolicies, a peer allowed to the page */}}
{{- with $v.dashboard }}
{{- if .enabled }}
{{- if eq (int .port) (int $v.observability.port) }}
{{- fail (printf "dashboard.port is %d, the same as observability.port: the dashboard serves its page there and health and metrics on observability.port. Pick another dashboard.port (default 8080)." (int .port)) }}
{{- end }}
{{- if and .ingress.enabled (not .ingress.hosts) }}
{{- fail "dashboard.ingress.enabled is true but dashboard.ingress.hosts is empty: name the host(s) operators open, e.g. hosts: [{host: millstream.plant.example.com}]." }}
{{- end }}
{{- if and .ingress.enabled $v.networkPolicy.enabled (not .networkPolicy.from) }}
{{- fail "dashboard.ingress.enabled is true but dashboard.networkPolicy.from is empty: with networkPolicy.enabled no ingress controller could reach the page. Select your ingress controller's pods, e.g. from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}}]." }}
{{- end }}
{{- end }}
{{- end }}

{{- /* OPC-UA: a certificate without its key, or the reverse */}}
{{- with $v.opcua.pki.own }}
{{- if and (not .existingSecret) (ne (empty .certificateDer) (empty .privateKey)) }}
{{- fail "opcua.pki.own needs both certificateDer and privateKey (or existingSecret): a client certificate is useless without its key." }}
{{- end }}
{{- end }}

{{- /* connectors: one process per source, sources and sites named once */}}
{{- $catalogSources := list }}
{{- range $s := (default (list) $v.catalog.plant.sources) }}
{{- $catalogSources = append $catalogSources $s.name }}
{{- end }}
{{- $seenSources := dict }}
{{- $seenSites := dict }}
{{- range $site := $v.connectors.sites }}
{{- if hasKey $seenSites $site.name }}
{{- fail (printf "connectors.sites: site %q is listed twice; give each site one entry." $site.name) }}
{{- end }}
{{- $_ := set $seenSites $site.name true }}
{{- range $src := $site.sources }}
{{- if hasKey $seenSources $src.name }}
{{- fail (printf "connectors.sites: source %q is listed in sites %q and %q; one connector per source, or the readings would be published twice." $src.name (get $seenSources $src.name) $site.name) }}
{{- end }}
{{- $_ := set $seenSources $src.name $site.name }}
{{- if and $catalogSources (not (has $src.name $catalogSources)) }}
{{- fail (printf "connectors.sites[%s]: source %q is not in the catalog (catalog.plant.sources: %s); add it to the catalog or fix the name." $site.name $src.name (join ", " $catalogSources)) }}
{{- end }}
{{- end }}
{{- if and $v.connectors.enabled $v.networkPolicy.enabled (not $site.deviceNetworks) }}
{{- fail (printf "connectors.sites[%s] has no deviceNetworks: with networkPolicy.enabled its connectors could reach no device. List the PLCs' networks, e.g. deviceNetworks: [{cidr: 10.0.3.0/24, ports: [4840]}]." $site.name) }}
{{- end }}
{{- end }}
{{- range $name, $_ := $v.executor.endpoints }}
{{- if and $catalogSources (not (has $name $catalogSources)) }}
{{- fail (printf "executor.endpoints: %q is not a source of the catalog (%s)." $name (join ", " $catalogSources)) }}
{{- end }}
{{- end }}
{{- end }}
