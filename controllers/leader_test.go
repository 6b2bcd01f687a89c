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

package controllers

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
)

// Starts and stops racing (client-go runs the start callback in a goroutine
// of its own) leave the flag and the elected channel in agreement, and never
// close the channel twice.
func TestSetLeadingConcurrent(t *testing.T) {
	g := NewWithT(t)
	var elected atomic.Int64
	l := &LeaderElector{elected: make(chan struct{}), log: logr.Discard()}
	l.OnStartedLeading(func() { elected.Add(1) })
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 2000 {
				l.setLeading((i+j)%2 == 0)
			}
		})
	}
	wg.Wait()
	l.mu.Lock()
	ch := l.elected
	l.mu.Unlock()
	select {
	case <-ch:
		g.Expect(l.IsLeader()).To(BeTrue(), "the channel is closed: leading")
	default:
		g.Expect(l.IsLeader()).To(BeFalse(), "the channel is open: not leading")
	}
	g.Expect(elected.Load()).To(BeNumerically(">", 0))
}
