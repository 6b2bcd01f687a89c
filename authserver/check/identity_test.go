package check

import (
	"testing"

	. "github.com/onsi/gomega"
)

// Identity values must reach the registry as they are: Go's and Python's
// trimming drop Unicode white space at either end, and control and format
// characters make one name look like another.
func TestHeaderSafe(t *testing.T) {
	g := NewWithT(t)
	for _, s := range []string{"alice", "Zoë Doe", "alice@example.com", "ci-read", "a b", "日本"} {
		g.Expect(HeaderSafe(s)).To(BeTrue(), "%q", s)
	}
	for _, s := range []string{
		" admin", "admin ", "\tadmin", "network-user\u00a0", "\u0085network-user", "network-user\u2028",
		"\u3000admin", "admin\u2029", "ad\x00min", "ad\x7fmin", "ad\u200bmin", "ad\u202emin", "\ufeffadmin",
		"ad\u0085min", "adm\xffin", "ad\r\nmin",
	} {
		g.Expect(HeaderSafe(s)).To(BeFalse(), "%q", s)
	}
	g.Expect(SafeList([]string{"dev", "a,b", "a b", "x\u00a0", "y\u200b", "\xff", "", "dev", "ops"})).To(Equal([]string{"dev", "ops"}))
}

// The hop token's auth_method is upstream's canonical method, whichever
// X-Auth-Method values this service sends: today's (api-key, session, oidc)
// or upstream's (network-trusted for API keys, session_cookie, the IdP's
// name).
func TestCanonicalMethod(t *testing.T) {
	for _, c := range []struct {
		in   Method
		want string
	}{
		{MethodNetworkTrusted, "network-trusted"},
		{MethodSession, "oauth2"},
		{MethodOIDC, "oauth2"},
		{"api-key", "network-trusted"},
		{"network-trusted", "network-trusted"},
		{"session", "oauth2"},
		{"session_cookie", "oauth2"},
		{"oidc", "oauth2"},
		{"generic", "oauth2"},
		{"keycloak", "oauth2"},
		{"entra", "oauth2"},
		{"cognito", "oauth2"},
		{"okta", "oauth2"},
		{"auth0", "oauth2"},
		{"pingfederate", "oauth2"},
		{"self_signed", "oauth2"},
		{"jwt", "oauth2"},
		{"boto3", "oauth2"},
		{"oauth2", "oauth2"},
		{"federation-static", "federation-static"},
		{"something-new", "something-new"},
		{"", ""},
	} {
		if got := CanonicalMethod(c.in); got != c.want {
			t.Errorf("CanonicalMethod(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestCachedToken(t *testing.T) {
	g := NewWithT(t)
	id := NewIdentity("alice", "", nil, nil, MethodOIDC)
	a, b := new(int), new(int) // two minters
	g.Expect(id.CachedToken(a, 100)).To(BeNil(), "nothing cached yet")
	id.CacheToken(a, 100, []string{"t1"})
	g.Expect(id.CachedToken(a, 100)).To(Equal([]string{"t1"}))
	g.Expect(id.CachedToken(a, 101)).To(BeNil(), "another second")
	g.Expect(id.CachedToken(b, 100)).To(BeNil(), "another minter")
	id.CacheToken(b, 101, []string{"t2"})
	g.Expect(id.CachedToken(a, 100)).To(BeNil(), "one slot: replaced")
	g.Expect(id.CachedToken(b, 101)).To(Equal([]string{"t2"}))
}
