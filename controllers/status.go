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
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/hoptoken"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// Event reasons.
const (
	EventTokenRotated  = "TokenRotated"
	EventPolicyLoaded  = "PolicyLoaded"
	EventStateConflict = "StateSecretConflict"
	// EventStateWriteFailed: the rotation state Secret could not be written
	// (e.g. a quota, or an admission webhook refused it).
	EventStateWriteFailed = "StateWriteFailed"
	// EventSigningKeyRotated: the registry token's ES256 signing key
	// changed.
	EventSigningKeyRotated = "SigningKeyRotated"
)

// StatusReconciler reports what the auth service holds for each policy. It
// acts on the leader only (see LeaderElector): it writes the rotation state
// Secret, records events and makes one status write per reconcile.
type StatusReconciler struct {
	grants   HostGrants
	client   client.Client
	loader   *PolicyLoader
	recorder recorder.EventRecorder
	leader   *LeaderElector
	ready    *readiness
	now      func() time.Time
}

// Reconcile brings one policy's status, events and rotation state up to date.
func (s *StatusReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := req.Namespace + "/" + req.Name
	if !s.leader.IsLeader() || !s.ready.ready() {
		// Followers write nothing; the leader resyncs every policy when
		// it is elected. Nor does anyone before the first full load:
		// loading every policy comes first, and every status is brought up
		// to date when it is done.
		return ctrl.Result{}, nil
	}
	var pol authv1alpha1.RegistryAuthPolicy
	if err := s.client.Get(ctx, req.NamespacedName, &pol); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !pol.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	// Report what this replica's auth service holds: the loader's last
	// resolution of this object and generation (a policy deleted and created
	// again under its name is another object). Until the loader has it, wait: the
	// loader notifies this controller after each load.
	res := s.loader.latestResolution(key)
	if res == nil || res.generation != pol.Generation || res.uid != pol.UID {
		return ctrl.Result{}, nil
	}
	conflicts, err := s.hostConflicts(ctx, &pol)
	if err != nil {
		return ctrl.Result{}, err
	}
	problems := append(slices.Clone(res.problems), conflicts...)

	stateErr := s.writeState(ctx, &pol, res)
	if apierrors.IsConflict(stateErr) || apierrors.IsAlreadyExists(stateErr) {
		return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
	}
	if stateErr != nil {
		// The status is still written: it says what is in force, which
		// does not depend on the state Secret. Grace windows live in
		// memory until the write succeeds: the error returned below
		// retries it (retryLimiter).
		s.recorder.Eventf(&pol, nil, corev1.EventTypeWarning, EventStateWriteFailed, "WriteState",
			"cannot write the rotation state Secret %q (%s); until it is written, rotation grace windows and revocations in place do not survive a restart (delete the token Secret to revoke)",
			stateSecretName(pol.Name), apierrors.ReasonForError(stateErr))
	}

	orig := pol.DeepCopy()
	ready := buildStatus(&pol, res, problems)
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	recheck := setExpiryConditions(&pol, res.policy.Expiries(), now())
	if equality.Semantic.DeepEqual(orig.Status, pol.Status) {
		if stateErr != nil {
			return ctrl.Result{}, stateErr
		}
		return ctrl.Result{RequeueAfter: recheck}, nil
	}
	err = s.client.Status().Patch(ctx, &pol, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
	if apierrors.IsConflict(err) {
		return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	// Events tell what the status write changed, after it: when the write
	// fails, the retry compares with the status as stored and would tell
	// the change again.
	s.recordRotations(&pol, orig, res)
	s.recordReadiness(&pol, orig, ready)
	s.recordExpiry(&pol, orig)

	if stateErr != nil {
		return ctrl.Result{}, stateErr
	}
	// Back when a credential enters its warning window or expires: the
	// conditions flip then, with no status write in between.
	return ctrl.Result{RequeueAfter: recheck}, nil
}

// writeState creates or updates the rotation state Secret when it changed.
// A policy without one gets one only when it holds something the
// credentials' Secrets do not tell (resolution.remember): a grace window
// running, or a grace period that a rotation while no replica runs would
// need the value before it for. Without, a restart rebuilds from the
// Secrets exactly what the state would hold for it to use: with a grace
// period of 0 no previous value is ever accepted. That is the common case,
// and a first start then makes one write per policy (the status) instead of
// two.
func (s *StatusReconciler) writeState(ctx context.Context, pol *authv1alpha1.RegistryAuthPolicy, res *resolution) error {
	if res.state == nil && !res.remember {
		return nil
	}
	want := res.stateToWrite().encode()
	if res.state != nil && bytes.Equal(res.state.data, want) {
		return nil
	}
	if res.state != nil || len(res.creds) > 0 {
		defer s.loader.writingState(pol.Namespace + "/" + pol.Name)()
	}
	if res.state != nil {
		// The Secret is this policy's (resolve checked its owner). Only
		// its value changes, at the version read: a merge patch with that
		// version as precondition leaves labels and owners others added
		// alone, and a write in between is a conflict (the load it causes
		// brings the policy back).
		base := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: pol.Namespace, Name: stateSecretName(pol.Name), ResourceVersion: res.state.resourceVersion},
			Data:       map[string][]byte{stateSecretKey: res.state.data},
		}
		sec := base.DeepCopy()
		sec.Data[stateSecretKey] = want
		// Labelled as a Secret the operator reads (state Secrets of older
		// versions lack it).
		sec.Labels = map[string]string{LabelCredential: "state"}
		if err := s.client.Patch(ctx, sec, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})); err != nil {
			return err
		}
		s.loader.wroteState(pol, res, sec.ResourceVersion, want)
		return nil
	}
	if len(res.creds) == 0 {
		return nil
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: pol.Namespace,
			Name:      stateSecretName(pol.Name),
			Labels: map[string]string{
				labelManagedBy:                managedByValue,
				"auth.registryauth.io/policy": labelValue(pol.Name),
				LabelCredential:               "state",
			},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{stateSecretKey: want},
	}
	if err := controllerutil.SetControllerReference(pol, sec, s.client.Scheme()); err != nil {
		return err
	}
	err := s.client.Create(ctx, sec)
	if err == nil {
		s.loader.wroteState(pol, res, sec.ResourceVersion, want)
	}
	if apierrors.IsAlreadyExists(err) {
		// Either our cache is behind (requeue) or a Secret of someone
		// else's has the name: say so, and go on without persisted state.
		var other corev1.Secret
		if gerr := s.loader.resolver.secrets.Get(ctx, client.ObjectKeyFromObject(sec), &other); gerr == nil && !isStateSecretOf(&other, pol) {
			s.recorder.Eventf(pol, nil, corev1.EventTypeWarning, EventStateConflict, "WriteState",
				"Secret %q exists and is not owned by this policy; rotation grace windows will not survive a restart", sec.Name)
			return nil
		}
	}
	return err
}

// labelValue fits a policy name into a label value: at most 63 characters,
// ending with a letter or digit (a name cut after a "-" or "." would not).
func labelValue(s string) string {
	if len(s) > 63 {
		return strings.TrimRight(s[:63], "-._")
	}
	return s
}

// recordRotations emits TokenRotated (SigningKeyRotated for the registry
// token's key) for each credential whose value in force changed with this
// status write: its fingerprint (the key's kid) in the status before (orig)
// and after differ. The status is the record of what was reported, so a
// policy without a state Secret (grace period 0) is told about too, and a
// rotation seen after a restart is told once.
func (s *StatusReconciler) recordRotations(pol, orig *authv1alpha1.RegistryAuthPolicy, res *resolution) {
	was, now := statusFingerprints(&orig.Status), statusFingerprints(&pol.Status)
	creds := slices.Clone(res.creds)
	slices.SortFunc(creds, func(a, b namedCredentialState) int { return strings.Compare(a.name, b.name) })
	for _, c := range creds {
		cred, next := c.name, c.state
		prev, cur := was[cred], now[cred]
		if prev == "" || cur == "" || prev == cur {
			continue
		}
		what, label := "static token", "static"
		if name, ok := strings.CutPrefix(cred, credAPIKeyPrefix); ok {
			what, label = fmt.Sprintf("API key %q", name), name
		}
		if cred == credFederation {
			what, label = "federation token", "federation"
		}
		if cred == credSessionKey {
			what, label = "session signing key", "session"
		}
		if cred == credSigningKey {
			rotationsTotal.WithLabelValues(pol.Namespace+"/"+pol.Name, "registryToken").Inc()
			overlap := "the previous public key is withdrawn from the JWKS"
			for _, p := range next.Previous {
				if keyIDOfHex(p.Digest) == prev {
					overlap = "the previous public key stays in the JWKS until " + p.ExpiresAt.UTC().Format(time.RFC3339)
				}
			}
			s.recorder.Eventf(pol, rotatedSecret(pol, cred, next), corev1.EventTypeNormal, EventSigningKeyRotated, "Rotate",
				"registry token signing key rotated from %s to %s; %s", prev, cur, overlap)
			continue
		}
		rotationsTotal.WithLabelValues(pol.Namespace+"/"+pol.Name, label).Inc()
		grace := "the previous value is no longer accepted"
		for _, p := range next.Previous {
			if fingerprintOfHex(p.Digest) == prev {
				grace = "the previous value is accepted until " + p.ExpiresAt.UTC().Format(time.RFC3339)
				if cred == credSessionKey {
					grace += " by the replicas that held it (a replica started since refuses it)"
				}
			}
		}
		s.recorder.Eventf(pol, rotatedSecret(pol, cred, next), corev1.EventTypeNormal, EventTokenRotated, "Rotate",
			"%s rotated from %s to %s; %s", what, prev, cur, grace)
	}
}

// statusFingerprints are the fingerprints of the credentials in force a
// status shows, by credential name (the kid for the registry token's ES256
// signing key).
func statusFingerprints(st *authv1alpha1.RegistryAuthPolicyStatus) map[string]string {
	out := map[string]string{}
	if st.StaticToken != nil {
		out[credStaticToken] = st.StaticToken.Fingerprint
	}
	if st.FederationToken != nil {
		out[credFederation] = st.FederationToken.Fingerprint
	}
	if st.Session != nil {
		out[credSessionKey] = st.Session.Fingerprint
	}
	for _, k := range st.APIKeys {
		out[credAPIKeyPrefix+k.Name] = k.Fingerprint
	}
	if rt := st.RegistryToken; rt != nil && rt.Algorithm == hoptoken.ES256 {
		out[credSigningKey] = rt.KeyID
	}
	return out
}

// rotatedSecret is the related object of a TokenRotated event: the Secret
// that holds the new value, with the key as field path (nil if unknown).
// Besides telling the reader what changed, it keeps the events of different
// credentials apart: the event recorder folds events with the same regarding
// object (resourceVersion included), reason, action and related object into
// one series that shows only the first note, so the rotations of a static
// token and an API key reported by one status write would otherwise show as
// one event.
func rotatedSecret(pol *authv1alpha1.RegistryAuthPolicy, cred string, c credentialState) *corev1.ObjectReference {
	if c.Secret == "" {
		return nil
	}
	ref := &corev1.ObjectReference{
		APIVersion: "v1", Kind: "Secret",
		Namespace: pol.Namespace, Name: c.Secret, UID: types.UID(c.SecretUID),
	}
	var sel authv1alpha1.SecretKeySelector
	if st := pol.Spec.StaticToken; cred == credStaticToken && st != nil && st.SecretRef != nil {
		sel = *st.SecretRef
	}
	if ft := pol.Spec.FederationToken; cred == credFederation && ft != nil && ft.SecretRef != nil {
		sel = *ft.SecretRef
	}
	if name, ok := strings.CutPrefix(cred, credAPIKeyPrefix); ok {
		for _, k := range pol.Spec.APIKeys {
			if k.Name == name {
				sel = k.SecretRef
			}
		}
	}
	if rt := pol.Spec.RegistryToken; cred == credSigningKey && rt != nil && rt.SigningKeyRef != nil {
		sel = *rt.SigningKeyRef
	}
	if ss := pol.Spec.Session; cred == credSessionKey && ss != nil {
		sel = ss.SecretKeyRef
	}
	ref.FieldPath = "data[" + sel.KeyOrDefault() + "]"
	return ref
}

// recordReadiness emits an event when the Ready condition changes: a
// Warning with the problem when it is False, PolicyLoaded when it is True
// after having been something else (a problem solved, credentials added or
// removed). A policy's first Ready=True has no event: its status says so,
// and an event per policy on a first start (10,000 of them for 10,000
// policies) would tell nobody anything while doubling the API writes.
func (s *StatusReconciler) recordReadiness(pol, orig *authv1alpha1.RegistryAuthPolicy, now *metav1.Condition) {
	was := meta.FindStatusCondition(orig.Status.Conditions, authv1alpha1.ConditionReady)
	if was != nil && was.Status == now.Status && was.Reason == now.Reason && was.Message == now.Message {
		return
	}
	if now.Status == metav1.ConditionTrue {
		if was == nil {
			return
		}
		s.recorder.Eventf(pol, nil, corev1.EventTypeNormal, EventPolicyLoaded, "Load", "%s", now.Message)
		return
	}
	s.recorder.Eventf(pol, nil, corev1.EventTypeWarning, now.Reason, "Load", "%s", now.Message)
}

// hostConflicts reports the hosts of pol that other policies claim too.
func (s *StatusReconciler) hostConflicts(ctx context.Context, pol *authv1alpha1.RegistryAuthPolicy) ([]authn.Problem, error) {
	var probs []authn.Problem
	for _, h := range pol.Spec.Hosts {
		if !s.grants.Allows(pol.Namespace, h) {
			continue // not claimed at all: HostNotGranted says so
		}
		var list authv1alpha1.RegistryAuthPolicyList
		if err := s.client.List(ctx, &list, client.MatchingFields{indexHosts: h}); err != nil {
			return nil, err
		}
		// Older policies granted the host hold it; this one reports the
		// conflict and answers only by name. Another namespace's policy
		// is not named.
		var holder string
		for _, o := range list.Items {
			if o.UID == pol.UID || !s.grants.Allows(o.Namespace, h) || !olderThan(&o, pol) {
				continue
			}
			if o.Namespace == pol.Namespace {
				holder = fmt.Sprintf("the older policy %q", o.Name)
			} else if holder == "" {
				holder = "an older policy of another namespace"
			}
		}
		if holder != "" {
			probs = append(probs, authn.Problem{
				Reason:  authn.ProblemHostConflict,
				Field:   "spec.hosts",
				Message: fmt.Sprintf("host %q is held by %s; plain /validate requests for it go there, this policy answers only on /validate/%s/%s", h, holder, pol.Namespace, pol.Name),
			})
		}
	}
	return probs, nil
}

// olderThan reports whether policy a holds a host before b: created
// earlier, or at the same second and first by namespace/name.
func olderThan(a, b *authv1alpha1.RegistryAuthPolicy) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
}

// maxConditionMessage keeps the Ready message within the API's limit.
const maxConditionMessage = 4096

// buildStatus sets pol.Status from a resolution and returns the Ready
// condition.
func buildStatus(pol *authv1alpha1.RegistryAuthPolicy, res *resolution, problems []authn.Problem) *metav1.Condition {
	st := &pol.Status
	st.ObservedGeneration = pol.Generation
	cond := metav1.Condition{
		Type:               authv1alpha1.ConditionReady,
		ObservedGeneration: pol.Generation,
	}
	if len(problems) == 0 {
		cond.Status = metav1.ConditionTrue
		cond.Reason = authv1alpha1.ReasonLoaded
		cond.Message = summary(pol, res)
	} else {
		cond.Status = metav1.ConditionFalse
		cond.Reason = problems[0].Reason
		msgs := make([]string, len(problems))
		for i, p := range problems {
			msgs[i] = p.Error()
		}
		cond.Message = strings.Join(msgs, "; ")
		if len(cond.Message) > maxConditionMessage {
			cond.Message = cond.Message[:maxConditionMessage-3] + "..."
		}
	}
	meta.SetStatusCondition(&st.Conditions, cond)

	// Fingerprints of the credentials in force only: one the compile step
	// left out (a problem above) is not shown as if it worked.
	inForce := res.policy.Fingerprints()
	st.StaticToken = nil
	if inForce.StaticToken != "" {
		st.StaticToken = credentialStatus(res.creds.get(credStaticToken))
	}
	st.FederationToken = nil
	if inForce.FederationToken != "" {
		st.FederationToken = credentialStatus(res.creds.get(credFederation))
	}
	st.Session = nil
	if inForce.Session {
		st.Session = credentialStatus(res.creds.get(credSessionKey))
	}
	st.APIKeys = nil
	for _, k := range pol.Spec.APIKeys {
		if _, ok := inForce.APIKeys[k.Name]; !ok {
			continue
		}
		if cs := credentialStatus(res.creds.get(credAPIKeyPrefix + k.Name)); cs != nil {
			st.APIKeys = append(st.APIKeys, authv1alpha1.APIKeyStatus{Name: k.Name, CredentialStatus: *cs})
		}
	}
	st.RegistryToken = registryTokenStatus(res)
	return &cond
}

// registryTokenStatus reports the registry token's key in force, nil when
// there is none (no token, or its key could not be loaded: a problem says
// why).
func registryTokenStatus(res *resolution) *authv1alpha1.RegistryTokenStatus {
	rt := res.policy.RegistryToken()
	if rt == nil || !rt.Available() {
		return nil
	}
	out := &authv1alpha1.RegistryTokenStatus{Algorithm: rt.Algorithm(), KeyID: rt.KeyID()}
	if rt.Algorithm() != hoptoken.ES256 {
		return out
	}
	c := res.creds.get(credSigningKey)
	if !c.RotatedAt.IsZero() {
		t := metav1.NewTime(c.RotatedAt.Truncate(time.Second))
		out.RotatedAt = &t
	}
	for _, p := range c.Previous {
		if _, published := res.publicKeys[p.Digest]; !published {
			continue
		}
		t := metav1.NewTime(p.ExpiresAt.Truncate(time.Second))
		out.PreviousKeys = append(out.PreviousKeys, authv1alpha1.PreviousKeyStatus{KeyID: keyIDOfHex(p.Digest), ExpiresAt: &t})
	}
	return out
}

// keyIDOfHex is the ES256 kid of a signing key's hex thumbprint.
func keyIDOfHex(h string) string {
	d, err := secret.ParseDigest(h)
	if err != nil {
		return fingerprintOfHex(h)
	}
	return hoptoken.KeyIDOfThumbprint(d[:])
}

func summary(pol *authv1alpha1.RegistryAuthPolicy, res *resolution) string {
	fp := res.policy.Fingerprints()
	var parts []string
	if fp.StaticToken != "" {
		parts = append(parts, "static token "+fp.StaticToken)
	}
	if fp.FederationToken != "" {
		parts = append(parts, "federation token "+fp.FederationToken)
	}
	if n := len(fp.APIKeys); n > 0 {
		parts = append(parts, fmt.Sprintf("%d API key(s)", n))
	}
	if pol.Spec.Session != nil {
		parts = append(parts, "session cookies")
	}
	if pol.Spec.OIDC != nil {
		parts = append(parts, "OIDC issuer "+pol.Spec.OIDC.IssuerURL)
	}
	if rt := res.policy.RegistryToken(); rt != nil && rt.Available() {
		parts = append(parts, fmt.Sprintf("registry token %s %s (%s)", rt.Algorithm(), rt.KeyID(), rt.Mode()))
	}
	if len(parts) == 0 {
		return "loaded; no credential is configured, every request is refused"
	}
	return "in force: " + strings.Join(parts, ", ")
}

func credentialStatus(c credentialState) *authv1alpha1.CredentialStatus {
	if c.Current == "" {
		return nil
	}
	cs := &authv1alpha1.CredentialStatus{Fingerprint: fingerprintOfHex(c.Current)}
	if !c.RotatedAt.IsZero() {
		t := metav1.NewTime(c.RotatedAt.Truncate(time.Second))
		cs.RotatedAt = &t
	}
	if len(c.Previous) > 0 {
		p := c.Previous[0] // latest expiry first
		cs.PreviousFingerprint = fingerprintOfHex(p.Digest)
		t := metav1.NewTime(p.ExpiresAt.Truncate(time.Second))
		cs.PreviousExpiresAt = &t
	}
	return cs
}

// fingerprintOfHex shortens a hex digest to a fingerprint.
func fingerprintOfHex(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
