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

package main

import (
	"bufio"
	"net/http"
	"runtime/debug"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// currentGCPercent reads GOGC without changing it.
func currentGCPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

func TestApplyGCDefault(t *testing.T) {
	before, limit := currentGCPercent(), debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(before)
		debug.SetMemoryLimit(limit)
	})
	env := func(kv map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
	}
	for _, tc := range []struct {
		name     string
		env      map[string]string
		runtime  int // what the runtime runs with before (as if from GOGC)
		want     int
		fromEnv  bool
		memLimit int64
	}{
		{name: "unset: the binary's default", env: nil, runtime: 100, want: defaultGCPercent},
		{name: "empty counts as unset, as for the runtime", env: map[string]string{"GOGC": " "}, runtime: 100, want: defaultGCPercent},
		{name: "set: left as the runtime applied it", env: map[string]string{"GOGC": "137"}, runtime: 137, want: 137, fromEnv: true},
		{name: "set to 100 is kept, not replaced by the default", env: map[string]string{"GOGC": "100"}, runtime: 100, want: 100, fromEnv: true},
		{name: "off is kept", env: map[string]string{"GOGC": "off"}, runtime: -1, want: -1, fromEnv: true},
		{name: "the memory limit is reported", env: nil, runtime: 100, want: defaultGCPercent, memLimit: 64 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			debug.SetGCPercent(tc.runtime)
			if tc.memLimit > 0 {
				debug.SetMemoryLimit(tc.memLimit)
			} else {
				debug.SetMemoryLimit(limit)
			}
			got := applyGCDefault(env(tc.env))
			g.Expect(got.Percent).To(Equal(tc.want))
			g.Expect(got.FromEnv).To(Equal(tc.fromEnv))
			g.Expect(currentGCPercent()).To(Equal(tc.want), "what the runtime now runs with")
			if tc.memLimit > 0 {
				g.Expect(got.MemoryLimit).To(Equal(tc.memLimit))
			}
		})
	}
}

// The real binary runs with GOGC=200 unless GOGC says otherwise, and reports
// both that and GOMEMLIMIT in its Go metrics and its start-up log.
func TestBinaryGCSettings(t *testing.T) {
	tok := newToken(t)
	base := map[string]string{"REGISTRY_STATIC_TOKEN_AUTH_ENABLED": "true", "REGISTRY_API_TOKEN": tok}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name       string
		env        map[string]string
		gogc       string
		memlimit   string
		logFromEnv string
	}{
		{name: "default", env: base, gogc: "200", logFromEnv: "false"},
		{name: "GOGC and GOMEMLIMIT from the environment", env: with("GOGC", "150", "GOMEMLIMIT", "64MiB"), gogc: "150", memlimit: "6.7108864e+07", logFromEnv: "true"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			p := startStandalone(t, tc.env, []string{tok})
			resp, err := client.Get("http://" + p.metrics + "/metrics")
			g.Expect(err).NotTo(HaveOccurred())
			defer func() { _ = resp.Body.Close() }()
			g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
			got := map[string]string{}
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if name, v, ok := strings.Cut(sc.Text(), " "); ok && strings.HasPrefix(name, "go_gc_go") {
					got[name] = v
				}
			}
			g.Expect(got).To(HaveKeyWithValue("go_gc_gogc_percent", tc.gogc))
			if tc.memlimit != "" {
				g.Expect(got).To(HaveKeyWithValue("go_gc_gomemlimit_bytes", tc.memlimit))
			}
			g.Expect(p.stderr.String()).To(MatchRegexp(`"msg":"garbage collector","gogc":%s,"gogcFromEnvironment":%s`, tc.gogc, tc.logFromEnv))
		})
	}
}
