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
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

func TestSameSecrets(t *testing.T) {
	// Loaded from Secret "a" at version 5; "b" was not found.
	res := &resolution{namespace: "ns", secretNames: []string{"a", "b"}, secretVersions: []string{"5", ""}}
	for _, tc := range []struct {
		name     string
		versions map[string]string // the API server's, by "namespace/name"
		want     bool
	}{
		{"unchanged", map[string]string{"ns/a": "5"}, true},
		{"a written", map[string]string{"ns/a": "6"}, false},
		{"a deleted", map[string]string{}, false},
		{"b created", map[string]string{"ns/a": "5", "ns/b": "7"}, false},
		{"a Secret of another namespace", map[string]string{"ns/a": "5", "other/b": "7"}, true},
		{"a Secret the policy does not read", map[string]string{"ns/a": "5", "ns/c": "1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(sameSecrets(res, tc.versions)).To(Equal(tc.want))
		})
	}
}

// A disabled static token's Secret is never read, so its version is never
// recorded: it must not count as a Secret of the policy, or every recovery
// resync would find the policy out of date and load it again.
func TestDisabledStaticTokenSecretNotReferenced(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	pol := rotationPolicy.DeepCopy()
	pol.Spec.StaticToken.Enabled = false
	g.Expect(referencedSecrets(pol)).To(Equal([]string{stateSecretName("p")}))
	pol.Spec.StaticToken.Enabled = true
	g.Expect(referencedSecrets(pol)).To(Equal([]string{stateSecretName("p"), "tok"}))

	pol.Spec.StaticToken.Enabled = false
	tok := tokenSecret("2", "uid-tok", "0123456789abcdef0123456789abcdef", now, time.Time{})
	api := secretReader{"tok": tok}
	r := rotationResolver(api, api, func() time.Time { return now })
	res, err := r.resolve(context.Background(), pol)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(sameSecrets(res, map[string]string{"ns/tok": "2"})).To(BeTrue())
}

func TestShouldResync(t *testing.T) {
	const interval = time.Second
	tick := interval / 4
	for _, tc := range []struct {
		name                    string
		recovering, pingFailed  bool
		sinceFailure, sinceLast time.Duration
		want                    bool
	}{
		{"healthy", false, false, time.Hour, time.Hour, false},
		{"healthy, just back", false, true, time.Hour, time.Hour, false},
		{"API server just answered again", true, true, tick, 0, true},
		{"watches maybe still down: every tick", true, false, 10 * time.Second, tick, true},
		{"watches surely back: not every tick", true, false, fastResyncFor, tick, false},
		{"watches surely back: once an interval", true, false, fastResyncFor, interval, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(shouldResync(tc.recovering, tc.pingFailed, tc.sinceFailure, tc.sinceLast, interval)).To(Equal(tc.want))
		})
	}
}

// pagedReader lists Secret metadata a page at a time, as the API server
// does when asked for a limit.
type pagedReader struct {
	client.Reader
	names     []string
	calls     []client.ListOptions
	deadlines []time.Time
}

func (p *pagedReader) List(ctx context.Context, l client.ObjectList, opts ...client.ListOption) error {
	var o client.ListOptions
	o.ApplyOptions(opts)
	p.calls = append(p.calls, o)
	d, _ := ctx.Deadline()
	p.deadlines = append(p.deadlines, d)
	start := 0
	if o.Continue != "" {
		start, _ = strconv.Atoi(o.Continue)
	}
	end := min(start+int(o.Limit), len(p.names))
	ml := l.(*metav1.PartialObjectMetadataList)
	for _, n := range p.names[start:end] {
		ml.Items = append(ml.Items, metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: n}})
	}
	if end < len(p.names) {
		ml.Continue = strconv.Itoa(end)
	}
	return nil
}

func TestListPages(t *testing.T) {
	g := NewWithT(t)
	r := &pagedReader{}
	for i := range 2*recoveryPageSize + 1 {
		r.names = append(r.names, fmt.Sprintf("s%d", i))
	}
	var got []string
	err := listPages(context.Background(), r, time.Second, func() client.ObjectList { return &metav1.PartialObjectMetadataList{} }, "ns",
		func(l client.ObjectList) {
			for _, s := range l.(*metav1.PartialObjectMetadataList).Items {
				got = append(got, s.Name)
			}
		})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got).To(Equal(r.names))
	g.Expect(r.calls).To(HaveLen(3))
	for i, c := range r.calls {
		g.Expect(c.Limit).To(BeEquivalentTo(recoveryPageSize))
		g.Expect(c.Namespace).To(Equal("ns"))
		// Each page has a deadline of its own, not what is left of one
		// for the whole list.
		g.Expect(r.deadlines[i]).NotTo(BeZero())
		if i > 0 {
			g.Expect(r.deadlines[i]).To(BeTemporally(">", r.deadlines[i-1]))
		}
	}
}

// A reconcile that keeps failing is retried at least every retryMax, not
// after controller-runtime's 1,000 s.
func TestRetryLimiter(t *testing.T) {
	g := NewWithT(t)
	l := retryLimiter()
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "ns", Name: "p"}}
	first := l.When(req)
	g.Expect(first).To(BeNumerically("<", time.Second))
	var last time.Duration
	for range 40 {
		last = l.When(req)
	}
	g.Expect(last).To(Equal(retryMax))
	l.Forget(req)
	g.Expect(l.NumRequeues(req)).To(BeZero())
}

// What recovery compares is what each load was made from, whether the state
// Secret was read again or remembered: a load from memory must not look
// out of date after the next outage.
func TestSecretVersionsOfALoad(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	state := rotationStateSecret("7", map[string]credentialState{credStaticToken: {Current: digestHex("x")}})
	tok := tokenSecret("2", "uid-tok", "0123456789abcdef0123456789abcdef", now, time.Time{})
	api := secretReader{state.Name: state, "tok": tok}
	r := rotationResolver(api, api, func() time.Time { return now })
	versions := map[string]string{"ns/" + state.Name: "7", "ns/tok": "2"}
	for load := range 3 { // the first reads the state Secret, the others remember it
		res := resolveRotation(g, r)
		g.Expect(res.secretNames).To(Equal([]string{state.Name, "tok"}))
		g.Expect(res.secretVersions).To(Equal([]string{"7", "2"}), "load %d", load)
		g.Expect(sameSecrets(res, versions)).To(BeTrue(), "load %d", load)
	}
}

func TestWatchHealth(t *testing.T) {
	g := NewWithT(t)
	var none *WatchHealth
	g.Expect(none.recovering()).To(BeFalse())
	w := NewWatchHealth()
	g.Expect(w.recovering()).To(BeFalse(), "no failure yet")
	g.Expect(w.sinceFailure()).To(BeNumerically(">", recoveryWindow))
	w.failed()
	g.Expect(w.recovering()).To(BeTrue())
	g.Expect(w.sinceFailure()).To(BeNumerically("<", fastResyncFor))
	// A failure recorded a window ago has ended.
	w.last.Store(1)
	w.start = w.start.Add(-recoveryWindow)
	g.Expect(w.recovering()).To(BeFalse())
}
