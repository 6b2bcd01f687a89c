package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/test/e2e/nginxtest"
)

// Modes of the through-nginx cases.
const (
	// modeKeepalive: ingress-nginx's auth-keepalive (an upstream block with
	// a pool of connections to the auth service).
	modeKeepalive = "keepalive"
	// modeNoKeepalive: ingress-nginx's default, a connection per check.
	modeNoKeepalive = "no keepalive"
	// modeSelf: nginx answers the auth subrequest itself.
	modeSelf = "nginx itself"
	// modeDirectClose: wrk straight to the auth service, one connection
	// per request (Connection: close): what a connection costs the auth
	// service, accept to answer.
	modeDirectClose = "direct, a connection per check"
)

// Auth servers of the through-nginx cases.
const (
	authNginx = "nginx"
	authBare  = "bare net/http"
	authRA    = "registry-auth"
	authO2    = "oauth2-proxy"
)

// ngCase is one through-nginx case: wrk → nginx → (auth_request) → the
// auth service, and nginx → the echo backend.
type ngCase struct {
	Name string `json:"name"`
	Auth string `json:"auth"`
	Mode string `json:"mode"`
	What string `json:"what"`

	Rounds []wrkResult `json:"rounds"`
	// Accepted is, per round, the connections the auth service accepted
	// during the measured run (-1: not known).
	Accepted []int64 `json:"accepted"`

	RPS   float64 `json:"rps"`
	P50US float64 `json:"p50_us"`
	P99US float64 `json:"p99_us"`
	// CPUUS is the auth service's CPU time per check (0: not measured).
	CPUUS float64 `json:"auth_cpu_us_per_request"`
	// VsBare is the median over the rounds of this case's requests/s over
	// the mean of the bare server's runs of the same mode and round.
	VsBare float64 `json:"rps_vs_bare"`
	// CPUVsBare is the same ratio of the auth service's CPU per check: less
	// disturbed by other load on the machine than requests/s.
	CPUVsBare float64 `json:"cpu_vs_bare"`
	// ConnsPer1000 is the median over the rounds of the connections the
	// auth service accepted per 1,000 checks (-1: not known).
	ConnsPer1000 float64 `json:"accepted_per_1000_checks"`

	tp         *tpCase
	proc       *proc
	metricsURL string
	accepted   func() (int64, error)
	ng         *nginxtest.Nginx
}

type nginxResult struct {
	NginxVersion string    `json:"nginx_version"`
	Cases        []*ngCase `json:"cases"`
}

func (r *nginxResult) get(name string) *ngCase {
	for _, c := range r.Cases {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// runNginx measures the auth services behind a real nginx configured as
// ingress-nginx configures an Ingress with auth-url (test/e2e/nginxtest),
// with and without upstream keepalive to the auth service.
func runNginx(ctx context.Context, cfg config, bin binaries, workDir string) (*nginxResult, error) {
	ngBin, err := nginxtest.Lookup()
	if err != nil {
		return nil, err
	}
	issuer, err := authtest.StartIssuer()
	if err != nil {
		return nil, err
	}
	defer issuer.Close()

	staticToken, apiKey := randomHex(32), randomHex(32)
	secretKey := randomAlnum(48)
	claims := issuer.Claims(benchAudience, "alice", []string{"dev"}, 3*time.Hour)
	claims["email"], claims["email_verified"] = "alice@bench.test", true
	jwt := issuer.Sign(claims)
	cookie := authtest.SessionCookie([]byte(secretKey), map[string]any{
		"username": "alice", "groups": []string{"dev"}, "auth_method": "oauth2", "provider": "keycloak",
	}, time.Now())

	ra := struct{ auth, probe, metrics string }{freeAddr(), freeAddr(), freeAddr()}
	raProc, err := startProc("registry-auth-nginx", workDir, bin.registryAuth, []string{
		"--standalone",
		"--auth-bind-address", ra.auth,
		"--health-probe-bind-address", ra.probe,
		"--metrics-bind-address", ra.metrics,
		"--max-auth-failures=0",
	}, extraEnv(cfg, "registry-auth-nginx", map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_TOKEN":                 staticToken,
		"REGISTRY_API_KEYS":                  `[{"name":"reader","key":"` + apiKey + `","methods":["GET"]}]`,
		"SECRET_KEY":                         secretKey,
		"OIDC_ISSUER_URL":                    issuer.URL(),
		"OIDC_CLIENT_ID":                     benchAudience,
	}))
	if err != nil {
		return nil, err
	}
	defer raProc.Stop()

	ceilAddr, ceilStats := freeAddr(), freeAddr()
	ceilProc, err := startProc("ceiling-nginx", workDir, bin.ceiling, []string{"-addr", ceilAddr, "-stats-addr", ceilStats}, nil)
	if err != nil {
		return nil, err
	}
	defer ceilProc.Stop()

	o2Addr := freeAddr()
	o2Proc, err := startProc("oauth2-proxy-nginx", workDir, bin.oauth2Proxy, []string{
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
		{ceilProc, "http://" + ceilStats + "/connections"},
		{o2Proc, "http://" + o2Addr + "/ping"},
	} {
		if _, err := waitHTTP(w.p, w.url, http.StatusOK, 20*time.Millisecond, 30*time.Second, nil); err != nil {
			return nil, err
		}
	}

	// One nginx per auth URL and mode, each with one worker, as
	// nginxtest renders it.
	nginxes := map[string]*nginxtest.Nginx{}
	launch := func(key string, opts nginxtest.Options) (*nginxtest.Nginx, error) {
		dir := filepath.Join(workDir, "nginx-"+key)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		n, err := nginxtest.Launch(opts, dir, logf)
		if err != nil {
			return nil, fmt.Errorf("nginx %s: %w", key, err)
		}
		nginxes[key] = n
		return n, nil
	}
	defer func() {
		for _, n := range nginxes {
			n.Close()
		}
	}()
	self, err := launch("self", nginxtest.Options{AuthSelf: true})
	if err != nil {
		return nil, err
	}
	type backend struct {
		key, url string
		proc     *proc
		accepted func() (int64, error)
		metrics  string
	}
	raMetrics := "http://" + ra.metrics + "/metrics"
	backends := []backend{
		{"bare", "http://" + ceilAddr + "/validate", ceilProc, ceilingAccepted("http://" + ceilStats + "/connections"), ""},
		{"ra", "http://" + ra.auth + "/validate", raProc, metricCounter(raMetrics, "registry_auth_connections_accepted_total"), raMetrics},
		{"o2", "http://" + o2Addr + "/oauth2/auth", o2Proc, nil, ""},
	}
	byKey := map[string]backend{}
	for _, b := range backends {
		byKey[b.key] = b
		for _, ka := range []bool{true, false} {
			key := b.key + "-" + modeKey(ka)
			// auth-keepalive sized for the load: a pool smaller than the
			// checks in flight (wrk's connections) makes nginx close what
			// a burst opened, a cost of nginx's configuration that falls
			// on any auth service alike.
			opts := nginxtest.Options{AuthURL: b.url, Keepalive: ka, KeepaliveConnections: 2 * cfg.connections}
			if _, err := launch(key, opts); err != nil {
				return nil, err
			}
		}
	}

	through := func(n *nginxtest.Nginx, path string, hdr ...[2]string) wrkTarget {
		// The client's request: Host and its credential; nginx adds the
		// X-Original-URL and friends to the auth subrequest.
		return wrkTarget{URL: n.URL() + path, Header: append([][2]string{{"Host", benchHost}}, hdr...)}
	}
	res := &nginxResult{NginxVersion: nginxVersion(ngBin)}
	res.Cases = append(res.Cases, &ngCase{Name: "nginx_self", Auth: authNginx, Mode: modeSelf,
		What: "the auth location answers `return 200;` itself: the limit of auth_request on this machine",
		tp:   &tpCase{target: through(self, "/api/servers", [2]string{"Authorization", "Bearer " + staticToken}), wantStatus: 200},
		ng:   self})
	for _, ka := range []bool{true, false} {
		mode, mk := modeNoKeepalive, modeKey(ka)
		if ka {
			mode = modeKeepalive
		}
		add := func(name, be, auth, what, path string, wantReason string, hdr [2]string) {
			b := byKey[be]
			n := nginxes[be+"-"+mk]
			res.Cases = append(res.Cases, &ngCase{Name: name + "_" + mk, Auth: auth, Mode: mode, What: what,
				tp:   &tpCase{target: through(n, path, hdr), wantStatus: 200, wantReason: wantReason},
				proc: b.proc, metricsURL: b.metrics, accepted: b.accepted, ng: n})
		}
		add("bare", "bare", authBare, "hack/bench/ceiling: 200, one header, no body", "/api/servers", "", [2]string{"Authorization", "Bearer " + staticToken})
		add("static_token", "ra", authRA, "registry-auth --standalone, static token on /api/servers", "/api/servers", "static_token", [2]string{"Authorization", "Bearer " + staticToken})
		add("api_key", "ra", authRA, "registry-auth, API key (GET only) on /api/servers", "/api/servers", "api_key", [2]string{"Authorization", "Bearer " + apiKey})
		add("oidc_jwt", "ra", authRA, "registry-auth, RS256 IdP JWT on /mcpserver/mcp", "/mcpserver/mcp", "oidc", [2]string{"Authorization", "Bearer " + jwt})
		add("session", "ra", authRA, "registry-auth, session cookie on /mcpserver/mcp", "/mcpserver/mcp", "session", [2]string{"Cookie", "mcp_gateway_session=" + cookie})
		add("oauth2_proxy_jwt", "o2", authO2, "oauth2-proxy "+oauth2ProxyVersion+" /oauth2/auth, same JWT (202)", "/mcpserver/mcp", "", [2]string{"Authorization", "Bearer " + jwt})
	}
	// Direct, a connection per check: the sanitising listener, accept to
	// answer, without nginx in the way.
	closeHdr := func(h [][2]string) [][2]string { return withHeader(h, "Connection", "close") }
	api := nginxHeaders("/api/servers")
	res.Cases = append(res.Cases,
		&ngCase{Name: "bare_direct_close", Auth: authBare, Mode: modeDirectClose, What: "wrk straight to the bare server, Connection: close",
			tp:   &tpCase{target: wrkTarget{URL: "http://" + ceilAddr + "/validate", Header: closeHdr(withHeader(api, "Authorization", "Bearer "+staticToken))}, wantStatus: 200},
			proc: ceilProc, accepted: byKey["bare"].accepted},
		&ngCase{Name: "static_token_direct_close", Auth: authRA, Mode: modeDirectClose, What: "wrk straight to registry-auth, static token, Connection: close",
			tp:   &tpCase{target: wrkTarget{URL: "http://" + ra.auth + "/validate", Header: closeHdr(withHeader(api, "Authorization", "Bearer "+staticToken))}, wantStatus: 200, wantReason: "static_token"},
			proc: raProc, metricsURL: raMetrics, accepted: byKey["ra"].accepted},
	)
	if cfg.cases != "" {
		want := strings.Split(cfg.cases, ",")
		res.Cases = slices.DeleteFunc(res.Cases, func(c *ngCase) bool {
			return !slices.Contains(want, c.Name) && !strings.HasPrefix(c.Name, "bare_")
		})
	}
	for _, c := range res.Cases {
		c.tp.Name = c.Name
		if err := checkOnce(c.tp); err != nil {
			return nil, err
		}
	}

	for round := 1; round <= cfg.rounds; round++ {
		for _, c := range nginxOrder(res.Cases, round) {
			r, acc, err := measureNginxCase(ctx, cfg, workDir, c)
			if err != nil {
				return nil, err
			}
			r.Round = round
			c.Rounds = append(c.Rounds, r)
			c.Accepted = append(c.Accepted, acc)
			conns := "–"
			if acc >= 0 {
				conns = fmt.Sprintf("%.1f", 1000*float64(acc)/float64(max(r.Requests, 1)))
			}
			logf("round %d/%d %-34s %9.0f req/s  p50 %7s  p99 %7s  auth CPU %5.1fµs/req  conns/1000 %s", round, cfg.rounds, c.Name, r.RPS(), fmtUS(r.P50US), fmtUS(r.P99US), r.ServerCPUUS, conns)
		}
	}
	for _, c := range res.Cases {
		c.RPS, c.P50US, c.P99US, c.CPUUS = medians(c.Rounds)
		c.ConnsPer1000 = -1
		var per []float64
		for i, a := range c.Accepted {
			if a >= 0 {
				per = append(per, 1000*float64(a)/float64(max(c.Rounds[i].Requests, 1)))
			}
		}
		if len(per) > 0 {
			c.ConnsPer1000 = median(per)
		}
		c.VsBare = vsBare(res, c)
		c.CPUVsBare = vsBareBy(res, c, cpu)
	}
	for _, p := range []*proc{raProc, ceilProc, o2Proc} {
		if p.exited() {
			return nil, fmt.Errorf("%s exited during the bench: %w\n%s", p.name, p.waitErr, p.tail(20))
		}
	}
	return res, nil
}

func modeKey(keepalive bool) string {
	if keepalive {
		return "keepalive"
	}
	return "close"
}

// nginxOrder is the order of one round: nginx itself, then each mode's
// block — the bare server, the mode's other cases (starting at a different
// one each round), the bare server again — with the modes' order
// alternating between rounds. Every case of a mode lies between two runs
// of the bare server of that mode, its reference.
func nginxOrder(cases []*ngCase, round int) []*ngCase {
	var order []*ngCase
	modes := []string{modeKeepalive, modeNoKeepalive, modeDirectClose}
	if round%2 == 0 {
		modes = []string{modeDirectClose, modeNoKeepalive, modeKeepalive}
	}
	for _, c := range cases {
		if c.Mode == modeSelf {
			order = append(order, c)
		}
	}
	for _, m := range modes {
		var bare *ngCase
		var others []*ngCase
		for _, c := range cases {
			switch {
			case c.Mode != m:
			case c.Auth == authBare:
				bare = c
			default:
				others = append(others, c)
			}
		}
		if len(others) > 0 {
			shift := (round - 1) % len(others)
			others = append(slices.Clone(others[shift:]), others[:shift]...)
		}
		if bare != nil {
			order = append(order, bare)
		}
		order = append(order, others...)
		if bare != nil && len(others) > 0 {
			order = append(order, bare)
		}
	}
	return order
}

// vsBare is the median over the rounds of c's requests/s over the mean of
// the bare server's runs of c's mode in the same round.
func vsBare(r *nginxResult, c *ngCase) float64 { return vsBareBy(r, c, rps) }

// vsBareBy is vsBare of f.
func vsBareBy(r *nginxResult, c *ngCase, f func(wrkResult) float64) float64 {
	var bare *ngCase
	for _, x := range r.Cases {
		if x.Mode == c.Mode && x.Auth == authBare {
			bare = x
		}
	}
	if bare == nil {
		return 0
	}
	if bare == c {
		return 1
	}
	return pairedRounds(c.Rounds, bare.Rounds, f)
}

// measureNginxCase runs one case (warm-up, measured run), checks every
// answer (wrk's statuses, registry-auth's decisions, the echo backend's
// hits) and counts the connections the auth service accepted during the
// measured run (-1 when it cannot tell).
func measureNginxCase(ctx context.Context, cfg config, workDir string, c *ngCase) (wrkResult, int64, error) {
	var accBefore, hitsBefore int64 = -1, 0
	var startErr error
	r, err := measureCase(ctx, cfg, workDir, c.tp, c.proc, c.metricsURL, func() {
		if c.accepted != nil {
			accBefore, startErr = c.accepted()
		}
		if c.ng != nil {
			hitsBefore = c.ng.UpstreamHits()
		}
	})
	if err == nil {
		err = startErr
	}
	if err != nil {
		return wrkResult{}, 0, err
	}
	acc := int64(-1)
	if c.accepted != nil {
		after, err := c.accepted()
		if err != nil {
			return wrkResult{}, 0, err
		}
		acc = after - accBefore
	}
	if c.ng != nil {
		// Every check that nginx allowed reached the echo backend (and
		// requests in flight when wrk stopped may have too).
		if hits := c.ng.UpstreamHits() - hitsBefore; hits < r.Requests {
			return wrkResult{}, 0, fmt.Errorf("case %s: the backend behind nginx saw %d requests, wrk completed %d", c.Name, hits, r.Requests)
		}
		// The access log grows by a line per request: keep the disk free.
		_ = os.Truncate(filepath.Join(c.ng.Dir(), "access.log"), 0)
	}
	return r, acc, nil
}

// ceilingAccepted reads the bare server's count of accepted connections.
func ceilingAccepted(url string) func() (int64, error) {
	return func() (int64, error) {
		resp, err := oneShot.Get(url)
		if err != nil {
			return 0, err
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, err
		}
		return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
}

// metricCounter reads one unlabelled sample from a /metrics.
func metricCounter(metricsURL, name string) func() (int64, error) {
	return func() (int64, error) {
		v, found := 0.0, false
		err := scrapeLines(metricsURL, func(line string) error {
			if rest, ok := strings.CutPrefix(line, name+" "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
				if err != nil {
					return err
				}
				v, found = f, true
			}
			return nil
		})
		if err == nil && !found {
			err = fmt.Errorf("%s: no sample %s", metricsURL, name)
		}
		return int64(v), err
	}
}

func nginxVersion(bin string) string {
	out, err := exec.Command(bin, "-v").CombinedOutput()
	if err != nil {
		return "nginx (unknown version)"
	}
	return strings.TrimSpace(strings.TrimPrefix(string(out), "nginx version: "))
}

// raCasesOf are the registry-auth cases of a mode through nginx.
func (r *nginxResult) raCasesOf(mode string) []*ngCase {
	var out []*ngCase
	for _, c := range r.Cases {
		if c.Mode == mode && c.Auth == authRA {
			out = append(out, c)
		}
	}
	return out
}

func nginxTargets(r *nginxResult) []target {
	var ts []target
	for _, mode := range []string{modeKeepalive, modeNoKeepalive} {
		cs := r.raCasesOf(mode)
		if len(cs) == 0 {
			continue
		}
		// The slowest registry-auth case decides: a user runs every kind
		// of credential.
		low := cs[0]
		var parts []string
		for _, c := range cs {
			if c.VsBare < low.VsBare {
				low = c
			}
			parts = append(parts, fmt.Sprintf("%s %.2f×", strings.TrimSuffix(strings.TrimSuffix(c.Name, "_keepalive"), "_close"), c.VsBare))
		}
		ts = append(ts, target{fmt.Sprintf("through nginx, %s: registry-auth ÷ bare server (slowest case)", mode), "≥ 0.90×",
			fmt.Sprintf("%.2f× (%s)", low.VsBare, strings.Join(parts, ", ")), low.VsBare >= 0.90})
	}
	if cs := r.raCasesOf(modeKeepalive); len(cs) > 0 {
		high := cs[0]
		var parts []string
		for _, c := range cs {
			if c.ConnsPer1000 > high.ConnsPer1000 {
				high = c
			}
			parts = append(parts, fmt.Sprintf("%s %.2f", strings.TrimSuffix(c.Name, "_keepalive"), c.ConnsPer1000))
		}
		ts = append(ts, target{"through nginx, keepalive: connections registry-auth accepted per 1,000 checks (most)", "≤ 2",
			fmt.Sprintf("%.2f (%s)", high.ConnsPer1000, strings.Join(parts, ", ")), high.ConnsPer1000 >= 0 && high.ConnsPer1000 <= 2})
	}
	for _, mk := range []string{"keepalive", "close"} {
		jwt, o2 := r.get("oidc_jwt_"+mk), r.get("oauth2_proxy_jwt_"+mk)
		if jwt == nil || o2 == nil {
			continue
		}
		x := pairedRounds(jwt.Rounds, o2.Rounds, rps)
		ts = append(ts, target{fmt.Sprintf("through nginx, %s: JWT ÷ oauth2-proxy", jwt.Mode), "≥ 4×",
			fmt.Sprintf("%.2f× (%.0f vs %.0f req/s)", x, jwt.RPS, o2.RPS), x >= 4})
	}
	if ra, bare := r.get("static_token_direct_close"), r.get("bare_direct_close"); ra != nil && bare != nil {
		ts = append(ts, target{"a connection per check, direct: registry-auth ÷ bare server", "≥ 0.90×",
			fmt.Sprintf("%.2f× (%.0f vs %.0f req/s; CPU per connection and check %.1f vs %.1f µs)", ra.VsBare, ra.RPS, bare.RPS, ra.CPUUS, bare.CPUUS), ra.VsBare >= 0.90})
	}
	return ts
}

func writeNginx(dir string, cfg config, r *nginxResult, ts []target) error {
	var b strings.Builder
	b.WriteString("# Through nginx: what a user sees\n\n")
	fmt.Fprintf(&b, "wrk (-t%d -c%d, keep-alive to nginx) → %s (Debian's package, one worker, the configuration ingress-nginx renders for an Ingress with `auth-url`: test/e2e/nginxtest) → `auth_request` to the auth service, and nginx → an echo backend. %v measured after a %v warm-up per case, %d rounds; medians. One run on the machine in [machine.md](machine.md).\n\n",
		cfg.threads, cfg.connections, r.NginxVersion, cfg.duration, cfg.warmup, cfg.rounds)
	b.WriteString("| case | auth service | nginx → auth service | requests/s | p50 | p99 | ÷ bare server, same mode | auth CPU per check | CPU ÷ bare server | connections accepted per 1,000 checks |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range r.Cases {
		vs, cpu, cpuVs, conns := "–", "–", "–", "–"
		if c.Mode != modeSelf {
			vs = fmt.Sprintf("%.2f", c.VsBare)
		}
		if c.CPUUS > 0 {
			cpu = fmt.Sprintf("%.1f µs", c.CPUUS)
			cpuVs = fmt.Sprintf("%.2f", c.CPUVsBare)
		}
		if c.ConnsPer1000 >= 0 {
			conns = fmt.Sprintf("%.2f", c.ConnsPer1000)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %s |\n", c.Name, c.Auth, c.Mode, c.RPS, fmtUS(c.P50US), fmtUS(c.P99US), vs, cpu, cpuVs, conns)
	}
	b.WriteString("\n- **÷ bare server**: the median over the rounds of the case's requests/s over the mean of that round's two runs of the bare server in the same mode (each mode's cases run between them).\n")
	b.WriteString("- **connections accepted per 1,000 checks**: from `registry_auth_connections_accepted_total` for registry-auth and a counter in the bare server, during the measured run; oauth2-proxy has no such counter. With keepalive nginx keeps a pool of twice wrk's connections (ingress-nginx's `auth-keepalive`; a pool smaller than the checks in flight makes nginx close the connections a burst opened, whatever the auth service) for `auth-keepalive-requests` 1,000 requests each, so 1 per 1,000 is the floor; without, it opens one per check.\n")
	b.WriteString("- **auth CPU per check**: the auth service's user+system CPU during the measured run over the requests; nginx and the echo backend (in the bench process) are not counted. **CPU ÷ bare server** is its ratio to the bare server's, paired like requests/s: the number least disturbed by other load on the machine.\n")
	b.WriteString("- The `direct` cases are wrk straight to the auth service with `Connection: close`: a connection per check, accept to answer, without nginx (registry-auth's sanitising listener and connection tracking against net/http's bare accept).\n")
	b.WriteString("\n## Targets\n\n")
	b.WriteString(targetsMarkdown(ts))
	b.WriteString("\n## Every round\n\nrequests/s, p99 (µs) per round; the bare server ran twice a round in each mode.\n\n")
	rows := make([]roundsRow, 0, len(r.Cases))
	for _, c := range r.Cases {
		rows = append(rows, roundsRow{c.Name, c.Rounds})
	}
	writeRoundsTable(&b, "case", "---", cfg.rounds, rows)
	b.WriteString("\n## Cases\n\n")
	for _, c := range r.Cases {
		fmt.Fprintf(&b, "- **%s** (%s, %s): %s.\n", c.Name, c.Auth, c.Mode, c.What)
	}
	b.WriteString("\nEvery response was checked: one request with a Go client for the status first; then wrk's count of responses ≥ 400 (0), no socket error, the echo backend's count of requests (at least wrk's), and for registry-auth the delta of `registry_auth_decisions_total` by reason.\n")
	if err := writeFile(dir, "nginx.md", []byte(b.String())); err != nil {
		return err
	}
	return writeJSON(dir, "nginx.json", r)
}

// nginxSummary is the head of targets.md: the through-nginx ratios, what a
// user sees.
func nginxSummary(r *nginxResult) string {
	var b strings.Builder
	b.WriteString("## Through nginx (what a user sees; details in [nginx.md](nginx.md))\n\n")
	b.WriteString("| auth subrequest answered by | keepalive: req/s | ÷ bare | CPU ÷ bare | conns per 1,000 checks | no keepalive: req/s | ÷ bare | CPU ÷ bare | conns per 1,000 checks |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	cell := func(c *ngCase) string {
		if c == nil {
			return "– | – | – | –"
		}
		conns, cpu := "–", "–"
		if c.ConnsPer1000 >= 0 {
			conns = fmt.Sprintf("%.2f", c.ConnsPer1000)
		}
		if c.CPUUS > 0 {
			cpu = fmt.Sprintf("%.2f×", c.CPUVsBare)
		}
		return fmt.Sprintf("%.0f | %.2f× | %s | %s", c.RPS, c.VsBare, cpu, conns)
	}
	if self := r.get("nginx_self"); self != nil {
		fmt.Fprintf(&b, "| nginx itself (`return 200`: the limit) | %.0f | – | – | – | – | – | – | – |\n", self.RPS)
	}
	for _, row := range [][2]string{
		{"bare", "bare net/http server (200, one header, no body)"},
		{"static_token", "registry-auth, static token"},
		{"api_key", "registry-auth, API key"},
		{"oidc_jwt", "registry-auth, JWT"},
		{"session", "registry-auth, session cookie"},
		{"oauth2_proxy_jwt", "oauth2-proxy " + oauth2ProxyVersion + ", same JWT"},
	} {
		ka, cl := r.get(row[0]+"_keepalive"), r.get(row[0]+"_close")
		if ka == nil && cl == nil {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", row[1], cell(ka), cell(cl))
	}
	return b.String() + "\n"
}
