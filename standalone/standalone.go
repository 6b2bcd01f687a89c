// Package standalone runs the auth service without Kubernetes, configured
// from the environment as the original auth server is (Docker Compose, ECS):
// env.go reads the variables into a policy.PolicyConfig, standalone.go keeps
// the store loaded from it, re-reading secret files when they change and
// retrying OIDC discovery. It is the other configuration source beside the
// operator's (package controllers); both feed the same compile step.
package standalone

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
	"github.com/registryauth/registry-auth-operator/authserver/hoptoken"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// Loader keeps a policy.Store loaded from the environment: it re-reads secret
// files when they change (including the atomic symlink swap kubelet and
// Docker use for mounted secrets) and retries OIDC discovery until it works.
type Loader struct {
	env     *Env
	store   *policy.Store
	issuers *jwt.Issuers
	log     logr.Logger
	opts    policy.CompileOptions
	// PollInterval is how often secret files are checked (default 500ms).
	PollInterval time.Duration

	fileState []byte
	issuer    *jwt.Issuer
	lastProbs string
	// discoveryRetry is the first wait after a failed discovery (tests
	// shorten it).
	discoveryRetry time.Duration

	// signingKey is the ES256 public key last put in force, and
	// previousKeys those it replaced, each published in the JWKS until
	// its overlap ends. They live in memory: a restart forgets them.
	signingKey   *hoptoken.PublicKey
	previousKeys []hoptoken.PublicKey
	// now is the clock of rotations (tests set it).
	now func() time.Time
}

// NewLoader returns a loader for env into store.
func NewLoader(env *Env, store *policy.Store, issuers *jwt.Issuers, log logr.Logger, opts policy.CompileOptions) *Loader {
	return &Loader{env: env, store: store, issuers: issuers, log: log, opts: opts, PollInterval: 500 * time.Millisecond,
		discoveryRetry: jwt.RetryDiscoveryAfter, now: time.Now}
}

// Start loads the configuration once. It fails when a credential is present
// but unusable (weak, unreadable) — a bad environment stops start-up — except
// the original's special case: static token auth enabled with an empty token
// logs an error and falls back to JWT.
func (s *Loader) Start(ctx context.Context) error {
	for _, w := range s.env.Warnings {
		s.log.Info("warning: "+w, "warning", true)
	}
	if s.env.OIDC != nil {
		// One bounded try: an IdP that does not answer must not keep the
		// auth service, and its probes, from starting. Run keeps trying.
		dctx, cancel := context.WithTimeout(ctx, startDiscoveryTimeout)
		s.issuer = s.discover(dctx)
		cancel()
	}
	if s.env.APIKeysForm == APIKeysUpstream && len(s.env.APIKeys) > 0 && !s.env.StaticEnabled {
		s.log.Info("REGISTRY_API_KEYS is ignored: its keys count only while REGISTRY_STATIC_TOKEN_AUTH_ENABLED is true, as with the upstream auth server", "keys", len(s.env.APIKeys))
	}
	probs := s.reload()
	var errs []error
	for _, p := range probs {
		if startsAnyway(p) {
			continue
		}
		errs = append(errs, p)
	}
	return errors.Join(errs...)
}

// startsAnyway reports whether a problem leaves the service to start (it is
// logged, and the credential is refused), as the upstream auth server does:
// static token auth enabled with an empty token falls back to JWTs, an
// unusable federation token turns federation off, and an IdP that is not
// reachable yet is retried.
func startsAnyway(p authn.Problem) bool {
	switch {
	case p.Reason == authn.ProblemOIDCDiscoveryFailed:
		return true
	case p.Field == "REGISTRY_API_TOKEN":
		return p.Reason == authn.ProblemTokenEmpty
	case p.Field == "FEDERATION_STATIC_TOKEN":
		return p.Reason == authn.ProblemTokenEmpty || p.Reason == authn.ProblemTokenTooWeak
	}
	return false
}

// startDiscoveryTimeout bounds Start's try at OIDC discovery.
const startDiscoveryTimeout = 2 * time.Second

// Run watches the secret files and the issuer until ctx ends.
func (s *Loader) Run(ctx context.Context) {
	t := time.NewTicker(s.PollInterval)
	defer t.Stop()
	var discovered <-chan *jwt.Issuer
	if s.env.OIDC != nil {
		discovered = s.discoverLoop(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.filesChanged() {
				s.reload()
			}
		case iss := <-discovered:
			if iss != nil && iss != s.issuer {
				s.issuer = iss
				s.reload()
			}
		}
	}
}

// discoverLoop repeats OIDC discovery in the background and sends each
// result: after a failure with a backoff from jwt.RetryDiscoveryAfter (what
// Resolve remembers a failure for) to a minute, after a success every
// jwt.RediscoverAfter. Discovery takes as long as the IdP makes it (up to the
// fetch timeouts), and must not hold up the secret files' checks: a
// replaced token has to stop working on time whatever the IdP does.
func (s *Loader) discoverLoop(ctx context.Context) <-chan *jwt.Issuer {
	ch := make(chan *jwt.Issuer)
	wait := s.discoveryRetry
	if s.issuer != nil {
		wait = jwt.RediscoverAfter
	}
	go func() {
		retry := s.discoveryRetry
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			iss := s.discover(ctx)
			select {
			case ch <- iss:
			case <-ctx.Done():
				return
			}
			if iss == nil {
				wait, retry = retry, min(retry*2, time.Minute)
			} else {
				wait, retry = jwt.RediscoverAfter, s.discoveryRetry
			}
		}
	}()
	return ch
}

// discover resolves the configured issuer: the last good one, if any, when
// discovery fails now.
func (s *Loader) discover(ctx context.Context) *jwt.Issuer {
	iss, err := s.issuers.Resolve(ctx, s.env.OIDC.IssuerURL)
	if err != nil {
		s.log.Error(err, "OIDC discovery failed; JWTs are refused until it succeeds", "issuer", s.env.OIDC.IssuerURL)
	}
	return iss
}

// filesChanged reports whether any secret file's content changed since the
// last call. It compares digests of the contents, so it sees a changed file
// behind a swapped symlink as well as one rewritten in place.
func (s *Loader) filesChanged() bool {
	h := make([]byte, 0, 64)
	for _, f := range s.env.files() {
		b, err := os.ReadFile(f)
		d := secret.DigestOf(b)
		if err != nil {
			d = secret.DigestOf([]byte("\x00unreadable:" + err.Error()))
		}
		h = append(h, d[:]...)
	}
	if bytes.Equal(h, s.fileState) {
		return false
	}
	s.fileState = h
	return true
}

// reload compiles the environment and swaps the policy in.
func (s *Loader) reload() []authn.Problem {
	s.filesChanged() // record the state this load reads
	cfg := s.env.Config()
	if cfg.OIDC != nil {
		cfg.OIDC.Issuer = s.issuer
		if s.issuer == nil {
			cfg.OIDC.Problem = &authn.Problem{Reason: authn.ProblemOIDCDiscoveryFailed, Field: "OIDC_ISSUER_URL", Message: "issuer not discovered yet; retrying"}
		}
	}
	if cfg.RegistryToken != nil {
		cfg.RegistryToken.Previous = s.rotateSigningKey(cfg.RegistryToken.SigningKey)
	}
	p, probs := policy.Compile(cfg, s.opts)
	for i := range probs {
		probs[i].Field = envField(probs[i].Field)
	}
	s.store.Replace(p)
	// Log problems once per change, never a secret.
	var sb strings.Builder
	for _, pr := range probs {
		sb.WriteString(pr.Error())
		sb.WriteByte('\n')
	}
	if sb.String() != s.lastProbs {
		s.lastProbs = sb.String()
		for _, pr := range probs {
			s.log.Error(pr, "configuration problem; the credential is not accepted", "reason", pr.Reason, "field", pr.Field)
		}
	}
	fp := p.Fingerprints()
	kv := []any{"policy", p.Key(), "staticToken", fp.StaticToken, "apiKeys", fp.APIKeys, "problems", len(probs)}
	if rt := p.RegistryToken(); rt != nil {
		// Key ids and fingerprints only, never a key.
		kv = append(kv, "registryToken", map[string]any{"algorithm": rt.Algorithm(), "keyID": rt.KeyID(),
			"mode": rt.Mode(), "ttl": rt.TTL().String(), "previousKeyIDs": keyIDs(rt.Previous(s.now()))})
	}
	s.log.Info("configuration loaded", kv...)
	return probs
}

// rotateSigningKey keeps the ES256 public keys the JWKS publishes: when the
// signing key file holds another key than the one in force, the one in
// force becomes a previous key until the overlap ends, so that tokens it
// signed still verify at a registry that refreshes its key set. A key file
// that cannot be read or parsed changes nothing here (tokens are refused
// meanwhile): the key in force before it is the one its successor replaces.
func (s *Loader) rotateSigningKey(sv *authn.SecretValue) []hoptoken.PublicKey {
	now := s.now()
	keep := s.previousKeys[:0:0]
	for _, pk := range s.previousKeys {
		if now.Before(pk.ExpiresAt) {
			keep = append(keep, pk)
		}
	}
	s.previousKeys = keep
	if sv == nil || sv.Problem != nil {
		return s.previousKeys
	}
	key, err := hoptoken.ParseSigningKey(sv.Value)
	if err != nil {
		return s.previousKeys
	}
	cur, err := hoptoken.PublicKeyOf(&key.PublicKey)
	if err != nil {
		return s.previousKeys
	}
	if old := s.signingKey; old != nil && old.KeyID != cur.KeyID {
		prev := *old
		prev.ExpiresAt = now.Add(s.env.SigningKeyOverlap)
		// Rotated back to a previous key: it is current, not previous.
		keep := []hoptoken.PublicKey{}
		for _, pk := range s.previousKeys {
			if pk.KeyID != cur.KeyID && pk.KeyID != prev.KeyID {
				keep = append(keep, pk)
			}
		}
		if s.env.SigningKeyOverlap > 0 {
			keep = append(keep, prev)
		}
		s.previousKeys = keep
		s.log.Info("registry token signing key rotated", "previousKeyID", prev.KeyID, "keyID", cur.KeyID,
			"previousPublishedUntil", prev.ExpiresAt.UTC().Format(time.RFC3339))
	}
	s.signingKey = &cur
	return s.previousKeys
}

func keyIDs(pks []hoptoken.PublicKey) []string {
	out := make([]string, 0, len(pks))
	for _, pk := range pks {
		out = append(out, pk.KeyID)
	}
	return out
}
