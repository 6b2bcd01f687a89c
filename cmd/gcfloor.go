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
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// The garbage collector starts a cycle when the heap has grown by GOGC % of
// what the last cycle found live (with GOGC=100, at twice the live heap), and
// each cycle marks the whole live heap. This process keeps a few MB live
// (the Kubernetes type registry alone is about 1 MB, a thousand policies add
// about 11) while every auth check allocates about 2.5 KB in net/http, so at
// tens of thousands of checks a second a small live heap means a cycle every
// few milliseconds, most of them marking the same long-lived data again. A
// heap floor lets the heap grow to at least floor bytes before a cycle:
// GOGC is raised while the live heap is small, and left as configured once
// twice the live heap (GOGC=100) is above the floor. The memory it costs is
// bounded by the floor; GOMEMLIMIT, if set, still caps the heap.

// defaultGCHeapFloor is --gc-heap-floor's default.
const defaultGCHeapFloor = "16Mi"

// gcPercentMetric and liveHeapMetric are read from runtime/metrics.
const (
	gcPercentMetric   = "/gc/gogc:percent"
	liveHeapMetric    = "/gc/heap/live:bytes"
	stackScanMetric   = "/gc/scan/stack:bytes"
	globalsScanMetric = "/gc/scan/globals:bytes"
	// maxFloorPercent bounds the GOGC the floor sets when the live heap is
	// tiny (the first cycles of a process).
	maxFloorPercent = 10000
)

// floorPercent is the GOGC that makes the runtime's heap goal reach floor,
// or base when base already does. The runtime sets the goal of the next
// cycle at live + (live + roots) × GOGC/100, where live is the heap the last
// cycle marked and roots the stacks and globals it scanned. A base below 0
// (GOGC=off) is kept.
func floorPercent(base int, live, roots, floor uint64) int {
	if base < 0 || live == 0 || floor == 0 || live >= floor {
		return base
	}
	if live+(live+roots)*uint64(base)/100 >= floor {
		return base
	}
	p := (floor - live) * 100 / (live + roots)
	if p > maxFloorPercent {
		p = maxFloorPercent
	}
	return int(p)
}

// heapFloor keeps the heap goal at or above floor bytes, adjusting GOGC at
// the end of every garbage collection. It does nothing when floor is 0 or
// GOGC is off. stop restores the GOGC the process started with.
func heapFloor(floor uint64) (stop func()) {
	base := readGCPercent()
	if floor == 0 || base < 0 {
		return func() {}
	}
	f := &floorTuner{base: base, floor: floor, current: base}
	f.adjust()
	f.arm()
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.stopped = true
		debug.SetGCPercent(f.base)
	}
}

type floorTuner struct {
	base, current int
	floor         uint64

	mu      sync.Mutex
	stopped bool
}

// arm runs adjust after the next garbage collection: the cleanup of an
// object nothing refers to runs once a cycle has found it unreachable.
func (f *floorTuner) arm() {
	runtime.AddCleanup(new(gcSentinel), func(f *floorTuner) {
		if f.adjust() {
			f.arm()
		}
	}, f)
}

// gcSentinel is allocated only to be collected. It holds a pointer so that
// it is not batched with other objects by the tiny allocator, whose objects
// can stay reachable through their neighbours.
type gcSentinel struct{ _ *byte }

// adjust sets GOGC from the live heap of the last cycle; false once stopped.
func (f *floorTuner) adjust() bool {
	s := []metrics.Sample{{Name: liveHeapMetric}, {Name: stackScanMetric}, {Name: globalsScanMetric}}
	metrics.Read(s)
	var v [3]uint64
	for i := range s {
		if s[i].Value.Kind() == metrics.KindUint64 {
			v[i] = s[i].Value.Uint64()
		}
	}
	live, roots := v[0], v[1]+v[2]
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return false
	}
	if p := floorPercent(f.base, live, roots, f.floor); p != f.current {
		debug.SetGCPercent(p)
		f.current = p
	}
	return true
}

// readGCPercent is the process's GOGC (100 unless the environment says
// otherwise; -1 for off).
func readGCPercent() int {
	s := []metrics.Sample{{Name: gcPercentMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 100
	}
	v := s[0].Value.Uint64()
	if v > math.MaxInt32 { // GOGC=off reads as uint64(-1)
		return -1
	}
	return int(v)
}
