{{/*
Every workload the chart runs, as JSON {items: [{name, component, ports, networks, kafka,
clickhouse, pdb, headless, web}]}: the Services, PodDisruptionBudgets, NetworkPolicies and
the ServiceMonitor iterate over this one list, so that no stage is forgotten by one of
them. `ports` are the metrics ports (scraped, probed); `web` is a port people use (the
dashboard's page: {name, port, servicePort, from}), in the Service and the NetworkPolicy
but not scraped.
*/}}
{{- define "millstream.workloads" -}}
{{- $v := .Values }}
{{- $port := int $v.observability.port }}
{{- $out := list }}
{{- if $v.connectors.enabled }}
{{- range $w := (include "millstream.connectorWorkloads" . | fromJson).items }}
{{- $ports := list }}
{{- range $i, $_ := $w.sources }}
{{- $ports = append $ports (dict "name" (ternary "metrics" (printf "metrics-%d" $i) (eq $i 0)) "port" (add $port $i)) }}
{{- end }}
{{- $out = append $out (dict "name" (include "millstream.componentName" (dict "root" $ "suffix" $w.name))
    "component" "connector" "ports" $ports "networks" (default (list) $w.site.deviceNetworks)
    "clickhouse" false "pdb" $v.connectors.podDisruptionBudget) }}
{{- end }}
{{- end }}
{{- $one := list (dict "name" "metrics" "port" $port) }}
{{- if $v.workers.enabled }}
{{- $out = append $out (dict "name" (include "millstream.componentName" (dict "root" . "suffix" "worker"))
    "component" "worker" "ports" $one "networks" (list) "clickhouse" false
    "pdb" $v.workers.podDisruptionBudget "headless" (eq $v.workers.kind "StatefulSet")) }}
{{- end }}
{{- if $v.sink.enabled }}
{{- $out = append $out (dict "name" (include "millstream.componentName" (dict "root" . "suffix" "sink"))
    "component" "sink" "ports" $one "networks" (list) "clickhouse" true
    "pdb" $v.sink.podDisruptionBudget) }}
{{- end }}
{{- if $v.executor.enabled }}
{{- $out = append $out (dict "name" (include "millstream.componentName" (dict "root" . "suffix" "executor"))
    "component" "executor" "ports" $one
    "networks" (include "millstream.executorNetworks" . | fromJson).items
    "clickhouse" false "pdb" $v.executor.podDisruptionBudget) }}
{{- end }}
{{- if $v.dashboard.enabled }}
{{- $d := $v.dashboard }}
{{- $out = append $out (dict "name" (include "millstream.componentName" (dict "root" . "suffix" "dashboard"))
    "component" "dashboard" "ports" $one "networks" (list)
    "clickhouse" (eq (include "millstream.hasClickhouse" .) "true") "pdb" $d.podDisruptionBudget
    "web" (dict "name" "http" "port" (int $d.port) "servicePort" (int $d.service.port)
                "from" $d.networkPolicy.from)) }}
{{- end }}
{{- toJson (dict "items" $out) }}
{{- end }}
