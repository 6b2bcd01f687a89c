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

// Package e2e runs the real bin/registry-auth binary behind a real nginx
// configured like ingress-nginx's auth-url (test/e2e/nginxtest): in
// standalone mode (standalone_test.go) and as an operator against a real
// kube-apiserver and etcd driven with the real kubectl (operator_test.go).
// Everything binds 127.0.0.1. Tokens are generated per test and never
// printed: process output shown on failure has them replaced, and every test
// scans the binary's output for them.
package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/registryauth/registry-auth-operator/test/e2e/nginxtest"
	"github.com/registryauth/registry-auth-operator/test/utils"
)

// binary is the registry-auth binary TestMain builds.
var binary string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	var cleanup func()
	var err error
	binary, cleanup, err = utils.BuildBinary()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer cleanup()
	return m.Run()
}

// recordSources: see utils.RecordModuleSources.
func recordSources(t *testing.T) { utils.RecordModuleSources(t) }

var recordSourcesOnce sync.Once

// newToken returns a random 64-hex-digit token.
func newToken(t testing.TB) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newSecretKey returns a random 48-character alphanumeric key.
func newSecretKey(t testing.TB) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 48)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// fingerprint is the service's fingerprint of a token: the first 12 hex
// digits of its SHA-256. Safe to log.
func fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}

// freePort returns a 127.0.0.1 port nothing listens on right now.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().(*net.TCPAddr).Port
}

func freeAddr(t testing.TB) string {
	return "127.0.0.1:" + strconv.Itoa(freePort(t))
}

// secretSet is the credentials a test uses; they are redacted from anything
// logged and searched for in the binary's output.
type secretSet struct {
	mu   sync.Mutex
	list []string
}

func (s *secretSet) add(v ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.list = append(s.list, v...)
}

func (s *secretSet) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.list...)
}

// redact replaces every secret (and its base64 forms) in s.
func (s *secretSet) redact(text string) string {
	for _, x := range s.all() {
		for _, form := range leakForms(x) {
			text = strings.ReplaceAll(text, form, "<redacted:"+fingerprint(x)+">")
		}
	}
	return text
}

// leakForms are the spellings of a secret that must never appear in logs:
// the value, and its standard and URL-safe base64 encodings. A value inside
// a larger base64 blob (say a Secret's data in a logged object) is encoded
// at one of three byte offsets, so the inner part of each alignment is
// included (the edges depend on the neighbouring bytes and are dropped).
func leakForms(secret string) []string {
	forms := []string{secret}
	if len(secret) < 16 {
		return forms
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		forms = append(forms, enc.EncodeToString([]byte(secret)))
		for off := 0; off < 3; off++ {
			e := enc.EncodeToString(append(make([]byte, off), secret...))
			// Drop the first group (prefix bytes) and the last one
			// (following bytes or padding).
			forms = append(forms, e[4:len(e)-4])
		}
	}
	return forms
}

// assertNoLeak fails if text holds any secret in any of its forms. Only
// fingerprints are reported.
func assertNoLeak(t testing.TB, what, text string, secrets []string) {
	t.Helper()
	if text == "" {
		t.Errorf("%s is empty: nothing was scanned", what)
		return
	}
	for _, s := range secrets {
		for i, form := range leakForms(s) {
			if strings.Contains(text, form) {
				t.Errorf("%s contains credential %s (form %d)", what, fingerprint(s), i)
				break
			}
		}
	}
}

// proc is the registry-auth binary running as a child process.
type proc struct {
	t       testing.TB
	cmd     *exec.Cmd
	out     *utils.SyncBuffer
	done    chan struct{}
	waitErr error
	secrets *secretSet

	auth, probe, metrics string

	stopOnce sync.Once
}

// Output is what the process wrote to stdout and stderr so far.
func (p *proc) Output() string { return p.out.String() }

// AuthURL is the plain /validate URL of the auth service.
func (p *proc) AuthURL() string { return "http://" + p.auth + "/validate" }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, waits up to 20 s, then kills. Idempotent.
func (p *proc) Stop() {
	p.stopOnce.Do(func() {
		if p.exited() {
			return
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(20 * time.Second):
		}
		p.t.Errorf("registry-auth (pid %d) did not stop within 20s of SIGTERM; killing it", p.cmd.Process.Pid)
		_ = p.cmd.Process.Kill()
		<-p.done
	})
}

// childEnv is the test process's environment without anything that would
// configure the binary behind the test's back, plus extra.
func childEnv(extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "REGISTRY_") || strings.HasPrefix(k, "OIDC_") || strings.HasPrefix(k, "SECRET_KEY") ||
			strings.HasPrefix(k, "SESSION_") || strings.HasPrefix(k, "INTERNAL_") || k == "GROUP_SCOPES" || k == "KUBECONFIG" ||
			strings.HasPrefix(k, "KUBERNETES_") || strings.HasPrefix(k, "POD_") {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

var probeClient = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 2 * time.Second}

// startBinary runs registry-auth with args and env on free 127.0.0.1 ports
// (auth, probes, metrics) and waits until /readyz answers 200 (up to
// readyTimeout). secrets are redacted from the output logged when the test
// fails. The process is stopped (SIGTERM, then kill) at the end of the test.
// If a port was taken between choosing and binding it, it retries.
func startBinary(t *testing.T, args []string, env map[string]string, secrets *secretSet, readyTimeout time.Duration) *proc {
	t.Helper()
	recordSourcesOnce.Do(func() { recordSources(t) })
	for attempt := 1; ; attempt++ {
		p, err := tryStart(t, args, env, secrets, readyTimeout)
		if err == nil {
			return p
		}
		out := secrets.redact(p.Output())
		if attempt < 3 && strings.Contains(out, "address already in use") {
			t.Logf("a port was taken before registry-auth bound it; retrying")
			continue
		}
		t.Fatalf("starting registry-auth %v: %v\noutput:\n%s", args, err, out)
	}
}

func tryStart(t *testing.T, args []string, env map[string]string, secrets *secretSet, readyTimeout time.Duration) (*proc, error) {
	p := &proc{t: t, out: &utils.SyncBuffer{}, done: make(chan struct{}), secrets: secrets}
	p.auth, p.probe, p.metrics = freeAddr(t), freeAddr(t), freeAddr(t)
	all := append([]string{
		"--auth-bind-address", p.auth,
		"--health-probe-bind-address", p.probe,
		"--metrics-bind-address", p.metrics,
		// The tests send many wrong tokens from 127.0.0.1 on purpose; the
		// failure limit has its own tests. A later flag in args wins.
		"--max-auth-failures=0",
	}, args...)
	p.cmd = exec.Command(binary, all...)
	utils.DieWithTest(p.cmd)
	p.cmd.Env = childEnv(env)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return p, err
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("registry-auth output (credentials redacted):\n%s", secrets.redact(p.Output()))
		}
	})

	deadline := time.Now().Add(readyTimeout)
	var last string
	for {
		if p.exited() {
			return p, fmt.Errorf("exited before it was ready: %w", p.waitErr)
		}
		resp, err := probeClient.Get("http://" + p.probe + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			p.Stop()
			return p, fmt.Errorf("/readyz not 200 within %v (last: %s)", readyTimeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// request builds a request for nginx. rawPath is sent verbatim as the
// request target (no cleaning, no escaping), Host is host.
func request(host, rawPath string, header map[string]string) *http.Request {
	req, err := http.NewRequest(http.MethodGet, "http://"+host+"/", nil)
	if err != nil {
		panic(err)
	}
	req.URL.Opaque = rawPath
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return req
}

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

// result is one request through nginx.
type result struct {
	status int
	echo   *nginxtest.Echo
	body   string
}

func (r result) String() string {
	if r.echo == nil {
		return fmt.Sprintf("status %d (nginx answered; upstream not reached): %s", r.status, truncate(r.body, 300))
	}
	return fmt.Sprintf("status %d (upstream saw %s %s X-User=%q X-Auth-Method=%q)", r.status, r.echo.Method, r.echo.URI,
		r.echo.Header.Get("X-User"), r.echo.Header.Get("X-Auth-Method"))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// do sends req through nginx; a transport error fails the test.
func do(t testing.TB, ng *nginxtest.Nginx, req *http.Request) result {
	t.Helper()
	status, echo, body, err := ng.Do(req)
	if err != nil {
		t.Fatalf("request %s through nginx: %v", req.URL.Opaque, err)
	}
	return result{status: status, echo: echo, body: string(body)}
}

// eventually polls f every interval until it returns nil or timeout passes,
// then fails with f's last error.
func eventually(t testing.TB, timeout, interval time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(interval)
	}
}

// TestLeakScanner checks the scanner the other tests rely on: it must find a
// token as is, base64-encoded alone, and base64-encoded inside a larger blob
// at any byte offset (a Secret's data in a logged object), and must not
// report a text without it.
func TestLeakScanner(t *testing.T) {
	t.Parallel()
	token := newToken(t)
	texts := map[string]string{
		"raw":    `level=info msg="loaded" token=` + token,
		"base64": "data: {token: " + base64.StdEncoding.EncodeToString([]byte(token)) + "}",
	}
	for off := 0; off < 3; off++ {
		blob := append([]byte(strings.Repeat("k", off)+`{"token":"`), token...)
		blob = append(blob, `"}`...)
		texts[fmt.Sprintf("base64 blob offset %d", off)] = base64.StdEncoding.EncodeToString(blob)
		texts[fmt.Sprintf("base64url blob offset %d", off)] = base64.URLEncoding.EncodeToString(blob)
	}
	for name, text := range texts {
		ft := &fakeT{TB: t}
		assertNoLeak(ft, name, text, []string{token})
		if !ft.failed {
			t.Errorf("%s: leak not found", name)
		}
	}
	ft := &fakeT{TB: t}
	assertNoLeak(ft, "clean", "token fingerprint "+fingerprint(token)+" "+newToken(t), []string{token})
	if ft.failed {
		t.Errorf("leak reported in a text without the token")
	}
}

// fakeT records failures instead of failing the test.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Errorf(string, ...any) { f.failed = true }
