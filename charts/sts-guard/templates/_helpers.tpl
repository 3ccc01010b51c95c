{{/*
Names. With the release named sts-guard (the documented install) every
object has the name deploy/ gives it; another release name gets
"<release>-sts-guard", so two releases never share a cluster-scoped name.
*/}}
{{- define "sts-guard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "sts-guard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the serving certificate (and, managed, the CA). */}}
{{- define "sts-guard.tlsSecret" -}}
{{- if and (eq .Values.certificates.mode "existingSecret") .Values.certificates.existingSecret.name -}}
{{- .Values.certificates.existingSecret.name -}}
{{- else -}}
{{- printf "%s-tls" (include "sts-guard.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The host names the API server dials: the Service, short and long. */}}
{{- define "sts-guard.serviceHost" -}}
{{- printf "%s.%s.svc" (include "sts-guard.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/*
Labels Helm conventions add; nothing selects on them. The chart's drift test
removes exactly these four before comparing with deploy/.
*/}}
{{- define "sts-guard.helmLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* What the pods are selected by (immutable in a Deployment: never add to it). */}}
{{- define "sts-guard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sts-guard.name" . }}
app.kubernetes.io/component: webhook
{{- end -}}

{{/*
metadata.labels of every object: deploy/'s (name, part-of), Helm's, then
.Values.commonLabels. Call with (dict "ctx" $ "component" true) to add
app.kubernetes.io/component: webhook, as deploy/ does on the Deployment and
Service; (dict "ctx" $ "component" "audit") for the scheduled audit's.
*/}}
{{- define "sts-guard.labels" -}}
{{- $ctx := .ctx -}}
app.kubernetes.io/name: {{ include "sts-guard.name" $ctx }}
{{- if .component }}
app.kubernetes.io/component: {{ kindIs "string" .component | ternary .component "webhook" }}
{{- end }}
app.kubernetes.io/part-of: sts-guard
{{ include "sts-guard.helmLabels" $ctx }}
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* metadata.annotations of every object, when any. */}}
{{- define "sts-guard.annotations" -}}
{{- with .Values.commonAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The namespaceSelector both webhooks share. */}}
{{- define "sts-guard.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    # Never the control plane's namespaces (an outage must not block
    # cluster components), nor sts-guard's own (it must stay fixable),
    # nor those listed in webhooks.excludeNamespaces.
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values:
        {{- toYaml (concat (list "kube-system" "kube-public" "kube-node-lease" .Release.Namespace) .Values.webhooks.excludeNamespaces) | nindent 8 }}
    # Opt-out label on the NAMESPACE, settable only by whoever may label
    # namespaces (the platform team), never by a StatefulSet's owner.
    # Per-object exemptions live in the policy instead.
    - key: sts-guard.io/ignore
      operator: DoesNotExist
    {{- with .Values.webhooks.namespaceSelectorExpressions }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{/* clientConfig of a webhook: the Service, a path, the CA bundle if the chart knows it. */}}
{{- define "sts-guard.clientConfig" -}}
{{- $ctx := .ctx -}}
clientConfig:
  # In-cluster Service, port 443 -> pod 8443; the serving certificate
  # must name <service>.<namespace>.svc.
  service:
    namespace: {{ $ctx.Release.Namespace }}
    name: {{ include "sts-guard.fullname" $ctx }}
    path: {{ .path }}
    port: 443
  {{- if eq $ctx.Values.certificates.mode "existingSecret" }}
  caBundle: {{ required "certificates.existingSecret.caBundle (the PEM CA bundle that signed the Secret's certificate) is required with certificates.mode=existingSecret" $ctx.Values.certificates.existingSecret.caBundle | b64enc }}
  {{- end }}
{{- end -}}

{{/* Fails the render on a certificates.mode it does not know. */}}
{{- define "sts-guard.checkMode" -}}
{{- if not (has .Values.certificates.mode (list "managed" "certManager" "existingSecret")) -}}
{{- fail (printf "certificates.mode must be managed, certManager or existingSecret, not %q" .Values.certificates.mode) -}}
{{- end -}}
{{- end -}}

{{/* Fails the render on an auditReports.format it does not know. */}}
{{- define "sts-guard.checkAuditReports" -}}
{{- if not (has .Values.auditReports.format (list "openreports" "wgpolicyk8s")) -}}
{{- fail (printf "auditReports.format must be openreports or wgpolicyk8s, not %q" .Values.auditReports.format) -}}
{{- end -}}
{{- end -}}
