package policy

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// model is what a snapshot must answer, computed the plain way.
type model map[string]*Policy

// claimants are the keys of the policies that claim host, oldest first
// (then by key).
func (m model) claimants(host string) []string {
	var claim []string
	for k, p := range m {
		if slices.Contains(p.hosts, host) {
			claim = append(claim, k)
		}
	}
	slices.SortFunc(claim, func(a, b string) int {
		if c := m[a].created.Compare(m[b].created); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	return claim
}

func (m model) selectHost(host string) (*Policy, check.Reason) {
	if claim := m.claimants(host); len(claim) > 0 {
		return m[claim[0]], ""
	}
	return nil, check.ReasonNoPolicy
}

func (m model) conflicts(key string) map[string][]string {
	p := m[key]
	if p == nil {
		return nil
	}
	var out map[string][]string
	for _, h := range p.hosts {
		if claim := m.claimants(h); len(claim) > 1 {
			if out == nil {
				out = map[string][]string{}
			}
			out[h] = claim
		}
	}
	return out
}

// check compares a snapshot with the model it was published from.
func (m model) check(t *testing.T, step int, snap *Snapshot, keys, hosts []string) {
	t.Helper()
	if snap.Len() != len(m) {
		t.Fatalf("step %d: Len %d, want %d", step, snap.Len(), len(m))
	}
	all := map[string]*Policy{}
	for k, p := range snap.All() {
		if _, dup := all[k]; dup {
			t.Fatalf("step %d: All yields %s twice", step, k)
		}
		all[k] = p
	}
	if !maps.Equal(all, map[string]*Policy(m)) {
		t.Fatalf("step %d: All differs from the model: %d vs %d policies", step, len(all), len(m))
	}
	for _, k := range keys {
		if got := snap.Policy(k); got != m[k] {
			t.Fatalf("step %d: Policy(%s) = %p, want %p", step, k, got, m[k])
		}
		got, want := snap.HostConflicts(k), m.conflicts(k)
		if len(got) != len(want) {
			t.Fatalf("step %d: HostConflicts(%s) = %v, want %v", step, k, got, want)
		}
		for h, ks := range want {
			if !slices.Equal(got[h], ks) {
				t.Fatalf("step %d: HostConflicts(%s)[%s] = %v, want %v", step, k, h, got[h], ks)
			}
		}
	}
	for _, h := range hosts {
		p, r := snap.selectPolicy("", h)
		wp, wr := m.selectHost(h)
		if p != wp || r != wr {
			t.Fatalf("step %d: host %s selects %p %q, want %p %q", step, h, p, r, wp, wr)
		}
	}
}

// Puts and deletes at random, with hosts shared by some policies: every
// snapshot answers as one built from scratch would, through many rebuilds
// of the base layer, and a snapshot never changes after it was published.
func TestStoreLayersAnswerAsAFullBuild(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var keys, hosts []string
	for i := range 300 {
		keys = append(keys, fmt.Sprintf("ns/p%d", i))
	}
	for i := range 200 {
		hosts = append(hosts, fmt.Sprintf("h%d.example.com", i))
	}
	s := NewStore(StoreOptions{})
	m := model{}
	type kept struct {
		snap *Snapshot
		m    model
	}
	var old []kept
	rebuilds := 0
	for step := range 3000 {
		k := keys[rng.IntN(len(keys))]
		var snap *Snapshot
		if rng.IntN(5) == 0 {
			delete(m, k)
			snap = s.Delete(k)
		} else {
			// Few distinct creation times: ties fall back to the key.
			p := &Policy{key: k, created: time.Unix(int64(rng.IntN(20)), 0)}
			for range rng.IntN(3) {
				p.hosts = append(p.hosts, hosts[rng.IntN(len(hosts))])
			}
			m[k] = p
			snap = s.Put(p)
		}
		if len(snap.top.policies) == 0 {
			rebuilds++
		}
		if step%10 == 0 {
			m.check(t, step, snap, keys, hosts)
		}
		if step%500 == 0 {
			old = append(old, kept{snap, maps.Clone(m)})
		}
	}
	for i, o := range old {
		o.m.check(t, -i, o.snap, keys, hosts)
	}
	if rebuilds < 10 {
		t.Errorf("the base was rebuilt %d times in 3,000 changes: the top layer is not bounded", rebuilds)
	}
	// A rebuild every change would be quadratic again.
	if rebuilds > 1500 {
		t.Errorf("the base was rebuilt %d times in 3,000 changes", rebuilds)
	}
}

// Publishing one change to a store of many policies copies a bounded top
// layer, not every policy.
func TestStorePutCostDoesNotGrowWithPolicies(t *testing.T) {
	const n = 20000
	s := NewStore(StoreOptions{})
	for i := range n {
		s.Put(&Policy{key: fmt.Sprintf("ns/p%d", i), hosts: []string{fmt.Sprintf("p%d.example.com", i)}})
	}
	snap := s.Load()
	if top, limit := len(snap.top.policies)+len(snap.top.hosts), 2*150; top > limit {
		t.Errorf("top layer of %d entries with %d policies, want at most %d", top, n, limit)
	}
	if keys, ok := snap.Changed(); !ok || !slices.Equal(keys, []string{fmt.Sprintf("ns/p%d", n-1)}) {
		t.Errorf("Changed = %v, %v; want the last key", keys, ok)
	}
	if _, ok := s.Replace().Changed(); ok {
		t.Error("Replace: Changed must say that anything may have changed")
	}
}
