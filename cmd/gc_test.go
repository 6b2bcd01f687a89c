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
	"fmt"
	"math"
	"net/http"
	"runtime/debug"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

func TestApplyGCSettings(t *testing.T) {
	before, limit := currentGCPercent(), debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(before)
		debug.SetMemoryLimit(limit)
	})
	env := func(kv map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
	}
	const noLimit = math.MaxInt64
	for _, tc := range []struct {
		name string
		env  map[string]string
		// what the runtime applied at start, as if from GOGC and GOMEMLIMIT
		runtime     int
		runtimeMem  int64
		want        int
		wantFrom    string
		wantMem     int64 // 0: none
		wantMemFrom string
		problem     string // a substring of the one problem expected
	}{
		{name: "unset: the binary's default", runtime: 100, runtimeMem: noLimit, want: 200, wantFrom: "default"},
		{name: "empty counts as unset", env: map[string]string{"GOGC": ""}, runtime: 100, runtimeMem: noLimit, want: 200, wantFrom: "default"},
		{name: "set: left as the runtime applied it", env: map[string]string{"GOGC": "137"}, runtime: 137, runtimeMem: noLimit, want: 137, wantFrom: "GOGC"},
		{name: "100 is kept, not replaced by the default", env: map[string]string{"GOGC": "100"}, runtime: 100, runtimeMem: noLimit, want: 100, wantFrom: "GOGC"},
		{name: "off is kept", env: map[string]string{"GOGC": "off"}, runtime: -1, runtimeMem: noLimit, want: -1, wantFrom: "GOGC"},
		{name: "ignored by the runtime: the default, and said so", env: map[string]string{"GOGC": "200%"}, runtime: 100, runtimeMem: noLimit, want: 200, wantFrom: "default", problem: `GOGC (a 4-character value`},
		{name: "a leading space is ignored by the runtime too", env: map[string]string{"GOGC": " 50"}, runtime: 100, runtimeMem: noLimit, want: 200, wantFrom: "default", problem: `GOGC (a 3-character value`},
		{name: "90 % of the container's memory limit",
			env:     map[string]string{containerMemoryLimitEnv: "268435456"},
			runtime: 100, runtimeMem: noLimit, want: 200, wantFrom: "default", wantMem: 268435456 / 100 * 90, wantMemFrom: containerMemoryLimitEnv},
		{name: "GOMEMLIMIT wins over the container's limit",
			env:     map[string]string{containerMemoryLimitEnv: "268435456", "GOMEMLIMIT": "100MiB"},
			runtime: 100, runtimeMem: 100 << 20, want: 200, wantFrom: "default", wantMem: 100 << 20, wantMemFrom: "GOMEMLIMIT"},
		{name: "a container limit that is not a number of bytes",
			env:     map[string]string{containerMemoryLimitEnv: "256Mi"},
			runtime: 100, runtimeMem: noLimit, want: 200, wantFrom: "default", problem: `CONTAINER_MEMORY_LIMIT (a 5-character value`},
		{name: "a container limit in the wrong unit", env: map[string]string{containerMemoryLimitEnv: "256"},
			runtime: 100, runtimeMem: noLimit, want: 200, wantFrom: "default", problem: `is too small to be a container`},
		{name: "a zero container limit", env: map[string]string{containerMemoryLimitEnv: "0"},
			runtime: 100, runtimeMem: noLimit, want: 200, wantFrom: "default", problem: `CONTAINER_MEMORY_LIMIT (a 1-character value`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			debug.SetGCPercent(tc.runtime)
			debug.SetMemoryLimit(tc.runtimeMem)
			got := applyGCSettings(env(tc.env))
			g.Expect(got.Percent).To(Equal(tc.want))
			g.Expect(got.PercentFrom).To(Equal(tc.wantFrom))
			g.Expect(currentGCPercent()).To(Equal(tc.want), "what the runtime now runs with")
			g.Expect(got.MemoryLimit).To(Equal(tc.wantMem))
			g.Expect(got.MemoryLimitFrom).To(Equal(tc.wantMemFrom))
			if tc.wantMem == 0 {
				g.Expect(debug.SetMemoryLimit(-1)).To(Equal(int64(noLimit)), "no memory limit set")
			} else {
				g.Expect(debug.SetMemoryLimit(-1)).To(Equal(tc.wantMem), "the runtime's memory limit")
			}
			if tc.problem == "" {
				g.Expect(got.Problems).To(BeEmpty())
			} else {
				g.Expect(got.Problems).To(ConsistOf(ContainSubstring(tc.problem)))
			}
		})
	}
}

// A secret put in one of the variables the binary reads before it knows
// its mode is not repeated in what it reports: for each variable, a
// secret-looking value, and the problems and the start-up log line's
// fields must not contain it. Every variable applyGCSettings reads must
// have a row (a new one without fails), and GOMEMLIMIT is the runtime's
// own: it prints a malformed value itself before main runs (README).
func TestGCSettingsDoNotEchoValues(t *testing.T) {
	before, limit := currentGCPercent(), debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(before)
		debug.SetMemoryLimit(limit)
	})
	secrets := []string{"9f2c4e1a7b3d5f608e1c2a4b6d8f0e1a3c5e7f9b1d3f5a7c9e0b2d4f6a8c0e2f", "sk_live_51HxQ2eLkN8fZ/pR7+tYvW3mBq=="}
	rows := map[string]bool{"GOGC": true, containerMemoryLimitEnv: true, "GOMEMLIMIT": false}
	read := map[string]bool{}
	for name, checked := range rows {
		for i, s := range secrets {
			t.Run(fmt.Sprintf("%s/secret%d", name, i), func(t *testing.T) {
				g := NewWithT(t)
				got := applyGCSettings(func(k string) (string, bool) {
					read[k] = true
					if k == name {
						return s, true
					}
					return "", false
				})
				out := fmt.Sprintf("%+v", got)
				g.Expect(strings.Contains(out, s)).To(BeFalse(), "the settings report repeats the value of %s", name)
				if checked {
					g.Expect(got.Problems).To(ConsistOf(And(ContainSubstring(name), ContainSubstring(secret.Fingerprint([]byte(s))))),
						"the problem names the variable and the value's fingerprint")
				}
			})
		}
	}
	for k := range read {
		if _, ok := rows[k]; !ok {
			t.Errorf("applyGCSettings reads %s, which has no row in this test", k)
		}
	}
}

// The real binary runs with GOGC=200 unless GOGC says otherwise, takes 90 %
// of CONTAINER_MEMORY_LIMIT as its memory limit unless GOMEMLIMIT is set, and
// reports both in its Go metrics and its start-up log.
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
		name     string
		env      map[string]string
		gogc     string
		memlimit string
		log      string
	}{
		{name: "default", env: base, gogc: "200", memlimit: "9.223372036854776e+18", log: `"gogc":200,"gogcFrom":"default","memoryLimitBytes":0,"memoryLimitFrom":""`},
		{name: "the container's memory limit, as the manifests pass it", env: with(containerMemoryLimitEnv, "100000000"),
			gogc: "200", memlimit: "9e+07", log: `"gogc":200,"gogcFrom":"default","memoryLimitBytes":90000000,"memoryLimitFrom":"CONTAINER_MEMORY_LIMIT"`},
		{name: "GOGC and GOMEMLIMIT from the environment", env: with("GOGC", "150", "GOMEMLIMIT", "64MiB", containerMemoryLimitEnv, "100000000"),
			gogc: "150", memlimit: "6.7108864e+07", log: `"gogc":150,"gogcFrom":"GOGC","memoryLimitBytes":67108864,"memoryLimitFrom":"GOMEMLIMIT"`},
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
			g.Expect(got).To(HaveKeyWithValue("go_gc_gomemlimit_bytes", tc.memlimit))
			g.Expect(p.stderr.String()).To(ContainSubstring(`"msg":"garbage collector",` + tc.log))
			g.Expect(p.stderr.String()).NotTo(ContainSubstring("garbage collector setting ignored"))
		})
	}
}
