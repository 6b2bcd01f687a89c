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
	"math"
	"runtime/debug"
	"runtime/metrics"
	"strings"
)

// defaultGCPercent is the GOGC this binary runs with when the GOGC
// environment variable is not set; Go's own default is 100.
//
// The garbage collector starts a cycle each time the heap has grown by GOGC %
// of what the last cycle found live, and every cycle marks all of it. This
// process keeps little live (3 MB in standalone mode, about 15 MB with 1,000
// policies) but every auth check allocates about 2.5 KB in net/http, so at
// tens of thousands of checks a second it collects every few tens of
// milliseconds, mostly marking the same long-lived data again: the Kubernetes
// type registry, the cached policies and Secret metadata. Doubling GOGC halves
// that work for a heap half as large again. Measured by `make bench` on two
// cores (bench/README.md): about 3 µs less CPU per check in standalone mode
// (27 against 30 µs), for about 90 against 70 MiB RSS with 1,000 policies.
//
// Memory is what it costs, so the manifests also pass the container's memory
// limit as GOMEMLIMIT: near the limit the collector runs as often as it has
// to, whatever GOGC says, instead of the pod being OOM-killed.
const defaultGCPercent = 200

// gcSettings is what the collector runs with, for the start-up log.
type gcSettings struct {
	// Percent is GOGC; -1 means off.
	Percent int
	// FromEnv: the GOGC environment variable chose Percent, not this binary.
	FromEnv bool
	// MemoryLimit is GOMEMLIMIT in bytes; 0 when there is none.
	MemoryLimit int64
}

// applyGCDefault sets GOGC to defaultGCPercent unless the environment sets
// it (the runtime has applied that already; an empty value counts as unset,
// as it does for the runtime). getenv is os.LookupEnv outside tests.
func applyGCDefault(getenv func(string) (string, bool)) gcSettings {
	s := gcSettings{MemoryLimit: debug.SetMemoryLimit(-1)} // a negative limit only reads it
	if s.MemoryLimit == math.MaxInt64 {
		s.MemoryLimit = 0
	}
	if v, ok := getenv("GOGC"); ok && strings.TrimSpace(v) != "" {
		s.FromEnv = true
		m := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(m)
		s.Percent = -1 // GOGC=off
		if m[0].Value.Kind() == metrics.KindUint64 && m[0].Value.Uint64() <= math.MaxInt32 {
			s.Percent = int(m[0].Value.Uint64())
		}
		return s
	}
	debug.SetGCPercent(defaultGCPercent)
	s.Percent = defaultGCPercent
	return s
}
