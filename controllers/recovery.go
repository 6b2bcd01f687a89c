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
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
)

// Catching up after an API server outage.
//
// The loader learns about changes from the manager cache's watches. When the
// API server goes away, client-go's reflectors back off, up to 30 s (and then
// 30-60 s) between attempts, each on its own schedule: after the API server
// returns, a token rotated or revoked then would take up to a minute or more
// to reach the auth service. That is too long for a revocation.
//
// So a runnable asks the API server for its version once a second (the
// cheapest call there is; reflectors retry refused connections silently, so
// the cache's watch error handler alone does not see an outage), and the
// cache reports the watch failures it does see. While either failed within
// recoveryWindow, the runnable compares what the API server says (a list of
// policies and a metadata-only list of Secrets, read directly, a page of 500
// at a time) with what each policy was last loaded from, and sends the
// policies that differ to the loader: at once when the API server answers
// again, then four times a second for fastResyncFor after the last failure
// (until the reflectors are surely back, only this sees a rotation, and the
// 1 s contract needs it more often than once a second), then once a second
// until the window ends. That is up to about 260 resyncs (two lists each, a
// list being one call per 500 objects) per replica and outage in the fast
// phase, one a second after it; the loader reads Secrets directly.

// recoveryWindow is how long after the last watch failure the resync runs:
// longer than client-go's reflector backoff reset (2 min) plus its largest
// delay.
const recoveryWindow = 3 * time.Minute

// fastResyncFor is how long after the last failure the resync runs on every
// tick: client-go's reflectors wait up to 30 s between attempts, with jitter
// up to twice that, before they list and watch again.
const fastResyncFor = 65 * time.Second

// WatchHealth records when a watch of the manager's cache last failed, on
// the monotonic clock (a wall clock stepped back would stretch the window).
type WatchHealth struct {
	start time.Time    // holds a monotonic reading
	last  atomic.Int64 // nanoseconds after start, plus one; 0: never
}

// NewWatchHealth returns a WatchHealth that has seen no failure.
func NewWatchHealth() *WatchHealth { return &WatchHealth{start: time.Now()} }

// handler is a cache.Options.DefaultWatchErrorHandler: it records the failure
// and logs it as client-go does.
func (w *WatchHealth) handler(ctx context.Context, r *toolscache.Reflector, err error) {
	w.failed()
	toolscache.DefaultWatchErrorHandler(ctx, r, err)
}

func (w *WatchHealth) failed() { w.last.Store(int64(time.Since(w.start)) + 1) }

// sinceFailure is the time since the last failure (a very long time if
// none).
func (w *WatchHealth) sinceFailure() time.Duration {
	if w == nil {
		return time.Duration(1<<63 - 1)
	}
	last := w.last.Load()
	if last == 0 {
		return time.Duration(1<<63 - 1)
	}
	return time.Since(w.start) - time.Duration(last-1)
}

// recovering reports whether a watch failed within recoveryWindow: the cache
// may be behind the API server.
func (w *WatchHealth) recovering() bool {
	return w != nil && w.sinceFailure() < recoveryWindow
}

// recoveryResync is the runnable described above. It runs on every replica.
type recoveryResync struct {
	health *WatchHealth
	// ping asks the API server something cheap (its version).
	ping       func(context.Context) error
	reader     client.Reader // the API server, not the cache
	loader     *PolicyLoader
	namespaces []string
	interval   time.Duration
	out        chan event.GenericEvent
	log        logr.Logger
}

func (r *recoveryResync) NeedLeaderElection() bool { return false }

func (r *recoveryResync) Start(ctx context.Context) error {
	// Tick four times an interval; ping once an interval while healthy and
	// on every tick while recovering, so a return is noticed quickly.
	t := time.NewTicker(r.interval / 4)
	defer t.Stop()
	var lastResync time.Time
	pingFailed := false
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		recovering := r.health.recovering()
		if !recovering && n%4 != 0 {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, r.interval)
		err := r.ping(pctx)
		cancel()
		if err != nil {
			r.health.failed()
			pingFailed = true
			continue
		}
		if shouldResync(recovering, pingFailed, r.health.sinceFailure(), time.Since(lastResync), r.interval) {
			lastResync = time.Now()
			r.resync(ctx)
		}
		pingFailed = false
	}
}

// shouldResync says whether a tick whose ping succeeded compares the API
// server's state with the loaded one: while recovering, at once when the
// API server has just answered again; on every tick (four an interval) for
// fastResyncFor after the last failure, while the cache's watches may still
// be down; then once an interval. The lists come when the API server may be
// struggling: four a second only while nothing else would see a change.
func shouldResync(recovering, pingFailedBefore bool, sinceFailure, sinceLast, interval time.Duration) bool {
	switch {
	case !recovering:
		return false
	case pingFailedBefore:
		return true
	case sinceFailure < fastResyncFor:
		return true // the caller asks once a tick
	default:
		return sinceLast >= interval
	}
}

// resync sends the loader every policy whose loaded state differs from the
// API server's. Secrets come first and on their own: right after a restart
// the API server serves Secrets before custom resources.
func (r *recoveryResync) resync(ctx context.Context) {
	scopes := r.namespaces
	if len(scopes) == 0 {
		scopes = []string{""} // all namespaces
	}
	sent := map[string]bool{}
	send := func(ns, name string) {
		if key := ns + "/" + name; !sent[key] {
			sent[key] = true
			r.send(ctx, &authv1alpha1.RegistryAuthPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}})
		}
	}
	defer func() {
		if len(sent) > 0 {
			r.log.Info("caught up after an API server outage: policies sent to the loader", "policies", len(sent))
		}
	}()

	// A referenced Secret that appeared, changed or went away.
	versions := map[string]string{} // "namespace/name" -> resourceVersion
	for _, ns := range scopes {
		err := listPages(ctx, r.reader, r.interval, func() client.ObjectList {
			sl := &metav1.PartialObjectMetadataList{}
			sl.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
			return sl
		}, ns, func(l client.ObjectList) {
			for _, s := range l.(*metav1.PartialObjectMetadataList).Items {
				versions[s.Namespace+"/"+s.Name] = s.ResourceVersion
			}
		})
		if err != nil {
			r.log.V(1).Info("resync: cannot list Secrets yet", "error", err.Error())
			return
		}
	}
	for _, key := range r.loader.loadedKeys() {
		if res := r.loader.latestResolution(key); res != nil && !sameSecrets(res, versions) {
			ns, name, _ := cutKey(key)
			send(ns, name)
		}
	}

	// A policy that is new, changed or gone.
	seen := map[string]bool{}
	for _, ns := range scopes {
		err := listPages(ctx, r.reader, r.interval, func() client.ObjectList { return &authv1alpha1.RegistryAuthPolicyList{} }, ns, func(l client.ObjectList) {
			pl := l.(*authv1alpha1.RegistryAuthPolicyList)
			for i := range pl.Items {
				p := &pl.Items[i]
				seen[p.Namespace+"/"+p.Name] = true
				res := r.loader.latestResolution(p.Namespace + "/" + p.Name)
				if res == nil || res.generation != p.Generation || res.uid != p.UID {
					send(p.Namespace, p.Name)
				}
			}
		})
		if err != nil {
			r.log.V(1).Info("resync: cannot list policies yet", "error", err.Error())
			return
		}
	}
	for _, key := range r.loader.loadedKeys() {
		if !seen[key] {
			ns, name, _ := cutKey(key)
			send(ns, name)
		}
	}
}

// recoveryPageSize bounds each list call of the resync: the API server
// answers a page at a time instead of building one response of every Secret
// in scope.
const recoveryPageSize = 500

// listPages lists a namespace (every namespace for "") a page at a time,
// handing each page to each. Each page has perPage to arrive: a cluster with
// many Secrets takes many pages, and one deadline for all of them might never
// be met by an API server that is slow as it comes back.
func listPages(ctx context.Context, c client.Reader, perPage time.Duration, newList func() client.ObjectList, ns string, each func(client.ObjectList)) error {
	cont := ""
	for {
		l := newList()
		pctx, cancel := context.WithTimeout(ctx, perPage)
		err := c.List(pctx, l, client.InNamespace(ns), client.Limit(recoveryPageSize), client.Continue(cont))
		cancel()
		if err != nil {
			return err
		}
		each(l)
		if cont = l.GetContinue(); cont == "" {
			return nil
		}
	}
}

func (r *recoveryResync) send(ctx context.Context, p *authv1alpha1.RegistryAuthPolicy) {
	select {
	case r.out <- event.GenericEvent{Object: p}:
	case <-ctx.Done():
	}
}

// sameSecrets reports whether every Secret a policy was loaded from still
// has the version it had (absent then and now counts as the same). A policy
// that reads ConfigMaps (CA bundles) is never the same: the resync lists
// Secrets only, so it is loaded again (its issuers' discovery is cached, so
// this costs a ConfigMap read, not a request to the issuer).
func sameSecrets(res *resolution, versions map[string]string) bool {
	if len(res.configMapNames) > 0 {
		return false
	}
	for i, name := range res.secretNames {
		if res.secretVersions[i] != versions[res.namespace+"/"+name] {
			return false
		}
	}
	return true
}

func cutKey(key string) (ns, name string, ok bool) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:], true
		}
	}
	return "", key, false
}
