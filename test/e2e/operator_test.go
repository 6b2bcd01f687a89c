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
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/registryauth/registry-auth-operator/test/e2e/nginxtest"
	"github.com/registryauth/registry-auth-operator/test/utils"
)

// kubectl runs the real kubectl (bin/k8s/kubectl) against the test's
// control plane as an admin.
type kubectl struct {
	t          *testing.T
	path       string
	kubeconfig string
	secrets    *secretSet
}

// run runs kubectl with args (stdin may be nil) and returns its stdout. A
// failure fails the test with kubectl's output, credentials redacted.
func (k *kubectl) run(stdin []byte, args ...string) string {
	k.t.Helper()
	out, err := k.try(stdin, args...)
	if err != nil {
		k.t.Fatalf("kubectl %s: %v", k.secrets.redact(strings.Join(args, " ")), err)
	}
	return out
}

// try is run returning the error instead of failing.
func (k *kubectl) try(stdin []byte, args ...string) (string, error) {
	cmd := exec.Command(k.path, append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
	cmd.Env = childEnv(nil)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w: %s%s", err, k.secrets.redact(stderr.String()), k.secrets.redact(stdout.String()))
	}
	return stdout.String(), nil
}

const (
	policyName      = "registry"
	tokenSecretName = "registry-api-token"
	rotationGrace   = 4 * time.Second
)

// TestOperatorRotation runs the binary as an operator against a real
// kube-apiserver and etcd, in front of nginx, and rotates the static token
// with kubectl while a client keeps sending requests. The client switches to
// the new token only once the policy's status shows its fingerprint, so the
// test proves that status never runs ahead of what the auth service accepts
// and that the rotation grace period bridges the gap: not one request is
// denied. It then checks that the replaced token is accepted exactly until
// the end of its window, what `kubectl get` and `kubectl describe` show, and
// that no token reached the logs.
func TestOperatorRotation(t *testing.T) {
	t.Parallel()
	nginxtest.Require(t) // before the control plane
	secrets := &secretSet{}
	tokens := make([]string, 5) // tokens[0] first, then four rotations
	for i := range tokens {
		tokens[i] = newToken(t)
	}
	secrets.add(tokens...)

	_, kubeconfig := utils.StartControlPlane(t)
	dir := t.TempDir()
	k := &kubectl{t: t, path: utils.KubectlPath(), kubeconfig: kubeconfig, secrets: secrets}

	const ns = "registry-e2e"
	k.run(nil, "create", "namespace", ns)
	k.run(nil, "-n", ns, "create", "secret", "generic", tokenSecretName, "--from-literal=token="+tokens[0])
	k.run(nil, "-n", ns, "label", "secret", tokenSecretName, "registryauth.io/credential=true")
	policyFile := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(policyFile, staticTokenPolicy(ns, rotationGrace), 0o600); err != nil {
		t.Fatal(err)
	}
	k.run(nil, "apply", "-f", policyFile)

	p := startBinary(t, []string{
		"--kubeconfig", kubeconfig,
		"--leader-elect", "--leader-election-namespace", ns, "--host-grants=*=*",
		"--zap-log-level=debug",
		"--shutdown-grace-period=2s",
	}, nil, secrets, 60*time.Second)
	ng := nginxtest.Start(t, nginxtest.Options{AuthURL: p.AuthURL()})

	// statusField reads the policy with `kubectl get rap -o jsonpath=...`.
	statusField := func(jsonpath string) string {
		out, err := k.try(nil, "-n", ns, "get", "rap", policyName, "-o", "jsonpath="+jsonpath)
		if err != nil {
			t.Logf("reading status: %v", err)
			return ""
		}
		return strings.TrimSpace(out)
	}
	waitForStatus := func(tok string) time.Duration {
		t.Helper()
		begin := time.Now()
		eventually(t, 20*time.Second, 50*time.Millisecond, "status shows fingerprint "+fingerprint(tok), func() error {
			if got := statusField("{.status.staticToken.fingerprint}"); got != fingerprint(tok) {
				return fmt.Errorf("status fingerprint %q", got)
			}
			return nil
		})
		return time.Since(begin)
	}
	// Status needs the leader; the auth service was ready before it.
	waitForStatus(tokens[0])
	expectUpstream(t, do(t, ng, request(registryHost, "/api/servers", bearer(tokens[0]))), staticIdentity)
	// The policy is chosen by host: another host has none.
	expectDenied(t, ng, http.StatusForbidden, request("other.test", "/api/servers", bearer(tokens[0])))

	// The client: requests back to back through nginx with the token it
	// currently believes in.
	var current atomic.Pointer[string]
	current.Store(&tokens[0])
	type loopResult struct {
		requests int
		maxLat   time.Duration
		denials  []string
		denied   int
	}
	stop := make(chan struct{})
	loopDone := make(chan loopResult, 1)
	loopStart := time.Now()
	go func() {
		var res loopResult
		for {
			select {
			case <-stop:
				loopDone <- res
				return
			default:
			}
			tok := *current.Load()
			begin := time.Now()
			status, echo, body, err := ng.Do(request(registryHost, "/api/servers", bearer(tok)))
			lat := time.Since(begin)
			res.requests++
			res.maxLat = max(res.maxLat, lat)
			if err != nil || status != http.StatusOK || echo == nil || echo.Header.Get("X-User") != staticUser {
				res.denied++
				if len(res.denials) < 20 {
					user := ""
					if echo != nil {
						user = echo.Header.Get("X-User")
					}
					res.denials = append(res.denials, fmt.Sprintf("t+%v token %s: status %d, err %v, upstream X-User %q, body %q",
						begin.Sub(loopStart).Round(time.Millisecond), fingerprint(tok), status, err, user, truncate(string(body), 200)))
				}
			}
		}
	}()
	var (
		stopOnce sync.Once
		final    loopResult
	)
	stopLoop := func() loopResult {
		stopOnce.Do(func() {
			close(stop)
			final = <-loopDone
		})
		return final
	}
	t.Cleanup(func() { stopLoop() })

	// Rotate: apply a Secret rendered with --dry-run, and kubectl patch, in
	// turn, a couple of seconds apart.
	rotate := func(i int) {
		t.Helper()
		tok := tokens[i]
		if i%2 == 1 {
			manifest := k.run(nil, "-n", ns, "create", "secret", "generic", tokenSecretName,
				"--from-literal=token="+tok, "--dry-run=client", "-o", "yaml")
			k.run([]byte(optIn(manifest)), "apply", "-f", "-")
			return
		}
		patch := fmt.Sprintf(`{"data":{"token":%q}}`, base64.StdEncoding.EncodeToString([]byte(tok)))
		patchFile := filepath.Join(dir, "patch.json")
		if err := os.WriteFile(patchFile, []byte(patch), 0o600); err != nil {
			t.Fatal(err)
		}
		k.run(nil, "-n", ns, "patch", "secret", tokenSecretName, "--type=merge", "--patch-file", patchFile)
	}
	var lastRotation time.Time
	for i := 1; i < len(tokens); i++ {
		time.Sleep(2 * time.Second) // rotation spacing
		lastRotation = time.Now()
		rotate(i)
		took := waitForStatus(tokens[i])
		current.Store(&tokens[i])
		method := "apply"
		if i%2 == 0 {
			method = "patch"
		}
		t.Logf("rotation %d (kubectl %s): %s -> %s; status showed it after %v", i, method,
			fingerprint(tokens[i-1]), fingerprint(tokens[i]), took.Round(time.Millisecond))
	}

	// The token replaced last is accepted until the end of its window, then
	// refused.
	last, prev := tokens[len(tokens)-1], tokens[len(tokens)-2]
	var expiresAt time.Time
	eventually(t, 5*time.Second, 50*time.Millisecond, "status shows the previous token", func() error {
		out := statusField("{.status.staticToken.previousFingerprint} {.status.staticToken.previousExpiresAt}")
		fp, ts, _ := strings.Cut(out, " ")
		if fp != fingerprint(prev) {
			return fmt.Errorf("status previous: %q", out)
		}
		var err error
		expiresAt, err = time.Parse(time.RFC3339, ts)
		return err
	})
	// The window starts when the Secret changed (the API server's
	// managedFields time, whole seconds), so it ends 3-4 s after kubectl was
	// started, plus the time kubectl took.
	if d := expiresAt.Sub(lastRotation); d < rotationGrace-time.Second || d > rotationGrace+2*time.Second {
		t.Errorf("previous token expires %v after the rotation, want about %v", d.Round(time.Millisecond), rotationGrace)
	}
	if time.Until(expiresAt) < 300*time.Millisecond {
		t.Fatalf("the status came too late to check the grace window (expires in %v)", time.Until(expiresAt))
	}
	r := do(t, ng, request(registryHost, "/api/servers", bearer(prev)))
	expectUpstream(t, r, staticIdentity)
	t.Logf("previous token %s accepted %v before its window ends", fingerprint(prev), time.Until(expiresAt).Round(time.Millisecond))
	deadline := lastRotation.Add(rotationGrace + 3*time.Second)
	var refusedAt time.Time
	for refusedAt.IsZero() {
		begin := time.Now()
		r := do(t, ng, request(registryHost, "/api/servers", bearer(prev)))
		switch {
		case r.status == http.StatusUnauthorized && r.echo == nil:
			refusedAt = time.Now()
			if refusedAt.Before(expiresAt) {
				t.Errorf("previous token refused %v before its window ends", expiresAt.Sub(refusedAt))
			}
		case r.status == http.StatusOK && r.echo != nil:
			if begin.After(expiresAt.Add(time.Second)) {
				t.Errorf("previous token still accepted %v after its window ended", begin.Sub(expiresAt))
			}
		default:
			t.Fatalf("previous token: unexpected %s", r)
		}
		if refusedAt.IsZero() && time.Now().After(deadline) {
			t.Fatalf("previous token %s still accepted %v after the rotation (grace %v)", fingerprint(prev), time.Since(lastRotation), rotationGrace)
		}
		if refusedAt.IsZero() {
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("previous token refused %v after the window's end", refusedAt.Sub(expiresAt).Round(time.Millisecond))

	res := stopLoop()
	t.Logf("client loop: %d requests in %v, max latency %v, %d denied", res.requests,
		time.Since(loopStart).Round(time.Millisecond), res.maxLat.Round(time.Microsecond), res.denied)
	if res.requests < 10 {
		t.Errorf("the client loop sent only %d requests", res.requests)
	}
	if res.denied > 0 {
		t.Errorf("%d of %d requests were denied during rotations; first ones:\n%s", res.denied, res.requests, strings.Join(res.denials, "\n"))
	}

	// Every replaced token is refused now; the current one works.
	for _, tok := range tokens[:len(tokens)-1] {
		expectDenied(t, ng, http.StatusUnauthorized, request(registryHost, "/api/servers", bearer(tok)))
	}
	expectUpstream(t, do(t, ng, request(registryHost, "/api/servers", bearer(last))), staticIdentity)

	// kubectl get shows Ready and the fingerprint column.
	eventually(t, 10*time.Second, 100*time.Millisecond, "kubectl get rap", func() error {
		out := k.run(nil, "-n", ns, "get", "rap")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 2 {
			return fmt.Errorf("want a header and one row:\n%s", out)
		}
		header, row := strings.Fields(lines[0]), strings.Fields(lines[1])
		col := map[string]string{}
		for i, h := range header {
			if i < len(row) {
				col[h] = row[i]
			}
		}
		if col["NAME"] != policyName || col["READY"] != "True" || col["TOKEN"] != fingerprint(last) {
			return fmt.Errorf("want NAME %s READY True TOKEN %s:\n%s", policyName, fingerprint(last), out)
		}
		return nil
	})

	// kubectl describe shows a TokenRotated event per rotation, with
	// fingerprints.
	eventually(t, 10*time.Second, 200*time.Millisecond, "kubectl describe rap", func() error {
		out := k.run(nil, "-n", ns, "describe", "rap", policyName)
		for i := 1; i < len(tokens); i++ {
			want := fmt.Sprintf("from %s to %s", fingerprint(tokens[i-1]), fingerprint(tokens[i]))
			if !strings.Contains(out, "TokenRotated") || !strings.Contains(out, want) {
				return fmt.Errorf("no TokenRotated event %q in:\n%s", want, secrets.redact(out))
			}
		}
		return nil
	})

	p.Stop()
	assertNoLeak(t, "registry-auth output", p.Output(), secrets.all())
}

// staticTokenPolicy is the e2e tests' policy: registryHost, the static token
// in tokenSecretName, with the given rotation grace period.
func staticTokenPolicy(ns string, grace time.Duration) []byte {
	return fmt.Appendf(nil, `apiVersion: auth.registryauth.io/v1alpha1
kind: RegistryAuthPolicy
metadata:
  name: %s
  namespace: %s
spec:
  hosts: [%s]
  staticToken:
    enabled: true
    secretRef:
      name: %s
    rotationGracePeriod: %s
`, policyName, ns, registryHost, tokenSecretName, grace)
}

// optIn adds the credential opt-in label to a rendered Secret manifest (the
// output of kubectl create secret --dry-run=client -o yaml).
func optIn(manifest string) string {
	return strings.Replace(manifest, "metadata:\n", "metadata:\n  labels:\n    registryauth.io/credential: \"true\"\n", 1)
}
