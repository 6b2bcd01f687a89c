package authserver

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestSanitizeListener: over a real TCP connection, control bytes other than
// tab, CR and LF arrive as '#'; every other byte arrives as sent.
func TestSanitizeListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl := SanitizeListener(ln)
	defer func() { _ = sl.Close() }()

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
		c, err := sl.Accept()
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
