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
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// PolicyLoader keeps this replica's auth service in step with the cluster:
// each reconcile reads one policy and its Secrets, compiles them and swaps
// the result into the store. It runs on every replica (no leader election)
// and never writes to the API server.
type PolicyLoader struct {
	client   client.Client
	resolver *resolver
	store    *policy.Store
	ready    *readiness
	backoff  workqueue.TypedRateLimiter[string]

	mu       sync.Mutex
	problems map[string]string      // policy key -> problems last logged
	latest   map[string]*resolution // policy key -> what the store holds
	// stateWrites are the leader's writes of state Secrets in flight, by
	// policy key (see writingState).
	stateWrites map[string]chan struct{}
	// loaded receives each policy after it was (re)loaded or removed, for
	// the status reconciler: status reports what this replica loaded,
	// without reading the cluster a second time.
	loaded chan event.GenericEvent
	// recovered receives the policies a recovery resync finds behind the
	// API server (see recovery.go).
	recovered chan event.GenericEvent
}

// loadedKeys are the keys of the policies loaded.
func (l *PolicyLoader) loadedKeys() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := make([]string, 0, len(l.latest))
	for k := range l.latest {
		keys = append(keys, k)
	}
	return keys
}

// latestResolution returns what was last loaded for a policy, or nil.
func (l *PolicyLoader) latestResolution(key string) *resolution {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.latest[key]
}

func (l *PolicyLoader) notify(pol *authv1alpha1.RegistryAuthPolicy) {
	ev := event.GenericEvent{Object: pol.DeepCopy()}
	select {
	case l.loaded <- ev:
	default:
		// The status controller is behind: don't hold the loader, but
		// don't drop the notification either.
		go func() { l.loaded <- ev }()
	}
}

// remove takes a policy that is gone, or being deleted, out of the auth
// service and forgets everything kept for it.
func (l *PolicyLoader) remove(ctx context.Context, req ctrl.Request) {
	key := req.Namespace + "/" + req.Name
	l.store.Delete(key)
	l.resolver.memory.forget(key)
	rotationsTotal.DeletePartialMatch(prometheus.Labels{"policy": key})
	l.resolver.forgetState(req.Namespace + "/" + stateSecretName(req.Name))
	l.forget(key)
	l.backoff.Forget(key)
	l.ready.loaded(key)
	log.FromContext(ctx).V(1).Info("policy removed from the auth service")
}

// Reconcile loads one policy into the store, or removes it.
func (l *PolicyLoader) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	key := req.Namespace + "/" + req.Name
	var pol authv1alpha1.RegistryAuthPolicy
	if err := l.client.Get(ctx, req.NamespacedName, &pol); err != nil {
		if apierrors.IsNotFound(err) {
			l.remove(ctx, req)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if !pol.DeletionTimestamp.IsZero() {
		// Being deleted, waiting for finalizers (someone else's, or
		// foreground deletion of the state Secret): the deletion cannot be
		// undone, and the policy's credentials stop working now, not when
		// the last finalizer is gone.
		l.remove(ctx, req)
		return ctrl.Result{}, nil
	}
	if res := l.unchanged(ctx, key, &pol); res != nil {
		// Nothing it was made of has changed: no read, no compile. The
		// leader's own write of the state Secret brings every policy
		// back here once, for instance.
		l.ready.loaded(key)
		return l.requeueFor(key, res, false), nil
	}
	res, err := l.resolver.resolve(ctx, &pol)
	if err != nil {
		return ctrl.Result{}, err
	}
	l.store.Put(res.policy)
	l.mu.Lock()
	l.latest[key] = res
	l.mu.Unlock()
	l.ready.loaded(key)
	l.logProblems(ctx, key, res)
	l.notify(&pol)

	return l.requeueFor(key, res, true), nil
}

// unchanged returns what was last loaded for pol when nothing it was made of
// has changed since: the same object and generation, every Secret it read
// at the version the metadata cache shows now, no grace window ended, no
// problem that needs a retry. nil means load it. After an API server
// outage the cache may be behind: then it always loads.
func (l *PolicyLoader) unchanged(ctx context.Context, key string, pol *authv1alpha1.RegistryAuthPolicy) *resolution {
	res := l.latestResolution(key)
	r := l.resolver
	if res == nil || res.uid != pol.UID || res.generation != pol.Generation || hasRetryable(res.problems) ||
		r.metadata == nil || r.health.recovering() {
		return nil
	}
	now := r.now()
	for _, c := range res.creds {
		if t := c.state.nextExpiry(); !t.IsZero() && !t.After(now) {
			return nil
		}
	}
	if !slices.Equal(res.secretNames, referencedSecrets(pol)) || l.changedConfigMap(ctx, pol.Namespace, res) {
		return nil
	}
	switch l.changedSecret(ctx, pol.Namespace, res) {
	case -1:
		return res
	case 0: // the state Secret (referencedSecrets puts it first)
		// The leader may be writing it: its watch event can come before
		// the write's answer, and so before wroteState.
		if wait := l.stateWriteInFlight(key); wait != nil {
			select {
			case <-wait:
			case <-ctx.Done():
				return nil
			case <-time.After(2 * time.Second):
				return nil
			}
			if res = l.latestResolution(key); res != nil && res.generation == pol.Generation && res.uid == pol.UID &&
				l.changedSecret(ctx, pol.Namespace, res) == -1 {
				return res
			}
		}
	}
	return nil
}

// changedSecret is the index in res.secretNames of a Secret whose version
// in the metadata cache is not the one res was made with, -1 if none.
func (l *PolicyLoader) changedSecret(ctx context.Context, namespace string, res *resolution) int {
	for i, name := range res.secretNames {
		var m metav1.PartialObjectMetadata
		m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		err := l.resolver.metadata.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &m)
		switch {
		case apierrors.IsNotFound(err):
			if res.secretVersions[i] != "" {
				return i
			}
		case err != nil || m.ResourceVersion != res.secretVersions[i]:
			return i
		}
	}
	return -1
}

// writingState marks a write of the policy's state Secret by the leader as
// in flight; the returned func ends it, after wroteState.
func (l *PolicyLoader) writingState(key string) func() {
	ch := make(chan struct{})
	l.mu.Lock()
	if l.stateWrites == nil {
		l.stateWrites = map[string]chan struct{}{}
	}
	l.stateWrites[key] = ch
	l.mu.Unlock()
	return func() {
		l.mu.Lock()
		if l.stateWrites[key] == ch {
			delete(l.stateWrites, key)
		}
		l.mu.Unlock()
		close(ch)
	}
}

// stateWriteInFlight returns a channel closed when the leader's write of the
// policy's state Secret ends, nil when there is none.
func (l *PolicyLoader) stateWriteInFlight(key string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ch, ok := l.stateWrites[key]; ok {
		return ch
	}
	return nil
}

// wroteState records that the leader wrote pol's rotation state Secret
// (version rv, value data) for the load res: the next load takes it from
// memory instead of reading it back, and the load its watch event brings
// finds nothing changed.
func (l *PolicyLoader) wroteState(pol *authv1alpha1.RegistryAuthPolicy, res *resolution, rv string, data []byte) {
	rec := &stateRecord{resourceVersion: rv, owner: pol.UID, data: data}
	name := stateSecretName(pol.Name)
	if slices.Contains(credentialSecrets(pol, nil), name) {
		// A credential is read from it too (a mistake the load reports):
		// the load must see the Secret as written.
		return
	}
	l.resolver.stateMu.Lock()
	l.resolver.states[pol.Namespace+"/"+name] = rec
	l.resolver.stateMu.Unlock()
	key := pol.Namespace + "/" + pol.Name
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.latest[key] != res {
		return // loaded again meanwhile
	}
	next := *res
	next.state = rec
	next.secretVersions = slices.Clone(res.secretVersions)
	for i, n := range next.secretNames {
		if n == name {
			next.secretVersions[i] = rv
		}
	}
	l.latest[key] = &next
}

// changedConfigMap reports whether a ConfigMap res read (a CA bundle) has
// changed since, or cannot be told.
func (l *PolicyLoader) changedConfigMap(ctx context.Context, namespace string, res *resolution) bool {
	if len(res.configMapNames) == 0 {
		return false
	}
	if l.resolver.configMaps == nil {
		return true
	}
	for i, name := range res.configMapNames {
		var m metav1.PartialObjectMetadata
		m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
		err := l.resolver.configMaps.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &m)
		switch {
		case apierrors.IsNotFound(err):
			if res.configMapVersions[i] != "" {
				return true
			}
		case err != nil || m.ResourceVersion != res.configMapVersions[i]:
			return true
		}
	}
	return false
}

// requeueFor is when to load the policy again by itself: a retry with
// backoff for a problem that needs one, else when a grace window ends.
func (l *PolicyLoader) requeueFor(key string, res *resolution, loaded bool) ctrl.Result {
	var result ctrl.Result
	if hasRetryable(res.problems) {
		// Retry with backoff: nothing in the cluster tells us when an
		// issuer comes back. Missing Secrets come back through the Secret
		// watch, so they need no retry.
		result.RequeueAfter = l.backoff.When(key)
	} else if loaded {
		l.backoff.Forget(key)
	}
	// Come back when a grace window ends: the decision already refuses an
	// expired previous token, but the compiled policy, the status and the
	// state Secret should drop it too.
	for _, c := range res.creds {
		if t := c.state.nextExpiry(); !t.IsZero() {
			after := max(time.Until(t), 0) + 100*time.Millisecond
			if result.RequeueAfter == 0 || after < result.RequeueAfter {
				result.RequeueAfter = after
			}
		}
	}
	return result
}

func hasRetryable(probs []authn.Problem) bool {
	for _, p := range probs {
		if p.Reason == authn.ProblemOIDCDiscoveryFailed {
			return true
		}
	}
	return false
}

// logProblems logs a policy's problems once per change, at error level
// (the original logs an error when the token is empty).
func (l *PolicyLoader) logProblems(ctx context.Context, key string, res *resolution) {
	var sb strings.Builder
	for _, p := range res.problems {
		sb.WriteString(p.Error())
		sb.WriteByte('\n')
	}
	l.mu.Lock()
	last, seen := l.problems[key]
	changed := !seen || last != sb.String()
	l.problems[key] = sb.String()
	l.mu.Unlock()
	logger := log.FromContext(ctx)
	fp := res.policy.Fingerprints()
	if !changed {
		logger.V(1).Info("policy reloaded", "staticToken", fp.StaticToken, "apiKeys", fp.APIKeys)
		return
	}
	for _, p := range res.problems {
		logger.Error(errors.New(p.Message), "policy problem: the credential is not accepted", "reason", p.Reason, "field", p.Field)
	}
	logger.Info("policy loaded", "staticToken", fp.StaticToken, "apiKeys", fp.APIKeys, "problems", len(res.problems))
}

func (l *PolicyLoader) forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.problems, key)
	delete(l.latest, key)
}

// readiness tracks the first full sync: the process is ready once every
// policy that existed when the cache synced has been loaded (or found gone).
type readiness struct {
	mu      sync.Mutex
	listed  map[string]bool // nil until the initial list
	seen    map[string]bool
	isReady bool
	onReady []func()
}

// whenReady registers f to run once, when the first full load completes.
func (r *readiness) whenReady(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onReady = append(r.onReady, f)
}

// ready reports whether the first full load has completed.
func (r *readiness) ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.isReady
}

func newReadiness() *readiness { return &readiness{seen: map[string]bool{}} }

func (r *readiness) loaded(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.listed == nil {
		// Before the initial list: remember it for setListed.
		if r.seen != nil {
			r.seen[key] = true
		}
		return
	}
	// One key at a time: going over every pending key on each load would
	// make loading n policies cost n².
	delete(r.listed, key)
	r.trim()
}

func (r *readiness) setListed(keys []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.listed = map[string]bool{}
	for _, k := range keys {
		r.listed[k] = true
	}
	r.trim()
}

// trim drops what was seen before the list from the pending keys (once);
// when nothing is pending, the process is ready.
func (r *readiness) trim() {
	if r.listed == nil {
		return
	}
	if r.seen != nil {
		for k := range r.seen {
			delete(r.listed, k)
		}
		r.seen = nil
	}
	if len(r.listed) == 0 {
		if !r.isReady {
			// A map keeps the room it grew to: 1.5 MB at 10,000
			// policies.
			r.listed = map[string]bool{}
			r.isReady = true
			for _, f := range r.onReady {
				go f()
			}
		}
	}
}

// Check is a healthz.Checker for /readyz.
func (r *readiness) Check(_ *http.Request) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.listed == nil {
		return errors.New("policy cache not synced yet")
	}
	if n := len(r.listed); n > 0 {
		return errors.New(strconv.Itoa(n) + " policies not loaded yet")
	}
	return nil
}

// initialList is a runnable (on every replica) that waits for the cache and
// records which policies must be loaded before the replica is ready.
type initialList struct {
	cache interface {
		WaitForCacheSync(ctx context.Context) bool
	}
	client client.Reader
	ready  *readiness
}

func (i *initialList) Start(ctx context.Context) error {
	if !i.cache.WaitForCacheSync(ctx) {
		return errors.New("cache did not sync")
	}
	var list authv1alpha1.RegistryAuthPolicyList
	for {
		err := i.client.List(ctx, &list)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	keys := make([]string, 0, len(list.Items))
	for _, p := range list.Items {
		keys = append(keys, p.Namespace+"/"+p.Name)
	}
	i.ready.setListed(keys)
	<-ctx.Done()
	return nil
}

// NeedLeaderElection: every replica serves requests, so every replica loads.
func (i *initialList) NeedLeaderElection() bool { return false }
