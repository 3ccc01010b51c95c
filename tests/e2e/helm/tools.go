//go:build tools

// Package tools pins the helm main package in this wrapper module so that
// `go mod tidy` keeps every module it needs in go.mod/go.sum. It is never
// compiled; build-helm.sh runs `go build helm.sh/helm/v3/cmd/helm` from this
// directory.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
