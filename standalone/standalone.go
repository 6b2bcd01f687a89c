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
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
	"github.com/registryauth/registry-auth-operator/authserver/authn/session"
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

	// StuckAfter is how long a check of the secret files may run before
	// Ready fails (default 10 PollIntervals, at least 5s).
	StuckAfter time.Duration

	// Only the check in progress (and Start before it) uses these.
	fileState []byte
	issuer    *jwt.Issuer
	lastProbs string

	// readFile reads a secret file (readSecretFile; tests replace it).
	readFile readFunc
	// pendingIssuer is a newly discovered issuer for the next check.
	pendingIssuer atomic.Pointer[jwt.Issuer]
	// checking is the start of the check in progress, in Unix nanoseconds
	// (0: none); reading is the variable naming the file it reads.
	checking atomic.Int64
	reading  atomic.Pointer[string]
	// stuckLogged is set once a stuck check has been logged.
	stuckLogged atomic.Bool
	// blocking is the problems of the configuration in force that would
	// stop start-up (see startsAnyway), for Ready.
	blocking atomic.Pointer[[]authn.Problem]
	metrics  loaderMetrics
	// discoveryRetry is the first wait after a failed discovery (tests
	// shorten it).
	discoveryRetry time.Duration

	// signingKey is the ES256 public key last put in force, and
	// previousKeys those it replaced, each published in the JWKS until
	// its overlap ends. They live in memory: a restart forgets them.
	signingKey   *hoptoken.PublicKey
	previousKeys []hoptoken.PublicKey
	// sessionKey is the session signing key (SECRET_KEY_FILE's value)
	// last put in force, and previousSessionKeys those it replaced, each
	// verifying cookies until its SECRET_KEY_ROTATION_GRACE_PERIOD ends.
	// Memory only: a restart forgets them, and their cookies are refused.
	sessionKey          []byte
	previousSessionKeys []session.PreviousKey
	// now is the clock of rotations (tests set it).
	now func() time.Time
}

// NewLoader returns a loader for env into store.
func NewLoader(env *Env, store *policy.Store, issuers *jwt.Issuers, log logr.Logger, opts policy.CompileOptions) *Loader {
	s := &Loader{env: env, store: store, issuers: issuers, log: log, opts: opts, PollInterval: 500 * time.Millisecond,
		discoveryRetry: jwt.RetryDiscoveryAfter, now: time.Now, readFile: readSecretFile}
	s.metrics = newLoaderMetrics(s)
	return s
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
	s.load(s.readFiles())
	var errs []error
	for _, p := range *s.blocking.Load() {
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

// Run watches the secret files and the issuer until ctx ends. The files
// are checked off the loop, one check at a time: a read that hangs (a file
// system that does not answer) delays only the checks after it, which are
// skipped meanwhile, and shows in Ready and the metrics; the loop itself
// never waits for a file.
func (s *Loader) Run(ctx context.Context) {
	if s.StuckAfter <= 0 {
		s.StuckAfter = max(10*s.PollInterval, 5*time.Second)
	}
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
			s.startCheck()
		case iss := <-discovered:
			if iss != nil {
				s.pendingIssuer.Store(iss)
				s.startCheck()
			}
		}
	}
}

// startCheck starts a check of the files unless one is still running.
func (s *Loader) startCheck() {
	if !s.checking.CompareAndSwap(0, time.Now().UnixNano()) {
		s.metrics.skipped.Inc()
		if err := s.stuck(); err != nil && s.stuckLogged.CompareAndSwap(false, true) {
			s.log.Error(err, "secret files are not being re-read; a changed or removed credential is not seen until the read returns")
		}
		return
	}
	go func() {
		defer func() {
			s.reading.Store(nil)
			s.checking.Store(0)
			if s.stuckLogged.CompareAndSwap(true, false) {
				s.log.Info("secret files are re-read again")
			}
		}()
		s.check()
	}()
}

// check reads the secret files and loads the configuration again when they
// or the issuer changed.
func (s *Loader) check() {
	snap := s.readFiles()
	changed := !bytes.Equal(snap.digest, s.fileState)
	if iss := s.pendingIssuer.Swap(nil); iss != nil && iss != s.issuer {
		s.issuer = iss
		changed = true
	}
	if changed {
		s.load(snap)
	}
}

// stuck says whether the check in progress has run longer than StuckAfter.
func (s *Loader) stuck() error {
	started := s.checking.Load()
	if started == 0 || s.StuckAfter <= 0 {
		return nil
	}
	d := time.Since(time.Unix(0, started))
	if d < s.StuckAfter {
		return nil
	}
	what := "the secret files"
	if f := s.reading.Load(); f != nil {
		what = "the file " + *f + " names"
	}
	return fmt.Errorf("reading %s has not returned for %s", what, d.Round(time.Second))
}

// Ready reports whether the configuration in force is the one the
// environment and files hold now: not when a read of the files hangs (a
// changed credential would not be seen), nor when the last load had a
// problem that would stop start-up (an unreadable, oversized or weak
// secret: that credential is refused meanwhile).
func (s *Loader) Ready() error {
	if err := s.stuck(); err != nil {
		return err
	}
	if b := s.blocking.Load(); b != nil && len(*b) > 0 {
		var sb strings.Builder
		for i, p := range *b {
			if i > 0 {
				sb.WriteString("; ")
			}
			fmt.Fprintf(&sb, "%s: %s", p.Field, p.Reason)
		}
		return fmt.Errorf("configuration problem (its credential is refused): %s", sb.String())
	}
	return nil
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

// fileSnapshot is one read of every secret file: what each held (or why it
// could not be read), and a digest of it all to compare with the last load.
type fileSnapshot struct {
	data   map[string][]byte
	errs   map[string]error
	digest []byte
}

func (f fileSnapshot) read(path string) ([]byte, error) {
	if err, ok := f.errs[path]; ok {
		return nil, err
	}
	if b, ok := f.data[path]; ok {
		return b, nil
	}
	return nil, errors.New("not read") // not a file the environment names
}

// readFiles reads every secret file. It compares digests of the contents,
// so it sees a changed file behind a swapped symlink as well as one
// rewritten in place.
func (s *Loader) readFiles() fileSnapshot {
	files := s.env.files()
	snap := fileSnapshot{data: make(map[string][]byte, len(files)), errs: map[string]error{}, digest: make([]byte, 0, 32*len(files))}
	for _, f := range files {
		s.reading.Store(&f.variable)
		b, err := s.readFile(f.path)
		d := secret.DigestOf(b)
		if err != nil {
			snap.errs[f.path] = err
			d = secret.DigestOf([]byte("\x00unreadable:" + err.Error()))
		} else {
			snap.data[f.path] = b
		}
		snap.digest = append(snap.digest, d[:]...)
	}
	s.reading.Store(nil)
	return snap
}

// load compiles the environment with the files as read and swaps the
// policy in.
func (s *Loader) load(files fileSnapshot) {
	s.fileState = files.digest
	cfg := s.env.config(files.read)
	if cfg.OIDC != nil {
		cfg.OIDC.Issuer = s.issuer
		if s.issuer == nil {
			cfg.OIDC.Problem = &authn.Problem{Reason: authn.ProblemOIDCDiscoveryFailed, Field: "OIDC_ISSUER_URL", Message: "issuer not discovered yet; retrying"}
		}
	}
	if cfg.RegistryToken != nil {
		cfg.RegistryToken.Previous = s.rotateSigningKey(cfg.RegistryToken.SigningKey)
	}
	if cfg.Session != nil && len(cfg.Session.SecretKeys) == 1 {
		cfg.Session.Previous = s.rotateSessionKey(&cfg.Session.SecretKeys[0])
	}
	p, probs := policy.Compile(cfg, s.opts)
	blocking := []authn.Problem{}
	for i := range probs {
		probs[i].Field = envField(probs[i].Field)
		if !startsAnyway(probs[i]) {
			blocking = append(blocking, probs[i])
		}
	}
	s.store.Replace(p)
	s.blocking.Store(&blocking)
	s.metrics.loaded(len(probs), len(blocking))
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

// rotateSessionKey keeps the session signing keys SECRET_KEY_FILE replaced
// for SECRET_KEY_ROTATION_GRACE_PERIOD: cookies they signed are accepted
// until then, never after. A file that is missing, unreadable or weak
// revokes every key at once (the session is off until a good key is back,
// and the key before it is not kept), as a deleted Secret does with the
// operator. The registry token signs with the key in force only.
func (s *Loader) rotateSessionKey(sv *authn.SecretValue) []session.PreviousKey {
	now := s.now()
	if sv.Problem != nil {
		s.sessionKey, s.previousSessionKeys = nil, nil
		return nil
	}
	cur := secret.Clean(sv.Value)
	if w, _ := secret.Check(cur, false); w != secret.Strong {
		s.sessionKey, s.previousSessionKeys = nil, nil
		return nil
	}
	keep := s.previousSessionKeys[:0:0]
	for _, pk := range s.previousSessionKeys {
		if now.Before(pk.ExpiresAt) && !bytes.Equal(pk.Value, cur) {
			keep = append(keep, pk)
		}
	}
	if old := s.sessionKey; old != nil && !bytes.Equal(old, cur) {
		until := now.Add(s.env.SecretKeyGrace)
		if s.env.SecretKeyGrace > 0 {
			keep = append(keep, session.PreviousKey{Value: old, ExpiresAt: until})
		}
		// Fingerprints only, never a key.
		s.log.Info("session signing key (SECRET_KEY_FILE) rotated", "previous", secret.DigestOf(old).Fingerprint(),
			"current", secret.DigestOf(cur).Fingerprint(), "previousAcceptedUntil", until.UTC().Format(time.RFC3339))
	}
	s.sessionKey = cur
	s.previousSessionKeys = keep
	return keep
}

func keyIDs(pks []hoptoken.PublicKey) []string {
	out := make([]string, 0, len(pks))
	for _, pk := range pks {
		out = append(out, pk.KeyID)
	}
	return out
}
