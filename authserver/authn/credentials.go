package authn

import (
	"strings"

	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// Credential headers, parsed the same way for every kind.

// SelectCredential picks the credential header as the upstream auth server
// does (its issue #988): clients put the registry's credential in
// X-Authorization and a backend's in Authorization, so a non-empty
// X-Authorization wins and an empty one is ignored. On agent (A2A) paths the
// Authorization header belongs to the agent: only X-Authorization counts,
// and the same bearer token in both is refused (it would hand the registry's
// credential to the agent). More than one value of either header is refused:
// proxies and applications disagree on which of several values counts.
func SelectCredential(authz, xauthz []string, agent bool) (string, check.Reason) {
	if len(authz) > 1 || len(xauthz) > 1 {
		return "", check.ReasonAmbiguousAuthorization
	}
	var a, x string
	if len(authz) == 1 {
		a = authz[0]
	}
	if len(xauthz) == 1 {
		x = xauthz[0]
	}
	switch {
	case agent && x != "" && a != "" && bearerValue(a) == bearerValue(x):
		return "", check.ReasonDuplicatedCredential
	case x != "" || agent:
		return x, ""
	}
	return a, ""
}

// bearerValue is a header's credential for comparing two headers: without
// surrounding space and without a "Bearer " prefix in any case.
func bearerValue(h string) string {
	h = strings.TrimSpace(h)
	if len(h) >= 7 && strings.EqualFold(h[:7], "bearer ") {
		h = strings.TrimSpace(h[7:])
	}
	return h
}

// ParseBearer parses "Bearer <token>" (RFC 6750): the scheme is
// case-insensitive and followed by one or more spaces; the token is the rest
// and must be printable ASCII without white space. Tabs, an empty token or a
// token with inner spaces are malformed.
func ParseBearer(h string) (string, Scheme) {
	if h == "" {
		return "", SchemeNone
	}
	sp := strings.IndexByte(h, ' ')
	scheme := h
	if sp >= 0 {
		scheme = h[:sp]
	}
	if !strings.EqualFold(scheme, "bearer") {
		if strings.HasPrefix(strings.ToLower(h), "bearer") {
			return "", SchemeMalformed // "Bearer\t...", "Bearerabc"
		}
		return "", SchemeOther
	}
	if sp < 0 {
		return "", SchemeMalformed
	}
	tok := strings.TrimLeft(h[sp:], " ")
	if tok == "" {
		return "", SchemeMalformed
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f {
			return "", SchemeMalformed
		}
	}
	return tok, SchemeBearer
}

// CookieValue returns the value of the named cookie from Cookie header
// values, without allocating; quotes around the value are removed. A cookie
// sent more than once with different values is ambiguous: frameworks differ
// on which one counts (most take the first, Starlette the last), so an
// upstream that reads the cookie itself could act on another one than the
// one verified here. It is then not used.
func CookieValue(headers []string, name string) (v string, found, ambiguous bool) {
	for _, h := range headers {
		for len(h) > 0 {
			var part string
			if i := strings.IndexByte(h, ';'); i >= 0 {
				part, h = h[:i], h[i+1:]
			} else {
				part, h = h, ""
			}
			eq := strings.IndexByte(part, '=')
			// Names and values are compared trimmed, as Starlette and
			// Django read them: "name =B" is the cookie "name" there.
			if eq < 0 || strings.TrimSpace(part[:eq]) != name {
				continue
			}
			val := strings.TrimSpace(part[eq+1:])
			if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
				val = val[1 : len(val)-1]
			}
			switch {
			case !found:
				v, found = val, true
			case val != v:
				return "", true, true
			}
		}
	}
	return v, found, false
}

// HasCookie reports whether the named cookie is present, whatever its value.
func HasCookie(headers []string, name string) bool {
	_, found, _ := CookieValue(headers, name)
	return found
}
