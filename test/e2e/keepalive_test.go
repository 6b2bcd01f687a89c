package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/registryauth/registry-auth-operator/test/e2e/nginxtest"
)

// metricValue reads one sample of the binary's /metrics ("name" or
// "name{labels}" as exposed).
func metricValue(t *testing.T, p *proc, sample string) float64 {
	t.Helper()
	resp, err := probeClient.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", sample, err)
			}
			return f
		}
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	t.Fatalf("no sample %s in /metrics", sample)
	return 0
}

// With ingress-nginx's auth-keepalive, nginx reuses its connections to the
// auth service: allowed, unauthorized and forbidden checks alike, a few
// hundred of them take a handful of connections. (An answer with a body
// would cost a connection per check: nginx's auth subrequest reads only the
// head.)
func TestKeepaliveThroughNginx(t *testing.T) {
	g := NewWithT(t)
	tok, key := newToken(t), newToken(t)
	secrets := &secretSet{}
	secrets.add(tok, key)
	p := startBinary(t, []string{"--standalone"}, map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_TOKEN":                 tok,
		"REGISTRY_API_KEYS":                  `[{"name":"reader","key":"` + key + `","methods":["GET"]}]`,
	}, secrets, 10*time.Second)
	ng := nginxtest.Start(t, nginxtest.Options{AuthURL: p.AuthURL(), Keepalive: true})

	before := metricValue(t, p, "registry_auth_connections_accepted_total")
	const checks = 300
	statuses := map[int]int{}
	for i := range checks {
		var req *http.Request
		switch i % 3 {
		case 0:
			req = request("registry.example.com", "/api/servers", bearer(tok))
		case 1:
			req = request("registry.example.com", "/api/servers", nil) // 401
		default:
			req = request("registry.example.com", "/api/servers", bearer(key))
			req.Method = http.MethodDelete // 403: the key is GET-only
		}
		req.Header.Set("Accept", "application/json") // as API clients send it
		statuses[do(t, ng, req).status]++
	}
	g.Expect(statuses).To(Equal(map[int]int{200: checks / 3, 401: checks / 3, 403: checks / 3}))
	accepted := metricValue(t, p, "registry_auth_connections_accepted_total") - before
	t.Logf("%d checks through nginx with auth keepalive: %v connections accepted", checks, accepted)
	g.Expect(accepted).To(BeNumerically("<=", 4), fmt.Sprintf("%v connections for %d checks: nginx does not reuse them", accepted, checks))
}
