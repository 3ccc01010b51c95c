//go:build tools

// Package tools pins the promtool main package in this wrapper module so
// that `go mod tidy` keeps every module it needs in go.mod/go.sum. It is
// never compiled; build-promtool.sh runs `go build
// github.com/prometheus/prometheus/cmd/promtool` from this directory.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
