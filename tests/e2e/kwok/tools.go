//go:build tools

// Package tools pins the kwok main package in this wrapper module so that
// `go mod tidy` keeps every module it needs in go.mod/go.sum. It is never
// compiled; build-kwok.sh runs `go build sigs.k8s.io/kwok/cmd/kwok` from
// this directory.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
