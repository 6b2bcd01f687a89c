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

package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/test/utils"
)

// TestLeakOperator runs the operator at the most verbose log level zap
// accepts against a real control plane, with a policy using a static token,
// an API key, a session SECRET_KEY and an OIDC issuer, with rotation grace
// periods. It rotates the token and the key twice each with kubectl, sets a
// weak token once (a Warning event and a False condition that describe it),
// and sends good and bad requests along the way. Then it scans everything
// the operator produced or answered for every credential used, current and
// old, in plain text and std and URL-safe base64: the binary's log lines,
// the namespace's Events (core and events.k8s.io), the policy's status, the
// rotation state Secret (digests only), /metrics, and every HTTP response.
func TestLeakOperator(t *testing.T) {
	t.Parallel()
	secrets := &secretSet{}
	tokens := []string{newToken(t), newToken(t), newToken(t)}
	keys := []string{newToken(t), newToken(t), newToken(t)}
	sessionKey := newSecretKey(t)
	weak := newToken(t)[:24] // under the 32-character minimum
	secrets.add(tokens...)
	secrets.add(keys...)
	secrets.add(sessionKey, weak)

	_, kubeconfig := utils.StartControlPlane(t)
	dir := t.TempDir()
	k := &kubectl{t: t, path: utils.KubectlPath(), kubeconfig: kubeconfig, secrets: secrets}
	issuer := authtest.NewIssuer(t)

	const (
		ns        = "leak-e2e"
		policy    = "registry"
		tokenSec  = "registry-api-token"
		keySec    = "registry-ci-key"
		sessSec   = "registry-session"
		keyName   = "ci"
		grace     = "30s"
		stateName = policy + "-rap-state"
	)
	k.run(nil, "create", "namespace", ns)
	k.run(nil, "-n", ns, "create", "secret", "generic", tokenSec, "--from-literal=token="+tokens[0])
	k.run(nil, "-n", ns, "label", "secret", tokenSec, "registryauth.io/credential=true")
	k.run(nil, "-n", ns, "create", "secret", "generic", keySec, "--from-literal=api-key="+keys[0])
	k.run(nil, "-n", ns, "label", "secret", keySec, "registryauth.io/credential=true")
	k.run(nil, "-n", ns, "create", "secret", "generic", sessSec, "--from-literal=secret-key="+sessionKey)
	k.run(nil, "-n", ns, "label", "secret", sessSec, "registryauth.io/credential=true")
	manifest := fmt.Sprintf(`apiVersion: auth.registryauth.io/v1alpha1
kind: RegistryAuthPolicy
metadata:
  name: %s
  namespace: %s
spec:
  hosts: [%s]
  staticToken:
    enabled: true
    secretRef: {name: %s}
    rotationGracePeriod: %s
  apiKeys:
  - name: %s
    secretRef: {name: %s, key: api-key}
    groups: [registry-readers]
    methods: [GET, HEAD]
    rotationGracePeriod: %s
  session:
    secretKeyRef: {name: %s, key: secret-key}
  oidc:
    issuerURL: %s
    audiences: [registry]
`, policy, ns, registryHost, tokenSec, grace, keyName, keySec, grace, sessSec, issuer.URL())
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	k.run(nil, "apply", "-f", policyFile)

	p := startBinary(t, []string{
		"--kubeconfig", kubeconfig,
		"--leader-elect", "--leader-election-namespace", ns, "--host-grants=*=*", "--allow-insecure-loopback",
		// The most verbose: zap's lowest level is int8(-127), logr V(127).
		"--zap-devel", "--zap-log-level=127", "--zap-stacktrace-level=info",
		"--shutdown-grace-period=2s",
	}, nil, secrets, 60*time.Second)

	get := func(jsonpath string) string {
		out, err := k.try(nil, "-n", ns, "get", "rap", policy, "-o", "jsonpath="+jsonpath)
		if err != nil {
			return ""
		}
		return strings.TrimSpace(out)
	}
	waitStatus := func(what, jsonpath, want string) {
		t.Helper()
		eventually(t, 30*time.Second, 50*time.Millisecond, what, func() error {
			if got := get(jsonpath); got != want {
				return fmt.Errorf("%s is %q, want %q", jsonpath, got, want)
			}
			return nil
		})
	}
	const tokenFP = "{.status.staticToken.fingerprint}"
	keyFP := `{.status.apiKeys[?(@.name=="` + keyName + `")].fingerprint}`
	waitStatus("initial static token in status", tokenFP, fingerprint(tokens[0]))
	waitStatus("initial API key in status", keyFP, fingerprint(keys[0]))

	// The requests: straight to /validate, as the ingress would send them.
	var responses strings.Builder
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}
	send := func(what, path string, h map[string]string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, p.AuthURL(), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Original-URL", "http://"+registryHost+path)
		req.Header.Set("X-Original-Method", http.MethodGet)
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		dump, err := httputil.DumpResponse(resp, true)
		_ = resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		responses.Write(dump)
		responses.WriteString("\n")
		return resp.StatusCode
	}
	cookie := func(key string) string {
		c := authtest.SessionCookie([]byte(key), map[string]any{"username": "alice", "groups": []string{"registry-readers"}}, time.Now())
		secrets.add(c)
		return authtest.SessionCookieName + "=" + c
	}
	jwt := issuer.Sign(issuer.Claims("registry", "bob", []string{"registry-readers"}, 10*time.Minute))
	secrets.add(jwt)
	wrong := newToken(t) // a mistyped credential must not be logged either
	secrets.add(wrong)
	aliceCookie := cookie(sessionKey)
	forged := cookie(newSecretKey(t))

	// round sends the request set; cur is the index of the token and key
	// in force.
	round := func(cur int) {
		t.Helper()
		expect := func(what string, got int, want ...int) {
			t.Helper()
			for _, w := range want {
				if got == w {
					return
				}
			}
			t.Errorf("round %d, %s: status %d, want one of %v", cur, what, got, want)
		}
		b := func(v string) map[string]string { return map[string]string{"Authorization": "Bearer " + v} }
		expect("current static token", send("static", "/api/servers", b(tokens[cur])), 200)
		expect("current API key", send("key", "/api/servers", b(keys[cur])), 200)
		for old := 0; old < cur; old++ {
			// Inside the grace period; whether older ones still count is
			// not this test's business.
			expect("old static token", send("old static", "/api/servers", b(tokens[old])), 200, 401)
			expect("old API key", send("old key", "/api/servers", b(keys[old])), 200, 401)
		}
		expect("wrong token", send("wrong", "/api/servers", b(wrong)), 401)
		expect("static token on a gateway path", send("gateway", "/mcpserver/mcp", b(tokens[cur])), 401)
		expect("static token in X-Authorization", send("x-authz", "/api/servers", map[string]string{"X-Authorization": "Bearer " + tokens[cur]}), 200)
		expect("session cookie", send("session", "/mcpserver/mcp", map[string]string{"Cookie": aliceCookie}), 200)
		expect("forged session cookie", send("forged", "/mcpserver/mcp", map[string]string{"Cookie": forged}), 401)
		expect("garbage session cookie", send("garbage", "/mcpserver/mcp", map[string]string{"Cookie": authtest.SessionCookieName + "=" + wrong}), 401)
		expect("session cookie and static token", send("cookie+token", "/api/servers", map[string]string{"Cookie": forged, "Authorization": "Bearer " + tokens[cur]}), 401)
		expect("JWT", send("jwt", "/mcpserver/mcp", b(jwt)), 200)
		expect("no credentials", send("none", "/api/servers", nil), 401)
		expect("session key as a bearer token", send("session key", "/api/servers", b(sessionKey)), 401)
		expect("Basic with the token", send("basic", "/api/servers", map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("u:"+tokens[cur]))}), 401)
	}
	round(0)

	// Rotate each credential twice: the token with a rendered manifest and
	// kubectl apply, the key with kubectl patch.
	for i := 1; i <= 2; i++ {
		rendered := k.run(nil, "-n", ns, "create", "secret", "generic", tokenSec, "--from-literal=token="+tokens[i], "--dry-run=client", "-o", "yaml")
		k.run([]byte(optIn(rendered)), "apply", "-f", "-")
		patch := filepath.Join(dir, "patch.json")
		if err := os.WriteFile(patch, []byte(fmt.Sprintf(`{"data":{"api-key":%q}}`, base64.StdEncoding.EncodeToString([]byte(keys[i])))), 0o600); err != nil {
			t.Fatal(err)
		}
		k.run(nil, "-n", ns, "patch", "secret", keySec, "--type=merge", "--patch-file", patch)
		waitStatus(fmt.Sprintf("rotation %d of the static token in status", i), tokenFP, fingerprint(tokens[i]))
		waitStatus(fmt.Sprintf("rotation %d of the API key in status", i), keyFP, fingerprint(keys[i]))
		t.Logf("rotation %d: token %s -> %s, key %s -> %s", i, fingerprint(tokens[i-1]), fingerprint(tokens[i]), fingerprint(keys[i-1]), fingerprint(keys[i]))
		round(i)
	}

	// The state Secret after the rotations: digests of the current and the
	// previous values, which is allowed, and must be there, or the scan of
	// it proves little.
	stateJSON := func() string {
		var obj struct {
			Data map[string][]byte `json:"data"`
		}
		if err := json.Unmarshal([]byte(k.run(nil, "-n", ns, "get", "secret", stateName, "-o", "json")), &obj); err != nil {
			t.Fatalf("state Secret: %v", err)
		}
		return string(obj.Data["state.json"])
	}
	digest := func(v string) string { s := sha256.Sum256([]byte(v)); return hex.EncodeToString(s[:]) }
	var stateAfterRotations string
	eventually(t, 10*time.Second, 100*time.Millisecond, "state Secret holds the digests", func() error {
		stateAfterRotations = stateJSON()
		for _, v := range []string{tokens[2], tokens[1], keys[2], keys[1]} {
			if !strings.Contains(stateAfterRotations, digest(v)) {
				return fmt.Errorf("state.json lacks the digest of %s", fingerprint(v))
			}
		}
		return nil
	})

	// A weak token: refused, described in a Warning event, the condition
	// and the log, never shown.
	rendered := k.run(nil, "-n", ns, "create", "secret", "generic", tokenSec, "--from-literal=token="+weak, "--dry-run=client", "-o", "yaml")
	k.run([]byte(optIn(rendered)), "apply", "-f", "-")
	waitStatus("weak token reported", `{.status.conditions[?(@.type=="Ready")].reason}`, "TokenTooWeak")
	if s := send("weak", "/api/servers", map[string]string{"Authorization": "Bearer " + weak}); s != http.StatusUnauthorized {
		t.Errorf("the weak token: status %d, want 401", s)
	}

	// Collect everything to scan.
	type artifact struct{ what, text string }
	var arts []artifact
	add := func(what, text string) { arts = append(arts, artifact{what, text}) }

	var events, eventsV1 string
	eventually(t, 20*time.Second, 200*time.Millisecond, "the rotation and warning events", func() error {
		events = k.run(nil, "-n", ns, "get", "events", "-o", "yaml")
		eventsV1 = k.run(nil, "-n", ns, "get", "events.events.k8s.io", "-o", "yaml")
		if n := strings.Count(eventsV1, "reason: TokenRotated"); n < 4 {
			return fmt.Errorf("%d TokenRotated events", n)
		}
		if !strings.Contains(eventsV1, "reason: TokenTooWeak") {
			return fmt.Errorf("no TokenTooWeak event")
		}
		return nil
	})
	add("kubectl get events -o yaml", events)
	add("kubectl get events.events.k8s.io -o yaml", eventsV1)
	add("kubectl describe rap", k.run(nil, "-n", ns, "describe", "rap", policy))
	rap := k.run(nil, "-n", ns, "get", "rap", policy, "-o", "yaml")
	add("kubectl get rap -o yaml", rap)
	if !strings.Contains(rap, fingerprint(tokens[2])) && !strings.Contains(rap, "TokenTooWeak") {
		t.Errorf("the policy's status shows neither the last fingerprint nor the weak token's problem")
	}

	// The state Secret: digests are fine, the values are not.
	add("kubectl get secret "+stateName+" -o yaml", k.run(nil, "-n", ns, "get", "secret", stateName, "-o", "yaml"))
	add("state.json after the rotations, decoded", stateAfterRotations)
	add("state.json at the end, decoded", stateJSON())

	resp, err := probeClient.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	add("/metrics", string(metricsText))
	if !strings.Contains(string(metricsText), "registry_auth_decisions_total") {
		t.Errorf("/metrics has no registry_auth_decisions_total")
	}
	add("HTTP responses", responses.String())

	p.Stop()
	out := p.Output()
	add("registry-auth output", out)
	// The scan covered the verbose paths.
	for _, want := range []string{"request denied", "policy reloaded", "TokenTooWeak"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output has no %q line: that path's log lines were not scanned", want)
		}
	}
	t.Logf("scanning %d log lines, %d bytes of events, %d bytes of responses, %d bytes of metrics for %d credentials",
		strings.Count(out, "\n"), len(events)+len(eventsV1), responses.Len(), len(metricsText), len(secrets.all()))

	all := secrets.all()
	for _, a := range arts {
		ft := &fakeT{TB: t}
		assertNoLeak(ft, a.what, a.text, all)
		if !ft.failed {
			continue
		}
		assertNoLeak(t, a.what, a.text, all) // reports by fingerprint
		// Name the lines, by number only.
		for n, line := range strings.Split(a.text, "\n") {
			lf := &fakeT{TB: t}
			assertNoLeak(lf, a.what, line+" ", all)
			if lf.failed {
				t.Errorf("%s: line %d holds a credential", a.what, n+1)
			}
		}
	}

	// The scan can fail: a credential planted in each artifact, in each
	// spelling, is found.
	t.Run("planted credentials are found", func(t *testing.T) {
		for _, a := range arts {
			for _, s := range []string{tokens[0], keys[1], sessionKey, aliceCookie[len(authtest.SessionCookieName)+1:]} {
				for name, planted := range map[string]string{
					"plain":           s,
					"std base64":      base64.StdEncoding.EncodeToString([]byte(s)),
					"url base64":      base64.URLEncoding.EncodeToString([]byte(s)),
					"inside a Secret": base64.StdEncoding.EncodeToString([]byte(`{"credentials":{"x":{"current":"` + s + `"}}}`)),
				} {
					ft := &fakeT{TB: t}
					assertNoLeak(ft, a.what, a.text+"\n"+planted+"\n", all)
					if !ft.failed {
						t.Errorf("%s: a credential (%s) planted %s was not found", a.what, fingerprint(s), name)
					}
				}
			}
		}
		// The weak token is shorter than 32 characters: plain is enough,
		// but it is found too.
		ft := &fakeT{TB: t}
		assertNoLeak(ft, "events", events+"value "+weak, all)
		if !ft.failed {
			t.Errorf("the weak token planted in the events was not found")
		}
	})
}
