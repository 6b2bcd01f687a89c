package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wrkDone is the Lua done() hook every wrk run loads: it prints wrk's own
// totals and latency percentiles (microseconds) as one JSON line, so nothing
// is parsed from wrk's rounded text report. It adds no per-request work.
const wrkDone = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.2f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
`

// wrkResult is one wrk run.
type wrkResult struct {
	Requests   int64   `json:"requests"`
	DurationUS int64   `json:"duration_us"`
	Bytes      int64   `json:"bytes"`
	Connect    int64   `json:"connect"`
	Read       int64   `json:"read"`
	Write      int64   `json:"write"`
	Status     int64   `json:"status"` // responses with a status >= 400
	Timeout    int64   `json:"timeout"`
	P50US      float64 `json:"p50_us"`
	P90US      float64 `json:"p90_us"`
	P99US      float64 `json:"p99_us"`
	P999US     float64 `json:"p999_us"`
	MaxUS      float64 `json:"max_us"`
	MeanUS     float64 `json:"mean_us"`
	// ServerCPUUS is the CPU time the server process used during the run,
	// per request (microseconds); 0 when not measured.
	ServerCPUUS float64 `json:"server_cpu_us_per_request"`
	// Round is the round of the run (throughput and scale), and Seq its
	// place in the round (throughput).
	Round int `json:"round,omitempty"`
	Seq   int `json:"seq,omitempty"`
}

// RPS is requests per second over the run.
func (r wrkResult) RPS() float64 {
	if r.DurationUS == 0 {
		return 0
	}
	return float64(r.Requests) / (float64(r.DurationUS) / 1e6)
}

func (r wrkResult) socketErrors() int64 { return r.Connect + r.Read + r.Write + r.Timeout }

// wrkOptions are the load settings shared by every case.
type wrkOptions struct {
	Threads     int
	Connections int
	Timeout     time.Duration
}

// wrkTarget is what one case sends.
type wrkTarget struct {
	URL    string
	Header [][2]string
	// Lua is extra script (e.g. a request() function) placed before the
	// done() hook.
	Lua string
}

// runWrk runs wrk against t for d with --latency and keep-alive (wrk's
// default) and returns its totals.
func runWrk(ctx context.Context, workDir string, o wrkOptions, t wrkTarget, d time.Duration) (wrkResult, error) {
	script, err := os.CreateTemp(workDir, "wrk-*.lua")
	if err != nil {
		return wrkResult{}, err
	}
	defer func() { _ = os.Remove(script.Name()) }()
	if _, err := script.WriteString(t.Lua + "\n" + wrkDone); err != nil {
		return wrkResult{}, err
	}
	_ = script.Close()
	secs := int(d.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	args := []string{
		"-t", strconv.Itoa(o.Threads), "-c", strconv.Itoa(o.Connections),
		"-d", strconv.Itoa(secs) + "s", "--timeout", strconv.Itoa(int(o.Timeout/time.Second)) + "s",
		"--latency", "-s", script.Name(),
	}
	for _, h := range t.Header {
		args = append(args, "-H", h[0]+": "+h[1])
	}
	args = append(args, t.URL)
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "wrk", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s%s", t.URL, err, stderr.String(), stdout.String())
	}
	for _, line := range strings.Split(stdout.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "BENCHJSON "); ok {
			var r wrkResult
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				return wrkResult{}, fmt.Errorf("wrk output %q: %w", rest, err)
			}
			return r, nil
		}
	}
	return wrkResult{}, fmt.Errorf("wrk printed no result:\n%s%s", stderr.String(), stdout.String())
}

// wrkVersion is wrk's version line.
func wrkVersion() string {
	out, _ := exec.Command("wrk", "-v").CombinedOutput()
	line, _, _ := strings.Cut(string(out), "\n")
	if i := strings.Index(line, " Copyright"); i > 0 {
		line = line[:i]
	}
	return strings.TrimSpace(line)
}

// writeFile writes b to dir/name.
func writeFile(dir, name string, b []byte) error {
	return os.WriteFile(filepath.Join(dir, name), b, 0o644)
}

// runWrkCPU is runWrk that also measures the CPU time p used during the run.
func runWrkCPU(ctx context.Context, workDir string, o wrkOptions, t wrkTarget, d time.Duration, p *proc) (wrkResult, error) {
	if p == nil {
		return runWrk(ctx, workDir, o, t, d)
	}
	before, err := cpuTime(p.Pid())
	if err != nil {
		return wrkResult{}, err
	}
	r, err := runWrk(ctx, workDir, o, t, d)
	if err != nil {
		return r, err
	}
	after, err := cpuTime(p.Pid())
	if err != nil {
		return wrkResult{}, err
	}
	if r.Requests > 0 {
		r.ServerCPUUS = float64(after-before) / float64(time.Microsecond) / float64(r.Requests)
	}
	return r, nil
}
