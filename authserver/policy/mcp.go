package policy

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/pathnorm"
)

// What MCP clients need (the MCP authorization spec, 2025-06-18 onward):
// a 401 that points at the protected resource's metadata (RFC 9728,
// WWW-Authenticate: Bearer resource_metadata="<url>", optionally with
// scope), a 403 insufficient_scope with the same pointers, and the metadata
// itself served on a path that needs no credentials.

// ProtectedResourceConfig makes 401 and 403 answers point MCP clients at
// the resource's metadata.
type ProtectedResourceConfig struct {
	// MetadataURL is the resource metadata URL: absolute http(s), or a
	// template with {scheme}, {host} (the request's, lower case, without
	// its port) and {path} (the normalised request path, percent-encoded),
	// e.g. "https://{host}/.well-known/oauth-protected-resource{path}"
	// (RFC 9728, section 3.1).
	MetadataURL string
	// Scopes are advertised in the challenge's scope parameter.
	Scopes []string
	// RegistryPaths challenges on Registry API paths too; by default only
	// gateway paths (every path outside them) are.
	RegistryPaths bool
}

// protectedResource is a compiled ProtectedResourceConfig.
type protectedResource struct {
	parts         []tmplPart
	scope         string // `, scope="a b"` or ""
	registryPaths bool
}

// tmplPart is a literal or a variable of the metadata URL template.
type tmplPart struct {
	lit string
	v   byte // 0: literal; 's' scheme, 'h' host, 'p' path
}

var tmplVars = map[string]byte{"{scheme}": 's', "{host}": 'h', "{path}": 'p'}

// compileProtectedResource checks a ProtectedResourceConfig.
func compileProtectedResource(cfg *ProtectedResourceConfig) (*protectedResource, error) {
	pr := &protectedResource{registryPaths: cfg.RegistryPaths}
	rest := cfg.MetadataURL
	for rest != "" {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			pr.parts = append(pr.parts, tmplPart{lit: rest})
			break
		}
		if i > 0 {
			pr.parts = append(pr.parts, tmplPart{lit: rest[:i]})
			rest = rest[i:]
		}
		j := strings.IndexByte(rest, '}')
		v, ok := tmplVars[rest[:j+1]]
		if j < 0 || !ok {
			return nil, fmt.Errorf("the metadata URL template may hold only {scheme}, {host} and {path}")
		}
		pr.parts = append(pr.parts, tmplPart{v: v})
		rest = rest[j+1:]
	}
	for _, p := range pr.parts {
		if p.v == 0 && strings.ContainsFunc(p.lit, func(r rune) bool { return r <= ' ' || r == '"' || r == '\\' || r >= 0x7f }) {
			return nil, fmt.Errorf("the metadata URL must not hold spaces, quotes, backslashes or control characters")
		}
	}
	sample := pr.render("https", "registry.example.com", "/mcp")
	u, err := url.Parse(sample)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, fmt.Errorf("the metadata URL must be an absolute http(s) URL with a host, without user information or fragment (e.g. https://{host}/.well-known/oauth-protected-resource{path})")
	}
	for _, s := range cfg.Scopes {
		if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == '"' || r == '\\' || r >= 0x7f }) {
			return nil, fmt.Errorf("scope %q is not a scope token (RFC 6749: printable ASCII without spaces, quotes or backslashes)", s)
		}
	}
	if len(cfg.Scopes) > 0 {
		pr.scope = `, scope="` + strings.Join(cfg.Scopes, " ") + `"`
	}
	return pr, nil
}

// render fills the template in.
func (pr *protectedResource) render(scheme, host, path string) string {
	var b strings.Builder
	for _, p := range pr.parts {
		switch p.v {
		case 0:
			b.WriteString(p.lit)
		case 's':
			b.WriteString(scheme)
		case 'h':
			b.WriteString(host)
		case 'p':
			escapePath(&b, path)
		}
	}
	return b.String()
}

// escapePath writes a normalised (decoded) path percent-encoded: what may
// stand in a URL path and a quoted-string as it is, anything else (quotes,
// backslashes, '%', non-ASCII) as %XX.
func escapePath(b *strings.Builder, path string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(path); i++ {
		c := path[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("/-._~!$&'()*+,;=:@", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
}

// insufficientScope are the 403 reasons that mean a credential was
// accepted but does not reach this request: answered with
// error="insufficient_scope".
var insufficientScope = map[check.Reason]bool{
	check.ReasonAPIKeyForbidden:        true,
	check.ReasonFederationTokenOffPath: true,
}

// Challenge is the WWW-Authenticate value for a denial of r (its path
// normalised), "" when the policy has no protected resource metadata, the
// path is not one it challenges on, or the reason calls for none:
//
//	401: Bearer realm="registry", resource_metadata="<url>"[, scope="..."]
//	403 for a credential that does not reach the request (api_key_forbidden,
//	federation_token_off_federation_paths):
//	     Bearer realm="registry", error="insufficient_scope", resource_metadata="<url>"[, scope="..."]
//
// A delegate's own challenge (delegated_unauthorized) is relayed instead.
func (p *Policy) Challenge(r *check.Request, path string, reason check.Reason) string {
	pr := p.protected
	if pr == nil || path == "" || (!pr.registryPaths && pathnorm.HasPrefix(path, p.registryPrefixes)) {
		return ""
	}
	var errPart string
	switch {
	case reason == check.ReasonDelegatedUnauthorized || reason == check.ReasonDelegatedForbidden:
		return ""
	case reason.Status() == check.StatusUnauthorized:
	case insufficientScope[reason]:
		errPart = `, error="insufficient_scope"`
	default:
		return ""
	}
	return `Bearer realm="registry"` + errPart + `, resource_metadata="` + pr.render(r.Scheme, r.Host, path) + `"` + pr.scope
}

// public reports whether a request passes without credentials: a GET, HEAD
// or OPTIONS on one of the policy's public paths (normalised path,
// prefixes matched as Registry API prefixes are).
func (p *Policy) public(method, path string) bool {
	if len(p.publicPaths) == 0 || (method != "GET" && method != "HEAD" && method != "OPTIONS") {
		return false
	}
	return pathnorm.HasPrefix(path, p.publicPaths)
}
