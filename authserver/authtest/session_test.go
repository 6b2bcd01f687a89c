package authtest

import (
	"bytes"
	"compress/zlib"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authn/session"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// sessionFixture is the part of a hack/gen-session-fixtures.py case this
// test reads (cookies made by the real itsdangerous).
type sessionFixture struct {
	Name          string   `json:"name"`
	SecretKeys    []string `json:"secret_keys"`
	MaxAgeSeconds int64    `json:"max_age_seconds"`
	NowUnix       int64    `json:"now_unix"`
	Cookie        string   `json:"cookie"`
	WantOK        bool     `json:"want_ok"`
	WantUsername  string   `json:"want_username"`
	WantGroups    []string `json:"want_groups"`
}

func loadFixture(t *testing.T, name string) sessionFixture {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "authn", "session", "testdata", "session", "fixtures.json"))
	if err != nil {
		t.Fatalf("reading fixtures: %v", err)
	}
	var fixtures []sessionFixture
	if err := json.Unmarshal(data, &fixtures); err != nil {
		t.Fatalf("parsing fixtures: %v", err)
	}
	for _, f := range fixtures {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("fixture %q not found", name)
	return sessionFixture{}
}

// fixtureSignedAt decodes the timestamp part of a fixture cookie.
func fixtureSignedAt(t *testing.T, cookie string) time.Time {
	t.Helper()
	parts := strings.Split(cookie, ".")
	if len(parts) < 3 {
		t.Fatalf("fixture cookie has %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[len(parts)-2])
	if err != nil || len(b) == 0 || len(b) > 8 {
		t.Fatalf("fixture timestamp does not decode: %v", err)
	}
	var ts int64
	for _, c := range b {
		ts = ts<<8 | int64(c)
	}
	return time.Unix(ts, 0)
}

// TestSessionCookieMatchesItsdangerous re-signs an itsdangerous fixture (one
// key, so key order cannot differ; short, so uncompressed) and expects the
// very same bytes.
func TestSessionCookieMatchesItsdangerous(t *testing.T) {
	f := loadFixture(t, "groups_absent")
	if !f.WantOK || strings.HasPrefix(f.Cookie, ".") {
		t.Fatalf("fixture %q is expected to be valid and uncompressed", f.Name)
	}
	signedAt := fixtureSignedAt(t, f.Cookie)
	// Sub-second parts are dropped, as itsdangerous does (int(time.time())).
	got := SessionCookie([]byte(f.SecretKeys[0]), map[string]any{"username": f.WantUsername}, signedAt.Add(999*time.Millisecond))
	if got != f.Cookie {
		// Both cookies are signed with a published test key; showing them
		// leaks nothing.
		t.Fatalf("SessionCookie differs from itsdangerous:\n got %s\nwant %s", got, f.Cookie)
	}

	// A different key, claim or time must change the cookie (the helper
	// does not just echo something fixed).
	for name, other := range map[string]string{
		"key":  SessionCookie([]byte(f.SecretKeys[0]+"x"), map[string]any{"username": f.WantUsername}, signedAt),
		"user": SessionCookie([]byte(f.SecretKeys[0]), map[string]any{"username": f.WantUsername + "x"}, signedAt),
		"time": SessionCookie([]byte(f.SecretKeys[0]), map[string]any{"username": f.WantUsername}, signedAt.Add(time.Second)),
	} {
		if other == f.Cookie {
			t.Errorf("changing the %s did not change the cookie", name)
		}
	}
}

// TestSessionCookieCompressed checks the compressed form: claims large enough
// for zlib to pay off get the "." prefix, inflate to the compact JSON, and
// the auth service's verifier accepts the cookie.
func TestSessionCookieCompressed(t *testing.T) {
	f := loadFixture(t, "compressed_large_groups")
	if !f.WantOK || !strings.HasPrefix(f.Cookie, ".") {
		t.Fatalf("fixture %q is expected to be valid and compressed", f.Name)
	}
	signedAt := fixtureSignedAt(t, f.Cookie)
	claims := map[string]any{"username": f.WantUsername, "groups": f.WantGroups}
	cookie := SessionCookie([]byte(f.SecretKeys[0]), claims, signedAt)
	if !strings.HasPrefix(cookie, ".") {
		t.Fatalf("cookie with %d groups is not compressed", len(f.WantGroups))
	}

	parts := strings.Split(cookie[1:], ".")
	if len(parts) != 3 {
		t.Fatalf("compressed cookie has %d parts after the prefix, want 3", len(parts))
	}
	if parts[1] != strings.Split(f.Cookie[1:], ".")[1] {
		t.Errorf("timestamp %q differs from itsdangerous' %q", parts[1], strings.Split(f.Cookie[1:], ".")[1])
	}
	z, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatalf("payload is not base64url: %v", err)
	}
	zr, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatalf("payload is not zlib: %v", err)
	}
	js, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("inflating payload: %v", err)
	}
	if bytes.ContainsAny(js, " \n") {
		t.Errorf("payload JSON is not compact: %s", js)
	}
	var back map[string]any
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatalf("payload is not JSON: %v", err)
	}
	groups := make([]any, len(f.WantGroups))
	for i, g := range f.WantGroups {
		groups[i] = g
	}
	if want := (map[string]any{"username": f.WantUsername, "groups": groups}); !reflect.DeepEqual(back, want) {
		t.Errorf("payload = %v, want %v", back, want)
	}

	// The real verifier (through the policy compile and decision) accepts
	// such a cookie, and refuses it with another key. The fixture key is
	// shorter than the service's minimum, so a longer test key signs.
	const key = "authtest-session-key-not-a-real-secret-0123"
	cookie = SessionCookie([]byte(key), claims, signedAt)
	decide := func(key string) policy.Decision {
		p, probs := policy.Compile(policy.PolicyConfig{
			Namespace: "ns", Name: "p",
			Session: &session.Config{
				SecretKeys: []authn.SecretValue{{Value: []byte(key)}},
				MaxAge:     time.Duration(f.MaxAgeSeconds) * time.Second,
			},
		}, policy.CompileOptions{TokenCacheSize: -1})
		if len(probs) > 0 {
			t.Fatalf("compile: %v", probs)
		}
		store := policy.NewStore(policy.StoreOptions{SelectOnlyPolicy: true})
		store.Replace(p)
		return policy.Decide(context.Background(), store.Load(), &check.Request{
			Scheme: "https", Host: "registry.test", Path: "/mcpserver/mcp",
			Method: "GET",
			Cookie: []string{SessionCookieName + "=" + cookie},
		}, time.Unix(f.NowUnix, 0))
	}
	if d := decide(key); !d.Allowed() || d.Identity.Username != f.WantUsername || d.Identity.Method != check.MethodSession {
		t.Errorf("verifier: reason %q, identity %+v; want a session as %q", d.Reason, d.Identity, f.WantUsername)
	}
	if d := decide(key + "-other"); d.Allowed() {
		t.Errorf("verifier accepted the cookie with another key")
	}
}
