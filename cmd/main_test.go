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

package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/registryauth/registry-auth-operator/test/utils"
)

// End-to-end tests of the real binary in standalone mode, on 127.0.0.1 only.
// Tokens are generated per test and never printed: process output shown on
// failure has them replaced by <redacted>.

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

func newToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// freeAddr returns a 127.0.0.1 address nothing listens on (right now).
func freeAddr(t *testing.T) string { return utils.FreeAddr(t) }

type proc struct {
	cmd            *exec.Cmd
	stdout, stderr *utils.SyncBuffer
	done           chan struct{}
	waitErr        error
	auth, probe    string
	metrics        string
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitCode waits up to d for the process to end and returns its exit code,
// or -1 when it did not end in time.
func (p *proc) exitCode(d time.Duration) int {
	select {
	case <-p.done:
	case <-time.After(d):
		return -1
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		return ee.ExitCode()
	}
	if p.waitErr != nil {
		return -2
	}
	return 0
}

func redact(s string, secrets []string) string {
	for _, x := range secrets {
		if x != "" {
			s = strings.ReplaceAll(s, x, "<redacted>")
		}
	}
	return s
}

// testEnv is the test process's environment without anything that would
// configure standalone mode or the garbage collector.
func testEnv(extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "REGISTRY_") || strings.HasPrefix(k, "OIDC_") || strings.HasPrefix(k, "SECRET_KEY") ||
			strings.HasPrefix(k, "SESSION_") || k == "GROUP_SCOPES" || k == "GOGC" || k == "GOMEMLIMIT" {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// startProc runs the binary with args and env. secrets are redacted from the
// output logged when the test fails. The process is killed at the end of the
// test if it is still running.
func startProc(t *testing.T, env map[string]string, secrets []string, args ...string) *proc {
	t.Helper()
	utils.RecordModuleSources(t)
	p := &proc{stdout: &utils.SyncBuffer{}, stderr: &utils.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	utils.DieWithTest(p.cmd)
	p.cmd.Env = testEnv(env)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("registry-auth stdout:\n%s", redact(p.stdout.String(), secrets))
			t.Logf("registry-auth stderr:\n%s", redact(p.stderr.String(), secrets))
		}
	})
	return p
}

// startStandalone runs --standalone on free 127.0.0.1 ports and waits for
// /readyz.
func startStandalone(t *testing.T, env map[string]string, secrets []string, extraArgs ...string) *proc {
	t.Helper()
	auth, probe, metrics := freeAddr(t), freeAddr(t), freeAddr(t)
	p := startProc(t, env, secrets, append([]string{"--standalone",
		"--auth-bind-address", auth, "--health-probe-bind-address", probe, "--metrics-bind-address", metrics}, extraArgs...)...)
	p.auth, p.probe, p.metrics = auth, probe, metrics
	g := NewWithT(t)
	g.Eventually(func() (int, error) {
		if p.exited() {
			return 0, StopTrying("registry-auth exited before it was ready")
		}
		resp, err := client.Get("http://" + probe + "/readyz")
		if err != nil {
			return 0, nil // not listening yet
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}, 20*time.Second, 50*time.Millisecond).Should(Equal(http.StatusOK), "/readyz")
	// The auth port is served by its own goroutine: wait for it as well.
	g.Eventually(func() error {
		c, err := net.Dial("tcp", auth)
		if err == nil {
			_ = c.Close()
		}
		return err
	}, 5*time.Second, 20*time.Millisecond).Should(Succeed(), "auth port")
	return p
}

var client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

type validateResponse struct {
	status int
	header http.Header
	body   map[string]any
}

func validate(t *testing.T, p *proc, path, originalURL, token string) validateResponse {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+p.auth+path+"?format=json", nil) // the JSON body too
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Original-URL", originalURL)
	req.Header.Set("X-Original-Method", http.MethodGet)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		t.Fatalf("%s: body is not JSON (%d bytes): %v", path, len(raw), err)
	}
	return validateResponse{status: resp.StatusCode, header: resp.Header, body: body}
}

func TestStandaloneBinary(t *testing.T) {
	g := NewWithT(t)
	tok, wrong := newToken(t), newToken(t)
	secrets := []string{tok, wrong}
	p := startStandalone(t, map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_TOKEN":                 tok,
	}, secrets)

	t.Run("static token on the Registry API", func(t *testing.T) {
		g := NewWithT(t)
		for _, path := range []string{"/validate", "/validate/standalone/default"} {
			r := validate(t, p, path, "http://h/api/servers", tok)
			g.Expect(r.status).To(Equal(http.StatusOK), path)
			g.Expect(r.header.Get("X-User")).To(Equal("network-user"))
			g.Expect(r.header.Get("X-Username")).To(Equal("network-user"))
			g.Expect(r.header.Get("X-Client-Id")).To(Equal("network-trusted"))
			g.Expect(r.header.Get("X-Auth-Method")).To(Equal("network-trusted"))
			g.Expect(r.header.Get("X-Groups")).To(Equal("mcp-registry-admin"))
			g.Expect(r.header.Get("X-Scopes")).To(Equal("mcp-registry-admin mcp-servers-unrestricted/read mcp-servers-unrestricted/execute"))
			g.Expect(r.header.Get("Content-Type")).To(Equal("application/json"))
			g.Expect(r.header.Get("Cache-Control")).To(Equal("no-store"))
			g.Expect(r.body).To(Equal(map[string]any{
				"valid":     true,
				"username":  "network-user",
				"client_id": "network-trusted",
				"groups":    []any{"mcp-registry-admin"},
				"scopes":    []any{"mcp-registry-admin", "mcp-servers-unrestricted/read", "mcp-servers-unrestricted/execute"},
				"method":    "network-trusted",
			}))
		}
		r := validate(t, p, "/validate", "https://h/v0.1/servers?limit=5", tok)
		g.Expect(r.status).To(Equal(http.StatusOK))
	})

	t.Run("static token on a gateway path", func(t *testing.T) {
		g := NewWithT(t)
		r := validate(t, p, "/validate", "http://h/mcpserver/mcp", tok)
		g.Expect(r.status).To(Equal(http.StatusUnauthorized))
		g.Expect(r.header.Get("X-User")).To(BeEmpty())
		g.Expect(r.body).To(HaveKeyWithValue("valid", false))
		g.Expect(r.body).To(HaveKeyWithValue("reason", "registry_credential_on_gateway_path"))
	})

	t.Run("no credentials", func(t *testing.T) {
		g := NewWithT(t)
		r := validate(t, p, "/validate", "http://h/api/servers", "")
		g.Expect(r.status).To(Equal(http.StatusUnauthorized))
		g.Expect(r.header.Get("WWW-Authenticate")).To(Equal(`Bearer realm="registry"`))
		g.Expect(r.header.Get("X-User")).To(BeEmpty())
		g.Expect(r.body).To(HaveKeyWithValue("valid", false))
		g.Expect(r.body).To(HaveKeyWithValue("reason", "no_credentials"))
		g.Expect(r.body).To(HaveKey("message"))
	})

	t.Run("wrong token", func(t *testing.T) {
		g := NewWithT(t)
		r := validate(t, p, "/validate", "http://h/api/servers", wrong)
		g.Expect(r.status).To(Equal(http.StatusUnauthorized))
		g.Expect(r.header.Get("WWW-Authenticate")).NotTo(BeEmpty())
		g.Expect(r.body).To(HaveKeyWithValue("reason", "invalid_credentials"))
	})

	t.Run("probes and metrics", func(t *testing.T) {
		g := NewWithT(t)
		for _, u := range []string{"http://" + p.probe + "/healthz", "http://" + p.probe + "/readyz", "http://" + p.metrics + "/metrics"} {
			resp, err := client.Get(u)
			g.Expect(err).NotTo(HaveOccurred())
			_ = resp.Body.Close()
			g.Expect(resp.StatusCode).To(Equal(http.StatusOK), u)
		}
	})

	t.Run("SIGTERM exits 0 promptly", func(t *testing.T) {
		g := NewWithT(t)
		g.Expect(p.cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
		g.Expect(p.exitCode(5 * time.Second)).To(Equal(0))
	})

	g.Expect(p.stderr.String()).NotTo(BeEmpty(), "the binary logs")
	for i, s := range secrets {
		g.Expect(strings.Contains(p.stdout.String()+p.stderr.String(), s)).To(BeFalse(), "output contains token #%d", i)
	}
}

// Enabled with an empty token: the original logs an error and falls back to
// JWT validation; it does not refuse to start.
func TestStandaloneBinaryEmptyToken(t *testing.T) {
	g := NewWithT(t)
	p := startStandalone(t, map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": ""}, nil)
	r := validate(t, p, "/validate", "http://h/api/servers", newToken(t))
	g.Expect(r.status).To(Equal(http.StatusUnauthorized))
	// One error line names the problem (wait for the log to be flushed).
	lines := func() int {
		n := 0
		for _, l := range strings.Split(p.stderr.String(), "\n") {
			if strings.Contains(l, `"level":"error"`) && strings.Contains(l, "TokenEmpty") {
				n++
			}
		}
		return n
	}
	g.Eventually(lines, 2*time.Second, 20*time.Millisecond).Should(Equal(1), "one error line names the empty token")
	g.Consistently(lines, 300*time.Millisecond, 50*time.Millisecond).Should(Equal(1))
	g.Expect(p.cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
	g.Expect(p.exitCode(5 * time.Second)).To(Equal(0))
}

// The token file turned into something that is not a secret file (a FIFO):
// the binary refuses the token, and /readyz and /metrics say so until a
// regular file is back.
func TestStandaloneBinaryReadinessFollowsFiles(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	tok := newToken(t)
	g.Expect(os.WriteFile(file, []byte(tok), 0o600)).To(Succeed())
	p := startStandalone(t, map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_TOKEN_FILE":            file,
	}, []string{tok})
	get := func(u string) (int, string) {
		resp, err := client.Get(u)
		if err != nil {
			return 0, err.Error()
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	readyz, metricsURL := "http://"+p.probe+"/readyz", "http://"+p.metrics+"/metrics"
	code, _ := get(readyz)
	g.Expect(code).To(Equal(http.StatusOK))

	fifo := filepath.Join(dir, "fifo")
	g.Expect(syscall.Mkfifo(fifo, 0o600)).To(Succeed())
	g.Expect(os.Rename(fifo, file)).To(Succeed())
	g.Eventually(func() int { return validate(t, p, "/validate", "http://h/api/servers", tok).status }, 3*time.Second, 20*time.Millisecond).
		Should(Equal(http.StatusUnauthorized))
	code, body := get(readyz)
	g.Expect(code).To(Equal(http.StatusServiceUnavailable))
	g.Expect(body).To(ContainSubstring("REGISTRY_API_TOKEN: SecretNotFound"))
	_, m := get(metricsURL)
	g.Expect(m).To(ContainSubstring("registry_auth_config_problems 1"))
	g.Expect(m).To(ContainSubstring(`registry_auth_config_loads_total{result="problems"} 1`))

	g.Expect(os.WriteFile(filepath.Join(dir, "next"), []byte(tok), 0o600)).To(Succeed())
	g.Expect(os.Rename(filepath.Join(dir, "next"), file)).To(Succeed())
	g.Eventually(func() int { code, _ := get(readyz); return code }, 3*time.Second, 20*time.Millisecond).Should(Equal(http.StatusOK))
	g.Expect(validate(t, p, "/validate", "http://h/api/servers", tok).status).To(Equal(http.StatusOK))
	_, m = get(metricsURL)
	g.Expect(m).To(ContainSubstring("registry_auth_config_problems 0"))
}

// The profiler is off unless asked for, and then only on its own address.
func TestPprofOnlyWhenAsked(t *testing.T) {
	g := NewWithT(t)
	tok := newToken(t)
	env := map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": tok}
	get := func(url string) int {
		resp, err := client.Get(url)
		g.Expect(err).NotTo(HaveOccurred())
		_ = resp.Body.Close()
		return resp.StatusCode
	}

	off := startStandalone(t, env, []string{tok})
	for _, addr := range []string{off.auth, off.probe, off.metrics} {
		g.Expect(get("http://"+addr+"/debug/pprof/cmdline")).NotTo(Equal(http.StatusOK), addr)
	}

	pprofAddr := freeAddr(t)
	on := startStandalone(t, env, []string{tok}, "--pprof-bind-address", pprofAddr)
	var resp *http.Response
	g.Eventually(func() (err error) { // its own listener, started next to the others
		resp, err = client.Get("http://" + pprofAddr + "/debug/pprof/cmdline")
		return err
	}, 5*time.Second, 20*time.Millisecond).Should(Succeed())
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Expect(string(body)).To(ContainSubstring("--standalone"))
	g.Expect(get("http://" + on.auth + "/debug/pprof/cmdline")).NotTo(Equal(http.StatusOK))
}

func TestHelp(t *testing.T) {
	g := NewWithT(t)
	p := startProc(t, nil, nil, "--help")
	g.Expect(p.exitCode(10 * time.Second)).To(Equal(0))
	out := p.stdout.String() + p.stderr.String()
	for _, f := range []string{"metrics-bind-address", "health-probe-bind-address", "leader-elect", "kubeconfig", "auth-bind-address", "standalone", "pprof-bind-address"} {
		g.Expect(out).To(MatchRegexp(`(?m)^\s+--?`+f+`\b`), "--help lists --%s", f)
	}
}

// A bad environment stops start-up with a message on stderr, and never
// echoes the token.
func TestStandaloneBinaryBadEnvironment(t *testing.T) {
	tok := newToken(t)
	tests := []struct {
		name    string
		env     map[string]string
		secrets []string
		// wantStderr are substrings stderr must contain.
		wantStderr []string
	}{
		{
			name:       "weak token",
			env:        map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": "changeme"},
			secrets:    []string{"changeme"},
			wantStderr: []string{"bad configuration", "at least 32", "TokenTooWeak"},
		},
		{
			name:       "unparsable boolean",
			env:        map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "maybe", "REGISTRY_API_TOKEN": tok},
			secrets:    []string{tok},
			wantStderr: []string{"bad environment", "REGISTRY_STATIC_TOKEN_AUTH_ENABLED"},
		},
		{
			name:       "token and token file",
			env:        map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": tok, "REGISTRY_API_TOKEN_FILE": "/nonexistent/token"},
			secrets:    []string{tok},
			wantStderr: []string{"bad environment", "REGISTRY_API_TOKEN_FILE"},
		},
		{
			name:       "unreadable token file",
			env:        map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN_FILE": "/nonexistent/token"},
			secrets:    []string{"/nonexistent/token"},
			wantStderr: []string{"bad configuration", "REGISTRY_API_TOKEN_FILE", "no such file"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			p := startProc(t, tc.env, tc.secrets, "--standalone",
				"--auth-bind-address", freeAddr(t), "--health-probe-bind-address", freeAddr(t), "--metrics-bind-address", freeAddr(t))
			code := p.exitCode(10 * time.Second)
			g.Expect(code).NotTo(Equal(-1), "registry-auth must exit")
			g.Expect(code).NotTo(Equal(0))
			stderr := p.stderr.String()
			for _, s := range tc.wantStderr {
				g.Expect(stderr).To(ContainSubstring(s))
			}
			for i, s := range tc.secrets {
				g.Expect(strings.Contains(stderr+p.stdout.String(), s)).To(BeFalse(), "output contains secret #%d", i)
			}
		})
	}
}

// When the auth service cannot listen, the process must exit rather than
// keep serving probes that say it is ready.
func TestStandaloneBinaryAuthPortBusy(t *testing.T) {
	g := NewWithT(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = ln.Close() }()
	tok := newToken(t)
	p := startProc(t, map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": tok}, []string{tok},
		"--standalone", "--auth-bind-address", ln.Addr().String(),
		"--health-probe-bind-address", freeAddr(t), "--metrics-bind-address", freeAddr(t))
	code := p.exitCode(5 * time.Second)
	g.Expect(code).NotTo(Equal(-1), "registry-auth must exit when the auth port is taken")
	g.Expect(code).NotTo(Equal(0))
	g.Expect(p.stderr.String()).To(ContainSubstring("auth service"))
}
