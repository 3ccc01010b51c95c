//go:build tools

// Package tools pins the kube-apiserver main package in this wrapper module
// so that `go mod tidy` keeps every module it needs in go.mod/go.sum. It is
// never compiled; build-control-plane.sh runs
// `go build k8s.io/kubernetes/cmd/kube-apiserver` from this directory.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
