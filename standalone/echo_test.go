/*
Copyright 2026 The registry-auth-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package standalone

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// echoCase puts secret s somewhere in the environment. A nil env entry
// means "the variable's own value is s".
type echoCase struct {
	name string
	env  func(s string) map[string]string
}

// own is the case "the variable holds the secret", with companions set so
// that the variable is read.
func own(variable string, companions map[string]string) echoCase {
	return echoCase{name: "value", env: func(s string) map[string]string {
		m := maps.Clone(companions)
		if m == nil {
			m = map[string]string{}
		}
		m[variable] = s
		return m
	}}
}

// oidcOn makes the OIDC variables read; discovery fails at once (nothing
// listens on port 1).
var oidcOn = map[string]string{"OIDC_ISSUER_URL": "http://127.0.0.1:1/realms/mcp", "OIDC_CLIENT_ID": "mcp"}

// mcpOn makes the MCP challenge variables read.
var mcpOn = map[string]string{"MCP_RESOURCE_METADATA_URL": "https://registry.example/.well-known/oauth-protected-resource"}

// echoRows has a row for every variable standalone mode reads; the test
// fails when ParseEnv reads one that has no row. Each row puts a
// secret-looking value where that variable's value goes (and, for the JSON
// variables, where each of its names and values go).
func echoRows(key string) map[string][]echoCase {
	delegate := map[string]string{"DELEGATE_URL": "http://127.0.0.1:1/validate"}
	staticOn := map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true"}
	fedOn := map[string]string{"FEDERATION_STATIC_TOKEN_AUTH_ENABLED": "true"}
	keys := func(f func(s string) string) func(s string) map[string]string {
		return func(s string) map[string]string { return map[string]string{"REGISTRY_API_KEYS": f(s)} }
	}
	return map[string][]echoCase{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": {own("REGISTRY_STATIC_TOKEN_AUTH_ENABLED", nil)},
		"REGISTRY_API_TOKEN":                 {own("REGISTRY_API_TOKEN", staticOn)},
		"REGISTRY_API_TOKEN_FILE":            {own("REGISTRY_API_TOKEN_FILE", staticOn)},
		"REGISTRY_ROOT_PATH":                 {own("REGISTRY_ROOT_PATH", nil), {name: "under /", env: func(s string) map[string]string { return map[string]string{"REGISTRY_ROOT_PATH": "/" + s} }}},
		"ROOT_PATH":                          {own("ROOT_PATH", nil)},
		"REGISTRY_API_PATH_PREFIXES":         {own("REGISTRY_API_PATH_PREFIXES", staticOn), {name: "second entry", env: func(s string) map[string]string { return map[string]string{"REGISTRY_API_PATH_PREFIXES": "/api/," + s} }}},
		"REGISTRY_API_KEYS": {
			own("REGISTRY_API_KEYS", nil),
			{name: "the key", env: keys(func(s string) string { return `[{"name":"ci","key":"` + s + `"}]` })},
			{name: "upstream key", env: func(s string) map[string]string {
				return map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_KEYS": `{"ci":{"key":"` + s + `","groups":["g"]}}`}
			}},
			{name: "entry name (upstream form)", env: keys(func(s string) string { return `{"` + s + `":{"key":"` + key + `"}}` })},
			{name: "entry name that is no entry", env: keys(func(s string) string { return `{"` + s + `":"ci"}` })},
			{name: "name (list form)", env: keys(func(s string) string { return `[{"name":"` + s + `","key_file":"/nonexistent/ci"}]` })},
			{name: "name twice", env: keys(func(s string) string {
				return `[{"name":"` + s + `","key_file":"/nonexistent/a"},{"name":"` + s + `","key_file":"/nonexistent/b"}]`
			})},
			{name: "field name", env: keys(func(s string) string { return `[{"name":"ci","key":"` + key + `","` + s + `":1}]` })},
			{name: "field name (upstream form)", env: keys(func(s string) string { return `{"ci":{"key":"` + key + `","groups":["g"],"` + s + `":1}}` })},
			{name: "field name twice", env: keys(func(s string) string {
				return `[{"name":"ci","key":"` + key + `","` + s + `":1,"` + strings.ToUpper(s) + `":2}]`
			})},
			{name: "wrong type under a secret name", env: keys(func(s string) string { return `{"ci":{"key":"` + key + `","groups":{"` + s + `":1}}}` })},
			{name: "string where a list goes", env: keys(func(s string) string { return `[{"name":"ci","key":"` + key + `","groups":"` + s + `"}]` })},
			{name: "key_file", env: keys(func(s string) string { return `[{"name":"ci","key_file":"` + s + `"}]` })},
			{name: "path prefix", env: keys(func(s string) string { return `[{"name":"ci","key":"` + key + `","path_prefixes":["` + s + `"]}]` })},
			{name: "path prefix outside the Registry API", env: keys(func(s string) string {
				return `[{"name":"ci","key":"` + key + `","path_prefixes":["/` + strings.NewReplacer("+", "", "=", "").Replace(s) + `/"]}]`
			})},
			{name: "method", env: keys(func(s string) string { return `[{"name":"ci","key":"` + key + `","methods":["` + s + `"]}]` })},
			{name: "trailing data", env: keys(func(s string) string { return `[{"name":"ci","key":"` + key + `"}]` + s })},
		},
		"FEDERATION_STATIC_TOKEN_AUTH_ENABLED": {own("FEDERATION_STATIC_TOKEN_AUTH_ENABLED", nil)},
		"FEDERATION_STATIC_TOKEN":              {own("FEDERATION_STATIC_TOKEN", fedOn)},
		"FEDERATION_STATIC_TOKEN_FILE":         {own("FEDERATION_STATIC_TOKEN_FILE", fedOn)},
		"OIDC_ISSUER_URL": {
			own("OIDC_ISSUER_URL", map[string]string{"OIDC_CLIENT_ID": "mcp"}),
			{name: "in the query", env: func(s string) map[string]string {
				return map[string]string{"OIDC_ISSUER_URL": "https://idp.example/realms/mcp?key=" + s, "OIDC_CLIENT_ID": "mcp"}
			}},
			{name: "as user information", env: func(s string) map[string]string {
				return map[string]string{"OIDC_ISSUER_URL": "https://u:" + strings.NewReplacer("/", "", "+", "").Replace(s) + "@idp.example/", "OIDC_CLIENT_ID": "mcp"}
			}},
			{name: "in the fragment", env: func(s string) map[string]string {
				return map[string]string{"OIDC_ISSUER_URL": "https://idp.example/#" + s, "OIDC_CLIENT_ID": "mcp"}
			}},
		},
		"OIDC_CLIENT_ID":                   {own("OIDC_CLIENT_ID", map[string]string{"OIDC_ISSUER_URL": oidcOn["OIDC_ISSUER_URL"]})},
		"OIDC_USERNAME_CLAIM":              {own("OIDC_USERNAME_CLAIM", oidcOn)},
		"OIDC_GROUPS_CLAIM":                {own("OIDC_GROUPS_CLAIM", oidcOn)},
		"OIDC_PRESET":                      {own("OIDC_PRESET", oidcOn)},
		"SECRET_KEY":                       {own("SECRET_KEY", nil)},
		"SECRET_KEY_FILE":                  {own("SECRET_KEY_FILE", nil)},
		"SESSION_COOKIE_NAME":              {own("SESSION_COOKIE_NAME", map[string]string{"SECRET_KEY": key})},
		"SESSION_MAX_AGE":                  {own("SESSION_MAX_AGE", map[string]string{"SECRET_KEY": key})},
		"SECRET_KEY_ROTATION_GRACE_PERIOD": {own("SECRET_KEY_ROTATION_GRACE_PERIOD", map[string]string{"SECRET_KEY_FILE": "/run/secrets/sk"})},
		"GROUP_SCOPES": {
			own("GROUP_SCOPES", nil),
			{name: "group", env: func(s string) map[string]string { return map[string]string{"GROUP_SCOPES": `{"` + s + `":"read"}`} }},
			{name: "group twice", env: func(s string) map[string]string {
				return map[string]string{"GROUP_SCOPES": `{"` + s + `":["a"],"` + strings.ToUpper(s) + `":["b"]}`}
			}},
			{name: "scope of the wrong type", env: func(s string) map[string]string { return map[string]string{"GROUP_SCOPES": `{"g":{"` + s + `":1}}`} }},
		},
		"DELEGATE_URL": {
			own("DELEGATE_URL", nil),
			{name: "in the query", env: func(s string) map[string]string {
				return map[string]string{"DELEGATE_URL": "http://auth:8888/validate?key=" + s}
			}},
		},
		"DELEGATE_TIMEOUT":                     {own("DELEGATE_TIMEOUT", delegate)},
		"DELEGATE_GATEWAY_PATHS":               {own("DELEGATE_GATEWAY_PATHS", delegate)},
		"DELEGATE_MAX_CONCURRENT":              {own("DELEGATE_MAX_CONCURRENT", delegate)},
		"INTERNAL_TOKEN_TTL_SECONDS":           {own("INTERNAL_TOKEN_TTL_SECONDS", nil)},
		"INTERNAL_SIGNING_KEY_PATH":            {own("INTERNAL_SIGNING_KEY_PATH", nil)},
		"INTERNAL_SIGNING_KEY_OVERLAP_SECONDS": {own("INTERNAL_SIGNING_KEY_OVERLAP_SECONDS", nil)},
		"REGISTRY_TOKEN_MODE":                  {own("REGISTRY_TOKEN_MODE", map[string]string{"SECRET_KEY": key})},
		"PUBLIC_PATHS":                         {own("PUBLIC_PATHS", nil), {name: "second entry", env: func(s string) map[string]string { return map[string]string{"PUBLIC_PATHS": "/health," + s} }}},
		"MCP_RESOURCE_METADATA_URL": {
			own("MCP_RESOURCE_METADATA_URL", nil),
			{name: "in the query", env: func(s string) map[string]string {
				return map[string]string{"MCP_RESOURCE_METADATA_URL": "https://registry.example/.well-known/oauth-protected-resource?k=" + s}
			}},
		},
		"MCP_SCOPES":                   {own("MCP_SCOPES", mcpOn)},
		"MCP_CHALLENGE_REGISTRY_PATHS": {own("MCP_CHALLENGE_REGISTRY_PATHS", mcpOn)},
	}
}

// echoSecrets are secret-looking values: 64 hex digits (openssl rand -hex
// 32), base64 with '/', '+' and '=' (openssl rand -base64 33 may look like
// it), a digits-only one (a numeric variable parses part of it), and one
// that is a valid upstream API key name.
func echoSecrets(t *testing.T) []string {
	b := make([]byte, 33)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b64 := "/" + base64.StdEncoding.EncodeToString(b) + "+Q=="
	digits := "1"
	for _, x := range b[:14] {
		digits += fmt.Sprintf("%03d", x)
	}
	return []string{standaloneTestToken(t), b64, digits, "monitoring-" + standaloneTestToken(t)[:40]}
}

// Whatever variable a secret is put in, by mistake or on purpose, it is not
// repeated in ParseEnv's error, Start's error, the log or /readyz's answer
// (issue 21, item 10). Messages name the variable and give the value's
// length and fingerprint instead.
func TestStandaloneEnvValuesNotEchoed(t *testing.T) {
	key := standaloneTestToken(t)
	rows := echoRows(key)
	var mu sync.Mutex
	read := map[string]bool{}
	for _, variable := range slices.Sorted(maps.Keys(rows)) {
		for _, c := range rows[variable] {
			for i, s := range echoSecrets(t) {
				t.Run(fmt.Sprintf("%s/%s/secret%d", variable, c.name, i), func(t *testing.T) {
					g := NewWithT(t)
					env := c.env(s)
					e, perr := ParseEnv(func(k string) string {
						mu.Lock()
						read[k] = true
						mu.Unlock()
						return env[k]
					})
					var out []string
					if perr != nil {
						out = append(out, perr.Error())
						g.Expect(perr.Error()).To(ContainSubstring(strings.SplitN(variable, "_FILE", 2)[0]), "the error names the variable")
					} else {
						logs := &standaloneLogs{}
						sa := NewLoader(e, policy.NewStore(policy.StoreOptions{SelectOnlyPolicy: true}), jwt.NewIssuers(nil), logs.logger(), policy.CompileOptions{})
						if err := sa.Start(context.Background()); err != nil {
							out = append(out, err.Error())
						}
						if err := sa.Ready(); err != nil {
							out = append(out, err.Error())
						}
						out = append(out, logs.all()...)
					}
					for _, o := range out {
						g.Expect(strings.Contains(o, s)).To(BeFalse(), "the output repeats the secret: %d characters of output", len(o))
						// Nor a good part of it (a value cut at a '/', a prefix).
						g.Expect(strings.Contains(o, s[:24])).To(BeFalse(), "the output repeats the secret's first 24 characters")
					}
					if perr != nil && strings.Contains(perr.Error(), "(a ") {
						g.Expect(perr.Error()).To(Or(ContainSubstring(secret.Fingerprint([]byte(s))), ContainSubstring("fingerprint")),
							"a value described is described by its fingerprint")
					}
				})
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(read)) {
		if _, ok := rows[k]; !ok {
			t.Errorf("ParseEnv reads %s, which has no row in echoRows: add one", k)
		}
	}
	for k := range rows {
		if !read[k] {
			t.Errorf("echoRows has a row for %s, which ParseEnv never read", k)
		}
	}
}

// FuzzEnvJSONNoEcho fuzzes the JSON variables (REGISTRY_API_KEYS in both
// forms, GROUP_SCOPES) with a secret planted wherever the input has '§':
// as a name, a field name, a value, a key, part of one. ParseEnv and the
// first load never panic, and neither ParseEnv's error nor Start's, nor
// any log line, contains the secret.
func FuzzEnvJSONNoEcho(f *testing.F) {
	for _, s := range []string{
		`[{"name":"§","key_file":"/x"}]`, `[{"name":"ci","key":"§"}]`, `[{"name":"ci","key":"k","§":1}]`,
		`[{"name":"ci","key":"k","path_prefixes":["§"],"methods":["§"]}]`, `[{"name":"ci","key":"k","groups":"§"}]`,
		`{"§":{"key":"k","groups":["g"]}}`, `{"ci":{"key":"§","groups":["g"]}}`, `{"§":"x"}`, `{"ci":{"key_file":"§","groups":["§"]}}`,
		`{"g":["§"]}`, `{"§":[1]}`, `{"§":["a"],"§x":["b"]}`, `[{"name":"ci","key":"k"}]§`, `§`, `{"a":{"§":1}}`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	const planted = "7f3a9c1e5b2d8f4a6c0e9b7d5f3a1c8e2b4d6f0a"
	f.Fuzz(func(t *testing.T, v string, groupScopes bool) {
		if !strings.Contains(v, "§") {
			return
		}
		variable := "REGISTRY_API_KEYS"
		if groupScopes {
			variable = "GROUP_SCOPES"
		}
		env := map[string]string{variable: strings.ReplaceAll(v, "§", planted), "REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true"}
		e, err := ParseEnv(func(k string) string { return env[k] })
		var out []string
		if err != nil {
			out = append(out, err.Error())
		} else {
			logs := &standaloneLogs{}
			sa := NewLoader(e, policy.NewStore(policy.StoreOptions{SelectOnlyPolicy: true}), jwt.NewIssuers(nil), logs.logger(), policy.CompileOptions{})
			sa.readFile = func(string) ([]byte, error) { return nil, errors.New("no such file or directory") }
			if err := sa.Start(context.Background()); err != nil {
				out = append(out, err.Error())
			}
			for _, l := range logs.all() {
				// A name accepted as an API key's name is the key's
				// identity (X-Client-Id) and is logged with its
				// fingerprint by design; only errors must not name it.
				if strings.Contains(l, `"error"`) {
					out = append(out, l)
				}
			}
		}
		for _, o := range out {
			if strings.Contains(o, planted) || strings.Contains(o, planted[:24]) {
				t.Fatalf("%s=%q: the output repeats the planted secret: %q", variable, v, o)
			}
		}
	})
}
