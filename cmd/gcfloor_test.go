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
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

const mib = 1 << 20

func TestFloorPercent(t *testing.T) {
	tests := []struct {
		name               string
		base               int
		live, roots, floor uint64
		want               int
	}{
		{"small live heap: raised to reach the floor", 100, 4 * mib, 0, 64 * mib, 1500},
		{"stacks and globals count towards the goal", 100, 4 * mib, 2 * mib, 64 * mib, 1000},
		{"just under: raised a little", 100, 31 * mib, 0, 64 * mib, 106},
		{"twice the live heap reaches the floor", 100, 32 * mib, 0, 64 * mib, 100},
		{"the roots make up the rest", 100, 30 * mib, 4 * mib, 64 * mib, 100},
		{"large live heap: GOGC as configured", 100, 40 * mib, 1 * mib, 64 * mib, 100},
		{"live heap above the floor", 100, 100 * mib, 0, 64 * mib, 100},
		{"a configured GOGC is kept when it reaches the floor", 300, 20 * mib, 0, 64 * mib, 300},
		{"a configured GOGC is raised when it does not", 50, 20 * mib, 0, 64 * mib, 220},
		{"GOGC=off stays off", -1, 4 * mib, 0, 64 * mib, -1},
		{"no cycle yet", 100, 0, 0, 64 * mib, 100},
		{"no floor", 100, 4 * mib, 0, 0, 100},
		{"tiny live heap: capped", 100, 1024, 0, 64 * mib, maxFloorPercent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(floorPercent(tc.base, tc.live, tc.roots, tc.floor)).To(Equal(tc.want))
		})
	}
}

// Whatever the inputs, the goal the result gives reaches the floor (unless
// capped) and does not overshoot it by more than rounding; GOGC is never
// lowered below its configured value, nor raised without need.
func TestFloorPercentReachesTheFloor(t *testing.T) {
	g := NewWithT(t)
	goal := func(live, roots uint64, p int) uint64 { return live + (live+roots)*uint64(p)/100 }
	for _, base := range []int{25, 100, 200} {
		for live := uint64(64 << 10); live < 200*mib; live = live*3/2 + 1 {
			for _, roots := range []uint64{0, 512 << 10, 3 * mib} {
				for _, floor := range []uint64{16 * mib, 64 * mib, 1 << 30} {
					p := floorPercent(base, live, roots, floor)
					g.Expect(p).To(BeNumerically(">=", base))
					if p == base {
						continue
					}
					g.Expect(goal(live, roots, base)).To(BeNumerically("<", floor), "raised without need: base %d live %d floor %d", base, live, floor)
					if p < maxFloorPercent {
						// One percent of (live + roots) is the rounding.
						g.Expect(goal(live, roots, p)).To(BeNumerically("~", floor, (live+roots)/100+1), "base %d live %d roots %d floor %d -> %d", base, live, roots, floor, p)
					}
				}
			}
		}
	}
}

func readGoal() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// The floor against the real runtime: the heap goal reaches it while the
// live heap is small, GOGC follows the live heap from cycle to cycle, and
// stopping restores the process's GOGC.
func TestHeapFloor(t *testing.T) {
	g := NewWithT(t)
	base := readGCPercent()
	if base != 100 {
		t.Skipf("GOGC is %d in this environment", base)
	}
	defer debug.SetGCPercent(base)
	const floor = 256 * mib
	runtime.GC()
	g.Expect(readGoal()).To(BeNumerically("<", floor/2), "the test binary's own heap goal")

	stop := heapFloor(floor)
	defer stop()
	cycle := func() {
		runtime.GC()
		runtime.GC() // the cleanup of the first cycle has run by the end of the second
	}
	g.Eventually(func() int { cycle(); return readGCPercent() }, 5*time.Second).Should(BeNumerically(">", 100))
	g.Expect(readGoal()).To(BeNumerically(">=", floor*95/100))

	// A live heap above half the floor: GOGC goes back to 100.
	ballast := make([]*[mib]byte, 160)
	for i := range ballast {
		ballast[i] = new([mib]byte)
	}
	g.Eventually(func() int { cycle(); return readGCPercent() }, 5*time.Second).Should(Equal(100))
	g.Expect(readGoal()).To(BeNumerically(">=", 320*mib))
	runtime.KeepAlive(ballast)
	ballast = nil

	// The ballast gone: raised again, so the hook re-armed itself.
	g.Eventually(func() int { cycle(); return readGCPercent() }, 5*time.Second).Should(BeNumerically(">", 100))

	stop()
	g.Expect(readGCPercent()).To(Equal(100))
	cycle()
	g.Expect(readGCPercent()).To(Equal(100), "stopped: no more adjustments")
	g.Expect(readGoal()).To(BeNumerically("<", floor/2))
}

func TestHeapFloorOffWithGOGCOff(t *testing.T) {
	g := NewWithT(t)
	old := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(old)
	stop := heapFloor(64 * mib)
	defer stop()
	runtime.GC()
	runtime.GC()
	g.Expect(readGCPercent()).To(Equal(-1))
}
