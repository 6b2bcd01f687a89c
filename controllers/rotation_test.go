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
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// secretReader serves Secrets from a map: the API server, or a cache that
// lags behind it.
type secretReader map[string]*corev1.Secret

func (r secretReader) Get(_ context.Context, k client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	s, ok := r[k.Name]
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, k.Name)
	}
	switch o := obj.(type) {
	case *corev1.Secret:
		s.DeepCopyInto(o)
	case *metav1.PartialObjectMetadata:
		o.ObjectMeta = *s.ObjectMeta.DeepCopy()
	}
	return nil
}

func (r secretReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return nil
}

// The rotation tests resolve one policy: a static token in Secret "tok"
// with a grace period of rotationGrace.
var (
	rotationGrace  = &metav1.Duration{Duration: time.Hour}
	rotationPolicy = func() *authv1alpha1.RegistryAuthPolicy {
		pol := &authv1alpha1.RegistryAuthPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "uid-p", Generation: 1}}
		pol.Spec.StaticToken = &authv1alpha1.StaticTokenSpec{Enabled: true,
			SecretRef: &authv1alpha1.SecretKeySelector{Name: "tok"}, RotationGracePeriod: rotationGrace}
		return pol
	}()
)

// rotationStateSecret is the policy's state Secret holding creds.
func rotationStateSecret(rv string, creds map[string]credentialState) *corev1.Secret {
	owner := []metav1.OwnerReference{{UID: rotationPolicy.UID, Kind: "RegistryAuthPolicy", Name: rotationPolicy.Name,
		APIVersion: authv1alpha1.GroupVersion.String(), Controller: ptr.To(true)}}
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: stateSecretName("p"), ResourceVersion: rv,
		OwnerReferences: owner}, Data: map[string][]byte{stateSecretKey: rotationState{Credentials: creds}.encode()}}
}

// tokenSecret is Secret "tok" holding v, created at created and, unless
// changed is zero, last written at changed (its managedFields time).
func tokenSecret(rv, uid, v string, created, changed time.Time) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "tok", ResourceVersion: rv, UID: types.UID(uid), Labels: optedIn(),
		CreationTimestamp: metav1.NewTime(created)}, Data: map[string][]byte{"token": []byte(v)}}
	if !changed.IsZero() {
		s.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl", Time: ptr.To(metav1.NewTime(changed))}}
	}
	return s
}

// rotationResolver reads Secrets from api and versions from cache, at the
// test's clock.
func rotationResolver(api, cache secretReader, now func() time.Time) *resolver {
	return &resolver{secrets: api, metadata: cache, states: map[string]*stateRecord{}, memory: newRotationMemory(), now: now}
}

func resolveRotation(g Gomega, r *resolver) *resolution {
	res, err := r.resolve(context.Background(), rotationPolicy)
	g.Expect(err).NotTo(HaveOccurred())
	return res
}

func digestHex(v string) string { return secret.DigestOf([]byte(v)).Hex() }

// previousDigests are the static token's previous digests after res.
func previousDigests(res *resolution) []string {
	out := []string{}
	for _, p := range res.creds.get(credStaticToken).Previous {
		out = append(out, p.Digest)
	}
	return out
}

func TestCredentialStates(t *testing.T) {
	g := NewWithT(t)
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	var c credentialStates
	g.Expect(c.get(credStaticToken)).To(BeZero())
	c.set(credStaticToken, credentialState{Current: "aa", RotatedAt: t0})
	c.set(credAPIKeyPrefix+"ci", credentialState{Current: "bb"})
	c.set(credStaticToken, credentialState{Current: "cc", RotatedAt: t0})
	g.Expect(c).To(HaveLen(2), "set replaces")
	g.Expect(c.get(credStaticToken).Current).To(Equal("cc"))
	g.Expect(c.get(credAPIKeyPrefix + "ci").Current).To(Equal("bb"))
	g.Expect(c.get(credAPIKeyPrefix + "deploy")).To(BeZero())

	// The state Secret's content is the same as a map's would be.
	back := decodeState(c.asState().encode())
	g.Expect(back.Credentials).To(Equal(map[string]credentialState{
		credStaticToken:         {Current: "cc", RotatedAt: t0},
		credAPIKeyPrefix + "ci": {Current: "bb"},
	}))
}

func TestSupersedes(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	live := func(at time.Time) credentialState { return credentialState{Current: "aa", RotatedAt: at} }
	reset := func(at time.Time) credentialState { return credentialState{RevokedAt: at} }
	for _, tc := range []struct {
		name string
		a, b credentialState
		want bool
	}{
		{"reset after the value", reset(t0.Add(time.Minute)), live(t0), true},
		{"reset in the same instant as the value", reset(t0), live(t0), true},
		{"value put after the reset", reset(t0), live(t0.Add(time.Second)), false},
		{"not a reset", live(t0.Add(time.Minute)), live(t0), false},
		{"nothing known", credentialState{}, live(t0), false},
		{"two resets", reset(t0.Add(time.Minute)), reset(t0), false},
		{"reset against nothing", reset(t0), credentialState{}, false},
		// A value put in after the reset keeps the reset's mark.
		{"a value after a reset, against a view from before it", credentialState{Current: "bb", RotatedAt: t0.Add(2 * time.Minute), RevokedAt: t0.Add(time.Minute)}, live(t0), true},
		{"both know the reset", credentialState{Current: "bb", RotatedAt: t0.Add(2 * time.Minute), RevokedAt: t0.Add(time.Minute)},
			credentialState{Current: "bb", RotatedAt: t0.Add(2 * time.Minute), RevokedAt: t0.Add(time.Minute)}, false},
		{"the other view knows a later reset", credentialState{Current: "bb", RotatedAt: t0.Add(2 * time.Minute), RevokedAt: t0.Add(time.Minute)},
			credentialState{Current: "cc", RotatedAt: t0.Add(3 * time.Minute), RevokedAt: t0.Add(150 * time.Second)}, false},
		{"a view from an earlier reset cycle", reset(t0.Add(time.Hour)), credentialState{Current: "bb", RotatedAt: t0.Add(2 * time.Minute), RevokedAt: t0.Add(time.Minute)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(tc.a.supersedes(tc.b)).To(Equal(tc.want))
		})
	}
}

// TestRevokedValueNeverComesBack: once a credential's value was revoked
// (here: its Secret deleted), no later load may accept that value as a
// previous one, whichever view of the rotation state is behind.
func TestRevokedValueNeverComesBack(t *testing.T) {
	const x, z = "0123456789abcdef0123456789abcdef-old", "fedcba9876543210fedcba9876543210-new"
	grace := rotationGrace
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	token := func(rv, v string, at time.Time) *corev1.Secret { return tokenSecret(rv, "uid-tok", v, at, time.Time{}) }
	newResolver := func(api, cache secretReader) *resolver {
		return rotationResolver(api, cache, func() time.Time { return now })
	}
	state, resolve, digest, previous := rotationStateSecret, resolveRotation, digestHex, previousDigests
	xState := map[string]credentialState{credStaticToken: {Current: digest(x), RotatedAt: now.Add(-time.Hour)}}

	t.Run("the state Secret in the cache is older than the reset this replica saw", func(t *testing.T) {
		g := NewWithT(t)
		api := secretReader{"tok": token("2", x, now.Add(-time.Hour)), stateSecretName("p"): state("1", xState)}
		cache := secretReader{"tok": api["tok"], stateSecretName("p"): api[stateSecretName("p")]}
		r := newResolver(api, cache)
		g.Expect(resolve(g, r).creds.get(credStaticToken).Current).To(Equal(digest(x)))

		now = now.Add(time.Minute)
		delete(api, "tok") // revoked
		delete(cache, "tok")
		res := resolve(g, r)
		g.Expect(res.policy.Fingerprints().StaticToken).To(BeEmpty(), "nothing in force after the revocation")
		g.Expect(res.creds.get(credStaticToken).RevokedAt).To(Equal(now))

		// The leader writes the reset and the user creates a new token; the
		// cache still holds the state Secret from before the reset.
		now = now.Add(time.Second)
		api[stateSecretName("p")] = state("3", res.creds.asState().Credentials)
		api["tok"] = token("4", z, now)
		res = resolve(g, r)
		g.Expect(res.creds.get(credStaticToken).Current).To(Equal(digest(z)))
		g.Expect(previous(res)).To(BeEmpty(), "the revoked token came back as a previous one")
	})

	t.Run("this replica's memory is older than the reset in the state Secret", func(t *testing.T) {
		g := NewWithT(t)
		api := secretReader{"tok": token("2", x, now.Add(-time.Hour)), stateSecretName("p"): state("1", xState)}
		r := newResolver(api, api)
		g.Expect(resolve(g, r).creds.get(credStaticToken).Current).To(Equal(digest(x)))

		// Another replica (the leader) saw the revocation and wrote it; this
		// one only sees the new token.
		now = now.Add(time.Minute)
		api[stateSecretName("p")] = state("3", map[string]credentialState{credStaticToken: {RevokedAt: now}})
		now = now.Add(time.Second)
		api["tok"] = token("4", z, now)
		res := resolve(g, r)
		g.Expect(res.creds.get(credStaticToken).Current).To(Equal(digest(z)))
		g.Expect(previous(res)).To(BeEmpty(), "the revoked token came back as a previous one")
	})

	t.Run("the Secret deleted and created again before any load saw it gone", func(t *testing.T) {
		g := NewWithT(t)
		api := secretReader{"tok": token("2", x, now.Add(-time.Hour)), stateSecretName("p"): state("1", xState)}
		r := newResolver(api, api)
		g.Expect(resolve(g, r).creds.get(credStaticToken).SecretUID).To(Equal("uid-tok"))

		now = now.Add(time.Minute)
		recreated := token("4", z, now)
		recreated.UID = "uid-tok-2"
		api["tok"] = recreated
		res := resolve(g, r)
		g.Expect(res.creds.get(credStaticToken).Current).To(Equal(digest(z)))
		g.Expect(res.creds.get(credStaticToken).SecretUID).To(Equal("uid-tok-2"))
		g.Expect(previous(res)).To(BeEmpty(), "a deleted Secret's token came back as a previous one")
	})

	t.Run("a restarted replica, the Secret created again while it was down", func(t *testing.T) {
		g := NewWithT(t)
		withUID := map[string]credentialState{credStaticToken: {Current: digest(x), RotatedAt: now.Add(-time.Hour),
			Secret: "tok", SecretUID: "uid-tok"}}
		recreated := token("4", z, now)
		recreated.UID = "uid-tok-2"
		api := secretReader{"tok": recreated, stateSecretName("p"): state("1", withUID)}
		res := resolve(g, newResolver(api, api))
		g.Expect(res.creds.get(credStaticToken).Current).To(Equal(digest(z)))
		g.Expect(previous(res)).To(BeEmpty(), "a deleted Secret's token came back as a previous one")
	})

	// The leader cannot write the state Secret (an admission policy, a
	// quota, a missing right): it keeps the value from before the reset.
	// A value emptied in place (same Secret, same UID) and put in again must
	// not bring the emptied value back on a later load.
	t.Run("the state Secret never written: a value emptied and refilled in place", func(t *testing.T) {
		g := NewWithT(t)
		created := now.Add(-2 * time.Hour)
		inPlace := func(rv, v string, changed time.Time) *corev1.Secret {
			return tokenSecret(rv, "uid-tok", v, created, changed)
		}
		stale := state("1", map[string]credentialState{credStaticToken: {Current: digest(x), RotatedAt: now.Add(-time.Hour),
			Secret: "tok", SecretUID: "uid-tok"}})
		api := secretReader{"tok": inPlace("2", x, now.Add(-time.Hour)), stateSecretName("p"): stale}
		r := newResolver(api, api)
		g.Expect(resolve(g, r).creds.get(credStaticToken).Current).To(Equal(digest(x)))

		now = now.Add(time.Minute)
		api["tok"] = inPlace("3", "", now)
		res := resolve(g, r)
		g.Expect(res.policy.Fingerprints().StaticToken).To(BeEmpty(), "nothing in force after the revocation")

		now = now.Add(time.Second)
		api["tok"] = inPlace("4", z, now)
		res = resolve(g, r)
		g.Expect(res.creds.get(credStaticToken).Current).To(Equal(digest(z)))
		g.Expect(previous(res)).To(BeEmpty(), "the revoked token came back as a previous one")

		// Anything that loads the policy again (a label on the Secret, a
		// spec change, a resync) still reads the stale state Secret.
		for i, rv := range []string{"5", "6"} {
			now = now.Add(time.Second)
			api["tok"] = inPlace(rv, z, now)
			res = resolve(g, r)
			g.Expect(res.creds.get(credStaticToken).Current).To(Equal(digest(z)))
			g.Expect(previous(res)).To(BeEmpty(), "load %d after the refill: the revoked token came back as a previous one", i+1)
		}

		// Once the state Secret is written, it carries the reset: it and a
		// memory that predates the reset are told apart.
		api[stateSecretName("p")] = state("7", res.creds.asState().Credentials)
		g.Expect(res.creds.get(credStaticToken).RevokedAt).NotTo(BeZero())
	})

	t.Run("a rotation without a reset keeps the previous token for the grace period", func(t *testing.T) {
		g := NewWithT(t)
		api := secretReader{"tok": token("2", x, now.Add(-time.Hour)), stateSecretName("p"): state("1", xState)}
		r := newResolver(api, api)
		g.Expect(resolve(g, r).creds.get(credStaticToken).Current).To(Equal(digest(x)))

		now = now.Add(time.Minute)
		api["tok"] = token("3", z, now)
		res := resolve(g, r)
		g.Expect(res.creds.get(credStaticToken).Current).To(Equal(digest(z)))
		g.Expect(previous(res)).To(Equal([]string{digest(x)}))
		g.Expect(res.creds.get(credStaticToken).Previous[0].ExpiresAt).To(Equal(now.Add(grace.Duration)))
	})
}

// TestRotationStateEdgeCases: the views of a credential's rotation state
// disagree after a Secret was recreated, a clock is behind, or a state
// Secret predates the fields that tell.
func TestRotationStateEdgeCases(t *testing.T) {
	const x, y = "0123456789abcdef0123456789abcdef-old", "fedcba9876543210fedcba9876543210-new"
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	var now time.Time
	newResolver := func(api secretReader) *resolver { return rotationResolver(api, api, func() time.Time { return now }) }
	state, tokenAt, resolve, digest, previous := rotationStateSecret, tokenSecret, resolveRotation, digestHex, previousDigests

	// (b) kubectl replace --force with the same value, then an in-place
	// rotation before this replica's view of the state Secret shows the
	// leader's write of the new UID: the "same value as a replaced view" rule
	// also drops the view that knows the new UID, and with it the legitimate
	// previous token.
	t.Run("same-value recreate, then in-place rotation, state Secret behind", func(t *testing.T) {
		g := NewWithT(t)
		now = t0
		stale := state("1", map[string]credentialState{credStaticToken: {Current: digest(x), RotatedAt: t0.Add(-time.Hour),
			Secret: "tok", SecretUID: "uid-1"}})
		api := secretReader{"tok": tokenAt("2", "uid-1", x, t0.Add(-time.Hour), time.Time{}), stateSecretName("p"): stale}
		r := newResolver(api)
		resolve(g, r)

		now = t0.Add(10 * time.Second)
		api["tok"] = tokenAt("5", "uid-2", x, now, time.Time{}) // replace --force, same value
		g.Expect(resolve(g, r).creds.get(credStaticToken).SecretUID).To(Equal("uid-2"))

		now = now.Add(time.Second)
		api["tok"] = tokenAt("6", "uid-2", y, now.Add(-time.Second), now) // kubectl apply: x -> y in place
		res := resolve(g, r)
		g.Expect(res.creds.get(credStaticToken).Current).To(Equal(digest(y)))
		g.Expect(previous(res)).To(Equal([]string{digest(x)}), "in-place rotation lost its previous token")
	})

	t.Run("same-value recreate, then in-place rotation, memory behind", func(t *testing.T) {
		g := NewWithT(t)
		now = t0
		api := secretReader{"tok": tokenAt("2", "uid-1", x, t0.Add(-time.Hour), time.Time{}),
			stateSecretName("p"): state("1", map[string]credentialState{credStaticToken: {Current: digest(x), RotatedAt: t0.Add(-time.Hour), Secret: "tok", SecretUID: "uid-1"}})}
		r := newResolver(api)
		resolve(g, r) // memory: x, uid-1

		// The leader saw the recreate (same value) and wrote it; this replica
		// sees only the following in-place rotation.
		now = t0.Add(10 * time.Second)
		api[stateSecretName("p")] = state("7", map[string]credentialState{credStaticToken: {Current: digest(x), RotatedAt: now.Add(-time.Second),
			Secret: "tok", SecretUID: "uid-2"}})
		api["tok"] = tokenAt("6", "uid-2", y, now.Add(-time.Second), now)
		res := resolve(g, r)
		g.Expect(previous(res)).To(Equal([]string{digest(x)}), "in-place rotation lost its previous token")
	})

	// (a) Clock skew: this replica's clock is 2 s behind the API server; the
	// key is emptied 0.5 s after x was put; the state Secret in its cache
	// still shows x. RevokedAt (replica clock) < RotatedAt (server clock).
	t.Run("replica clock behind the API server", func(t *testing.T) {
		g := NewWithT(t)
		skew := -2 * time.Second
		put := t0
		now = put.Add(200*time.Millisecond + skew)
		api := secretReader{"tok": tokenAt("2", "uid-1", x, t0.Add(-time.Hour), put),
			stateSecretName("p"): state("1", map[string]credentialState{credStaticToken: {Current: digest(x), RotatedAt: put, Secret: "tok", SecretUID: "uid-1"}})}
		r := newResolver(api)
		resolve(g, r)
		now = put.Add(500*time.Millisecond + skew)
		api["tok"] = tokenAt("3", "uid-1", "", t0.Add(-time.Hour), put) // emptied (managedFields: same second)
		resolve(g, r)
		now = put.Add(3*time.Second + skew)
		api["tok"] = tokenAt("4", "uid-1", y, t0.Add(-time.Hour), put.Add(3*time.Second))
		res := resolve(g, r)
		g.Expect(previous(res)).To(BeEmpty(), "x came back: RevokedAt from the replica clock predates RotatedAt from the server")
	})
	// Upgrade: a state Secret written before UIDs were kept, the replica
	// restarted (new version), the Secret deleted and created again while
	// it was down.
	t.Run("legacy state without UID, Secret recreated during the upgrade", func(t *testing.T) {
		g := NewWithT(t)
		now = t0
		legacy := state("1", map[string]credentialState{credStaticToken: {Current: digest(x), RotatedAt: t0.Add(-time.Hour)}})
		api := secretReader{"tok": tokenAt("4", "uid-2", y, t0.Add(-time.Minute), time.Time{}), stateSecretName("p"): legacy}
		res := resolve(g, newResolver(api))
		g.Expect(previous(res)).To(BeEmpty(), "the deleted Secret's token is previous (creationTimestamp > RotatedAt would tell)")
	})
}

// A state Secret that does not decode is empty as a whole: encoding/json
// keeps what it decoded before a type error, and previous digests from such
// a half-read would be accepted.
func TestDecodeStateAllOrNothing(t *testing.T) {
	g := NewWithT(t)
	prev := digestHex("old")
	for name, b := range map[string]string{
		"type error after previous": `{"credentials":{"staticToken":{"previous":[{"digest":"` + prev + `","replacedAt":"2026-11-28T10:00:00Z","expiresAt":"2999-01-01T00:00:00Z"}],"current":5}}}`,
		"truncated":                 `{"credentials":{"staticToken":{"previous":[{"digest":"` + prev + `"`,
		"not JSON":                  "garbage",
	} {
		st := decodeState([]byte(b))
		g.Expect(st.Credentials).To(BeEmpty(), name)
	}
	good := decodeState([]byte(`{"credentials":{"staticToken":{"current":"` + prev + `"}}}`))
	g.Expect(good.Credentials[credStaticToken].Current).To(Equal(prev))
}

// TestRotationStateConverges: a reset written to the state Secret and read
// back is what the next load computes, so the leader does not rewrite it.
func TestRotationStateConverges(t *testing.T) {
	g := NewWithT(t)
	for _, tz := range []*time.Location{time.UTC, time.FixedZone("X", 3600+1800)} {
		now := time.Now().In(tz)
		st := map[string]credentialState{credStaticToken: advance(credentialState{Current: "aa", RotatedAt: now.Add(-time.Hour)}, nil, time.Time{}, time.Hour, now)}
		b := rotationState{Credentials: st}.encode()
		back := decodeState(b)
		again := merge(advance(back.Credentials[credStaticToken], nil, time.Time{}, time.Hour, now.Add(time.Minute)),
			advance(st[credStaticToken], nil, time.Time{}, time.Hour, now.Add(time.Minute)))
		g.Expect(rotationState{Credentials: map[string]credentialState{credStaticToken: again}}.encode()).To(Equal(b))
	}
}

// A credential read from a rotation state Secret would rotate on every
// load: each state write changes the value the next load reads.
func TestStateSecretIsNoCredential(t *testing.T) {
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	// Another policy's state Secret, as the operator writes it (its own
	// is the same case once the leader has written it).
	other := rotationStateSecret("1", map[string]credentialState{credStaticToken: {Current: digestHex("x")}})
	other.Name = stateSecretName("q")
	other.Labels = map[string]string{labelManagedBy: managedByValue}
	other.OwnerReferences[0].UID, other.OwnerReferences[0].Name = "uid-q", "q"
	// The same, after someone removed its labels: the owner still says.
	unlabelled := other.DeepCopy()
	unlabelled.Name, unlabelled.Labels = "unlabelled-state", nil
	// A user's Secret whose name only looks like one.
	lookalike := tokenSecret("2", "uid-l", "0123456789abcdef0123456789abcdef", now, time.Time{})
	lookalike.Name = stateSecretName("r")
	for _, tc := range []struct {
		name, ref, key string
		wantProblem    bool
	}{
		{"another policy's state Secret", stateSecretName("q"), stateSecretKey, true},
		{"a state Secret without its labels", "unlabelled-state", stateSecretKey, true},
		{"a user's Secret named like a state Secret", stateSecretName("r"), "token", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			api := secretReader{other.Name: other, unlabelled.Name: unlabelled, lookalike.Name: lookalike}
			r := rotationResolver(api, api, func() time.Time { return now })
			pol := rotationPolicy.DeepCopy()
			pol.Spec.StaticToken.SecretRef = &authv1alpha1.SecretKeySelector{Name: tc.ref, Key: tc.key}
			res, err := r.resolve(context.Background(), pol)
			g.Expect(err).NotTo(HaveOccurred())
			if !tc.wantProblem {
				g.Expect(res.problems).To(BeEmpty())
				g.Expect(res.policy.Fingerprints().StaticToken).NotTo(BeEmpty())
				return
			}
			g.Expect(res.problems).To(ConsistOf(HaveField("Reason", authn.ProblemInvalidSpec)))
			g.Expect(res.problems[0].Message).To(ContainSubstring("rotation state"))
			g.Expect(res.policy.Fingerprints().StaticToken).To(BeEmpty(), "nothing in force")
			g.Expect(res.creds.get(credStaticToken).Current).To(BeEmpty())
		})
	}
}

// Every valid policy name gives a valid state Secret name and label value,
// however it is cut.
func TestStateSecretNameAndLabelAreValid(t *testing.T) {
	g := NewWithT(t)
	names := []string{"p", "registry", strings.Repeat("a", 63), strings.Repeat("a", 243), strings.Repeat("a", 253)}
	// A "." or "-" at every position around both cuts (63 for the label,
	// 233 for the name).
	for _, sep := range []string{".", "-"} {
		for i := 55; i < 70; i++ {
			names = append(names, strings.Repeat("a", i)+sep+strings.Repeat("b", 80))
		}
		for i := 225; i < 245; i++ {
			names = append(names, strings.Repeat("a", i)+sep+strings.Repeat("b", 252-i))
		}
	}
	seen := map[string]string{}
	for _, n := range names {
		g.Expect(validation.IsDNS1123Subdomain(n)).To(BeEmpty(), "test input %q must be a valid policy name", n)
		s := stateSecretName(n)
		g.Expect(validation.IsDNS1123Subdomain(s)).To(BeEmpty(), "state Secret name %q of policy %q", s, n)
		g.Expect(validation.IsValidLabelValue(labelValue(n))).To(BeEmpty(), "label value of policy %q", n)
		g.Expect(seen).NotTo(HaveKey(s), "policies %q and %q share a state Secret", seen[s], n)
		seen[s] = n
	}
}

// A policy deleted and created again under its name (kubectl replace
// --force) is another object: it inherits no previous token from this
// replica's memory of the first, even when one load sees both.
func TestRecreatedPolicyInheritsNoMemory(t *testing.T) {
	g := NewWithT(t)
	const x, z = "0123456789abcdef0123456789abcdef-old", "fedcba9876543210fedcba9876543210-new"
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	api := secretReader{"tok": tokenSecret("1", "uid-tok", x, now.Add(-time.Hour), time.Time{})}
	r := rotationResolver(api, api, func() time.Time { return now })
	resolveRotation(g, r)
	now = now.Add(time.Minute)
	api["tok"] = tokenSecret("2", "uid-tok", z, now.Add(-time.Hour), now)
	g.Expect(previousDigests(resolveRotation(g, r))).To(ConsistOf(digestHex(x)), "the first object: x inside its grace window")

	again := rotationPolicy.DeepCopy()
	again.UID = "uid-p-2"
	res, err := r.resolve(context.Background(), again)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(previousDigests(res)).To(BeEmpty(), "the new object starts from its Secret alone")
	g.Expect(res.creds.get(credStaticToken).Current).To(Equal(digestHex(z)))
}

// Status shows the fingerprints of credentials in force only: a key the
// compile step left out is a problem, not a working key.
func TestStatusShowsCredentialsInForceOnly(t *testing.T) {
	g := NewWithT(t)
	now := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	const good, outside = "0123456789abcdef0123456789abcdef-good", "fedcba9876543210fedcba9876543210-outside"
	keys := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "keys", UID: "uid-keys", Labels: optedIn()},
		Data: map[string][]byte{"good": []byte(good), "outside": []byte(outside)}}
	api := secretReader{"keys": keys}
	r := rotationResolver(api, api, func() time.Time { return now })
	pol := &authv1alpha1.RegistryAuthPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "uid-p", Generation: 1}}
	pol.Spec.APIKeys = []authv1alpha1.APIKeySpec{
		{Name: "good", SecretRef: authv1alpha1.SecretKeySelector{Name: "keys", Key: "good"}},
		{Name: "outside", SecretRef: authv1alpha1.SecretKeySelector{Name: "keys", Key: "outside"}, PathPrefixes: []string{"/mcpserver/"}},
	}
	res, err := r.resolve(context.Background(), pol)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.problems).To(ConsistOf(HaveField("Field", ContainSubstring("outside"))))
	g.Expect(res.creds.get(credAPIKeyPrefix+"outside").Current).NotTo(BeEmpty(), "its rotation state is kept")

	ready := buildStatus(pol, res, res.problems)
	g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
	g.Expect(pol.Status.APIKeys).To(ConsistOf(HaveField("Name", "good")))
	g.Expect(pol.Status.StaticToken).To(BeNil())
}
