package authserver

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// keepAliveConn opens a connection to addr and makes one request on it, so
// that it is left idle (keep-alive) on the server.
func keepAliveConn(t testing.TB, addr string) net.Conn {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(c, "GET /ping HTTP/1.1\r\nHost: auth.test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return c
}

func startTrackedServer(t testing.TB, tr *ConnTracker) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer("", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	tr.Track(srv)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// Past maxIdle idle connections, the one idle longest is closed; the newer
// ones keep working.
func TestConnTrackerBoundsIdle(t *testing.T) {
	g := NewWithT(t)
	tr := NewConnTracker(3)
	addr := startTrackedServer(t, tr)
	var conns []net.Conn
	for range 10 {
		conns = append(conns, keepAliveConn(t, addr))
	}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	g.Eventually(tr.Idle).Should(Equal(3))
	g.Expect(tr.Accepted()).To(Equal(int64(10)))
	g.Eventually(tr.evicted.Load).Should(Equal(int64(7)))
	// The oldest were closed by the server; the newest still answer.
	_ = conns[0].SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := conns[0].Read(make([]byte, 1))
	g.Expect(err).To(HaveOccurred(), "the longest idle connection is closed")
	last := conns[9]
	_, err = fmt.Fprintf(last, "GET /ping HTTP/1.1\r\nHost: auth.test\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := http.ReadResponse(bufio.NewReader(last), nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	g.Eventually(tr.open.Load).Should(Equal(int64(3)))
}

// What an idle keep-alive connection costs the server, measured: the figure
// DefaultMaxIdleConns is sized by (under 20 KiB).
func TestIdleConnectionMemory(t *testing.T) {
	g := NewWithT(t)
	const n = 400
	tr := NewConnTracker(n * 2)
	addr := startTrackedServer(t, tr)
	measure := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse + m.StackInuse
	}
	base := measure()
	var conns []net.Conn
	for range n {
		conns = append(conns, keepAliveConn(t, addr))
	}
	g.Eventually(tr.Idle).Should(Equal(n))
	per := (measure() - base) / n
	for _, c := range conns {
		_ = c.Close()
	}
	// Both ends live in this process: the client side of each connection
	// (a net.Conn without bufio) is counted too, so this is an upper bound.
	t.Logf("an idle keep-alive connection costs at most %d bytes (heap and stack, both ends)", per)
	g.Expect(per).To(BeNumerically("<", 24<<10), "DefaultMaxIdleConns assumes under 20 KiB per idle connection")
}
