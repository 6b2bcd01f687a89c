/*
Copyright 2026 The registry-auth-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package e2e

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/test/e2e/nginxtest"
)

// Adversarial requests, each sent twice: straight to the binary's /validate
// with the headers nginx would send (X-Original-URL and X-Original-Method set
// by the test), and as a client request through the real nginx, which builds
// the auth subrequest itself. Every request is written verbatim on a raw
// TCP connection, so nothing (Go's client, URL parsing) cleans it up on the
// way.
//
// For every case the test checks the status of both, the reason the auth
// service gave (from the JSON body when called directly, from the
// registry_auth_decisions_total series that grew when called by nginx),
// whether nginx called the auth service at all and whether the upstream was
// reached (and as whom). A 5xx is never expected: through nginx it would mean
// the auth service answered something other than 200/401/403.

// hv is one header line, sent as "<k>: <v>\r\n" without any checks, so
// repeated headers, odd names and raw bytes are possible.
type hv struct{ k, v string }

// advClient is the request a client sends to nginx.
type advClient struct {
	method string // default GET
	target string // the request-target, verbatim
	proto  string // default HTTP/1.1
	// host is the Host header; default registryHost. advHostEmpty sends
	// "Host: " with no value; noHost sends none.
	host    string
	noHost  bool
	headers []hv
	// body is sent with Content-Length (or chunked when chunked is set).
	body    string
	chunked bool
	// declaredLength sends this Content-Length without sending a body.
	declaredLength int
}

const advHostEmpty = "\x00empty"

// advDirect overrides what the test sends to /validate itself; nil fields
// are derived from the client request as nginx would build them.
type advDirect struct {
	urls    []string // X-Original-URL values; nil: "http://" + Host + target
	noURL   bool     // send no X-Original-URL
	methods []string // X-Original-Method values; nil: the client's method
	headers []hv     // nil: the client's headers minus those nginx sets
}

// advExp is an expected outcome.
type advExp struct {
	status int
	// reason is the auth service's reason (deny reason, or allow reason
	// such as "static_token"); "" when the auth service must not decide.
	reason string
	// user is the X-User the upstream (or the direct caller) sees when
	// allowed.
	user string
	// by is "" when the auth service decides, "nginx" when nginx answers
	// itself without calling the auth service or the upstream, "conn"
	// when the auth service's connection refuses a request net/http
	// cannot read (401 with reason, no decision: SanitizeListener).
	by string
}

func advAllowed(reason, user string) advExp {
	return advExp{status: http.StatusOK, reason: reason, user: user}
}
func advDenied(status int, reason string) advExp {
	return advExp{status: status, reason: reason}
}
func advByNginx(status int) advExp { return advExp{status: status, by: "nginx"} }

// advRefused is the auth service's 401 for a request net/http refuses
// before the handler runs (it would answer 400, 417, 431, 501 or 505
// itself, which nginx turns into a 500).
func advRefused(reason string) advExp {
	return advExp{status: http.StatusUnauthorized, reason: reason, by: "conn"}
}

// advNot5xx is any status below 500 (from whoever answers), with the
// upstream reached only on 200.
var advNot5xx = advExp{by: "not5xx"}

func (e advExp) String() string {
	switch e.by {
	case "not5xx":
		return "any status below 500"
	case "nginx":
		return fmt.Sprintf("%d from nginx itself", e.status)
	case "conn":
		return fmt.Sprintf("%d %s from the auth service's connection", e.status, e.reason)
	}
	if e.user != "" {
		return fmt.Sprintf("%d %s as %s", e.status, e.reason, e.user)
	}
	return fmt.Sprintf("%d %s", e.status, e.reason)
}

type advCase struct {
	name string
	// why explains the expectation where it is not obvious, in particular
	// every 200 and every refusal by nginx itself.
	why    string
	c      advClient
	d      *advDirect
	direct advExp
	// nginx is the outcome through nginx; nil: the same as direct.
	nginx *advExp
	// bug marks a case whose correct outcome (above) the product does not
	// deliver yet; see run.
	bug string
}

func advPtr[T any](v T) *T { return &v }

// advNginxSets are the headers nginx's auth location sets itself; a client's
// values never reach the auth service.
var advNginxSets = map[string]bool{
	"host": true, "content-length": true, "x-forwarded-proto": true, "x-request-id": true,
	"x-original-url": true, "x-original-method": true, "x-sent-from": true, "x-real-ip": true,
	"x-forwarded-for": true, "x-auth-request-redirect": true, "connection": true,
	"transfer-encoding": true, "te": true, "keep-alive": true, "expect": true, "upgrade": true,
}

func (c advClient) methodOr() string {
	if c.method == "" {
		return http.MethodGet
	}
	return c.method
}

func (c advClient) hostHeader() (string, bool) {
	switch {
	case c.noHost:
		return "", false
	case c.host == advHostEmpty:
		return "", true
	case c.host == "":
		return registryHost, true
	}
	return c.host, true
}

// wire is the request as the client writes it to nginx.
func (c advClient) wire() []byte {
	var b strings.Builder
	proto := c.proto
	if proto == "" {
		proto = "HTTP/1.1"
	}
	fmt.Fprintf(&b, "%s %s %s\r\n", c.methodOr(), c.target, proto)
	if h, ok := c.hostHeader(); ok {
		b.WriteString("Host: " + h + "\r\n")
	}
	for _, h := range c.headers {
		b.WriteString(h.k + ": " + h.v + "\r\n")
	}
	switch {
	case c.chunked:
		b.WriteString("Transfer-Encoding: chunked\r\n")
	case c.declaredLength > 0:
		b.WriteString("Content-Length: " + strconv.Itoa(c.declaredLength) + "\r\n")
	case c.body != "":
		b.WriteString("Content-Length: " + strconv.Itoa(len(c.body)) + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	if c.chunked {
		fmt.Fprintf(&b, "%x\r\n%s\r\n0\r\n\r\n", len(c.body), c.body)
	} else {
		b.WriteString(c.body)
	}
	return []byte(b.String())
}

// directWire is the /validate request the test sends itself: what nginx's
// auth location would send for c, or d's overrides.
func (tc advCase) directWire(authAddr string) []byte {
	d := advDirect{}
	if tc.d != nil {
		d = *tc.d
	}
	urls := d.urls
	if urls == nil && !d.noURL {
		h, _ := tc.c.hostHeader()
		urls = []string{"http://" + h + tc.c.target}
	}
	methods := d.methods
	if methods == nil {
		methods = []string{tc.c.methodOr()}
	}
	headers := d.headers
	if headers == nil {
		for _, h := range tc.c.headers {
			if !advNginxSets[strings.ToLower(strings.TrimSpace(h.k))] {
				headers = append(headers, h)
			}
		}
	}
	var b strings.Builder
	b.WriteString("GET /validate HTTP/1.1\r\nHost: " + authAddr + "\r\n")
	for _, u := range urls {
		b.WriteString("X-Original-URL: " + u + "\r\n")
	}
	for _, m := range methods {
		b.WriteString("X-Original-Method: " + m + "\r\n")
	}
	b.WriteString("X-Sent-From: nginx-ingress-controller\r\n")
	for _, h := range headers {
		b.WriteString(h.k + ": " + h.v + "\r\n")
	}
	b.WriteString("Connection: close\r\n\r\n")
	return []byte(b.String())
}

// advResponse is a response read off a raw connection.
type advResponse struct {
	status int
	header http.Header
	body   []byte
	dump   string // status line, headers and body, for the leak scan
}

// advExchange writes req to addr while reading the response concurrently:
// a server may answer and close before it has read an oversized request.
func advExchange(addr string, req []byte, method string) (*advResponse, error) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	go func() { _, _ = conn.Write(req) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("reading the body: %w", err)
	}
	var dump strings.Builder
	fmt.Fprintf(&dump, "%s %s\n", resp.Proto, resp.Status)
	_ = resp.Header.Write(&dump)
	dump.Write(body)
	return &advResponse{status: resp.StatusCode, header: resp.Header, body: body, dump: dump.String()}, nil
}

var advDecisionLine = regexp.MustCompile(`^registry_auth_decisions_total\{[^}]*reason="([^"]*)"[^}]*\} ([0-9.e+]+)$`)

// advDecisions reads registry_auth_decisions_total from the binary's /metrics,
// summed by reason.
func advDecisions(t *testing.T, p *proc) map[string]float64 {
	t.Helper()
	resp, err := probeClient.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		t.Fatalf("reading /metrics: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("reading /metrics: status %d, %v", resp.StatusCode, err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if m := advDecisionLine.FindStringSubmatch(line); m != nil {
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				t.Fatalf("metrics line %q: %v", line, err)
			}
			out[m[1]] += v
		}
	}
	return out
}

// advDecisionDelta is which reasons grew between two readings, and by how much.
func advDecisionDelta(before, after map[string]float64) map[string]float64 {
	d := map[string]float64{}
	for k, v := range after {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

func advDescribe(d map[string]float64) string {
	if len(d) == 0 {
		return "not called"
	}
	var parts []string
	for k, v := range d {
		parts = append(parts, fmt.Sprintf("%s×%g", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// advEnv is the binary behind nginx that the table runs against.
type advEnv struct {
	p       *proc
	ng      *nginxtest.Nginx
	secrets *secretSet
	// errLogMark is the length of nginx's error.log before the last
	// request.
	errLogMark int
	// dumps are the responses the test received (the upstream's echo
	// excepted, which repeats the request's headers by design).
	dumps strings.Builder
}

// advErrs collects a case's failures, so that a case marked as a known
// product bug can report them without failing the run.
type advErrs struct{ msgs []string }

func (a *advErrs) Errorf(format string, args ...any) {
	a.msgs = append(a.msgs, fmt.Sprintf(format, args...))
}

// direct sends tc's /validate request straight to the binary and returns
// the response, its deny reason (X-Auth-Reason; "" for an allow) and how
// the decision counters grew.
func (e *advEnv) direct(t *testing.T, tc advCase) (*advResponse, string, map[string]float64) {
	t.Helper()
	before := advDecisions(t, e.p)
	r, err := advExchange(e.p.auth, tc.directWire(e.p.auth), http.MethodGet)
	if err != nil {
		t.Fatalf("direct: %v", err)
	}
	delta := advDecisionDelta(before, advDecisions(t, e.p))
	e.dumps.WriteString(r.dump)
	reason := r.header.Get("X-Auth-Reason")
	if r.status == http.StatusOK {
		reason = ""
	}
	if len(r.body) != 0 && r.header.Get("X-Auth-Reason") != "" {
		t.Errorf("direct: /validate answered with a %d-byte body; nginx could not keep the connection", len(r.body))
	}
	return r, reason, delta
}

// viaNginx sends c to nginx and returns the response, how the decision
// counters grew and how often the upstream was hit.
func (e *advEnv) viaNginx(t *testing.T, c advClient) (*advResponse, map[string]float64, int64) {
	t.Helper()
	hits := e.ng.UpstreamHits()
	e.errLogMark = len(e.ng.ErrorLog())
	before := advDecisions(t, e.p)
	r, err := advExchange(strings.TrimPrefix(e.ng.URL(), "http://"), c.wire(), c.methodOr())
	if err != nil {
		t.Fatalf("through nginx: %v", err)
	}
	return r, advDecisionDelta(before, advDecisions(t, e.p)), e.ng.UpstreamHits() - hits
}

// run sends tc both ways and checks the outcomes.
func (e *advEnv) run(t *testing.T, tc advCase) {
	t.Helper()
	errs := &advErrs{}
	dr, directReason, directDelta := e.direct(t, tc)
	e.checkDirect(errs, tc.direct, dr, directReason, directDelta)

	want := tc.direct
	if tc.nginx != nil {
		want = *tc.nginx
	}
	nr, nginxDelta, upstream := e.viaNginx(t, tc.c)
	e.checkNginx(errs, want, nr, nginxDelta, upstream, tc.c.methodOr())

	t.Logf("direct: %d, auth service %s | nginx: %d, auth service %s, upstream %s", dr.status, advDescribe(directDelta),
		nr.status, advDescribe(nginxDelta), map[bool]string{true: "reached", false: "not reached"}[upstream > 0])
	if tc.why != "" {
		t.Logf("why: %s", tc.why)
	}
	advReport(t, errs, tc.bug)
}

// advReport fails t with errs, unless bug names a known product bug: the
// expectations are the correct behaviour, so while the bug is there the case
// is skipped, loudly, and once it is fixed the case fails until the marker is
// removed.
func advReport(t *testing.T, errs *advErrs, bug string) {
	t.Helper()
	if bug == "" {
		for _, m := range errs.msgs {
			t.Error(m)
		}
		return
	}
	if len(errs.msgs) == 0 {
		t.Fatalf("marked as a known product bug (%s) but behaves as expected now: remove the bug marker", bug)
	}
	for _, m := range errs.msgs {
		t.Log(m)
	}
	t.Skipf("KNOWN PRODUCT BUG: %s", bug)
}

func advOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (e *advEnv) checkDirect(t *advErrs, want advExp, r *advResponse, reason string, delta map[string]float64) {
	if r.status >= 500 {
		t.Errorf("direct: %d: the auth service must never answer 5xx", r.status)
	}
	if want.by == "not5xx" {
		return
	}
	if r.status != want.status {
		t.Errorf("direct: status %d (reason %q), want %s", r.status, reason, want)
	}
	switch want.by {
	case "conn":
		if len(delta) != 0 {
			t.Errorf("direct: want the connection to refuse before the handler, but decisions grew: %s", advDescribe(delta))
		}
		if r.header.Get("X-Auth-Reason") != want.reason || r.header.Get("Www-Authenticate") == "" {
			t.Errorf("direct: X-Auth-Reason %q, WWW-Authenticate %q; want %s with WWW-Authenticate", r.header.Get("X-Auth-Reason"), r.header.Get("Www-Authenticate"), want.reason)
		}
		return
	case "nginx":
		panic("a direct request cannot be refused by nginx")
	}
	wantDelta := map[string]float64{want.reason: 1}
	if fmt.Sprint(delta) != fmt.Sprint(wantDelta) {
		t.Errorf("direct: decisions grew by %s, want %s×1", advDescribe(delta), want.reason)
	}
	if want.status == http.StatusOK {
		if got := r.header.Get("X-User"); got != want.user {
			t.Errorf("direct: X-User %q, want %q", got, want.user)
		}
		return
	}
	if reason != want.reason {
		t.Errorf("direct: reason %q, want %q", reason, want.reason)
	}
	if r.header.Get("X-User") != "" {
		t.Errorf("direct: a denial carries X-User")
	}
	if want.status == http.StatusUnauthorized && r.header.Get("Www-Authenticate") == "" {
		t.Errorf("direct: 401 without WWW-Authenticate")
	}
}

func (e *advEnv) checkNginx(t *advErrs, want advExp, r *advResponse, delta map[string]float64, upstream int64, method string) {
	if r.header.Get("X-Nginxtest-Echo") == "" {
		e.dumps.WriteString(r.dump) // nginx's own answer (the echo repeats the request by design)
	}
	if r.status == http.StatusInternalServerError {
		t.Errorf("through nginx: 500: the auth service answered something other than 200/401/403 (nginx: %s)",
			e.secrets.redact(e.lastAuthError()))
	} else if r.status >= 500 {
		t.Errorf("through nginx: %d", r.status)
	}
	if want.by == "not5xx" {
		if r.status != http.StatusOK && upstream != 0 {
			t.Errorf("through nginx: status %d but the upstream was hit", r.status)
		}
		return
	}
	if r.status != want.status {
		t.Errorf("through nginx: status %d (auth service %s), want %s", r.status, advDescribe(delta), want)
	}
	switch want.by {
	case "nginx":
		if len(delta) != 0 {
			t.Errorf("through nginx: want nginx to refuse by itself, but the auth service was called: %s", advDescribe(delta))
		}
	case "conn":
		// The auth service refused nginx's subrequest before deciding;
		// nginx relays the 401.
		if len(delta) != 0 {
			t.Errorf("through nginx: want the auth service's connection to refuse, but it decided %s", advDescribe(delta))
		}
	default:
		wantDelta := map[string]float64{want.reason: 1}
		if fmt.Sprint(delta) != fmt.Sprint(wantDelta) {
			t.Errorf("through nginx: the auth service decided %s, want %s×1", advDescribe(delta), want.reason)
		}
	}
	if want.status != http.StatusOK {
		if upstream != 0 {
			t.Errorf("through nginx: the upstream was hit %d times for a refused request", upstream)
		}
		if r.header.Get("X-Nginxtest-Echo") != "" {
			t.Errorf("through nginx: a refused request got the upstream's answer")
		}
		return
	}
	if upstream != 1 || r.header.Get("X-Nginxtest-Echo") == "" {
		t.Errorf("through nginx: want the upstream reached once, got %d hits", upstream)
		return
	}
	if method == http.MethodHead {
		return // no body to read the echo from
	}
	var echo nginxtest.Echo
	if err := json.Unmarshal(r.body, &echo); err != nil {
		t.Errorf("through nginx: decoding the echo: %v", err)
		return
	}
	if got := echo.Header.Values("X-User"); len(got) != 1 || got[0] != want.user {
		t.Errorf("through nginx: upstream saw X-User %q, want exactly %q", got, want.user)
	}
}

// lastAuthError is nginx's last error.log line about the auth subrequest
// (nginx may write it a moment after answering).
func (e *advEnv) lastAuthError() string {
	for i := 0; i < 50; i++ {
		log := e.ng.ErrorLog()
		lines := strings.Split(log[min(e.errLogMark, len(log)):], "\n")
		for j := len(lines) - 1; j >= 0; j-- {
			if strings.Contains(lines[j], "auth request") {
				return strings.TrimSpace(lines[j])
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "no auth request error in error.log"
}

// advCreds are the credentials advStart configures.
type advCreds struct {
	token, readKey, writeKey, secretKey string
	issuer                              *authtest.Issuer
}

// advStart runs the binary in standalone mode with a static token, a
// read-only (GET, HEAD) and a read-write API key plus extraKeys, sessions
// and an OIDC issuer, behind nginx.
func advStart(t *testing.T, extraKeys []map[string]any, extraArgs ...string) (*advEnv, advCreds) {
	t.Helper()
	nginxtest.Require(t) // before starting anything
	cr := advCreds{token: newToken(t), readKey: newToken(t), writeKey: newToken(t), secretKey: newSecretKey(t)}
	secrets := &secretSet{}
	secrets.add(cr.token, cr.readKey, cr.writeKey, cr.secretKey)
	cr.issuer = authtest.NewIssuer(t)
	keys, err := json.Marshal(append([]map[string]any{
		{"name": "ci-read", "key": cr.readKey, "groups": []string{"registry-readers"}, "methods": []string{"GET", "HEAD"}},
		{"name": "ci-write", "key": cr.writeKey, "groups": []string{"registry-writers"}},
	}, extraKeys...))
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--standalone", "--zap-log-level=debug", "--shutdown-grace-period=2s"}, extraArgs...)
	p := startBinary(t, args, map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_TOKEN":                 cr.token,
		"REGISTRY_API_KEYS":                  string(keys),
		"SECRET_KEY":                         cr.secretKey,
		"OIDC_ISSUER_URL":                    cr.issuer.URL(),
		"OIDC_CLIENT_ID":                     "registry",
	}, secrets, 30*time.Second)
	ng := nginxtest.Start(t, nginxtest.Options{AuthURL: p.AuthURL()})
	return &advEnv{p: p, ng: ng, secrets: secrets}, cr
}

// finish checks that the binary survived: /healthz answers, no panic in
// its output, and no credential in its output or in any response.
func (e *advEnv) finish(t *testing.T) {
	t.Helper()
	resp, err := probeClient.Get("http://" + e.p.probe + "/healthz")
	if err != nil {
		t.Fatalf("/healthz after the table: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz after the table: %d", resp.StatusCode)
	}
	if e.p.exited() {
		t.Fatalf("registry-auth exited: %v", e.p.waitErr)
	}
	e.p.Stop()
	out := e.p.Output()
	for _, bad := range []string{"panic", "goroutine ", "fatal error"} {
		if strings.Contains(out, bad) {
			t.Errorf("registry-auth output contains %q", bad)
		}
	}
	assertNoLeak(t, "registry-auth output", out, e.secrets.all())
	assertNoLeak(t, "responses received", e.dumps.String(), e.secrets.all())
}

// advJWTWithHeader replaces a JWT's header; keepSig keeps the old signature,
// otherwise the signature is empty.
func advJWTWithHeader(jwt, header string, keepSig bool) string {
	parts := strings.Split(jwt, ".")
	sig := ""
	if keepSig {
		sig = parts[2]
	}
	return base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + parts[1] + "." + sig
}

// advFlipAt changes the character at i (not the last one of a base64 value,
// whose low bits may be ignored by the decoder).
func advFlipAt(s string, i int) string {
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

// advFlip changes the last character of s to another one of the same kind.
func advFlip(s string) string {
	last := s[len(s)-1]
	repl := byte('0')
	switch {
	case last == '0':
		repl = '1'
	case last >= 'a' && last <= 'z', last >= 'A' && last <= 'Z':
		repl = '0'
	case last == '-' || last == '_':
		repl = 'A'
	}
	return s[:len(s)-1] + string(repl)
}

// TestAdversarial runs the table against a standalone binary with the
// failure limit off (--max-auth-failures=0, startBinary's default), so every
// case is decided on its merits. Each case names the expected outcome
// directly and through nginx; "why" explains every 200 and every refusal by
// nginx or net/http itself.
func TestAdversarial(t *testing.T) {
	t.Parallel()
	// serversKey is an API key narrowed to /api/servers.
	serversKey := newToken(t)
	env, cr := advStart(t, []map[string]any{{"name": "ci-servers", "key": serversKey, "groups": []string{"registry-writers"}, "path_prefixes": []string{"/api/servers"}}})
	tok := cr.token
	secrets := env.secrets
	secrets.add(serversKey)

	cookieFor := func(key string, signedAt time.Time) string {
		c := authtest.SessionCookie([]byte(key), map[string]any{"username": "alice", "groups": []string{"registry-users"}, "auth_method": "oidc", "provider": "keycloak"}, signedAt)
		secrets.add(c)
		return c
	}
	const cn = authtest.SessionCookieName
	alice := cookieFor(cr.secretKey, time.Now())
	expiredCookie := cookieFor(cr.secretKey, time.Now().Add(-9*time.Hour))
	otherKeyCookie := cookieFor(newSecretKey(t), time.Now())

	jwt := cr.issuer.Sign(cr.issuer.Claims("registry", "bob", []string{"registry-users"}, 10*time.Minute))
	expiredJWT := cr.issuer.Sign(cr.issuer.Claims("registry", "bob", nil, -10*time.Minute))
	otherAud := cr.issuer.Sign(cr.issuer.Claims("another-client", "bob", nil, 10*time.Minute))
	unknownKey := cr.issuer.SignWithUnpublishedKey(cr.issuer.Claims("registry", "bob", nil, 10*time.Minute))
	noneJWT := advJWTWithHeader(cr.issuer.Sign(cr.issuer.Claims("registry", "mallory", []string{"mcp-registry-admin"}, 10*time.Minute)), `{"alg":"none","typ":"JWT"}`, false)
	noneJWTSig := advJWTWithHeader(jwt, `{"alg":"none","typ":"JWT"}`, true)
	secrets.add(jwt, expiredJWT, otherAud, unknownKey, noneJWT, noneJWTSig)

	bearerH := func(v string) hv { return hv{"Authorization", "Bearer " + v} }
	cookieH := func(v string) hv { return hv{"Cookie", v} }
	static := advAllowed("static_token", staticUser)
	onGateway := advDenied(401, "registry_credential_on_gateway_path")
	badPath := advDenied(403, "bad_path")
	badURL := advDenied(403, "bad_original_url")
	noCreds := advDenied(401, "no_credentials")
	invalid := advDenied(401, "invalid_credentials")
	malformed := advDenied(401, "malformed_authorization")
	ambiguous := advDenied(401, "ambiguous_authorization")
	session := advAllowed("session", "alice")
	sessionInvalid := advDenied(401, "session_invalid")
	oidc := advAllowed("oidc", "bob")
	readKey := advAllowed("api_key", "ci-read")
	keyForbidden := advDenied(403, "api_key_forbidden")
	serversOK := advAllowed("api_key", "ci-servers")

	get := func(target string, h ...hv) advClient { return advClient{target: target, headers: h} }
	filler := func(name string, n int) hv { return hv{name, strings.Repeat("f", n)} }
	fillers := func(count, n int) []hv {
		var hs []hv
		for i := 0; i < count; i++ {
			hs = append(hs, filler(fmt.Sprintf("X-Filler-%d", i), n))
		}
		return hs
	}
	many := func(k, v string, count int) []hv {
		hs := make([]hv, count)
		for i := range hs {
			hs[i] = hv{k, v}
		}
		return hs
	}

	cases := []advCase{
		// Authorization header shapes.
		{name: "baseline static token", c: get("/api/servers", bearerH(tok)), direct: static,
			why: "control: the static token on a Registry API path"},
		{name: "no credentials", c: get("/api/servers"), direct: noCreds},
		{name: "two Authorization headers both valid", c: get("/api/servers", bearerH(tok), bearerH(tok)), direct: ambiguous, nginx: advPtr(advByNginx(400)),
			why: "nginx refuses a repeated Authorization header itself (a unique header for nginx); the auth service refuses any repetition"},
		{name: "two Authorization headers wrong then valid", c: get("/api/servers", bearerH(newToken(t)), bearerH(tok)), direct: ambiguous, nginx: advPtr(advByNginx(400)),
			why: "nginx refuses a repeated Authorization header itself"},
		{name: "Authorization valid X-Authorization different", c: get("/api/servers", bearerH(tok), hv{"X-Authorization", "Bearer " + newToken(t)}), direct: advDenied(http.StatusUnauthorized, "invalid_credentials"),
			why: "a non-empty X-Authorization carries the credential (upstream #988): the wrong one decides"},
		{name: "Authorization wrong X-Authorization valid", c: get("/api/servers", bearerH(newToken(t)), hv{"X-Authorization", "Bearer " + tok}), direct: static,
			why: "a non-empty X-Authorization carries the credential; Authorization may be a backend's"},
		{name: "Authorization and X-Authorization equal", c: get("/api/servers", bearerH(tok), hv{"X-Authorization", "Bearer " + tok}), direct: static,
			why: "the same value twice is not ambiguous"},
		{name: "two X-Authorization headers", c: get("/api/servers", hv{"X-Authorization", "Bearer " + tok}, hv{"X-Authorization", "Bearer " + tok}), direct: ambiguous},
		{name: "X_Authorization with underscore", c: get("/api/servers", hv{"X_Authorization", "Bearer " + tok}), direct: noCreds,
			why: "not the X-Authorization header: nginx drops it (underscores_in_headers off), Go does not canonicalise it to X-Authorization"},
		{name: "lower-case header name authorization", c: get("/api/servers", hv{"authorization", "Bearer " + tok}), direct: static,
			why: "header names are case-insensitive"},
		{name: "two bearer tokens in one header", c: get("/api/servers", hv{"Authorization", "Bearer " + tok + ", Bearer " + tok}), direct: malformed},
		{name: "Bearer TAB token", c: get("/api/servers", hv{"Authorization", "Bearer\t" + tok}), direct: malformed},
		{name: "Bearer SP TAB token", c: get("/api/servers", hv{"Authorization", "Bearer \t" + tok}), direct: malformed},
		{name: "Bearer three spaces token", c: get("/api/servers", hv{"Authorization", "Bearer   " + tok}), direct: static,
			why: "RFC 6750: \"Bearer\" 1*SP b64token"},
		{name: "token followed by TAB", c: get("/api/servers", hv{"Authorization", "Bearer " + tok + "\t"}), direct: static,
			why: "trailing white space is not part of a field value (RFC 9110 5.5); both nginx and net/http strip it"},
		{name: "token with inner space", c: get("/api/servers", hv{"Authorization", "Bearer " + tok[:10] + " " + tok[10:]}), direct: malformed},
		{name: "empty bearer", c: get("/api/servers", hv{"Authorization", "Bearer"}), direct: malformed},
		{name: "empty bearer with trailing space", c: get("/api/servers", hv{"Authorization", "Bearer "}), direct: malformed},
		{name: "empty Authorization value", c: get("/api/servers", hv{"Authorization", ""}), direct: noCreds,
			why: "an empty header is no credential"},
		{name: "Bearer without space", c: get("/api/servers", hv{"Authorization", "Bearer" + tok}), direct: malformed},
		{name: "lower-case bearer", c: get("/api/servers", hv{"Authorization", "bearer " + tok}), direct: static,
			why: "auth schemes are case-insensitive (RFC 9110 11.1)"},
		{name: "upper-case BEARER", c: get("/api/servers", hv{"Authorization", "BEARER " + tok}), direct: static,
			why: "auth schemes are case-insensitive"},
		{name: "Basic scheme carrying the token", c: get("/api/servers", hv{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+tok))}),
			direct: advDenied(401, "unsupported_authorization_scheme")},
		{name: "obs-fold continuation line", c: get("/api/servers", hv{"Authorization", "Bearer\r\n " + tok}),
			direct: static, nginx: advPtr(advByNginx(400)),
			why: "obsolete line folding: net/http replaces the fold with a space (RFC 9112 5.2 allows it), so directly it is \"Bearer <token>\"; nginx refuses the request"},
		{name: "space before the colon", c: get("/api/servers", hv{"Authorization ", "Bearer " + tok}),
			direct: advRefused("malformed_request"), nginx: advPtr(advByNginx(400)),
			why: "invalid header name: nginx refuses the request; directly, net/http cannot read it and the connection answers 401 (not net/http's 400)"},

		// Request heads net/http cannot read (issue 21, item 11): the
		// auth service answers 401 malformed_request, never 400, 417 or
		// 501, which nginx would turn into a 500.
		{name: "bare CR in a header value", c: get("/api/servers", bearerH(tok), hv{"X-Trace", "a\rb"}),
			direct: advRefused("malformed_request"), nginx: advPtr(advNot5xx),
			why: "net/http refuses a CR inside a header value (400 without the rewrite); through nginx, whoever refuses, never a 500"},
		{name: "bare CR in the token", c: get("/api/servers", bearerH(tok[:8]+"\r"+tok[8:])),
			direct: advRefused("malformed_request"), nginx: advPtr(advNot5xx),
			why: "as above, in the credential itself"},
		{name: "space inside a header name", c: get("/api/servers", bearerH(tok), hv{"X Trace", "a"}),
			direct: advRefused("malformed_request"), nginx: advPtr(advNot5xx),
			why: "not a token character: net/http refuses the head"},
		{name: "parenthesis in a header name", c: get("/api/servers", bearerH(tok), hv{"X(Trace)", "a"}),
			direct: advRefused("malformed_request"), nginx: advPtr(advNot5xx),
			why: "not a token character: net/http refuses the head"},
		{name: "non-ASCII byte in a header name", c: get("/api/servers", bearerH(tok), hv{"X-Tr\xe4ce", "a"}),
			direct: advRefused("malformed_request"), nginx: advPtr(advNot5xx),
			why: "not a token character: net/http refuses the head"},
		{name: "header line without a colon", c: get("/api/servers", bearerH(tok), hv{"X-Trace\r\nX-No-Colon", "a"}),
			direct: advRefused("malformed_request"), nginx: advPtr(advNot5xx),
			why: "net/http refuses the head; nginx refuses the request itself"},
		{name: "Expect other than 100-continue, sent to the auth service", c: get("/api/servers", bearerH(tok)),
			d:      &advDirect{headers: []hv{bearerH(tok), {"Expect", "something"}}},
			direct: advRefused("malformed_request"), nginx: advPtr(static),
			why: "net/http would answer 417; nginx does not pass the client's Expect to the auth subrequest"},
		{name: "unknown Transfer-Encoding, sent to the auth service", c: get("/api/servers", bearerH(tok)),
			d:      &advDirect{headers: []hv{bearerH(tok), {"Transfer-Encoding", "gzip"}}},
			direct: advRefused("malformed_request"), nginx: advPtr(static),
			why: "net/http would answer 501; nginx sets the subrequest's framing itself"},

		// Token comparison.
		{name: "token last byte changed", c: get("/api/servers", bearerH(advFlip(tok))), direct: invalid},
		{name: "token one byte short", c: get("/api/servers", bearerH(tok[:len(tok)-1])), direct: invalid},
		{name: "token one byte extra", c: get("/api/servers", bearerH(tok+"0")), direct: invalid},
		{name: "token upper-cased", c: get("/api/servers", bearerH(strings.ToUpper(tok))), direct: invalid},
		{name: "token twice", c: get("/api/servers", bearerH(tok+tok)), direct: invalid},
		{name: "non-UTF-8 byte appended to token", c: get("/api/servers", bearerH(tok+"\xff")), direct: malformed},
		{name: "non-UTF-8 byte replacing the last byte", c: get("/api/servers", bearerH(tok[:len(tok)-1]+"\xc3")), direct: malformed},
		{name: "NUL byte in token", c: get("/api/servers", bearerH(tok+"\x00")),
			direct: invalid, nginx: advPtr(advByNginx(400)),
			why: "nginx refuses a NUL in a header itself; directly, the auth service reads it as '#' (SanitizeListener) and refuses the token"},
		{name: "control byte in token", c: get("/api/servers", bearerH(tok[:8]+"\x01"+tok[8:])),
			direct: invalid,
			why:    "nginx passes a control character in a header value on; the auth service reads it as '#' (SanitizeListener) instead of letting net/http answer 400, which nginx would turn into a 500"},
		{name: "control byte in an unrelated header", c: get("/api/servers", bearerH(tok), hv{"X-Trace", "a\x01b"}),
			direct: static, nginx: advPtr(advNot5xx),
			why: "the auth service allows (the byte is not in a credential); through nginx the echo upstream (Go) then refuses the header itself, never a 500"},
		{name: "DEL byte in the Cookie header", c: get("/mcpserver/mcp", cookieH(cn+"="+alice+"; x=\x7f")),
			direct: session, nginx: advPtr(advNot5xx),
			why: "the session cookie itself is intact; through nginx the echo upstream (Go) refuses the DEL, never a 500"},
		{name: "raw control byte in the path", c: get("/api/\x01", bearerH(tok)),
			direct: advDenied(http.StatusForbidden, "bad_path"), nginx: advPtr(advByNginx(400)),
			why: "nginx refuses a control character in the request line itself; directly, X-Original-URL holds '#' in the path, refused"},
		{name: "raw DEL byte in the path", c: get("/api/\x7f", bearerH(tok)),
			direct: advDenied(http.StatusForbidden, "bad_path"), nginx: advPtr(advByNginx(400)),
			why: "nginx refuses a DEL in the request line itself; directly, X-Original-URL holds '#' in the path, refused"},
		{name: "7 KiB garbage bearer", c: get("/api/servers", bearerH(strings.Repeat("A", 7<<10))), direct: invalid},
		{name: "60 KiB garbage bearer", c: get("/api/servers", bearerH(strings.Repeat("A", 60<<10))),
			direct: invalid, nginx: advPtr(advByNginx(400)),
			why: "one header line longer than large_client_header_buffers (8k): nginx answers 400 itself"},

		// API keys.
		{name: "read-only key GET", c: get("/api/servers", bearerH(cr.readKey)), direct: readKey},
		{name: "read-only key HEAD", c: advClient{method: "HEAD", target: "/api/servers", headers: []hv{bearerH(cr.readKey)}}, direct: readKey},
		{name: "read-only key POST", c: advClient{method: "POST", target: "/api/servers", headers: []hv{bearerH(cr.readKey)}, body: "{}"}, direct: keyForbidden},
		{name: "read-only key DELETE", c: advClient{method: "DELETE", target: "/api/servers/x", headers: []hv{bearerH(cr.readKey)}}, direct: keyForbidden},
		{name: "read-only key unknown method GETX", c: advClient{method: "GETX", target: "/api/servers", headers: []hv{bearerH(cr.readKey)}}, direct: keyForbidden},
		{name: "read-only key lower-case get", c: advClient{method: "get", target: "/api/servers", headers: []hv{bearerH(cr.readKey)}},
			direct: readKey, nginx: advPtr(advByNginx(400)),
			why: "nginx refuses a lower-case method itself; X-Original-Method is compared case-insensitively, and only nginx sets it"},
		{name: "read-only key POST with spoofed X-Original-Method GET",
			c:      advClient{method: "POST", target: "/api/servers", headers: []hv{bearerH(cr.readKey), {"X-Original-Method", "GET"}}, body: "{}"},
			d:      &advDirect{methods: []string{"POST", "GET"}},
			direct: badURL, nginx: advPtr(keyForbidden),
			why: "nginx replaces the client's X-Original-Method; directly, two values are refused"},
		{name: "read-only key on gateway path", c: get("/mcpserver/mcp", bearerH(cr.readKey)), direct: onGateway},
		{name: "write key via dot-dot to gateway path", c: advClient{method: "POST", target: "/api/../mcpserver/mcp", headers: []hv{bearerH(cr.writeKey)}, body: "{}"}, direct: badPath},
		{name: "narrowed key in its prefix", c: advClient{method: "POST", target: "/api/servers/foo", headers: []hv{bearerH(serversKey)}, body: "{}"}, direct: serversOK,
			why: "control: the key is narrowed to /api/servers"},
		{name: "narrowed key outside its prefix", c: advClient{method: "POST", target: "/api/agents/x", headers: []hv{bearerH(serversKey)}, body: "{}"}, direct: keyForbidden},
		{name: "narrowed key via dot-dot into its prefix", c: advClient{method: "POST", target: "/api/agents/x/../../servers/foo", headers: []hv{bearerH(serversKey)}, body: "{}"}, direct: badPath,
			why: "nginx routes /api/servers/foo but forwards the raw URI, which an upstream that does not resolve dot segments serves as /api/agents/..."},
		{name: "narrowed key via %2F..%2F into its prefix", c: advClient{method: "POST", target: "/api/agents%2F..%2Fservers/foo", headers: []hv{bearerH(serversKey)}, body: "{}"}, direct: badPath},
		{name: "narrowed key with double slashes in its prefix", c: advClient{method: "POST", target: "/api//servers//foo", headers: []hv{bearerH(serversKey)}, body: "{}"}, direct: serversOK,
			why: "merge_slashes: nginx routes it to /api/servers/foo; merging cannot leave the prefix"},
		{name: "write key last byte changed", c: get("/api/servers", bearerH(advFlip(cr.writeKey))), direct: invalid},

		// Paths, with the static token. nginx routes by the resolved path
		// but forwards the raw URI, so any dot segment (raw or decoded) is
		// refused: nginx and the upstream could read it differently.
		{name: "dot-dot to gateway", c: get("/api/../mcpserver/mcp", bearerH(tok)), direct: badPath},
		{name: "%2e%2e to gateway", c: get("/api/%2e%2e/mcpserver/mcp", bearerH(tok)), direct: badPath},
		{name: "%2E%2e mixed case to gateway", c: get("/api/%2E%2e/mcpserver/mcp", bearerH(tok)), direct: badPath},
		{name: ".%2e to gateway", c: get("/api/.%2e/mcpserver/mcp", bearerH(tok)), direct: badPath},
		{name: "%2f..%2f to gateway", c: get("/api%2f..%2fmcpserver/mcp", bearerH(tok)), direct: badPath,
			why: "nginx decodes %2F into a separator before resolving dot segments; so does the auth service, which then finds a dot segment"},
		{name: "deep %2f traversal to gateway", c: get("/api/servers%2f..%2f..%2fmcpserver/mcp", bearerH(tok)), direct: badPath},
		{name: "double slash dot-dot to gateway", c: get("/api//../mcpserver/mcp", bearerH(tok)), direct: badPath},
		{name: "semicolon segment dot-dot to gateway", c: get("/api;/../mcpserver/mcp", bearerH(tok)), direct: badPath},
		{name: "gateway dot-dot to API", c: get("/mcpserver/../api/servers", bearerH(tok)), direct: badPath,
			why: "nginx routes it to /api/servers, but the upstream receives /mcpserver/../api/servers"},
		{name: "gateway %2e%2e to API", c: get("/mcpserver/%2e%2e/api/servers", bearerH(tok)), direct: badPath},
		{name: "gateway %2f..%2f to API", c: get("/mcpserver%2f..%2fapi/servers", bearerH(tok)), direct: badPath},
		{name: "gateway double slash dot-dot to API", c: get("/mcpserver//../api/servers", bearerH(tok)), direct: badPath},
		{name: "dot segment inside API path", c: get("/api/./servers", bearerH(tok)), direct: badPath},
		{name: "%2e segment inside API path", c: get("/api/%2e/servers", bearerH(tok)), direct: badPath},
		{name: "%2F..%2F inside API path", c: get("/api/servers%2F..%2Fagents", bearerH(tok)), direct: badPath},
		{name: "trailing dot-dot", c: get("/api/servers/..", bearerH(tok)), direct: badPath},
		{name: "leading double slash", c: get("//api/servers", bearerH(tok)), direct: static,
			why: "merge_slashes: nginx routes it to /api/servers"},
		{name: "inner double slash", c: get("/api//servers", bearerH(tok)), direct: static,
			why: "merge_slashes: nginx routes it to /api/servers"},
		{name: "three dots is no dot segment", c: get("/api/.../servers", bearerH(tok)), direct: static,
			why: "'...' is an ordinary segment for nginx and for the upstream"},
		{name: "encoded letter %61pi", c: get("/%61pi/servers", bearerH(tok)), direct: static,
			why: "decoded once, as nginx does: /api/servers"},
		{name: "semicolon parameter on API path", c: get("/api/servers;jsessionid=x", bearerH(tok)), direct: static,
			why: "';' is an ordinary path character for nginx; the path is under /api/"},
		{name: "semicolon dot-dot to API", c: get("/mcpserver/mcp;/../../api/servers", bearerH(tok)), direct: badPath},
		{name: "Tomcat ..; segment to API", c: get("/mcpserver/..;/api/servers", bearerH(tok)), direct: onGateway,
			why: "'..;' is not a dot segment for nginx: the path stays under /mcpserver/"},
		{name: "upper-case /API/", c: get("/API/servers", bearerH(tok)), direct: onGateway,
			why: "prefix locations are case-sensitive"},
		{name: "Cyrillic a in api", c: get("/\xd0\xb0pi/servers", bearerH(tok)), direct: onGateway},
		{name: "Cyrillic a percent-encoded", c: get("/%D0%B0pi/servers", bearerH(tok)), direct: onGateway},
		{name: "fullwidth solidus after api", c: get("/api\xef\xbc\x8fservers", bearerH(tok)), direct: onGateway},
		{name: "fullwidth solidus dot-dot to API", c: get("/mcpserver\xef\xbc\x8f..\xef\xbc\x8fapi\xef\xbc\x8fservers", bearerH(tok)), direct: onGateway,
			why: "U+FF0F is no separator for nginx"},
		{name: "fullwidth full stops under /api/", c: get("/api/\xef\xbc\x8e\xef\xbc\x8e/mcpserver/mcp", bearerH(tok)), direct: static,
			why: "U+FF0E is no dot for nginx: it routes the request under /api/, a Registry API path"},
		{name: "backslash traversal", c: get("/mcpserver\\..\\api\\servers", bearerH(tok)), direct: onGateway,
			why: "backslash is no separator for nginx on Linux"},
		{name: "raw non-UTF-8 byte in API path", c: get("/api/\xff\xfe", bearerH(tok)), direct: static,
			why: "nginx routes it under /api/"},
		{name: "raw non-UTF-8 bytes then dot-dot to API", c: get("/mcpserver/\xff/../../api/servers", bearerH(tok)), direct: badPath},
		{name: "encoded non-UTF-8 bytes", c: get("/api/%ff%fe", bearerH(tok)), direct: static},
		{name: "query string holding /api/", c: get("/mcpserver/mcp?next=/api/servers", bearerH(tok)), direct: onGateway},
		{name: "root with query /api/", c: get("/?/api/servers", bearerH(tok)), direct: onGateway},
		{name: "query with dot-dot to API", c: get("/mcpserver/mcp?/../../api/servers", bearerH(tok)), direct: onGateway},
		{name: "fragment on API path", c: get("/api/servers#frag", bearerH(tok)), direct: badPath},
		{name: "fragment hiding dot-dot", c: get("/mcpserver/mcp#/../../api/servers", bearerH(tok)), direct: badPath},
		{name: "encoded question mark", c: get("/mcpserver/mcp%3f/../../api/servers", bearerH(tok)), direct: badPath,
			why: "nginx would route /mcpserver/mcp?/../../api/servers to /api/servers; the auth service refuses a decoded '?'"},
		{name: "encoded CR LF", c: get("/api/servers%0d%0aX-Injected:%20yes", bearerH(tok)), direct: badPath},
		{name: "encoded NUL", c: get("/api/servers%00", bearerH(tok)), direct: badPath, nginx: advPtr(advByNginx(400)),
			why: "nginx refuses an encoded NUL itself"},
		{name: "bad percent-encoding", c: get("/api/servers%zz", bearerH(tok)), direct: badPath, nginx: advPtr(advByNginx(400)),
			why: "nginx refuses a bad escape itself"},
		{name: "truncated percent-encoding", c: get("/api/servers%2", bearerH(tok)), direct: badPath, nginx: advPtr(advByNginx(400)),
			why: "nginx refuses a bad escape itself"},
		{name: "dot-dot above the root", c: get("/../api/servers", bearerH(tok)), direct: badPath, nginx: advPtr(advByNginx(400)),
			why: "nginx refuses a path that climbs above the root"},
		{name: "%2e%2e above the root", c: get("/%2e%2e/api/servers", bearerH(tok)), direct: badPath, nginx: advPtr(advByNginx(400)),
			why: "nginx refuses a path that climbs above the root"},
		{name: "7 KiB API path", c: get("/api/servers/"+strings.Repeat("a", 7<<10), bearerH(tok)), direct: static},
		{name: "7 KiB gateway path", c: get("/mcpserver/"+strings.Repeat("a", 7<<10), bearerH(tok)), direct: onGateway},
		{name: "deep dot-dot path to API", c: get("/mcpserver/"+strings.Repeat("x/../", 1000)+"../api/servers", bearerH(tok)), direct: badPath,
			why: "5 KB of dot segments that nginx resolves to /api/servers"},
		{name: "12 KiB API path", c: get("/api/servers/"+strings.Repeat("a", 12<<10), bearerH(tok)),
			direct: static, nginx: advPtr(advByNginx(414)),
			why: "a request line over 8k: nginx answers 414 itself"},
		{name: "20 KiB API path", c: get("/api/servers/"+strings.Repeat("a", 20<<10), bearerH(tok)),
			direct: badPath, nginx: advPtr(advByNginx(414)),
			why: "over the auth service's 16 KiB path limit; nginx answers 414 itself"},

		// X-Original-URL, and what a client can do about it through nginx.
		{name: "X-Original-URL missing / no Host over HTTP/1.0",
			c: advClient{target: "/api/servers", proto: "HTTP/1.0", noHost: true, headers: []hv{bearerH(tok)}},
			d: &advDirect{noURL: true}, direct: badURL,
			why: "without a Host nginx sends X-Original-URL http:///api/servers, which has no host"},
		{name: "X-Original-URL relative / spoofed by the client",
			c: get("/mcpserver/mcp", bearerH(tok), hv{"X-Original-URL", "http://" + registryHost + "/api/servers"}),
			d: &advDirect{urls: []string{"/api/servers"}}, direct: badURL, nginx: advPtr(onGateway),
			why: "nginx replaces the client's X-Original-URL with the real one"},
		{name: "X-Original-URL with userinfo / absolute-form request with userinfo",
			c: advClient{target: "http://user:pass@" + registryHost + "/api/servers", headers: []hv{bearerH(tok)}},
			d: &advDirect{urls: []string{"http://user:pass@" + registryHost + "/api/servers"}}, direct: badURL, nginx: advPtr(advByNginx(400)),
			why: "nginx refuses userinfo in an absolute-form request line"},
		{name: "Host header with userinfo", c: advClient{target: "/api/servers", host: "user@" + registryHost, headers: []hv{bearerH(tok)}}, direct: badURL,
			why: "nginx accepts '@' in Host; X-Original-URL then carries userinfo, refused"},
		{name: "Host header with a question mark", c: advClient{target: "/mcpserver/mcp", host: registryHost + "?", headers: []hv{bearerH(tok)}}, direct: onGateway,
			why: "nginx accepts '?' in Host; X-Original-URL http://registry.test?/mcpserver/mcp has the path / (the rest is a query): a gateway path"},
		{name: "Host header with a path", c: advClient{target: "/mcpserver/mcp", host: registryHost + "/api/servers", headers: []hv{bearerH(tok)}},
			direct: static, nginx: advPtr(advByNginx(400)),
			why: "nginx refuses a '/' in Host; the auth service trusts X-Original-URL, so directly the crafted URL http://registry.test/api/servers/mcpserver/mcp is a Registry API path"},
		{name: "Host header with a backslash", c: advClient{target: "/api/servers", host: registryHost + "\\", headers: []hv{bearerH(tok)}}, direct: badURL},
		{name: "empty Host header", c: advClient{target: "/api/servers", host: advHostEmpty, headers: []hv{bearerH(tok)}},
			direct: badURL, nginx: advPtr(advByNginx(400)),
			why: "nginx refuses an empty Host over HTTP/1.1"},
		{name: "two Host headers", c: advClient{target: "/api/servers", headers: []hv{{"Host", "other.test"}, bearerH(tok)}},
			direct: static, nginx: advPtr(advByNginx(400)),
			why: "nginx refuses a duplicate Host; directly only the first (the real one) is used"},
		{name: "X-Original-URL other scheme / absolute-form request with another scheme",
			c: advClient{target: "ftp://" + registryHost + "/mcpserver/mcp", headers: []hv{bearerH(tok)}},
			d: &advDirect{urls: []string{"ftp://" + registryHost + "/api/servers"}}, direct: badURL, nginx: advPtr(onGateway),
			why: "nginx ignores the request line's scheme and host; it builds X-Original-URL from its own scheme, Host and the path"},
		{name: "X-Original-URL scheme-relative", c: get("/api/servers", bearerH(tok)),
			d: &advDirect{urls: []string{"//" + registryHost + "/api/servers"}}, direct: badURL, nginx: advPtr(static),
			why: "through nginx the URL is always absolute"},
		{name: "absolute-form request to a gateway path", c: advClient{target: "http://" + registryHost + "/mcpserver/mcp", headers: []hv{bearerH(tok)}},
			d: &advDirect{urls: []string{"http://" + registryHost + "/mcpserver/mcp"}}, direct: onGateway},
		{name: "X-Original-URL upper-case scheme and host with port", c: get("/api/servers", bearerH(tok)),
			d: &advDirect{urls: []string{"HTTP://REGISTRY.TEST:8443/api/servers"}}, direct: static, nginx: advPtr(static),
			why: "scheme and host are case-insensitive; the port is ignored"},
		{name: "X-Original-URL without a path", c: get("/", bearerH(tok)),
			d: &advDirect{urls: []string{"http://" + registryHost}}, direct: onGateway,
			why: "no path is /, a gateway path"},
		{name: "X-Original-URL without a path but a query", c: get("/?x=/api/servers", bearerH(tok)),
			d: &advDirect{urls: []string{"http://" + registryHost + "?x=/api/servers"}}, direct: onGateway, nginx: advPtr(onGateway),
			why: "the path is /, a gateway path; the query never counts"},
		{name: "X-Original-URL with an empty host and a port", c: get("/api/servers", bearerH(tok)),
			d: &advDirect{urls: []string{"http://:80/api/servers"}}, direct: badURL, nginx: advPtr(static)},
		{name: "two X-Original-URL values, gateway first", c: get("/mcpserver/mcp", bearerH(tok), hv{"X-Original-URL", "http://" + registryHost + "/api/servers"}),
			d: &advDirect{urls: []string{"http://" + registryHost + "/mcpserver/mcp", "http://" + registryHost + "/api/servers"}}, direct: badURL, nginx: advPtr(onGateway),
			why: "nginx sends exactly one; directly, two values are refused"},
		{name: "two X-Original-URL values, API first", c: get("/mcpserver/mcp", bearerH(tok), hv{"X-Original-URL", "http://" + registryHost + "/api/servers"}),
			d:      &advDirect{urls: []string{"http://" + registryHost + "/api/servers", "http://" + registryHost + "/mcpserver/mcp"}},
			direct: badURL, nginx: advPtr(onGateway),
			why: "nginx replaces the client's X-Original-URL, so through nginx the real path counts; directly, two values are refused"},

		// Session cookies.
		{name: "session cookie", c: get("/mcpserver/mcp", cookieH(cn+"="+alice)), direct: session},
		{name: "session cookie duplicated in one header, valid first", c: get("/mcpserver/mcp", cookieH(cn+"="+alice+"; "+cn+"=garbage")), direct: sessionInvalid,
			why: "two values: frameworks disagree on which counts (Starlette takes the last), so neither is used"},
		{name: "session cookie duplicated in one header, garbage first", c: get("/mcpserver/mcp", cookieH(cn+"=garbage; "+cn+"="+alice)), direct: sessionInvalid},
		{name: "session cookie in two Cookie headers, valid first", c: get("/mcpserver/mcp", cookieH(cn+"="+alice), cookieH(cn+"=garbage")), direct: sessionInvalid,
			why: "two values: frameworks disagree on which counts (Starlette takes the last), so neither is used"},
		{name: "session cookie twice with the same value", c: get("/mcpserver/mcp", cookieH(cn+"="+alice+"; "+cn+"="+alice)), direct: session,
			why: "no doubt about which one counts"},
		{name: "session cookie with quotes", c: get("/mcpserver/mcp", cookieH(cn+`="`+alice+`"`)), direct: session,
			why: "RFC 6265 allows a DQUOTEd cookie-value"},
		{name: "session cookie with only quotes", c: get("/mcpserver/mcp", cookieH(cn+`=""`)), direct: sessionInvalid},
		{name: "session cookie empty", c: get("/mcpserver/mcp", cookieH(cn+"=")), direct: sessionInvalid},
		{name: "empty session cookie with the static token", c: get("/api/servers", cookieH(cn+"="), bearerH(tok)), direct: invalid,
			why: "a session cookie, even empty, skips the static token (the original's behaviour for browsers)"},
		{name: "session cookie name upper-case", c: get("/mcpserver/mcp", cookieH(strings.ToUpper(cn)+"="+alice)), direct: noCreds},
		{name: "session cookie signature changed", c: get("/mcpserver/mcp", cookieH(cn+"="+advFlipAt(alice, len(alice)-5))), direct: sessionInvalid},
		{name: "session cookie expired", c: get("/mcpserver/mcp", cookieH(cn+"="+expiredCookie)), direct: sessionInvalid},
		{name: "session cookie signed with another key", c: get("/mcpserver/mcp", cookieH(cn+"="+otherKeyCookie)), direct: sessionInvalid},
		{name: "session cookie after 7 KiB of other cookies", c: get("/mcpserver/mcp", cookieH("pad="+strings.Repeat("p", 7<<10)+"; "+cn+"="+alice)), direct: session},
		{name: "50 Cookie headers then the session cookie", c: get("/mcpserver/mcp", append(many("Cookie", "theme=dark", 50), cookieH(cn+"="+alice))...), direct: session},

		// JWTs.
		{name: "JWT", c: get("/mcpserver/mcp", bearerH(jwt)), direct: oidc},
		{name: "JWT with lower-case bearer", c: get("/mcpserver/mcp", hv{"Authorization", "bearer " + jwt}), direct: oidc},
		{name: "JWT alg none", c: get("/mcpserver/mcp", bearerH(noneJWT)), direct: advDenied(401, "jwt_invalid")},
		{name: "JWT alg none keeping the signature", c: get("/api/servers", bearerH(noneJWTSig)), direct: advDenied(401, "jwt_invalid")},
		{name: "JWT expired", c: get("/mcpserver/mcp", bearerH(expiredJWT)), direct: advDenied(401, "jwt_expired")},
		{name: "JWT for another audience", c: get("/mcpserver/mcp", bearerH(otherAud)), direct: advDenied(401, "jwt_audience")},
		{name: "JWT signed with an unpublished key", c: get("/mcpserver/mcp", bearerH(unknownKey)), direct: advDenied(401, "jwt_unknown_key")},
		{name: "JWT signature changed", c: get("/mcpserver/mcp", bearerH(advFlipAt(jwt, len(jwt)-5))), direct: advDenied(401, "jwt_invalid")},
		{name: "JWT and session cookie", c: get("/mcpserver/mcp", bearerH(expiredJWT), cookieH(cn+"="+alice)), direct: session,
			why: "a valid session wins over a failing bearer token"},

		// Sizes and repetitions.
		{name: "header just under nginx's 8k buffer", c: get("/api/servers", append([]hv{bearerH(tok)}, filler("X-Filler", 8000))...), direct: static,
			why: "fits nginx's large_client_header_buffers"},
		{name: "header over nginx's 8k buffer", c: get("/api/servers", append([]hv{bearerH(tok)}, filler("X-Filler", 9000))...),
			direct: static, nginx: advPtr(advByNginx(400)),
			why: "nginx answers 400 (Request Header Or Cookie Too Large) itself"},
		{name: "headers over nginx's 4x8k total", c: get("/api/servers", append([]hv{bearerH(tok)}, fillers(5, 7500)...)...),
			direct: static, nginx: advPtr(advByNginx(400)),
			why: "37 KiB of headers: over nginx's limit, within the auth service's 64 KiB"},
		{name: "headers just under MaxHeaderBytes", c: get("/api/servers", append([]hv{bearerH(tok)}, fillers(8, 7900)...)...),
			direct: static, nginx: advPtr(advByNginx(400)),
			why: "62 KiB of headers: the auth service serves it; nginx answers 400 itself"},
		{name: "headers over MaxHeaderBytes", c: get("/api/servers", append([]hv{bearerH(tok)}, fillers(9, 7900)...)...),
			direct: advRefused("request_header_too_large"), nginx: advPtr(advByNginx(400)),
			why: "71 KiB of headers: over net/http's limit (MaxHeaderBytes + 4096), which would answer 431, so the connection answers 401; nginx answers 400 itself"},
		{name: "one 70 KiB header", c: get("/api/servers", bearerH(tok), filler("X-Filler", 70<<10)),
			direct: advRefused("request_header_too_large"), nginx: advPtr(advByNginx(400)),
			why: "net/http would answer 431, the connection answers 401; nginx answers 400 itself"},
		{name: "200 repeated headers", c: get("/api/servers", append([]hv{bearerH(tok)}, many("X-Repeat", "r", 200)...)...), direct: static},

		// Bodies.
		{name: "POST with a chunked body", c: advClient{method: "POST", target: "/api/servers", headers: []hv{bearerH(tok)}, body: `{"name":"x"}`, chunked: true}, direct: static},
		{name: "POST declaring a body over client_max_body_size", c: advClient{method: "POST", target: "/api/servers", headers: []hv{bearerH(tok)}, declaredLength: 2 << 20},
			direct: static, nginx: advPtr(advByNginx(413)),
			why: "nginx answers 413 from Content-Length alone, before auth"},
	}

	if len(cases) < 50 {
		t.Fatalf("only %d cases", len(cases))
	}
	names := map[string]bool{}
	for _, tc := range cases {
		if names[tc.name] {
			t.Fatalf("duplicate case %q", tc.name)
		}
		names[tc.name] = true
	}
	// Sub-tests run one after another: the decision counters are shared.
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { env.run(t, tc) })
	}
	t.Logf("%d adversarial cases, each sent directly and through nginx", len(cases))
	env.finish(t)
}

// TestAdversarialFailureLimiter runs the binary with the failure limit on
// (--max-auth-failures=3) behind nginx: after three wrong tokens the client
// is refused uncompared (403), even with the right token, and cannot escape
// by sending its own X-Real-IP or X-Forwarded-For through nginx; JWTs and
// sessions keep working; garbage never yields a 5xx.
func TestAdversarialFailureLimiter(t *testing.T) {
	t.Parallel()
	// (A JWT-shaped static token or API key cannot be configured at all:
	// see TestCompileProblems in authserver.)
	env, cr := advStart(t, nil, "--max-auth-failures=3", "--auth-failure-window=10m")
	tok := cr.token
	alice := authtest.SessionCookie([]byte(cr.secretKey), map[string]any{"username": "alice"}, time.Now())
	jwt := cr.issuer.Sign(cr.issuer.Claims("registry", "bob", nil, 10*time.Minute))
	env.secrets.add(alice, jwt)

	// step sends one request through nginx and checks the outcome.
	step := func(name string, c advClient, want advExp) {
		t.Helper()
		errs := &advErrs{}
		r, delta, upstream := env.viaNginx(t, c)
		env.checkNginx(errs, want, r, delta, upstream, c.methodOr())
		for _, m := range errs.msgs {
			t.Errorf("%s: %s", name, m)
		}
		t.Logf("%s: nginx %d, auth service %s", name, r.status, advDescribe(delta))
	}
	get := func(target string, h ...hv) advClient { return advClient{target: target, headers: h} }
	b := func(v string) hv { return hv{"Authorization", "Bearer " + v} }
	throttled := advDenied(http.StatusForbidden, "too_many_failures")

	for i := 1; i <= 3; i++ {
		step(fmt.Sprintf("wrong token %d", i), get("/api/servers", b(newToken(t))), advDenied(401, "invalid_credentials"))
	}
	step("wrong token 4", get("/api/servers", b(newToken(t))), throttled)
	step("right token, throttled", get("/api/servers", b(tok)), throttled)
	step("right token, spoofed X-Real-IP", get("/api/servers", b(tok), hv{"X-Real-IP", "203.0.113.7"}), throttled)
	step("right token, spoofed X-Forwarded-For", get("/api/servers", b(tok), hv{"X-Forwarded-For", "203.0.113.7"}), throttled)
	step("right API key, throttled", get("/api/servers", b(cr.readKey)), throttled)
	step("right token in X-Authorization, throttled", get("/api/servers", hv{"X-Authorization", "Bearer " + tok}), throttled)
	// Not limited: no credential, malformed ones, sessions and JWTs.
	step("no credentials", get("/api/servers"), advDenied(401, "no_credentials"))
	step("malformed bearer", get("/api/servers", hv{"Authorization", "Bearer\t" + tok}), advDenied(401, "malformed_authorization"))
	step("session cookie", get("/mcpserver/mcp", hv{"Cookie", authtest.SessionCookieName + "=" + alice}), advAllowed("session", "alice"))
	step("JWT", get("/mcpserver/mcp", b(jwt)), advAllowed("oidc", "bob"))
	step("JWT on an API path", get("/api/servers", b(jwt)), advAllowed("oidc", "bob"))
	// A burst of garbage: refused uncompared, never a 5xx.
	for i, v := range []string{
		strings.Repeat("A", 7000), "\xff\xfe", "eyJ.eyJ.x", "e" + strings.Repeat(".", 2) + strings.Repeat("a", 20),
		tok[:len(tok)-1], tok + "0", strings.ToUpper(tok), "null", "undefined", "%00",
	} {
		step(fmt.Sprintf("garbage %d", i), get("/api/servers", b(v)), advNot5xx)
	}

	// Directly, from 127.0.0.1 (a trusted proxy): X-Real-IP names the
	// client. The same client is throttled; another is not.
	direct := func(name string, realIP string, want advExp) {
		t.Helper()
		tc := advCase{c: get("/api/servers", b(tok))}
		if realIP != "" {
			tc.d = &advDirect{headers: []hv{b(tok), {"X-Real-IP", realIP}}}
		}
		errs := &advErrs{}
		r, reason, delta := env.direct(t, tc)
		env.checkDirect(errs, want, r, reason, delta)
		for _, m := range errs.msgs {
			t.Errorf("%s: %s", name, m)
		}
		t.Logf("%s: %d %s", name, r.status, advOrDash(reason))
	}
	direct("direct, peer 127.0.0.1", "", throttled)
	direct("direct, X-Real-IP 127.0.0.1", "127.0.0.1", throttled)
	direct("direct, X-Real-IP of another client", "198.51.100.1", advAllowed("static_token", staticUser))

	// The refusals are counted.
	resp, err := probeClient.Get("http://" + env.p.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	m := regexp.MustCompile(`(?m)^registry_auth_bruteforce_refusals_total\{[^}]*\} ([0-9.e+]+)$`).FindStringSubmatch(string(body))
	if m == nil {
		t.Errorf("/metrics has no registry_auth_bruteforce_refusals_total")
	} else if v, _ := strconv.ParseFloat(m[1], 64); v < 7 {
		t.Errorf("registry_auth_bruteforce_refusals_total = %v, want at least 7", v)
	}
	env.finish(t)
}
