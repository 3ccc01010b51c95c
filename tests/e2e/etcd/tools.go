//go:build tools

// Package tools pins the etcd main package (in etcd 3.5+ the root of
// go.etcd.io/etcd/server/v3 is `package main`) in this wrapper module so
// that `go mod tidy` keeps every module it needs in go.mod/go.sum. It is
// never compiled; build-control-plane.sh runs
// `go build go.etcd.io/etcd/server/v3` from this directory.
package tools

import _ "go.etcd.io/etcd/server/v3"
