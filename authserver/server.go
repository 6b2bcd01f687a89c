package authserver

import (
	"net/http"
	"time"
)

// Server limits. An auth check is a small GET with headers only, so the
// limits are tight: a client that dribbles headers (slowloris) is cut off
// after ReadHeaderTimeout, and a request head larger than MaxHeaderBytes
// (plus net/http's 4 KiB allowance; large enough for Entra ID tokens with
// many groups) is refused with 431.
const (
	ReadHeaderTimeout = 5 * time.Second
	// ReadTimeout equals ReadHeaderTimeout: an auth check has no body, so
	// the whole request is its head. Equal, they also save net/http a
	// second read deadline per request (it sets the whole-request deadline
	// only when it differs from the header one).
	ReadTimeout = ReadHeaderTimeout
	// WriteTimeout leaves room for one JWKS fetch (fetchTimeout).
	WriteTimeout = fetchTimeout + 5*time.Second
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
