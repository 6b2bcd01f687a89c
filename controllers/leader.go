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
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Leader election.
//
// controller-runtime's manager elects a leader for the whole process and
// exits when the lease is lost (for instance when the API server is away for
// longer than the renew deadline). For this process that would be wrong: its
// main job, answering /validate from the last good configuration, must go on
// while the API server is away. So the manager runs without leader election,
// and LeaderElector decides only who writes status, events and rotation state:
// on losing the lease a replica stops writing and keeps trying to become
// leader again, and keeps serving throughout.

// LeaderElector holds a Lease and reports whether this replica leads.
type LeaderElector struct {
	config    *rest.Config
	namespace string
	name      string
	identity  string
	timing    LeaderTiming
	log       logr.Logger

	leading atomic.Bool
	mu      sync.Mutex
	elected chan struct{} // closed while leading
	onLead  []func()
}

// LeaderTiming are the lease timings (client-go's leader election).
type LeaderTiming struct {
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// DefaultLeaderTiming are controller-runtime's defaults.
var DefaultLeaderTiming = LeaderTiming{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}

// NewLeaderElector returns an elector for the Lease namespace/name. An empty
// namespace means the pod's own namespace.
func NewLeaderElector(cfg *rest.Config, namespace, name string, timing LeaderTiming, log logr.Logger) (*LeaderElector, error) {
	if namespace == "" {
		b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
		if err != nil {
			return nil, fmt.Errorf("leader election needs a namespace outside a cluster (--leader-election-namespace): %w", err)
		}
		namespace = string(b)
	}
	host, _ := os.Hostname()
	return &LeaderElector{
		config:    rest.CopyConfig(cfg),
		namespace: namespace,
		name:      name,
		identity:  host + "_" + string(uuid.NewUUID()),
		timing:    timing,
		log:       log,
		elected:   make(chan struct{}),
	}, nil
}

// AlwaysLeader is for a single replica without leader election.
func AlwaysLeader() *LeaderElector {
	l := &LeaderElector{elected: make(chan struct{})}
	l.leading.Store(true)
	close(l.elected)
	return l
}

// IsLeader reports whether this replica leads now.
func (l *LeaderElector) IsLeader() bool { return l.leading.Load() }

// Elected is closed while this replica leads (a new channel is made when it
// stops).
func (l *LeaderElector) Elected() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.elected
}

// OnStartedLeading registers f to run each time this replica becomes leader.
func (l *LeaderElector) OnStartedLeading(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onLead = append(l.onLead, f)
}

// NeedLeaderElection: the elector runs on every replica.
func (l *LeaderElector) NeedLeaderElection() bool { return false }

// Start campaigns for the Lease until ctx ends; after losing it, it
// campaigns again.
func (l *LeaderElector) Start(ctx context.Context) error {
	if l.config == nil { // AlwaysLeader
		for _, f := range l.onLeadCopy() {
			f()
		}
		<-ctx.Done()
		return nil
	}
	cs, err := kubernetes.NewForConfig(l.config)
	if err != nil {
		return err
	}
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, l.namespace, l.name,
		cs.CoreV1(), cs.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: l.identity})
	if err != nil {
		return err
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   l.timing.LeaseDuration,
			RenewDeadline:   l.timing.RenewDeadline,
			RetryPeriod:     l.timing.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            l.name,
			Callbacks: leaderelection.LeaderCallbacks{
				// client-go runs OnStartedLeading in a goroutine of its
				// own and OnStoppedLeading when Run returns: a late start
				// must not leave this replica leading after the lease is
				// lost. The context ends with the leadership.
				OnStartedLeading: func(ctx context.Context) {
					if ctx.Err() == nil {
						l.setLeading(true)
					}
					<-ctx.Done()
					l.setLeading(false)
				},
				OnStoppedLeading: func() { l.setLeading(false) },
			},
		})
		if err != nil {
			return err
		}
		le.Run(ctx) // returns when the lease is lost or ctx ends
		if ctx.Err() == nil {
			l.log.Info("lost the leader lease; serving on and campaigning again")
			select {
			case <-ctx.Done():
			case <-time.After(l.timing.RetryPeriod):
			}
		}
	}
	return nil
}

func (l *LeaderElector) onLeadCopy() []func() {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]func(){}, l.onLead...)
}

func (l *LeaderElector) setLeading(on bool) {
	// One transition at a time: the flag and the channel change together,
	// or a start and a stop racing could leave them apart (and a later
	// start would close a closed channel).
	l.mu.Lock()
	if l.leading.Load() == on {
		l.mu.Unlock()
		return
	}
	l.leading.Store(on)
	if on {
		close(l.elected)
	} else {
		l.elected = make(chan struct{})
	}
	l.mu.Unlock()
	if on {
		l.log.Info("became leader: writing status, events and rotation state", "identity", l.identity)
		for _, f := range l.onLeadCopy() {
			f()
		}
	} else {
		l.log.Info("stopped leading", "identity", l.identity)
	}
}
