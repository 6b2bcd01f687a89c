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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
	"github.com/registryauth/registry-auth-operator/authserver/authn/statictoken"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// The HTTP server limits of NewServer, exercised on a real listener on
// 127.0.0.1 with the real Handler and Store: oversized headers are refused
// with 431, a slowloris client is cut off after ReadHeaderTimeout without
// holding up other clients, and the remaining limits are configured as
// documented.

// serverTestToken returns a random 64-hex-digit static token.
func serverTestToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// startLimitServer serves NewServer with a real Handler over a Store holding
// one policy with a static token, on 127.0.0.1:0. It returns the server, its
// address and the token.
func startLimitServer(t *testing.T) (*http.Server, string, string) {
	t.Helper()
	token := serverTestToken(t)
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
	h := NewHandler(store, HandlerOptions{Log: logr.Discard()})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(ln.Addr().String(), h)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv, ln.Addr().String(), token
}

// rawExchange writes req on a new connection while reading the response
// concurrently (the server may answer and close before it has read all of
// an oversized request), and returns the response status and body.
func rawExchange(t *testing.T, addr string, req []byte) (int, string, error) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = conn.Close() }()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	go func() { _, _ = conn.Write(req) }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), nil
}

// validateRequest is a /validate request for a Registry API path with the
// static token, padded with an X-Padding header so that the request line and
// header block (up to and including the blank line) are exactly size bytes.
func validateRequest(t *testing.T, token string, size int) []byte {
	t.Helper()
	head := "GET /validate?format=json HTTP/1.1\r\n" +
		"Host: auth.test\r\n" +
		"X-Original-URL: http://registry.example.com/api/servers\r\n" +
		"X-Original-Method: GET\r\n" +
		"Authorization: Bearer " + token + "\r\n" +
		"Connection: close\r\n"
	const padName, tail = "X-Padding: ", "\r\n\r\n"
	n := size - len(head) - len(padName) - len(tail)
	if n < 1 {
		t.Fatalf("size %d is too small", size)
	}
	req := head + padName + strings.Repeat("a", n) + tail
	if len(req) != size {
		t.Fatalf("built %d bytes, want %d", len(req), size)
	}
	return []byte(req)
}

func TestServerLimitsConfigured(t *testing.T) {
	t.Parallel()
	h := http.NotFoundHandler()
	srv := NewServer("127.0.0.1:8888", h)
	checks := []struct {
		name      string
		got, want time.Duration
	}{
		{"ReadHeaderTimeout", srv.ReadHeaderTimeout, 5 * time.Second},
		{"ReadTimeout", srv.ReadTimeout, 10 * time.Second},
		// One JWKS fetch (jwt.FetchTimeout) plus room to answer.
		{"WriteTimeout", srv.WriteTimeout, jwt.FetchTimeout + 5*time.Second},
		// Longer than ingress-nginx's auth-keepalive-timeout (60 s).
		{"IdleTimeout", srv.IdleTimeout, 120 * time.Second},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if srv.IdleTimeout <= 60*time.Second {
		t.Errorf("IdleTimeout %v does not outlive ingress-nginx's 60s auth keepalive", srv.IdleTimeout)
	}
	if srv.WriteTimeout <= jwt.FetchTimeout {
		t.Errorf("WriteTimeout %v leaves no room for a JWKS fetch (%v)", srv.WriteTimeout, jwt.FetchTimeout)
	}
	if srv.MaxHeaderBytes != 64<<10 {
		t.Errorf("MaxHeaderBytes = %d, want %d", srv.MaxHeaderBytes, 64<<10)
	}
	if srv.Addr != "127.0.0.1:8888" {
		t.Errorf("Addr = %q", srv.Addr)
	}
	if fmt.Sprintf("%p", srv.Handler) != fmt.Sprintf("%p", h) {
		t.Errorf("Handler is not the one passed in")
	}
}

// TestServerHeaderLimit: a request whose headers fit in MaxHeaderBytes is
// decided; one whose headers exceed it is refused with 431 before the
// handler runs. net/http reads MaxHeaderBytes plus 4096 bytes of slack
// (http.Server.initialReadLimitSize) before it gives up, so "over" means
// more than MaxHeaderBytes+4096 here; between the two the request is
// served, which the test records rather than hides.
func TestServerHeaderLimit(t *testing.T) {
	t.Parallel()
	_, addr, token := startLimitServer(t)
	const slack = 4096

	cases := []struct {
		name string
		size int
		want int
	}{
		{"small", 512, http.StatusOK},
		{"just under MaxHeaderBytes", MaxHeaderBytes - 1, http.StatusOK},
		{"exactly MaxHeaderBytes", MaxHeaderBytes, http.StatusOK},
		{"over MaxHeaderBytes plus net/http slack", MaxHeaderBytes + slack + 1, http.StatusRequestHeaderFieldsTooLarge},
		{"twice MaxHeaderBytes", 2 * MaxHeaderBytes, http.StatusRequestHeaderFieldsTooLarge},
		{"1 MiB", 1 << 20, http.StatusRequestHeaderFieldsTooLarge},
	}
	for _, c := range cases {
		status, body, err := rawExchange(t, addr, validateRequest(t, token, c.size))
		if err != nil {
			t.Errorf("%s (%d bytes): %v", c.name, c.size, err)
			continue
		}
		if status != c.want {
			t.Errorf("%s (%d bytes): status %d, want %d (body %q)", c.name, c.size, status, c.want, body)
		}
		if status == http.StatusOK && !strings.Contains(body, `"valid":true`) {
			t.Errorf("%s: 200 without the handler's body: %q", c.name, body)
		}
		if strings.Contains(body, token) {
			t.Errorf("%s: the response body echoes the token", c.name)
		}
	}

	// Where exactly net/http draws the line, for the record; the line
	// must lie in (MaxHeaderBytes, MaxHeaderBytes+slack].
	lo, hi := MaxHeaderBytes, MaxHeaderBytes+slack+1 // lo accepted, hi refused
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		status, _, err := rawExchange(t, addr, validateRequest(t, token, mid))
		if err != nil {
			t.Fatalf("%d bytes: %v", mid, err)
		}
		switch status {
		case http.StatusOK:
			lo = mid
		case http.StatusRequestHeaderFieldsTooLarge:
			hi = mid
		default:
			t.Fatalf("%d bytes: status %d", mid, status)
		}
	}
	t.Logf("largest request head served: %d bytes (MaxHeaderBytes %d + %d)", lo, MaxHeaderBytes, lo-MaxHeaderBytes)

	// The server still serves after refusing.
	if status, _, err := rawExchange(t, addr, validateRequest(t, token, 512)); err != nil || status != http.StatusOK {
		t.Errorf("after the oversized requests: status %d, err %v", status, err)
	}
}

// TestServerSlowloris opens connections that dribble a request one byte per
// second, some stuck in the request line and some in the headers. Each must
// be closed by the server once ReadHeaderTimeout has passed (not before, and
// well before the 10 s ReadTimeout), and while they hang on, 100 normal
// requests on other connections must all succeed quickly.
func TestServerSlowloris(t *testing.T) {
	t.Parallel()
	_, addr, token := startLimitServer(t)

	const headersSoFar = "GET /validate HTTP/1.1\r\nHost: auth.test\r\nX-Original-URL: http://registry.example.com/api/servers\r\n"
	type slowConn struct {
		what    string
		upfront string // sent at once
		dribble string // then one byte a second; never the final blank line
	}
	slow := []slowConn{
		{"request line", "", "GET /validate HTTP/1.1\r\n"},
		{"request line", "G", "ET /validate?x=aaaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n"},
		{"headers", headersSoFar, "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"},
		{"headers", headersSoFar + "Authorization: Bearer " + token + "\r\n", "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"},
	}
	type attack struct {
		closedAfter time.Duration
		sent        atomic.Int32
		answer      string
		err         error
	}
	results := make([]attack, len(slow))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer close(stop)
	for i, sc := range slow {
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		opened := time.Now()
		if sc.upfront != "" {
			if _, err := conn.Write([]byte(sc.upfront)); err != nil {
				t.Fatal(err)
			}
		}
		msg := sc.dribble
		wg.Add(2)
		// Dribbler.
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for j := 0; j < len(msg); j++ {
				if _, err := conn.Write([]byte{msg[j]}); err != nil {
					return // the server closed the connection
				}
				results[i].sent.Add(1)
				select {
				case <-tick.C:
				case <-stop:
					return
				}
			}
		}()
		// Watcher: reads until the server closes the connection. net/http
		// may first write a bare 400 (it does since Go 1.2x); nothing from
		// the handler may come back.
		go func() {
			defer wg.Done()
			_ = conn.SetReadDeadline(opened.Add(15 * time.Second))
			got, err := io.ReadAll(conn)
			results[i].closedAfter = time.Since(opened)
			switch {
			case err != nil && !isConnReset(err):
				results[i].err = fmt.Errorf("read: %w (after %q)", err, got)
			case len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 400 "):
				results[i].err = fmt.Errorf("server answered %q", got)
			}
			results[i].answer = strings.SplitN(string(got), "\r\n", 2)[0]
		}()
	}

	// 100 normal requests, each on its own connection, 10 at a time, in
	// the middle of the attack: once every slow connection has dribbled a
	// couple of bytes.
	for waited := 0; ; waited++ {
		ready := true
		for i := range results {
			ready = ready && results[i].sent.Load() >= 3
		}
		if ready {
			break
		}
		if waited > 100 {
			t.Fatal("the slow connections did not get going")
		}
		time.Sleep(50 * time.Millisecond)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 3 * time.Second}
	begin := time.Now()
	var (
		mu      sync.Mutex
		slowest time.Duration
		fails   []string
	)
	var nwg sync.WaitGroup
	jobs := make(chan int)
	for w := 0; w < 10; w++ {
		nwg.Add(1)
		go func() {
			defer nwg.Done()
			for j := range jobs {
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/validate", nil)
				req.Header.Set("X-Original-URL", "http://registry.example.com/api/servers")
				req.Header.Set("Authorization", "Bearer "+token)
				start := time.Now()
				resp, err := client.Do(req)
				lat := time.Since(start)
				mu.Lock()
				slowest = max(slowest, lat)
				if err != nil {
					fails = append(fails, fmt.Sprintf("request %d: %v", j, err))
				} else if resp.StatusCode != http.StatusOK {
					fails = append(fails, fmt.Sprintf("request %d: status %d", j, resp.StatusCode))
				}
				mu.Unlock()
				if resp != nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			}
		}()
	}
	for j := 0; j < 100; j++ {
		jobs <- j
	}
	close(jobs)
	nwg.Wait()
	took := time.Since(begin)
	t.Logf("100 normal requests during the attack: %v in total, slowest %v", took.Round(time.Millisecond), slowest.Round(time.Microsecond))
	if len(fails) > 0 {
		t.Errorf("%d of 100 normal requests failed during the attack:\n%s", len(fails), strings.Join(fails, "\n"))
	}
	if slowest > time.Second {
		t.Errorf("slowest normal request took %v during the attack", slowest)
	}
	if took > 3*time.Second {
		t.Errorf("100 normal requests took %v during the attack, want well under ReadHeaderTimeout", took)
	}

	wg.Wait()
	for i := range results {
		r := &results[i]
		what := slow[i].what
		t.Logf("slow connection %d (%s): %d bytes dribbled, closed by the server after %v (answer %q)", i, what, r.sent.Load(), r.closedAfter.Round(time.Millisecond), r.answer)
		if r.err != nil {
			t.Errorf("slow connection %d: %v", i, r.err)
			continue
		}
		// The deadline is set when the server starts reading, a moment
		// after the connection opened.
		if r.closedAfter < ReadHeaderTimeout-100*time.Millisecond || r.closedAfter > ReadHeaderTimeout+2*time.Second {
			t.Errorf("slow connection %d closed after %v, want ReadHeaderTimeout (%v) to ~7s", i, r.closedAfter, ReadHeaderTimeout)
		}
		if n := r.sent.Load(); n < 4 {
			t.Errorf("slow connection %d: only %d bytes were dribbled; the attack did not run", i, n)
		}
	}
}

func isConnReset(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe"))
}
