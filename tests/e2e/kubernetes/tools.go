//go:build tools

// Package tools pins the main packages of the control plane in this wrapper
// module so that `go mod tidy` keeps every module they need in
// go.mod/go.sum. It is never compiled; build-control-plane.sh runs
// `go build k8s.io/kubernetes/cmd/<name>` for each from this directory.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
