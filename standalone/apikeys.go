package standalone

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/pathnorm"
)

// REGISTRY_API_KEYS takes two forms.
//
// The upstream auth server's (a JSON object, name → entry), so an upstream
// .env works unchanged:
//
//	{"monitoring": {"key": "…", "groups": ["mcp-readonly"]},
//	 "deploy":     {"key": "…", "groups": ["mcp-registry-admin"]}}
//
// with upstream's rules: a name matches ^[a-z0-9][a-z0-9_-]{0,63}$ and is not
// legacy, network-user or network-trusted; an entry has a key (at least 32
// characters, not a placeholder: the compile step's strength rules) and at
// least one group; no two entries share a key. As upstream, these keys count
// only while REGISTRY_STATIC_TOKEN_AUTH_ENABLED is true. This project adds
// key_file, methods, path_prefixes and expires_at (RFC 3339, e.g.
// "2026-12-31T00:00:00Z": refused from then on, credential_expired) to the
// entries, and description is
// accepted and ignored; any other field is an error (upstream ignores
// unknown fields: a "read_only" meant to limit a key would silently not).
//
// This project's own (a JSON list), which counts whatever the flag says:
//
//	[{"name": "ci-read", "key_file": "/run/secrets/ci-read", "groups": ["registry-readers"],
//	  "path_prefixes": ["/api/servers"], "methods": ["GET", "HEAD"]}]
//
// In both, exactly one of key and key_file is set (files are re-read when
// they change), and a field named twice, in any spelling of its case, is an
// error: Go's JSON decoder would otherwise take the last one, and a
// "Methods":[] after "methods":["GET"] would widen a key.

// APIKeyEnv is one entry of REGISTRY_API_KEYS.
type APIKeyEnv struct {
	Name         string   `json:"name"`
	Key          string   `json:"key,omitempty"`
	KeyFile      string   `json:"key_file,omitempty"`
	Groups       []string `json:"groups,omitempty"`
	PathPrefixes []string `json:"path_prefixes,omitempty"`
	Methods      []string `json:"methods,omitempty"`
	// ExpiresAt (RFC 3339) is when the key stops being accepted
	// (credential_expired); nil: never.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// APIKeysForm tells the two forms of REGISTRY_API_KEYS apart.
type APIKeysForm int

const (
	// APIKeysList is this project's list form.
	APIKeysList APIKeysForm = iota
	// APIKeysUpstream is the upstream auth server's object form.
	APIKeysUpstream
)

// upstreamKeyEntry is an entry of the object form.
type upstreamKeyEntry struct {
	Key          string     `json:"key,omitempty"`
	KeyFile      string     `json:"key_file,omitempty"`
	Groups       []string   `json:"groups"`
	PathPrefixes []string   `json:"path_prefixes,omitempty"`
	Methods      []string   `json:"methods,omitempty"`
	ExpiresAt    *time.Time `json:"expires_at,omitempty"`
	Description  string     `json:"description,omitempty"`
}

// upstreamKeyName is upstream's rule for key names.
var upstreamKeyName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// reservedKeyNames are names upstream keeps for the static token.
var reservedKeyNames = []string{"legacy", "network-user", "network-trusted"}

// ParseAPIKeysEnv parses REGISTRY_API_KEYS in either form. Error messages
// name entries and fields, never a key.
func ParseAPIKeysEnv(v string) ([]APIKeyEnv, APIKeysForm, error) {
	if err := checkJSONFields(v); err != nil {
		return nil, APIKeysList, err
	}
	if t := strings.TrimSpace(v); strings.HasPrefix(t, "{") {
		keys, err := parseUpstreamAPIKeys(t)
		return keys, APIKeysUpstream, err
	}
	keys, err := parseListAPIKeys(v)
	return keys, APIKeysList, err
}

func parseListAPIKeys(v string) ([]APIKeyEnv, error) {
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	var keys []APIKeyEnv
	if err := dec.Decode(&keys); err != nil {
		return nil, fmt.Errorf("want a JSON list of {name, key|key_file, groups, path_prefixes, methods}, or the upstream auth server's object of name to {key, groups}: %w", jsonError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON list")
	}
	seen := map[string]bool{}
	for i, k := range keys {
		switch {
		case k.Name == "":
			return nil, fmt.Errorf("entry %d has no name", i)
		case !check.HeaderSafe(k.Name) || strings.ContainsAny(k.Name, " ,"):
			return nil, fmt.Errorf("entry %d: the name %s has spaces, commas or control characters", i, echoName(k.Name))
		case seen[k.Name]:
			return nil, fmt.Errorf("entry %d: the name %s is used twice; names must be unique", i, echoName(k.Name))
		case (k.Key == "") == (k.KeyFile == ""):
			return nil, fmt.Errorf("entry %s: set exactly one of key and key_file", echoName(k.Name))
		}
		seen[k.Name] = true
	}
	return keys, nil
}

func parseUpstreamAPIKeys(v string) ([]APIKeyEnv, error) {
	dec := json.NewDecoder(strings.NewReader(v))
	// The names, in the order written (a map would lose it).
	var names []string
	raw := map[string]json.RawMessage{}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("want a JSON object of name to {key, groups}: %w", jsonError(err))
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("want a JSON object of name to {key, groups}: %w", jsonError(err))
		}
		name, _ := t.(string)
		var entry json.RawMessage
		if err := dec.Decode(&entry); err != nil {
			return nil, fmt.Errorf("entry %s: %w", echoName(name), jsonError(err))
		}
		names = append(names, name)
		raw[name] = entry
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("want a JSON object of name to {key, groups}: %w", jsonError(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON object")
	}
	keys := make([]APIKeyEnv, 0, len(names))
	seenKeys := map[string]string{}
	for _, name := range names {
		switch {
		case !upstreamKeyName.MatchString(name):
			return nil, fmt.Errorf("entry %s: a name must match ^[a-z0-9][a-z0-9_-]{0,63}$", echoName(name))
		case slices.Contains(reservedKeyNames, name):
			return nil, fmt.Errorf("entry %s: the name is reserved (legacy, network-user and network-trusted are the static token's)", echoName(name))
		}
		var e upstreamKeyEntry
		edec := json.NewDecoder(bytes.NewReader(raw[name]))
		edec.DisallowUnknownFields()
		if err := edec.Decode(&e); err != nil {
			return nil, fmt.Errorf("entry %s: want {key|key_file, groups, path_prefixes, methods, description}: %w", echoName(name), jsonError(err))
		}
		if (e.Key == "") == (e.KeyFile == "") {
			return nil, fmt.Errorf("entry %s: set exactly one of key and key_file", echoName(name))
		}
		if len(e.Groups) == 0 {
			return nil, fmt.Errorf("entry %s: at least one group is required", echoName(name))
		}
		if e.Key != "" {
			k := strings.TrimSpace(e.Key)
			if other, dup := seenKeys[k]; dup {
				return nil, fmt.Errorf("entries %s and %s have the same key; each key must be different", echoName(other), echoName(name))
			}
			seenKeys[k] = name
		}
		keys = append(keys, APIKeyEnv{Name: name, Key: e.Key, KeyFile: e.KeyFile, Groups: e.Groups, PathPrefixes: e.PathPrefixes, Methods: e.Methods, ExpiresAt: e.ExpiresAt})
	}
	return keys, nil
}

// checkAPIKeyLimits checks the entries' path_prefixes and methods as
// Compile would, with messages that do not repeat the values: a prefix
// under the Registry API prefixes (registry), methods from a fixed list.
func checkAPIKeyLimits(keys []APIKeyEnv, registry []string) error {
	for _, k := range keys {
		for i, pre := range k.PathPrefixes {
			if pathnorm.CheckPrefix(pre) != nil {
				return fmt.Errorf("entry %s: path_prefixes[%d] %s: want an absolute, normalised path (no '..', '//', '%%' escapes or query)", echoName(k.Name), i, echoValue(pre))
			}
			if !pathnorm.HasPrefix(pre, registry) && !slices.Contains(registry, pre) {
				return fmt.Errorf("entry %s: path_prefixes[%d] %s is not under the Registry API prefixes (REGISTRY_API_PATH_PREFIXES): API keys count on Registry API paths only", echoName(k.Name), i, echoValue(pre))
			}
		}
		for i, m := range k.Methods {
			switch strings.ToUpper(m) {
			case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
			default:
				return fmt.Errorf("entry %s: methods[%d] %s is not one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS", echoName(k.Name), i, echoValue(m))
			}
		}
	}
	return nil
}

// checkJSONFields walks a JSON text and refuses an object that names a
// field twice, compared as Go's decoder matches fields (case-insensitively).
// Malformed JSON is left to the decoder that follows.
func checkJSONFields(v string) error {
	dec := json.NewDecoder(strings.NewReader(v))
	type frame struct {
		object bool
		keys   map[string]string
		key    bool // the next string token is a key
	}
	var stack []*frame
	for {
		t, err := dec.Token()
		if err != nil {
			return nil
		}
		top := (*frame)(nil)
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.object && top.key {
			if d, ok := t.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].object {
					stack[len(stack)-1].key = true
				}
				continue
			}
			name, _ := t.(string)
			fold := strings.ToLower(name)
			if first, dup := top.keys[fold]; dup {
				if first == name {
					return fmt.Errorf("the field %s is named twice in one object", echoName(name))
				}
				return fmt.Errorf("the fields %s and %s differ only in case; Go's decoder would take the last", echoName(first), echoName(name))
			}
			top.keys[fold] = name
			top.key = false
			continue
		}
		switch d := t.(type) {
		case json.Delim:
			switch d {
			case '{':
				stack = append(stack, &frame{object: true, keys: map[string]string{}, key: true})
			case '[':
				stack = append(stack, &frame{})
			case '}', ']':
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1].object {
					stack[len(stack)-1].key = true
				}
			}
		default:
			if top != nil && top.object {
				top.key = true
			}
		}
	}
}

// jsonError is a JSON error without the input's text: the decoder's
// errors quote values ("cannot unmarshal string \"…\"") and field names
// (`unknown field "…"`, the path of a type error through an object's keys),
// any of which may be a secret written in the wrong place. Names are
// repeated only as echoName allows.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		var path []string
		for _, f := range strings.Split(te.Field, ".") {
			path = append(path, echoName(f))
		}
		return fmt.Errorf("field %s has the wrong type (want %s, got %s)", strings.Join(path, "."), te.Type, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("malformed JSON at byte %d", se.Offset)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errors.New("the JSON ends early")
	}
	// DisallowUnknownFields: `json: unknown field "name"`.
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if name, uerr := strconv.Unquote(f); uerr == nil {
			return fmt.Errorf("unknown field %s", echoName(name))
		}
		return errors.New("unknown field")
	}
	return errors.New("malformed JSON")
}
