/*
Copyright 2026 The registry-auth-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package utils

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// BuildBinary builds bin/registry-auth's command (./cmd) into a new
// temporary directory for tests that run the real binary. Call cleanup when
// done (from TestMain, after m.Run).
func BuildBinary() (path string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "registry-auth-bin-")
	if err != nil {
		return "", nil, err
	}
	cleanup = func() { _ = os.RemoveAll(dir) }
	path = filepath.Join(dir, "registry-auth")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go") //nolint:staticcheck // a test binary runs where it was built: this is the go that built it, whatever PATH holds
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	build := exec.Command(goTool, "build", "-o", path, ModulePath+"/cmd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("building registry-auth: %w", err)
	}
	return path, cleanup, nil
}

var recordOnce sync.Once

// RecordModuleSources looks at every Go source of the module, and go.mod and
// go.sum, once per test process. A test that runs the binary as a child
// process does not link the product code it exercises, so go test would
// replay a cached result after the product changed; go test reruns a test
// when a file it looked at inside the module changes (it records them from
// m.Run on, so call this from a test, not TestMain).
func RecordModuleSources(tb testing.TB) {
	recordOnce.Do(func() {
		root := RepoRoot()
		err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if d.IsDir() {
				if path != root && (strings.HasPrefix(name, ".") || name == "bin" || name == "testdata") {
					return filepath.SkipDir
				}
				return nil
			}
			if strings.HasSuffix(name, ".go") || name == "go.mod" || name == "go.sum" {
				_, err = os.Stat(path)
			}
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
	})
}

// FreeAddr returns a 127.0.0.1 address nothing listens on right now.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}
