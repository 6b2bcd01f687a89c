package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// The gRPC phase: one registry-auth --standalone serving both the HTTP
// check (Envoy's HTTP ext_authz form, /ext-authz) and Envoy's gRPC
// ext_authz (Authorization/Check), loaded in turn by the same Go load
// generator with the same allowed static-token check, so the two differ
// only in the protocol: HTTP/1.1 keep-alive connections against gRPC over
// a few HTTP/2 connections (as Envoy keeps one per worker thread). The
// measure that counts on two shared cores is the server's CPU time per
// check (the load generator runs on the same cores); throughput and
// latency percentiles are reported too.

const grpcConns = 2

type grpcCase struct {
	Name        string  `json:"name"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`
	RPS         float64 `json:"rps"`
	P50US       float64 `json:"p50_us"`
	P99US       float64 `json:"p99_us"`
	CPUPerReqUS float64 `json:"cpu_per_request_us"`
}

type grpcResult struct {
	Rounds      int        `json:"rounds"`
	Duration    string     `json:"duration"`
	Concurrency int        `json:"concurrency"`
	HTTP        []grpcCase `json:"http"`
	GRPC        []grpcCase `json:"grpc"`
	// Ratios are gRPC over HTTP of the medians.
	CPURatio float64 `json:"cpu_ratio"`
	RPSRatio float64 `json:"rps_ratio"`
}

// runGRPCPhase measures, writes grpc.md and grpc.json into out and returns
// its target.
func runGRPCPhase(ctx context.Context, cfg config, root, workDir, out string) ([]target, error) {
	bin := filepath.Join(workDir, "registry-auth-grpc")
	if cfg.binary != "" {
		bin = cfg.binary
	} else if err := goBuild(root, []string{"CGO_ENABLED=0"}, "-o", bin, "./cmd"); err != nil {
		return nil, err
	}
	token := randomHex(32)
	httpAddr, grpcAddr, probe := freeAddr(), freeAddr(), freeAddr()
	p, err := startProc("registry-auth-grpc", workDir, bin, []string{
		"--standalone", "--auth-bind-address", httpAddr, "--grpc-auth-bind-address", grpcAddr,
		"--health-probe-bind-address", probe, "--metrics-bind-address", "0", "--max-auth-failures=0",
	}, extraEnv(cfg, "registry-auth-grpc", map[string]string{
		"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true",
		"REGISTRY_API_TOKEN":                 token,
	}))
	if err != nil {
		return nil, err
	}
	defer p.Stop()
	if _, err := waitHTTP(p, "http://"+probe+"/readyz", http.StatusOK, 20*time.Millisecond, 30*time.Second, nil); err != nil {
		return nil, err
	}

	// HTTP: the check Envoy's HTTP ext_authz sends.
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: cfg.connections, MaxConnsPerHost: cfg.connections, DisableCompression: true}}
	httpCheck := func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/ext-authz/api/servers", nil)
		req.Host = "registry.example.com"
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP check: %d", resp.StatusCode)
		}
		return nil
	}
	// gRPC: the CheckRequest Envoy sends for the same request.
	var clients []authv3.AuthorizationClient
	for range grpcConns {
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		defer func() { _ = conn.Close() }()
		clients = append(clients, authv3.NewAuthorizationClient(conn))
	}
	checkReq := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
		Method: "GET", Scheme: "http", Host: "registry.example.com", Path: "/api/servers", Protocol: "HTTP/1.1",
		Headers: map[string]string{":authority": "registry.example.com", ":method": "GET", ":path": "/api/servers", ":scheme": "http",
			"authorization": "Bearer " + token, "user-agent": "bench", "x-forwarded-for": "192.0.2.10", "x-request-id": "0"},
	}}}}
	var next atomic.Uint64
	grpcCheck := func(ctx context.Context) error {
		c := clients[next.Add(1)%grpcConns]
		resp, err := c.Check(ctx, checkReq)
		if err != nil {
			return err
		}
		if resp.GetStatus().GetCode() != int32(codes.OK) {
			return fmt.Errorf("gRPC check: %v", resp.GetStatus())
		}
		return nil
	}

	res := &grpcResult{Rounds: cfg.rounds, Duration: cfg.duration.String(), Concurrency: cfg.connections}
	for round := 1; round <= cfg.rounds; round++ {
		for _, c := range []struct {
			name string
			f    func(context.Context) error
			into *[]grpcCase
		}{{"http /ext-authz", httpCheck, &res.HTTP}, {"grpc Authorization/Check", grpcCheck, &res.GRPC}} {
			if cfg.warmup > 0 {
				if _, err := loadFor(ctx, p, c.name, c.f, cfg.connections, cfg.warmup); err != nil {
					return nil, err
				}
			}
			r, err := loadFor(ctx, p, c.name, c.f, cfg.connections, cfg.duration)
			if err != nil {
				return nil, err
			}
			logf("round %d %-26s %8.0f req/s  p50 %s  p99 %s  %s CPU/check", round, c.name, r.RPS, fmtUS(r.P50US), fmtUS(r.P99US), fmtUS(r.CPUPerReqUS))
			*c.into = append(*c.into, r)
		}
	}
	med := func(cs []grpcCase, f func(grpcCase) float64) float64 {
		var xs []float64
		for _, c := range cs {
			xs = append(xs, f(c))
		}
		return median(xs)
	}
	cpu := func(c grpcCase) float64 { return c.CPUPerReqUS }
	rps := func(c grpcCase) float64 { return c.RPS }
	res.CPURatio = med(res.GRPC, cpu) / med(res.HTTP, cpu)
	res.RPSRatio = med(res.GRPC, rps) / med(res.HTTP, rps)
	t := []target{{
		Name:  "gRPC check CPU / HTTP check CPU",
		Goal:  "<= 1.5x",
		Value: fmt.Sprintf("%.2fx (%s vs %s per check)", res.CPURatio, fmtUS(med(res.GRPC, cpu)), fmtUS(med(res.HTTP, cpu))),
		Pass:  res.CPURatio <= 1.5,
	}}
	return t, writeGRPC(out, res, t)
}

// loadFor runs f from n goroutines for d and measures it, with the server's
// CPU time.
func loadFor(ctx context.Context, p *proc, name string, f func(context.Context) error, n int, d time.Duration) (grpcCase, error) {
	cpu0, err := cpuTime(p.Pid())
	if err != nil {
		return grpcCase{}, err
	}
	// A flag, not a deadline, ends the run: a check in flight at the end
	// completes (gRPC would fail it with its own DeadlineExceeded).
	var stop atomic.Bool
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	defer timer.Stop()
	var mu sync.Mutex
	var lat []float64
	var reqs, errs atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []float64
			for !stop.Load() && ctx.Err() == nil {
				t0 := time.Now()
				err := f(ctx)
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				reqs.Add(1)
				mine = append(mine, float64(time.Since(t0).Microseconds()))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, err := cpuTime(p.Pid())
	if err != nil {
		return grpcCase{}, err
	}
	if e := firstErr.Load(); e != nil && errs.Load() > reqs.Load()/100 {
		return grpcCase{}, fmt.Errorf("%s: %d errors, first: %v", name, errs.Load(), e)
	}
	sort.Float64s(lat)
	c := grpcCase{Name: name, Requests: reqs.Load(), Errors: errs.Load(), RPS: float64(reqs.Load()) / elapsed.Seconds(),
		P50US: percentile(lat, 50), P99US: percentile(lat, 99)}
	if c.Requests > 0 {
		c.CPUPerReqUS = float64((cpu1 - cpu0).Microseconds()) / float64(c.Requests)
	}
	return c, nil
}

func writeGRPC(dir string, r *grpcResult, ts []target) error {
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "grpc.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# gRPC ext_authz against the HTTP check\n\n")
	fmt.Fprintf(&b, "One `registry-auth --standalone`; the same allowed static-token check through Envoy's HTTP ext_authz route (`/ext-authz`, HTTP/1.1 keep-alive, %d connections) and through `Authorization/Check` (gRPC, %d HTTP/2 connections, %d checks in flight), from one Go load generator (`hack/bench/grpc.go`) on the same cores. %d rounds of %s; the medians. CPU per check is the server's (`/proc/<pid>/stat`) over the checks answered.\n\n",
		r.Concurrency, grpcConns, r.Concurrency, r.Rounds, r.Duration)
	fmt.Fprintf(&b, "| Case | Round | Checks/s | p50 | p99 | Server CPU per check |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, cs := range [][]grpcCase{r.HTTP, r.GRPC} {
		for i, c := range cs {
			fmt.Fprintf(&b, "| %s | %d | %.0f | %s | %s | %s |\n", c.Name, i+1, c.RPS, fmtUS(c.P50US), fmtUS(c.P99US), fmtUS(c.CPUPerReqUS))
		}
	}
	fmt.Fprintf(&b, "\ngRPC / HTTP: **%.2f×** the CPU per check, **%.2f×** the checks per second.\n\n", r.CPURatio, r.RPSRatio)
	b.WriteString(targetsMarkdown(ts))
	return os.WriteFile(filepath.Join(dir, "grpc.md"), []byte(b.String()), 0o644)
}
