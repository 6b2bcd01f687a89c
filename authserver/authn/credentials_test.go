package authn

import (
	"strings"
	"testing"

	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// FuzzParseAuthorization checks the credential header parsing: it never
// panics, the header chosen follows the precedence rules, and a token it
// accepts is the header's tail, without white space or control characters.
func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  abc", "Bearer\tabc", "Bearer ", "Basic x", "", "BEARER x y", "Bearerx", "Bearer \xff"} {
		f.Add(s, "")
	}
	f.Add("Bearer a", "Bearer b")
	f.Fuzz(func(t *testing.T, authz, xauthz string) {
		if _, reason := SelectCredential([]string{authz, xauthz}, nil, false); reason != check.ReasonAmbiguousAuthorization {
			t.Fatalf("two Authorization values not refused: %q", reason)
		}
		var a, x []string
		if authz != "" {
			a = []string{authz}
		}
		if xauthz != "" {
			x = []string{xauthz}
		}
		for _, agent := range []bool{false, true} {
			h, reason := SelectCredential(a, x, agent)
			switch {
			case reason == check.ReasonDuplicatedCredential:
				if !agent || authz == "" || xauthz == "" {
					t.Fatalf("duplicated for %q / %q (agent %v)", authz, xauthz, agent)
				}
			case reason != "":
				t.Fatalf("reason %q for one value each", reason)
			case xauthz != "" && h != xauthz:
				t.Fatalf("X-Authorization %q did not win: %q", xauthz, h)
			case xauthz == "" && agent && h != "":
				t.Fatalf("Authorization %q counted on an agent path", h)
			case xauthz == "" && !agent && h != authz:
				t.Fatalf("Authorization %q not taken: %q", authz, h)
			}
		}
		h, _ := SelectCredential(a, x, false)
		tok, scheme := ParseBearer(h)
		if scheme != SchemeBearer {
			if tok != "" {
				t.Fatalf("token %q returned with scheme %d", tok, scheme)
			}
			return
		}
		if tok == "" || !strings.HasSuffix(h, tok) || !strings.EqualFold(h[:6], "bearer") {
			t.Fatalf("%q -> %q", h, tok)
		}
		for i := 0; i < len(tok); i++ {
			if tok[i] <= ' ' || tok[i] >= 0x7f {
				t.Fatalf("%q -> %q holds byte %#x", h, tok, tok[i])
			}
		}
	})
}
