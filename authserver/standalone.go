package authserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/secret"

	"github.com/go-logr/logr"
)

// Standalone mode: configuration from the environment, as the original auth
// server (Docker Compose, ECS), without Kubernetes.
//
//	REGISTRY_STATIC_TOKEN_AUTH_ENABLED  true|false (default false)
//	REGISTRY_API_TOKEN                  the static token, or
//	REGISTRY_API_TOKEN_FILE             a file holding it; re-read when it changes
//	REGISTRY_API_PATH_PREFIXES          comma-separated Registry API prefixes (default /api/,/v0.1/)
//	REGISTRY_API_KEYS                   JSON list of named API keys (see APIKeyEnv)
//	OIDC_ISSUER_URL                     IdP issuer; JWTs are accepted when set
//	OIDC_CLIENT_ID                      accepted audience(s), comma-separated
//	OIDC_USERNAME_CLAIM                 default per preset (preferred_username, then sub)
//	OIDC_GROUPS_CLAIM                   default per preset (groups; cognito:groups)
//	OIDC_PRESET                         keycloak|entra|cognito|generic (default generic)
//	SECRET_KEY / SECRET_KEY_FILE        the web app's session signing key
//	SESSION_COOKIE_NAME                 default mcp_gateway_session
//	SESSION_MAX_AGE                     seconds or a Go duration (default 8h)
//	GROUP_SCOPES                        JSON object: group -> list of scopes
//
// The standalone policy's key is StandaloneKey; plain /validate selects it.

// StandaloneKey is the key of the policy built from the environment.
const (
	StandaloneNamespace = "standalone"
	StandaloneName      = "default"
	StandaloneKey       = StandaloneNamespace + "/" + StandaloneName
)

// APIKeyEnv is one entry of REGISTRY_API_KEYS:
//
//	[{"name": "ci-read", "key_file": "/run/secrets/ci-read", "groups": ["registry-readers"],
//	  "path_prefixes": ["/api/servers"], "methods": ["GET", "HEAD"]}]
//
// Exactly one of key and key_file is set. Files are re-read when they change.
type APIKeyEnv struct {
	Name         string   `json:"name"`
	Key          string   `json:"key,omitempty"`
	KeyFile      string   `json:"key_file,omitempty"`
	Groups       []string `json:"groups,omitempty"`
	PathPrefixes []string `json:"path_prefixes,omitempty"`
	Methods      []string `json:"methods,omitempty"`
}

// Env is the parsed standalone environment. Secrets that come from files are
// read by Load, so a change of the file is picked up by the next Load.
type Env struct {
	StaticEnabled   bool
	StaticToken     string
	StaticTokenFile string
	PathPrefixes    []string
	APIKeys         []APIKeyEnv
	OIDC            *OIDCConfig
	SecretKey       string
	SecretKeyFile   string
	CookieName      string
	MaxAge          time.Duration
	GroupScopes     map[string][]string
}

// ParseEnv reads the standalone environment with getenv (os.Getenv in
// production). Malformed values are errors.
func ParseEnv(getenv func(string) string) (*Env, error) {
	e := &Env{CookieName: getenv("SESSION_COOKIE_NAME")}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if v := strings.TrimSpace(getenv("REGISTRY_STATIC_TOKEN_AUTH_ENABLED")); v != "" {
		b, err := parseBool(v)
		if err != nil {
			fail("REGISTRY_STATIC_TOKEN_AUTH_ENABLED=%s: want true or false", echoValue(v))
		}
		e.StaticEnabled = b
	}
	e.StaticToken = getenv("REGISTRY_API_TOKEN")
	e.StaticTokenFile = getenv("REGISTRY_API_TOKEN_FILE")
	if e.StaticToken != "" && e.StaticTokenFile != "" {
		fail("set REGISTRY_API_TOKEN or REGISTRY_API_TOKEN_FILE, not both")
	}
	if v := getenv("REGISTRY_API_PATH_PREFIXES"); v != "" {
		e.PathPrefixes = splitList(v)
	}
	if v := getenv("REGISTRY_API_KEYS"); strings.TrimSpace(v) != "" {
		keys, err := ParseAPIKeysEnv(v)
		if err != nil {
			fail("REGISTRY_API_KEYS: %v", err)
		}
		e.APIKeys = keys
	}
	if iss := getenv("OIDC_ISSUER_URL"); iss != "" {
		o := &OIDCConfig{
			IssuerURL:     iss,
			Audiences:     splitList(getenv("OIDC_CLIENT_ID")),
			UsernameClaim: getenv("OIDC_USERNAME_CLAIM"),
			GroupsClaim:   getenv("OIDC_GROUPS_CLAIM"),
			Preset:        getenv("OIDC_PRESET"),
		}
		switch o.Preset {
		case "", PresetGeneric, PresetKeycloak, PresetEntra, PresetCognito:
		default:
			fail("OIDC_PRESET=%s: want keycloak, entra, cognito or generic", echoValue(o.Preset))
		}
		if len(o.Audiences) == 0 {
			fail("OIDC_CLIENT_ID is required with OIDC_ISSUER_URL (the accepted audience)")
		}
		if !strings.HasPrefix(iss, "https://") && !strings.HasPrefix(iss, "http://") {
			fail("OIDC_ISSUER_URL=%q: want an http(s) URL", iss)
		}
		e.OIDC = o
	}
	e.SecretKey = getenv("SECRET_KEY")
	e.SecretKeyFile = getenv("SECRET_KEY_FILE")
	if e.SecretKey != "" && e.SecretKeyFile != "" {
		fail("set SECRET_KEY or SECRET_KEY_FILE, not both")
	}
	if v := strings.TrimSpace(getenv("SESSION_MAX_AGE")); v != "" {
		d, err := parseSeconds(v)
		if err != nil || d <= 0 {
			fail("SESSION_MAX_AGE=%s: want seconds (28800) or a duration (8h)", echoValue(v))
		}
		e.MaxAge = d
	}
	if v := getenv("GROUP_SCOPES"); strings.TrimSpace(v) != "" {
		if err := json.Unmarshal([]byte(v), &e.GroupScopes); err != nil {
			fail("GROUP_SCOPES: want a JSON object of group to list of scopes: %v", err)
		}
	}
	return e, errors.Join(errs...)
}

// ParseAPIKeysEnv parses REGISTRY_API_KEYS. Unknown fields are errors, so a
// typo ("method" for "methods") does not silently widen a key.
func ParseAPIKeysEnv(v string) ([]APIKeyEnv, error) {
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	var keys []APIKeyEnv
	if err := dec.Decode(&keys); err != nil {
		return nil, fmt.Errorf("want a JSON list of {name, key|key_file, groups, path_prefixes, methods}: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON list")
	}
	for i, k := range keys {
		if k.Name == "" {
			return nil, fmt.Errorf("entry %d has no name", i)
		}
		if (k.Key == "") == (k.KeyFile == "") {
			return nil, fmt.Errorf("entry %q: set exactly one of key and key_file", k.Name)
		}
	}
	return keys, nil
}

// Config builds the policy configuration, reading secret files now. A
// missing or unreadable file is reported as the credential's problem, not an
// error: the credential is then refused.
func (e *Env) Config() PolicyConfig {
	cfg := PolicyConfig{
		Namespace:            StandaloneNamespace,
		Name:                 StandaloneName,
		RegistryPathPrefixes: e.PathPrefixes,
		GroupScopes:          e.GroupScopes,
	}
	if e.StaticEnabled {
		cfg.StaticToken = &StaticTokenConfig{Enabled: true, Token: secretFrom(e.StaticToken, e.StaticTokenFile, "REGISTRY_API_TOKEN")}
	}
	for _, k := range e.APIKeys {
		cfg.APIKeys = append(cfg.APIKeys, APIKeyConfig{
			Name:         k.Name,
			Key:          secretFrom(k.Key, k.KeyFile, "REGISTRY_API_KEYS["+k.Name+"]"),
			Groups:       k.Groups,
			PathPrefixes: k.PathPrefixes,
			Methods:      k.Methods,
		})
	}
	if e.SecretKey != "" || e.SecretKeyFile != "" {
		cfg.Session = &SessionConfig{
			CookieName: e.CookieName,
			SecretKeys: []SecretValue{secretFrom(e.SecretKey, e.SecretKeyFile, "SECRET_KEY")},
			MaxAge:     e.MaxAge,
		}
	}
	cfg.SessionCookieName = e.CookieName
	if e.OIDC != nil {
		o := *e.OIDC
		cfg.OIDC = &o
	}
	return cfg
}

// files returns the secret files the configuration reads.
func (e *Env) files() []string {
	var fs []string
	for _, f := range []string{e.StaticTokenFile, e.SecretKeyFile} {
		if f != "" {
			fs = append(fs, f)
		}
	}
	for _, k := range e.APIKeys {
		if k.KeyFile != "" {
			fs = append(fs, k.KeyFile)
		}
	}
	return fs
}

// envField names, in a problem about the environment, the variable that
// holds the offending value instead of the policy field.
func envField(field string) string {
	switch {
	case strings.HasPrefix(field, "spec.staticToken.pathPrefixes"):
		return "REGISTRY_API_PATH_PREFIXES"
	case strings.HasPrefix(field, "spec.staticToken"):
		return "REGISTRY_API_TOKEN"
	case strings.HasPrefix(field, "spec.apiKeys"):
		return "REGISTRY_API_KEYS" + strings.TrimPrefix(field, "spec.apiKeys")
	case strings.HasPrefix(field, "spec.session"):
		return "SECRET_KEY"
	case strings.HasPrefix(field, "spec.oidc"):
		return "OIDC_ISSUER_URL"
	}
	return field
}

func secretFrom(value, file, field string) SecretValue {
	if file == "" {
		return SecretValue{Value: []byte(value)}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		reason := ProblemSecretNotFound
		return SecretValue{Problem: &Problem{Reason: reason, Field: field, Message: fmt.Sprintf("cannot read %s: %v", echoPath(file), errors.Unwrap(err))}}
	}
	return SecretValue{Value: b}
}

// echoValue quotes a short setting for an error message. A long one is not
// repeated: it may be a secret put in the wrong variable.
func echoValue(v string) string {
	if len(v) <= 16 {
		return fmt.Sprintf("%q", v)
	}
	return fmt.Sprintf("(a %d-character value, fingerprint %s)", len(v), secret.Fingerprint([]byte(v)))
}

// echoPath names a secret file that cannot be read. A name without a '/'
// is not repeated: secret files are mounted at paths, and such a value is
// more likely the secret itself, put in a *_FILE variable by mistake.
func echoPath(p string) string {
	if strings.ContainsRune(p, '/') {
		return p
	}
	return fmt.Sprintf("the file named by a value without '/' (fingerprint %s; is it the secret instead of a path?)", secret.Fingerprint([]byte(p)))
}

func parseBool(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "true", "1", "yes", "on":
		return true, nil
	case "false", "0", "no", "off":
		return false, nil
	}
	return false, errors.New("not a boolean")
}

func parseSeconds(v string) (time.Duration, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(v)
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// Standalone keeps a Store loaded from the environment: it re-reads secret
// files when they change (including the atomic symlink swap kubelet and
// Docker use for mounted secrets) and retries OIDC discovery until it works.
type Standalone struct {
	env     *Env
	store   *Store
	issuers *OIDCIssuers
	log     logr.Logger
	opts    CompileOptions
	// PollInterval is how often secret files are checked (default 500ms).
	PollInterval time.Duration

	fileState []byte
	issuer    *Issuer
	lastProbs string
	// discoveryRetry is the first wait after a failed discovery (tests
	// shorten it).
	discoveryRetry time.Duration
}

// NewStandalone returns a loader for env into store.
func NewStandalone(env *Env, store *Store, issuers *OIDCIssuers, log logr.Logger, opts CompileOptions) *Standalone {
	return &Standalone{env: env, store: store, issuers: issuers, log: log, opts: opts, PollInterval: 500 * time.Millisecond,
		discoveryRetry: retryDiscoveryAfter}
}

// Start loads the configuration once. It fails when a credential is present
// but unusable (weak, unreadable) — a bad environment stops start-up — except
// the original's special case: static token auth enabled with an empty token
// logs an error and falls back to JWT.
func (s *Standalone) Start(ctx context.Context) error {
	if s.env.OIDC != nil {
		// One bounded try: an IdP that does not answer must not keep the
		// auth service, and its probes, from starting. Run keeps trying.
		dctx, cancel := context.WithTimeout(ctx, startDiscoveryTimeout)
		s.issuer = s.discover(dctx)
		cancel()
	}
	probs := s.reload()
	var errs []error
	for _, p := range probs {
		if p.Reason == ProblemTokenEmpty && p.Field == "REGISTRY_API_TOKEN" || p.Reason == ProblemOIDCDiscoveryFailed {
			continue
		}
		errs = append(errs, p)
	}
	return errors.Join(errs...)
}

// startDiscoveryTimeout bounds Start's try at OIDC discovery.
const startDiscoveryTimeout = 2 * time.Second

// Run watches the secret files and the issuer until ctx ends.
func (s *Standalone) Run(ctx context.Context) {
	t := time.NewTicker(s.PollInterval)
	defer t.Stop()
	var discovered <-chan *Issuer
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
// result: after a failure with a backoff from retryDiscoveryAfter (what
// Resolve remembers a failure for) to a minute, after a success every
// rediscoverAfter. Discovery takes as long as the IdP makes it (up to the
// fetch timeouts), and must not hold up the secret files' checks: a
// replaced token has to stop working on time whatever the IdP does.
func (s *Standalone) discoverLoop(ctx context.Context) <-chan *Issuer {
	ch := make(chan *Issuer)
	wait := s.discoveryRetry
	if s.issuer != nil {
		wait = rediscoverAfter
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
				wait, retry = rediscoverAfter, s.discoveryRetry
			}
		}
	}()
	return ch
}

// discover resolves the configured issuer: the last good one, if any, when
// discovery fails now.
func (s *Standalone) discover(ctx context.Context) *Issuer {
	iss, err := s.issuers.Resolve(ctx, s.env.OIDC.IssuerURL)
	if err != nil {
		s.log.Error(err, "OIDC discovery failed; JWTs are refused until it succeeds", "issuer", s.env.OIDC.IssuerURL)
	}
	return iss
}

// filesChanged reports whether any secret file's content changed since the
// last call. It compares digests of the contents, so it sees a changed file
// behind a swapped symlink as well as one rewritten in place.
func (s *Standalone) filesChanged() bool {
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
func (s *Standalone) reload() []Problem {
	s.filesChanged() // record the state this load reads
	cfg := s.env.Config()
	if cfg.OIDC != nil {
		cfg.OIDC.Issuer = s.issuer
		if s.issuer == nil {
			cfg.OIDC.Problem = &Problem{Reason: ProblemOIDCDiscoveryFailed, Field: "OIDC_ISSUER_URL", Message: "issuer not discovered yet; retrying"}
		}
	}
	p, probs := Compile(cfg, s.opts)
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
	s.log.Info("configuration loaded", "policy", p.Key(), "staticToken", fp.StaticToken, "apiKeys", fp.APIKeys, "problems", len(probs))
	return probs
}
