package authserver

import (
	"bytes"
	"sync/atomic"

	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// Requests net/http refuses before any handler runs: a request head it
// cannot parse (a bare CR in a header value, a header name with a space or
// a non-token byte, a malformed, missing or repeated Host, a bad request
// line or protocol version, an unknown Transfer-Encoding, an Expect other
// than 100-continue) and a head larger than MaxHeaderBytes. net/http
// answers those with 400, 417, 431, 501 or 505 itself, and nginx's
// auth_request turns any status other than 2xx, 401 and 403 into a 500 for
// the client.
//
// SanitizeListener's connections therefore rewrite these answers as they
// are written: a 401 with X-Auth-Reason malformed_request (or
// request_header_too_large for 431), Connection: close (net/http closes the
// connection after them: a head it could not parse leaves no reliable
// framing to go on), no body. The answer is recognised by its form, which
// only net/http's connection code writes: the status line followed directly
// by "Content-Type: text/plain; charset=utf-8" and "Connection: close" with
// no Date (every handler answer has one), or the status 417, which the
// handler never sends. Every other write passes through after a
// comparison of its first bytes.
const (
	// ReasonMalformedRequest: net/http could not parse the request head.
	ReasonMalformedRequest check.Reason = "malformed_request"
	// ReasonRequestHeaderTooLarge: the request head is larger than
	// MaxHeaderBytes (net/http would answer 431).
	ReasonRequestHeaderTooLarge check.Reason = "request_header_too_large"
)

// refused counts the rewritten answers, by reason (see ConnTracker.Register).
var refused struct{ malformed, tooLarge atomic.Int64 }

// netHTTPErrorHeaders is what net/http's connection code writes after the
// status line of its own error answers (net/http/server.go, conn.serve).
const netHTTPErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// refusal returns the answer that replaces p when p is net/http's own
// refusal of a request, or nil.
func refusal(p []byte) []byte {
	// "HTTP/1.1 ddd ": handler answers are 200, 401, 403 (404 off the
	// auth routes); test the status first, it is the cheap part.
	if len(p) < 13 || p[9] == '2' || string(p[:9]) != "HTTP/1.1 " {
		return nil
	}
	code := string(p[9:12])
	if code == "401" || code == "403" {
		return nil
	}
	if code == "417" {
		refused.malformed.Add(1)
		return malformedAnswer
	}
	i := bytes.Index(p, []byte("\r\n"))
	if i < 0 || !bytes.HasPrefix(p[i:], []byte(netHTTPErrorHeaders)) {
		return nil
	}
	if code == "431" {
		refused.tooLarge.Add(1)
		return tooLargeAnswer
	}
	refused.malformed.Add(1)
	return malformedAnswer
}

func refusalAnswer(reason check.Reason) []byte {
	return []byte("HTTP/1.1 401 Unauthorized\r\n" +
		"Cache-Control: no-store\r\n" +
		"Www-Authenticate: Bearer realm=\"registry\"\r\n" +
		"X-Auth-Reason: " + string(reason) + "\r\n" +
		"Content-Length: 0\r\n" +
		"Connection: close\r\n\r\n")
}

var (
	malformedAnswer = refusalAnswer(ReasonMalformedRequest)
	tooLargeAnswer  = refusalAnswer(ReasonRequestHeaderTooLarge)
)

// Write passes p on, unless it is net/http's own refusal of a request,
// which it replaces with a 401 (see refusal).
func (c sanitizingConn) Write(p []byte) (int, error) {
	if a := refusal(p); a != nil {
		if _, err := c.Conn.Write(a); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}
