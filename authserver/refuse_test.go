package authserver

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authn/statictoken"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// Requests that net/http refuses before the handler runs are answered 401
// with a reason by the auth service's connections (SanitizeListener), never
// 400, 417, 431, 501 or 505, which nginx would turn into a 500: on a real
// listener on 127.0.0.1, with the real Handler, on every route, byte for
// byte as a client could send them (issue 21, item 11).

// startSanitizedServer is the auth service as cmd runs it: NewServer with
// the real Handler behind SanitizeListener, on 127.0.0.1:0.
func startSanitizedServer(t *testing.T) (addr, token string) {
	t.Helper()
	token = serverTestToken(t)
	p, probs := policy.Compile(policy.PolicyConfig{
		Namespace:   "team",
		Name:        "registry",
		Hosts:       []string{"registry.example.com"},
		StaticToken: &statictoken.Config{Enabled: true, Token: authn.SecretValue{Value: []byte(token)}},
	}, policy.CompileOptions{})
	if len(probs) > 0 {
		t.Fatalf("compiling the policy: %v", probs)
	}
	store := policy.NewStore(policy.StoreOptions{})
	store.Put(p)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ln.Addr().String(), NewHandler(store, HandlerOptions{Log: logr.Discard()}))
	served := make(chan error, 1)
	go func() { served <- srv.Serve(SanitizeListener(ln)) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), token
}

// malformedHeads are request heads net/http refuses before any handler,
// with the status it answers on its own. route is put in the request line.
func malformedHeads(route, token string) []struct{ name, head, netHTTP string } {
	ok := "X-Original-URL: http://registry.example.com/api/servers\r\nX-Original-Method: GET\r\nAuthorization: Bearer " + token + "\r\n"
	line := "GET " + route + " HTTP/1.1\r\n"
	host := "Host: auth.test\r\n"
	return []struct{ name, head, netHTTP string }{
		{"bare CR in a header value", line + host + ok + "X-Trace: a\rb\r\n", "400"},
		{"bare CR in the token", line + host + "X-Original-URL: http://registry.example.com/api/servers\r\nAuthorization: Bearer " + token[:8] + "\r" + token[8:] + "\r\n", "400"},
		{"space before the colon", line + host + ok + "X-Trace : a\r\n", "400"},
		{"space inside a header name", line + host + ok + "X Trace: a\r\n", "400"},
		{"parenthesis in a header name", line + host + ok + "X(Trace): a\r\n", "400"},
		{"non-ASCII header name", line + host + ok + "X-Tr\xe4ce: a\r\n", "400"},
		{"empty header name", line + host + ok + ": a\r\n", "400"},
		{"header line without a colon", line + host + ok + "X-Trace\r\n", "400"},
		{"Host with a space", line + "Host: auth test\r\n" + ok, "400"},
		{"Host with a slash", line + "Host: auth/test\r\n" + ok, "400"},
		{"Host with non-ASCII", line + "Host: \xe4uth.test\r\n" + ok, "400"},
		{"no Host", line + ok, "400"},
		{"two Hosts", line + host + host + ok, "400"},
		{"request line without a version", "GET " + route + "\r\n" + host + ok, "400"},
		{"request line with a tab", "GET\t" + route + " HTTP/1.1\r\n" + host + ok, "400"},
		{"protocol HTTP/1.x", "GET " + route + " HTTP/1.x\r\n" + host + ok, "400"},
		{"protocol HTTP/2.0", "GET " + route + " HTTP/2.0\r\n" + host + ok, "505"},
		{"protocol HTTP/3.1", "GET " + route + " HTTP/3.1\r\n" + host + ok, "505"},
		{"invalid Content-Length", line + host + ok + "Content-Length: x\r\n", "400"},
		{"two different Content-Lengths", line + host + ok + "Content-Length: 1\r\nContent-Length: 2\r\n", "400"},
		{"unknown Transfer-Encoding", line + host + ok + "Transfer-Encoding: gzip\r\n", "501"},
		{"Expect other than 100-continue", line + host + ok + "Expect: something\r\n", "417"},
		{"header over 64 KiB", line + host + ok + "X-Padding: " + strings.Repeat("a", MaxHeaderBytes+8<<10) + "\r\n", "431"},
	}
}

func TestMalformedRequestsAnswered401(t *testing.T) {
	addr, token := startSanitizedServer(t)
	before := map[string]int64{"malformed": refused.malformed.Load(), "tooLarge": refused.tooLarge.Load()}
	n := map[string]int64{}
	for _, route := range []string{"/validate", "/validate/team/registry", "/ext-authz/api/servers", "/forward-auth", "/.well-known/internal-jwks.json"} {
		for _, tc := range malformedHeads(route, token) {
			t.Run(route+"/"+tc.name, func(t *testing.T) {
				resp, err := rawRequest(addr, []byte(tc.head+"\r\n"))
				if err != nil {
					t.Fatal(err)
				}
				wantReason := string(ReasonMalformedRequest)
				if tc.netHTTP == "431" {
					wantReason = string(ReasonRequestHeaderTooLarge)
					n["tooLarge"]++
				} else {
					n["malformed"]++
				}
				if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("X-Auth-Reason") != wantReason {
					t.Errorf("got %d, X-Auth-Reason %q; want 401 %s (net/http alone answers %s)", resp.StatusCode, resp.Header.Get("X-Auth-Reason"), wantReason, tc.netHTTP)
				}
				if resp.Header.Get("Www-Authenticate") == "" || !resp.Close {
					t.Errorf("want WWW-Authenticate and Connection: close, got %v", resp.Header)
				}
				if strings.Contains(fmt.Sprint(resp.Header), token) {
					t.Error("the answer carries the token")
				}
			})
		}
	}
	if got := refused.malformed.Load() - before["malformed"]; got != n["malformed"] {
		t.Errorf("registry_auth_refused_requests_total{reason=malformed_request} grew by %d, want %d", got, n["malformed"])
	}
	if got := refused.tooLarge.Load() - before["tooLarge"]; got != n["tooLarge"] {
		t.Errorf("registry_auth_refused_requests_total{reason=request_header_too_large} grew by %d, want %d", got, n["tooLarge"])
	}
}

// The rewrite touches nothing else: well-formed requests get the handler's
// answers (200, 401, 404 off the auth routes) over one kept-alive
// connection, and a malformed request after them is answered 401 and ends
// the connection.
func TestWellFormedRequestsUntouched(t *testing.T) {
	addr, token := startSanitizedServer(t)
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	for i, tc := range []struct {
		head   string
		status int
		reason string
		body   string
	}{
		{"GET /validate HTTP/1.1\r\nHost: auth.test\r\nX-Original-URL: http://registry.example.com/api/servers\r\nAuthorization: Bearer " + token + "\r\n", 200, "static_token", ""},
		{"GET /validate?format=json HTTP/1.1\r\nHost: auth.test\r\nX-Original-URL: http://registry.example.com/api/servers\r\n", 401, "no_credentials", `"no_credentials"`},
		{"GET /nothing-here HTTP/1.1\r\nHost: auth.test\r\n", 404, "", "404 page not found"},
		{"GET /validate HTTP/1.1\r\nHost: auth.test\r\nX-Original-URL: http://registry.example.com/api/servers\r\nX-Trace: \x01\r\nAuthorization: Bearer " + token + "\r\n", 200, "static_token", ""},
		{"GET /validate HTTP/1.1\r\nHost: auth.test\r\nX-Trace : a\r\n", 401, string(ReasonMalformedRequest), ""},
	} {
		if _, err := conn.Write([]byte(tc.head + "\r\n")); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		reason := resp.Header.Get("X-Auth-Reason")
		if tc.status == 200 {
			reason = resp.Header.Get("X-Auth-Method")
			if resp.Header.Get("X-User") == "" {
				t.Errorf("request %d: allowed without X-User", i)
			}
			reason = map[bool]string{true: "static_token"}[reason == "network-trusted"]
		}
		if resp.StatusCode != tc.status || reason != tc.reason || !strings.Contains(string(body), tc.body) {
			t.Errorf("request %d: %d %q %q, want %d %q with %q in the body", i, resp.StatusCode, reason, body, tc.status, tc.reason, tc.body)
		}
		if last := i == 4; resp.Close != last {
			t.Errorf("request %d: Connection: close is %v, want %v (keep-alive until the malformed one)", i, resp.Close, last)
		}
	}
	if _, err := br.ReadByte(); err == nil {
		t.Error("the connection stays open after a malformed request")
	}
}

// rawRequest writes req on a new connection while reading the answer (the
// server may answer before it has read an oversized request).
func rawRequest(addr string, req []byte) (*http.Response, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	go func() { _, _ = conn.Write(req) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp, nil
}

// BenchmarkSanitizedConnWrite is the cost of the rewrite check on the
// answers that pass (a 200 and a 401 as the handler writes them), and of
// the read-side sanitising of a typical request, against the plain conn.
func BenchmarkSanitizedConnWrite(b *testing.B) {
	answers := map[string][]byte{
		"200": []byte("HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nX-Auth-Method: network-trusted\r\nX-User: network-user\r\nDate: Fri, 27 Nov 2026 22:04:53 GMT\r\nContent-Length: 0\r\n\r\n"),
		"401": []byte("HTTP/1.1 401 Unauthorized\r\nCache-Control: no-store\r\nWww-Authenticate: Bearer realm=\"registry\"\r\nX-Auth-Reason: no_credentials\r\nDate: Fri, 27 Nov 2026 22:04:53 GMT\r\nContent-Length: 0\r\n\r\n"),
	}
	for name, a := range answers {
		b.Run("write "+name+" sanitized", func(b *testing.B) {
			c := sanitizingConn{discardConn{}}
			b.SetBytes(int64(len(a)))
			for b.Loop() {
				_, _ = c.Write(a)
			}
		})
		b.Run("write "+name+" plain", func(b *testing.B) {
			var c net.Conn = discardConn{}
			b.SetBytes(int64(len(a)))
			for b.Loop() {
				_, _ = c.Write(a)
			}
		})
	}
}

// discardConn is a net.Conn that discards writes.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkServerSanitizedListener is one allowed /validate check over a
// kept-alive connection to the real server, with SanitizeListener (as cmd
// runs it) and without.
func BenchmarkServerSanitizedListener(b *testing.B) {
	for _, sanitize := range []bool{true, false} {
		b.Run(map[bool]string{true: "sanitized", false: "plain"}[sanitize], func(b *testing.B) {
			tb := make([]byte, 32)
			_, _ = rand.Read(tb)
			token := hex.EncodeToString(tb)
			p, _ := policy.Compile(policy.PolicyConfig{
				Namespace: "team", Name: "registry", Hosts: []string{"registry.example.com"},
				StaticToken: &statictoken.Config{Enabled: true, Token: authn.SecretValue{Value: []byte(token)}},
			}, policy.CompileOptions{})
			store := policy.NewStore(policy.StoreOptions{})
			store.Put(p)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := NewServer(ln.Addr().String(), NewHandler(store, HandlerOptions{Log: logr.Discard()}))
			sl := ln
			if sanitize {
				sl = SanitizeListener(ln)
			}
			go func() { _ = srv.Serve(sl) }()
			defer func() { _ = srv.Close() }()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = conn.Close() }()
			req := []byte("GET /validate HTTP/1.1\r\nHost: auth.test\r\nX-Original-URL: http://registry.example.com/api/servers\r\nX-Original-Method: GET\r\nAuthorization: Bearer " + token + "\r\n\r\n")
			br := bufio.NewReader(conn)
			for b.Loop() {
				if _, err := conn.Write(req); err != nil {
					b.Fatal(err)
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != 200 {
					b.Fatalf("%v %v", resp, err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		})
	}
}
