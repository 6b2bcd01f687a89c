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
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/secret"

	"k8s.io/apimachinery/pkg/types"
)

// Rotation grace periods.
//
// When a token Secret changes and the policy has a rotationGracePeriod, the
// previous token stays valid until the window ends. Kubernetes does not keep
// a Secret's old value, so the operator must remember the previous token
// somewhere that survives a restart and that every replica can read, and must
// not write the token itself anywhere but a Secret.
//
// It keeps the SHA-256 digest of each current and previous token in a Secret
// it owns, next to the policy: "<policy>-rap-state" (see stateSecretName),
// with an owner reference so it goes away with the policy. A digest is enough
// to accept the old token (the auth service compares digests anyway) and
// cannot be turned back into the token; keeping it in a Secret gives it the
// same access control as the tokens. Status holds fingerprints only.
//
// Every replica computes the window the same way, from the time the token
// Secret last changed (the newest managedFields entry), so replicas agree on
// when a previous token expires even before the leader has written the state
// Secret, and a replica that restarts during a window reads the state back.

// rotationState is the content of the state Secret, keyed by credential
// ("staticToken", "apiKey/<name>", "registryToken/signingKey").
type rotationState struct {
	Credentials map[string]credentialState `json:"credentials,omitempty"`
	// PublicKeys are the public JWKs of the registry token's ES256 keys
	// that Credentials["registryToken/signingKey"] names (their digests are
	// the keys' RFC 7638 thumbprints), by hex thumbprint. Public keys are
	// not secret; they are kept so that a replaced key is still published
	// after a restart, until its overlap ends.
	PublicKeys map[string]json.RawMessage `json:"publicKeys,omitempty"`
}

// credentialStates are a policy's credentials' states, by credential name, in
// the policy's order. A policy has a handful of credentials; a Go map with
// this value type would take a whole 8-slot group (about 1 KB) per policy,
// for the replica's lifetime, so it is a slice.
type credentialStates []namedCredentialState

type namedCredentialState struct {
	name  string
	state credentialState
}

// get is the state of the named credential, zero if it has none.
func (c credentialStates) get(name string) credentialState {
	for i := range c {
		if c[i].name == name {
			return c[i].state
		}
	}
	return credentialState{}
}

// set records the named credential's state, replacing an earlier one.
func (c *credentialStates) set(name string, st credentialState) {
	for i := range *c {
		if (*c)[i].name == name {
			(*c)[i].state = st
			return
		}
	}
	*c = append(*c, namedCredentialState{name: name, state: st})
}

// asState is the content of the state Secret holding c.
func (c credentialStates) asState() rotationState {
	st := rotationState{Credentials: make(map[string]credentialState, len(c))}
	for _, n := range c {
		st.Credentials[n.name] = n.state
	}
	return st
}

// credentialState is one credential's rotation history.
type credentialState struct {
	// Current is the hex SHA-256 of the value in force.
	Current string `json:"current,omitempty"`
	// RotatedAt is when the value in force was put in the Secret.
	RotatedAt time.Time `json:"rotatedAt,omitzero"`
	// Previous values still inside their grace window.
	Previous []previousState `json:"previous,omitempty"`
	// RevokedAt marks a reset: the value became unavailable (Secret or key
	// deleted, empty, weak) at this time; while it lasts, Current and
	// Previous are empty. It outlives the reset, and is kept when a value
	// comes back, so that a view of the credential from before it (a state
	// Secret read from a cache that lags or that the leader could not
	// write, or a replica's memory) can be recognised as stale and cannot
	// bring the revoked value back as a previous one.
	RevokedAt time.Time `json:"revokedAt,omitzero"`
	// Secret and SecretUID name the Secret that holds Current: the same
	// name with another UID means it was deleted and created again, which
	// revokes like a deletion that was seen.
	Secret    string `json:"secret,omitempty"`
	SecretUID string `json:"secretUID,omitempty"`
}

// valueSource is where a credential's value was read: its Secret's name,
// UID and creation time (empty when there is none) and when that Secret last
// changed.
type valueSource struct {
	secret, uid        string
	created, changedAt time.Time
}

// replacedBy reports whether src is a new Secret of the same name as the one
// that held s's value. A view without the Secret's name and UID (written
// before they were kept) knows when its value was put in: a Secret created
// later is another one.
func (s credentialState) replacedBy(src valueSource) bool {
	switch {
	case s.Current == "" || src.uid == "":
		return false
	case s.Secret != "" && s.Secret != src.secret:
		return false // secretRef now names another Secret: a rotation
	case s.SecretUID != "":
		return s.SecretUID != src.uid
	default:
		return src.created.After(s.RotatedAt)
	}
}

// goneWith reports whether s's value was held by a Secret that src shows
// replaced: s knows so itself, or s does not know the Secret's UID and holds
// the value of the other view, which knows it was replaced.
func (s credentialState) goneWith(other credentialState, src valueSource) bool {
	return s.replacedBy(src) || (s.SecretUID == "" && other.replacedBy(src) && s.Current == other.Current)
}

// supersedes reports whether a knows of a reset that b's knowledge predates:
// b does not know of it, and knew a value put in the Secret no later than
// the reset, so nothing b knows may be carried over. a may hold a value put
// in after the reset.
func (a credentialState) supersedes(b credentialState) bool {
	return !a.RevokedAt.IsZero() && b.Current != "" && b.RevokedAt.Before(a.RevokedAt) && !b.RotatedAt.After(a.RevokedAt)
}

type previousState struct {
	Digest     string    `json:"digest"`
	ReplacedAt time.Time `json:"replacedAt"`
	ExpiresAt  time.Time `json:"expiresAt"`
}

const (
	// labelManagedBy and managedByValue mark the state Secrets.
	labelManagedBy = "app.kubernetes.io/managed-by"
	managedByValue = "registry-auth-operator"

	stateSecretKey    = "state.json"
	credStaticToken   = "staticToken"
	credFederation    = "federationToken"
	credAPIKeyPrefix  = "apiKey/"
	credSigningKey    = "registryToken/signingKey"
	credSessionKey    = "session/secretKey"
	stateSecretSuffix = "-rap-state"
)

// stateSecretName is the name of a policy's rotation state Secret.
func stateSecretName(policy string) string {
	name := policy + stateSecretSuffix
	if len(name) <= 253 {
		return name
	}
	sum := sha256.Sum256([]byte(policy))
	// A cut that ends in "." would be followed by "-": a DNS subdomain's
	// labels start with a letter or digit. ("--" is valid, and trimming
	// "-" too would rename existing state Secrets.)
	return strings.TrimRight(policy[:253-len(stateSecretSuffix)-9], ".") + "-" + hex.EncodeToString(sum[:4]) + stateSecretSuffix
}

func decodeState(b []byte) rotationState {
	var st rotationState
	if len(b) > 0 {
		// A state Secret that does not parse is treated as empty: no
		// previous token is accepted, which is the safe side. Not partly
		// used either: encoding/json fills in what it decoded before the
		// error.
		if err := json.Unmarshal(b, &st); err != nil {
			st = rotationState{}
		}
	}
	if st.Credentials == nil {
		st.Credentials = map[string]credentialState{}
	}
	return st
}

func (s rotationState) encode() []byte {
	b, _ := json.Marshal(s)
	return b
}

// advance computes a credential's next state.
//
//   - current is the digest of the value now in the Secret, nil when the
//     value is unavailable (Secret or key deleted, empty, weak). Then the
//     credential is revoked: no current, no previous, and RevokedAt records
//     when (the first time it was seen, kept while the value stays away).
//   - changedAt is when the Secret last changed.
//   - grace is the policy's rotationGracePeriod now. Lowering it shortens
//     windows already running; raising it does not lengthen them.
//
// advance is pure: same inputs, same state, on every replica.
func advance(st credentialState, current *secret.Digest, changedAt time.Time, grace time.Duration, now time.Time) credentialState {
	if current == nil {
		if st.Current == "" && !st.RevokedAt.IsZero() {
			return st
		}
		// Not before the value revoked was put in: RotatedAt comes from the
		// API server's clock, now from this replica's, and a reset must
		// supersede what it revokes even when this clock is behind.
		return credentialState{RevokedAt: laterOf(now, st.RotatedAt)}
	}
	cur := current.Hex()
	next := credentialState{Current: cur, RotatedAt: st.RotatedAt, RevokedAt: st.RevokedAt}
	keep := func(p previousState) {
		exp := p.ExpiresAt
		if limit := p.ReplacedAt.Add(grace); limit.Before(exp) {
			exp = limit
		}
		if p.Digest == cur || !now.Before(exp) || slices.ContainsFunc(next.Previous, func(q previousState) bool { return q.Digest == p.Digest }) {
			return
		}
		p.ExpiresAt = exp
		next.Previous = append(next.Previous, p)
	}
	switch st.Current {
	case cur:
	case "":
		next.RotatedAt = changedAt
	default:
		next.RotatedAt = changedAt
		keep(previousState{Digest: st.Current, ReplacedAt: changedAt, ExpiresAt: changedAt.Add(grace)})
	}
	for _, p := range st.Previous {
		keep(p)
	}
	slices.SortFunc(next.Previous, func(a, b previousState) int { return b.ExpiresAt.Compare(a.ExpiresAt) })
	return next
}

// nextState is a credential's state after a load, from the two views of its
// history: the state Secret's and this replica's memory.
//
// A view from before a reset the other view knows of is stale: the state
// Secret can lag behind this replica (the cache, or the leader not having
// written it yet), and this replica's memory behind the state Secret. Either
// would turn the revoked value into a previous one when a new value arrives.
// A Secret deleted and created again is a revocation too, however fast:
// nothing from the deleted one carries over. A view that does not know the
// Secret's UID (a state Secret written before UIDs were kept) but holds the
// same value as one that was replaced is the same stale view.
func nextState(fromState, fromMemory credentialState, current *secret.Digest, src valueSource, grace time.Duration, now time.Time) credentialState {
	if fromMemory.supersedes(fromState) {
		fromState = credentialState{}
	}
	if fromState.supersedes(fromMemory) {
		fromMemory = credentialState{}
	}
	stateGone, memoryGone := fromState.goneWith(fromMemory, src), fromMemory.goneWith(fromState, src)
	if stateGone {
		fromState = credentialState{}
	}
	if memoryGone {
		fromMemory = credentialState{}
	}
	next := merge(advance(fromState, current, src.changedAt, grace, now),
		advance(fromMemory, current, src.changedAt, grace, now))
	if next.Current != "" {
		next.Secret, next.SecretUID = src.secret, src.uid
	}
	return next
}

// merge combines two views of the same credential computed by advance for the
// same current value (the state Secret's and this replica's memory). Previous
// entries are united; where both know an entry, the earlier expiry wins. Of
// two resets, the later is kept: it supersedes more.
func merge(a, b credentialState) credentialState {
	if a.Current == "" && b.Current == "" {
		if b.RevokedAt.After(a.RevokedAt) {
			return b
		}
		return a
	}
	if a.Current != b.Current || b.Current == "" {
		return a
	}
	out := credentialState{Current: a.Current, RotatedAt: a.RotatedAt, RevokedAt: laterOf(a.RevokedAt, b.RevokedAt)}
	if out.RotatedAt.IsZero() || (!b.RotatedAt.IsZero() && b.RotatedAt.Before(out.RotatedAt)) {
		out.RotatedAt = b.RotatedAt
	}
	out.Previous = append(out.Previous, a.Previous...)
	for _, p := range b.Previous {
		i := slices.IndexFunc(out.Previous, func(q previousState) bool { return q.Digest == p.Digest })
		if i < 0 {
			out.Previous = append(out.Previous, p)
		} else if p.ExpiresAt.Before(out.Previous[i].ExpiresAt) {
			out.Previous[i].ExpiresAt = p.ExpiresAt
		}
	}
	slices.SortFunc(out.Previous, func(a, b previousState) int { return b.ExpiresAt.Compare(a.ExpiresAt) })
	return out
}

// previousDigests converts a state's previous entries for the compile step.
func (s credentialState) previousDigests() []secret.PreviousDigest {
	var out []secret.PreviousDigest
	for _, p := range s.Previous {
		d, err := secret.ParseDigest(p.Digest)
		if err != nil {
			continue
		}
		out = append(out, secret.PreviousDigest{Digest: d, ExpiresAt: p.ExpiresAt})
	}
	return out
}

// nextExpiry is the earliest time a previous entry expires, zero if none.
func (s credentialState) nextExpiry() time.Time {
	var t time.Time
	for _, p := range s.Previous {
		if t.IsZero() || p.ExpiresAt.Before(t) {
			t = p.ExpiresAt
		}
	}
	return t
}

// rotationMemory is this replica's own view of each policy's credentials:
// it covers the time before the leader has written the state Secret, and
// clusters where no leader writes it. The states it holds are the
// resolutions' own and are never modified once stored, so they are shared,
// not copied.
type rotationMemory struct {
	mu sync.Mutex
	m  map[string]remembered // by policy key
}

// remembered is one policy object's credentials: a policy deleted and
// created again under its name is another object, and inherits nothing.
type remembered struct {
	uid   types.UID
	creds credentialStates
	// publicKeys are the JWKs of the registry token's signing keys in
	// creds, by hex thumbprint.
	publicKeys map[string]json.RawMessage
	// sessionKeys are the session signing keys (the web app's SECRET_KEY)
	// in creds, current and previous, by hex digest. See sessionKeys.
	sessionKeys map[string][]byte
}

func newRotationMemory() *rotationMemory {
	return &rotationMemory{m: map[string]remembered{}}
}

// get is what this replica remembers of the policy object with this UID.
func (r *rotationMemory) get(policy string, uid types.UID) remembered {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m, ok := r.m[policy]; ok && m.uid == uid {
		return m
	}
	return remembered{}
}

func (r *rotationMemory) set(policy string, uid types.UID, creds credentialStates, publicKeys map[string]json.RawMessage, sessionKeys map[string][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m[policy] = remembered{uid: uid, creds: creds, publicKeys: publicKeys, sessionKeys: sessionKeys}
}

func (r *rotationMemory) forget(policy string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, policy)
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
