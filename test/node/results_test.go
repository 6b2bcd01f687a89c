/*
Copyright 2026 The registry-auth-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package node

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// results are the suite's measurements, written to bin/test-node/results.md
// (bench/results/realnode.md is a copy of one run) and logged as they come.
type results struct {
	mu   sync.Mutex
	rows [][2]string
}

func (r *results) add(what string, d time.Duration) {
	r.addf(what, "%s", d.Round(time.Millisecond))
}

func (r *results) addf(what, format string, args ...any) {
	v := fmt.Sprintf(format, args...)
	r.mu.Lock()
	r.rows = append(r.rows, [2]string{what, v})
	r.mu.Unlock()
	logf("measured: %s: %s", strings.TrimSpace(what), v)
}

func (r *results) write(dir string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# Real-node suite (test/node): one run\n\n")
	fmt.Fprintf(&b, "%s, %s, %d CPUs, %s/%s, %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), host,
		runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	b.WriteString("| what | measured |\n| --- | --- |\n")
	for _, row := range r.rows {
		fmt.Fprintf(&b, "| %s | %s |\n", strings.ReplaceAll(row[0], "  ", "&nbsp;&nbsp;"), row[1])
	}
	path := filepath.Join(dir, "results.md")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return err
	}
	logf("results in %s", path)
	return nil
}
