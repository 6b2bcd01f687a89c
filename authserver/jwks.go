package authserver

import (
	"net/http"
	"strings"
	"time"
)

// The public keys of the registry's hop token, for registries that verify
// ES256 tokens. Upstream's auth server serves its keys at jwksPath. Here each
// policy has its own keys, and a registry must trust only its own policy's:
// a union of every policy's keys would let a tenant that holds the private
// key of its own policy mint tokens another tenant's registry accepts. So:
//
//	GET /.well-known/internal-jwks.json/{namespace}/{name}   that policy's keys (operator mode)
//	GET /.well-known/internal-jwks.json                      the only policy's keys (standalone mode);
//	                                                          404 in operator mode
//
// The keys are public: no authentication. A policy without an ES256 key
// answers an empty set; an unknown policy is a 404.
const jwksPath = "/.well-known/internal-jwks.json"

var jwksCacheControl = []string{"public, max-age=300"}

func isJWKSPath(p string) bool { return p == jwksPath || strings.HasPrefix(p, jwksPath+"/") }

func (h *Handler) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	snap := h.checker.store.Load()
	rest := strings.TrimPrefix(r.URL.Path, jwksPath)
	p := snap.Only()
	if rest != "" && rest != "/" {
		p = nil
		ns, name, ok := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(rest, "/"), "/"), "/")
		if ok && ns != "" && name != "" && !strings.Contains(name, "/") {
			p = snap.Policy(ns + "/" + name)
		}
	}
	if p == nil {
		msg := "no such policy; the keys of policy <name> in <namespace> are at " + jwksPath + "/<namespace>/<name>"
		http.Error(w, msg, http.StatusNotFound)
		return
	}
	now := time.Now()
	if h.checker.now != nil {
		now = h.checker.now()
	}
	body := []byte(`{"keys":[]}`)
	if s := p.RegistryToken(); s != nil {
		body = s.JWKS(now)
	}
	hdr := w.Header()
	hdr["Content-Type"] = jsonContentType
	hdr["Cache-Control"] = jwksCacheControl
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

var jsonContentType = []string{"application/json"}
