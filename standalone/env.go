package standalone

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authn/apikey"
	"github.com/registryauth/registry-auth-operator/authserver/authn/federation"
	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
	"github.com/registryauth/registry-auth-operator/authserver/authn/session"
	"github.com/registryauth/registry-auth-operator/authserver/authn/statictoken"
	"github.com/registryauth/registry-auth-operator/authserver/hoptoken"
	"github.com/registryauth/registry-auth-operator/authserver/pathnorm"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// The environment of standalone mode:
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
//	OIDC_PRESET                         keycloak|entra|cognito|okta|auth0|generic (default generic)
//	SECRET_KEY / SECRET_KEY_FILE        the web app's session signing key, and the
//	                                    registry hop token's HS256 key
//	SESSION_COOKIE_NAME                 default mcp_gateway_session
//	SESSION_MAX_AGE                     seconds or a Go duration (default 8h)
//	SECRET_KEY_ROTATION_GRACE_PERIOD    seconds or a Go duration (default 0, at most 24h): when
//	                                    SECRET_KEY_FILE changes, cookies of the previous key stay
//	                                    valid this long (in this process's memory only)
//	GROUP_SCOPES                        JSON object: group -> list of scopes
//	INTERNAL_TOKEN_TTL_SECONDS          hop token lifetime, whole seconds (default 30, at least 5)
//	INTERNAL_SIGNING_KEY_PATH           PEM P-256 key: ES256 hop tokens; re-read when it changes
//	INTERNAL_SIGNING_KEY_OVERLAP_SECONDS how long a replaced public key stays in the JWKS (default 900)
//	REGISTRY_TOKEN_MODE                 on-request|always (default on-request)
//	PUBLIC_PATHS                        comma-separated paths that pass without credentials (GET, HEAD, OPTIONS)
//	MCP_RESOURCE_METADATA_URL           the protected resource metadata URL (or template) of 401/403 challenges
//	MCP_SCOPES                          scopes advertised in the challenges, comma- or space-separated
//	MCP_CHALLENGE_REGISTRY_PATHS        true: challenge on Registry API paths too (default false)
//
// The hop token (X-Internal-Token-Registry) is on whenever SECRET_KEY,
// SECRET_KEY_FILE or INTERNAL_SIGNING_KEY_PATH is set, as upstream's is.
// The standalone policy's key is PolicyKey; plain /validate selects it.

// maxSecretKeyGrace bounds SECRET_KEY_ROTATION_GRACE_PERIOD, as the CRD
// bounds rotationGracePeriod.
const maxSecretKeyGrace = 24 * time.Hour

// PolicyKey is the key of the policy built from the environment.
const (
	PolicyNamespace = "standalone"
	PolicyName      = "default"
	PolicyKey       = PolicyNamespace + "/" + PolicyName
)

// Env is the parsed standalone environment. Secrets that come from files are
// read by Load, so a change of the file is picked up by the next Load.
type Env struct {
	StaticEnabled   bool
	StaticToken     string
	StaticTokenFile string
	// RootPath is REGISTRY_ROOT_PATH (default ROOT_PATH) without a trailing
	// slash: the registry's paths are under it.
	RootPath     string
	PathPrefixes []string
	APIKeys      []APIKeyEnv
	// APIKeysForm is the form REGISTRY_API_KEYS was written in.
	APIKeysForm         APIKeysForm
	FederationEnabled   bool
	FederationToken     string
	FederationTokenFile string
	OIDC                *jwt.Config
	SecretKey           string
	SecretKeyFile       string
	CookieName          string
	MaxAge              time.Duration
	// SecretKeyGrace is how long cookies of a replaced SECRET_KEY_FILE key
	// stay valid (SECRET_KEY_ROTATION_GRACE_PERIOD).
	SecretKeyGrace time.Duration
	GroupScopes    map[string][]string
	// Delegate is the upstream auth server (DELEGATE_URL and friends), nil
	// when none.
	Delegate *policy.DelegateConfig
	// The registry's hop token (see package hoptoken).
	TokenTTL       time.Duration
	TokenMode      hoptoken.Mode
	SigningKeyFile string
	// SigningKeyOverlap is how long a replaced ES256 public key stays in
	// the JWKS.
	SigningKeyOverlap time.Duration
	// PublicPaths and ProtectedResource: for MCP clients (PUBLIC_PATHS,
	// MCP_RESOURCE_METADATA_URL and friends).
	PublicPaths       []string
	ProtectedResource *policy.ProtectedResourceConfig
	// Warnings are settings that were accepted with a change (a TTL below
	// the minimum); the loader logs them.
	Warnings []string
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
			fail("REGISTRY_STATIC_TOKEN_AUTH_ENABLED %s: want true or false", echoValue(v))
		}
		e.StaticEnabled = b
	}
	e.StaticToken = getenv("REGISTRY_API_TOKEN")
	e.StaticTokenFile = getenv("REGISTRY_API_TOKEN_FILE")
	if e.StaticToken != "" && e.StaticTokenFile != "" {
		fail("set REGISTRY_API_TOKEN or REGISTRY_API_TOKEN_FILE, not both")
	}
	root := getenv("REGISTRY_ROOT_PATH")
	if root == "" {
		root = getenv("ROOT_PATH")
	}
	if root = strings.TrimRight(strings.TrimSpace(root), "/"); root != "" {
		if err := pathnorm.CheckPrefix(root + "/"); err != nil {
			fail("REGISTRY_ROOT_PATH (or ROOT_PATH) %s: want an absolute path such as /registry", echoValue(root))
		}
		e.RootPath = root
	}
	if v := getenv("REGISTRY_API_PATH_PREFIXES"); v != "" {
		e.PathPrefixes = splitList(v)
		for i, pre := range e.PathPrefixes {
			// Checked here, not only by Compile, whose message repeats
			// the value.
			if pathnorm.CheckPrefix(pre) != nil {
				fail("REGISTRY_API_PATH_PREFIXES entry %d %s: want an absolute, normalised path such as /api/ (no '..', '//', '%%' escapes or query)", i, echoValue(pre))
			}
		}
	}
	if v := getenv("REGISTRY_API_KEYS"); strings.TrimSpace(v) != "" {
		keys, form, err := ParseAPIKeysEnv(v)
		if err == nil {
			err = checkAPIKeyLimits(keys, e.registryPrefixes())
		}
		if err != nil {
			fail("REGISTRY_API_KEYS: %v", err)
		}
		e.APIKeys, e.APIKeysForm = keys, form
	}
	if v := strings.TrimSpace(getenv("FEDERATION_STATIC_TOKEN_AUTH_ENABLED")); v != "" {
		b, err := parseBool(v)
		if err != nil {
			fail("FEDERATION_STATIC_TOKEN_AUTH_ENABLED %s: want true or false", echoValue(v))
		}
		e.FederationEnabled = b
	}
	e.FederationToken = getenv("FEDERATION_STATIC_TOKEN")
	e.FederationTokenFile = getenv("FEDERATION_STATIC_TOKEN_FILE")
	if e.FederationToken != "" && e.FederationTokenFile != "" {
		fail("set FEDERATION_STATIC_TOKEN or FEDERATION_STATIC_TOKEN_FILE, not both")
	}
	if iss := getenv("OIDC_ISSUER_URL"); iss != "" {
		o := &jwt.Config{
			IssuerURL:     iss,
			Audiences:     splitList(getenv("OIDC_CLIENT_ID")),
			UsernameClaim: getenv("OIDC_USERNAME_CLAIM"),
			GroupsClaim:   getenv("OIDC_GROUPS_CLAIM"),
			Preset:        getenv("OIDC_PRESET"),
		}
		switch o.Preset {
		case "", jwt.PresetGeneric, jwt.PresetKeycloak, jwt.PresetEntra, jwt.PresetCognito, jwt.PresetOkta, jwt.PresetAuth0:
		default:
			fail("OIDC_PRESET %s: want keycloak, entra, cognito, okta, auth0 or generic", echoValue(o.Preset))
		}
		if len(o.Audiences) == 0 {
			fail("OIDC_CLIENT_ID is required with OIDC_ISSUER_URL (the accepted audience)")
		}
		if !issuerURL(iss) {
			// The URL is logged when discovery fails: only a plain
			// scheme://host/path is, never user information or a query.
			fail("OIDC_ISSUER_URL %s: want an http(s) URL with a host, without user information, query or fragment", echoValue(iss))
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
			fail("SESSION_MAX_AGE %s: want seconds (28800) or a duration (8h)", echoValue(v))
		}
		e.MaxAge = d
	}
	if v := strings.TrimSpace(getenv("SECRET_KEY_ROTATION_GRACE_PERIOD")); v != "" {
		d, err := parseSeconds(v)
		if err != nil || d < 0 || d > maxSecretKeyGrace {
			fail("SECRET_KEY_ROTATION_GRACE_PERIOD %s: want seconds (3600) or a duration (1h), at most 24h", echoValue(v))
		}
		e.SecretKeyGrace = d
	}
	if v := getenv("GROUP_SCOPES"); strings.TrimSpace(v) != "" {
		if err := checkJSONFields(v); err != nil {
			fail("GROUP_SCOPES: %v", err)
		} else if err := json.Unmarshal([]byte(v), &e.GroupScopes); err != nil {
			fail("GROUP_SCOPES: want a JSON object of group to list of scopes: %v", jsonError(err))
		}
	}
	if v := getenv("PUBLIC_PATHS"); strings.TrimSpace(v) != "" {
		for i, p := range splitList(v) {
			if pathnorm.CheckPrefix(p) != nil {
				// Not CheckPrefix's message: it repeats the value.
				fail("PUBLIC_PATHS entry %d %s: want an absolute, normalised path (no '..', '//', '%%' escapes or query)", i, echoValue(p))
			}
			e.PublicPaths = append(e.PublicPaths, p)
		}
	}
	if u := strings.TrimSpace(getenv("MCP_RESOURCE_METADATA_URL")); u != "" {
		pr := &policy.ProtectedResourceConfig{MetadataURL: u, Scopes: strings.FieldsFunc(getenv("MCP_SCOPES"), func(r rune) bool { return r == ',' || r == ' ' })}
		if v := strings.TrimSpace(getenv("MCP_CHALLENGE_REGISTRY_PATHS")); v != "" {
			b, err := parseBool(v)
			if err != nil {
				fail("MCP_CHALLENGE_REGISTRY_PATHS %s: want true or false", echoValue(v))
			}
			pr.RegistryPaths = b
		}
		e.ProtectedResource = pr
	} else if strings.TrimSpace(getenv("MCP_SCOPES")) != "" || strings.TrimSpace(getenv("MCP_CHALLENGE_REGISTRY_PATHS")) != "" {
		fail("MCP_SCOPES and MCP_CHALLENGE_REGISTRY_PATHS need MCP_RESOURCE_METADATA_URL")
	}
	if u := strings.TrimSpace(getenv("DELEGATE_URL")); u != "" {
		d := &policy.DelegateConfig{URL: u}
		if v := strings.TrimSpace(getenv("DELEGATE_TIMEOUT")); v != "" {
			t, err := parseSeconds(v)
			if err != nil || t <= 0 {
				fail("DELEGATE_TIMEOUT %s: want seconds (5) or a duration (1500ms)", echoValue(v))
			}
			d.Timeout = t
		}
		if v := strings.TrimSpace(getenv("DELEGATE_GATEWAY_PATHS")); v != "" {
			b, err := parseBool(v)
			if err != nil {
				fail("DELEGATE_GATEWAY_PATHS %s: want true or false", echoValue(v))
			}
			d.GatewayPaths = b
		}
		if v := strings.TrimSpace(getenv("DELEGATE_MAX_CONCURRENT")); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				fail("DELEGATE_MAX_CONCURRENT %s: want a positive number", echoValue(v))
			}
			d.MaxConcurrent = n
		}
		e.Delegate = d
	}

	// The registry's hop token. Upstream reads INTERNAL_TOKEN_TTL_SECONDS
	// with int(), falls back to 30 with a warning when that fails, and
	// raises values under 5 to 5. Here a value that does not parse stops
	// start-up (a typo would otherwise change the lifetime unnoticed);
	// values under 5 are raised with a warning, as upstream does.
	e.TokenTTL = hoptoken.DefaultTTL
	if v := strings.TrimSpace(getenv("INTERNAL_TOKEN_TTL_SECONDS")); v != "" {
		n, err := strconv.Atoi(v)
		switch {
		case err != nil:
			fail("INTERNAL_TOKEN_TTL_SECONDS %s: want whole seconds, e.g. 30", echoValue(v))
		case int64(n) > int64(hoptoken.MaxTTL/time.Second):
			fail("INTERNAL_TOKEN_TTL_SECONDS %s: at most %d (24h)", echoValue(v), int64(hoptoken.MaxTTL/time.Second))
		case time.Duration(n)*time.Second < hoptoken.MinTTL:
			e.Warnings = append(e.Warnings, fmt.Sprintf("INTERNAL_TOKEN_TTL_SECONDS=%d is below the minimum; using %d", n, int64(hoptoken.MinTTL/time.Second)))
			e.TokenTTL = hoptoken.MinTTL
		default:
			e.TokenTTL = time.Duration(n) * time.Second
		}
	}
	e.SigningKeyFile = getenv("INTERNAL_SIGNING_KEY_PATH")
	e.SigningKeyOverlap = hoptoken.DefaultOverlap
	if v := strings.TrimSpace(getenv("INTERNAL_SIGNING_KEY_OVERLAP_SECONDS")); v != "" {
		d, err := parseSeconds(v)
		if err != nil || d < 0 {
			fail("INTERNAL_SIGNING_KEY_OVERLAP_SECONDS %s: want seconds (900) or a duration (15m)", echoValue(v))
		}
		e.SigningKeyOverlap = d
	}
	switch v := strings.ToLower(strings.TrimSpace(getenv("REGISTRY_TOKEN_MODE"))); v {
	case "":
		e.TokenMode = hoptoken.ModeOnRequest
	case string(hoptoken.ModeOnRequest), string(hoptoken.ModeAlways):
		e.TokenMode = hoptoken.Mode(v)
		if !e.registryToken() {
			fail("REGISTRY_TOKEN_MODE=%s needs a key for the registry token: SECRET_KEY, SECRET_KEY_FILE or INTERNAL_SIGNING_KEY_PATH", v)
		}
	default:
		fail("REGISTRY_TOKEN_MODE %s: want on-request or always", echoValue(v))
	}
	return e, errors.Join(errs...)
}

// registryToken reports whether the registry's hop token is on: a key for
// it is set.
func (e *Env) registryToken() bool {
	return e.SecretKey != "" || e.SecretKeyFile != "" || e.SigningKeyFile != ""
}

// Config builds the policy configuration, reading secret files now. A
// missing or unreadable file is reported as the credential's problem, not an
// error: the credential is then refused.
func (e *Env) Config() policy.PolicyConfig { return e.config(readSecretFile) }

// readFunc reads a secret file.
type readFunc func(path string) ([]byte, error)

// config is Config with the secret files read by read (the loader passes
// what it has just read, so that a load uses the contents it compared).
func (e *Env) config(read readFunc) policy.PolicyConfig {
	cfg := policy.PolicyConfig{
		Namespace:            PolicyNamespace,
		Name:                 PolicyName,
		RegistryPathPrefixes: e.PathPrefixes,
		GroupScopes:          e.GroupScopes,
	}
	if e.RootPath != "" {
		if len(cfg.RegistryPathPrefixes) == 0 {
			for _, p := range policy.DefaultRegistryPathPrefixes {
				cfg.RegistryPathPrefixes = append(cfg.RegistryPathPrefixes, e.RootPath+p)
			}
		}
		for _, p := range policy.DefaultAgentPathPrefixes {
			cfg.AgentPathPrefixes = append(cfg.AgentPathPrefixes, e.RootPath+p)
		}
	}
	if e.StaticEnabled {
		cfg.StaticToken = &statictoken.Config{Enabled: true, Token: secretFrom(e.StaticToken, e.StaticTokenFile, "REGISTRY_API_TOKEN", "REGISTRY_API_TOKEN_FILE", read)}
	}
	if e.FederationEnabled {
		fc := &federation.Config{Enabled: true, Token: secretFrom(e.FederationToken, e.FederationTokenFile, "FEDERATION_STATIC_TOKEN", "FEDERATION_STATIC_TOKEN_FILE", read)}
		for _, p := range federation.DefaultPathPrefixes {
			fc.PathPrefixes = append(fc.PathPrefixes, e.RootPath+p)
		}
		cfg.FederationToken = fc
	}
	for _, k := range e.APIKeys {
		if e.APIKeysForm == APIKeysUpstream && !e.StaticEnabled {
			break // as upstream: its keys count only with the static token flag
		}
		cfg.APIKeys = append(cfg.APIKeys, apikey.Config{
			Name:         k.Name,
			Key:          secretFrom(k.Key, k.KeyFile, apiKeyVar(k.Name), apiKeyVar(k.Name)+".key_file", read),
			Groups:       k.Groups,
			PathPrefixes: k.PathPrefixes,
			Methods:      k.Methods,
		})
		if k.ExpiresAt != nil {
			cfg.APIKeys[len(cfg.APIKeys)-1].ExpiresAt = *k.ExpiresAt
		}
	}
	if e.SecretKey != "" || e.SecretKeyFile != "" {
		cfg.Session = &session.Config{
			CookieName: e.CookieName,
			SecretKeys: []authn.SecretValue{secretFrom(e.SecretKey, e.SecretKeyFile, "SECRET_KEY", "SECRET_KEY_FILE", read)},
			MaxAge:     e.MaxAge,
		}
	}
	cfg.SessionCookieName = e.CookieName
	cfg.PublicPaths = e.PublicPaths
	if e.ProtectedResource != nil {
		pr := *e.ProtectedResource
		cfg.ProtectedResource = &pr
	}
	if e.Delegate != nil {
		d := *e.Delegate
		cfg.Delegate = &d
	}
	if e.registryToken() {
		rt := &hoptoken.Config{TTL: e.TokenTTL, Mode: e.TokenMode}
		switch {
		case e.SecretKey != "":
			// The raw value: the registry keys its verifier with the
			// raw SECRET_KEY environment value.
			rt.SecretKey = &authn.SecretValue{Value: []byte(e.SecretKey)}
		case e.SecretKeyFile != "":
			// A file's value is trimmed (a trailing newline): the
			// registry's SECRET_KEY environment value has none.
			sv := secretFrom("", e.SecretKeyFile, "SECRET_KEY", "SECRET_KEY_FILE", read)
			sv.Value = bytes.TrimSpace(sv.Value)
			rt.SecretKey = &sv
		}
		if e.SigningKeyFile != "" {
			sv := secretFrom("", e.SigningKeyFile, "INTERNAL_SIGNING_KEY_PATH", "INTERNAL_SIGNING_KEY_PATH", read)
			rt.SigningKey = &sv
		}
		cfg.RegistryToken = rt
	}
	if e.OIDC != nil {
		o := *e.OIDC
		cfg.OIDC = &o
	}
	return cfg
}

// secretFile is a secret file the configuration reads, and the variable
// (or REGISTRY_API_KEYS entry) that names it: messages name the variable,
// not the path.
type secretFile struct {
	path, variable string
}

// files returns the secret files the configuration reads.
func (e *Env) files() []secretFile {
	var fs []secretFile
	for _, f := range []secretFile{
		{e.StaticTokenFile, "REGISTRY_API_TOKEN_FILE"}, {e.SecretKeyFile, "SECRET_KEY_FILE"},
		{e.FederationTokenFile, "FEDERATION_STATIC_TOKEN_FILE"}, {e.SigningKeyFile, "INTERNAL_SIGNING_KEY_PATH"},
	} {
		if f.path != "" {
			fs = append(fs, f)
		}
	}
	for _, k := range e.APIKeys {
		if k.KeyFile != "" {
			fs = append(fs, secretFile{k.KeyFile, apiKeyVar(k.Name) + ".key_file"})
		}
	}
	return fs
}

// registryPrefixes are the Registry API prefixes the configuration ends up
// with (Compile's defaults under REGISTRY_ROOT_PATH when none are set).
func (e *Env) registryPrefixes() []string {
	if len(e.PathPrefixes) > 0 {
		return e.PathPrefixes
	}
	var out []string
	for _, p := range policy.DefaultRegistryPathPrefixes {
		out = append(out, e.RootPath+p)
	}
	return out
}

// apiKeyVar names an entry of REGISTRY_API_KEYS in a message.
func apiKeyVar(name string) string {
	if nameOK(name) {
		return "REGISTRY_API_KEYS[" + name + "]"
	}
	return "REGISTRY_API_KEYS[" + echoName(name) + "]"
}

// issuerURL reports whether v is an http(s) URL with a host and nothing a
// secret could hide in: no user information, query or fragment.
func issuerURL(v string) bool {
	u, err := url.Parse(v)
	return err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" &&
		u.User == nil && u.RawQuery == "" && !u.ForceQuery && u.Fragment == "" && !strings.Contains(v, "#") &&
		!strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f })
}

// envField names, in a problem about the environment, the variable that
// holds the offending value instead of the policy field.
func envField(field string) string {
	switch {
	case strings.HasPrefix(field, "spec.staticToken.pathPrefixes"):
		return "REGISTRY_API_PATH_PREFIXES"
	case strings.HasPrefix(field, "spec.staticToken"):
		return "REGISTRY_API_TOKEN"
	case strings.HasPrefix(field, "spec.delegate"):
		return "DELEGATE_URL"
	case strings.HasPrefix(field, "spec.federationToken"):
		return "FEDERATION_STATIC_TOKEN"
	case strings.HasPrefix(field, "spec.agentPathPrefixes"):
		return "REGISTRY_ROOT_PATH"
	case strings.HasPrefix(field, "spec.apiKeys["):
		// spec.apiKeys[<name or index>]: the name only if it may be
		// repeated (see echoName).
		rest := strings.TrimPrefix(field, "spec.apiKeys[")
		if i := strings.LastIndexByte(rest, ']'); i >= 0 {
			return apiKeyVar(rest[:i]) + rest[i+1:]
		}
		return "REGISTRY_API_KEYS"
	case strings.HasPrefix(field, "spec.apiKeys"):
		return "REGISTRY_API_KEYS"
	case strings.HasPrefix(field, "spec.session"), field == hoptoken.FieldSecretKey:
		return "SECRET_KEY"
	case field == hoptoken.FieldSigningKey, field == hoptoken.FieldPrevious:
		return "INTERNAL_SIGNING_KEY_PATH"
	case field == hoptoken.FieldMode:
		return "REGISTRY_TOKEN_MODE"
	case strings.HasPrefix(field, "spec.oidc"):
		return "OIDC_ISSUER_URL"
	}
	return field
}

// secretFrom is the secret value, or the contents of file; fileVar names the
// variable that holds the file's path. readSecretFile's errors name no path.
func secretFrom(value, file, field, fileVar string, read readFunc) authn.SecretValue {
	if file == "" {
		return authn.SecretValue{Value: []byte(value)}
	}
	b, err := read(file)
	if err != nil {
		reason := authn.ProblemSecretNotFound
		return authn.SecretValue{Problem: &authn.Problem{Reason: reason, Field: field, Message: fmt.Sprintf("cannot read the file %s names %s: %v", fileVar, echoValue(file), err)}}
	}
	return authn.SecretValue{Value: b}
}

// echoValue describes a value of the environment for a message without
// repeating it: the value may be a secret put in the wrong variable (a
// token in a *_FILE variable, an API key in a boolean), and a message
// goes to logs, /readyz and whoever reads them. The variable's name and
// the value's length and fingerprint (the first 12 hex digits of its
// SHA-256, as everywhere in this project) say which value it was:
// compare with `printf %s "$VAR" | sha256sum | cut -c1-12`.
func echoValue(v string) string {
	return fmt.Sprintf("(a %d-character value, fingerprint %s)", len(v), secret.Fingerprint([]byte(v)))
}

// echoName quotes a name chosen by whoever wrote the configuration (an API
// key's name, a JSON field name) when it looks like a name: letters,
// digits, '_', '-' and '.', shorter than secret.MinLength, so that it
// cannot be a token or API key this service would accept. Anything else is
// described as echoValue does: a JSON key that is really a secret is not
// repeated.
func echoName(n string) string {
	if n == "" || nameOK(n) {
		return strconv.Quote(n)
	}
	return fmt.Sprintf("(a %d-character name, fingerprint %s)", len(n), secret.Fingerprint([]byte(n)))
}

// nameOK reports whether echoName repeats n.
func nameOK(n string) bool {
	return n != "" && len(n) < secret.MinLength && !strings.ContainsFunc(n, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' && r != '-' && r != '.'
	})
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
