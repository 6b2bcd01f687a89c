// Command bench is `make bench`: it measures registry-auth on this machine
// and writes bench/results (see bench/README.md).
//
//  1. throughput and latency with wrk: a minimal net/http server (the
//     ceiling), registry-auth --standalone for each decision path, and
//     oauth2-proxy with the same JWT, in interleaved rounds;
//  2. rotation latency: Secret update to every replica answering with the
//     new token, on 1 and 3 operator replicas against envtest;
//  3. scale: 1,000 policies: start to ready, RSS, /validate latency against
//     1 policy;
//  4. Go micro-benchmarks of the decision function.
//
// It prints a PASS or MISS line per target and exits non-zero when a case
// misbehaves (an unexpected status, a socket error, a process that dies).
// Targets that are missed do not fail the run: they are results.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/registryauth/registry-auth-operator/test/utils"
)

type config struct {
	duration        time.Duration
	warmup          time.Duration
	rounds          int
	connections     int
	threads         int
	phases          string
	cases           string
	rotations       int
	poll            time.Duration
	policies        string
	benchtime       string
	microCount      int
	out             string
	keep            bool
	pprof           bool
	startupProfile  time.Duration
	operatorArgs    string
	registryAuthEnv string
	binary          string
}

func main() {
	var cfg config
	flag.DurationVar(&cfg.duration, "duration", 10*time.Second, "measured wrk time per case and round")
	flag.DurationVar(&cfg.warmup, "warmup", 3*time.Second, "unmeasured wrk time before each measured run (0 skips)")
	flag.IntVar(&cfg.rounds, "rounds", 3, "rounds over the cases (round-robin); the median is reported")
	flag.IntVar(&cfg.connections, "connections", 50, "wrk connections (keep-alive)")
	flag.IntVar(&cfg.threads, "threads", 2, "wrk threads")
	flag.StringVar(&cfg.phases, "phases", "nginx,throughput,rotation,scale,micro,grpc", "comma-separated phases to run")
	flag.StringVar(&cfg.cases, "cases", "", "comma-separated throughput cases to run (default all)")
	flag.IntVar(&cfg.rotations, "rotations", 50, "Secret rotations per replica count")
	flag.DurationVar(&cfg.poll, "poll", time.Millisecond, "rotation: interval between requests of each poller")
	flag.StringVar(&cfg.policies, "policies", "10000,1000", "comma-separated policy counts of the scale phase (each with a Secret per policy, in a namespace and process of its own; 1 policy is the reference)")
	flag.StringVar(&cfg.benchtime, "benchtime", "1s", "go test -benchtime of the micro-benchmarks")
	flag.IntVar(&cfg.microCount, "micro-count", 5, "go test -count of the micro-benchmarks (the median is reported)")
	flag.StringVar(&cfg.out, "out", "bench/results", "results directory (relative to the repository root)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the work directory (server logs, wrk scripts)")
	flag.BoolVar(&cfg.pprof, "pprof", false, "scale: take a CPU profile of each operator process during each measured run, and a heap profile after, into the work directory (implies -keep)")
	flag.DurationVar(&cfg.startupProfile, "startup-profile", 20*time.Second, "scale, with -pprof: length of the CPU profile of each operator's start-up (0: none)")
	flag.StringVar(&cfg.operatorArgs, "operator-args", "", "extra space-separated flags for registry-auth in operator mode (rotation, scale), to try settings")
	flag.StringVar(&cfg.registryAuthEnv, "registry-auth-env", "", "extra comma-separated KEY=VALUE environment for every registry-auth process; {port} becomes a free port per process")
	flag.StringVar(&cfg.binary, "registry-auth", "", "use this registry-auth binary instead of building ./cmd (to measure a prototype)")
	flag.Parse()
	cfg.keep = cfg.keep || cfg.pprof
	os.Exit(run(cfg))
}

func run(cfg config) int {
	root, err := utils.FindRepoRoot()
	if err != nil {
		return fail(err)
	}
	out := cfg.out
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fail(err)
	}
	workDir, err := os.MkdirTemp("", "registry-auth-bench-")
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer func() {
		stopAll()
		if cfg.keep {
			logf("work directory kept: %s", workDir)
		} else {
			_ = os.RemoveAll(workDir)
		}
	}()
	phases := strings.Split(cfg.phases, ",")
	has := func(p string) bool { return slices.Contains(phases, p) }

	machine := collectMachine()
	logf("%s, %d cores, %s; settings: %v x %d rounds (+%v warm-up), %d connections, %d wrk threads",
		machine.CPU, machine.Cores, machine.RAM, cfg.duration, cfg.rounds, cfg.warmup, cfg.connections, cfg.threads)

	if (has("nginx") || has("throughput") || has("scale")) && !haveWrk() {
		return fail(fmt.Errorf("wrk (the HTTP load generator) is not installed: apt-get install wrk"))
	}
	var bin binaries
	if has("nginx") || has("throughput") || has("rotation") || has("scale") {
		if bin, err = buildAll(root, cfg); err != nil {
			return fail(err)
		}
	}
	var targets []target
	summary := ""
	if has("nginx") {
		logf("== through nginx")
		res, err := runNginx(ctx, cfg, bin, workDir)
		if err != nil {
			return fail(fmt.Errorf("nginx: %w", err))
		}
		t := nginxTargets(res)
		targets = append(targets, t...)
		summary = nginxSummary(res)
		if err := writeNginx(out, cfg, res, t); err != nil {
			return fail(err)
		}
	}
	if has("throughput") {
		logf("== throughput and latency")
		res, err := runThroughput(ctx, cfg, bin, workDir)
		if err != nil {
			return fail(fmt.Errorf("throughput: %w", err))
		}
		machine.RegistryAuthGC = res.RegistryAuthGC
		t := throughputTargets(res)
		targets = append(targets, t...)
		if err := writeThroughput(out, bin, cfg, res, t); err != nil {
			return fail(err)
		}
	}
	if has("rotation") || has("scale") {
		env, err := startEnvtest(workDir)
		if err != nil {
			return fail(err)
		}
		defer env.stop()
		if has("rotation") {
			logf("== rotation latency")
			res, err := runRotation(ctx, cfg, bin, env, workDir)
			if err != nil {
				return fail(fmt.Errorf("rotation: %w", err))
			}
			t := rotationTargets(res)
			targets = append(targets, t...)
			if err := writeRotation(out, cfg, res, t); err != nil {
				return fail(err)
			}
		}
		if has("scale") {
			logf("== scale")
			res, err := runScale(ctx, cfg, bin, env, workDir)
			if err != nil {
				return fail(fmt.Errorf("scale: %w", err))
			}
			t := scaleTargets(res)
			targets = append(targets, t...)
			if err := writeScale(out, cfg, res, t); err != nil {
				return fail(err)
			}
		}
	}
	if has("micro") {
		logf("== micro-benchmarks")
		res, err := runMicro(ctx, cfg, root)
		if err != nil {
			return fail(fmt.Errorf("micro: %w", err))
		}
		t := microTargets(res)
		targets = append(targets, t...)
		if err := writeMicro(out, cfg, res, t); err != nil {
			return fail(err)
		}
	}
	if has("grpc") {
		logf("== gRPC ext_authz against the HTTP check")
		t, err := runGRPCPhase(ctx, cfg, root, workDir, out)
		if err != nil {
			return fail(fmt.Errorf("grpc: %w", err))
		}
		targets = append(targets, t...)
	}
	machine.finish()
	if err := writeMachine(out, cfg, machine); err != nil {
		return fail(err)
	}
	if err := writeTargets(out, summary, targets); err != nil {
		return fail(err)
	}
	fmt.Println()
	for _, t := range targets {
		fmt.Println(t.line())
	}
	logf("results in %s", rel(root, out))
	return 0
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[bench %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func fail(err error) int {
	fmt.Fprintf(os.Stderr, "\nBENCH FAILED: %v\n", err)
	return 1
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func randomAlnum(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile of xs, linearly interpolated between the closest ranks (as
// numpy's default): with 50 values, p99 lies between the two largest.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	pos := p / 100 * float64(len(s)-1)
	lo := int(pos)
	if lo >= len(s)-1 {
		return s[len(s)-1]
	}
	return s[lo] + (pos-float64(lo))*(s[lo+1]-s[lo])
}

// fmtUS formats microseconds for humans.
func fmtUS(us float64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%.2fs", us/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.2fms", us/1e3)
	default:
		return fmt.Sprintf("%.0fµs", us)
	}
}

func haveWrk() bool {
	_, err := exec.LookPath("wrk")
	return err == nil
}
