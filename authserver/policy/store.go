package policy

import (
	"iter"
	"maps"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// Snapshot is the complete configuration the handler decides with: every
// compiled policy, and the index of hosts. It is immutable; a change builds a
// new Snapshot and the Store swaps it in whole, so a request sees either the
// old configuration or the new one, never a mix.
type Snapshot struct {
	generation uint64
	policies   map[string]*Policy
	hosts      map[string]*Policy
	conflicts  map[string][]string // host -> keys of the policies claiming it
	// only is the policy plain /validate selects in standalone mode.
	only *Policy
}

// Generation counts the snapshots a Store has published.
func (s *Snapshot) Generation() uint64 { return s.generation }

// Len is the number of policies.
func (s *Snapshot) Len() int { return len(s.policies) }

// All iterates over the policies, by key, in no particular order.
func (s *Snapshot) All() iter.Seq2[string, *Policy] { return maps.All(s.policies) }

// Policy returns the policy with key "namespace/name", or nil.
func (s *Snapshot) Policy(key string) *Policy { return s.policies[key] }

// Only is the policy that plain /validate selects whatever the host in
// standalone mode, nil otherwise.
func (s *Snapshot) Only() *Policy { return s.only }

// HostConflicts returns, for each host of the policy that other policies
// claim too, the keys of all claimants, the one that answers for it (the
// oldest) first.
func (s *Snapshot) HostConflicts(key string) map[string][]string {
	p := s.policies[key]
	if p == nil {
		return nil
	}
	var out map[string][]string
	for _, h := range p.hosts {
		if c := s.conflicts[h]; len(c) > 0 {
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
		if p := s.policies[key]; p != nil {
			return p, ""
		}
		return nil, check.ReasonUnknownPolicy
	}
	if s.only != nil {
		return s.only, ""
	}
	if p := s.hosts[host]; p != nil {
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
	s := &Store{policies: map[string]*Policy{}, selectOne: opts.SelectOnlyPolicy}
	s.cur.Store(s.build())
	return s
}

// Load returns the current snapshot.
func (s *Store) Load() *Snapshot { return s.cur.Load() }

// Put adds or replaces a policy and publishes the new snapshot.
func (s *Store) Put(p *Policy) *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policies[p.key] = p
	return s.publish()
}

// Delete removes a policy and publishes the new snapshot. Deleting an absent
// key publishes nothing.
func (s *Store) Delete(key string) *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.policies[key]; !ok {
		return s.cur.Load()
	}
	delete(s.policies, key)
	return s.publish()
}

// Replace sets the whole set of policies.
func (s *Store) Replace(ps ...*Policy) *Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policies = make(map[string]*Policy, len(ps))
	for _, p := range ps {
		s.policies[p.key] = p
	}
	return s.publish()
}

// OnPublish registers f to be called (under the writer lock, so in order)
// with every snapshot published after it.
func (s *Store) OnPublish(f func(*Snapshot)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, f)
}

func (s *Store) publish() *Snapshot {
	snap := s.build()
	s.cur.Store(snap)
	for _, f := range s.listeners {
		f(snap)
	}
	return snap
}

// build makes a snapshot of s.policies. The policies map is copied: the
// snapshot must not change when the store does.
func (s *Store) build() *Snapshot {
	s.generated++
	snap := &Snapshot{
		generation: s.generated,
		policies:   make(map[string]*Policy, len(s.policies)),
		hosts:      map[string]*Policy{},
		conflicts:  map[string][]string{},
	}
	claims := map[string][]string{}
	for k, p := range s.policies {
		snap.policies[k] = p
		for _, h := range p.hosts {
			claims[h] = append(claims[h], k)
		}
	}
	// Of several claimants the oldest answers for the host, as Gateway API
	// resolves conflicting routes: a newer policy cannot take a host away,
	// nor block it. (Which namespace may claim which host at all is the
	// loader's to check: the operator's --host-grants.)
	for h, keys := range claims {
		if len(keys) > 1 {
			sort.Slice(keys, func(i, j int) bool {
				a, b := s.policies[keys[i]], s.policies[keys[j]]
				if !a.created.Equal(b.created) {
					return a.created.Before(b.created)
				}
				return keys[i] < keys[j]
			})
			snap.conflicts[h] = keys
		}
		snap.hosts[h] = s.policies[keys[0]]
	}
	if s.selectOne && len(s.policies) == 1 {
		for _, p := range s.policies {
			snap.only = p
		}
	}
	return snap
}
