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
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/test/e2e/nginxtest"
)

// The registry's hop token end to end: the binary behind a real nginx, in
// front of an upstream that answers /api/ requests as the MCP Gateway
// Registry of mid-2026 does (authtest.RegistryVerifier: the identity from a
// token that verifies, and 401 to identity headers without one).

// expectRegistry fails unless the request reached the registry and the
// registry took the identity from a verified token with these claims.
func expectRegistry(t *testing.T, r result, claims map[string]any) {
	t.Helper()
	if r.echo == nil || r.echo.Registry == nil {
		t.Fatalf("want the registry to answer, got %s", r)
	}
	if r.status != http.StatusOK || r.echo.Registry.Status != http.StatusOK {
		t.Fatalf("the registry refused (%d): %s", r.status, r.echo.Registry.Detail)
	}
	for k, v := range claims {
		if got := r.echo.Registry.Claims[k]; fmt.Sprint(got) != fmt.Sprint(v) {
			t.Errorf("token claim %s = %v, want %v", k, got, v)
		}
	}
}

// expectRegistryRefused fails unless the request reached the registry and
// the registry answered 401 with a detail containing detail.
func expectRegistryRefused(t *testing.T, r result, detail string) {
	t.Helper()
	if r.echo == nil || r.echo.Registry == nil {
		t.Fatalf("want the registry to answer, got %s", r)
	}
	if r.status != http.StatusUnauthorized || !strings.Contains(r.echo.Registry.Detail, detail) {
		t.Fatalf("want the registry's 401 %q, got %d %q", detail, r.status, r.echo.Registry.Detail)
	}
}

// TestRegistryTokenStandalone: standalone mode with SECRET_KEY behind the
// registry's own nginx (its /api/ location asks for a token with
// X-Registry-Api-Auth: 1) and behind ingress-nginx (which cannot, so the
// token is sent in mode always and listed in auth-response-headers).
func TestRegistryTokenStandalone(t *testing.T) {
	t.Parallel()
	token := newToken(t)
	secretKey := newSecretKey(t)
	secrets := &secretSet{}
	secrets.add(token, secretKey)
	p := startBinary(t, []string{"--standalone", "--shutdown-grace-period=2s"}, map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_TOKEN":                 token,
		"SECRET_KEY":                         secretKey,
	}, secrets, 30*time.Second)
	registry := &authtest.RegistryVerifier{SecretKey: []byte(secretKey)}
	cookie := authtest.SessionCookieName + "=" + authtest.SessionCookie([]byte(secretKey),
		map[string]any{"username": "alice", "groups": []string{"registry-users"}, "auth_method": "oauth2", "provider": "keycloak"}, time.Now())
	secrets.add(cookie)

	t.Run("the registry's nginx asks on /api/", func(t *testing.T) {
		ng := nginxtest.Start(t, nginxtest.Options{
			AuthURL: p.AuthURL(), RegistryAPILocation: true, Registry: registry,
			ResponseHeaders: append(append([]string{}, nginxtest.DefaultResponseHeaders...), "X-Internal-Token-Registry"),
		})
		expectRegistry(t, do(t, ng, request(registryHost, "/api/servers", bearer(token))), map[string]any{
			"sub": "network-user", "auth_method": "network-trusted", "client_id": "network-trusted",
			"groups": []any{"mcp-registry-admin"}, "egress_user": "", "session_id": "", "scopes": []any{},
		})
		expectRegistry(t, do(t, ng, request(registryHost, "/api/servers", map[string]string{"Cookie": cookie})), map[string]any{
			"sub": "alice", "auth_method": "oauth2", "groups": []any{"registry-users"},
		})
		// Denied by the auth service: nginx answers, nothing reaches the
		// registry.
		expectDenied(t, ng, http.StatusUnauthorized, request(registryHost, "/api/servers", nil))
		expectDenied(t, ng, http.StatusUnauthorized, request(registryHost, "/api/servers", bearer(newToken(t))))

		// Outside /api/ nobody asks for a token, and a client cannot ask
		// for one: the auth location sends $registry_api_auth, empty here,
		// in place of the client's X-Registry-Api-Auth.
		r := do(t, ng, request(registryHost, "/mcpserver/mcp", map[string]string{"Cookie": cookie, "X-Registry-Api-Auth": "1"}))
		expectUpstream(t, r, map[string]string{"X-User": "alice"})
		if v := r.echo.Header.Values("X-Internal-Token-Registry"); len(v) != 0 {
			t.Errorf("a token was minted for a client that asked for one itself: %d values", len(v))
		}
		// A token the client sends itself is replaced by the auth answer's.
		r = do(t, ng, request(registryHost, "/api/servers", map[string]string{"Authorization": "Bearer " + token, "X-Internal-Token-Registry": "forged"}))
		expectRegistry(t, r, map[string]any{"sub": "network-user"})
	})

	t.Run("a registry with another key refuses the token", func(t *testing.T) {
		ng := nginxtest.Start(t, nginxtest.Options{AuthURL: p.AuthURL(), RegistryAPILocation: true,
			Registry: &authtest.RegistryVerifier{SecretKey: []byte(newSecretKey(t))}})
		expectRegistryRefused(t, do(t, ng, request(registryHost, "/api/servers", bearer(token))), "Invalid internal token")
	})

	t.Run("ingress-nginx in on-request mode: identity headers alone are refused", func(t *testing.T) {
		// ingress-nginx cannot add X-Registry-Api-Auth to its auth
		// request; without mode always there is no token, and the
		// registry of today refuses the identity headers.
		ng := nginxtest.Start(t, nginxtest.Options{AuthURL: p.AuthURL(), Registry: registry,
			ResponseHeaders: append(append([]string{}, nginxtest.DefaultResponseHeaders...), "X-Internal-Token-Registry")})
		r := do(t, ng, request(registryHost, "/api/servers", bearer(token)))
		expectRegistryRefused(t, r, "Authentication required")
		if r.echo.Header.Get("X-User") != staticUser {
			t.Errorf("want the identity headers to reach the registry, got X-User %q", r.echo.Header.Get("X-User"))
		}
		// ingress-nginx passes the client's headers to the auth request:
		// a client can ask for a token itself. It reaches the upstream of
		// the Ingress that lists X-Internal-Token-Registry (list it on the
		// registry's Ingress only), and never the client. (The registry's
		// own nginx above replaces the client's header.)
		r = do(t, ng, request(registryHost, "/mcpserver/mcp", map[string]string{"Cookie": cookie, "X-Registry-Api-Auth": "1"}))
		expectUpstream(t, r, map[string]string{"X-User": "alice"})
		if v := r.echo.Header.Values("X-Internal-Token-Registry"); len(v) != 1 {
			t.Errorf("want the token a client asked for through ingress-nginx, got %d values", len(v))
		}
	})
}

// TestRegistryTokenES256Always: ES256 from INTERNAL_SIGNING_KEY_PATH in mode
// always behind ingress-nginx (X-Internal-Token-Registry in
// auth-response-headers); the registry fetches the public keys from the auth
// port over HTTP, refuses HS256, and keeps verifying tokens of the replaced
// key after the key file is rotated.
func TestRegistryTokenES256Always(t *testing.T) {
	t.Parallel()
	token := newToken(t)
	secretKey := newSecretKey(t)
	secrets := &secretSet{}
	secrets.add(token, secretKey)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.pem")
	writeKey := func() string {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, _ := x509.MarshalECPrivateKey(k)
		b := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
		secrets.add(strings.Split(string(b), "\n")[1])
		if err := os.WriteFile(keyFile+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(keyFile+".tmp", keyFile); err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	writeKey()
	p := startBinary(t, []string{"--standalone", "--shutdown-grace-period=2s"}, map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_TOKEN":                 token,
		"SECRET_KEY":                         secretKey,
		"INTERNAL_SIGNING_KEY_PATH":          keyFile,
		"REGISTRY_TOKEN_MODE":                "always",
		"INTERNAL_TOKEN_TTL_SECONDS":         "20",
	}, secrets, 30*time.Second)
	jwksURL := "http://" + p.auth + "/.well-known/internal-jwks.json"
	fetch := func() ([]byte, error) {
		resp, err := probeClient.Get(jwksURL)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Cache-Control") != "public, max-age=300" || resp.Header.Get("Content-Type") != "application/json" {
			return nil, fmt.Errorf("JWKS answer %d %q %q", resp.StatusCode, resp.Header.Get("Cache-Control"), resp.Header.Get("Content-Type"))
		}
		return io.ReadAll(resp.Body)
	}
	registry := &authtest.RegistryVerifier{JWKS: fetch, RejectHS256: true}
	ng := nginxtest.Start(t, nginxtest.Options{AuthURL: p.AuthURL(), Registry: registry,
		ResponseHeaders: append(append([]string{}, nginxtest.DefaultResponseHeaders...), "X-Internal-Token-Registry")})

	r := do(t, ng, request(registryHost, "/api/servers", bearer(token)))
	expectRegistry(t, r, map[string]any{"sub": "network-user", "auth_method": "network-trusted"})
	first := r.echo.Header.Get("X-Internal-Token-Registry")
	// Mode always mints on Registry API paths only.
	cookie := authtest.SessionCookieName + "=" + authtest.SessionCookie([]byte(secretKey), map[string]any{"username": "alice", "groups": []string{"g"}}, time.Now())
	secrets.add(cookie)
	r = do(t, ng, request(registryHost, "/mcpserver/mcp", map[string]string{"Cookie": cookie}))
	expectUpstream(t, r, map[string]string{"X-User": "alice"})
	if len(r.echo.Header.Values("X-Internal-Token-Registry")) != 0 {
		t.Error("a token on a gateway path in mode always")
	}

	writeKey()
	eventually(t, 5*time.Second, 50*time.Millisecond, "a token signed with the new key", func() error {
		r := do(t, ng, request(registryHost, "/api/servers", bearer(token)))
		if r.echo == nil || r.status != http.StatusOK {
			return fmt.Errorf("%s", r)
		}
		if tok := r.echo.Header.Get("X-Internal-Token-Registry"); tok == "" || strings.Split(tok, ".")[0] == strings.Split(first, ".")[0] {
			return fmt.Errorf("still the old key's header")
		}
		return nil
	})
	// The first token was signed with the replaced key; it still verifies
	// with the key set the registry fetches now (the overlap).
	if _, err := registry.Verify(first, time.Now()); err != nil {
		t.Fatalf("a token of the replaced key, inside the overlap: %v", err)
	}
	keys, err := fetch()
	if err != nil {
		t.Fatal(err)
	}
	if parsed, err := authtest.ParseRegistryJWKS(keys); err != nil || len(parsed) != 2 {
		t.Fatalf("want the new and the replaced key in the JWKS, got %d (%v)", len(parsed), err)
	}
	assertNoLeak(t, "registry-auth output", p.Output(), secrets.all())
}
