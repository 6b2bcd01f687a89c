// Package policytest holds the test fixtures that the decision's tests and
// the front-ends' tests share: a policy with every static credential kind and
// sessions, the secrets it holds, and helpers to compile and publish it.
package policytest

import (
	"testing"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authn/apikey"
	"github.com/registryauth/registry-auth-operator/authserver/authn/session"
	"github.com/registryauth/registry-auth-operator/authserver/authn/statictoken"
	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// Test secrets. They are long and random-looking enough to pass the
// strength checks; nothing here is a real credential.
const (
	TokStatic   = "st-9f3c1a7e5b2d4f6081a3c5e7092b4d6f"
	TokStatic2  = "st-2b4d6f8091a3c5e7f9e1d3c5b7a90817"
	TokReadKey  = "rk-6e8a0c2e4f6a8c0e2f4a6c8e0a2c4e6f"
	TokWriteKey = "wk-1357924680acefbdacefbd1357924680"
	SessionKey  = "session-key-7d9f1b3d5f7a9c1e3a5c7e9b1d3f5a7c"
	// JWTShapedKey is long and random but has a JWT's shape.
	JWTShapedKey = "eyJ9f3c1a7e5b2d4f6081.a3c5e7092b4d6f2b4d6f.8091a3c5e7f9e1d3c5b7"
)

// Now is the fixed time of the tests that do not need a real clock.
var Now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// BasePolicy is a policy with a static token, two API keys and sessions.
func BasePolicy() policy.PolicyConfig {
	return policy.PolicyConfig{
		Namespace: "team",
		Name:      "registry",
		Hosts:     []string{"registry.example.com"},
		StaticToken: &statictoken.Config{
			Enabled: true,
			Token:   authn.SecretValue{Value: []byte(TokStatic + "\n")}, // trailing newline, as from a file
		},
		APIKeys: []apikey.Config{
			{Name: "ci-read", Key: authn.SecretValue{Value: []byte(TokReadKey)}, Groups: []string{"readers"}, Methods: []string{"GET", "HEAD"}},
			{Name: "ci-write", Key: authn.SecretValue{Value: []byte(TokWriteKey)}, Groups: []string{"writers"}, PathPrefixes: []string{"/api/servers"}},
		},
		Session: &session.Config{SecretKeys: []authn.SecretValue{{Value: []byte(SessionKey)}}},
		GroupScopes: map[string][]string{
			"readers":            {"registry/read"},
			"writers":            {"registry/read", "registry/write"},
			"mcp-registry-admin": {"mcp-registry-admin"},
		},
	}
}

// CompileOK compiles cfg and fails the test on any problem.
func CompileOK(t testing.TB, cfg policy.PolicyConfig) *policy.Policy {
	t.Helper()
	p, probs := policy.Compile(cfg, policy.CompileOptions{})
	if len(probs) > 0 {
		t.Fatalf("unexpected problems: %v", probs)
	}
	return p
}

// SnapshotOf publishes ps in a new store and returns its snapshot.
func SnapshotOf(ps ...*policy.Policy) *policy.Snapshot {
	s := policy.NewStore(policy.StoreOptions{})
	s.Replace(ps...)
	return s.Load()
}

// SessionCookie is a session cookie value for username and groups, signed
// with SessionKey at signedAt.
func SessionCookie(t testing.TB, username string, groups []string, signedAt time.Time) string {
	t.Helper()
	return authtest.SessionCookie([]byte(SessionKey), map[string]any{
		"username": username, "groups": groups, "auth_method": "oauth2", "provider": "keycloak",
	}, signedAt)
}

// Bearer is the Authorization header values for a bearer token.
func Bearer(tok string) []string { return []string{"Bearer " + tok} }
