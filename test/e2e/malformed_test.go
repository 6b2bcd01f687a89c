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
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/registryauth/registry-auth-operator/test/e2e/nginxtest"
)

var refusedLine = regexp.MustCompile(`^registry_auth_refused_requests_total\{reason="([^"]*)"\} ([0-9.e+]+)$`)

// refusedRequests reads registry_auth_refused_requests_total by reason.
func refusedRequests(t *testing.T, p *proc) map[string]float64 {
	t.Helper()
	resp, err := probeClient.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		t.Fatalf("reading /metrics: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if m := refusedLine.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			out[m[1]] = v
		}
	}
	return out
}

// Through nginx configured as ingress-nginx with ignore-invalid-headers:
// "false", header names net/http cannot read reach the auth service. Its
// connection answers 401 malformed_request (net/http alone answers 400,
// which nginx turns into a 500 for the client), the upstream is not
// reached, nginx logs no unexpected status, and the keep-alive pool to the
// auth service keeps serving the requests that follow (issue 21, item 11).
func TestMalformedHeadersThroughNginx(t *testing.T) {
	nginxtest.Require(t)
	tok := newToken(t)
	secrets := &secretSet{}
	secrets.add(tok)
	p := startBinary(t, []string{"--standalone", "--zap-log-level=debug"}, map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_TOKEN":                 tok,
	}, secrets, 30*time.Second)
	ng := nginxtest.Start(t, nginxtest.Options{AuthURL: p.AuthURL(), PassInvalidHeaders: true, Keepalive: true})
	addr := strings.TrimPrefix(ng.URL(), "http://")
	get := func(headers ...hv) advClient {
		return advClient{target: "/api/servers", headers: append([]hv{{"Authorization", "Bearer " + tok}}, headers...)}
	}

	before := refusedRequests(t, p)
	var dumps strings.Builder
	bad := []struct {
		name string
		c    advClient
	}{
		{"parenthesis in a header name", get(hv{"X(Trace)", "a"})},
		{"at sign in a header name", get(hv{"X@Trace", "a"})},
		{"slash in a header name", get(hv{"X/Trace", "a"})},
		{"bracket in a header name", get(hv{"X[Trace]", "a"})},
		{"non-ASCII byte in a header name", get(hv{"X-Tr\xe4ce", "a"})},
		{"quotes in a header name, before the token", advClient{target: "/api/servers", headers: []hv{{"X\"Quote\"", "a"}, {"Authorization", "Bearer " + tok}}}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			hits := ng.UpstreamHits()
			mark := len(ng.ErrorLog())
			r, err := advExchange(addr, tc.c.wire(), http.MethodGet)
			if err != nil {
				t.Fatal(err)
			}
			dumps.WriteString(r.dump)
			if r.status != http.StatusUnauthorized {
				t.Errorf("through nginx: %d, want the auth service's 401 (nginx: %s)", r.status, secrets.redact(lastLine(ng.ErrorLog()[mark:])))
			}
			if r.header.Get("Www-Authenticate") == "" {
				t.Error("through nginx: 401 without WWW-Authenticate (nginx relays the auth service's)")
			}
			if n := ng.UpstreamHits() - hits; n != 0 {
				t.Errorf("the upstream was reached %d times", n)
			}
			if log := ng.ErrorLog()[mark:]; strings.Contains(log, "auth request unexpected status") {
				t.Errorf("nginx logged an unexpected status from the auth service: %s", secrets.redact(lastLine(log)))
			}
		})
	}
	after := refusedRequests(t, p)
	if got := after["malformed_request"] - before["malformed_request"]; got != float64(len(bad)) {
		t.Errorf("registry_auth_refused_requests_total{reason=malformed_request} grew by %v, want %d: nginx did not pass the headers on, or the refusal was not the connection's", got, len(bad))
	}

	// The keep-alive pool to the auth service serves on.
	for i := 0; i < 5; i++ {
		r, err := advExchange(addr, get().wire(), http.MethodGet)
		if err != nil {
			t.Fatal(err)
		}
		dumps.WriteString(r.dump)
		if r.status != http.StatusOK {
			t.Fatalf("well-formed request %d after the malformed ones: %d", i, r.status)
		}
	}
	p.Stop()
	assertNoLeak(t, "registry-auth output", p.Output(), secrets.all())
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
