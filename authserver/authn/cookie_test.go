package authn

import (
	"strings"
	"testing"
)

// cookieValuesReference reads every value of the cookie name from Cookie
// header values the way Starlette and Django do: pairs split at ';', name
// and value split at the first '=', both trimmed, surrounding quotes
// removed. It is written independently of CookieValue, as the oracle.
func cookieValuesReference(headers []string, name string) []string {
	var vals []string
	for _, h := range headers {
		for _, part := range strings.Split(h, ";") {
			k, v, ok := strings.Cut(part, "=")
			if !ok || strings.TrimSpace(k) != name {
				continue
			}
			v = strings.TrimSpace(v)
			if len(v) >= 2 && strings.HasPrefix(v, `"`) && strings.HasSuffix(v, `"`) {
				v = v[1 : len(v)-1]
			}
			vals = append(vals, v)
		}
	}
	return vals
}

// FuzzCookieValue checks the Cookie header parser that finds the session
// cookie (issue 21, item 6): it never panics; it finds the cookie exactly
// when the reference parser (Starlette's and Django's reading) finds one;
// it returns that value when all of the cookie's values agree and refuses
// the cookie as ambiguous when they do not, whatever the spelling (spaces
// around the name, quotes, several headers); and adding a second,
// different value in any spelling makes a found cookie ambiguous.
func FuzzCookieValue(f *testing.F) {
	const name = "mcp_gateway_session"
	for _, s := range [][2]string{
		{"mcp_gateway_session=A", ""},
		{"mcp_gateway_session=A; mcp_gateway_session =B", ""},
		{"mcp_gateway_session=A", " mcp_gateway_session=\"A\""},
		{"x=1; mcp_gateway_session= A ;y", "mcp_gateway_session"},
		{"mcp_gateway_session\t=B", "mcp_gateway_session=A=B"},
		{"=; ;;=mcp_gateway_session", "\"mcp_gateway_session\"=A"},
		{"mcp_gateway_session=\"\"", "mcp_gateway_session=\""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, h1, h2 string) {
		headers := []string{h1, h2}
		v, found, ambiguous := CookieValue(headers, name)
		ref := cookieValuesReference(headers, name)
		if found != (len(ref) > 0) {
			t.Fatalf("%q: found %v, reference found %d values", headers, found, len(ref))
		}
		if HasCookie(headers, name) != found {
			t.Fatalf("%q: HasCookie differs from CookieValue", headers)
		}
		differ := false
		for _, r := range ref {
			differ = differ || r != ref[0]
		}
		if ambiguous != differ {
			t.Fatalf("%q: ambiguous %v, reference values %q", headers, ambiguous, ref)
		}
		if ambiguous && v != "" {
			t.Fatalf("%q: an ambiguous cookie returned a value", headers)
		}
		if !found || ambiguous {
			return
		}
		if v != ref[0] {
			t.Fatalf("%q: value %q, reference %q", headers, v, ref[0])
		}
		// Another value, in another spelling, in its own header or
		// appended: never the first value silently.
		other := v + "x"
		for _, extra := range [][]string{
			{h1, h2, " " + name + " = " + other},
			{h1, h2 + "; " + name + "\t=\"" + other + "\""},
		} {
			if w, _, amb := CookieValue(extra, name); !amb || w != "" {
				t.Fatalf("%q: a second, different value is not refused (got %q)", extra, w)
			}
		}
	})
}
