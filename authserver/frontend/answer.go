package frontend

import (
	"encoding/json"
	"net/http"

	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// WriteHTTP is the answer every HTTP front-end gives today: 200 with the
// identity headers and a JSON body, or the deny reason's status (401 with
// WWW-Authenticate, or 403) with a JSON body naming the reason. Nothing is
// formatted per request: identities carry their header values and body, and
// deny bodies are built once per reason. Relayed headers (a delegate's) are
// sent instead of the identity, its WWW-Authenticate instead of ours.
func WriteHTTP(w http.ResponseWriter, r *http.Request, a Answer) {
	hdr := w.Header()
	hdr["Content-Type"] = jsonContentType
	hdr["Cache-Control"] = noStore
	reason, id := a.Reason, a.Identity
	for k, vs := range a.Relayed {
		hdr[k] = vs
	}
	var body []byte
	if id == nil && reason == check.ReasonDelegatedAllowed {
		body = delegatedBody
		w.WriteHeader(http.StatusOK)
	} else if id != nil {
		vals := id.HeaderValues()
		for i := range check.NumIdentityHeaders {
			hdr[check.IdentityHeader(i)] = vals[i]
		}
		body = id.JSON()
		w.WriteHeader(http.StatusOK)
	} else {
		status := reason.Status()
		if status == http.StatusOK {
			// No identity and no deny reason: a bug. Never answer 200
			// without an identity.
			status = http.StatusForbidden
		}
		if status == http.StatusUnauthorized && hdr["Www-Authenticate"] == nil {
			hdr["Www-Authenticate"] = wwwAuthenticate
		}
		body = denyBody(reason)
		w.WriteHeader(status)
	}
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

var (
	delegatedBody   = []byte(`{"valid":true,"method":"delegated"}` + "\n")
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
	wwwAuthenticate = []string{`Bearer realm="registry"`}
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

// DenyJSON is {"valid":false,"reason":...,"message":...} for a deny reason.
func DenyJSON(r check.Reason) []byte {
	body, _ := json.Marshal(struct {
		Valid   bool         `json:"valid"`
		Reason  check.Reason `json:"reason"`
		Message string       `json:"message"`
	}{false, r, r.Message()})
	return append(body, '\n')
}
