// Package jwt is bearer JWTs from an OpenID Connect issuer (the IdP): the
// issuer's discovery and key set, the verifier, and the presets that know
// where Keycloak, Entra ID and Cognito put the username, the groups and the
// audience.
//
// Discovery and key fetching are network calls; they happen here, outside
// the compile step and outside the request path (except a rate-limited JWKS
// refetch when a token names a key the service has not seen, which is how
// issuers announce key rotation). An Issuer is shared by every policy that
// names the same issuer URL and outlives compiled policies, so a policy
// change or a token rotation does not drop the JWKS cache, and an issuer
// outage after the first fetch leaves the cached keys working.
package jwt

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// Tunables of issuer handling.
const (
	// RediscoverAfter is how old a successful discovery may get before
	// Resolve repeats it.
	RediscoverAfter = time.Hour
	// RetryDiscoveryAfter is how long a failed discovery is remembered.
	RetryDiscoveryAfter = 10 * time.Second
	// keysRefreshAfter is how old the cached keys may get before the next
	// verification starts a background refetch (to drop keys the issuer has
	// withdrawn).
	keysRefreshAfter = 15 * time.Minute
	// unknownKidRefetchEvery limits JWKS refetches caused by unknown key IDs,
	// so tokens with made-up key IDs cannot make the service hammer the
	// issuer.
	unknownKidRefetchEvery = 5 * time.Second
	// maxDocumentBytes bounds discovery and JWKS documents.
	maxDocumentBytes = 1 << 20
	// FetchTimeout bounds one discovery or JWKS request.
	FetchTimeout = 10 * time.Second
)

// Issuers discovers issuers and keeps one Issuer per issuer URL.
type Issuers struct {
	client *http.Client
	// via, when set, is the base URL of the endpoint that serves every
	// issuer's discovery document and keys (see NewClusterIssuers).
	via string

	mu     sync.Mutex
	byURL  map[string]*Issuer
	nowFn  func() time.Time
	inDisc map[string]*sync.Mutex
	failed map[string]failedDiscovery
	// caClients are the clients of issuers with their own CA bundle, by
	// the key they are kept under (see ResolveWithCA).
	caClients map[string]*http.Client
}

// failedDiscovery remembers a failed discovery for RetryDiscoveryAfter, so
// that while an issuer is down, reconciles of every policy naming it do not
// each wait for their own timeout.
type failedDiscovery struct {
	at  time.Time
	err error
}

// NewIssuers returns an empty registry. client may be nil for a default
// client with timeouts.
func NewIssuers(client *http.Client) *Issuers {
	if client == nil {
		client = &http.Client{Timeout: FetchTimeout}
	}
	return &Issuers{client: client, byURL: map[string]*Issuer{}, nowFn: time.Now, inDisc: map[string]*sync.Mutex{}, failed: map[string]failedDiscovery{},
		caClients: map[string]*http.Client{}}
}

// NewClusterIssuers returns a registry for the Kubernetes cluster's own
// service account issuer, read through the API server at apiServer (its base
// URL) with client, which carries the cluster's CA and the caller's
// credentials (reading them takes the service-account-issuer-discovery
// ClusterRole). The API server serves the discovery document at
// /.well-known/openid-configuration and the keys at /openid/v1/jwks whatever
// issuer URL (--service-account-issuer) it names and whatever jwks_uri the
// document gives, which may be an address only reachable from outside the
// cluster. Resolve it with ClusterIssuer: the issuer URL is the one the
// document names.
func NewClusterIssuers(client *http.Client, apiServer string) *Issuers {
	r := NewIssuers(client)
	r.via = strings.TrimSuffix(apiServer, "/")
	return r
}

// ClusterIssuer is the issuer URL a cluster registry's Resolve takes.
const ClusterIssuer = "kubernetes:///"

// SetClock replaces the clock that ages discoveries and remembered failures
// (tests). Call it while no Resolve runs.
func (r *Issuers) SetClock(now func() time.Time) { r.nowFn = now }

// Resolve returns the Issuer for issuerURL. It runs discovery (and a first
// JWKS fetch) when none has succeeded yet or the last success is older than
// an hour. When discovery fails it returns the last good Issuer, if any,
// together with the error: callers keep verifying with it and report the
// error.
func (r *Issuers) Resolve(ctx context.Context, issuerURL string) (*Issuer, error) {
	return r.resolve(ctx, issuerURL, issuerURL, r.client)
}

// ErrNoCertificates: a CA bundle holds no PEM certificate that parses.
var ErrNoCertificates = errors.New("the CA bundle holds no valid PEM certificate")

// ResolveWithCA is Resolve for an issuer whose TLS certificate is checked
// against caPEM (a PEM bundle) instead of the system roots: a private
// issuer. Discovery and JWKS requests then use a client that trusts
// exactly that bundle (with FetchTimeout), and the issuer is kept apart
// from the same URL with another bundle or none, so a changed bundle
// discovers again. An empty caPEM is Resolve. A bundle without a valid
// certificate is ErrNoCertificates, and no request is made.
func (r *Issuers) ResolveWithCA(ctx context.Context, issuerURL string, caPEM []byte) (*Issuer, error) {
	if len(caPEM) == 0 {
		return r.Resolve(ctx, issuerURL)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, ErrNoCertificates
	}
	sum := sha256.Sum256(caPEM)
	key := issuerURL + "\x00ca:" + hex.EncodeToString(sum[:])
	r.mu.Lock()
	client := r.caClients[key]
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		client = &http.Client{Timeout: FetchTimeout, Transport: tr}
		r.caClients[key] = client
	}
	r.mu.Unlock()
	return r.resolve(ctx, key, issuerURL, client)
}

// resolve is Resolve with the key the issuer is kept under and the client
// that fetches its documents.
func (r *Issuers) resolve(ctx context.Context, key, issuerURL string, client *http.Client) (*Issuer, error) {
	r.mu.Lock()
	last := r.byURL[key]
	lock := r.inDisc[key]
	if lock == nil {
		lock = &sync.Mutex{}
		r.inDisc[key] = lock
	}
	r.mu.Unlock()
	if last != nil && r.nowFn().Sub(last.discoveredAt) < RediscoverAfter {
		return last, nil
	}

	// One discovery per issuer at a time; others wait and reuse it.
	lock.Lock()
	defer lock.Unlock()
	r.mu.Lock()
	last = r.byURL[key]
	f, failed := r.failed[key]
	r.mu.Unlock()
	if last != nil && r.nowFn().Sub(last.discoveredAt) < RediscoverAfter {
		return last, nil
	}
	if failed && r.nowFn().Sub(f.at) < RetryDiscoveryAfter {
		return last, f.err
	}

	src := source{issuerURL: issuerURL, wellKnown: strings.TrimSuffix(issuerURL, "/") + "/.well-known/openid-configuration"}
	if r.via != "" {
		src = source{wellKnown: r.via + "/.well-known/openid-configuration", jwksURL: r.via + "/openid/v1/jwks"}
	}
	iss, err := discover(ctx, client, src, r.nowFn())
	if err != nil {
		r.mu.Lock()
		r.failed[key] = failedDiscovery{at: r.nowFn(), err: err}
		r.mu.Unlock()
		return last, err
	}
	if last != nil && last.keys.jwksURL == iss.keys.jwksURL && slices.Equal(last.algs, iss.algs) {
		// Same key endpoint and algorithms: keep the key set (its
		// limiter and background state), with the keys just fetched.
		last.keys.cur.Store(iss.keys.cur.Load())
		iss.keys = last.keys
	}
	r.mu.Lock()
	r.byURL[key] = iss
	delete(r.failed, key)
	r.mu.Unlock()
	return iss, nil
}

// Issuer is a discovered OpenID Connect issuer and its key set.
type Issuer struct {
	url          string
	algs         []string
	keys         *keySet
	discoveredAt time.Time
}

// URL is the issuer identifier.
func (i *Issuer) URL() string { return i.url }

// discoveryDoc is the part of the discovery document used here.
type discoveryDoc struct {
	Issuer  string   `json:"issuer"`
	JWKSURI string   `json:"jwks_uri"`
	Algs    []string `json:"id_token_signing_alg_values_supported"`
}

// supportedAlgs are the signature algorithms accepted at all; "none" and HMAC
// are never accepted.
var supportedAlgs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"PS256": true, "PS384": true, "PS512": true, "EdDSA": true,
}

// source says where an issuer's documents are.
type source struct {
	// issuerURL is the issuer the document must name; "" accepts the one
	// it names (a cluster's issuer, read through its API server).
	issuerURL string
	wellKnown string
	// jwksURL, when set, replaces the document's jwks_uri.
	jwksURL string
}

func discover(ctx context.Context, client *http.Client, src source, now time.Time) (*Issuer, error) {
	if src.issuerURL != "" {
		u, err := url.Parse(src.issuerURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("issuer URL %q is not an http(s) URL", src.issuerURL)
		}
	}
	var doc discoveryDoc
	if err := getJSON(ctx, client, src.wellKnown, &doc); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	switch {
	case src.issuerURL == "" && doc.Issuer == "":
		return nil, errors.New("discovery: the document names no issuer")
	case src.issuerURL != "" && doc.Issuer != src.issuerURL:
		return nil, fmt.Errorf("discovery: the document's issuer %q does not match the configured issuer URL %q", doc.Issuer, src.issuerURL)
	}
	if src.jwksURL != "" {
		doc.JWKSURI = src.jwksURL
	}
	if doc.JWKSURI == "" {
		return nil, errors.New("discovery: the document has no jwks_uri")
	}
	var algs []string
	for _, a := range doc.Algs {
		if supportedAlgs[a] {
			algs = append(algs, a)
		}
	}
	if len(algs) == 0 {
		algs = []string{"RS256"}
	}
	ks := newKeySet(client, doc.JWKSURI, algs)
	if err := ks.fetch(ctx, now); err != nil {
		return nil, err
	}
	return &Issuer{url: doc.Issuer, algs: algs, keys: ks, discoveredAt: now}, nil
}

func getJSON(ctx context.Context, client *http.Client, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	// A Kubernetes API server serves its JWKS as application/jwk-set+json
	// only (406 for application/json alone).
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	if len(body) > maxDocumentBytes {
		return fmt.Errorf("GET %s: document larger than %d bytes", u, maxDocumentBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}
