package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// flipServer answers 401 to the first n requests carrying token, then 200;
// it closes the connection after every closeEvery-th answer (0: never).
// idle, if not 0, is the server's IdleTimeout.
func flipServer(t *testing.T, token string, n int64, closeEvery int64, idle time.Duration) (*httptest.Server, *atomic.Int64, *atomic.Int64) {
	t.Helper()
	var seen, conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/validate" || r.Header.Get("Authorization") != "Bearer "+token ||
			!strings.HasPrefix(r.Header.Get("X-Original-Url"), "http://rot.bench/") {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		i := seen.Add(1)
		if closeEvery > 0 && i%closeEvery == 0 {
			w.Header().Set("Connection", "close")
		}
		if i <= n {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	srv.Listener.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = ln
	srv.Config.IdleTimeout = idle
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &seen, &conns
}

func testPoller(srv *httptest.Server) *poller {
	return &poller{r: &replica{p: &proc{name: "test"}, auth: strings.TrimPrefix(srv.URL, "http://")}, host: "rot.bench"}
}

func TestPollerWaitsForTheWantedAnswer(t *testing.T) {
	srv, seen, conns := flipServer(t, "new", 5, 0, 0)
	p := testPoller(srv)
	defer p.close()
	t0 := time.Now()
	d, err := p.until(context.Background(), time.Millisecond, "new", http.StatusOK, http.StatusUnauthorized, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got := seen.Load(); got != 6 {
		t.Errorf("requests = %d, want 6 (5 refused, then the first 200)", got)
	}
	if c := conns.Load(); c != 1 {
		t.Errorf("connections = %d, want 1 (keep-alive)", c)
	}
	if d <= 0 || d > time.Since(t0) {
		t.Errorf("latency %v outside (0, %v]", d, time.Since(t0))
	}
	// Five polls 1 ms apart: at least 5 ms from the start.
	if d < 5*time.Millisecond {
		t.Errorf("latency %v: the poll interval was not kept", d)
	}
}

func TestPollerReconnectsWhenTheServerCloses(t *testing.T) {
	srv, seen, conns := flipServer(t, "new", 4, 2, 0)
	p := testPoller(srv)
	defer p.close()
	if _, err := p.until(context.Background(), time.Millisecond, "new", http.StatusOK, http.StatusUnauthorized, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := seen.Load(); got != 5 {
		t.Errorf("requests = %d, want 5", got)
	}
	if c := conns.Load(); c != 3 {
		t.Errorf("connections = %d, want 3 (the server closed after answers 2 and 4)", c)
	}
}

func TestPollerFailsOnAnUnexpectedStatus(t *testing.T) {
	srv, _, _ := flipServer(t, "new", 0, 0, 0)
	p := testPoller(srv)
	defer p.close()
	// The server answers 400 to any other token.
	_, err := p.until(context.Background(), time.Millisecond, "other", http.StatusOK, http.StatusUnauthorized, time.Now())
	if err == nil || !strings.Contains(err.Error(), "answered 400") {
		t.Fatalf("err = %v, want an error naming the 400", err)
	}
}

// A kept-alive connection the server closed without saying so (an idle
// timeout) is retried once on a new connection, as http.Client does.
func TestPollerRetriesAConnectionTheServerDropped(t *testing.T) {
	srv, seen, conns := flipServer(t, "new", 2, 0, 50*time.Millisecond)
	p := testPoller(srv)
	defer p.close()
	// Poll slower than the idle timeout: every reused connection is gone.
	if _, err := p.until(context.Background(), 150*time.Millisecond, "new", http.StatusOK, http.StatusUnauthorized, time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := seen.Load(); got != 3 {
		t.Errorf("requests = %d, want 3", got)
	}
	if c := conns.Load(); c < 2 {
		t.Errorf("connections = %d, want a new one after the idle timeout", c)
	}
}
