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
	"fmt"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"strconv"

	"github.com/registryauth/registry-auth-operator/authserver/secret"
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
// type registry, the cached policies and Secret metadata. GOGC=200 halves the
// number of cycles for a heap half as large again; bench/README.md has what
// it measured (CPU per check, RSS).
const defaultGCPercent = 200

// containerMemoryLimitEnv names the variable through which the manifests pass
// the container's memory limit in bytes (the downward API's limits.memory).
// Unless GOMEMLIMIT is set, the process takes memoryLimitPercent of it as its
// soft memory limit: near it the collector runs as often as it has to,
// whatever GOGC says, so that garbage not yet collected does not get the pod
// OOM-killed. The headroom is for memory the Go runtime does not count.
const (
	containerMemoryLimitEnv = "CONTAINER_MEMORY_LIMIT"
	memoryLimitPercent      = 90
	// minContainerMemory is the smallest container memory limit believed.
	minContainerMemory = 16 << 20
)

// gcSettings is what the collector runs with, for the start-up log.
type gcSettings struct {
	// Percent is GOGC; -1 means off.
	Percent int
	// PercentFrom says who chose Percent: "default" (this binary) or
	// "GOGC" (the environment).
	PercentFrom string
	// MemoryLimit is the soft memory limit in bytes; 0 when there is none.
	MemoryLimit int64
	// MemoryLimitFrom: "GOMEMLIMIT", containerMemoryLimitEnv, or "" (none).
	MemoryLimitFrom string
	// Problems are settings that were ignored, and why.
	Problems []string
}

// applyGCSettings sets GOGC to defaultGCPercent unless the environment sets
// it, and the memory limit from containerMemoryLimitEnv unless GOMEMLIMIT is
// set. Values the runtime would ignore count as unset and are reported.
// getenv is os.LookupEnv outside tests.
func applyGCSettings(getenv func(string) (string, bool)) gcSettings {
	var s gcSettings
	if v, ok := getenv("GOGC"); ok && v != "" {
		// The runtime took GOGC as "off" or a decimal int32, and anything
		// else as 100 without a word.
		if _, err := strconv.ParseInt(v, 10, 32); v == "off" || err == nil {
			s.PercentFrom = "GOGC"
			s.Percent = currentGCPercent()
		} else {
			s.Problems = append(s.Problems, fmt.Sprintf("GOGC %s is neither a number nor \"off\"; using %d", describeValue(v), defaultGCPercent))
		}
	}
	if s.PercentFrom == "" {
		debug.SetGCPercent(defaultGCPercent)
		s.Percent, s.PercentFrom = defaultGCPercent, "default"
	}

	if v, ok := getenv("GOMEMLIMIT"); ok && v != "" {
		// The runtime refuses to start on a malformed one, and prints it
		// before this code runs (README: GOMEMLIMIT).
		s.MemoryLimitFrom = "GOMEMLIMIT"
	} else if v, ok := getenv(containerMemoryLimitEnv); ok && v != "" {
		limit, err := strconv.ParseInt(v, 10, 64)
		switch {
		case err != nil || limit <= 0:
			s.Problems = append(s.Problems, fmt.Sprintf("%s %s is not a positive number of bytes; no memory limit", containerMemoryLimitEnv, describeValue(v)))
		case limit < minContainerMemory:
			// "256" meant as MiB would make the collector run without
			// pause; the process could not live in so little anyway.
			s.Problems = append(s.Problems, fmt.Sprintf("%s %s is too small to be a container's memory limit in bytes (less than %d MiB; a unit missing?); no memory limit", containerMemoryLimitEnv, describeValue(v), minContainerMemory>>20))
		default:
			debug.SetMemoryLimit(limit / 100 * memoryLimitPercent)
			s.MemoryLimitFrom = containerMemoryLimitEnv
		}
	}
	s.MemoryLimit = debug.SetMemoryLimit(-1) // a negative limit only reads it
	if s.MemoryLimit == math.MaxInt64 {
		s.MemoryLimit, s.MemoryLimitFrom = 0, ""
	}
	return s
}

// describeValue describes a value of the environment without repeating it
// (it may be a secret put in the wrong variable): its length and
// fingerprint, as standalone mode's messages do.
func describeValue(v string) string {
	return fmt.Sprintf("(a %d-character value, fingerprint %s)", len(v), secret.Fingerprint([]byte(v)))
}

// currentGCPercent reads GOGC as the runtime runs with it; -1 means off.
func currentGCPercent() int {
	m := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(m)
	if m[0].Value.Kind() != metrics.KindUint64 || m[0].Value.Uint64() > math.MaxInt32 {
		return -1 // off: the runtime reports its int32 -1 as a uint64
	}
	return int(m[0].Value.Uint64())
}
