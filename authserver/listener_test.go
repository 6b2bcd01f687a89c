package authserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// deadlineConn records the deadlines set on it.
type deadlineConn struct {
	net.Conn
	write []time.Time
	both  []time.Time
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	c.write = append(c.write, t)
	return nil
}

func (c *deadlineConn) SetDeadline(t time.Time) error {
	c.both = append(c.both, t)
	return nil
}

// TestAuthConnWriteDeadline: a write deadline later than the one in force by
// less than writeDeadlineSlack is not set; every other one is, so the
// deadline in force is never later than the one asked for.
func TestAuthConnWriteDeadline(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	type step struct {
		both bool // SetDeadline instead of SetWriteDeadline
		at   time.Time
		set  bool // reaches the connection
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"first deadline", []step{{at: t0, set: true}}},
		{"next request a millisecond later", []step{{at: t0, set: true}, {at: t0.Add(ms)}, {at: t0.Add(2 * ms)}}},
		{"creeping by less than the slack each time", []step{
			{at: t0, set: true},
			{at: t0.Add(600 * ms)},
			// 1.2 s after the deadline in force, though only 0.6 s after the
			// last one asked for: set.
			{at: t0.Add(1200 * ms), set: true},
		}},
		{"exactly the slack later", []step{{at: t0, set: true}, {at: t0.Add(writeDeadlineSlack), set: true}}},
		{"the same deadline again", []step{{at: t0, set: true}, {at: t0}}},
		{"earlier", []step{{at: t0, set: true}, {at: t0.Add(-ms), set: true}}},
		{"cleared, then set", []step{{at: t0, set: true}, {at: time.Time{}, set: true}, {at: t0.Add(ms), set: true}}},
		{"cleared twice", []step{{at: time.Time{}, set: true}, {at: time.Time{}, set: true}}},
		{"SetDeadline replaces the deadline in force", []step{
			{at: t0, set: true},
			{both: true, at: t0.Add(-time.Minute), set: true},
			// Later than t0-1m by a minute: set.
			{at: t0.Add(ms), set: true},
			{both: true, at: time.Time{}, set: true},
			{at: t0.Add(2 * ms), set: true},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := &deadlineConn{}
			conn := &authConn{Conn: rec}
			var wantWrite, wantBoth []time.Time
			for i, s := range c.steps {
				var err error
				if s.both {
					err = conn.SetDeadline(s.at)
					wantBoth = append(wantBoth, s.at)
				} else {
					err = conn.SetWriteDeadline(s.at)
					if s.set {
						wantWrite = append(wantWrite, s.at)
					}
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				// The deadline in force is never later than the one asked for.
				if inForce := conn.writeDeadline; !s.at.IsZero() && (inForce.IsZero() || inForce.After(s.at)) {
					t.Errorf("step %d: asked for %v, in force %v", i, s.at, inForce)
				}
			}
			if !equalTimes(rec.write, wantWrite) {
				t.Errorf("write deadlines set %v, want %v", rec.write, wantWrite)
			}
			if !equalTimes(rec.both, wantBoth) {
				t.Errorf("deadlines set %v, want %v", rec.both, wantBoth)
			}
		})
	}
}

func equalTimes(a, b []time.Time) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

// TestWrapListenerSanitizes: over a real TCP connection, control bytes other
// than tab, CR and LF arrive as '#'; everything else arrives as sent.
func TestWrapListenerSanitizes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wl := WrapListener(ln)
	defer func() { _ = wl.Close() }()

	var sent, want []byte
	for b := 0; b < 256; b++ {
		sent = append(sent, byte(b))
		switch {
		case b == '\t' || b == '\r' || b == '\n':
			want = append(want, byte(b))
		case b < 0x20 || b == 0x7f:
			want = append(want, '#')
		default:
			want = append(want, byte(b))
		}
	}
	got := make(chan []byte, 1)
	go func() {
		c, err := wl.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer func() { _ = c.Close() }()
		b, _ := io.ReadAll(c)
		got <- b
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(sent); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	select {
	case b := <-got:
		if string(b) != string(want) {
			t.Errorf("read %q, want %q", b, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing read")
	}
}

// TestWrapListenerKeepsWriteTimeout: the write deadline kept from an earlier
// request still cuts off a client that stops reading, no later than
// WriteTimeout after the request it stalls on. Real http.Server, real TCP.
func TestWrapListenerKeepsWriteTimeout(t *testing.T) {
	const writeTimeout = 300 * time.Millisecond
	big := strings.Repeat("x", 64<<10)
	type outcome struct {
		err  error
		took time.Duration
	}
	stalled := make(chan outcome, 1)
	srv := &http.Server{
		ReadHeaderTimeout: time.Second,
		WriteTimeout:      writeTimeout,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/small" {
				_, _ = io.WriteString(w, "ok")
				return
			}
			// Far more than the socket buffers hold: blocks once the
			// client stops reading, until the write deadline.
			start := time.Now()
			var err error
			for i := 0; i < 4096 && err == nil; i++ {
				_, err = io.WriteString(w, big)
			}
			stalled <- outcome{err, time.Since(start)}
		}),
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(WrapListener(ln)) }()
	defer func() { _ = srv.Close() }()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	br := bufio.NewReader(c)
	// A first request sets the write deadline; the second, a moment later
	// on the same connection, keeps it.
	if _, err := fmt.Fprintf(c, "GET /small HTTP/1.1\r\nHost: t\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if _, err := fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// ... and never read again.
	select {
	case o := <-stalled:
		var ne net.Error
		if o.err == nil || !(errors.As(o.err, &ne) && ne.Timeout()) {
			t.Fatalf("the stalled write ended with %v, want a timeout", o.err)
		}
		if o.took > writeTimeout+200*time.Millisecond {
			t.Errorf("the stalled write was cut off after %v, want within WriteTimeout (%v)", o.took, writeTimeout)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled write was never cut off")
	}
}
