package authserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/secret"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/time/rate"
)

// OIDC.
//
// Discovery and key fetching are network calls; they happen here, outside
// the compile step and outside the request path (except a rate-limited JWKS
// refetch when a token names a key the service has not seen, which is how
// issuers announce key rotation). An Issuer is shared by every policy that
// names the same issuer URL and outlives compiled policies, so a policy
// change or a token rotation does not drop the JWKS cache, and an issuer
// outage after the first fetch leaves the cached keys working.

// Tunables of issuer handling.
const (
	// rediscoverAfter is how old a successful discovery may get before
	// Resolve repeats it.
	rediscoverAfter = time.Hour
	// retryDiscoveryAfter is how long a failed discovery is remembered.
	retryDiscoveryAfter = 10 * time.Second
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
	// fetchTimeout bounds one discovery or JWKS request.
	fetchTimeout = 10 * time.Second
)

// OIDCIssuers discovers issuers and keeps one Issuer per issuer URL.
type OIDCIssuers struct {
	client *http.Client

	mu     sync.Mutex
	byURL  map[string]*Issuer
	nowFn  func() time.Time
	inDisc map[string]*sync.Mutex
	failed map[string]failedDiscovery
}

// failedDiscovery remembers a failed discovery for retryDiscoveryAfter, so
// that while an issuer is down, reconciles of every policy naming it do not
// each wait for their own timeout.
type failedDiscovery struct {
	at  time.Time
	err error
}

// NewOIDCIssuers returns an empty registry. client may be nil for a default
// client with timeouts.
func NewOIDCIssuers(client *http.Client) *OIDCIssuers {
	if client == nil {
		client = &http.Client{Timeout: fetchTimeout}
	}
	return &OIDCIssuers{client: client, byURL: map[string]*Issuer{}, nowFn: time.Now, inDisc: map[string]*sync.Mutex{}, failed: map[string]failedDiscovery{}}
}

// Resolve returns the Issuer for issuerURL. It runs discovery (and a first
// JWKS fetch) when none has succeeded yet or the last success is older than
// an hour. When discovery fails it returns the last good Issuer, if any,
// together with the error: callers keep verifying with it and report the
// error.
func (r *OIDCIssuers) Resolve(ctx context.Context, issuerURL string) (*Issuer, error) {
	r.mu.Lock()
	last := r.byURL[issuerURL]
	lock := r.inDisc[issuerURL]
	if lock == nil {
		lock = &sync.Mutex{}
		r.inDisc[issuerURL] = lock
	}
	r.mu.Unlock()
	if last != nil && r.nowFn().Sub(last.discoveredAt) < rediscoverAfter {
		return last, nil
	}

	// One discovery per issuer at a time; others wait and reuse it.
	lock.Lock()
	defer lock.Unlock()
	r.mu.Lock()
	last = r.byURL[issuerURL]
	f, failed := r.failed[issuerURL]
	r.mu.Unlock()
	if last != nil && r.nowFn().Sub(last.discoveredAt) < rediscoverAfter {
		return last, nil
	}
	if failed && r.nowFn().Sub(f.at) < retryDiscoveryAfter {
		return last, f.err
	}

	iss, err := discover(ctx, r.client, issuerURL, r.nowFn())
	if err != nil {
		r.mu.Lock()
		r.failed[issuerURL] = failedDiscovery{at: r.nowFn(), err: err}
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
	r.byURL[issuerURL] = iss
	delete(r.failed, issuerURL)
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

func discover(ctx context.Context, client *http.Client, issuerURL string, now time.Time) (*Issuer, error) {
	u, err := url.Parse(issuerURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("issuer URL %q is not an http(s) URL", issuerURL)
	}
	wellKnown := strings.TrimSuffix(issuerURL, "/") + "/.well-known/openid-configuration"
	var doc discoveryDoc
	if err := getJSON(ctx, client, wellKnown, &doc); err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	if doc.Issuer != issuerURL {
		return nil, fmt.Errorf("discovery: the document's issuer %q does not match the configured issuer URL %q", doc.Issuer, issuerURL)
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
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
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

// keySet is the issuer's JWKS, cached. It implements go-oidc's KeySet. It
// refetches the JWKS when a token names an unknown key ID (rate limited) and,
// in the background, when the cached keys are older than keysRefreshAfter.
// A failed fetch keeps the cached keys. Fetches run in goroutines of their
// own, detached from the request that caused them, so no request holds
// fetchMu and a request that goes away does not abort a fetch others wait for.
type keySet struct {
	client  *http.Client
	jwksURL string
	algs    []jose.SignatureAlgorithm

	cur     atomic.Pointer[keysAt]
	fetchMu sync.Mutex // serialises fetches
	limiter *rate.Limiter
	// refetchMu guards refetching, closed when the unknown-kid refetch in
	// flight ends (nil when none is).
	refetchMu  sync.Mutex
	refetching chan struct{}
	bgBusy     atomic.Bool
	bgLast     atomic.Int64 // unix nanos of the last background attempt
	nowFn      func() time.Time
}

type keysAt struct {
	keys      []jose.JSONWebKey
	fetchedAt time.Time
	gen       uint64
}

func newKeySet(client *http.Client, jwksURL string, algs []string) *keySet {
	ks := &keySet{
		client:  client,
		jwksURL: jwksURL,
		limiter: rate.NewLimiter(rate.Every(unknownKidRefetchEvery), 1),
		nowFn:   time.Now,
	}
	for _, a := range algs {
		ks.algs = append(ks.algs, jose.SignatureAlgorithm(a))
	}
	ks.cur.Store(&keysAt{})
	return ks
}

// fetch replaces the cached keys with the issuer's current JWKS.
func (k *keySet) fetch(ctx context.Context, now time.Time) error {
	var set jose.JSONWebKeySet
	if err := getJSON(ctx, k.client, k.jwksURL, &set); err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	keys := make([]jose.JSONWebKey, 0, len(set.Keys))
	for _, key := range set.Keys {
		if key.Use == "" || key.Use == "sig" {
			if key.IsPublic() {
				keys = append(keys, key)
			}
		}
	}
	if len(keys) == 0 {
		return errors.New("jwks: no public signing keys")
	}
	old := k.cur.Load()
	k.cur.Store(&keysAt{keys: keys, fetchedAt: now, gen: old.gen + 1})
	return nil
}

var (
	errUnknownKey   = errors.New("token signed with an unknown key")
	errBadSignature = errors.New("token signature does not verify")
)

// unknownKeyFlag is a context key: VerifySignature sets the *bool it holds
// when the token names a key the issuer does not publish. go-oidc wraps key
// set errors with %v, so errors.Is cannot see errUnknownKey through it.
type unknownKeyFlag struct{}

func markUnknownKey(ctx context.Context) {
	if b, ok := ctx.Value(unknownKeyFlag{}).(*bool); ok {
		*b = true
	}
}

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, k.algs)
	if err != nil {
		return nil, fmt.Errorf("malformed token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("token must carry exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	cur := k.cur.Load()
	if k.nowFn().Sub(cur.fetchedAt) > keysRefreshAfter {
		k.refreshInBackground()
	}
	if payload, found, err := verifyWith(jws, cur.keys, kid); found {
		return payload, err
	}
	// Unknown key: the issuer may have rotated. Refetch once (rate
	// limited; concurrent callers share the same fetch) and retry.
	if done := k.startRefetch(ctx, cur); done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			// The caller has gone: it stops waiting, the fetch goes
			// on for everyone else.
		}
	}
	if payload, found, err := verifyWith(jws, k.cur.Load().keys, kid); found {
		return payload, err
	}
	markUnknownKey(ctx)
	return nil, errUnknownKey
}

// startRefetch starts the JWKS refetch for a caller that found no key for a
// token's key ID among seen, and returns a channel closed when the fetch has
// ended, or nil when there is nothing to wait for: the keys have changed since
// the caller looked (it retries with them), or the limiter refuses.
//
// The limiter's token is spent when the fetch starts, so the fetch must not
// depend on the caller: it runs in its own goroutine with
// context.WithoutCancel(ctx) (getJSON bounds it with fetchTimeout). Were it
// run with the caller's context, a client that sends a made-up key ID and
// drops the connection once per unknownKidRefetchEvery would abort every
// refetch before it reached the issuer, and tokens signed with a newly
// rotated key would be refused until the background refresh. Callers arriving
// while a refetch runs join it instead of asking the limiter; each waits only
// as long as its own context allows.
func (k *keySet) startRefetch(ctx context.Context, seen *keysAt) <-chan struct{} {
	k.refetchMu.Lock()
	defer k.refetchMu.Unlock()
	if k.cur.Load() != seen {
		return nil
	}
	if k.refetching != nil {
		return k.refetching
	}
	if !k.limiter.Allow() {
		return nil
	}
	done := make(chan struct{})
	k.refetching = done
	fetchCtx := context.WithoutCancel(ctx)
	go func() {
		k.fetchMu.Lock()
		if k.cur.Load() == seen { // else a background refresh just fetched
			_ = k.fetch(fetchCtx, k.nowFn()) // on failure the cached keys stay
		}
		k.fetchMu.Unlock()
		k.refetchMu.Lock()
		k.refetching = nil
		k.refetchMu.Unlock()
		close(done)
	}()
	return done
}

// verifyWith verifies jws with the key named kid (or, when the token names
// none, with each key). found reports whether a candidate key existed.
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey, kid string) (payload []byte, found bool, err error) {
	for i := range keys {
		if kid != "" && keys[i].KeyID != kid {
			continue
		}
		found = true
		if p, err := jws.Verify(&keys[i]); err == nil {
			return p, true, nil
		}
	}
	if found {
		return nil, true, errBadSignature
	}
	return nil, false, nil
}

// backgroundRetry spaces background refreshes that fail, so an issuer that
// is down is not asked again on every request.
const backgroundRetry = time.Minute

func (k *keySet) refreshInBackground() {
	now := k.nowFn()
	if now.Sub(time.Unix(0, k.bgLast.Load())) < backgroundRetry || !k.bgBusy.CompareAndSwap(false, true) {
		return
	}
	k.bgLast.Store(now.UnixNano())
	go func() {
		defer k.bgBusy.Store(false)
		k.fetchMu.Lock()
		defer k.fetchMu.Unlock()
		if k.nowFn().Sub(k.cur.Load().fetchedAt) > keysRefreshAfter {
			_ = k.fetch(context.Background(), k.nowFn())
		}
	}()
}

// jwtAuth verifies JWT bearer tokens for one compiled policy.
type jwtAuth struct {
	verifier       *oidc.IDTokenVerifier
	issuers        []string
	audiences      []string
	preset         string
	usernameClaims []string
	groupsClaim    string
	groupScopes    map[string][]string
	leeway         time.Duration
	cache          *tokenCache
}

// jwtLeeway is the clock skew allowed on exp and nbf.
const jwtLeeway = 30 * time.Second

// presetDefaults returns the default username claims and groups claim.
func presetDefaults(preset string) (username []string, groups string) {
	switch preset {
	case PresetEntra:
		return []string{"preferred_username", "upn", "unique_name", "sub"}, "groups"
	case PresetCognito:
		return []string{"username", "cognito:username", "sub"}, "cognito:groups"
	default:
		return []string{"preferred_username", "sub"}, "groups"
	}
}

// entraV1Issuer returns the v1 issuer (https://sts.windows.net/<tenant>/) of
// an Entra ID v2 issuer URL (https://login.microsoftonline.com/<tenant>/v2.0),
// or "".
func entraV1Issuer(v2 string) string {
	u, err := url.Parse(v2)
	if err != nil {
		return ""
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || parts[1] != "v2.0" || parts[0] == "" {
		return ""
	}
	return "https://sts.windows.net/" + parts[0] + "/"
}

func newJWTAuth(cfg *OIDCConfig, groupScopes map[string][]string, cacheSize int) *jwtAuth {
	preset := cfg.Preset
	if preset == "" {
		preset = PresetGeneric
	}
	users, groups := presetDefaults(preset)
	if cfg.UsernameClaim != "" {
		users = []string{cfg.UsernameClaim}
	}
	if cfg.GroupsClaim != "" {
		groups = cfg.GroupsClaim
	}
	issuers := []string{cfg.Issuer.url}
	if preset == PresetEntra {
		if v1 := entraV1Issuer(cfg.Issuer.url); v1 != "" {
			issuers = append(issuers, v1)
		}
	}
	v := oidc.NewVerifier(cfg.Issuer.url, cfg.Issuer.keys, &oidc.Config{
		SupportedSigningAlgs: cfg.Issuer.algs,
		// Checked below, with the preset's rules and a leeway.
		SkipClientIDCheck: true,
		SkipExpiryCheck:   true,
		SkipIssuerCheck:   true,
	})
	return &jwtAuth{
		verifier:       v,
		issuers:        issuers,
		audiences:      append([]string(nil), cfg.Audiences...),
		preset:         preset,
		usernameClaims: users,
		groupsClaim:    groups,
		groupScopes:    groupScopes,
		leeway:         jwtLeeway,
		cache:          newTokenCache(cacheSize),
	}
}

// authenticate verifies a JWT and returns the identity, or a deny reason.
func (a *jwtAuth) authenticate(ctx context.Context, raw string, now time.Time) (*Identity, Reason) {
	d := secret.DigestString(raw)
	if id := a.cache.get(&d, now); id != nil {
		return id, ReasonAllowedOIDC
	}
	unknownKey := false
	tok, err := a.verifier.Verify(context.WithValue(ctx, unknownKeyFlag{}, &unknownKey), raw)
	if err != nil {
		if unknownKey {
			return nil, ReasonJWTUnknownKey
		}
		return nil, ReasonJWTInvalid
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, ReasonJWTInvalid
	}
	if !containsString(a.issuers, tok.Issuer) {
		return nil, ReasonJWTInvalid
	}
	if tok.Expiry.IsZero() || !now.Before(tok.Expiry.Add(a.leeway)) {
		return nil, ReasonJWTExpired
	}
	if _, present := claims["nbf"]; present {
		nbf, ok := numericClaim(claims, "nbf")
		if !ok || now.Add(a.leeway).Before(nbf) {
			return nil, ReasonJWTInvalid
		}
	}
	if !a.audienceOK(tok.Audience, claims) {
		return nil, ReasonJWTAudience
	}
	username := ""
	for _, c := range a.usernameClaims {
		if s, ok := lookupClaim(claims, c).(string); ok && s != "" {
			username = s
			break
		}
	}
	if username == "" || !headerSafeValue(username) {
		return nil, ReasonJWTNoUsername
	}
	groups := headerSafeList(stringList(lookupClaim(claims, a.groupsClaim)))
	clientID := firstString(claims, "azp", "client_id", "appid")
	if clientID == "" {
		for _, aud := range tok.Audience {
			if containsString(a.audiences, aud) {
				clientID = aud
				break
			}
		}
	}
	if !headerSafeValue(clientID) {
		clientID = ""
	}
	id := newIdentity(username, clientID, groups, scopesFor(groups, a.groupScopes), MethodOIDC)
	if until := tok.Expiry; until.After(now) {
		if maxUntil := now.Add(maxCachedTokenTTL); until.After(maxUntil) {
			until = maxUntil
		}
		a.cache.put(&d, id, until, now)
	}
	return id, ReasonAllowedOIDC
}

// audienceOK checks aud against the configured audiences. Keycloak's access
// tokens name the requesting client in azp (aud is often "account"); Cognito's
// access tokens carry client_id and no aud.
func (a *jwtAuth) audienceOK(aud []string, claims map[string]any) bool {
	for _, x := range aud {
		if containsString(a.audiences, x) {
			return true
		}
	}
	switch a.preset {
	case PresetKeycloak:
		if s, _ := claims["azp"].(string); s != "" && containsString(a.audiences, s) {
			return true
		}
	case PresetCognito:
		use, _ := claims["token_use"].(string)
		if s, _ := claims["client_id"].(string); s != "" && use == "access" && containsString(a.audiences, s) {
			return true
		}
	}
	return false
}

// lookupClaim returns the claim named name; when there is none and the name
// holds dots, it follows them into nested objects ("realm_access.roles").
func lookupClaim(claims map[string]any, name string) any {
	if v, ok := claims[name]; ok {
		return v
	}
	if !strings.Contains(name, ".") {
		return nil
	}
	var cur any = claims
	for _, part := range strings.Split(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

func stringList(v any) []string {
	switch t := v.(type) {
	case string:
		if t == "" {
			return nil
		}
		return []string{t}
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func firstString(claims map[string]any, names ...string) string {
	for _, n := range names {
		if s, ok := claims[n].(string); ok && s != "" {
			return s
		}
	}
	return ""
}

func numericClaim(claims map[string]any, name string) (time.Time, bool) {
	switch v := claims[name].(type) {
	case float64:
		return time.Unix(int64(v), 0), true
	case json.Number:
		f, err := v.Float64()
		if err != nil {
			return time.Time{}, false
		}
		return time.Unix(int64(f), 0), true
	}
	return time.Time{}, false
}
