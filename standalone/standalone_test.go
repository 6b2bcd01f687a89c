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

package standalone

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	. "github.com/onsi/gomega"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// Tests of standalone mode: the environment (ParseEnv, ParseAPIKeysEnv), the
// first load (Loader.Start) and the file watcher (Loader.Run). Every
// decision is taken with Decide on the store's snapshot, as the handler does.
// Tokens are random per test and never printed: assertions on them use
// BeTrue/BeFalse with a fixed description, not the value.

// standaloneTestToken returns a fresh random token that passes the strength
// checks (64 hex digits, as `openssl rand -hex 32`).
func standaloneTestToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func standaloneEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// standaloneLogs is a logr sink that keeps every line, for the Run goroutine and
// the test to share.
type standaloneLogs struct {
	mu    sync.Mutex
	lines []string
}

func (c *standaloneLogs) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.lines = append(c.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 10})
}

func (c *standaloneLogs) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// errorLines are the lines logged with Error (funcr marks them with "error").
func (c *standaloneLogs) errorLines() []string {
	var out []string
	for _, l := range c.all() {
		if strings.Contains(l, `"error"`) {
			out = append(out, l)
		}
	}
	return out
}

// standaloneExpectNoSecret fails if any captured line contains one of secrets.
// The message names the index of the secret, never its value.
func standaloneExpectNoSecret(g Gomega, c *standaloneLogs, secrets ...string) {
	for _, l := range c.all() {
		for i, s := range secrets {
			if s != "" {
				g.Expect(strings.Contains(l, s)).To(BeFalse(), "log line contains secret #%d", i)
			}
		}
	}
}

// standaloneDecide asks the store's current snapshot about one request.
func standaloneDecide(store *policy.Store, method, url, token string, cookies ...string) policy.Decision {
	scheme, host, path, ok := check.SplitURL(url)
	if !ok {
		panic("standaloneDecide: bad URL " + url)
	}
	r := &check.Request{Scheme: scheme, Host: host, Path: path, Method: method, Cookie: cookies}
	if token != "" {
		r.Authorization = []string{"Bearer " + token}
	}
	return policy.Decide(context.Background(), store.Load(), r, time.Now())
}

const standaloneServersURL = "http://registry.local/api/servers"

func TestStandaloneParseEnv(t *testing.T) {
	tok := standaloneTestToken(t)
	tests := []struct {
		name string
		env  map[string]string
		// wantErr are substrings the error must contain; none means no error.
		wantErr []string
		check   func(g Gomega, e *Env)
	}{
		{
			name: "empty environment: everything off, defaults left to Compile",
			env:  map[string]string{},
			check: func(g Gomega, e *Env) {
				g.Expect(e.StaticEnabled).To(BeFalse())
				g.Expect(e.StaticToken).To(BeEmpty())
				g.Expect(e.StaticTokenFile).To(BeEmpty())
				g.Expect(e.PathPrefixes).To(BeNil())
				g.Expect(e.APIKeys).To(BeNil())
				g.Expect(e.OIDC).To(BeNil())
				g.Expect(e.SecretKey).To(BeEmpty())
				g.Expect(e.CookieName).To(BeEmpty())
				g.Expect(e.MaxAge).To(BeZero())
				g.Expect(e.GroupScopes).To(BeNil())
			},
		},
		{
			name: "REGISTRY_API_TOKEN",
			env:  map[string]string{"REGISTRY_API_TOKEN": tok},
			check: func(g Gomega, e *Env) {
				g.Expect(e.StaticToken == tok).To(BeTrue(), "StaticToken is the variable's value")
			},
		},
		{
			name:  "REGISTRY_API_TOKEN_FILE",
			env:   map[string]string{"REGISTRY_API_TOKEN_FILE": "/run/secrets/registry-token"},
			check: func(g Gomega, e *Env) { g.Expect(e.StaticTokenFile).To(Equal("/run/secrets/registry-token")) },
		},
		{
			name:    "REGISTRY_API_TOKEN and REGISTRY_API_TOKEN_FILE both set",
			env:     map[string]string{"REGISTRY_API_TOKEN": tok, "REGISTRY_API_TOKEN_FILE": "/run/secrets/t"},
			wantErr: []string{"REGISTRY_API_TOKEN", "REGISTRY_API_TOKEN_FILE", "not both"},
		},
		{
			name: "REGISTRY_API_PATH_PREFIXES is a trimmed comma list",
			env:  map[string]string{"REGISTRY_API_PATH_PREFIXES": " /api/ ,/v0.1/,, "},
			check: func(g Gomega, e *Env) {
				g.Expect(e.PathPrefixes).To(Equal([]string{"/api/", "/v0.1/"}))
			},
		},
		{
			name: "REGISTRY_API_KEYS",
			env: map[string]string{"REGISTRY_API_KEYS": `[{"name":"ci-read","key_file":"/run/secrets/ci","groups":["registry-readers"],` +
				`"path_prefixes":["/api/servers"],"methods":["GET","HEAD"]}]`},
			check: func(g Gomega, e *Env) {
				g.Expect(e.APIKeys).To(Equal([]APIKeyEnv{{
					Name: "ci-read", KeyFile: "/run/secrets/ci", Groups: []string{"registry-readers"},
					PathPrefixes: []string{"/api/servers"}, Methods: []string{"GET", "HEAD"},
				}}))
			},
		},
		{
			name:    "REGISTRY_API_KEYS expires_at not RFC 3339",
			env:     map[string]string{"REGISTRY_API_KEYS": `[{"name":"ci","key":"` + tok + `","expires_at":"2026-12-31"}]`},
			wantErr: []string{"REGISTRY_API_KEYS"},
		},
		{
			name: "REGISTRY_API_KEYS upstream form with expires_at",
			env: map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": tok,
				"REGISTRY_API_KEYS": `{"ci":{"key_file":"/run/secrets/ci","groups":["g"],"expires_at":"2027-01-31T12:00:00Z"}}`},
			check: func(g Gomega, e *Env) {
				g.Expect(e.APIKeys).To(HaveLen(1))
				g.Expect(e.APIKeys[0].ExpiresAt).NotTo(BeNil())
				g.Expect(e.APIKeys[0].ExpiresAt.Equal(time.Date(2027, 1, 31, 12, 0, 0, 0, time.UTC))).To(BeTrue())
			},
		},
		{
			name:    "REGISTRY_API_KEYS malformed",
			env:     map[string]string{"REGISTRY_API_KEYS": `[{"name":"ci","key":"` + tok + `","method":["GET"]}]`},
			wantErr: []string{"REGISTRY_API_KEYS", `"method"`},
		},
		{
			name: "OIDC variables",
			env: map[string]string{
				"OIDC_ISSUER_URL":     "https://idp.example/realms/mcp",
				"OIDC_CLIENT_ID":      "mcp-gateway, registry-cli",
				"OIDC_USERNAME_CLAIM": "email",
				"OIDC_GROUPS_CLAIM":   "roles",
				"OIDC_PRESET":         "keycloak",
			},
			check: func(g Gomega, e *Env) {
				g.Expect(e.OIDC).To(Equal(&jwt.Config{
					IssuerURL:     "https://idp.example/realms/mcp",
					Audiences:     []string{"mcp-gateway", "registry-cli"},
					UsernameClaim: "email",
					GroupsClaim:   "roles",
					Preset:        jwt.PresetKeycloak,
				}))
			},
		},
		{
			name:    "OIDC_ISSUER_URL without OIDC_CLIENT_ID",
			env:     map[string]string{"OIDC_ISSUER_URL": "https://idp.example"},
			wantErr: []string{"OIDC_CLIENT_ID"},
		},
		{
			name:    "bad OIDC_PRESET",
			env:     map[string]string{"OIDC_ISSUER_URL": "https://idp.example", "OIDC_CLIENT_ID": "c", "OIDC_PRESET": "ping"},
			wantErr: []string{"OIDC_PRESET", secret.Fingerprint([]byte("ping"))},
		},
		{
			name:    "OIDC_ISSUER_URL not an http(s) URL",
			env:     map[string]string{"OIDC_ISSUER_URL": "idp.example", "OIDC_CLIENT_ID": "c"},
			wantErr: []string{"OIDC_ISSUER_URL"},
		},
		{
			name:  "SECRET_KEY",
			env:   map[string]string{"SECRET_KEY": tok},
			check: func(g Gomega, e *Env) { g.Expect(e.SecretKey == tok).To(BeTrue(), "SecretKey is the variable's value") },
		},
		{
			name:  "SECRET_KEY_FILE",
			env:   map[string]string{"SECRET_KEY_FILE": "/run/secrets/sk"},
			check: func(g Gomega, e *Env) { g.Expect(e.SecretKeyFile).To(Equal("/run/secrets/sk")) },
		},
		{
			name:    "SECRET_KEY and SECRET_KEY_FILE both set",
			env:     map[string]string{"SECRET_KEY": tok, "SECRET_KEY_FILE": "/run/secrets/sk"},
			wantErr: []string{"SECRET_KEY", "SECRET_KEY_FILE"},
		},
		{
			name:  "SESSION_COOKIE_NAME",
			env:   map[string]string{"SESSION_COOKIE_NAME": "my_session"},
			check: func(g Gomega, e *Env) { g.Expect(e.CookieName).To(Equal("my_session")) },
		},
		{
			name:  "SESSION_MAX_AGE in seconds",
			env:   map[string]string{"SESSION_MAX_AGE": "28800"},
			check: func(g Gomega, e *Env) { g.Expect(e.MaxAge).To(Equal(8 * time.Hour)) },
		},
		{
			name:  "SESSION_MAX_AGE as a duration",
			env:   map[string]string{"SESSION_MAX_AGE": " 90m "},
			check: func(g Gomega, e *Env) { g.Expect(e.MaxAge).To(Equal(90 * time.Minute)) },
		},
		{
			name:    "SESSION_MAX_AGE garbage",
			env:     map[string]string{"SESSION_MAX_AGE": "soon"},
			wantErr: []string{"SESSION_MAX_AGE", secret.Fingerprint([]byte("soon"))},
		},
		{
			name:    "SESSION_MAX_AGE zero",
			env:     map[string]string{"SESSION_MAX_AGE": "0"},
			wantErr: []string{"SESSION_MAX_AGE"},
		},
		{
			name:    "SESSION_MAX_AGE negative",
			env:     map[string]string{"SESSION_MAX_AGE": "-1h"},
			wantErr: []string{"SESSION_MAX_AGE"},
		},
		{
			name: "GROUP_SCOPES",
			env:  map[string]string{"GROUP_SCOPES": `{"registry-readers":["mcp-servers-restricted/read"],"admins":["a","b"]}`},
			check: func(g Gomega, e *Env) {
				g.Expect(e.GroupScopes).To(Equal(map[string][]string{
					"registry-readers": {"mcp-servers-restricted/read"},
					"admins":           {"a", "b"},
				}))
			},
		},
		{
			name:    "GROUP_SCOPES not JSON",
			env:     map[string]string{"GROUP_SCOPES": `{"admins":`},
			wantErr: []string{"GROUP_SCOPES"},
		},
		{
			name:    "GROUP_SCOPES a list, not an object",
			env:     map[string]string{"GROUP_SCOPES": `["admins"]`},
			wantErr: []string{"GROUP_SCOPES"},
		},
		{
			name:    "GROUP_SCOPES with a scope that is not a string",
			env:     map[string]string{"GROUP_SCOPES": `{"admins":[1]}`},
			wantErr: []string{"GROUP_SCOPES"},
		},
		{
			name: "several errors are reported together",
			env: map[string]string{
				"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "maybe",
				"SESSION_MAX_AGE":                    "soon",
				"GROUP_SCOPES":                       "[",
				"OIDC_ISSUER_URL":                    "https://idp.example",
				"OIDC_PRESET":                        "ping",
			},
			wantErr: []string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED", "SESSION_MAX_AGE", "GROUP_SCOPES", "OIDC_CLIENT_ID", "OIDC_PRESET"},
		},
	}
	for _, v := range []string{"true", "TRUE", "True", "1", "yes", "YES", "on", " true "} {
		tests = append(tests, struct {
			name    string
			env     map[string]string
			wantErr []string
			check   func(g Gomega, e *Env)
		}{
			name:  "REGISTRY_STATIC_TOKEN_AUTH_ENABLED=" + v,
			env:   map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": v},
			check: func(g Gomega, e *Env) { g.Expect(e.StaticEnabled).To(BeTrue()) },
		})
	}
	for _, v := range []string{"false", "FALSE", "0", "no", "off", "  "} {
		tests = append(tests, struct {
			name    string
			env     map[string]string
			wantErr []string
			check   func(g Gomega, e *Env)
		}{
			name:  "REGISTRY_STATIC_TOKEN_AUTH_ENABLED=" + v,
			env:   map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": v},
			check: func(g Gomega, e *Env) { g.Expect(e.StaticEnabled).To(BeFalse()) },
		})
	}
	for _, v := range []string{"maybe", "enabled", "2", "t", "truee"} {
		tests = append(tests, struct {
			name    string
			env     map[string]string
			wantErr []string
			check   func(g Gomega, e *Env)
		}{
			name:    "REGISTRY_STATIC_TOKEN_AUTH_ENABLED=" + v,
			env:     map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": v},
			wantErr: []string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED", fmt.Sprintf("a %d-character value, fingerprint %s", len(v), secret.Fingerprint([]byte(v)))},
		})
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			e, err := ParseEnv(standaloneEnv(tc.env))
			if len(tc.wantErr) > 0 {
				g.Expect(err).To(HaveOccurred())
				for _, s := range tc.wantErr {
					g.Expect(err.Error()).To(ContainSubstring(s))
				}
				g.Expect(strings.Contains(err.Error(), tok)).To(BeFalse(), "the error must not contain the token")
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(e).NotTo(BeNil())
			tc.check(g, e)
		})
	}
}

func TestStandaloneParseEnvErrorsAreSeparate(t *testing.T) {
	g := NewWithT(t)
	_, err := ParseEnv(standaloneEnv(map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "maybe",
		"SESSION_MAX_AGE":                    "soon",
	}))
	g.Expect(err).To(HaveOccurred())
	// errors.Join: one line per problem, so each can be read on its own.
	lines := strings.Split(err.Error(), "\n")
	g.Expect(lines).To(HaveLen(2))
	g.Expect(lines[0]).To(ContainSubstring("REGISTRY_STATIC_TOKEN_AUTH_ENABLED"))
	g.Expect(lines[1]).To(ContainSubstring("SESSION_MAX_AGE"))
}

func TestStandaloneParseAPIKeysEnv(t *testing.T) {
	key := standaloneTestToken(t)
	one := `{"name":"ci","key":"` + key + `"}`
	tests := []struct {
		name    string
		in      string
		want    []APIKeyEnv
		wantErr string
	}{
		{
			name: "valid list",
			in: ` [` + one + `,
			      {"name":"ci-read","key_file":"/run/secrets/ci-read","groups":["registry-readers"],
			       "path_prefixes":["/api/servers"],"methods":["GET","HEAD"]}]
			`,
			want: []APIKeyEnv{
				{Name: "ci", Key: key},
				{Name: "ci-read", KeyFile: "/run/secrets/ci-read", Groups: []string{"registry-readers"},
					PathPrefixes: []string{"/api/servers"}, Methods: []string{"GET", "HEAD"}},
			},
		},
		{name: "empty list", in: `[]`, want: []APIKeyEnv{}},
		{name: "unknown field (method for methods)", in: `[{"name":"ci","key":"` + key + `","method":["GET"]}]`, wantErr: `"method"`},
		{name: "missing name", in: `[{"key":"` + key + `"}]`, wantErr: "entry 0 has no name"},
		{name: "empty name", in: `[` + one + `,{"name":"","key":"` + key + `"}]`, wantErr: "entry 1 has no name"},
		{name: "both key and key_file", in: `[{"name":"ci","key":"` + key + `","key_file":"/run/secrets/ci"}]`, wantErr: "exactly one of key and key_file"},
		{name: "neither key nor key_file", in: `[{"name":"ci","groups":["g"]}]`, wantErr: "exactly one of key and key_file"},
		{name: "trailing list", in: `[` + one + `] [` + one + `]`, wantErr: "trailing"},
		{name: "trailing word", in: `[` + one + `] x`, wantErr: "trailing"},
		{name: "trailing object", in: `[` + one + `] {}`, wantErr: "trailing"},
		// json.Decoder.More reports false before ']' and '}', so these
		// slip past a More-based check.
		{name: "trailing closing bracket", in: `[` + one + `]]`, wantErr: "trailing"},
		{name: "trailing closing brace", in: `[` + one + `]}`, wantErr: "trailing"},
		// An object is the upstream form; this one is not a valid one.
		{name: "an object that is no upstream form", in: one, wantErr: `entry "name"`},
		{name: "not a list: a string", in: `"ci"`, wantErr: "JSON list"},
		{name: "not JSON", in: `name=ci`, wantErr: "JSON list"},
		{name: "truncated", in: `[` + one, wantErr: "JSON list"},
		{name: "wrong type", in: `[{"name":"ci","key":"` + key + `","methods":"GET"}]`, wantErr: "JSON list"},
		// A field twice, in any case: Go's decoder would take the last.
		{name: "methods twice", in: `[{"name":"ci","key":"` + key + `","methods":["GET"],"methods":[]}]`, wantErr: `"methods" is named twice`},
		{name: "methods in another case", in: `[{"name":"ci","key":"` + key + `","methods":["GET"],"Methods":[]}]`, wantErr: "differ only in case"},

		// The upstream auth server's object form.
		{
			name: "upstream object",
			in:   `{"monitoring":{"key":"` + key + `","groups":["mcp-readonly"]},"deploy":{"key_file":"/run/secrets/deploy","groups":["mcp-registry-admin"],"description":"CD"}}`,
			want: []APIKeyEnv{
				{Name: "monitoring", Key: key, Groups: []string{"mcp-readonly"}},
				{Name: "deploy", KeyFile: "/run/secrets/deploy", Groups: []string{"mcp-registry-admin"}},
			},
		},
		{name: "upstream: an empty object", in: `{}`, want: []APIKeyEnv{}},
		{name: "upstream: a name twice", in: `{"ci":{"key":"` + key + `","groups":["g"]},"ci":{"key":"` + key + `x","groups":["g"]}}`, wantErr: `"ci" is named twice`},
		{name: "upstream: an upper-case name", in: `{"CI":{"key":"` + key + `","groups":["g"]}}`, wantErr: `a name must match`},
		{name: "upstream: a name with a dot", in: `{"ci.read":{"key":"` + key + `","groups":["g"]}}`, wantErr: `a name must match`},
		{name: "upstream: a name of 65 characters", in: `{"` + strings.Repeat("a", 65) + `":{"key":"` + key + `","groups":["g"]}}`, wantErr: `a name must match`},
		{name: "upstream: reserved legacy", in: `{"legacy":{"key":"` + key + `","groups":["g"]}}`, wantErr: "reserved"},
		{name: "upstream: reserved network-trusted", in: `{"network-trusted":{"key":"` + key + `","groups":["g"]}}`, wantErr: "reserved"},
		{name: "upstream: no group", in: `{"ci":{"key":"` + key + `"}}`, wantErr: "at least one group"},
		{name: "upstream: empty groups", in: `{"ci":{"key":"` + key + `","groups":[]}}`, wantErr: "at least one group"},
		{name: "upstream: the same key twice", in: `{"a":{"key":"` + key + `","groups":["g"]},"b":{"key":" ` + key + `\n","groups":["g"]}}`, wantErr: `the same key`},
		{name: "upstream: read_only is refused, not ignored", in: `{"ci":{"key":"` + key + `","groups":["g"],"read_only":true}}`, wantErr: `"read_only"`},
		{name: "upstream: an entry that is not an object", in: `{"ci":"` + key + `"}`, wantErr: `entry "ci"`},
		{name: "upstream: trailing data", in: `{"ci":{"key":"` + key + `","groups":["g"]}} x`, wantErr: "trailing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			keys, _, err := ParseAPIKeysEnv(tc.in)
			if tc.wantErr != "" {
				g.Expect(err).To(HaveOccurred())
				g.Expect(err.Error()).To(ContainSubstring(tc.wantErr))
				g.Expect(strings.Contains(err.Error(), key)).To(BeFalse(), "the error must not contain the key")
				g.Expect(keys).To(BeNil())
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(keys).To(Equal(tc.want))
		})
	}
}

// standaloneStart parses env, runs Start and returns the pieces.
func standaloneStart(t *testing.T, env map[string]string) (*Loader, *policy.Store, *standaloneLogs, error) {
	t.Helper()
	e, err := ParseEnv(standaloneEnv(env))
	if err != nil {
		t.Fatalf("ParseEnv: %v", err)
	}
	logs := &standaloneLogs{}
	store := policy.NewStore(policy.StoreOptions{SelectOnlyPolicy: true})
	sa := NewLoader(e, store, jwt.NewIssuers(nil), logs.logger(), policy.CompileOptions{})
	sa.PollInterval = 20 * time.Millisecond
	return sa, store, logs, sa.Start(context.Background())
}

// standaloneRun runs sa.Run until the test ends.
func standaloneRun(t *testing.T, sa *Loader) (done <-chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		sa.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Error("Loader.Run did not return after its context ended")
		}
	})
	return ch
}

// standaloneClosedAddr returns an address on 127.0.0.1 where nothing listens.
func standaloneClosedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func TestStandaloneStart(t *testing.T) {
	tok := standaloneTestToken(t)
	key := standaloneTestToken(t)
	other := standaloneTestToken(t)

	type probe struct {
		method, url, token string
		cookies            []string
		status             int
		reason             check.Reason
		// user and method are checked when the request is allowed.
		user       string
		authMethod check.Method
	}
	allowStatic := probe{method: "GET", url: standaloneServersURL, token: tok, status: 200, reason: check.ReasonAllowedStaticToken, user: "network-user", authMethod: check.MethodNetworkTrusted}
	refuseStatic := probe{method: "GET", url: standaloneServersURL, token: tok, status: 401, reason: check.ReasonInvalidCredentials}

	tests := []struct {
		name string
		env  map[string]string
		// wantProblem is the check.Reason of the authn.Problem Start must fail with; ""
		// means Start succeeds.
		wantProblem string
		probes      []probe
		// wantErrorLog, when set, must appear in exactly one Error line.
		wantErrorLog string
		// secrets must appear in no log line and no error.
		secrets []string
	}{
		{
			name: "enabled with a strong token",
			env:  map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": tok},
			probes: []probe{
				allowStatic,
				{method: "POST", url: "http://registry.local/v0.1/servers/x", token: tok, status: 200, reason: check.ReasonAllowedStaticToken, user: "network-user", authMethod: check.MethodNetworkTrusted},
				{method: "GET", url: "http://registry.local/mcpserver/mcp", token: tok, status: 401, reason: check.ReasonRegistryCredOnGateway},
				{method: "GET", url: standaloneServersURL, token: other, status: 401, reason: check.ReasonInvalidCredentials},
				{method: "GET", url: standaloneServersURL, status: 401, reason: check.ReasonNoCredentials},
				// A browser with a session cookie skips the static token.
				{method: "GET", url: standaloneServersURL, token: tok, cookies: []string{"mcp_gateway_session=x"}, status: 401, reason: check.ReasonInvalidCredentials},
			},
			secrets: []string{tok},
		},
		{
			name:   "enabled with a token surrounded by white space (echo > file, .env)",
			env:    map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": " " + tok + "\n"},
			probes: []probe{allowStatic},
		},
		{
			name:    "enabled, custom SESSION_COOKIE_NAME skips the static token",
			env:     map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": tok, "SESSION_COOKIE_NAME": "web"},
			secrets: []string{tok},
			probes: []probe{
				{method: "GET", url: standaloneServersURL, token: tok, cookies: []string{"web=1"}, status: 401, reason: check.ReasonInvalidCredentials},
				{method: "GET", url: standaloneServersURL, token: tok, cookies: []string{"mcp_gateway_session=1"}, status: 200, reason: check.ReasonAllowedStaticToken, user: "network-user", authMethod: check.MethodNetworkTrusted},
			},
		},
		{
			name:    "enabled with custom REGISTRY_API_PATH_PREFIXES",
			env:     map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": tok, "REGISTRY_API_PATH_PREFIXES": "/registry/"},
			secrets: []string{tok},
			probes: []probe{
				{method: "GET", url: "http://registry.local/registry/servers", token: tok, status: 200, reason: check.ReasonAllowedStaticToken, user: "network-user", authMethod: check.MethodNetworkTrusted},
				{method: "GET", url: standaloneServersURL, token: tok, status: 401, reason: check.ReasonRegistryCredOnGateway},
			},
		},
		{
			name:         "enabled with an empty token falls back to JWT and logs an error",
			env:          map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": ""},
			probes:       []probe{refuseStatic, {method: "GET", url: standaloneServersURL, status: 401, reason: check.ReasonNoCredentials}},
			wantErrorLog: authn.ProblemTokenEmpty,
		},
		{
			name:         "enabled with a blank token is empty",
			env:          map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": " \n\t"},
			probes:       []probe{refuseStatic},
			wantErrorLog: authn.ProblemTokenEmpty,
		},
		{
			name:         "enabled with an empty token file falls back as well",
			env:          map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN_FILE": "EMPTYFILE"},
			probes:       []probe{refuseStatic},
			wantErrorLog: authn.ProblemTokenEmpty,
		},
		{
			name:        "enabled with changeme",
			env:         map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": "changeme"},
			wantProblem: authn.ProblemTokenTooWeak,
			probes:      []probe{{method: "GET", url: standaloneServersURL, token: "changeme", status: 401, reason: check.ReasonInvalidCredentials}},
			secrets:     []string{"changeme"},
		},
		{
			name:        "enabled with a 10-character token",
			env:         map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": "Zq8rT2mX4k"},
			wantProblem: authn.ProblemTokenTooWeak,
			probes:      []probe{{method: "GET", url: standaloneServersURL, token: "Zq8rT2mX4k", status: 401, reason: check.ReasonInvalidCredentials}},
			secrets:     []string{"Zq8rT2mX4k"},
		},
		{
			name:        "enabled with 40 times a",
			env:         map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": strings.Repeat("a", 40)},
			wantProblem: authn.ProblemTokenTooWeak,
			probes:      []probe{{method: "GET", url: standaloneServersURL, token: strings.Repeat("a", 40), status: 401, reason: check.ReasonInvalidCredentials}},
			secrets:     []string{strings.Repeat("a", 40)},
		},
		{
			name:        "enabled with a long token holding a placeholder",
			env:         map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": "your-generated-token-" + tok[:20]},
			wantProblem: authn.ProblemTokenTooWeak,
			secrets:     []string{"your-generated-token-" + tok[:20]},
		},
		{
			name:        "enabled with a missing token file",
			env:         map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN_FILE": "MISSINGFILE"},
			wantProblem: authn.ProblemSecretNotFound,
		},
		{
			name:    "disabled with a token set",
			env:     map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "false", "REGISTRY_API_TOKEN": tok},
			probes:  []probe{refuseStatic},
			secrets: []string{tok},
		},
		{
			name:    "unset enabled with a token set",
			env:     map[string]string{"REGISTRY_API_TOKEN": tok},
			probes:  []probe{refuseStatic},
			secrets: []string{tok},
		},
		{
			name: "read-only API key",
			env: map[string]string{
				"REGISTRY_API_KEYS": `[{"name":"ci-read","key":"` + key + `","groups":["registry-readers"],"methods":["GET"]}]`,
				"GROUP_SCOPES":      `{"registry-readers":["mcp-servers-unrestricted/read"]}`,
			},
			secrets: []string{key},
			probes: []probe{
				{method: "GET", url: standaloneServersURL, token: key, status: 200, reason: check.ReasonAllowedAPIKey, user: "ci-read", authMethod: check.MethodNetworkTrusted},
				{method: "get", url: standaloneServersURL, token: key, status: 200, reason: check.ReasonAllowedAPIKey, user: "ci-read", authMethod: check.MethodNetworkTrusted},
				{method: "POST", url: standaloneServersURL, token: key, status: 403, reason: check.ReasonAPIKeyForbidden},
				{method: "DELETE", url: "http://registry.local/v0.1/servers/x", token: key, status: 403, reason: check.ReasonAPIKeyForbidden},
				{method: "GET", url: "http://registry.local/mcpserver/mcp", token: key, status: 401, reason: check.ReasonRegistryCredOnGateway},
				// The static token is not enabled.
				{method: "GET", url: standaloneServersURL, token: tok, status: 401, reason: check.ReasonInvalidCredentials},
			},
		},
		{
			name: "API keys with expires_at",
			env: map[string]string{
				"REGISTRY_API_KEYS": `[{"name":"old","key":"` + key + `","expires_at":"2020-01-01T00:00:00Z"},` +
					`{"name":"ci","key":"` + tok + `","expires_at":"2999-01-01T00:00:00Z"}]`,
			},
			secrets: []string{key, tok},
			probes: []probe{
				{method: "GET", url: standaloneServersURL, token: key, status: 401, reason: check.ReasonCredentialExpired},
				{method: "GET", url: standaloneServersURL, token: tok, status: 200, reason: check.ReasonAllowedAPIKey, user: "ci", authMethod: check.MethodNetworkTrusted},
			},
		},
		{
			name: "API key narrowed to a path",
			env: map[string]string{
				"REGISTRY_API_KEYS": `[{"name":"ci","key":"` + key + `","path_prefixes":["/api/servers"]}]`,
			},
			secrets: []string{key},
			probes: []probe{
				{method: "POST", url: standaloneServersURL + "/x", token: key, status: 200, reason: check.ReasonAllowedAPIKey, user: "ci", authMethod: check.MethodNetworkTrusted},
				{method: "GET", url: "http://registry.local/api/agents", token: key, status: 403, reason: check.ReasonAPIKeyForbidden},
			},
		},
		{
			name: "static token and API key together",
			env: map[string]string{
				"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "yes",
				"REGISTRY_API_TOKEN":                 tok,
				"REGISTRY_API_KEYS":                  `[{"name":"ci-read","key":"` + key + `","methods":["GET"]}]`,
			},
			secrets: []string{tok, key},
			probes: []probe{
				allowStatic,
				{method: "GET", url: standaloneServersURL, token: key, status: 200, reason: check.ReasonAllowedAPIKey, user: "ci-read", authMethod: check.MethodNetworkTrusted},
				{method: "POST", url: standaloneServersURL, token: key, status: 403, reason: check.ReasonAPIKeyForbidden},
			},
		},
		{
			name:        "weak API key",
			env:         map[string]string{"REGISTRY_API_KEYS": `[{"name":"ci","key":"changeme"}]`},
			wantProblem: authn.ProblemTokenTooWeak,
			probes:      []probe{{method: "GET", url: standaloneServersURL, token: "changeme", status: 401, reason: check.ReasonInvalidCredentials}},
			secrets:     []string{"changeme"},
		},
		{
			name: "OIDC issuer unreachable: Start succeeds, static token works, JWTs wait",
			env: map[string]string{
				"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": tok,
				"OIDC_ISSUER_URL": "http://" + standaloneClosedAddr(t) + "/realms/mcp", "OIDC_CLIENT_ID": "mcp",
			},
			secrets: []string{tok},
			probes: []probe{
				allowStatic,
				{method: "GET", url: "http://registry.local/mcpserver/mcp", token: "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", status: 401, reason: check.ReasonOIDCIssuerNotDiscovered},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			env := map[string]string{}
			dir := t.TempDir()
			for k, v := range tc.env {
				switch v {
				case "EMPTYFILE":
					v = filepath.Join(dir, "empty")
					g.Expect(os.WriteFile(v, nil, 0o600)).To(Succeed())
				case "MISSINGFILE":
					v = filepath.Join(dir, "missing")
				}
				env[k] = v
			}
			_, store, logs, err := standaloneStart(t, env)

			if tc.wantProblem == "" {
				g.Expect(err).NotTo(HaveOccurred())
			} else {
				g.Expect(err).To(HaveOccurred())
				var p authn.Problem
				g.Expect(errors.As(err, &p)).To(BeTrue(), "Start's error carries the authn.Problem")
				g.Expect(p.Reason).To(Equal(tc.wantProblem))
				g.Expect(p.Message).NotTo(BeEmpty())
			}
			for _, s := range tc.secrets {
				if err != nil {
					g.Expect(strings.Contains(err.Error(), s)).To(BeFalse(), "Start's error must not contain a secret")
				}
			}
			standaloneExpectNoSecret(g, logs, tc.secrets...)

			for _, pr := range tc.probes {
				d := standaloneDecide(store, pr.method, pr.url, pr.token, pr.cookies...)
				desc := pr.method + " " + pr.url
				g.Expect(d.Reason).To(Equal(pr.reason), desc)
				g.Expect(d.Status()).To(Equal(pr.status), desc)
				if pr.status == 200 {
					g.Expect(d.Identity).NotTo(BeNil(), desc)
					g.Expect(d.Identity.Username).To(Equal(pr.user), desc)
					g.Expect(d.Identity.Method).To(Equal(pr.authMethod), desc)
				} else {
					g.Expect(d.Identity).To(BeNil(), desc)
				}
			}

			if tc.wantErrorLog != "" {
				var hits []string
				for _, l := range logs.errorLines() {
					if strings.Contains(l, tc.wantErrorLog) {
						hits = append(hits, l)
					}
				}
				g.Expect(hits).To(HaveLen(1), "one error line names %s", tc.wantErrorLog)
				g.Expect(hits[0]).To(ContainSubstring("empty"))
			}
		})
	}
}

// The static identity is the original's: full admin on the Registry API.
func TestStandaloneStaticIdentity(t *testing.T) {
	g := NewWithT(t)
	tok := standaloneTestToken(t)
	_, store, _, err := standaloneStart(t, map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "1", "REGISTRY_API_TOKEN": tok})
	g.Expect(err).NotTo(HaveOccurred())
	d := standaloneDecide(store, "GET", standaloneServersURL, tok)
	g.Expect(d.Identity).NotTo(BeNil())
	g.Expect(d.Identity.Username).To(Equal("network-user"))
	g.Expect(d.Identity.ClientID).To(Equal("network-trusted"))
	g.Expect(d.Identity.Groups).To(Equal([]string{"mcp-registry-admin"}))
	g.Expect(d.Identity.Scopes).To(Equal([]string{"mcp-registry-admin", "mcp-servers-unrestricted/read", "mcp-servers-unrestricted/execute"}))
	g.Expect(d.Policy.Key()).To(Equal(PolicyKey))
	// /validate/standalone/default selects the same policy.
	d = policy.Decide(context.Background(), store.Load(), &check.Request{Policy: PolicyKey, Scheme: "http", Host: "registry.local", Path: "/api/servers", Authorization: []string{"Bearer " + tok}}, time.Now())
	g.Expect(d.Reason).To(Equal(check.ReasonAllowedStaticToken))
}

// The empty-token error is logged once, not again on every poll.
func TestStandaloneEmptyTokenLoggedOnce(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	g.Expect(os.WriteFile(keyFile, []byte(standaloneTestToken(t)), 0o600)).To(Succeed())
	// A file to watch, so Run polls and reloads.
	sa, _, logs, err := standaloneStart(t, map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_KEYS":                  `[{"name":"ci","key_file":"` + keyFile + `"}]`,
	})
	g.Expect(err).NotTo(HaveOccurred())
	standaloneRun(t, sa)
	time.Sleep(200 * time.Millisecond) // ten polls
	count := func() int {
		n := 0
		for _, l := range logs.errorLines() {
			if strings.Contains(l, authn.ProblemTokenEmpty) {
				n++
			}
		}
		return n
	}
	g.Expect(count()).To(Equal(1))
	// A reload for another reason (the key rotates) does not log it again:
	// the set of problems did not change. The key is replaced atomically: a
	// poll that read a half-written file would see a new problem (an empty
	// key) and rightly log the set again.
	tmp := filepath.Join(dir, "key.new")
	g.Expect(os.WriteFile(tmp, []byte(standaloneTestToken(t)), 0o600)).To(Succeed())
	g.Expect(os.Rename(tmp, keyFile)).To(Succeed())
	g.Eventually(func() int { return len(logs.all()) }, 2*time.Second, 10*time.Millisecond).Should(BeNumerically(">", 2))
	g.Consistently(count, 200*time.Millisecond, 20*time.Millisecond).Should(Equal(1))
}

// standaloneEventually waits until tok gets want (200 or 401) on /api/servers.
func standaloneEventually(g Gomega, store *policy.Store, tok string, want int, desc string) {
	g.Eventually(func() int {
		return standaloneDecide(store, "GET", standaloneServersURL, tok).Status()
	}, 2*time.Second, 10*time.Millisecond).Should(Equal(want), desc)
}

func TestStandaloneFileReload(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "registry-token")
	tok1, tok2, tok3 := standaloneTestToken(t), standaloneTestToken(t), standaloneTestToken(t)
	g.Expect(os.WriteFile(file, []byte(tok1+"\n"), 0o600)).To(Succeed())

	sa, store, logs, err := standaloneStart(t, map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_TOKEN_FILE":            file,
	})
	g.Expect(err).NotTo(HaveOccurred())
	done := standaloneRun(t, sa)
	standaloneEventually(g, store, tok1, 200, "first token allowed")

	// Rotate in place.
	g.Expect(os.WriteFile(file, []byte(tok2+"\n"), 0o600)).To(Succeed())
	standaloneEventually(g, store, tok2, 200, "rotated token allowed")
	standaloneEventually(g, store, tok1, 401, "old token refused after rotation")

	// Deleted: fail closed, keep running.
	g.Expect(os.Remove(file)).To(Succeed())
	standaloneEventually(g, store, tok2, 401, "token refused once its file is gone")
	g.Consistently(done, 100*time.Millisecond).ShouldNot(BeClosed(), "Run keeps running")
	g.Expect(standaloneDecide(store, "GET", standaloneServersURL, tok2).Reason).To(Equal(check.ReasonInvalidCredentials))

	// Restored.
	g.Expect(os.WriteFile(file, []byte(tok3), 0o600)).To(Succeed())
	standaloneEventually(g, store, tok3, 200, "token allowed once its file is back")
	g.Expect(standaloneDecide(store, "GET", standaloneServersURL, tok2).Status()).To(Equal(401))

	// Weakened in place: refused, not kept.
	g.Expect(os.WriteFile(file, []byte("changeme"), 0o600)).To(Succeed())
	standaloneEventually(g, store, tok3, 401, "old token refused after the file turned weak")
	g.Expect(standaloneDecide(store, "GET", standaloneServersURL, "changeme").Status()).To(Equal(401))

	standaloneExpectNoSecret(g, logs, tok1, tok2, tok3, "changeme")
	var missing bool
	for _, l := range logs.errorLines() {
		missing = missing || strings.Contains(l, authn.ProblemSecretNotFound)
	}
	g.Expect(missing).To(BeTrue(), "the missing file was logged")
}

// An IdP that accepts connections and never answers holds neither start-up
// (the probes wait for Start) nor the secret files' checks: a replaced token
// file is in force on time while discovery hangs.
func TestStandaloneHangingIssuer(t *testing.T) {
	g := NewWithT(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // read nothing, answer nothing
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})

	dir := t.TempDir()
	file := filepath.Join(dir, "registry-token")
	tok1, tok2 := standaloneTestToken(t), standaloneTestToken(t)
	g.Expect(os.WriteFile(file, []byte(tok1), 0o600)).To(Succeed())
	type started struct {
		sa    *Loader
		store *policy.Store
		err   error
	}
	ch := make(chan started, 1)
	go func() {
		sa, store, _, err := standaloneStart(t, map[string]string{
			"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN_FILE": file,
			"OIDC_ISSUER_URL": "http://" + ln.Addr().String() + "/realms/mcp", "OIDC_CLIENT_ID": "mcp",
		})
		ch <- started{sa, store, err}
	}()
	var st started
	// Start's try is bounded by startDiscoveryTimeout, well inside the
	// fetch timeout the IdP would otherwise hold it for.
	g.Eventually(ch, jwt.FetchTimeout-time.Second).Should(Receive(&st), "Start waits for the IdP at most startDiscoveryTimeout")
	g.Expect(st.err).NotTo(HaveOccurred())
	standaloneEventually(g, st.store, tok1, 200, "the static token works without the IdP")

	// Retry at once, past the remembered failure of Start's try.
	st.sa.discoveryRetry = 10 * time.Millisecond
	st.sa.issuers.SetClock(func() time.Time { return time.Now().Add(time.Minute) })
	standaloneRun(t, st.sa)
	g.Eventually(func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(conns)
	}, 2*time.Second, 5*time.Millisecond).Should(BeNumerically(">=", 2), "Run's discovery is under way and hangs")

	g.Expect(os.WriteFile(file, []byte(tok2), 0o600)).To(Succeed())
	standaloneEventually(g, st.store, tok2, 200, "the new token works while discovery hangs")
	standaloneEventually(g, st.store, tok1, 401, "the old token is refused while discovery hangs")
}

// Kubernetes and Docker mount secrets as token -> ..data/token with
// ..data -> ..<timestamp>, and update them by swapping ..data atomically.
func TestStandaloneFileReloadSymlinkSwap(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	tokA, tokB := standaloneTestToken(t), standaloneTestToken(t)
	writeVersion := func(name, tok string) {
		g.Expect(os.Mkdir(filepath.Join(dir, name), 0o700)).To(Succeed())
		g.Expect(os.WriteFile(filepath.Join(dir, name, "token"), []byte(tok+"\n"), 0o600)).To(Succeed())
	}
	swapData := func(target string) {
		tmp := filepath.Join(dir, "..data_tmp")
		g.Expect(os.Symlink(target, tmp)).To(Succeed())
		g.Expect(os.Rename(tmp, filepath.Join(dir, "..data"))).To(Succeed())
	}
	writeVersion("..2026_01_01_00_00_00.1", tokA)
	g.Expect(os.Symlink("..2026_01_01_00_00_00.1", filepath.Join(dir, "..data"))).To(Succeed())
	file := filepath.Join(dir, "token")
	g.Expect(os.Symlink(filepath.Join("..data", "token"), file)).To(Succeed())

	sa, store, logs, err := standaloneStart(t, map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_TOKEN_FILE":            file,
	})
	g.Expect(err).NotTo(HaveOccurred())
	done := standaloneRun(t, sa)
	standaloneEventually(g, store, tokA, 200, "first token allowed")

	// Atomic swap, then the old version is removed, as kubelet does.
	writeVersion("..2026_01_02_00_00_00.2", tokB)
	swapData("..2026_01_02_00_00_00.2")
	g.Expect(os.RemoveAll(filepath.Join(dir, "..2026_01_01_00_00_00.1"))).To(Succeed())
	standaloneEventually(g, store, tokB, 200, "swapped token allowed")
	standaloneEventually(g, store, tokA, 401, "old token refused after the swap")

	// The secret disappears (dangling symlinks): fail closed.
	g.Expect(os.Remove(filepath.Join(dir, "..data"))).To(Succeed())
	standaloneEventually(g, store, tokB, 401, "token refused once the secret is gone")
	g.Consistently(done, 100*time.Millisecond).ShouldNot(BeClosed(), "Run keeps running")

	// It comes back.
	swapData("..2026_01_02_00_00_00.2")
	standaloneEventually(g, store, tokB, 200, "token allowed once the secret is back")

	standaloneExpectNoSecret(g, logs, tokA, tokB)
}

// API keys from files are re-read as well.
func TestStandaloneAPIKeyFileReload(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "ci")
	k1, k2 := standaloneTestToken(t), standaloneTestToken(t)
	g.Expect(os.WriteFile(file, []byte(k1), 0o600)).To(Succeed())
	sa, store, logs, err := standaloneStart(t, map[string]string{
		"REGISTRY_API_KEYS": `[{"name":"ci","key_file":"` + file + `","methods":["GET"]}]`,
	})
	g.Expect(err).NotTo(HaveOccurred())
	standaloneRun(t, sa)
	g.Expect(standaloneDecide(store, "GET", standaloneServersURL, k1).Reason).To(Equal(check.ReasonAllowedAPIKey))

	g.Expect(os.WriteFile(file, []byte(k2), 0o600)).To(Succeed())
	g.Eventually(func() check.Reason { return standaloneDecide(store, "GET", standaloneServersURL, k2).Reason }, 2*time.Second, 10*time.Millisecond).
		Should(Equal(check.ReasonAllowedAPIKey))
	g.Expect(standaloneDecide(store, "GET", standaloneServersURL, k1).Reason).To(Equal(check.ReasonInvalidCredentials))
	g.Expect(standaloneDecide(store, http.MethodPost, standaloneServersURL, k2).Reason).To(Equal(check.ReasonAPIKeyForbidden))
	standaloneExpectNoSecret(g, logs, k1, k2)
}

// Start's error is what a standalone user reads on stderr before the process
// exits. It should name what they set (REGISTRY_API_TOKEN, not the
// operator's spec.staticToken) and the reason code.
func TestStandaloneStartErrorNamesVariable(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr []string
	}{
		{
			name:    "weak static token",
			env:     map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": "changeme"},
			wantErr: []string{"REGISTRY_API_TOKEN", authn.ProblemTokenTooWeak},
		},
		{
			name:    "weak API key",
			env:     map[string]string{"REGISTRY_API_KEYS": `[{"name":"ci","key":"changeme"}]`},
			wantErr: []string{"REGISTRY_API_KEYS", authn.ProblemTokenTooWeak},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, _, _, err := standaloneStart(t, tc.env)
			g.Expect(err).To(HaveOccurred())
			for _, s := range tc.wantErr {
				g.Expect(err.Error()).To(ContainSubstring(s))
			}
			g.Expect(err.Error()).NotTo(ContainSubstring("changeme"))
		})
	}
}

// A secret put in the wrong variable (a *_FILE variable, or a boolean) is
// not repeated in the error that start-up stops with, nor in the log.
func TestStandaloneMisplacedSecretNotEchoed(t *testing.T) {
	tok := standaloneTestToken(t)
	for name, env := range map[string]map[string]string{
		"token in REGISTRY_API_TOKEN_FILE":            {"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN_FILE": tok},
		"token in REGISTRY_STATIC_TOKEN_AUTH_ENABLED": {"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": tok},
		"token in SESSION_MAX_AGE":                    {"SESSION_MAX_AGE": tok, "SECRET_KEY": tok},
		"token in a key_file":                         {"REGISTRY_API_KEYS": `[{"name":"ci","key_file":"` + tok + `"}]`},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			e, err := ParseEnv(standaloneEnv(env))
			if err == nil {
				logs := &standaloneLogs{}
				sa := NewLoader(e, policy.NewStore(policy.StoreOptions{SelectOnlyPolicy: true}), jwt.NewIssuers(nil), logs.logger(), policy.CompileOptions{})
				err = sa.Start(context.Background())
				standaloneExpectNoSecret(g, logs, tok)
			}
			g.Expect(err).To(HaveOccurred())
			g.Expect(err.Error()).NotTo(ContainSubstring(tok))
			g.Expect(err.Error()).To(ContainSubstring(secret.Fingerprint([]byte(tok))), "the fingerprint tells which value it was")
		})
	}
	// A path is not repeated either (a secret with a '/' in it looks like
	// one): the variable is named, and the fingerprint of the value.
	_, _, _, err := standaloneStart(t, map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN_FILE": "/run/secrets/missing"})
	NewWithT(t).Expect(err).To(MatchError(And(ContainSubstring("REGISTRY_API_TOKEN_FILE"), ContainSubstring(secret.Fingerprint([]byte("/run/secrets/missing"))),
		Not(ContainSubstring("/run/secrets/missing")))))
}

// FuzzParseAPIKeysEnv checks REGISTRY_API_KEYS parsing: no panic, and every
// accepted entry has a name and exactly one of key and key_file.
func FuzzParseAPIKeysEnv(f *testing.F) {
	for _, s := range []string{
		`[{"name":"ci","key":"k"}]`,
		`[{"name":"ci","key_file":"/f","groups":["g"],"path_prefixes":["/api/"],"methods":["GET"]}]`,
		`[{"name":"ci","key":"k"}]]`, `[]`, `{}`, `[{"method":"GET"}]`, ``,
		`{"ci":{"key":"k","groups":["g"]}}`, `{"ci":{"key_file":"/f","groups":["g"],"Groups":[]}}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		keys, _, err := ParseAPIKeysEnv(v)
		if err != nil {
			if keys != nil {
				t.Fatalf("keys returned with error %v", err)
			}
			return
		}
		for _, k := range keys {
			if k.Name == "" || (k.Key == "") == (k.KeyFile == "") {
				t.Fatalf("accepted bad entry %+v", k)
			}
		}
	})
}

// An upstream auth server's .env of 2026-H2 starts this service unchanged:
// the object form of REGISTRY_API_KEYS, the federation token and ROOT_PATH,
// with upstream's identities and paths.
func TestStandaloneUpstreamEnv(t *testing.T) {
	g := NewWithT(t)
	static, deploy, monitor, fed := standaloneTestToken(t), standaloneTestToken(t), standaloneTestToken(t), standaloneTestToken(t)
	env := map[string]string{
		"ROOT_PATH":                          "/registry/",
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_TOKEN":                 static,
		"REGISTRY_API_KEYS": `{"monitoring":{"key":"` + monitor + `","groups":["mcp-readonly"]},` +
			`"deploy":{"key":"` + deploy + `","groups":["mcp-registry-admin"]}}`,
		"FEDERATION_STATIC_TOKEN_AUTH_ENABLED": "true",
		"FEDERATION_STATIC_TOKEN":              fed,
	}
	_, store, logs, err := standaloneStart(t, env)
	g.Expect(err).NotTo(HaveOccurred())
	standaloneExpectNoSecret(g, logs, static, deploy, monitor, fed)

	const base = "http://registry.local/registry"
	d := standaloneDecide(store, "POST", base+"/api/servers", deploy)
	g.Expect(d.Reason).To(Equal(check.ReasonAllowedAPIKey))
	g.Expect(d.Identity.Username).To(Equal("deploy"))
	g.Expect(d.Identity.ClientID).To(Equal("deploy"))
	g.Expect(d.Identity.Method).To(Equal(check.MethodNetworkTrusted))
	g.Expect(d.Identity.Groups).To(Equal([]string{"mcp-registry-admin"}))
	g.Expect(standaloneDecide(store, "GET", base+"/v0.1/servers", monitor).Identity.Username).To(Equal("monitoring"))
	g.Expect(standaloneDecide(store, "GET", base+"/api/servers", static).Identity.Username).To(Equal("network-user"))

	// The root path prefixes the Registry API: without it, a path is a
	// gateway path.
	g.Expect(standaloneDecide(store, "GET", "http://registry.local/api/servers", deploy).Reason).To(Equal(check.ReasonRegistryCredOnGateway))

	// The federation token, on the federation and peers API under the root.
	d = standaloneDecide(store, "GET", base+"/api/federation/servers", fed)
	g.Expect(d.Reason).To(Equal(check.ReasonAllowedFederation))
	g.Expect(d.Identity.Username).To(Equal("federation-peer"))
	g.Expect(d.Identity.Method).To(Equal(check.MethodFederation))
	g.Expect(standaloneDecide(store, "GET", base+"/api/peers", fed).Reason).To(Equal(check.ReasonAllowedFederation))
	g.Expect(standaloneDecide(store, "GET", base+"/api/peersX", fed).Reason).To(Equal(check.ReasonFederationTokenOffPath))
	g.Expect(standaloneDecide(store, "GET", base+"/api/servers", fed).Reason).To(Equal(check.ReasonFederationTokenOffPath))

	// Agent paths under the root read X-Authorization only.
	sc, host, path, _ := check.SplitURL(base + "/agent/travel")
	r := &check.Request{Scheme: sc, Host: host, Path: path, Method: "GET",
		Authorization: []string{"Bearer " + deploy}, XAuthorization: []string{"Bearer " + deploy}}
	g.Expect(policy.Decide(context.Background(), store.Load(), r, time.Now()).Reason).To(Equal(check.ReasonDuplicatedCredential))
}

// As upstream: the object form's keys count only while
// REGISTRY_STATIC_TOKEN_AUTH_ENABLED is true; this project's list form does
// not depend on it.
func TestStandaloneUpstreamKeysNeedTheFlag(t *testing.T) {
	g := NewWithT(t)
	key := standaloneTestToken(t)
	_, store, logs, err := standaloneStart(t, map[string]string{
		"REGISTRY_API_KEYS": `{"deploy":{"key":"` + key + `","groups":["mcp-registry-admin"]}}`,
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(standaloneDecide(store, "GET", standaloneServersURL, key).Reason).To(Equal(check.ReasonInvalidCredentials))
	g.Expect(strings.Join(logs.all(), "\n")).To(ContainSubstring("REGISTRY_API_KEYS is ignored"))

	_, store, _, err = standaloneStart(t, map[string]string{
		"REGISTRY_API_KEYS": `[{"name":"deploy","key":"` + key + `","groups":["mcp-registry-admin"]}]`,
	})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(standaloneDecide(store, "GET", standaloneServersURL, key).Reason).To(Equal(check.ReasonAllowedAPIKey))
}

// An unusable federation token turns federation off and the service starts,
// as upstream; a weak static token or API key still stops the start.
func TestStandaloneFederationTokenProblems(t *testing.T) {
	for _, tc := range []struct {
		name, token string
	}{
		{"empty", ""},
		{"weak", "short-federation-token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, store, logs, err := standaloneStart(t, map[string]string{
				"FEDERATION_STATIC_TOKEN_AUTH_ENABLED": "true",
				"FEDERATION_STATIC_TOKEN":              tc.token,
			})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(strings.Join(logs.errorLines(), "\n")).To(ContainSubstring("FEDERATION_STATIC_TOKEN"))
			if tc.token != "" {
				g.Expect(standaloneDecide(store, "GET", "http://registry.local/api/peers", tc.token).Allowed()).To(BeFalse())
			}
		})
	}
	g := NewWithT(t)
	key := standaloneTestToken(t)
	_, _, _, err := standaloneStart(t, map[string]string{
		"REGISTRY_API_KEYS": `[{"name":"a","key":"` + key + `"},{"name":"b","key":"` + key + `"}]`,
	})
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring(`API key "b" has the same value as API key "a"`))
	g.Expect(err.Error()).NotTo(ContainSubstring(key))
}

// Every JSON the environment holds refuses a field named twice.
func TestStandaloneJSONFieldsOnce(t *testing.T) {
	g := NewWithT(t)
	_, err := ParseEnv(standaloneEnv(map[string]string{"GROUP_SCOPES": `{"admins":["a"],"Admins":["b"]}`}))
	g.Expect(err).To(MatchError(ContainSubstring("GROUP_SCOPES: the fields \"admins\" and \"Admins\" differ only in case")))
	_, err = ParseEnv(standaloneEnv(map[string]string{"ROOT_PATH": "registry/../x"}))
	g.Expect(err).To(MatchError(ContainSubstring("REGISTRY_ROOT_PATH")))
}

// DELEGATE_URL and its companions configure the policy's delegate; bad
// values stop the start, naming the variable.
func TestStandaloneDelegateEnv(t *testing.T) {
	g := NewWithT(t)
	e, err := ParseEnv(standaloneEnv(map[string]string{
		"DELEGATE_URL": "http://auth-server:8888/validate", "DELEGATE_TIMEOUT": "2", "DELEGATE_GATEWAY_PATHS": "true", "DELEGATE_MAX_CONCURRENT": "32",
	}))
	g.Expect(err).NotTo(HaveOccurred())
	cfg := e.Config()
	g.Expect(cfg.Delegate).To(Equal(&policy.DelegateConfig{URL: "http://auth-server:8888/validate", Timeout: 2 * time.Second, GatewayPaths: true, MaxConcurrent: 32}))
	p, probs := policy.Compile(cfg, policy.CompileOptions{})
	g.Expect(probs).To(BeEmpty())
	g.Expect(p.Delegate().URL).To(Equal("http://auth-server:8888/validate"))

	_, err = ParseEnv(standaloneEnv(map[string]string{"DELEGATE_URL": "http://a/validate", "DELEGATE_TIMEOUT": "soon", "DELEGATE_MAX_CONCURRENT": "0"}))
	g.Expect(err).To(MatchError(And(ContainSubstring("DELEGATE_TIMEOUT"), ContainSubstring("DELEGATE_MAX_CONCURRENT"))))

	// A URL that is no URL is a configuration problem: the start fails.
	_, _, _, err = standaloneStart(t, map[string]string{"DELEGATE_URL": "auth-server:8888"})
	g.Expect(err).To(MatchError(ContainSubstring("DELEGATE_URL")))
}
