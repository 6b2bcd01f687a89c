package authn

import (
	"strings"
	"testing"
)

// FuzzParseAuthorization checks the credential header parsing: it never
// panics, and a token it accepts is the header's tail, without white space
// or control characters.
func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  abc", "Bearer\tabc", "Bearer ", "Basic x", "", "BEARER x y", "Bearerx", "Bearer \xff"} {
		f.Add(s, "")
	}
	f.Add("Bearer a", "Bearer b")
	f.Fuzz(func(t *testing.T, authz, xauthz string) {
		var a, x []string
		if authz != "" {
			a = []string{authz}
		}
		if xauthz != "" {
			x = []string{xauthz}
		}
		h, ambiguous := AuthorizationValue(a, x)
		if ambiguous {
			if authz == "" || xauthz == "" || authz == xauthz {
				t.Fatalf("ambiguous for %q / %q", authz, xauthz)
			}
			return
		}
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
