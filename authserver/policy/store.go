package policy

import (
	"iter"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// Snapshot is the complete configuration the handler decides with: every
// compiled policy, and the index of hosts. It is immutable; a change builds a
// new Snapshot and the Store swaps it in whole, so a request sees either the
// old configuration or the new one, never a mix.
//
// A snapshot is two layers: a base, shared by consecutive snapshots, and a
// small top layer of what changed since the base was built, looked up first.
// A change copies only the top layer, and the base is rebuilt once the top
// layer holds about √n entries: publishing one change to n policies costs
// O(√n) instead of O(n), so loading n policies one by one (the start of an
// operator with 10,000 of them) is not quadratic.
type Snapshot struct {
	generation uint64
	n          int
	base, top  *layer
	// only is the policy plain /validate selects in standalone mode.
	only *Policy
	// changed are the keys put or deleted since the previous snapshot;
	// all is set when any policy may have changed.
	changed []string
	all     bool
}

// layer is one level of a snapshot. In a top layer, a nil policy is one
// deleted since the base, and a zero hostEntry a host no policy claims any
// more.
type layer struct {
	policies map[string]*Policy
	hosts    map[string]hostEntry
}

// hostEntry is who claims a host: the policy that answers for it and, when
// several claim it, the keys of all claimants, the one that answers first.
type hostEntry struct {
	policy    *Policy
	conflicts []string
}

var emptyLayer = &layer{}

// Generation counts the snapshots a Store has published.
func (s *Snapshot) Generation() uint64 { return s.generation }

// Len is the number of policies.
func (s *Snapshot) Len() int { return s.n }

// All iterates over the policies, by key, in no particular order.
func (s *Snapshot) All() iter.Seq2[string, *Policy] {
	return func(yield func(string, *Policy) bool) {
		for k, p := range s.top.policies {
			if p != nil && !yield(k, p) {
				return
			}
		}
		for k, p := range s.base.policies {
			if _, over := s.top.policies[k]; !over && !yield(k, p) {
				return
			}
		}
	}
}

// Changed returns the keys of the policies put or deleted since the
// previous snapshot of the store; ok is false when any policy may have
// changed (the first snapshot, Replace).
func (s *Snapshot) Changed() (keys []string, ok bool) { return s.changed, !s.all }

// Policy returns the policy with key "namespace/name", or nil.
func (s *Snapshot) Policy(key string) *Policy {
	if p, ok := s.top.policies[key]; ok {
		return p
	}
	return s.base.policies[key]
}

func (s *Snapshot) host(h string) hostEntry {
	if e, ok := s.top.hosts[h]; ok {
		return e
	}
	return s.base.hosts[h]
}

// Only is the policy that plain /validate selects whatever the host in
// standalone mode, nil otherwise.
func (s *Snapshot) Only() *Policy { return s.only }

// HostConflicts returns, for each host of the policy that other policies
// claim too, the keys of all claimants, the one that answers for it (the
// oldest) first.
func (s *Snapshot) HostConflicts(key string) map[string][]string {
	p := s.Policy(key)
	if p == nil {
		return nil
	}
	var out map[string][]string
	for _, h := range p.hosts {
		if c := s.host(h).conflicts; len(c) > 0 {
			if out == nil {
				out = map[string][]string{}
			}
			out[h] = c
		}
	}
	return out
}

// selectPolicy picks the policy for a request: by key when the path named
// one, else by host (the only policy in standalone mode). No policy is never
// a reason to allow.
func (s *Snapshot) selectPolicy(key, host string) (*Policy, check.Reason) {
	if key != "" {
		if p := s.Policy(key); p != nil {
			return p, ""
		}
		return nil, check.ReasonUnknownPolicy
	}
	if s.only != nil {
		return s.only, ""
	}
	if p := s.host(host).policy; p != nil {
		return p, ""
	}
	return nil, check.ReasonNoPolicy
}

// Store holds the current Snapshot. Readers call Load once per request and
// never block; writers are serialised and publish a whole new Snapshot.
type Store struct {
	cur atomic.Pointer[Snapshot]

	mu        sync.Mutex
	policies  map[string]*Policy
	claims    map[string][]string // host -> keys of the policies claiming it, oldest first
	generated uint64
	selectOne bool
	listeners []func(*Snapshot)
}

// StoreOptions configure a Store.
type StoreOptions struct {
	// SelectOnlyPolicy makes plain /validate select the single policy
	// (standalone mode) instead of choosing by host.
	SelectOnlyPolicy bool
}

// NewStore returns a store holding an empty snapshot.
func NewStore(opts StoreOptions) *Store {
	s := &Store{policies: map[string]*Policy{}, claims: map[string][]string{}, selectOne: opts.SelectOnlyPolicy}
	s.cur.Store(s.rebuild(nil))
	return s
}

// Load returns the current snapshot.
func (s *Store) Load() *Snapshot { return s.cur.Load() }

// Put adds or replaces a policy and publishes the new snapshot.
func (s *Store) Put(p *Policy) *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.policies[p.key]
	s.policies[p.key] = p
	return s.publish(p.key, s.reclaim(p.key, old, p))
}

// Delete removes a policy and publishes the new snapshot. Deleting an absent
// key publishes nothing.
func (s *Store) Delete(key string) *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.policies[key]
	if !ok {
		return s.cur.Load()
	}
	delete(s.policies, key)
	return s.publish(key, s.reclaim(key, old, nil))
}

// Replace sets the whole set of policies.
func (s *Store) Replace(ps ...*Policy) *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policies = make(map[string]*Policy, len(ps))
	s.claims = map[string][]string{}
	for _, p := range ps {
		s.policies[p.key] = p
	}
	for k, p := range s.policies {
		s.reclaim(k, nil, p)
	}
	return s.commit(s.rebuild(nil))
}

// OnPublish registers f to be called (under the writer lock, so in order)
// with every snapshot published after it.
func (s *Store) OnPublish(f func(*Snapshot)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, f)
}

// reclaim moves key's claims from old's hosts to now's (either may be nil)
// and returns the hosts whose claimants changed.
func (s *Store) reclaim(key string, old, now *Policy) []string {
	var touched []string
	if old != nil {
		for _, h := range old.hosts {
			keys := s.claims[h]
			// By key: old's creation time may not be now's.
			if i := slices.Index(keys, key); i >= 0 {
				keys = slices.Delete(keys, i, i+1)
			}
			if len(keys) == 0 {
				delete(s.claims, h)
			} else {
				s.claims[h] = keys
			}
			touched = append(touched, h)
		}
	}
	if now != nil {
		for _, h := range now.hosts {
			keys := s.claims[h]
			if !slices.Contains(keys, key) {
				i, _ := slices.BinarySearchFunc(keys, key, s.olderFirst)
				s.claims[h] = slices.Insert(keys, i, key)
			}
			if !slices.Contains(touched, h) {
				touched = append(touched, h)
			}
		}
	}
	return touched
}

// olderFirst orders claimants of a host: of several, the oldest answers
// for the host, as Gateway API resolves conflicting routes, so a newer
// policy can neither take a host away nor block it. (Which namespace may
// claim which host at all is the loader's to check: the operator's
// --host-grants.) Equal creation times fall back to the key.
func (s *Store) olderFirst(a, b string) int {
	pa, pb := s.policies[a], s.policies[b]
	if c := pa.created.Compare(pb.created); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

// entry is the snapshot's view of a host's claimants.
func (s *Store) entry(h string) hostEntry {
	switch keys := s.claims[h]; len(keys) {
	case 0:
		return hostEntry{}
	case 1:
		return hostEntry{policy: s.policies[keys[0]]}
	default:
		return hostEntry{policy: s.policies[keys[0]], conflicts: slices.Clone(keys)}
	}
}

// publish makes the snapshot after a change of key (whose hosts' claimants
// are in hosts): the previous one with a new top layer, or a new base once
// the top layer has grown to about √n entries.
func (s *Store) publish(key string, hosts []string) *Snapshot {
	prev := s.cur.Load()
	size := len(prev.top.policies) + len(prev.top.hosts) + 1 + len(hosts)
	if limit := max(16, int(math.Sqrt(float64(len(s.policies))))); size > limit {
		return s.commit(s.compact(prev, key, hosts))
	}
	top := &layer{policies: make(map[string]*Policy, len(prev.top.policies)+1), hosts: make(map[string]hostEntry, len(prev.top.hosts)+len(hosts))}
	maps.Copy(top.policies, prev.top.policies)
	maps.Copy(top.hosts, prev.top.hosts)
	top.policies[key] = s.policies[key] // nil when deleted
	for _, h := range hosts {
		top.hosts[h] = s.entry(h)
	}
	return s.commit(&Snapshot{base: prev.base, top: top, changed: []string{key}})
}

// compact makes the snapshot after a change of key with a new base: the
// previous base with the previous top layer and the change applied (cloning
// a map costs far less than filling one), and an empty top layer.
func (s *Store) compact(prev *Snapshot, key string, hosts []string) *Snapshot {
	base := &layer{policies: maps.Clone(prev.base.policies), hosts: maps.Clone(prev.base.hosts)}
	set := func(k string, p *Policy) {
		if p == nil {
			delete(base.policies, k)
		} else {
			base.policies[k] = p
		}
	}
	setHost := func(h string, e hostEntry) {
		if e.policy == nil && len(e.conflicts) == 0 {
			delete(base.hosts, h)
		} else {
			base.hosts[h] = e
		}
	}
	for k, p := range prev.top.policies {
		set(k, p)
	}
	for h, e := range prev.top.hosts {
		setHost(h, e)
	}
	set(key, s.policies[key])
	for _, h := range hosts {
		setHost(h, s.entry(h))
	}
	return &Snapshot{base: base, top: emptyLayer, changed: []string{key}}
}

// rebuild makes a snapshot with a new base of everything and an empty top
// layer. changed nil: any policy may have changed.
func (s *Store) rebuild(changed []string) *Snapshot {
	base := &layer{policies: maps.Clone(s.policies), hosts: make(map[string]hostEntry, len(s.claims))}
	for h := range s.claims {
		base.hosts[h] = s.entry(h)
	}
	return &Snapshot{base: base, top: emptyLayer, changed: changed, all: changed == nil}
}

// commit numbers the snapshot, fills in what depends on the whole store,
// swaps it in and tells the listeners.
func (s *Store) commit(snap *Snapshot) *Snapshot {
	s.generated++
	snap.generation = s.generated
	snap.n = len(s.policies)
	if s.selectOne && len(s.policies) == 1 {
		for _, p := range s.policies {
			snap.only = p
		}
	}
	s.cur.Store(snap)
	for _, f := range s.listeners {
		f(snap)
	}
	return snap
}
