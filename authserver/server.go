package authserver

import (
	"net"
	"net/http"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
)

// Server limits. An auth check is a small GET with headers only, so the
// limits are tight: a client that dribbles headers (slowloris) is cut off
// after ReadHeaderTimeout, and a request head larger than MaxHeaderBytes
// (plus net/http's 4 KiB allowance; large enough for Entra ID tokens with
// many groups) is refused with 431.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 10 * time.Second
	// WriteTimeout leaves room for one JWKS fetch (fetchTimeout).
	WriteTimeout = jwt.FetchTimeout + 5*time.Second
	// IdleTimeout outlives the ingress's keepalive to the auth service
	// (ingress-nginx's auth-keepalive-timeout defaults to 60 s).
	IdleTimeout    = 120 * time.Second
	MaxHeaderBytes = 64 << 10
)

// NewServer returns an http.Server for the auth check with the limits above.
func NewServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		WriteTimeout:      WriteTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}

// SanitizeListener wraps the auth service's listener so that a control
// character in a request (other than tab, CR and LF) reaches the handler as
// '#' instead of making net/http answer 400 itself. nginx's
// auth_request turns any status other than 2xx, 401 and 403 into a 500 for
// the client, so without this any client could provoke 500s (and error-log
// noise) with a stray control byte in any header. The handler then treats
// the damaged value like any other bad input. '#' is chosen because net/http
// accepts it in a header value while the decision refuses it wherever it
// could matter: in a path it is bad_path (403), in a token or cookie it
// matches nothing a client does not already hold. Auth check requests carry
// no body, so rewriting every byte read is safe. What net/http still
// refuses itself (a malformed head, 400; a head over MaxHeaderBytes, 431;
// and its other pre-handler answers) the connection rewrites to a 401 with
// a reason as it is written (see refusal in refuse.go).
func SanitizeListener(ln net.Listener) net.Listener { return sanitizingListener{ln} }

type sanitizingListener struct{ net.Listener }

func (l sanitizingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return sanitizingConn{c}, nil
}

type sanitizingConn struct{ net.Conn }

// controlByte marks the bytes SanitizeListener replaces.
var controlByte = func() (t [256]bool) {
	for b := 0; b < 0x20; b++ {
		t[b] = b != '\t' && b != '\r' && b != '\n'
	}
	t[0x7f] = true
	return t
}()

func (c sanitizingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	for i, b := range p[:n] {
		if controlByte[b] {
			p[i] = '#'
		}
	}
	return n, err
}

// CloseWrite keeps net/http's graceful close (it half-closes a TCP
// connection after an error answer such as 431, so the client reads it).
func (c sanitizingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
