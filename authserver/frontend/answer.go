package frontend

import (
	"encoding/json"
	"net/http"

	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// Bodies selects which answers carry a JSON body.
type Bodies uint8

const (
	// BodiesNone: no answer has a body. nginx's auth subrequest reads the
	// answer's head only; a body keeps it from reusing the connection, so a
	// proxy with upstream keepalive would open a connection per check.
	BodiesNone Bodies = iota
	// BodiesOnDenial: denials carry the JSON reason (the proxy hands the auth
	// service's denial to the client, as Traefik and Envoy do); allows have
	// none.
	BodiesOnDenial
	// BodiesAll: every answer has its JSON body (asked for while debugging).
	BodiesAll
)

// askedForJSON reports whether the auth request's own URL asks for JSON
// bodies (?format=json, for people debugging with curl). Not the Accept
// header: nginx passes the client's headers to the auth request, API
// clients send Accept: application/json, and honouring it would cost their
// checks the keep-alive connection.
func askedForJSON(r *http.Request) bool {
	return r.URL.RawQuery != "" && r.URL.Query().Get("format") == "json"
}

// WriteHTTP answers an HTTP auth request: 200 with the identity headers, or
// the deny reason's status (401 with WWW-Authenticate, or 403). Every answer
// names its reason in X-Auth-Reason, so a body is never needed to see why.
// Nothing is formatted per request: identities carry their header values and
// body, and deny bodies are built once per reason. Relayed headers (a
// delegate's) are sent instead of the identity, its WWW-Authenticate
// instead of ours.
func WriteHTTP(w http.ResponseWriter, r *http.Request, a Answer, bodies Bodies) {
	hdr := w.Header()
	hdr["Cache-Control"] = noStore
	reason, id := a.Reason, a.Identity
	for k, vs := range a.Relayed {
		hdr[k] = vs
	}
	var body []byte
	status := http.StatusOK
	switch {
	case id == nil && reason == check.ReasonDelegatedAllowed:
		body = delegatedBody
	case id == nil && reason == check.ReasonPublic:
		// No identity headers: ingress-nginx then removes a client's own
		// from the upstream request (each listed in auth-response-headers).
		body = publicBody
	case id != nil:
		vals := id.HeaderValues()
		for i := range check.NumIdentityHeaders {
			hdr[check.IdentityHeader(i)] = vals[i]
		}
		body = id.JSON()
	default:
		status = reason.Status()
		if status == http.StatusOK {
			// No identity and no deny reason: a bug. Never answer 200
			// without an identity.
			status = http.StatusForbidden
		}
		switch {
		case hdr["Www-Authenticate"] != nil: // a delegate's
		case a.Challenge != "":
			hdr["Www-Authenticate"] = []string{a.Challenge}
		case status == http.StatusUnauthorized:
			hdr["Www-Authenticate"] = wwwAuthenticate
		}
		body = denyBody(reason)
	}
	hdr["X-Auth-Reason"] = reasonValue(reason)
	send := r.Method != http.MethodHead && (bodies == BodiesAll || bodies == BodiesOnDenial && status != http.StatusOK)
	if send {
		hdr["Content-Type"] = jsonContentType
	}
	w.WriteHeader(status)
	if send {
		_, _ = w.Write(body)
	}
}

// reasonValues are the X-Auth-Reason values, built once per reason.
var reasonValues = func() (v [check.NumReasons][]string) {
	for i := range check.NumReasons {
		v[i] = []string{string(check.ReasonAt(i))}
	}
	return v
}()

func reasonValue(r check.Reason) []string {
	if i, ok := r.Index(); ok {
		return reasonValues[i]
	}
	return []string{string(r)}
}

var (
	delegatedBody   = []byte(`{"valid":true,"method":"delegated"}` + "\n")
	publicBody      = []byte(`{"valid":true,"method":"public"}` + "\n")
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
	wwwAuthenticate = []string{DefaultChallenge}
)

// denyBodies are the JSON bodies of the deny reasons, by reason index.
var denyBodies = func() (b [check.NumReasons][]byte) {
	for i := range check.NumReasons {
		r := check.ReasonAt(i)
		if r.Denies() {
			b[i] = DenyJSON(r)
		}
	}
	return b
}()

// denyBody is the JSON body of a deny reason.
func denyBody(r check.Reason) []byte {
	if i, ok := r.Index(); ok && denyBodies[i] != nil {
		return denyBodies[i]
	}
	return DenyJSON(r)
}

// DenyBody is the JSON body of a deny reason, built once per reason. It is
// shared: callers must not modify it.
func DenyBody(r check.Reason) []byte { return denyBody(r) }

// DefaultChallenge is the WWW-Authenticate value of a 401 when neither the
// policy nor a delegate has a challenge of its own.
const DefaultChallenge = `Bearer realm="registry"`

// DenyJSON is {"valid":false,"reason":...,"message":...} for a deny reason.
func DenyJSON(r check.Reason) []byte {
	body, _ := json.Marshal(struct {
		Valid   bool         `json:"valid"`
		Reason  check.Reason `json:"reason"`
		Message string       `json:"message"`
	}{false, r, r.Message()})
	return append(body, '\n')
}
