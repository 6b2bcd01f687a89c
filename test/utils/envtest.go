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

// Package utils holds helpers shared by the repository's tests and local
// tooling: finding the repository root and the locally built control plane
// (bin/k8s, made by `make envtest`), and a preconfigured envtest.Environment.
package utils

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ModulePath is the root module's path, as written in <root>/go.mod.
const ModulePath = "github.com/registryauth/registry-auth-operator"

// AssetsEnv is the environment variable that overrides the directory holding
// etcd, kube-apiserver and kubectl (the same one envtest reads).
const AssetsEnv = "KUBEBUILDER_ASSETS"

// RepoRoot returns the repository root: the nearest directory, walking up from
// the working directory, whose go.mod declares ModulePath. If the working
// directory is outside the repository it walks up from this source file. It
// panics if neither finds the root.
func RepoRoot() string {
	root, err := FindRepoRoot()
	if err != nil {
		panic(err)
	}
	return root
}

// FindRepoRoot is RepoRoot returning an error instead of panicking.
func FindRepoRoot() (string, error) {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	// Without -trimpath this is the absolute path of this file.
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	for _, start := range starts {
		for dir := start; ; dir = filepath.Dir(dir) {
			if modulePathOf(filepath.Join(dir, "go.mod")) == ModulePath {
				return dir, nil
			}
			if parent := filepath.Dir(dir); parent == dir {
				break
			}
		}
	}
	return "", fmt.Errorf("repository root not found: no go.mod declaring module %s above %v", ModulePath, starts)
}

// modulePathOf returns the module path a go.mod declares, or "".
func modulePathOf(gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// BinaryAssetsDir returns the directory holding etcd, kube-apiserver and
// kubectl: $KUBEBUILDER_ASSETS if set, else <root>/bin/k8s. It panics with a
// hint to run `make envtest` if kube-apiserver is not there.
func BinaryAssetsDir() string {
	dir, err := FindBinaryAssetsDir()
	if err != nil {
		panic(err)
	}
	return dir
}

// FindBinaryAssetsDir is BinaryAssetsDir returning an error instead of
// panicking.
func FindBinaryAssetsDir() (string, error) {
	dir := os.Getenv(AssetsEnv)
	if dir == "" {
		root, err := FindRepoRoot()
		if err != nil {
			return "", err
		}
		dir = filepath.Join(root, "bin", "k8s")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(abs, name)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return "", fmt.Errorf("%s not found in %s: run `make envtest` in the repository root "+
					"to build the local control plane (first build ~10 min)", name, abs)
			}
			return "", err
		}
	}
	return abs, nil
}

// KubectlPath returns the path of the locally built kubectl.
func KubectlPath() string {
	return filepath.Join(BinaryAssetsDir(), "kubectl")
}

// NewEnvironment returns an envtest.Environment that runs the locally built
// etcd and kube-apiserver and installs the CRDs from <root>/config/crd/bases.
// Call Start and, when done, Stop. It panics if the binaries are missing.
//
// On Linux, etcd and kube-apiserver are tied to the calling process: they are
// killed when it dies, also when a test panics, times out or is killed, so no
// control plane outlives its test binary.
func NewEnvironment() *envtest.Environment {
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: BinaryAssetsDir(),
		// Several test packages may start a control plane at once on a small
		// machine; the envtest default (20s) is tight for that.
		ControlPlaneStartTimeout: 90 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	tieControlPlaneToProcess(env)
	return env
}

// StartControlPlane starts a control plane (NewEnvironment) for one test,
// stops it when the test ends, and writes a kubeconfig of an admin user
// (system:masters) for kubectl and the binary. It returns the environment
// and the kubeconfig's path.
func StartControlPlane(tb testing.TB) (*envtest.Environment, string) {
	tb.Helper()
	if _, err := FindBinaryAssetsDir(); err != nil {
		tb.Fatal(err) // says to run `make envtest`
	}
	env := NewEnvironment()
	start := time.Now()
	if _, err := env.Start(); err != nil {
		tb.Fatalf("starting envtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := env.Stop(); err != nil {
			tb.Logf("stopping envtest: %v", err)
		}
	})
	tb.Logf("control plane started in %v", time.Since(start).Round(time.Millisecond))
	admin, err := env.AddUser(envtest.User{Name: "test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		tb.Fatal(err)
	}
	kubeconfig := filepath.Join(tb.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		tb.Fatal(err)
	}
	return env, kubeconfig
}
