package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
)

// scaleRun is one operator process with a number of policies.
type scaleRun struct {
	Policies  int     `json:"policies"`
	Namespace string  `json:"namespace"`
	ReadyMS   float64 `json:"ready_ms"`
	// SettledMS is from process start until the leader has written a
	// Ready=True status on every policy (the start-up's background work).
	SettledMS   float64     `json:"settled_ms"`
	RSSReadyKiB int64       `json:"rss_ready_kib"`
	RSSLoadKiB  int64       `json:"rss_load_kib"`
	HWMKiB      int64       `json:"hwm_kib"`
	Rounds      []wrkResult `json:"rounds"`
	RPS         float64     `json:"rps"`
	P50US       float64     `json:"p50_us"`
	P99US       float64     `json:"p99_us"`
	CPUUS       float64     `json:"server_cpu_us_per_request"`

	rep     *replica
	names   []string
	tokens  []string
	target  wrkTarget
	setupMS float64
}

type scaleResult struct {
	Runs    []*scaleRun `json:"runs"`
	SetupMS float64     `json:"setup_ms"` // creating the policies
}

// many are the runs with many policies, one the reference with 1.
func (r *scaleResult) many() []*scaleRun { return r.Runs[:len(r.Runs)-1] }
func (r *scaleResult) one() *scaleRun    { return r.Runs[len(r.Runs)-1] }

// policyCounts parses -policies: comma-separated counts above 1, largest
// first.
func policyCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			return nil, fmt.Errorf("-policies %q: want comma-separated counts above 1", s)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	slices.Reverse(out)
	return out, nil
}

func runScale(ctx context.Context, cfg config, bin binaries, k *kube, workDir string) (*scaleResult, error) {
	counts, err := policyCounts(cfg.policies)
	if err != nil {
		return nil, err
	}
	res := &scaleResult{}
	for _, n := range counts {
		res.Runs = append(res.Runs, &scaleRun{Policies: n, Namespace: "scale-" + strconv.Itoa(n)})
	}
	one := &scaleRun{Policies: 1, Namespace: "scale-1"}
	res.Runs = append(res.Runs, one)
	for _, s := range res.Runs {
		if err := k.createNamespace(ctx, s.Namespace); err != nil {
			return nil, err
		}
		hosts := make([]string, s.Policies)
		for i := 0; i < s.Policies; i++ {
			s.names = append(s.names, fmt.Sprintf("p%04d", i))
			s.tokens = append(s.tokens, randomHex(32))
			hosts[i] = s.names[i] + "." + s.Namespace + ".bench"
		}
		begin := time.Now()
		if err := k.createPolicies(ctx, s.Namespace, s.names, hosts, s.tokens, 16); err != nil {
			return nil, err
		}
		s.setupMS = ms(time.Since(begin))
		res.SetupMS += s.setupMS
		if s != one {
			logf("created %d policies and %d Secrets in %.1fs", s.Policies, s.Policies, s.setupMS/1000)
		}
	}

	// Start each process alone, so its start-up is measured on a quiet
	// machine, and leave it running.
	for _, s := range res.Runs {
		rep, err := startOperator(cfg, bin, k, workDir, "operator-scale-"+strconv.Itoa(s.Policies), s.Namespace, "--namespace", s.Namespace)
		if err != nil {
			return nil, err
		}
		s.rep = rep
		defer rep.p.Stop()
		// With -pprof, a CPU profile of the start-up: from as soon as the
		// profiler answers, for -startup-profile.
		var startup <-chan error
		if cfg.pprof && cfg.startupProfile > 0 {
			startup = profileStartup(rep, workDir, "scale_"+strconv.Itoa(s.Policies)+"-startup", cfg.startupProfile)
		}
		ready, err := waitHTTP(rep.p, "http://"+rep.probe+"/readyz", http.StatusOK, 25*time.Millisecond, 10*time.Minute, nil)
		if err != nil {
			return nil, err
		}
		s.ReadyMS = ms(ready)
		saveMetrics(rep, workDir, "ready")
		if s.RSSReadyKiB, _, err = rssKiB(rep.p.Pid()); err != nil {
			return nil, err
		}
		logf("%d policies: ready %.2fs after start, RSS %.1f MiB", s.Policies, s.ReadyMS/1000, float64(s.RSSReadyKiB)/1024)
		// Every policy answers.
		for _, i := range []int{0, s.Policies / 2, s.Policies - 1} {
			url := "http://" + rep.auth + "/validate/" + s.Namespace + "/" + s.names[i]
			if _, err := waitHTTP(nil, url, http.StatusOK, 20*time.Millisecond, 10*time.Second, rotationHeader("any.bench", s.tokens[i])); err != nil {
				return nil, err
			}
		}
		s.target = scaleTarget(s)
		if err := saveProfile(rep, workDir, "scale_"+strconv.Itoa(s.Policies)+"-ready", "heap", "", time.Minute); err != nil {
			return nil, err
		}
		// The next process starts once this leader has written every
		// policy's status (the start-up's background work), and the load
		// once every leader has: neither overlaps with a start-up's API
		// traffic.
		settled, err := waitStatuses(ctx, k, s, 20*time.Minute)
		if err != nil {
			return nil, err
		}
		s.SettledMS = ms(settled)
		saveMetrics(s.rep, workDir, "settled")
		logf("%d policies: every status Ready %.2fs after start", s.Policies, s.SettledMS/1000)
		if err := saveProfile(s.rep, workDir, fmt.Sprintf("scale_%d-settled", s.Policies), "heap", "", time.Minute); err != nil {
			return nil, err
		}
		if startup != nil {
			if err := <-startup; err != nil {
				return nil, err
			}
		}
	}
	time.Sleep(time.Second)

	for round := 1; round <= cfg.rounds; round++ {
		order := res.Runs
		if round%2 == 0 {
			order = slices.Clone(res.Runs)
			slices.Reverse(order)
		}
		for _, s := range order {
			c := &tpCase{Name: fmt.Sprintf("scale_%d", s.Policies), target: s.target, wantStatus: 200, wantReason: "static_token"}
			name := fmt.Sprintf("%s-round%d", c.Name, round)
			var profiled <-chan error
			r, err := measureCase(ctx, cfg, workDir, c, s.rep.p, "http://"+s.rep.metrics+"/metrics", func() {
				profiled = profileCPU(s.rep, workDir, name, cfg.duration)
			})
			if profiled != nil {
				if perr := <-profiled; err == nil {
					err = perr
				}
			}
			if err != nil {
				return nil, err
			}
			if err := saveProfile(s.rep, workDir, name, "heap", "", time.Minute); err != nil {
				return nil, err
			}
			r.Round = round
			s.Rounds = append(s.Rounds, r)
			logf("round %d/%d %5d policies %9.0f req/s  p50 %7s  p99 %7s  server CPU %5.1fµs/req", round, cfg.rounds, s.Policies, r.RPS(), fmtUS(r.P50US), fmtUS(r.P99US), r.ServerCPUUS)
		}
	}
	for _, s := range res.Runs {
		s.RPS, s.P50US, s.P99US, s.CPUUS = medians(s.Rounds)
		var err error
		if s.RSSLoadKiB, s.HWMKiB, err = rssKiB(s.rep.p.Pid()); err != nil {
			return nil, err
		}
		if s.rep.p.exited() {
			return nil, fmt.Errorf("%s exited: %w\n%s", s.rep.p.name, s.rep.p.waitErr, s.rep.p.tail(20))
		}
	}
	return res, nil
}

// waitStatuses waits until every policy of s has a Ready=True condition for
// its current generation, and returns when, from the process start.
func waitStatuses(ctx context.Context, k *kube, s *scaleRun, timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for {
		var list authv1alpha1.RegistryAuthPolicyList
		if err := k.client.List(ctx, &list, client.InNamespace(s.Namespace)); err != nil {
			return 0, err
		}
		ready := 0
		for i := range list.Items {
			p := &list.Items[i]
			if c := meta.FindStatusCondition(p.Status.Conditions, authv1alpha1.ConditionReady); c != nil &&
				c.Status == metav1.ConditionTrue && p.Status.ObservedGeneration == p.Generation {
				ready++
			}
		}
		if ready == s.Policies {
			return time.Since(s.rep.p.started), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d of %d policies in %s have a Ready status after %v\n%s", ready, s.Policies, s.Namespace, timeout, s.rep.p.tail(20))
		}
		if s.rep.p.exited() {
			return 0, fmt.Errorf("%s exited: %w\n%s", s.rep.p.name, s.rep.p.waitErr, s.rep.p.tail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scaleTarget is a wrk script that sends each request to
// /validate/{namespace}/{name} of a random policy with that policy's token.
// The requests are formatted once per wrk thread in init(); request() only
// picks one.
func scaleTarget(s *scaleRun) wrkTarget {
	var b strings.Builder
	b.WriteString("local targets = {\n")
	for i, n := range s.names {
		fmt.Fprintf(&b, "  {%q, %q},\n", "/validate/"+s.Namespace+"/"+n, "Bearer "+s.tokens[i])
	}
	b.WriteString("}\n")
	fmt.Fprintf(&b, `
local reqs = {}
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("seed", %d + threads)
end
init = function(args)
  math.randomseed(seed)
  local h = {}
  for _, kv in ipairs(extra_headers) do h[kv[1]] = kv[2] end
  for i, t in ipairs(targets) do
    h["Authorization"] = t[2]
    reqs[i] = wrk.format("GET", t[1], h)
  end
end
request = function()
  return reqs[math.random(#reqs)]
end
`, rand.Uint32())
	var hb strings.Builder
	hb.WriteString("extra_headers = {\n")
	for _, h := range nginxHeaders("/api/servers") {
		fmt.Fprintf(&hb, "  {%q, %q},\n", h[0], h[1])
	}
	hb.WriteString("}\n")
	return wrkTarget{URL: "http://" + s.rep.auth + "/validate", Lua: hb.String() + b.String()}
}

// profileStartup takes a CPU profile of the replica's first d, from as soon
// as its profiler answers, into <workDir>/<name>.cpu.pprof.
func profileStartup(rep *replica, workDir, name string, d time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(30 * time.Second)
		for {
			c, err := net.DialTimeout("tcp", rep.pprof, time.Second)
			if err == nil {
				_ = c.Close()
				break
			}
			if time.Now().After(deadline) {
				done <- fmt.Errorf("%s: the profiler did not answer: %w", rep.p.name, err)
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		secs := max(int(d/time.Second), 1)
		done <- saveProfile(rep, workDir, name, "profile", "seconds="+strconv.Itoa(secs), d+30*time.Second)
	}()
	return done
}

// profileCPU takes a CPU profile of the replica while the measured run
// lasts (with -pprof; else it does nothing) and writes it to
// <workDir>/<name>.cpu.pprof. The result arrives on the channel.
func profileCPU(rep *replica, workDir, name string, d time.Duration) <-chan error {
	done := make(chan error, 1)
	go func() {
		secs := max(int(d/time.Second)-1, 1)
		done <- saveProfile(rep, workDir, name, "profile", "seconds="+strconv.Itoa(secs), d+30*time.Second)
	}()
	return done
}

// saveProfile fetches /debug/pprof/<kind> from the replica into
// <workDir>/<name>.<kind>.pprof, if the replica has a profiler.
func saveProfile(rep *replica, workDir, name, kind, query string, timeout time.Duration) error {
	if rep.pprof == "" {
		return nil
	}
	c := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: timeout}
	resp, err := c.Get("http://" + rep.pprof + "/debug/pprof/" + kind + "?" + query)
	if err != nil {
		return fmt.Errorf("%s profile of %s: %w", kind, rep.p.name, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s profile of %s: %s", kind, rep.p.name, resp.Status)
	}
	if kind == "profile" {
		kind = "cpu"
	}
	f, err := os.Create(filepath.Join(workDir, name+"."+kind+".pprof"))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
