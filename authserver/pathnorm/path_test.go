package pathnorm

import (
	"net/url"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func TestNormalizePath(t *testing.T) {
	cases := []struct {
		raw, want string
		bad       bool
	}{
		{raw: "/", want: "/"},
		{raw: "/api/servers", want: "/api/servers"},
		{raw: "/api/servers/", want: "/api/servers/"},
		{raw: "//api///servers", want: "/api/servers"},
		{raw: "/api//servers", want: "/api/servers"},
		{raw: "//api/servers", want: "/api/servers"},
		{raw: "/api/servers//", want: "/api/servers/"},
		{raw: "//", want: "/"},
		{raw: "/api/%2fservers", want: "/api/servers"},
		{raw: "/api/...", want: "/api/..."},
		{raw: "/api/.hidden", want: "/api/.hidden"},
		{raw: "/api/..hidden", want: "/api/..hidden"},
		{raw: "/api/x..", want: "/api/x.."},
		{raw: "/api/..;/x", want: "/api/..;/x"},
		{raw: "/api/%2e%2e%2e", want: "/api/..."},
		{raw: "/api/a%20b", bad: true},
		{raw: "/api/a b", bad: true},
		{raw: "/api/x Authorization: Bearer t", bad: true}, // an obs-fold'ed next header
		{raw: "/api/%25", want: "/api/%"},
		{raw: "/api/%2525", want: "/api/%25"},
		{raw: "/api;v=1/x", want: "/api;v=1/x"},
		{raw: "/API/x", want: "/API/x"},
		{raw: "/\xd0\xb0pi/x", want: "/\xd0\xb0pi/x"},
		// Dot segments, raw or decoded, anywhere: nginx resolves them but
		// forwards the raw URI, which the upstream may not resolve.
		{raw: "/api/./servers", bad: true},
		{raw: "/api/.", bad: true},
		{raw: "/api/..", bad: true},
		{raw: "/api/../", bad: true},
		{raw: "/./api/servers", bad: true},
		{raw: "/api/../mcpserver/mcp", bad: true},
		{raw: "/mcpserver/../api/servers", bad: true},
		{raw: "/api/agents/x/../../servers/foo", bad: true},
		{raw: "/api//../mcpserver", bad: true},
		{raw: "/api/%2e%2e/mcpserver", bad: true},
		{raw: "/api/%2E%2e/mcpserver", bad: true},
		{raw: "/api/.%2e/mcpserver", bad: true},
		{raw: "/api/%2e/servers", bad: true},
		{raw: "/api%2f..%2fmcpserver", bad: true},
		{raw: "/api/servers%2F..%2Fagents", bad: true},
		{raw: "/api/servers%2f.", bad: true},
		{raw: "/..", bad: true},
		{raw: "/api/../..", bad: true},
		{raw: "/%2e%2e/api", bad: true},
		{raw: "/api/%zz", bad: true},
		{raw: "/api/%2", bad: true},
		{raw: "/api/%", bad: true},
		{raw: "/api/%00x", bad: true},
		{raw: "/api/%3f", bad: true},
		{raw: "/api/x#frag", bad: true},
		{raw: "/api/x?q", bad: true},
		{raw: "/api/\x7f", bad: true},
		{raw: "/api/%0a", bad: true},
		{raw: "api/x", bad: true},
		{raw: "", bad: true},
		{raw: "/" + strings.Repeat("a", maxPathLen), bad: true},
	}
	for _, tc := range cases {
		t.Run(tc.raw[:min(len(tc.raw), 40)], func(t *testing.T) {
			g := NewWithT(t)
			got, err := Normalize(tc.raw)
			want, ok := refNormalizePath(tc.raw)
			g.Expect(ok).To(Equal(!tc.bad), "the model disagrees with the table")
			g.Expect(want).To(Equal(tc.want), "the model disagrees with the table")
			if tc.bad {
				g.Expect(err).To(HaveOccurred(), "normalised to %q", got)
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

func TestNormalizePathNoAllocWhenNormal(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := Normalize("/api/servers/io.github.example/versions/1.2.3"); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("normal path allocated %v times", allocs)
	}
}

func TestHasPathPrefix(t *testing.T) {
	g := NewWithT(t)
	prefixes := []string{"/api/", "/v0.1"}
	for p, want := range map[string]bool{
		"/api/servers": true, "/api/": true, "/api": false, "/apis/x": false,
		"/v0.1": true, "/v0.1/servers": true, "/v0.10": false, "/": false,
	} {
		g.Expect(HasPrefix(p, prefixes)).To(Equal(want), p)
	}
}

// refNormalizePath is a plain model of Normalize: percent-decode once
// (refusing bad escapes, an encoded NUL, a decoded '?', control characters
// and spaces, and a raw '#' or '?'), refuse any "." or ".." segment of the
// decoded path, and merge runs of "/".
func refNormalizePath(raw string) (string, bool) {
	if raw == "" || raw[0] != '/' || len(raw) > maxPathLen || strings.ContainsAny(raw, "#?") {
		return "", false
	}
	dec, err := url.PathUnescape(raw)
	if err != nil {
		return "", false
	}
	for i := 0; i < len(dec); i++ {
		if c := dec[i]; c <= ' ' || c == 0x7f || c == '?' {
			return "", false
		}
	}
	for _, seg := range strings.Split(dec, "/") {
		if seg == "." || seg == ".." {
			return "", false
		}
	}
	var b strings.Builder
	for i := 0; i < len(dec); i++ {
		if dec[i] == '/' && i > 0 && dec[i-1] == '/' {
			continue
		}
		b.WriteByte(dec[i])
	}
	return b.String(), true
}

// FuzzNormalizePath checks Normalize against refNormalizePath, and that
// the normalised path is normal: normalising it again changes nothing, and
// it has no empty, "." or ".." segments.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{
		"/", "/api/servers", "//a//b/", "/a/./b/../c", "/%2e%2e/x", "/a%2f..%2fb", "/%25/%41", "/api/..%2f..%2fx",
		"/api/agents/x/../../servers/foo", "/api/servers%2F..%2Fagents", "/api/..;/x", "/api/.%2E/", "/api/%2e%2e%2e",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := Normalize(raw)
		want, ok := refNormalizePath(raw)
		if ok != (err == nil) || got != want {
			t.Fatalf("%q -> %q (%v), the model says %q (ok %v)", raw, got, err, want, ok)
		}
		if err != nil {
			return
		}
		if !strings.HasPrefix(got, "/") {
			t.Fatalf("%q -> %q: not absolute", raw, got)
		}
		for i, seg := range strings.Split(got[1:], "/") {
			last := i == strings.Count(got[1:], "/")
			if seg == "." || seg == ".." || (seg == "" && !last) {
				t.Fatalf("%q -> %q: segment %q left", raw, got, seg)
			}
		}
		// Idempotent, unless decoding produced a byte the raw form refuses
		// ('%' sequences and '#' are literal after one decoding).
		if !strings.ContainsAny(got, "%#") {
			again, err := Normalize(got)
			if err != nil || again != got {
				t.Fatalf("%q -> %q -> %q (%v)", raw, got, again, err)
			}
		}
	})
}
