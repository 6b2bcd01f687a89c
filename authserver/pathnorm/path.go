// Package pathnorm normalises the path and host of the original request the
// way the ingress does, so the decision sees what the ingress routes on.
//
// The auth service decides by path: static tokens and API keys count only on
// Registry API paths, and an API key may be narrowed to path prefixes. The
// ingress routes a request by the *normalised* path (nginx's $uri), while
// X-Original-URL carries the raw request URI ($request_uri), and
// ingress-nginx's `proxy_pass http://upstream;` (no URI part) forwards that
// raw URI to the upstream. nginx resolves dot segments; an upstream may not (a
// Starlette application under uvicorn does not). nginx routes
// "/api/agents/x/../../servers/foo" as "/api/servers/foo", while such an
// upstream serves it as "/api/agents/{path}": whichever form the auth service
// decided on, a credential meant for one path would reach the other. So a
// path whose decoded form has a "." or ".." segment is refused, for every
// credential; legitimate clients (browsers, HTTP libraries) never send dot
// segments.
//
// Other paths are normalised the way nginx does it (ngx_http_parse_complex_uri
// with merge_slashes on, the ingress-nginx default):
//
//   - percent-decoding, once; a decoded "/" or "." takes part in the steps
//     below, as in nginx (so "%2e%2e" and "%2F..%2F" are dot segments too);
//   - runs of "/" merged into one. Merging cannot move a request under
//     another prefix, so "//api//servers" is decided as "/api/servers".
//
// Where nginx would refuse the URI (bad percent-encoding, an encoded NUL) or
// where the two could disagree (a dot segment, a raw '#', a decoded '?',
// control characters), the request is refused: refusing is always safe for an
// auth check. Query strings never reach this function; they never change the
// decision. Matching is case-sensitive, like nginx's prefix locations on Linux,
// so "/API/" is not a Registry API path.
package pathnorm

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadPath is returned for paths that cannot be normalised safely.
var ErrBadPath = errors.New("path cannot be normalised")

// maxPathLen bounds the work done on one path. nginx's default
// large_client_header_buffers (8k) bounds the request line well below it.
const maxPathLen = 16 << 10

// Normalize returns the normalised form of an absolute raw path (without
// query). It does not allocate when the raw path is already normal.
func Normalize(raw string) (string, error) {
	if len(raw) == 0 || raw[0] != '/' || len(raw) > maxPathLen {
		return "", ErrBadPath
	}
	if IsNormal(raw) {
		return raw, nil
	}
	decoded, err := percentDecodePath(raw)
	if err != nil {
		return "", err
	}
	return mergeSlashes(decoded)
}

// IsNormal reports whether p needs no decoding, merging or resolving, and
// holds no byte that is refused.
func IsNormal(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%', c == '#', c == '?', c <= ' ', c == 0x7f:
			return false
		case c == '/' && i+1 < len(p):
			n := p[i+1]
			if n == '/' {
				return false
			}
			if n == '.' {
				// "/." followed by end, "/" or "." is a dot segment.
				if i+2 == len(p) || p[i+2] == '/' || p[i+2] == '.' {
					return false
				}
			}
		}
	}
	return true
}

// percentDecodePath decodes %XX escapes once. Like nginx, it refuses a bad
// escape and an encoded NUL. It also refuses a raw '#' or '?', a decoded
// '?', control characters and spaces, raw or decoded: where nginx and the
// upstream application may read the path differently, and where a header
// folded into the next (obs-fold) would carry that header into the path.
func percentDecodePath(raw string) ([]byte, error) {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '#' || c == '?' || c <= ' ' || c == 0x7f:
			return nil, ErrBadPath
		case c == '%':
			if i+2 >= len(raw) {
				return nil, ErrBadPath
			}
			hi, ok1 := unhex(raw[i+1])
			lo, ok2 := unhex(raw[i+2])
			if !ok1 || !ok2 {
				return nil, ErrBadPath
			}
			d := hi<<4 | lo
			if d == '?' || d <= ' ' || d == 0x7f {
				return nil, ErrBadPath
			}
			out = append(out, d)
			i += 2
		default:
			out = append(out, c)
		}
	}
	return out, nil
}

// mergeSlashes merges slashes of a decoded absolute path and refuses a
// "." or ".." segment. A trailing slash is kept, as nginx does.
func mergeSlashes(p []byte) (string, error) {
	segs := make([]string, 0, strings.Count(string(p), "/"))
	trailingSlash := false
	for _, seg := range strings.Split(string(p[1:]), "/") {
		trailingSlash = false
		switch seg {
		case "":
			trailingSlash = true
		case ".", "..":
			return "", ErrBadPath
		default:
			segs = append(segs, seg)
		}
	}
	var b strings.Builder
	b.Grow(len(p))
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(s)
	}
	if trailingSlash || len(segs) == 0 {
		b.WriteByte('/')
	}
	return b.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// HasPrefix reports whether the normalised path p is under one of the
// prefixes. A prefix that ends in "/" is a plain string prefix, like an nginx
// prefix location ("/api/" matches "/api/servers", not "/api" nor "/apix");
// a prefix without a trailing "/" is matched at a segment boundary ("/v0.1"
// matches "/v0.1" and "/v0.1/x", not "/v0.10").
func HasPrefix(p string, prefixes []string) bool {
	for _, pre := range prefixes {
		if Under(p, pre) {
			return true
		}
	}
	return false
}

// Under reports whether the normalised path p is under one prefix (see
// HasPrefix).
func Under(p, pre string) bool {
	if strings.HasSuffix(pre, "/") {
		return strings.HasPrefix(p, pre)
	}
	return p == pre || (strings.HasPrefix(p, pre) && p[len(pre)] == '/')
}

// CheckPrefix accepts an absolute path prefix that is already normal.
func CheckPrefix(pre string) error {
	n, err := Normalize(pre)
	if err != nil || n != pre {
		return fmt.Errorf("path prefix %q must be an absolute, normalised path (no '..', '//', '%%' escapes or query)", pre)
	}
	return nil
}

// Host lower-cases a host and strips a port and a trailing dot. It returns ""
// for a value that is not a plausible host name. It does not allocate for a
// host that is already lower case (strings.ToLower returns such a string as
// is).
func Host(h string) string {
	h = strings.ToLower(h)
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return ""
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '.' && c != '[' && c != ']' && c != ':' {
			return ""
		}
	}
	return h
}
