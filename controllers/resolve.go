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
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authn/apikey"
	"github.com/registryauth/registry-auth-operator/authserver/authn/federation"
	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
	"github.com/registryauth/registry-auth-operator/authserver/authn/session"
	"github.com/registryauth/registry-auth-operator/authserver/authn/statictoken"
	"github.com/registryauth/registry-auth-operator/authserver/hoptoken"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// LabelCredential opts a Secret in as a credential: the operator reads a
// policy's static token, API keys, federation token and signing keys only
// from Secrets labelled LabelCredential=true. The operator's own rotation
// state Secrets carry it too (the operator reads them), with the value
// "state".
const LabelCredential = "registryauth.io/credential"

// resolver reads what a policy refers to (its Secrets, its rotation state,
// its OIDC issuer) and compiles it. The loader (every replica) and the status
// reconciler (leader) share one, and with it the rotation memory, so both see
// the same previous tokens.
type resolver struct {
	// secrets reads Secrets straight from the API server. The manager caches
	// Secret metadata only (see CacheOptions), so no Secret data of the
	// cluster sits in this process's memory beyond the referenced values,
	// which live only until they are hashed (except session signing keys,
	// kept in force and through their rotation window: see sessionKeys).
	secrets client.Reader
	// metadata reads the cached Secret metadata (see CacheOptions and
	// secretMetadata).
	metadata client.Reader
	// configMaps reads the cached ConfigMap metadata (a metadata-only
	// watch, see PolicyLoader.SetupWithManager); nil, ConfigMaps are
	// always read again.
	configMaps client.Reader
	// credentials, if not nil, is a cache of the data of the Secrets a
	// label selects (Options.CredentialSecrets): a load reads a Secret
	// there when it has the version the metadata cache shows, instead of
	// from the API server.
	credentials client.Reader
	// health says when the cache may be behind the API server.
	health  *WatchHealth
	issuers *jwt.Issuers
	// cluster is this cluster's service account issuer (the kubernetes
	// preset).
	cluster *ClusterIssuer
	targets TargetRules
	grants  HostGrants
	memory  *rotationMemory
	opts    policy.CompileOptions
	now     func() time.Time

	stateMu sync.Mutex
	states  map[string]*stateRecord // rotation state Secrets by "namespace/name"
}

// stateRecord is what a replica keeps of a policy's rotation state Secret
// between loads: its version, to know when it must be read again, its owner,
// and its value. Keeping the Secret itself (strings, labels, owner
// references) would cost about twenty heap objects per policy for the life
// of every replica, all of them for the garbage collector to mark.
type stateRecord struct {
	resourceVersion string
	// owner is the UID of the policy that controls the Secret ("" if none):
	// a Secret of someone else's that has the name is not rotation state.
	owner types.UID
	data  []byte // the stateSecretKey value
}

// resolution is one compiled policy and what went into it.
type resolution struct {
	policy   *policy.Policy
	problems []authn.Problem
	// creds is the rotation state of each credential, after this resolution.
	creds credentialStates
	// publicKeys are the public JWKs of the registry token's signing keys
	// in creds (current and previous), by hex thumbprint.
	publicKeys map[string]json.RawMessage
	// sessionKeys are the session signing keys in creds that this replica
	// holds, by hex digest (see sessionKeys).
	sessionKeys map[string][]byte
	// state is the policy's rotation state Secret as read, nil if it has
	// none (absent, or not owned by the policy).
	state *stateRecord
	// remember says the rotation state holds what a restart needs and the
	// credentials' Secrets do not tell: a previous value inside its grace
	// window, or a credential with a grace period (a rotation while no
	// replica runs is given its window only if the value before it was
	// recorded). A policy without a state Secret gets one only then (see
	// StatusReconciler.writeState).
	remember bool
	// generation and uid identify the policy object resolved.
	generation int64
	uid        types.UID
	// secretNames are the Secrets the policy reads, and secretVersions
	// their resourceVersions in the same order, "" for one not found
	// (recovery compares them with the API server's).
	namespace      string
	secretNames    []string
	secretVersions []string
	// configMapNames are the ConfigMaps the policy reads (CA bundles), and
	// configMapVersions their resourceVersions, "" for one not found.
	configMapNames    []string
	configMapVersions []string
}

// stateToWrite is the content of the state Secret after this resolution.
func (r *resolution) stateToWrite() rotationState {
	st := r.creds.asState()
	if len(r.publicKeys) > 0 {
		st.PublicKeys = r.publicKeys
	}
	return st
}

// resolve reads and compiles a policy. It returns an error only when the
// API server could not be read (the caller retries); everything wrong with
// the policy's inputs is a Problem in the resolution.
func (r *resolver) resolve(ctx context.Context, pol *authv1alpha1.RegistryAuthPolicy) (*resolution, error) {
	now := r.now()
	res := &resolution{generation: pol.Generation, uid: pol.UID, namespace: pol.Namespace,
		secretNames: referencedSecrets(pol), configMapNames: referencedConfigMaps(pol)}
	res.configMapVersions = make([]string, len(res.configMapNames))
	secrets := map[string]*corev1.Secret{}
	missing := map[string]bool{}
	read := func(name string) (*corev1.Secret, error) {
		if s, ok := secrets[name]; ok || missing[name] {
			return s, nil
		}
		var s corev1.Secret
		key := types.NamespacedName{Namespace: pol.Namespace, Name: name}
		err := r.readSecret(ctx, key, &s)
		if apierrors.IsNotFound(err) {
			missing[name] = true
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading Secret %s/%s: %w", pol.Namespace, name, err)
		}
		secrets[name] = &s
		return &s, nil
	}
	value := func(ref authv1alpha1.SecretKeySelector, field string) (authn.SecretValue, valueSource, error) {
		key := ref.KeyOrDefault()
		src := valueSource{secret: ref.Name}
		s, err := read(ref.Name)
		if err != nil {
			return authn.SecretValue{}, src, err
		}
		// Reading a credential from a state Secret would feed each write of
		// the state back into the next load: a rotation every load, for
		// ever. (A user's Secret that only has the name is never written
		// by the operator, so it is a Secret like any other.)
		if s != nil && stateSecretOwner(s) != "" {
			return authn.SecretValue{Problem: &authn.Problem{
				Reason: authn.ProblemInvalidSpec, Field: field,
				Message: fmt.Sprintf("Secret %q holds the operator's rotation state; a credential cannot be read from it", ref.Name),
			}}, src, nil
		}
		if s == nil {
			return authn.SecretValue{Problem: &authn.Problem{
				Reason: authn.ProblemSecretNotFound, Field: field,
				Message: fmt.Sprintf("Secret %q not found in namespace %q", ref.Name, pol.Namespace),
			}}, src, nil
		}
		// Only a Secret that says it is a credential is read as one: a
		// policy author who may not read Secrets must not turn any Secret
		// of the namespace (a database password) into an API key, nor learn
		// its length or fingerprint from status. Nothing about such a
		// Secret is reported beyond this.
		if s.Labels[LabelCredential] != "true" {
			return authn.SecretValue{Problem: &authn.Problem{
				Reason: authn.ProblemSecretNotOptedIn, Field: field,
				Message: fmt.Sprintf("Secret %q is not opted in as a credential: label it %s=true", ref.Name, LabelCredential),
			}}, src, nil
		}
		src.uid, src.created = string(s.UID), s.CreationTimestamp.Time
		v, ok := s.Data[key]
		if !ok {
			return authn.SecretValue{Problem: &authn.Problem{
				Reason: authn.ProblemKeyMissing, Field: field,
				Message: fmt.Sprintf("Secret %q has no key %q", ref.Name, key),
			}}, src, nil
		}
		src.changedAt = lastChanged(s, now)
		return authn.SecretValue{Value: v}, src, nil
	}

	// caBundle reads an issuer's CA bundle: nil without a caBundleRef, a
	// Problem when it cannot be used (the issuer is then not used at all).
	// A ConfigMap needs no opt-in label: a CA bundle is public data, and
	// the operator reads nothing else of it (no value of it reaches status:
	// the messages say only what is missing). A Secret is read as any
	// credential, opt-in label included.
	readCABundle := func(ref *authv1alpha1.CABundleRef, field string) ([]byte, *authn.Problem, error) {
		switch {
		case ref == nil:
			return nil, nil, nil
		case ref.SecretKeyRef != nil:
			sv, _, err := value(authv1alpha1.SecretKeySelector{Name: ref.SecretKeyRef.Name, Key: ref.SecretKeyRef.Key}, field)
			if err != nil || sv.Problem != nil {
				return nil, sv.Problem, err
			}
			return sv.Value, nil, nil
		case ref.ConfigMapKeyRef != nil:
			name, key := ref.ConfigMapKeyRef.Name, ref.ConfigMapKeyRef.Key
			var cm corev1.ConfigMap
			err := r.secrets.Get(ctx, types.NamespacedName{Namespace: pol.Namespace, Name: name}, &cm)
			if apierrors.IsNotFound(err) {
				return nil, &authn.Problem{Reason: authn.ProblemInvalidSpec, Field: field,
					Message: fmt.Sprintf("ConfigMap %q not found in namespace %q", name, pol.Namespace)}, nil
			}
			if err != nil {
				return nil, nil, fmt.Errorf("reading ConfigMap %s/%s: %w", pol.Namespace, name, err)
			}
			if i := slices.Index(res.configMapNames, name); i >= 0 {
				res.configMapVersions[i] = cm.ResourceVersion
			}
			if v, ok := cm.Data[key]; ok {
				return []byte(v), nil, nil
			}
			if v, ok := cm.BinaryData[key]; ok {
				return v, nil, nil
			}
			return nil, &authn.Problem{Reason: authn.ProblemInvalidSpec, Field: field,
				Message: fmt.Sprintf("ConfigMap %q has no key %q", name, key)}, nil
		}
		return nil, nil, nil
	}
	caBundle := func(ref *authv1alpha1.CABundleRef, field string) ([]byte, *authn.Problem, error) {
		ca, prob, err := readCABundle(ref, field)
		if err == nil && prob == nil && ref != nil && len(ca) == 0 {
			// Empty would mean the system roots: a bundle that holds
			// nothing must not widen what the issuer is trusted with.
			prob = &authn.Problem{Reason: authn.ProblemInvalidSpec, Field: field, Message: "the CA bundle holds no valid PEM certificate"}
		}
		return ca, prob, err
	}

	// Rotation state: the state Secret, then this replica's memory. The
	// state Secret holds digests, not secrets, so it is kept in memory by
	// resourceVersion: it is read again only when the metadata cache shows
	// a new version (or, after an API server outage, the cache may be
	// behind). No read at all when the cache knows of none; if the cache
	// lags behind a Secret just created, its event brings the policy back.
	st, err := r.stateSecret(ctx, pol, read)
	if err != nil {
		return nil, err
	}
	stored := decodeState(nil)
	if st != nil && ownedBy(st.owner, pol) {
		res.state = st
		stored = decodeState(st.data)
	}
	remembered := r.memory.get(pol.Namespace+"/"+pol.Name, pol.UID)
	res.creds = make(credentialStates, 0, 1+len(pol.Spec.APIKeys))
	rotateTo := func(cred string, current *secret.Digest, src valueSource, grace time.Duration) credentialState {
		next := nextState(stored.Credentials[cred], remembered.creds.get(cred), current, src, grace, now)
		res.creds.set(cred, next)
		if grace > 0 || len(next.Previous) > 0 {
			res.remember = true
		}
		return next
	}
	rotate := func(cred string, sv *authn.SecretValue, src valueSource, grace time.Duration) []secret.PreviousDigest {
		var current *secret.Digest
		if sv.Problem == nil {
			if v := secret.Clean(sv.Value); secret.Usable(v) {
				d := secret.DigestOf(v)
				current = &d
			}
		}
		return rotateTo(cred, current, src, grace).previousDigests()
	}

	spec := &pol.Spec
	var extra []authn.Problem // the resolver's own, beside the compile step's
	cfg := policy.PolicyConfig{
		Namespace:         pol.Namespace,
		Name:              pol.Name,
		Generation:        pol.Generation,
		Created:           pol.CreationTimestamp.Time,
		GroupScopes:       spec.GroupScopes,
		AgentPathPrefixes: spec.AgentPathPrefixes,
	}
	var refused []string
	for _, h := range spec.Hosts {
		if r.grants.Allows(pol.Namespace, h) {
			cfg.Hosts = append(cfg.Hosts, h)
		} else {
			refused = append(refused, h)
		}
	}
	if len(refused) > 0 {
		extra = append(extra, authn.Problem{Reason: authn.ProblemHostNotGranted, Field: "spec.hosts",
			Message: fmt.Sprintf("host(s) %s not granted to namespace %q (the operator's --host-grants); plain /validate does not choose this policy for them, /validate/%s/%s still does",
				strings.Join(refused, ", "), pol.Namespace, pol.Namespace, pol.Name)})
	}
	if st := spec.StaticToken; st != nil {
		cfg.RegistryPathPrefixes = st.PathPrefixes
		cfg.SessionCookieName = st.SessionCookieName
		if st.Enabled && st.SecretRef != nil {
			sv, src, err := value(*st.SecretRef, "spec.staticToken.secretRef")
			if err != nil {
				return nil, err
			}
			cfg.StaticToken = &statictoken.Config{
				Enabled:  true,
				Token:    sv,
				Previous: rotate(credStaticToken, &sv, src, durationOf(st.RotationGracePeriod)),
				Identity: statictoken.IdentityConfig{
					Username: st.Identity.Username,
					ClientID: st.Identity.ClientID,
					Groups:   st.Identity.Groups,
					Scopes:   st.Identity.Scopes,
				},
			}
			cfg.StaticToken.ExpiresAt = timeOf(st.ExpiresAt)
		}
	}
	if ft := spec.FederationToken; ft != nil && ft.Enabled && ft.SecretRef != nil {
		sv, src, err := value(*ft.SecretRef, "spec.federationToken.secretRef")
		if err != nil {
			return nil, err
		}
		cfg.FederationToken = &federation.Config{
			Enabled:      true,
			Token:        sv,
			Previous:     rotate(credFederation, &sv, src, durationOf(ft.RotationGracePeriod)),
			PathPrefixes: ft.PathPrefixes,
			Identity:     federation.IdentityConfig{Groups: ft.Groups},
		}
	}
	for _, k := range spec.APIKeys {
		sv, src, err := value(k.SecretRef, fmt.Sprintf("spec.apiKeys[%s].secretRef", k.Name))
		if err != nil {
			return nil, err
		}
		cfg.APIKeys = append(cfg.APIKeys, apikey.Config{
			Name:         k.Name,
			Key:          sv,
			Previous:     rotate(credAPIKeyPrefix+k.Name, &sv, src, durationOf(k.RotationGracePeriod)),
			Groups:       k.Groups,
			PathPrefixes: k.PathPrefixes,
			Methods:      k.Methods,
			ExpiresAt:    timeOf(k.ExpiresAt),
		})
	}
	if s := spec.Session; s != nil {
		sv, src, err := value(s.SecretKeyRef, "spec.session.secretKeyRef")
		if err != nil {
			return nil, err
		}
		prev := rotate(credSessionKey, &sv, src, durationOf(s.RotationGracePeriod))
		var previous []session.PreviousKey
		previous, res.sessionKeys = sessionKeys(&sv, prev, remembered.sessionKeys)
		cfg.Session = &session.Config{
			CookieName: s.CookieName,
			SecretKeys: []authn.SecretValue{sv},
			MaxAge:     durationOf(s.MaxAge),
			Previous:   previous,
		}
	}
	cfg.PublicPaths = spec.PublicPaths
	if pr := spec.ProtectedResource; pr != nil {
		cfg.ProtectedResource = &policy.ProtectedResourceConfig{MetadataURL: pr.MetadataURL, Scopes: pr.Scopes, RegistryPaths: pr.RegistryPaths}
	}
	if d := spec.Delegate; d != nil {
		if r.targets.delegateAllowed(d.URL) {
			cfg.Delegate = &policy.DelegateConfig{
				URL:           d.URL,
				Timeout:       durationOf(d.Timeout),
				GatewayPaths:  d.GatewayPaths,
				MaxConcurrent: int(d.MaxConcurrent),
			}
		} else {
			// Without its delegate the policy refuses what it would have
			// sent there.
			extra = append(extra, authn.Problem{Reason: authn.ProblemInvalidSpec, Field: "spec.delegate.url",
				Message: "the operator does not allow this delegate host: the cluster admin lists the allowed ones in --allowed-delegate-hosts"})
		}
	}
	if o := spec.OIDC; o != nil {
		oc := &jwt.Config{
			IssuerURL:     o.IssuerURL,
			Audiences:     o.Audiences,
			UsernameClaim: o.UsernameClaim,
			GroupsClaim:   o.GroupsClaim,
			Preset:        o.Preset,
		}
		ca, prob, err := caBundle(o.CABundleRef, "spec.oidc.caBundleRef")
		if err != nil {
			return nil, err
		}
		if prob != nil {
			oc.Problem = prob
		} else {
			r.discover(ctx, oc, "spec.oidc", ca)
		}
		cfg.OIDC = oc
	}
	for _, is := range spec.Issuers {
		var ca []byte
		var prob *authn.Problem
		if is.Preset != authv1alpha1.PresetKubernetes {
			ca, prob, err = caBundle(is.CABundleRef, fmt.Sprintf("spec.issuers[%s].caBundleRef", is.Name))
			if err != nil {
				return nil, err
			}
		}
		cfg.Issuers = append(cfg.Issuers, r.issuerConfig(ctx, is, ca, prob))
	}

	if rt := spec.RegistryToken; rt != nil {
		tc := &hoptoken.Config{TTL: durationOf(rt.TTL), Mode: hoptoken.Mode(rt.Mode)}
		switch {
		case rt.SigningKeyRef != nil:
			sv, src, err := value(*rt.SigningKeyRef, hoptoken.FieldSigningKey)
			if err != nil {
				return nil, err
			}
			tc.SigningKey = &sv
			tc.Previous, res.publicKeys = rotateSigningKey(rotateTo, &sv, src, overlapOf(rt), stored.PublicKeys, remembered.publicKeys)
		case rt.SecretKeyRef != nil:
			// As stored, not trimmed: the registry's Deployment passes
			// this value to it as SECRET_KEY, and it keys its verifier
			// with the raw environment value.
			sv, _, err := value(*rt.SecretKeyRef, hoptoken.FieldSecretKey)
			if err != nil {
				return nil, err
			}
			tc.SecretKey = &sv
		}
		cfg.RegistryToken = tc
	}

	res.secretVersions = make([]string, len(res.secretNames))
	stateName := stateSecretName(pol.Name)
	for i, name := range res.secretNames {
		if s := secrets[name]; s != nil {
			res.secretVersions[i] = s.ResourceVersion
		}
		// The state Secret may come from memory, without a read.
		if st != nil && name == stateName {
			res.secretVersions[i] = st.resourceVersion
		}
	}
	res.policy, res.problems = policy.Compile(cfg, r.opts)
	res.problems = append(res.problems, extra...)
	r.memory.set(pol.Namespace+"/"+pol.Name, pol.UID, res.creds, res.publicKeys, res.sessionKeys)
	return res, nil
}

// sessionKeys works out the session signing keys (the web app's
// SECRET_KEY) for a rotation grace window. HMAC verification needs the
// previous key itself, not its digest, so the digests and windows come from
// the rotation machinery of static tokens (the state Secret and this
// replica's memory, which every replica agrees on), and the key values
// from this replica's memory only: a key is remembered while it is in force
// and, after a rotation, until its window ends, and is then forgotten.
//
// The operator does not copy a previous SECRET_KEY into its state Secret: a
// second Secret holding live signing material (readable by whoever reads
// the state, restored by backups, outliving the user's deletion of the
// original) is a worse trade than the cost of memory-only, which is this: a
// replica that starts (or restarts) during a window never saw the previous
// key and refuses its cookies, whose browsers log in again, as without a
// grace window. A deleted Secret or a weak key revokes everything at once,
// as for static tokens.
//
// It returns the previous keys with their windows' ends, and the keys to
// remember: the current one and those previous ones this replica holds.
func sessionKeys(sv *authn.SecretValue, prev []secret.PreviousDigest, known map[string][]byte) ([]session.PreviousKey, map[string][]byte) {
	keys := map[string][]byte{}
	if sv.Problem == nil {
		if v := secret.Clean(sv.Value); secret.Usable(v) {
			keys[secret.DigestOf(v).Hex()] = v
		}
	}
	var previous []session.PreviousKey
	for _, p := range prev {
		h := p.Digest.Hex()
		v := known[h]
		if v == nil {
			continue // never seen here: its cookies are refused
		}
		keys[h] = v
		previous = append(previous, session.PreviousKey{Value: v, ExpiresAt: p.ExpiresAt})
	}
	return previous, keys
}

// discover resolves oc's issuer URL into oc.Issuer, or sets oc.Problem.
// caPEM, if not empty, is the CA bundle the issuer's certificate is checked
// against instead of the system roots.
func (r *resolver) discover(ctx context.Context, oc *jwt.Config, field string, caPEM []byte) {
	if !r.targets.issuerAllowed(oc.IssuerURL) {
		// Not discovered at all: JWTs are refused.
		oc.Problem = &authn.Problem{Reason: authn.ProblemInvalidSpec, Field: field + ".issuerURL",
			Message: "the issuer URL must be https (plain http only on loopback, with --allow-insecure-loopback)"}
		return
	}
	iss, err := r.issuers.ResolveWithCA(ctx, oc.IssuerURL, caPEM)
	oc.Issuer = iss
	if errors.Is(err, jwt.ErrNoCertificates) {
		oc.Problem = &authn.Problem{Reason: authn.ProblemInvalidSpec, Field: field + ".caBundleRef",
			Message: "the CA bundle holds no valid PEM certificate"}
		return
	}
	if err != nil {
		// What failed (a closed port, a 404, a TLS error, a field of the
		// document) stays in the operator's log: status is readable by
		// the policy's author, who must not learn about the cluster's
		// network through it.
		log.FromContext(ctx).Error(err, "OIDC discovery failed", "issuer", oc.IssuerURL)
		msg := "OIDC discovery of the issuer failed; the operator's log has the details"
		if iss != nil {
			msg += "; still verifying with the keys of the last successful discovery"
		}
		oc.Problem = &authn.Problem{Reason: authn.ProblemOIDCDiscoveryFailed, Field: field + ".issuerURL", Message: msg}
	}
}

// issuerConfig is one entry of spec.issuers, with its issuer discovered
// (with caPEM, its CA bundle, if any). caProblem, if not nil, says its CA
// bundle cannot be used: the entry is then not discovered, and its tokens
// are refused.
func (r *resolver) issuerConfig(ctx context.Context, is authv1alpha1.IssuerSpec, caPEM []byte, caProblem *authn.Problem) jwt.Config {
	field := fmt.Sprintf("spec.issuers[%s]", is.Name)
	ic := jwt.Config{
		Name:         is.Name,
		Field:        field,
		IssuerURL:    is.IssuerURL,
		Audiences:    is.Audiences,
		Preset:       is.Preset,
		RegistryOnly: is.RegistryOnly,
	}
	if m := is.ClaimMappings; m != nil {
		if u := m.Username; u != nil {
			ic.UsernameClaim, ic.UsernameExpression = u.Claim, u.Expression
		}
		if g := m.Groups; g != nil {
			ic.GroupsClaim, ic.GroupsExpression = g.Claim, g.Expression
		}
	}
	for _, rule := range is.ClaimValidationRules {
		ic.Rules = append(ic.Rules, jwt.Rule{Expression: rule.Expression, Message: rule.Message})
	}
	if is.Preset == authv1alpha1.PresetKubernetes {
		r.cluster.resolve(ctx, &ic, field)
		return ic
	}
	if ic.IssuerURL == "" {
		ic.IssuerURL = jwt.DefaultIssuerURL(is.Preset)
	}
	if caProblem != nil {
		ic.Problem = caProblem
		return ic
	}
	r.discover(ctx, &ic, field, caPEM)
	return ic
}

// overlapOf is the policy's jwksOverlap (its default when unset).
func overlapOf(rt *authv1alpha1.RegistryTokenSpec) time.Duration {
	if rt.JWKSOverlap == nil {
		return hoptoken.DefaultOverlap
	}
	return rt.JWKSOverlap.Duration
}

// rotateSigningKey works out the registry token's ES256 keys: the key in
// force and the replaced public keys still inside their overlap. It uses
// the rotation machinery of static tokens (nextState), with the key's
// RFC 7638 thumbprint as its digest, so the state Secret and every replica
// agree on when a key was replaced and until when its public key is
// published, and a replica that restarts reads them back. A Secret deleted
// or a value that does not parse resets the credential like a deleted
// token: every published key is withdrawn at once. Public keys are not
// secret; their JWKs are kept beside the digests (in the state Secret and
// this replica's memory), by hex thumbprint, for as long as they are
// published.
func rotateSigningKey(rotateTo func(string, *secret.Digest, valueSource, time.Duration) credentialState,
	sv *authn.SecretValue, src valueSource, overlap time.Duration, stored, remembered map[string]json.RawMessage) ([]hoptoken.PublicKey, map[string]json.RawMessage) {
	known := map[string]json.RawMessage{}
	for _, m := range []map[string]json.RawMessage{stored, remembered} {
		for h, jwk := range m {
			known[h] = jwk
		}
	}
	var current *secret.Digest
	if sv.Problem == nil {
		if key, err := hoptoken.ParseSigningKey(sv.Value); err == nil {
			if pk, err := hoptoken.PublicKeyOf(&key.PublicKey); err == nil {
				if thumb, ok := hoptoken.ThumbprintOf(pk.KeyID); ok {
					d := secret.Digest(thumb)
					current = &d
					known[d.Hex()] = pk.JWK
				}
			}
		}
	}
	next := rotateTo(credSigningKey, current, src, overlap)
	keys := map[string]json.RawMessage{}
	if next.Current != "" {
		keys[next.Current] = known[next.Current]
	}
	var previous []hoptoken.PublicKey
	for _, p := range next.Previous {
		jwk := known[p.Digest]
		d, err := secret.ParseDigest(p.Digest)
		if jwk == nil || err != nil {
			continue // its public key was never seen here: it cannot be published
		}
		keys[p.Digest] = jwk
		previous = append(previous, hoptoken.PublicKey{KeyID: hoptoken.KeyIDOfThumbprint(d[:]), JWK: jwk, ExpiresAt: p.ExpiresAt})
	}
	return previous, keys
}

// readSecret reads a Secret's data: from the credential Secret cache when
// there is one and it holds the Secret at the version the metadata cache
// shows, else from the API server (see freshEnough).
func (r *resolver) readSecret(ctx context.Context, key types.NamespacedName, into *corev1.Secret) error {
	opts := r.freshEnough(ctx, key)
	if r.credentials != nil && opts.Raw != nil {
		var c corev1.Secret
		if err := r.credentials.Get(ctx, key, &c); err == nil && c.ResourceVersion == opts.Raw.ResourceVersion {
			*into = c
			return nil
		}
	}
	return r.secrets.Get(ctx, key, into, opts)
}

// freshEnough returns the read option for a Secret: when the metadata cache
// knows the Secret, a read "not older than" the version the cache has seen,
// which the API server answers from its watch cache instead of a quorum read
// from etcd. Without one (unknown Secret, or a cache that may be behind
// after an outage), a plain, consistent read.
func (r *resolver) freshEnough(ctx context.Context, key types.NamespacedName) *client.GetOptions {
	opts := &client.GetOptions{}
	if r.metadata == nil || r.health.recovering() {
		return opts
	}
	var m metav1.PartialObjectMetadata
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := r.metadata.Get(ctx, key, &m); err == nil && m.ResourceVersion != "" {
		opts.Raw = &metav1.GetOptions{ResourceVersion: m.ResourceVersion}
	}
	return opts
}

// stateSecret returns a policy's rotation state Secret (nil when there is
// none), from memory when the metadata cache shows the version remembered.
func (r *resolver) stateSecret(ctx context.Context, pol *authv1alpha1.RegistryAuthPolicy, read func(string) (*corev1.Secret, error)) (*stateRecord, error) {
	name := stateSecretName(pol.Name)
	key := pol.Namespace + "/" + name
	rv := ""
	if r.metadata != nil && !r.health.recovering() {
		var m metav1.PartialObjectMetadata
		m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		err := r.metadata.Get(ctx, types.NamespacedName{Namespace: pol.Namespace, Name: name}, &m)
		if apierrors.IsNotFound(err) {
			r.forgetState(key)
			return nil, nil
		}
		if err == nil {
			rv = m.ResourceVersion
		}
	}
	r.stateMu.Lock()
	cached := r.states[key]
	r.stateMu.Unlock()
	if cached != nil && rv != "" && cached.resourceVersion == rv {
		return cached, nil
	}
	st, err := read(name)
	if err != nil || st == nil {
		return nil, err
	}
	rec := &stateRecord{resourceVersion: st.ResourceVersion, owner: stateSecretOwner(st), data: st.Data[stateSecretKey]}
	r.stateMu.Lock()
	r.states[key] = rec
	r.stateMu.Unlock()
	return rec, nil
}

func (r *resolver) forgetState(key string) {
	r.stateMu.Lock()
	defer r.stateMu.Unlock()
	delete(r.states, key)
}

// lastChanged is when the Secret was last written: the newest managedFields
// time, else its creation. Every replica reads the same value, so they agree
// on when a rotation happened.
func lastChanged(s *corev1.Secret, now time.Time) time.Time {
	var t time.Time
	for _, mf := range s.ManagedFields {
		if mf.Time != nil && mf.Time.After(t) {
			t = mf.Time.Time
		}
	}
	if t.IsZero() {
		t = s.CreationTimestamp.Time
	}
	if t.IsZero() || t.After(now) {
		t = now
	}
	return t
}

func durationOf(d *metav1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.Duration
}

// stateSecretOwner is the UID of the RegistryAuthPolicy that owns s, "" if
// none: a rotation state Secret the operator made has one (labels can be
// removed by anyone; a user's Secret has no such owner).
func stateSecretOwner(s *corev1.Secret) types.UID {
	for _, o := range s.OwnerReferences {
		if o.Kind == "RegistryAuthPolicy" && strings.HasPrefix(o.APIVersion, authv1alpha1.GroupVersion.Group+"/") {
			return o.UID
		}
	}
	return ""
}

// isStateSecretOf reports whether s is the rotation state Secret the
// operator made for pol (and not a user's Secret that happens to have the
// name).
func isStateSecretOf(s *corev1.Secret, pol *authv1alpha1.RegistryAuthPolicy) bool {
	return ownedBy(stateSecretOwner(s), pol)
}

// ownedBy reports whether owner, a state Secret's owner UID ("" for none),
// is pol.
func ownedBy(owner types.UID, pol *authv1alpha1.RegistryAuthPolicy) bool {
	return owner != "" && owner == pol.UID
}

// timeOf is t's time, zero when t is nil.
func timeOf(t *metav1.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}
