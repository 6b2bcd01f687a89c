package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
)

// rotationRun is the rotation latency on one replica count. Each slice has
// one value per rotation, in milliseconds, the slowest replica's.
type rotationRun struct {
	Replicas int       `json:"replicas"`
	NewOK    []float64 `json:"new_ok_ms"`     // first 200 for the new token
	OldDeny  []float64 `json:"old_denied_ms"` // first 401 for the old token
	Complete []float64 `json:"complete_ms"`   // both, on every replica
	// Spread is, per rotation, the slowest replica's completion minus the
	// fastest's.
	Spread []float64 `json:"spread_ms"`
	// UpdateMS is how long the Secret Update call itself took.
	UpdateMS []float64 `json:"update_ms"`
	// PerReplica is each replica's completion per rotation, and Leader the
	// index of the replica that held the lease (-1 if unknown).
	PerReplica [][]float64 `json:"per_replica_complete_ms"`
	Leader     int         `json:"leader"`
	// T0 is when each Update returned (Unix nanoseconds), to line up with
	// the replicas' logs.
	T0 []int64 `json:"t0_unix_ns"`
}

type rotationResult struct {
	Runs []*rotationRun `json:"runs"`
}

// runRotation measures both deployments (1 and 3 replicas) side by side:
// both run for the whole phase and their rotations alternate (1, 3, then
// 3, 1, ...), so the machine's drift over minutes falls on both alike, as
// the ceiling runs around every throughput case do.
func runRotation(ctx context.Context, cfg config, bin binaries, k *kube, workDir string) (*rotationResult, error) {
	var sets []*rotationSet
	defer func() {
		for _, set := range sets {
			set.close()
		}
	}()
	for _, n := range []int{1, 3} {
		set, err := startRotationSet(ctx, cfg, bin, k, workDir, n)
		if err != nil {
			return nil, err
		}
		sets = append(sets, set)
	}
	const warmups = 2
	for i := -warmups; i < cfg.rotations; i++ {
		order := sets
		if i%2 != 0 {
			order = []*rotationSet{sets[1], sets[0]}
		}
		for _, set := range order {
			if err := set.rotate(ctx, cfg, i); err != nil {
				return nil, err
			}
			// Let the leader's status writes settle; a random pause keeps
			// the rotations out of step with anything periodic.
			time.Sleep(150*time.Millisecond + rand.N(100*time.Millisecond))
		}
	}
	res := &rotationResult{}
	for _, set := range sets {
		run, err := set.finish()
		if err != nil {
			return nil, err
		}
		res.Runs = append(res.Runs, run)
	}
	return res, nil
}

type replica struct {
	p                    *proc
	auth, probe, metrics string
	pprof                string // profiler address, with -pprof
}

func startOperator(cfg config, bin binaries, k *kube, workDir, name, leaseNS string, extra ...string) (*replica, error) {
	r := &replica{auth: freeAddr(), probe: freeAddr(), metrics: freeAddr()}
	args := append([]string{
		"--kubeconfig", k.kubeconfig,
		"--leader-elect", "--leader-election-namespace", leaseNS, "--host-grants=*=*",
		"--auth-bind-address", r.auth,
		"--health-probe-bind-address", r.probe,
		"--metrics-bind-address", r.metrics,
		"--max-auth-failures=0",
	}, extra...)
	if cfg.pprof {
		r.pprof = freeAddr()
		args = append(args, "--pprof-bind-address", r.pprof)
	}
	args = append(args, strings.Fields(cfg.operatorArgs)...)
	p, err := startProc(name, workDir, bin.registryAuth, args, extraEnv(cfg, name, nil))
	if err != nil {
		return nil, err
	}
	r.p = p
	return r, nil
}

// rotationSet is one deployment of the rotation phase: a namespace with one
// policy, its replicas, and two pollers per replica (new token, old token).
type rotationSet struct {
	ns, host   string
	token      string
	reps       []*replica
	newPollers []*poller
	oldPollers []*poller
	secrets    typedcorev1.SecretInterface
	sec        *corev1.Secret
	run        *rotationRun
}

func startRotationSet(ctx context.Context, cfg config, bin binaries, k *kube, workDir string, replicas int) (_ *rotationSet, err error) {
	set := &rotationSet{ns: "rotation-" + strconv.Itoa(replicas)}
	set.host = set.ns + ".bench"
	defer func() {
		if err != nil {
			set.close()
		}
	}()
	if err := k.createNamespace(ctx, set.ns); err != nil {
		return nil, err
	}
	set.token = randomHex(32)
	if err := k.createPolicy(ctx, set.ns, "registry", set.host, set.token); err != nil {
		return nil, err
	}
	for i := 0; i < replicas; i++ {
		r, err := startOperator(cfg, bin, k, workDir, fmt.Sprintf("operator-%dr-%d", replicas, i), set.ns, "--namespace", set.ns)
		if err != nil {
			return nil, err
		}
		set.reps = append(set.reps, r)
	}
	for _, r := range set.reps {
		if _, err := waitHTTP(r.p, "http://"+r.probe+"/readyz", http.StatusOK, 20*time.Millisecond, 60*time.Second, nil); err != nil {
			return nil, err
		}
		if _, err := waitHTTP(r.p, "http://"+r.auth+"/validate", http.StatusOK, 20*time.Millisecond, 30*time.Second, rotationHeader(set.host, set.token)); err != nil {
			return nil, err
		}
	}
	set.secrets = k.clientset.CoreV1().Secrets(set.ns)
	if set.sec, err = set.secrets.Get(ctx, "registry-token", metav1.GetOptions{}); err != nil {
		return nil, err
	}
	// One poller per replica and token, each on its own keep-alive
	// connection.
	for _, r := range set.reps {
		set.newPollers = append(set.newPollers, &poller{r: r, host: set.host})
		set.oldPollers = append(set.oldPollers, &poller{r: r, host: set.host})
	}
	set.run = &rotationRun{Replicas: replicas, PerReplica: make([][]float64, replicas), Leader: -1}
	return set, nil
}

// rotate rotates the set's token once and waits until every replica
// answers 200 for the new token and 401 for the old one. Rotation i < 0 is
// a warm-up, not recorded.
func (set *rotationSet) rotate(ctx context.Context, cfg config, i int) error {
	old := set.token
	set.token = randomHex(32)
	token := set.token
	sec := set.sec.DeepCopy()
	sec.Data = map[string][]byte{"token": []byte(token)}
	begin := time.Now()
	updated, err := set.secrets.Update(ctx, sec, metav1.UpdateOptions{})
	t0 := time.Now()
	if err != nil {
		return fmt.Errorf("updating the Secret: %w", err)
	}
	set.sec = updated

	type result struct {
		idx   int
		isNew bool
		d     time.Duration
		err   error
	}
	reps := set.reps
	results := make(chan result, 2*len(reps))
	for j := range reps {
		go func() {
			d, err := set.newPollers[j].until(ctx, cfg.poll, token, http.StatusOK, http.StatusUnauthorized, t0)
			results <- result{j, true, d, err}
		}()
		go func() {
			d, err := set.oldPollers[j].until(ctx, cfg.poll, old, http.StatusUnauthorized, http.StatusOK, t0)
			results <- result{j, false, d, err}
		}()
	}
	perReplica := make([]time.Duration, len(reps))
	var newMax, oldMax time.Duration
	var firstErr error
	// Every poller's answer, errors included, before anything else: the
	// pollers' connections are closed when the phase fails.
	for range 2 * len(reps) {
		r := <-results
		if r.err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("rotation %d on %d replicas: %w", i+1, set.run.Replicas, r.err)
			}
			continue
		}
		perReplica[r.idx] = max(perReplica[r.idx], r.d)
		if r.isNew {
			newMax = max(newMax, r.d)
		} else {
			oldMax = max(oldMax, r.d)
		}
	}
	if firstErr != nil {
		return firstErr
	}
	if i < 0 {
		return nil
	}
	run := set.run
	lo, hi := perReplica[0], perReplica[0]
	for _, d := range perReplica {
		lo, hi = min(lo, d), max(hi, d)
	}
	run.NewOK = append(run.NewOK, ms(newMax))
	run.OldDeny = append(run.OldDeny, ms(oldMax))
	run.Complete = append(run.Complete, ms(max(newMax, oldMax)))
	run.Spread = append(run.Spread, ms(hi-lo))
	run.UpdateMS = append(run.UpdateMS, ms(t0.Sub(begin)))
	run.T0 = append(run.T0, t0.UnixNano())
	for j, d := range perReplica {
		run.PerReplica[j] = append(run.PerReplica[j], ms(d))
	}
	return nil
}

// finish checks that every replica is still running, finds the leader, and
// returns the set's measurements.
func (set *rotationSet) finish() (*rotationRun, error) {
	run := set.run
	for j, r := range set.reps {
		if r.p.exited() {
			return nil, fmt.Errorf("%s exited: %w\n%s", r.p.name, r.p.waitErr, r.p.tail(20))
		}
		if b, err := os.ReadFile(r.p.logPath); err == nil && strings.Contains(string(b), "became leader") {
			run.Leader = j
		}
	}
	logf("%d replica(s): %d rotations, complete p50 %.1fms p99 %.1fms max %.1fms", run.Replicas, len(run.Complete),
		median(run.Complete), percentile(run.Complete, 99), percentile(run.Complete, 100))
	return run, nil
}

func (set *rotationSet) close() {
	for _, p := range append(set.newPollers, set.oldPollers...) {
		p.close()
	}
	for _, r := range set.reps {
		r.p.Stop()
	}
}

// extraEnv adds -registry-auth-env to env.
func extraEnv(cfg config, name string, env map[string]string) map[string]string {
	if cfg.registryAuthEnv == "" {
		return env
	}
	if env == nil {
		env = map[string]string{}
	}
	for _, kv := range strings.Split(cfg.registryAuthEnv, ",") {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = strings.ReplaceAll(v, "{port}", strings.TrimPrefix(freeAddr(), "127.0.0.1:"))
		logf("%s: %s=%s", name, k, env[k])
	}
	return env
}

func rotationHeader(host, token string) http.Header {
	return http.Header{
		"X-Original-Url":    {"http://" + host + "/api/servers"},
		"X-Original-Method": {"GET"},
		"Authorization":     {"Bearer " + token},
	}
}

// poller sends one token to one replica's /validate on its own keep-alive
// connection. It writes a pre-formatted request and reads the answer with
// http.ReadResponse, without http.Client's transport goroutines: the pollers
// are the measuring instrument, and on a two-core machine their CPU time is
// taken from the replicas they measure (six of them with three replicas).
type poller struct {
	r    *replica
	host string
	conn net.Conn
	br   *bufio.Reader
}

func (p *poller) close() {
	if p.conn != nil {
		_ = p.conn.Close()
	}
}

// check sends the token once and returns the status of the answer. Like
// http.Client, it sends the request again on a new connection when a kept-
// alive one turns out to be closed (the server may drop an idle connection
// at any time).
func (p *poller) check(req []byte) (int, error) {
	reused := p.conn != nil
	status, err := p.send(req)
	if err != nil && reused {
		status, err = p.send(req)
	}
	return status, err
}

func (p *poller) send(req []byte) (int, error) {
	if p.conn == nil {
		c, err := net.DialTimeout("tcp", p.r.auth, 5*time.Second)
		if err != nil {
			return 0, err
		}
		p.conn, p.br = c, bufio.NewReaderSize(c, 4096)
	}
	_ = p.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := p.conn.Write(req); err != nil {
		p.close()
		p.conn = nil
		return 0, err
	}
	resp, err := http.ReadResponse(p.br, nil)
	if err != nil {
		p.close()
		p.conn = nil
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.Close {
		p.close()
		p.conn = nil
	}
	return resp.StatusCode, nil
}

// until sends the token every pollInterval until the replica answers want,
// and returns when that answer arrived, from t0. Any status other than want
// and before is an error.
func (p *poller) until(ctx context.Context, pollInterval time.Duration, token string, want, before int, t0 time.Time) (time.Duration, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "GET /validate HTTP/1.1\r\nHost: %s\r\n", p.r.auth)
	for k, v := range rotationHeader(p.host, token) {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v[0])
	}
	b.WriteString("\r\n")
	req := []byte(b.String())
	deadline := t0.Add(30 * time.Second)
	for {
		sent := time.Now()
		status, err := p.check(req)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", p.r.p.name, err)
		}
		got := time.Since(t0)
		switch status {
		case want:
			return got, nil
		case before:
		default:
			return 0, fmt.Errorf("%s answered %d (want %d, or %d before the rotation reached it)", p.r.p.name, status, want, before)
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s did not answer %d within 30s of the Secret update", p.r.p.name, want)
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		if d := pollInterval - time.Since(sent); d > 0 {
			time.Sleep(d)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
