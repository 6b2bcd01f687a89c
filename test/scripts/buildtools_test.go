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

package scripts

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/registryauth/registry-auth-operator/test/utils"
)

// fakeGo stands in for go in a copy of hack/build-tools.sh: go list -m
// answers the versions (FAKE_HELM overrides helm's), go list -deps lists 40
// packages, and go build -v prints FAKE_PKGS package names 0.2s apart
// (a download line and, with FAKE_FAIL, a compile error among them) and
// writes each main package's binary as a script.
const fakeGo = `#!/usr/bin/env bash
set -eu
case "$1 $2" in
"list -m")
	case "${!#}:$4" in
	k8s.io/kubernetes:*Time*) echo 2026-10-27T12:01:04Z ;;
	k8s.io/kubernetes:*) echo v1.37.2 ;;
	go.etcd.io/etcd/server/v3:*) echo v3.7.3 ;;
	helm.sh/helm/v3:*) echo "${FAKE_HELM:-v3.22.0}" ;;
	k8s.io/client-go:*) echo v0.37.2 ;;
	*) exit 1 ;;
	esac
	;;
"list -deps")
	for i in $(seq 1 40); do echo "example.com/dep/p$i"; done
	;;
"build -v")
	while [ "$1" != -o ]; do shift; done
	out=$2
	shift 2
	echo "go: downloading example.com/dep v1.0.0" >&2
	for i in $(seq 1 "${FAKE_PKGS:-15}"); do
		echo "example.com/dep/p$i" >&2
		sleep 0.2
	done
	if [ -n "${FAKE_FAIL:-}" ]; then
		echo "# example.com/dep/broken" >&2
		echo "broken.go:1:1: syntax error: unexpected EOF" >&2
		exit 2
	fi
	for pkg in "$@"; do
		name=$(basename "$pkg")
		[[ $name =~ ^v[0-9]+$ ]] && name=$(basename "$(dirname "$pkg")")
		file=$out
		[[ $out == */ ]] && file=$out$name
		printf '#!/bin/sh\necho "%s fake"\n' "$name" >"$file"
		chmod 755 "$file"
	done
	;;
*)
	echo "fake go: unexpected $*" >&2
	exit 1
	;;
esac
`

// buildToolsBox is a copy of hack/build-tools.sh in a temporary repository
// (so bin/ is its own) with the fake go on PATH.
type buildToolsBox struct {
	*sandbox
	root, script string
}

func newBuildToolsBox(t *testing.T) *buildToolsBox {
	t.Helper()
	s := newSandbox(t)
	if err := os.WriteFile(filepath.Join(s.fakes, "go"), []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(s.dir, "repo")
	if err := os.MkdirAll(filepath.Join(root, "hack", "tools"), 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(filepath.Join(utils.RepoRoot(), "hack", "build-tools.sh"))
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "hack", "build-tools.sh")
	if err := os.WriteFile(script, src, 0o755); err != nil {
		t.Fatal(err)
	}
	s.env["PROGRESS_INTERVAL"] = "1"
	return &buildToolsBox{sandbox: s, root: root, script: script}
}

func (b *buildToolsBox) plan() string {
	b.t.Helper()
	stdout, stderr, code := b.run(b.script, "plan", "make test")
	if code != 0 || stderr != "" || strings.Count(stdout, "\n") != 1 {
		b.t.Fatalf("plan: exit %d, want exactly one line on stdout and nothing on stderr; stdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	return strings.TrimSuffix(stdout, "\n")
}

func TestBuildToolsPlan(t *testing.T) {
	t.Parallel()
	b := newBuildToolsBox(t)
	b.env["FAKE_PKGS"] = "1"

	const cold = "make test: about to build the control plane into bin/k8s (etcd, kube-apiserver and kubectl v1.37.2: " +
		"~10 min on 2 cores from a cold build cache) and helm into bin/helm (2-3 min more), with a progress line every 1s"
	if got := b.plan(); got != cold {
		t.Errorf("plan before any build:\n got %s\nwant %s", got, cold)
	}
	b.env["CONTROLLER_GEN_BIN"] = filepath.Join(b.root, "bin", "controller-gen-v0.0.0")
	if got := b.plan(); !strings.HasPrefix(got, "make test: about to build controller-gen (about a minute), the control plane into bin/k8s") {
		t.Errorf("plan without controller-gen: %s", got)
	}
	delete(b.env, "CONTROLLER_GEN_BIN")

	if _, stderr, code := b.run(b.script); code != 0 {
		t.Fatalf("building the control plane: exit %d:\n%s", code, stderr)
	}
	if got, want := b.plan(), "make test: about to build helm into bin/helm (2-3 min on 2 cores, ~5 min from a cold build cache), "+
		"with a progress line every 1s; the control plane (bin/k8s) is up to date (stamps match)"; got != want {
		t.Errorf("plan after the control plane:\n got %s\nwant %s", got, want)
	}

	if _, stderr, code := b.run(b.script, "helm"); code != 0 {
		t.Fatalf("building helm: exit %d:\n%s", code, stderr)
	}
	const warm = "make test: the control plane (bin/k8s) and helm (bin/helm) are up to date (stamps match), nothing long to build"
	if got := b.plan(); got != warm {
		t.Errorf("plan after both:\n got %s\nwant %s", got, warm)
	}

	// Another helm version in hack/tools: helm is out of date again.
	b.env["FAKE_HELM"] = "v3.99.0"
	if got := b.plan(); !strings.Contains(got, "about to build helm into bin/helm") {
		t.Errorf("plan after a helm version change: %s", got)
	}
	delete(b.env, "FAKE_HELM")

	// A missing binary is not up to date whatever the stamp says.
	if err := os.Remove(filepath.Join(b.root, "bin", "k8s", "kube-apiserver")); err != nil {
		t.Fatal(err)
	}
	if got := b.plan(); !strings.Contains(got, "about to build the control plane into bin/k8s") {
		t.Errorf("plan without kube-apiserver: %s", got)
	}
}

var progressLine = regexp.MustCompile(`^\[build-tools\] 0m0[0-9]s building kube-apiserver, kubectl and etcd: [0-9]+( of at most 40)? packages compiled(, latest example\.com/dep/p[0-9]+)?$`)

func TestBuildToolsProgress(t *testing.T) {
	t.Parallel()
	b := newBuildToolsBox(t)

	_, stderr, code := b.run(b.script)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	var progress []string
	for _, l := range lines(stderr) {
		if strings.Contains(l, " packages compiled") {
			if !progressLine.MatchString(l) {
				t.Errorf("progress line %q does not match %s", l, progressLine)
			}
			progress = append(progress, l)
		}
		if regexp.MustCompile(`^example\.com/dep/p[0-9]+$`).MatchString(l) {
			t.Errorf("a package name reached the output: %q", l)
		}
	}
	// The fake build takes about 3s and a line comes every second.
	if len(progress) < 2 {
		t.Errorf("want at least 2 progress lines, got %d:\n%s", len(progress), stderr)
	} else if last := progress[len(progress)-1]; !strings.Contains(last, " of at most 40 packages compiled, latest example.com/dep/p") {
		t.Errorf("the last progress line has no package count or latest package: %q", last)
	}
	expectContains(t, "stderr", stderr,
		"go: downloading example.com/dep v1.0.0\n", // go's own lines pass
		"[build-tools]   kubectl: kubectl fake\n", "[build-tools]   etcd: server fake\n")
	for _, bin := range []string{"etcd", "kube-apiserver", "kubectl"} {
		if _, err := os.Stat(filepath.Join(b.root, "bin", "k8s", bin)); err != nil {
			t.Error(err)
		}
	}

	// Up to date now: no build, no progress.
	_, stderr, code = b.run(b.script)
	if code != 0 || !strings.HasPrefix(stderr, "[build-tools] up to date: ") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("second run: exit %d, want one 'up to date' line:\n%s", code, stderr)
	}
}

func TestBuildToolsFailure(t *testing.T) {
	t.Parallel()
	b := newBuildToolsBox(t)
	b.env["FAKE_FAIL"] = "1"
	b.env["FAKE_PKGS"] = "8"

	_, stderr, code := b.run(b.script, "helm")
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, stderr)
	}
	expectContains(t, "stderr", stderr,
		"# example.com/dep/broken\nbroken.go:1:1: syntax error: unexpected EOF\n",
		"[build-tools] ERROR: go build of helm failed (exit 2) after 0m0")
	if !strings.Contains(stderr, "building helm: ") {
		t.Errorf("no progress line for helm:\n%s", stderr)
	}
	if _, err := os.Stat(filepath.Join(b.root, "bin", ".helm.stamp")); !os.IsNotExist(err) {
		t.Errorf("a failed build wrote the stamp (%v)", err)
	}
}

func TestBuildToolsNode(t *testing.T) {
	t.Parallel()
	b := newBuildToolsBox(t)
	b.env["FAKE_PKGS"] = "3"
	b.env["PLAN_NODE"] = "1"

	if got := b.plan(); !strings.Contains(got, " and the node into bin/node (kubelet, kube-proxy, kube-controller-manager and kube-scheduler: ~4 min more)") {
		t.Errorf("plan before any build: %s", got)
	}
	_, stderr, code := b.run(b.script, "node")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	expectContains(t, "stderr", stderr,
		"[build-tools] building kubelet, kube-proxy, kube-controller-manager and kube-scheduler v1.37.2 into "+filepath.Join(b.root, "bin", "node"),
		"[build-tools]   kubelet: kubelet fake\n", "[build-tools]   kube-scheduler: kube-scheduler fake\n")
	for _, bin := range []string{"kubelet", "kube-proxy", "kube-controller-manager", "kube-scheduler"} {
		if _, err := os.Stat(filepath.Join(b.root, "bin", "node", bin)); err != nil {
			t.Error(err)
		}
	}
	if leftovers, _ := filepath.Glob(filepath.Join(b.root, "bin", "node", ".build.*")); len(leftovers) > 0 {
		t.Errorf("the build directory was left behind: %v", leftovers)
	}
	if got := b.plan(); !strings.Contains(got, "the node (bin/node) ") || strings.Contains(got, "into bin/node") {
		t.Errorf("plan after the node was built: %s", got)
	}
	_, stderr, code = b.run(b.script, "node")
	if code != 0 || !strings.HasPrefix(stderr, "[build-tools] up to date: ") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("second run: exit %d, want one 'up to date' line:\n%s", code, stderr)
	}
	// Without PLAN_NODE (not root: make test will not build it), the plan
	// does not mention the node.
	delete(b.env, "PLAN_NODE")
	if got := b.plan(); strings.Contains(got, "node") {
		t.Errorf("plan without PLAN_NODE: %s", got)
	}
}
