//go:build tools

// Package tools pins the lint tools' versions in this module's go.mod.
package tools

import (
	_ "github.com/golangci/golangci-lint/v2/cmd/golangci-lint"
)
