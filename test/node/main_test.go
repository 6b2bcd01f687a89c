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

// Package node is the real-node suite: the product as pods on a real
// single-node Kubernetes (test/utils/realnode: kubelet, containerd, runc,
// bridge CNI, kube-proxy in nftables mode, all inside namespaces of its
// own), installed from dist/install.yaml and, separately, from the Helm
// chart, with the image make image builds (hack/build-image.sh).
//
// It needs root, the Debian packages hack/provision.sh --node installs and
// the binaries of make envtest and make node; without them every test skips
// with the reason (and fails with CI=true). make test-node runs it; make
// test runs it when it can.
package node

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/registryauth/registry-auth-operator/test/utils"
	"github.com/registryauth/registry-auth-operator/test/utils/realnode"
)

const (
	image      = "localhost/registry-auth:dev"
	pauseImage = "localhost/registry-auth-pause:dev"
)

var (
	root    string
	cluster *realnode.Cluster
	// skipReason is why the suite cannot run here; every test skips with
	// it (fails under CI=true).
	skipReason string
	// report collects the measurements for results.md.
	report = &results{}
)

func isCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// requireNode skips (fails with CI=true) when there is no node.
func requireNode(t *testing.T) {
	t.Helper()
	if skipReason == "" {
		return
	}
	if isCI() {
		t.Fatalf("CI=true, nothing may be skipped: the real-node suite cannot run: %s", skipReason)
	}
	t.Skipf("the real-node suite cannot run: %s", skipReason)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "test/node: "+format+"\n", args...)
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	suiteStart := time.Now()
	var err error
	if root, err = utils.FindRepoRoot(); err != nil {
		logf("%v", err)
		return 1
	}
	if err := realnode.Usable(); err != nil {
		skipReason = err.Error()
	} else if _, err := realnode.FindBinaries(root); err != nil {
		skipReason = strings.ReplaceAll(err.Error(), "\n", "; ")
	}
	if skipReason != "" {
		logf("skipping: %s", skipReason)
		return m.Run()
	}

	// Images of the code as it is now (a few seconds when the build cache
	// is warm).
	imgDir := filepath.Join(root, "bin", "image")
	start := time.Now()
	build := exec.Command(filepath.Join(root, "hack", "build-image.sh"), imgDir)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	build.Env = append(os.Environ(), "IMG="+image, "PAUSE_IMG="+pauseImage)
	if err := build.Run(); err != nil {
		logf("hack/build-image.sh: %v", err)
		return 1
	}
	report.add("images built (hack/build-image.sh)", time.Since(start))

	// Torn down however the run ends: normally, on SIGINT/SIGTERM, or 30s
	// before go test's -timeout would kill the binary without running any
	// deferred function. What a SIGKILL leaves, the next Start cleans up.
	// The components' logs (and the API server's audit log) are kept in
	// bin/test-node/logs when the suite fails or is interrupted.
	var stopOnce sync.Once
	stop := func(keepLogs bool) {
		stopOnce.Do(func() {
			if cluster == nil {
				return
			}
			t := time.Now()
			if keepLogs {
				logs := filepath.Join(root, "bin", "test-node", "logs")
				if err := cluster.CopyLogs(logs); err != nil {
					logf("keeping the logs: %v", err)
				} else {
					logf("the node's logs are in %s", logs)
				}
			}
			if err := cluster.Stop(); err != nil {
				logf("teardown: %v", err)
			} else {
				logf("torn down in %s", time.Since(t).Round(time.Millisecond))
			}
		})
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		logf("got %s: tearing the node down", sig)
		stop(true)
		os.Exit(130)
	}()
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, err := time.ParseDuration(f.Value.String()); err == nil && d > time.Minute {
			timer := time.AfterFunc(d-30*time.Second, func() {
				logf("go test's -timeout (%s) is 30s away: tearing the node down", d)
				stop(true)
				os.Exit(1)
			})
			defer timer.Stop()
		}
	}
	defer stop(true) // Start failed, or a test panicked

	start = time.Now()
	cluster, err = realnode.Start(context.Background(), realnode.Options{
		Root:            root,
		Images:          []string{filepath.Join(imgDir, "pause.oci.tar"), filepath.Join(imgDir, "registry-auth.oci.tar")},
		PauseImage:      pauseImage,
		AuditNamespaces: []string{kustomizeNamespace, chartNamespace},
		Log:             logf,
	})
	if err != nil {
		logf("starting the node: %v", err)
		return 1
	}
	report.add("cluster up (empty state to node Ready, images imported)", time.Since(start))
	for _, t := range cluster.Timings {
		report.add("  "+t.Phase, t.Took)
	}
	code := m.Run()
	report.add("whole suite (images, cluster, tests; without teardown)", time.Since(suiteStart))
	if err := report.write(filepath.Join(root, "bin", "test-node")); err != nil {
		logf("writing results: %v", err)
	}
	stop(code != 0)
	return code
}
