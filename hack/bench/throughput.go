package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authtest"
)

// Server kinds of the throughput cases.
const (
	serverCeiling      = "ceiling"
	serverRegistryAuth = "registry-auth"
	serverOAuth2Proxy  = "oauth2-proxy"
)

// tpCase is one throughput case.
type tpCase struct {
	Name   string `json:"name"`
	Server string `json:"server"`
	What   string `json:"what"`
	target wrkTarget
	// wantStatus is the one status every response must have (checked
	// exactly once with a Go client before the load; under load wrk
	// tells 2xx/3xx from >= 400, and the decision metrics tell the rest).
	wantStatus int
	// wantReason is the registry_auth_decisions_total reason every request
	// of a registry-auth case must be counted under.
	wantReason string

	Rounds []wrkResult `json:"rounds"`
	// Medians over the rounds.
	RPS   float64 `json:"rps"`
	P50US float64 `json:"p50_us"`
	P99US float64 `json:"p99_us"`
	// CPUUS is the server's CPU time per request (median over rounds).
	CPUUS float64 `json:"server_cpu_us_per_request"`
	proc  *proc
}

type throughputResult struct {
	Cases []*tpCase `json:"cases"`
	// RegistryAuthGC is what registry-auth's garbage collector ran with,
	// read from its /metrics (the bench sets neither unless
	// -registry-auth-env does).
	RegistryAuthGC string `json:"registry_auth_gc"`
}

// pairedRatio is the median over rounds of f(a's run) / f(b's runs next to
// it): a slow phase of the machine then affects both sides. The ceiling is
// measured before the first case of each round and after every case (see
// runThroughput), so a ratio to the ceiling compares a run with the mean of
// the two ceiling runs around it; cases that did not run next to each other
// (another pair of cases, the scale phase's processes) are compared within
// their round. 0 when a round is missing; 1 for a case against itself.
func pairedRatio(a, b *tpCase, f func(wrkResult) float64) float64 {
	if a == b {
		return 1
	}
	return pairedRounds(a.Rounds, b.Rounds, f)
}

func pairedRounds(as, bs []wrkResult, f func(wrkResult) float64) float64 {
	var xs []float64
	for _, ra := range as {
		var next, round []float64
		for _, rb := range bs {
			if rb.Round != ra.Round || f(rb) == 0 {
				continue
			}
			round = append(round, f(rb))
			if d := rb.Seq - ra.Seq; d == 1 || d == -1 {
				next = append(next, f(rb))
			}
		}
		ref := next
		if len(ref) == 0 {
			ref = round
		}
		if len(ref) > 0 {
			xs = append(xs, f(ra)/mean(ref))
		}
	}
	return median(xs)
}

func mean(xs []float64) float64 {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

func rps(r wrkResult) float64 { return r.RPS() }
func p99(r wrkResult) float64 { return r.P99US }
func p50(r wrkResult) float64 { return r.P50US }
func cpu(r wrkResult) float64 { return r.ServerCPUUS }

func (t *throughputResult) get(name string) *tpCase {
	for _, c := range t.Cases {
		if c.Name == name {
			return c
		}
	}
	return nil
}

const (
	benchHost     = "registry.bench"
	benchAudience = "registry-bench"
)

// nginxHeaders are the headers ingress-nginx's auth subrequest carries
// besides the credential (see test/e2e/nginxtest): every server gets them.
func nginxHeaders(path string) [][2]string {
	return [][2]string{
		{"X-Original-URL", "http://" + benchHost + path},
		{"X-Original-Method", "GET"},
		{"X-Sent-From", "nginx-ingress-controller"},
		{"X-Real-IP", "203.0.113.7"},
		{"X-Forwarded-For", "203.0.113.7"},
		{"X-Auth-Request-Redirect", path},
	}
}

func withHeader(h [][2]string, k, v string) [][2]string {
	return append(slices.Clone(h), [2]string{k, v})
}

// runThroughput runs the ceiling, registry-auth --standalone and oauth2-proxy
// side by side and loads each case in turn, round after round.
func runThroughput(ctx context.Context, cfg config, bin binaries, workDir string) (*throughputResult, error) {
	issuer, err := authtest.StartIssuer()
	if err != nil {
		return nil, err
	}
	defer issuer.Close()

	staticToken, wrongToken := randomHex(32), randomHex(32)
	secretKey := randomAlnum(48)
	claims := issuer.Claims(benchAudience, "alice", []string{"dev"}, 3*time.Hour)
	// oauth2-proxy wants an email for the session it builds from the JWT.
	claims["email"], claims["email_verified"] = "alice@bench.test", true
	jwt := issuer.Sign(claims)
	cookie := authtest.SessionCookie([]byte(secretKey), map[string]any{
		"username": "alice", "groups": []string{"dev"}, "auth_method": "oauth2", "provider": "keycloak",
	}, time.Now())

	// registry-auth, standalone.
	ra := struct{ auth, probe, metrics string }{freeAddr(), freeAddr(), freeAddr()}
	raProc, err := startProc("registry-auth-standalone", workDir, bin.registryAuth, []string{
		"--standalone",
		"--auth-bind-address", ra.auth,
		"--health-probe-bind-address", ra.probe,
		"--metrics-bind-address", ra.metrics,
		"--max-auth-failures=0",
	}, extraEnv(cfg, "registry-auth-standalone", map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_TOKEN":                 staticToken,
		"SECRET_KEY":                         secretKey,
		"OIDC_ISSUER_URL":                    issuer.URL(),
		"OIDC_CLIENT_ID":                     benchAudience,
	}))
	if err != nil {
		return nil, err
	}
	defer raProc.Stop()

	// The ceiling.
	ceilAddr := freeAddr()
	ceilProc, err := startProc("ceiling", workDir, bin.ceiling, []string{"-addr", ceilAddr}, nil)
	if err != nil {
		return nil, err
	}
	defer ceilProc.Stop()

	// oauth2-proxy, default logging (one line per request, to its log file).
	o2Addr := freeAddr()
	o2Proc, err := startProc("oauth2-proxy", workDir, bin.oauth2Proxy, []string{
		"--http-address=" + o2Addr,
		"--provider=oidc",
		"--oidc-issuer-url=" + issuer.URL(),
		"--client-id=" + benchAudience,
		"--client-secret=bench-client-secret",
		"--cookie-secret=" + randomAlnum(32),
		"--cookie-secure=false",
		"--email-domain=*",
		"--upstream=static://202",
		"--skip-jwt-bearer-tokens=true",
		"--skip-provider-button=true",
	}, nil)
	if err != nil {
		return nil, err
	}
	defer o2Proc.Stop()

	for _, w := range []struct {
		p   *proc
		url string
	}{
		{raProc, "http://" + ra.probe + "/readyz"},
		{ceilProc, "http://" + ceilAddr + "/"},
		{o2Proc, "http://" + o2Addr + "/ping"},
	} {
		if _, err := waitHTTP(w.p, w.url, http.StatusOK, 20*time.Millisecond, 30*time.Second, nil); err != nil {
			return nil, err
		}
	}

	validate := "http://" + ra.auth + "/validate"
	api, gw := nginxHeaders("/api/servers"), nginxHeaders("/mcpserver/mcp")

	// A second ceiling answers exactly what registry-auth answers to the
	// static token (status, headers, body): the cost of the response
	// without the auth logic.
	respFile, err := captureResponse(wrkTarget{URL: validate, Header: withHeader(api, "Authorization", "Bearer "+staticToken)}, workDir)
	if err != nil {
		return nil, err
	}
	sameAddr := freeAddr()
	sameProc, err := startProc("ceiling-same-response", workDir, bin.ceiling, []string{"-addr", sameAddr, "-response", respFile}, nil)
	if err != nil {
		return nil, err
	}
	defer sameProc.Stop()
	if _, err := waitHTTP(sameProc, "http://"+sameAddr+"/", http.StatusOK, 20*time.Millisecond, 30*time.Second, nil); err != nil {
		return nil, err
	}
	res := &throughputResult{Cases: []*tpCase{
		{Name: "ceiling", Server: serverCeiling, What: "minimal net/http server: 200 + one header",
			target: wrkTarget{URL: "http://" + ceilAddr + "/validate", Header: withHeader(api, "Authorization", "Bearer "+staticToken)}, wantStatus: 200},
		{Name: "ceiling_same_response", Server: serverCeiling, What: "minimal net/http server sending registry-auth's static-token answer (same headers and body), no auth logic",
			target: wrkTarget{URL: "http://" + sameAddr + "/validate", Header: withHeader(api, "Authorization", "Bearer "+staticToken)}, wantStatus: 200},
		{Name: "static_token", Server: serverRegistryAuth, What: "static token on /api/servers: allowed",
			target: wrkTarget{URL: validate, Header: withHeader(api, "Authorization", "Bearer "+staticToken)}, wantStatus: 200, wantReason: "static_token"},
		{Name: "wrong_static_token", Server: serverRegistryAuth, What: "wrong static token on /api/servers: falls through, 401",
			target: wrkTarget{URL: validate, Header: withHeader(api, "Authorization", "Bearer "+wrongToken)}, wantStatus: 401, wantReason: "invalid_credentials"},
		{Name: "oidc_jwt", Server: serverRegistryAuth, What: "RS256 IdP JWT on /mcpserver/mcp: allowed",
			target: wrkTarget{URL: validate, Header: withHeader(gw, "Authorization", "Bearer "+jwt)}, wantStatus: 200, wantReason: "oidc"},
		{Name: "session", Server: serverRegistryAuth, What: "session cookie on /mcpserver/mcp: allowed",
			target: wrkTarget{URL: validate, Header: withHeader(gw, "Cookie", "mcp_gateway_session="+cookie)}, wantStatus: 200, wantReason: "session"},
		{Name: "no_credentials", Server: serverRegistryAuth, What: "no credentials on /api/servers: 401",
			target: wrkTarget{URL: validate, Header: api}, wantStatus: 401, wantReason: "no_credentials"},
		{Name: "oauth2_proxy_jwt", Server: serverOAuth2Proxy, What: "oauth2-proxy " + oauth2ProxyVersion + " /oauth2/auth, same JWT: 202",
			target: wrkTarget{URL: "http://" + o2Addr + "/oauth2/auth", Header: withHeader(gw, "Authorization", "Bearer "+jwt)}, wantStatus: 202},
	}}
	if res.RegistryAuthGC, err = scrapeGC("http://" + ra.metrics + "/metrics"); err != nil {
		return nil, fmt.Errorf("registry-auth's garbage collector settings: %w", err)
	}
	if cfg.cases != "" {
		var keep []*tpCase
		for _, c := range res.Cases {
			if slices.Contains(strings.Split(cfg.cases, ","), c.Name) {
				keep = append(keep, c)
			}
		}
		res.Cases = keep
	}

	for _, c := range res.Cases {
		switch {
		case c.Name == "ceiling_same_response":
			c.proc = sameProc
		case c.Server == serverCeiling:
			c.proc = ceilProc
		case c.Server == serverRegistryAuth:
			c.proc = raProc
		case c.Server == serverOAuth2Proxy:
			c.proc = o2Proc
		}
	}
	// Every case answers as expected before any load.
	for _, c := range res.Cases {
		if err := checkOnce(c); err != nil {
			return nil, err
		}
	}

	metricsURL := "http://" + ra.metrics + "/metrics"
	// The ceiling is the reference of the ratios that matter most, and the
	// machine's speed drifts over minutes (other tenants, thermal state): it
	// is measured before the first case of each round and again after every
	// case, so every case has a ceiling run on each side, 13 s away.
	ceil := res.get("ceiling")
	var others []*tpCase
	for _, c := range res.Cases {
		if c != ceil {
			others = append(others, c)
		}
	}
	for round := 1; round <= cfg.rounds; round++ {
		seq := 0
		measure := func(c *tpCase) error {
			url := ""
			if c.Server == serverRegistryAuth {
				url = metricsURL
			}
			r, err := measureCase(ctx, cfg, workDir, c, c.proc, url, nil)
			if err != nil {
				return err
			}
			r.Round, r.Seq = round, seq
			seq++
			c.Rounds = append(c.Rounds, r)
			logf("round %d/%d %-20s %9.0f req/s  p50 %7s  p99 %7s  server CPU %5.1fµs/req", round, cfg.rounds, c.Name, r.RPS(), fmtUS(r.P50US), fmtUS(r.P99US), r.ServerCPUUS)
			return nil
		}
		if ceil != nil {
			if err := measure(ceil); err != nil {
				return nil, err
			}
		}
		// Each round starts at a different case, so no case is always
		// measured first, or last before the next round.
		shift := (round - 1) * len(others) / max(cfg.rounds, 1)
		for _, c := range append(slices.Clone(others[shift:]), others[:shift]...) {
			if err := measure(c); err != nil {
				return nil, err
			}
			if ceil != nil {
				if err := measure(ceil); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, c := range res.Cases {
		c.RPS, c.P50US, c.P99US, c.CPUUS = medians(c.Rounds)
	}
	for _, p := range []*proc{raProc, ceilProc, sameProc, o2Proc} {
		if p.exited() {
			return nil, fmt.Errorf("%s exited during the bench: %w\n%s", p.name, p.waitErr, p.tail(20))
		}
	}
	return res, nil
}

// captureResponse sends t's request once and writes its status, headers
// (without Date and Content-Length, which net/http sets) and body to a file
// for the ceiling's -response.
func captureResponse(t wrkTarget, workDir string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, t.URL, nil)
	if err != nil {
		return "", err
	}
	for _, h := range t.Header {
		req.Header.Add(h[0], h[1])
	}
	resp, err := oneShot.Do(req)
	if err != nil {
		return "", err
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("capturing the static-token answer: status %d", resp.StatusCode)
	}
	hdr := resp.Header.Clone()
	hdr.Del("Date")
	hdr.Del("Content-Length")
	b, err := json.Marshal(map[string]any{"status": resp.StatusCode, "header": hdr, "body": body})
	if err != nil {
		return "", err
	}
	f := filepath.Join(workDir, "static-token-response.json")
	return f, os.WriteFile(f, b, 0o600)
}

// checkOnce sends the case's request once with a Go client and checks the
// exact status.
func checkOnce(c *tpCase) error {
	req, err := http.NewRequest(http.MethodGet, c.target.URL, nil)
	if err != nil {
		return err
	}
	for _, h := range c.target.Header {
		req.Header.Add(h[0], h[1])
	}
	resp, err := oneShot.Do(req)
	if err != nil {
		return fmt.Errorf("case %s: %w", c.Name, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_ = resp.Body.Close()
	if resp.StatusCode != c.wantStatus {
		return fmt.Errorf("case %s: status %d, want %d: %s", c.Name, resp.StatusCode, c.wantStatus, strings.TrimSpace(string(body)))
	}
	return nil
}

// checkStatuses checks wrk's counts: no socket error, and every response
// 2xx (cases that allow) or every response >= 400 (cases that deny).
// measureCase runs a case's warm-up and measured run against p, checks the
// status of every answer and, when metricsURL is set, that the server
// counted every request under the case's reason. started, if set, runs just
// before the measured run.
func measureCase(ctx context.Context, cfg config, workDir string, c *tpCase, p *proc, metricsURL string, started func()) (wrkResult, error) {
	wo := wrkOptions{Threads: cfg.threads, Connections: cfg.connections, Timeout: 5 * time.Second}
	var before map[string]float64
	var err error
	if metricsURL != "" {
		if before, err = scrapeDecisions(metricsURL); err != nil {
			return wrkResult{}, err
		}
	}
	var warm wrkResult
	if cfg.warmup > 0 {
		if warm, err = runWrk(ctx, workDir, wo, c.target, cfg.warmup); err != nil {
			return wrkResult{}, err
		}
	}
	if started != nil {
		started()
	}
	r, err := runWrkCPU(ctx, workDir, wo, c.target, cfg.duration, p)
	if err != nil {
		return wrkResult{}, err
	}
	if err := checkStatuses(c, warm, r); err != nil {
		return wrkResult{}, err
	}
	if metricsURL != "" {
		after, err := scrapeDecisions(metricsURL)
		if err != nil {
			return wrkResult{}, err
		}
		if err := checkDecisions(c, before, after, warm.Requests+r.Requests, int64(2*cfg.connections)); err != nil {
			return wrkResult{}, err
		}
	}
	return r, nil
}

// medians are the medians over rounds of requests/s, p50, p99 and server CPU
// per request.
func medians(rounds []wrkResult) (rps, p50, p99, cpu float64) {
	var r, a, b, c []float64
	for _, x := range rounds {
		r, a, b, c = append(r, x.RPS()), append(a, x.P50US), append(b, x.P99US), append(c, x.ServerCPUUS)
	}
	return median(r), median(a), median(b), median(c)
}

func checkStatuses(c *tpCase, runs ...wrkResult) error {
	for _, r := range runs {
		if r.Requests == 0 && r.DurationUS == 0 {
			continue // no warm-up
		}
		if r.Requests == 0 {
			return fmt.Errorf("case %s: wrk completed no request", c.Name)
		}
		if n := r.socketErrors(); n > 0 {
			return fmt.Errorf("case %s: %d socket errors (connect %d, read %d, write %d, timeout %d)", c.Name, n, r.Connect, r.Read, r.Write, r.Timeout)
		}
		switch {
		case c.wantStatus < 400 && r.Status != 0:
			return fmt.Errorf("case %s: %d of %d responses were not 2xx (want %d)", c.Name, r.Status, r.Requests, c.wantStatus)
		case c.wantStatus >= 400 && r.Status != r.Requests:
			return fmt.Errorf("case %s: %d of %d responses were not >= 400 (want %d)", c.Name, r.Requests-r.Status, r.Requests, c.wantStatus)
		}
	}
	return nil
}

// checkDecisions checks that the server counted every request of the case
// under the expected reason and none under another. Requests in flight when
// wrk stopped were decided but not counted by wrk: up to slack more.
func checkDecisions(c *tpCase, before, after map[string]float64, requests, slack int64) error {
	for reason, v := range after {
		d := int64(v - before[reason])
		if reason == c.wantReason {
			if d < requests || d > requests+slack {
				return fmt.Errorf("case %s: the server counted %d decisions %q, wrk %d requests", c.Name, d, reason, requests)
			}
			continue
		}
		if d != 0 {
			return fmt.Errorf("case %s: the server counted %d unexpected decisions %q (want only %q)", c.Name, d, reason, c.wantReason)
		}
	}
	if _, ok := after[c.wantReason]; !ok {
		return fmt.Errorf("case %s: no decision %q counted", c.Name, c.wantReason)
	}
	return nil
}
