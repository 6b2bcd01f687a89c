package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// microBench is one Go benchmark, over -count runs.
type microBench struct {
	Name     string    `json:"name"`
	NsPerOp  []float64 `json:"ns_per_op"`
	BPerOp   float64   `json:"bytes_per_op"`  // the largest seen
	Allocs   float64   `json:"allocs_per_op"` // the largest seen
	MedianNs float64   `json:"median_ns"`
}

type microResult struct {
	Benches []*microBench `json:"benches"`
	Command string        `json:"command"`
	CPU     string        `json:"cpu"`
}

func (m *microResult) get(name string) *microBench {
	for _, b := range m.Benches {
		if b.Name == name {
			return b
		}
	}
	return nil
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(?:\s+([\d.]+) B/op\s+([\d.]+) allocs/op)?`)

// runMicro runs the decision function's Go benchmarks (BenchmarkDecide and
// BenchmarkDecideOIDC in ./authserver/policy) with -benchmem.
func runMicro(ctx context.Context, cfg config, root string) (*microResult, error) {
	args := []string{"test", "./authserver/policy", "-run", "^$", "-bench", "^(BenchmarkDecide|BenchmarkDecideOIDC)$",
		"-benchmem", "-count", strconv.Itoa(cfg.microCount), "-benchtime", cfg.benchtime}
	cmd := exec.CommandContext(ctx, goTool(), args...)
	cmd.Dir = root
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	res := &microResult{Command: "go " + strings.Join(args, " ")}
	for _, line := range strings.Split(out.String(), "\n") {
		if cpu, ok := strings.CutPrefix(line, "cpu: "); ok {
			res.CPU = cpu
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		b := res.get(m[1])
		if b == nil {
			b = &microBench{Name: m[1]}
			res.Benches = append(res.Benches, b)
		}
		ns, _ := strconv.ParseFloat(m[2], 64)
		b.NsPerOp = append(b.NsPerOp, ns)
		if m[3] != "" {
			bop, _ := strconv.ParseFloat(m[3], 64)
			allocs, _ := strconv.ParseFloat(m[4], 64)
			b.BPerOp, b.Allocs = max(b.BPerOp, bop), max(b.Allocs, allocs)
		}
	}
	if len(res.Benches) == 0 {
		return nil, fmt.Errorf("no benchmark results in:\n%s", out.String())
	}
	// BenchmarkDecide first, then BenchmarkDecideOIDC, each in source order.
	sort.SliceStable(res.Benches, func(i, j int) bool {
		return strings.HasPrefix(res.Benches[i].Name, "BenchmarkDecide/") && !strings.HasPrefix(res.Benches[j].Name, "BenchmarkDecide/")
	})
	for _, b := range res.Benches {
		b.MedianNs = median(b.NsPerOp)
		logf("%-45s %10.0f ns/op %6.0f B/op %4.0f allocs/op", b.Name, b.MedianNs, b.BPerOp, b.Allocs)
	}
	return res, nil
}
