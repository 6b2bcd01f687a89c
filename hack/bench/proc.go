package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process (a server under test) whose output goes to a log
// file in the run's work directory.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	started time.Time
	done    chan struct{}
	waitErr error
	once    sync.Once
}

// startProc runs path with args and extra environment (on top of a clean
// copy of the bench's own, see childEnv).
func startProc(name, logDir, path string, args []string, env map[string]string) (*proc, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = childEnv(env)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childSysProcAttr()
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	p.started = time.Now()
	err = cmd.Start()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	registerProc(p)
	return p, nil
}

func (p *proc) Pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM to the process group, waits up to 15 s, then kills it.
func (p *proc) Stop() {
	p.once.Do(func() {
		if p.exited() {
			return
		}
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
}

// tail is the end of the process's log, for error messages.
func (p *proc) tail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

var (
	procsMu sync.Mutex
	procs   []*proc
)

func registerProc(p *proc) {
	procsMu.Lock()
	defer procsMu.Unlock()
	procs = append(procs, p)
}

// stopAll stops every child still running (on exit and on failure).
func stopAll() {
	procsMu.Lock()
	ps := append([]*proc(nil), procs...)
	procsMu.Unlock()
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() { defer wg.Done(); p.Stop() }()
	}
	wg.Wait()
}

// childEnv is the bench's environment without anything that would configure
// registry-auth (or the Go runtime of any child) behind the bench's back,
// plus extra.
func childEnv(extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "REGISTRY_") || strings.HasPrefix(k, "OIDC_") || strings.HasPrefix(k, "SECRET_KEY") ||
			strings.HasPrefix(k, "SESSION_") || k == "GROUP_SCOPES" || k == "KUBECONFIG" || k == "GOMAXPROCS" ||
			k == "GOGC" || k == "GOMEMLIMIT" || k == "CONTAINER_MEMORY_LIMIT" ||
			strings.HasPrefix(k, "KUBERNETES_") || strings.HasPrefix(k, "POD_") || strings.HasPrefix(k, "OAUTH2_PROXY_") {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// freeAddr returns a 127.0.0.1 address nothing listens on right now.
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

// oneShot is a client without keep-alive, for probes.
var oneShot = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 2 * time.Second}

// waitHTTP polls url every interval until it answers want, the process exits
// or timeout passes. It returns when the answer came, measured from the
// process start.
func waitHTTP(p *proc, url string, want int, interval, timeout time.Duration, hdr http.Header) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		if p != nil && p.exited() {
			return 0, fmt.Errorf("%s exited before %s answered %d: %w\n%s", p.name, url, want, p.waitErr, p.tail(20))
		}
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := oneShot.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == want {
				if p != nil {
					return time.Since(p.started), nil
				}
				return 0, nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("%s did not answer %d within %v (last: %s)", url, want, timeout, last)
			if p != nil {
				msg += "\n" + p.tail(20)
			}
			return 0, fmt.Errorf("%s", msg)
		}
		time.Sleep(interval)
	}
}

// rssKiB reads VmRSS and VmHWM (peak) of pid from /proc, in KiB.
func rssKiB(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, hwm, sc.Err()
}

// scrapeClient reads /metrics: with 10,000 policies the page is about
// 1 MB, and under load on a busy machine it took more than oneShot's 2 s.
var scrapeClient = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 15 * time.Second}

// scrapeLines calls f with every line of a /metrics endpoint (Prometheus
// text format).
func scrapeLines(metricsURL string, f func(line string) error) error {
	resp, err := scrapeClient.Get(metricsURL)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", metricsURL, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if err := f(sc.Text()); err != nil {
			return err
		}
	}
	return sc.Err()
}

// scrapeDecisions sums registry_auth_decisions_total by reason from a
// /metrics endpoint.
func scrapeDecisions(metricsURL string) (map[string]float64, error) {
	out := map[string]float64{}
	err := scrapeLines(metricsURL, func(line string) error {
		if !strings.HasPrefix(line, "registry_auth_decisions_total{") {
			return nil
		}
		end := strings.LastIndexByte(line, '}')
		if end < 0 {
			return nil
		}
		labels, value := line[len("registry_auth_decisions_total{"):end], strings.TrimSpace(line[end+1:])
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return fmt.Errorf("metrics line %q: %w", line, err)
		}
		out[labelValue(labels, "reason")] += v
		return nil
	})
	return out, err
}

// scrapeGC says what the garbage collector of a Go process runs with, from
// its /metrics (client_golang's Go collector): GOGC and the memory limit.
func scrapeGC(metricsURL string) (string, error) {
	vals := map[string]float64{}
	err := scrapeLines(metricsURL, func(line string) error {
		name, value, ok := strings.Cut(line, " ")
		if !ok || (name != "go_gc_gogc_percent" && name != "go_gc_gomemlimit_bytes") {
			return nil
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return fmt.Errorf("metrics line %q: %w", line, err)
		}
		vals[name] = v
		return nil
	})
	if err != nil {
		return "", err
	}
	gogc, ok1 := vals["go_gc_gogc_percent"]
	limit, ok2 := vals["go_gc_gomemlimit_bytes"]
	if !ok1 || !ok2 {
		return "", fmt.Errorf("%s has no go_gc_gogc_percent or go_gc_gomemlimit_bytes", metricsURL)
	}
	out := fmt.Sprintf("GOGC %.0f", gogc)
	if gogc < 0 || gogc > math.MaxInt32 {
		out = "GOGC off"
	}
	if limit >= math.MaxInt64 {
		return out + ", no memory limit", nil
	}
	return out + fmt.Sprintf(", memory limit %.0f MiB", limit/(1<<20)), nil
}

// labelValue extracts name="value" from a Prometheus label list (the values
// used here hold no escaped quotes).
func labelValue(labels, name string) string {
	i := strings.Index(labels, name+`="`)
	for i > 0 && labels[i-1] != ',' {
		j := strings.Index(labels[i+1:], name+`="`)
		if j < 0 {
			return ""
		}
		i += 1 + j
	}
	if i < 0 {
		return ""
	}
	rest := labels[i+len(name)+2:]
	if j := strings.IndexByte(rest, '"'); j >= 0 {
		return rest[:j]
	}
	return ""
}

// saveMetrics keeps a copy of a replica's /metrics in the work directory
// (for a look with -keep: API requests, reconcile times).
func saveMetrics(r *replica, workDir, when string) {
	resp, err := scrapeClient.Get("http://" + r.metrics + "/metrics")
	if err != nil {
		return
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	_ = os.WriteFile(filepath.Join(workDir, r.p.name+"."+when+".metrics"), b, 0o644)
}

// cpuTime is the user+system CPU time a process has used so far (from
// /proc/<pid>/stat, in clock ticks of 1/100 s).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields are counted after
	// its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}
