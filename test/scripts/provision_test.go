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

// Package scripts tests the shell scripts under hack/ that `make test`
// relies on on a fresh machine: hack/provision.sh (nginx and a C compiler
// for the tests) and hack/build-tools.sh's plan and progress lines. The
// scripts run with a PATH made of the real one minus what a case takes away
// (nginx, gcc, apt-get, ...) plus fakes; nothing is installed.
package scripts

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/registryauth/registry-auth-operator/test/utils"
)

// sandbox is a PATH for a script: fakes first, then a farm of symlinks to
// every command on the real PATH except the ones a case hides.
type sandbox struct {
	t     *testing.T
	dir   string
	fakes string // on PATH first
	farm  string // the real PATH's commands, minus hidden ones
	env   map[string]string
}

// alwaysHidden are never taken from the real PATH: what the scripts must
// not reach for real from a test (the package manager, the service
// manager), what a case decides itself (nginx, the C compiler, id), and
// the tools a build-tools.sh case fakes (go). Fakes replace them.
var alwaysHidden = []string{"nginx", "gcc", "cc", "id", "apt-get", "systemctl", "go",
	// The node's commands (hack/provision.sh --node): a case decides.
	"containerd", "containerd-shim-runc-v2", "ctr", "runc", "nft", "ip", "nsenter", "unshare"}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	dir := t.TempDir()
	s := &sandbox{t: t, dir: dir, fakes: filepath.Join(dir, "fakes"), farm: filepath.Join(dir, "farm"), env: map[string]string{}}
	for _, d := range []string{s.fakes, s.farm} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	hidden := map[string]bool{}
	for _, n := range alwaysHidden {
		hidden[n] = true
	}
	for _, d := range filepath.SplitList(os.Getenv("PATH")) {
		entries, err := os.ReadDir(d)
		if d == "" || err != nil {
			continue
		}
		for _, e := range entries {
			name := e.Name()
			link := filepath.Join(s.farm, name)
			if hidden[name] {
				continue
			}
			if _, err := os.Lstat(link); err == nil {
				continue // the first on PATH wins
			}
			target := filepath.Join(d, name)
			if fi, err := os.Stat(target); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				continue
			}
			if err := os.Symlink(target, link); err != nil {
				t.Fatal(err)
			}
		}
	}
	return s
}

// realGo adds the real go command to the sandbox.
func (s *sandbox) realGo() {
	s.t.Helper()
	goBin := filepath.Join(goRoot(s.t), "bin", "go")
	if err := os.Symlink(goBin, filepath.Join(s.fakes, "go")); err != nil {
		s.t.Fatal(err)
	}
}

func goRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// fake writes an executable shell script into dir.
func (s *sandbox) fake(dir, name, script string) string {
	s.t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		s.t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		s.t.Fatal(err)
	}
	return p
}

// run runs script (relative to the repository root, or absolute) with args
// in the sandbox and returns stdout, stderr and the exit code.
func (s *sandbox) run(script string, args ...string) (string, string, int) {
	s.t.Helper()
	if !filepath.IsAbs(script) {
		script = filepath.Join(utils.RepoRoot(), script)
	}
	cmd := exec.Command(script, args...)
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "PATH", "CI", "NGINX_BIN", "NGINX_SBIN_PATH", "CC", "CGO_ENABLED", "PROVISION_POLICY_RC",
			"DEBIAN_FRONTEND", "FORCE", "PROGRESS_INTERVAL", "NODE_SBIN_PATH", "CNI_BIN_DIRS", "PLAN_NODE":
		default:
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "PATH="+s.fakes+":"+s.farm)
	for k, v := range s.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		s.t.Fatalf("running %s: %v", script, err)
	}
	return stdout.String(), stderr.String(), code
}

// provisionBox is a sandbox for hack/provision.sh: the real go, nginx
// searched in <dir>/sbin only, policy-rc.d at <dir>/policy-rc.d, and a
// fake id saying uid.
type provisionBox struct {
	*sandbox
	sbin, policy, aptLog string
	nodeSbin, cni        string // where the node's commands and the CNI plugins are looked for
}

func newProvisionBox(t *testing.T, uid string) *provisionBox {
	t.Helper()
	s := newSandbox(t)
	s.realGo()
	b := &provisionBox{sandbox: s, sbin: filepath.Join(s.dir, "sbin"), policy: filepath.Join(s.dir, "policy-rc.d"), aptLog: filepath.Join(s.dir, "apt.log"),
		nodeSbin: filepath.Join(s.dir, "node-sbin"), cni: filepath.Join(s.dir, "cni")}
	for _, d := range []string{b.sbin, b.nodeSbin, b.cni} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s.env["NGINX_SBIN_PATH"] = b.sbin
	s.env["NODE_SBIN_PATH"] = b.nodeSbin
	s.env["CNI_BIN_DIRS"] = b.cni
	s.env["PROVISION_POLICY_RC"] = b.policy
	s.fake(s.fakes, "id", `[ "$1" = -u ] && { echo `+uid+`; exit 0; }; echo "fake id: $*" >&2; exit 1`+"\n")
	return b
}

const fakeNginxScript = `echo 'nginx version: nginx/1.99.0-fake' >&2
echo 'configure arguments: --with-http_ssl_module --with-http_auth_request_module' >&2
`

// fakeGCC "compiles" by creating the -o file.
const fakeGCCScript = `out=
while [ $# -gt 0 ]; do [ "$1" = -o ] && { out=$2; shift; }; shift; done
[ -n "$out" ] && : >"$out"
`

// fakeNodeScript answers --version as containerd and runc do.
const fakeNodeScript = `case "$(basename "$0") $1" in
"containerd --version") echo "containerd github.com/containerd/containerd 1.6.99~fake 1.6.99~fake-1" ;;
"runc --version") echo "runc version 1.1.99+fake"; echo "spec: 1.0.2" ;;
esac
`

// withNode puts every node command and CNI plugin in place.
func (b *provisionBox) withNode() {
	for _, c := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "nft", "ip", "nsenter", "unshare"} {
		b.fake(b.nodeSbin, c, fakeNodeScript)
	}
	for _, c := range []string{"bridge", "host-local", "loopback"} {
		b.fake(b.cni, c, "")
	}
}

func (b *provisionBox) withNginx() { b.fake(b.sbin, "nginx", fakeNginxScript) }
func (b *provisionBox) withGCC()   { b.fake(b.fakes, "gcc", fakeGCCScript) }

// withApt adds a fake apt-get that logs its arguments and what the
// policy-rc.d said about starting nginx, installs fakes for nginx and gcc
// when asked to, and exits with exitCode on install.
func (b *provisionBox) withApt(exitCode string) {
	b.fake(b.fakes, "apt-get", `log=`+b.aptLog+`
echo "apt-get $* DEBIAN_FRONTEND=$DEBIAN_FRONTEND" >>"$log"
[ "$1" = install ] || exit 0
if [ -x `+b.policy+` ]; then `+b.policy+` nginx start; echo "policy-rc.d nginx start: $?" >>"$log"; else echo "no policy-rc.d" >>"$log"; fi
[ `+exitCode+` = 0 ] || exit `+exitCode+`
node() { for c in "$@"; do printf '#!/bin/sh\n%s' "$NODE_SCRIPT" >`+b.nodeSbin+`/$c; chmod 755 `+b.nodeSbin+`/$c; done; }
for p in "$@"; do
	case "$p" in
	nginx) printf '#!/bin/sh\n%s' "$NGINX_SCRIPT" >`+b.sbin+`/nginx; chmod 755 `+b.sbin+`/nginx ;;
	gcc) printf '#!/bin/sh\n%s' "$GCC_SCRIPT" >`+b.fakes+`/gcc; chmod 755 `+b.fakes+`/gcc ;;
	containerd) node containerd containerd-shim-runc-v2 ctr ;;
	runc) node runc ;;
	nftables) node nft ;;
	iproute2) node ip ;;
	util-linux) node nsenter unshare ;;
	containernetworking-plugins) for c in bridge host-local loopback; do : >`+b.cni+`/$c; chmod 755 `+b.cni+`/$c; done ;;
	esac
done
`)
	b.env["NODE_SCRIPT"] = fakeNodeScript
	b.env["NGINX_SCRIPT"] = fakeNginxScript
	b.env["GCC_SCRIPT"] = fakeGCCScript
}

func (b *provisionBox) aptCalls() string {
	data, err := os.ReadFile(b.aptLog)
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		b.t.Fatal(err)
	}
	return string(data)
}

func lines(s string) []string {
	return strings.Split(strings.TrimRight(s, "\n"), "\n")
}

func expectContains(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s does not contain %q:\n%s", what, w, got)
		}
	}
}

func expectOneLine(t *testing.T, stderr string) string {
	t.Helper()
	l := lines(stderr)
	if len(l) != 1 || !strings.HasPrefix(l[0], "[provision] ") {
		t.Fatalf("want one [provision] line, got %d:\n%s", len(l), stderr)
	}
	return l[0]
}

const provision = "hack/provision.sh"

func TestProvisionMissingWithoutApt(t *testing.T) {
	t.Parallel()
	b := newProvisionBox(t, "0") // root, but no apt-get: nothing to install with

	stdout, stderr, code := b.run(provision)
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	line := expectOneLine(t, stderr)
	expectContains(t, "the line", line,
		"missing: nginx is not installed (not on PATH nor in "+b.sbin+"), so the nginx end-to-end tests (test/e2e) skip",
		"no C compiler (gcc not found), so go test runs without -race",
		"To get it: install nginx (with http_auth_request_module) and gcc and the C library headers with the system's package manager, or set NGINX_BIN.")

	if out, _, code := b.run(provision, "--race-flag"); code != 0 || out != "" {
		t.Errorf("--race-flag without a C compiler: exit %d, stdout %q; want nothing", code, out)
	}

	b.env["CI"] = "true"
	stdout, stderr, code = b.run(provision)
	if code != 1 || stdout != "" {
		t.Fatalf("CI=true: exit %d (want 1), stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	line = expectOneLine(t, stderr)
	expectContains(t, "the CI line", line, "ERROR: CI=true, nothing may be skipped: nginx is not installed", "would be skipped", "would run without -race")
	if out, _, code := b.run(provision, "--race-flag"); code != 0 || out != "-race\n" {
		t.Errorf("--race-flag with CI=true: exit %d, stdout %q; want -race (a missing compiler must fail)", code, out)
	}
}

func TestProvisionMissingNotRoot(t *testing.T) {
	t.Parallel()
	b := newProvisionBox(t, "1000")
	b.withApt("0")
	b.withGCC()

	_, stderr, code := b.run(provision)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	line := expectOneLine(t, stderr)
	expectContains(t, "the line", line, "missing: nginx is not installed",
		"To get it: run sudo hack/provision.sh (apt-get install nginx, without starting nginx's service), or make test as root, or set NGINX_BIN.")
	if strings.Contains(line, "C compiler") || strings.Contains(line, "race") {
		t.Errorf("the compiler works, the line should not mention it: %s", line)
	}
	if calls := b.aptCalls(); calls != "" {
		t.Errorf("apt-get ran without root:\n%s", calls)
	}
	if out, _, _ := b.run(provision, "--race-flag"); out != "-race\n" {
		t.Errorf("--race-flag with a working compiler: %q, want -race", out)
	}
}

func TestProvisionCheckNeverInstalls(t *testing.T) {
	t.Parallel()
	b := newProvisionBox(t, "0")
	b.withApt("0")

	_, stderr, code := b.run(provision, "--check")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	line := expectOneLine(t, stderr)
	expectContains(t, "the line", line, "run hack/provision.sh (apt-get install nginx gcc libc6-dev, without starting nginx's service)")
	if calls := b.aptCalls(); calls != "" {
		t.Errorf("--check ran apt-get:\n%s", calls)
	}
}

func TestProvisionPresent(t *testing.T) {
	t.Parallel()
	b := newProvisionBox(t, "1000")
	b.withNginx()
	b.withGCC()
	b.env["CI"] = "true"

	_, stderr, code := b.run(provision)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	line := expectOneLine(t, stderr)
	expectContains(t, "the line", line, "nginx: "+b.sbin+"/nginx (nginx/1.99.0-fake); C compiler: gcc (go test -race)")

	// Found on PATH before NGINX_SBIN_PATH; NGINX_BIN before both.
	onPath := b.fake(filepath.Join(b.dir, "onpath"), "nginx", fakeNginxScript)
	b.fake(b.fakes, "nginx", "exec "+onPath+` "$@"`+"\n")
	_, stderr, _ = b.run(provision, "--check")
	expectContains(t, "the line", expectOneLine(t, stderr), "nginx: "+b.fakes+"/nginx ")
	b.env["NGINX_BIN"] = onPath
	_, stderr, _ = b.run(provision, "--check")
	expectContains(t, "the line", expectOneLine(t, stderr), "nginx: "+onPath+" ")
}

func TestProvisionUnusable(t *testing.T) {
	t.Parallel()
	b := newProvisionBox(t, "0")
	b.withApt("0")
	b.withGCC()
	b.fake(b.sbin, "nginx", "echo 'configure arguments: --with-http_ssl_module' >&2\n")

	// An nginx without auth_request is reported, not replaced.
	_, stderr, code := b.run(provision)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	expectContains(t, "the line", expectOneLine(t, stderr),
		b.sbin+"/nginx is built without http_auth_request_module", "set NGINX_BIN to an nginx built with http_auth_request_module")
	if calls := b.aptCalls(); calls != "" {
		t.Errorf("apt-get ran for an nginx that exists:\n%s", calls)
	}

	b.env["NGINX_BIN"] = filepath.Join(b.dir, "nowhere", "nginx")
	_, stderr, _ = b.run(provision)
	expectContains(t, "the line", expectOneLine(t, stderr), "NGINX_BIN="+b.env["NGINX_BIN"]+" is not an executable file")

	delete(b.env, "NGINX_BIN")
	b.env["CGO_ENABLED"] = "0"
	b.withNginx()
	_, stderr, _ = b.run(provision)
	expectContains(t, "the line", expectOneLine(t, stderr), "CGO_ENABLED=0 is set", "unset CGO_ENABLED")
	if out, _, _ := b.run(provision, "--race-flag"); out != "" {
		t.Errorf("--race-flag with CGO_ENABLED=0: %q, want nothing", out)
	}
}

func TestProvisionCompilerWithoutHeaders(t *testing.T) {
	t.Parallel()
	b := newProvisionBox(t, "1000")
	b.withApt("0")
	b.withNginx()
	b.fake(b.fakes, "gcc", "echo 'cc.c:1:10: fatal error: stdlib.h: No such file or directory' >&2; exit 1\n")

	_, stderr, _ := b.run(provision)
	expectContains(t, "the line", expectOneLine(t, stderr),
		"gcc cannot build a C program (cc.c:1:10: fatal error: stdlib.h: No such file or directory; are the C library headers, libc6-dev, missing?)",
		"so go test runs without -race. To get it: run sudo hack/provision.sh (apt-get install gcc libc6-dev), or make test as root.")
}

func TestProvisionInstalls(t *testing.T) {
	t.Parallel()
	b := newProvisionBox(t, "0")
	b.withApt("0")
	b.env["CI"] = "true"

	_, stderr, code := b.run(provision, "git", "make")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	expectContains(t, "the output", stderr,
		"[provision] installing Debian packages with apt-get: nginx gcc libc6-dev git make (usually under a minute; nginx's system service is not started)\n",
		"[provision] nginx: "+b.sbin+"/nginx (nginx/1.99.0-fake); C compiler: gcc (go test -race)\n")
	calls := b.aptCalls()
	expectContains(t, "apt-get's log", calls,
		"apt-get update -qq DEBIAN_FRONTEND=noninteractive\n",
		"apt-get install -y -qq --no-install-recommends nginx gcc libc6-dev git make DEBIAN_FRONTEND=noninteractive\n",
		// No service may start while apt-get runs...
		"policy-rc.d nginx start: 101\n")
	// ...and the policy-rc.d the script added is gone afterwards.
	if _, err := os.Stat(b.policy); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind (%v)", b.policy, err)
	}

	// Everything there: only the extra packages are installed.
	if err := os.Remove(b.aptLog); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = b.run(provision, "git", "make")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	expectContains(t, "apt-get's log", b.aptCalls(), "apt-get install -y -qq --no-install-recommends git make DEBIAN_FRONTEND")
	// Nothing missing, nothing asked for: apt-get is not run at all.
	if err := os.Remove(b.aptLog); err != nil {
		t.Fatal(err)
	}
	_, stderr, _ = b.run(provision)
	expectOneLine(t, stderr)
	if calls := b.aptCalls(); calls != "" {
		t.Errorf("apt-get ran with nothing to install:\n%s", calls)
	}
}

func TestProvisionKeepsAnExistingPolicyRC(t *testing.T) {
	t.Parallel()
	b := newProvisionBox(t, "0")
	b.withApt("0")
	b.withGCC()
	const mine = "#!/bin/sh\n# the image's own\nexit 101\n"
	if err := os.WriteFile(b.policy, []byte(mine), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, stderr, code := b.run(provision); code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	expectContains(t, "apt-get's log", b.aptCalls(), "install -y -qq --no-install-recommends nginx DEBIAN_FRONTEND", "policy-rc.d nginx start: 101")
	if got, err := os.ReadFile(b.policy); err != nil || string(got) != mine {
		t.Errorf("the existing policy-rc.d changed: %q, %v", got, err)
	}
}

func TestProvisionInstallFails(t *testing.T) {
	t.Parallel()
	b := newProvisionBox(t, "0")
	b.withApt("100")

	stdout, stderr, code := b.run(provision)
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q:\n%s", code, stdout, stderr)
	}
	l := lines(stderr)
	if len(l) != 3 {
		t.Fatalf("want 3 lines (installing, failed, missing), got:\n%s", stderr)
	}
	expectContains(t, "the output", stderr, "[provision] apt-get install failed (exit 100)")
	expectContains(t, "the last line", l[2], "[provision] missing: nginx is not installed", "no C compiler (gcc not found)",
		"To get it: run hack/provision.sh (apt-get install nginx gcc libc6-dev, without starting nginx's service), or set NGINX_BIN.")
	if _, err := os.Stat(b.policy); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind after a failed install (%v)", b.policy, err)
	}

	b.env["CI"] = "true"
	_, stderr, code = b.run(provision)
	if code != 1 {
		t.Fatalf("CI=true, failed install: exit %d, want 1:\n%s", code, stderr)
	}
	expectContains(t, "the output", stderr, "ERROR: CI=true and apt-get install failed")
}

func TestProvisionNodeInstalls(t *testing.T) {
	t.Parallel()
	b := newProvisionBox(t, "0")
	b.withApt("0")
	b.withNginx()
	b.withGCC()
	// A systemctl that says the service is enabled and logs the rest.
	b.fake(b.fakes, "systemctl", `echo "systemctl $*" >>`+b.aptLog+"\n")

	// Without --node the node is neither installed nor reported.
	_, stderr, code := b.run(provision)
	if code != 0 || strings.Contains(stderr, "node") || b.aptCalls() != "" {
		t.Fatalf("without --node: exit %d, apt %q:\n%s", code, b.aptCalls(), stderr)
	}
	if _, _, code := b.run(provision, "--node-ready"); code != 1 {
		t.Errorf("--node-ready with nothing there: exit %d, want 1", code)
	}

	b.env["CI"] = "true"
	_, stderr, code = b.run(provision, "--node")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	expectContains(t, "the output", stderr,
		"[provision] installing Debian packages with apt-get: containerd runc nftables iproute2 util-linux containernetworking-plugins (usually under a minute; containerd's system service is not started)\n",
		"[provision] disabled containerd's system service, which the package enabled (the real-node suite starts its own, with its own socket and state)\n",
		"[provision] nginx: "+b.sbin+"/nginx (nginx/1.99.0-fake); C compiler: gcc (go test -race)\n",
		"[provision] node: containerd 1.6.99~fake, runc 1.1.99+fake, CNI plugins in "+b.cni+" (the real-node suite, test/node, runs)\n")
	expectContains(t, "apt-get's log", b.aptCalls(), "policy-rc.d nginx start: 101\n", "systemctl disable containerd\n")
	if _, _, code := b.run(provision, "--node-ready"); code != 0 {
		t.Errorf("--node-ready with everything there: exit %d, want 0", code)
	}
}

func TestProvisionNodeMissing(t *testing.T) {
	t.Parallel()
	b := newProvisionBox(t, "0") // root, no apt-get
	b.withNginx()
	b.withGCC()
	b.withNode()
	if err := os.Remove(filepath.Join(b.nodeSbin, "runc")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(b.cni, "bridge")); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := b.run(provision, "--check", "--node")
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q:\n%s", code, stdout, stderr)
	}
	l := lines(stderr)
	if len(l) != 2 {
		t.Fatalf("want two lines (tools, node):\n%s", stderr)
	}
	expectContains(t, "the node line", l[1],
		"[provision] missing: no runc, the CNI plugins (bridge, host-local, loopback), so the real-node suite (test/node) skips. To get it: install containerd, runc, the CNI plugins, nftables and iproute2 with the system's package manager.")
	if _, _, code := b.run(provision, "--node-ready"); code != 1 {
		t.Errorf("--node-ready without runc: exit %d, want 1", code)
	}

	b.env["CI"] = "true"
	_, stderr, code = b.run(provision, "--check", "--node")
	if code != 1 {
		t.Fatalf("CI=true: exit %d, want 1:\n%s", code, stderr)
	}
	expectContains(t, "the output", stderr, "[provision] ERROR: CI=true, nothing may be skipped: no runc, the CNI plugins (bridge, host-local, loopback), so the real-node suite (test/node) would be skipped.")
}

func TestProvisionNodeNotRoot(t *testing.T) {
	t.Parallel()
	b := newProvisionBox(t, "1000")
	b.withApt("0")
	b.withNginx()
	b.withGCC()
	b.withNode()
	_, stderr, code := b.run(provision, "--node")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr)
	}
	expectContains(t, "the output", stderr,
		"[provision] missing: not root (it runs containerd, a kubelet and its own network namespace), so the real-node suite (test/node) skips. To get it: run make test as root, or sudo make test-node.\n")
	if calls := b.aptCalls(); calls != "" {
		t.Errorf("apt-get ran without root:\n%s", calls)
	}
	if _, _, code := b.run(provision, "--node-ready"); code != 1 {
		t.Errorf("--node-ready as uid 1000: exit %d, want 1", code)
	}
	// Missing parts without root: the way to get them needs sudo.
	if err := os.Remove(filepath.Join(b.nodeSbin, "nft")); err != nil {
		t.Fatal(err)
	}
	_, stderr, _ = b.run(provision, "--node")
	expectContains(t, "the output", stderr, "missing: no nft, so the real-node suite (test/node) skips. To get it: run sudo hack/provision.sh --node (apt-get install nftables), or make test as root.")
}
