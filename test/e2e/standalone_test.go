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

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/test/e2e/nginxtest"
)

const (
	registryHost = "registry.test"

	staticUser   = "network-user"
	staticClient = "network-trusted"
	staticGroups = "mcp-registry-admin"
	staticScopes = "mcp-registry-admin mcp-servers-unrestricted/read mcp-servers-unrestricted/execute"
)

// expectUpstream fails unless r reached the upstream with the given identity
// headers (a "" value is not checked).
func expectUpstream(t *testing.T, r result, want map[string]string) {
	t.Helper()
	if r.status != http.StatusOK || r.echo == nil {
		t.Fatalf("want the request to reach the upstream, got %s", r)
	}
	for k, v := range want {
		if got := r.echo.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("upstream saw %s = %q, want exactly %q", k, got, v)
		}
	}
}

// expectDenied fails unless nginx answered status itself without calling the
// upstream.
func expectDenied(t *testing.T, ng *nginxtest.Nginx, status int, req *http.Request) result {
	t.Helper()
	before := ng.UpstreamHits()
	r := do(t, ng, req)
	if r.status != status || r.echo != nil {
		t.Fatalf("want %d from nginx, got %s", status, r)
	}
	if after := ng.UpstreamHits(); after != before {
		t.Fatalf("upstream was hit (%d -> %d) for a denied request", before, after)
	}
	return r
}

var staticIdentity = map[string]string{
	"X-User":        staticUser,
	"X-Username":    staticUser,
	"X-Client-Id":   staticClient,
	"X-Auth-Method": staticClient,
	"X-Groups":      staticGroups,
	"X-Scopes":      staticScopes,
}

// TestStandalone runs the binary in --standalone mode, configured from the
// environment as the original auth server, behind nginx, and checks every
// credential path end to end: the static token on Registry API paths only,
// session cookies (which take precedence), IdP JWTs, path tricks and header
// spoofing.
func TestStandalone(t *testing.T) {
	t.Parallel()
	nginxtest.Require(t) // before starting anything
	token := newToken(t)
	secretKey := newSecretKey(t)
	secrets := &secretSet{}
	secrets.add(token, secretKey)

	issuer := authtest.NewIssuer(t)
	p := startBinary(t, []string{"--standalone", "--zap-log-level=debug", "--shutdown-grace-period=2s"}, map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_TOKEN":                 token,
		"SECRET_KEY":                         secretKey,
		"OIDC_ISSUER_URL":                    issuer.URL(),
		"OIDC_CLIENT_ID":                     "registry",
	}, secrets, 30*time.Second)
	ng := nginxtest.Start(t, nginxtest.Options{AuthURL: p.AuthURL()})

	cookie := func(claims map[string]any, signedAt time.Time) string {
		c := authtest.SessionCookie([]byte(secretKey), claims, signedAt)
		secrets.add(c)
		return authtest.SessionCookieName + "=" + c
	}
	alice := map[string]any{"username": "alice", "groups": []string{"registry-users"}, "auth_method": "oidc", "provider": "keycloak"}
	aliceCookie := cookie(alice, time.Now())
	expiredCookie := cookie(alice, time.Now().Add(-9*time.Hour)) // SESSION_MAX_AGE defaults to 8h
	aliceIdentity := map[string]string{"X-User": "alice", "X-Username": "alice", "X-Groups": "registry-users", "X-Auth-Method": "session_cookie"}

	t.Run("static token on Registry API paths", func(t *testing.T) {
		for _, path := range []string{"/api/servers", "/v0.1/servers", "/api/servers?limit=5"} {
			r := do(t, ng, request(registryHost, path, bearer(token)))
			expectUpstream(t, r, staticIdentity)
			if r.echo.URI != path {
				t.Errorf("upstream saw %q, want %q", r.echo.URI, path)
			}
		}
	})

	t.Run("X-Authorization carries the static token", func(t *testing.T) {
		r := do(t, ng, request(registryHost, "/api/servers", map[string]string{"X-Authorization": "Bearer " + token}))
		expectUpstream(t, r, staticIdentity)
	})

	t.Run("static token refused on gateway paths", func(t *testing.T) {
		for _, path := range []string{"/mcpserver/mcp", "/", "/apix/servers", "/API/servers"} {
			expectDenied(t, ng, http.StatusUnauthorized, request(registryHost, path, bearer(token)))
		}
	})

	t.Run("wrong or missing credentials", func(t *testing.T) {
		expectDenied(t, ng, http.StatusUnauthorized, request(registryHost, "/api/servers", nil))
		expectDenied(t, ng, http.StatusUnauthorized, request(registryHost, "/mcpserver/mcp", nil))
		expectDenied(t, ng, http.StatusUnauthorized, request(registryHost, "/api/servers", bearer(newToken(t))))
		// A prefix or extension of the token is a different token.
		expectDenied(t, ng, http.StatusUnauthorized, request(registryHost, "/api/servers", bearer(token[:len(token)-1])))
		expectDenied(t, ng, http.StatusUnauthorized, request(registryHost, "/api/servers", bearer(token+"0")))
		expectDenied(t, ng, http.StatusUnauthorized, request(registryHost, "/api/servers", map[string]string{"Authorization": "Basic " + token}))
	})

	t.Run("session cookie on a gateway path", func(t *testing.T) {
		r := do(t, ng, request(registryHost, "/mcpserver/mcp", map[string]string{"Cookie": "theme=dark; " + aliceCookie}))
		expectUpstream(t, r, aliceIdentity)
	})

	t.Run("session cookie wins over the static token", func(t *testing.T) {
		h := bearer(token)
		h["Cookie"] = aliceCookie
		r := do(t, ng, request(registryHost, "/api/servers", h))
		expectUpstream(t, r, aliceIdentity)
	})

	t.Run("expired session cookie", func(t *testing.T) {
		expectDenied(t, ng, http.StatusUnauthorized, request(registryHost, "/mcpserver/mcp", map[string]string{"Cookie": expiredCookie}))
		// As in the original: a cookie, even a bad one, skips the static
		// token, so the browser is not silently authenticated as the
		// network-trusted admin.
		h := bearer(token)
		h["Cookie"] = expiredCookie
		expectDenied(t, ng, http.StatusUnauthorized, request(registryHost, "/api/servers", h))
	})

	t.Run("session cookie signed with another key", func(t *testing.T) {
		forged := authtest.SessionCookie([]byte(newSecretKey(t)), map[string]any{"username": "admin", "groups": []string{"mcp-registry-admin"}}, time.Now())
		expectDenied(t, ng, http.StatusUnauthorized, request(registryHost, "/mcpserver/mcp", map[string]string{"Cookie": authtest.SessionCookieName + "=" + forged}))
	})

	t.Run("OIDC JWT", func(t *testing.T) {
		jwt := issuer.Sign(issuer.Claims("registry", "bob", []string{"registry-users"}, 5*time.Minute))
		secrets.add(jwt)
		for _, path := range []string{"/mcpserver/mcp", "/api/servers"} {
			r := do(t, ng, request(registryHost, path, bearer(jwt)))
			expectUpstream(t, r, map[string]string{"X-User": "bob", "X-Username": "bob", "X-Groups": "registry-users", "X-Auth-Method": "oidc"})
		}

		other := issuer.Sign(issuer.Claims("another-client", "bob", nil, 5*time.Minute))
		expired := issuer.Sign(issuer.Claims("registry", "bob", nil, -time.Minute))
		unknownKey := issuer.SignWithUnpublishedKey(issuer.Claims("registry", "bob", nil, 5*time.Minute))
		secrets.add(other, expired, unknownKey)
		for name, jwt := range map[string]string{"audience": other, "expired": expired, "unknown key": unknownKey} {
			t.Run(name, func(t *testing.T) {
				expectDenied(t, ng, http.StatusUnauthorized, request(registryHost, "/mcpserver/mcp", bearer(jwt)))
			})
		}
	})

	t.Run("path tricks", func(t *testing.T) {
		// nginx routes by the normalised path ($uri), sends the raw one
		// ($request_uri) in X-Original-URL and forwards the raw one to the
		// upstream; an upstream that does not resolve dot segments would
		// read them differently, so the auth service refuses any dot
		// segment (403 bad_path), whichever prefix it leads to.
		for _, path := range []string{
			"/api/../mcpserver/mcp",
			"/api/%2e%2e/mcpserver/mcp",
			"/api/%2E%2E/mcpserver/mcp",
			"/api/./../mcpserver/mcp",
			"/v0.1//../mcpserver/mcp",
			"/mcpserver/../api/servers",
			"/api/./servers",
			"/api/servers%2F..%2Fagents",
		} {
			t.Run(path, func(t *testing.T) {
				expectDenied(t, ng, http.StatusForbidden, request(registryHost, path, bearer(token)))
				// The request line reached nginx as written (Go did not
				// clean it), and nginx denied it.
				eventually(t, 5*time.Second, 20*time.Millisecond, "access log entry", func() error {
					if want := fmt.Sprintf(`"GET %s HTTP/1.1" 403 `, path); !strings.Contains(ng.AccessLog(), want) {
						return fmt.Errorf("access log has no %s", want)
					}
					return nil
				})
			})
		}
		// Merged slashes cannot move a request under another prefix: nginx
		// routes /api//servers to /api/servers, and the upstream gets the
		// raw URI. (A path starting with "//" cannot be sent with Go's
		// client; the adversarial table covers it.)
		r := do(t, ng, request(registryHost, "/api//servers", bearer(token)))
		expectUpstream(t, r, staticIdentity)
		if r.echo.URI != "/api//servers" {
			t.Errorf("upstream saw %q, want the raw URI /api//servers", r.echo.URI)
		}
	})

	t.Run("client identity headers are replaced", func(t *testing.T) {
		spoof := map[string]string{
			"X-User":        "root",
			"X-Username":    "root",
			"X-Client-Id":   "root",
			"X-Groups":      "mcp-registry-admin root",
			"X-Scopes":      "everything",
			"X-Auth-Method": "oidc",
		}
		h := bearer(token)
		for k, v := range spoof {
			h[k] = v
		}
		expectUpstream(t, do(t, ng, request(registryHost, "/api/servers", h)), staticIdentity)

		h = map[string]string{"Cookie": aliceCookie}
		for k, v := range spoof {
			h[k] = v
		}
		r := do(t, ng, request(registryHost, "/mcpserver/mcp", h))
		expectUpstream(t, r, aliceIdentity)
		// alice has no scopes (no GROUP_SCOPES): the client's value must
		// not survive either.
		if got := r.echo.Header.Values("X-Scopes"); len(got) > 1 || (len(got) == 1 && got[0] != "") {
			t.Errorf("upstream saw X-Scopes %q, want none", got)
		}
	})

	p.Stop()
	assertNoLeak(t, "registry-auth output", p.Output(), secrets.all())
}

// TestStandaloneTokenFile checks REGISTRY_API_TOKEN_FILE: the token is
// re-read while the binary runs, both when the file is rewritten in place
// and when a symlink is swapped (what kubelet does for mounted Secrets),
// and an unreadable file refuses the token.
func TestStandaloneTokenFile(t *testing.T) {
	t.Parallel()
	nginxtest.Require(t) // before starting anything
	tokA, tokB, tokC := newToken(t), newToken(t), newToken(t)
	secrets := &secretSet{}
	secrets.add(tokA, tokB, tokC)

	// kubelet's layout: token -> ..data/token, ..data -> ..<version>.
	dir := t.TempDir()
	write := func(rel, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(rel)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("..v1/token", tokA)
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "token"), filepath.Join(dir, "token")); err != nil {
		t.Fatal(err)
	}

	p := startBinary(t, []string{"--standalone", "--zap-log-level=debug", "--shutdown-grace-period=2s"}, map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_TOKEN_FILE":            filepath.Join(dir, "token"),
	}, secrets, 30*time.Second)
	ng := nginxtest.Start(t, nginxtest.Options{AuthURL: p.AuthURL()})

	status := func(tok string) int {
		return do(t, ng, request(registryHost, "/api/servers", bearer(tok))).status
	}
	// takesEffect waits up to 2 s for tok to be accepted and reports how
	// long it took.
	takesEffect := func(what, tok string) {
		t.Helper()
		start := time.Now()
		for status(tok) != http.StatusOK {
			if time.Since(start) > 2*time.Second {
				t.Fatalf("%s: the new token (%s) was not accepted within 2s", what, fingerprint(tok))
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("%s: new token %s accepted after %v", what, fingerprint(tok), time.Since(start).Round(time.Millisecond))
	}
	refused := func(tok string) {
		t.Helper()
		if s := status(tok); s != http.StatusUnauthorized {
			t.Errorf("token %s: status %d, want 401", fingerprint(tok), s)
		}
	}

	expectUpstream(t, do(t, ng, request(registryHost, "/api/servers", bearer(tokA))), staticIdentity)
	refused(tokB)

	// Rewritten in place (through the symlinks).
	write("..v1/token", tokB)
	takesEffect("file rewritten", tokB)
	refused(tokA)

	// Atomic symlink swap to a new directory.
	write("..v2/token", tokC)
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	takesEffect("symlink swapped", tokC)
	refused(tokB)
	refused(tokA)
	expectUpstream(t, do(t, ng, request(registryHost, "/v0.1/servers", bearer(tokC))), staticIdentity)

	// The file goes away: fail closed.
	if err := os.RemoveAll(filepath.Join(dir, "..v2")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, 20*time.Millisecond, "token refused after its file was removed", func() error {
		if s := status(tokC); s != http.StatusUnauthorized {
			return fmt.Errorf("status %d", s)
		}
		return nil
	})
	if p.exited() {
		t.Fatalf("registry-auth exited after the token file was removed")
	}

	p.Stop()
	assertNoLeak(t, "registry-auth output", p.Output(), secrets.all())
}
