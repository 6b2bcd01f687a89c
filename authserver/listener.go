package authserver

import (
	"net"
	"time"
)

// WrapListener wraps the auth service's listener. Its connections do two
// things net/http's do not:
//
// They sanitize what they read: a control character in a request (other
// than tab, CR and LF) reaches the handler as '#' instead of making net/http
// answer 400 itself. nginx's auth_request turns any status other than 2xx,
// 401 and 403 into a 500 for the client, so without this any client could
// provoke 500s (and error-log noise) with a stray control byte in any
// header. The handler then treats the damaged value like any other bad
// input. '#' is chosen because net/http accepts it in a header value while
// the decision refuses it wherever it could matter: in a path it is bad_path
// (403), in a token or cookie it matches nothing a client does not already
// hold. Auth check requests carry no body, so rewriting every byte read is
// safe.
//
// They keep the write deadline when it would move by less than
// writeDeadlineSlack: net/http sets it to now+WriteTimeout after reading each
// request, which on a busy keep-alive connection is a timer update per
// request for a deadline that moves by a millisecond. A later deadline less
// than writeDeadlineSlack away is not set; an earlier one, a much later one
// and a cleared one always are. The effect: a response may be cut off up to
// writeDeadlineSlack before WriteTimeout, never after.
func WrapListener(ln net.Listener) net.Listener { return authListener{ln} }

// writeDeadlineSlack is how much earlier than asked a write deadline may
// fire (see WrapListener). WriteTimeout is many times longer.
const writeDeadlineSlack = time.Second

type authListener struct{ net.Listener }

func (l authListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &authConn{Conn: c}, nil
}

// authConn is one connection of WrapListener. net/http reads and sets
// deadlines from the connection's own goroutine (a background read only
// reads), so writeDeadline needs no lock.
type authConn struct {
	net.Conn
	// writeDeadline is the write deadline last set on Conn (zero: none).
	writeDeadline time.Time
}

// controlByte marks the bytes authConn.Read replaces.
var controlByte = func() (t [256]bool) {
	for b := 0; b < 0x20; b++ {
		t[b] = b != '\t' && b != '\r' && b != '\n'
	}
	t[0x7f] = true
	return t
}()

func (c *authConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	for i, b := range p[:n] {
		if controlByte[b] {
			p[i] = '#'
		}
	}
	return n, err
}

// SetWriteDeadline sets t unless it is later than the deadline in force by
// less than writeDeadlineSlack.
func (c *authConn) SetWriteDeadline(t time.Time) error {
	if !t.IsZero() && !c.writeDeadline.IsZero() && !t.Before(c.writeDeadline) && t.Sub(c.writeDeadline) < writeDeadlineSlack {
		return nil
	}
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	c.writeDeadline = t
	return nil
}

// SetDeadline sets both deadlines, as net.Conn's does.
func (c *authConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetDeadline(t); err != nil {
		return err
	}
	c.writeDeadline = t
	return nil
}

// CloseWrite keeps net/http's graceful close (it half-closes a TCP
// connection after an error answer such as 431, so the client reads it).
func (c *authConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
