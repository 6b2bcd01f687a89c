package authn

import "strings"

// Credential headers, parsed the same way for every kind.

// AuthorizationValue picks the credential header. The original server
// accepts X-Authorization where a proxy strips Authorization. More than one
// value, or both headers with different values, is ambiguous and refused:
// proxies and applications disagree on which of several values counts.
func AuthorizationValue(authz, xauthz []string) (string, bool) {
	if len(authz) > 1 || len(xauthz) > 1 {
		return "", true
	}
	switch {
	case len(authz) == 1 && len(xauthz) == 1:
		if authz[0] != xauthz[0] {
			return "", true
		}
		return authz[0], false
	case len(authz) == 1:
		return authz[0], false
	case len(xauthz) == 1:
		return xauthz[0], false
	}
	return "", false
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
			part = strings.TrimSpace(part)
			eq := strings.IndexByte(part, '=')
			if eq < 0 || part[:eq] != name {
				continue
			}
			val := part[eq+1:]
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
