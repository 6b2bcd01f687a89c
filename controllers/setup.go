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
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// Least privilege: read policies and write their status; read Secrets (the
// referenced ones, by name, plus a metadata-only watch) and write only the
// rotation state Secrets the operator owns; read ConfigMaps (issuers' CA
// bundles, by name, plus a metadata-only watch); record events. Leader election
// has its own Role (config/rbac/leader_election_role.yaml).
//
// +kubebuilder:rbac:groups=auth.registryauth.io,resources=registryauthpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=auth.registryauth.io,resources=registryauthpolicies/status,verbs=patch
// +kubebuilder:rbac:groups=auth.registryauth.io,resources=registryauthpolicies/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Field indexes on RegistryAuthPolicy.
const (
	// indexSecrets lists the names of the Secrets a policy reads (its
	// references and its rotation state Secret).
	indexSecrets = "registryauth.secrets"
	// indexConfigMaps lists the names of the ConfigMaps a policy reads
	// (its issuers' CA bundles).
	indexConfigMaps = "registryauth.configmaps"
	// indexHosts lists a policy's hosts.
	indexHosts = "registryauth.hosts"
)

// Options configure the controllers.
type Options struct {
	// Store is the auth service's store the loader fills.
	Store *policy.Store
	// Issuers discovers OIDC issuers; shared with nothing else.
	Issuers *jwt.Issuers
	// Targets are the URLs policies may name (issuers, delegates).
	Targets TargetRules
	// HostGrants say which namespaces may claim which hosts.
	HostGrants HostGrants
	// Compile tunes the compile step.
	Compile policy.CompileOptions
	// MaxConcurrentReconciles of each controller (default 8).
	MaxConcurrentReconciles int
	// EventRecorderName is the reporting controller of events.
	EventRecorderName string
	// Now defaults to time.Now.
	Now func() time.Time
	// Leader decides which replica writes status, events and rotation
	// state; nil means this replica always does (a single replica).
	Leader *LeaderElector
	// WatchHealth is the one given to CacheOptions; with it, the loader
	// catches up right after an API server outage (see recovery.go).
	WatchHealth *WatchHealth
	// Namespaces are the watched namespaces (empty: all), as given to
	// CacheOptions.
	Namespaces []string
	// CredentialSecrets, if not nil, selects by label the Secrets whose
	// data the operator keeps in a cache of its own (besides the metadata
	// of every Secret): a load reads such a Secret there instead of from
	// the API server. At start, one paginated list replaces a read per
	// policy (10,000 reads at --kube-api-qps 500 take 20 s). Only Secrets
	// the label selects are held in memory, so the label must mark
	// credential Secrets only: DefaultCredentialSecrets, the credential
	// opt-in label. A Secret it does not select is read from the API
	// server as without it (and refused when it is not opted in). nil: no
	// such cache.
	CredentialSecrets labels.Selector
}

// DefaultCredentialSecretSelector selects the Secrets the operator reads
// values from: those opted in as credentials (LabelCredential=true) and its
// own rotation state Secrets (LabelCredential=state). It is
// --credential-secret-selector's default.
const DefaultCredentialSecretSelector = LabelCredential + " in (true,state)"

// DefaultCredentialSecrets is DefaultCredentialSecretSelector parsed.
func DefaultCredentialSecrets() labels.Selector {
	sel, err := labels.Parse(DefaultCredentialSecretSelector)
	if err != nil {
		panic(err) // a constant
	}
	return sel
}

// StatusDelay is how long after a load the leader writes what it
// means (status, events, the rotation state Secret). A change reaches every
// replica at the same instant, and each one reads the policy's Secret from
// the API server to load it; the leader's writes, made at once, would compete
// with the other replicas' reads for the API server and, on small nodes, the
// CPU, and the state Secret's change brings every replica back for a second
// load. A tenth of a second later they come after the loads, cost no one's
// latency, and several loads of one policy in that time make one write.
// Nothing waits on them: a load is in force as soon as it is in the store.
const StatusDelay = 100 * time.Millisecond

// Setup wires the controllers into mgr: the field indexes, the loader (every
// replica), the status reconciler (leader only), the readiness tracking and
// the recovery after an API server outage. Each controller registers itself
// (SetupWithManager). The returned checker is the readiness check: ready once
// every policy that existed at start has been loaded.
func Setup(mgr ctrl.Manager, opts Options) (healthz.Checker, error) {
	if opts.MaxConcurrentReconciles <= 0 {
		// Loads mostly wait on the API server (a Secret read each).
		opts.MaxConcurrentReconciles = 8
	}
	if opts.EventRecorderName == "" {
		opts.EventRecorderName = "registry-auth-operator"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Leader == nil {
		opts.Leader = AlwaysLeader()
	}
	if err := mgr.Add(opts.Leader); err != nil {
		return nil, err
	}
	ctx := context.Background()
	if err := indexPolicies(ctx, mgr.GetCache()); err != nil {
		return nil, err
	}

	cluster, err := NewClusterIssuer(mgr.GetConfig())
	if err != nil {
		return nil, err
	}
	var credentials cache.Cache
	// The cache itself: the manager's client sends every Secret read,
	// metadata included, to the API server (ClientOptions).
	metadata := secretMetadata{metadata: mgr.GetCache()}
	if opts.CredentialSecrets != nil {
		c, err := newCredentialCache(mgr, opts.Namespaces, opts.CredentialSecrets)
		if err != nil {
			return nil, err
		}
		credentials = c
		metadata.credentials = c
	}
	res := &resolver{
		cluster:    cluster,
		secrets:    mgr.GetAPIReader(),
		metadata:   metadata,
		configMaps: mgr.GetCache(),
		health:     opts.WatchHealth,
		states:     map[string]*stateRecord{},
		issuers:    opts.Issuers,
		targets:    opts.Targets,
		grants:     opts.HostGrants,
		memory:     newRotationMemory(),
		opts:       opts.Compile,
		now:        opts.Now,
	}
	ready := newReadiness()
	loader := &PolicyLoader{
		client:      mgr.GetClient(),
		resolver:    res,
		store:       opts.Store,
		ready:       ready,
		backoff:     workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 5*time.Minute),
		problems:    map[string]string{},
		latest:      map[string]*resolution{},
		stateWrites: map[string]chan struct{}{},
		loaded:      make(chan event.GenericEvent, 1024),
		recovered:   make(chan event.GenericEvent),
	}
	if credentials != nil {
		res.credentials = credentials
	}
	if err := loader.SetupWithManager(mgr, credentials, opts.MaxConcurrentReconciles); err != nil {
		return nil, err
	}
	status := &StatusReconciler{
		grants:   opts.HostGrants,
		client:   mgr.GetClient(),
		loader:   loader,
		ready:    ready,
		recorder: mgr.GetEventRecorder(opts.EventRecorderName),
		leader:   opts.Leader,
		now:      opts.Now,
	}
	if err := status.SetupWithManager(mgr, opts.MaxConcurrentReconciles); err != nil {
		return nil, err
	}

	if err := mgr.Add(&initialList{cache: mgr.GetCache(), client: mgr.GetClient(), ready: ready}); err != nil {
		return nil, err
	}
	if opts.WatchHealth != nil {
		dc, err := discovery.NewDiscoveryClientForConfigAndClient(mgr.GetConfig(), mgr.GetHTTPClient())
		if err != nil {
			return nil, err
		}
		if err := mgr.Add(&recoveryResync{
			health: opts.WatchHealth,
			ping: func(ctx context.Context) error {
				_, err := dc.RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
				return err
			},
			reader:     mgr.GetAPIReader(),
			loader:     loader,
			namespaces: opts.Namespaces,
			interval:   time.Second,
			out:        loader.recovered,
			log:        mgr.GetLogger().WithName("recovery"),
		}); err != nil {
			return nil, err
		}
	}
	return ready.Check, nil
}

// indexPolicies adds the field indexes on RegistryAuthPolicy that the
// client's List with MatchingFields uses: indexSecrets by "namespace/name"
// (InNamespace lists only) and indexHosts by host (cluster-wide lists
// only). IndexField would store every value twice, namespaced and
// cluster-wide, each in a set of its own: 20 MB at 10,000 policies. The
// keys follow controller-runtime's convention for field indexes
// ("field:<name>", "<namespace>/<value>" or "__all_namespaces/<value>"):
// the tests of Secret changes and host conflicts go through them. A policy's
// own state Secret is not indexed when its name says whose it is
// (policiesReferencing derives the policy from the name).
func indexPolicies(ctx context.Context, c cache.Cache) error {
	inf, err := c.GetInformer(ctx, &authv1alpha1.RegistryAuthPolicy{})
	if err != nil {
		return err
	}
	return inf.AddIndexers(toolscache.Indexers{
		"field:" + indexSecrets: func(obj any) ([]string, error) {
			p, ok := obj.(*authv1alpha1.RegistryAuthPolicy)
			if !ok {
				return nil, fmt.Errorf("index %s: %T is not a RegistryAuthPolicy", indexSecrets, obj)
			}
			var names []string
			if st := stateSecretName(p.Name); st != p.Name+stateSecretSuffix {
				names = append(names, st)
			}
			names = credentialSecrets(p, names)
			for i, n := range names {
				names[i] = p.Namespace + "/" + n
			}
			return names, nil
		},
		"field:" + indexConfigMaps: func(obj any) ([]string, error) {
			p, ok := obj.(*authv1alpha1.RegistryAuthPolicy)
			if !ok {
				return nil, fmt.Errorf("index %s: %T is not a RegistryAuthPolicy", indexConfigMaps, obj)
			}
			names := referencedConfigMaps(p)
			for i, n := range names {
				names[i] = p.Namespace + "/" + n
			}
			return names, nil
		},
		"field:" + indexHosts: func(obj any) ([]string, error) {
			p, ok := obj.(*authv1alpha1.RegistryAuthPolicy)
			if !ok {
				return nil, fmt.Errorf("index %s: %T is not a RegistryAuthPolicy", indexHosts, obj)
			}
			keys := make([]string, len(p.Spec.Hosts))
			for i, h := range p.Spec.Hosts {
				keys[i] = "__all_namespaces/" + h
			}
			return keys, nil
		},
	})
}

// enqueueAfter enqueues the object of each generic event after d. An
// object already waiting in the queue is not added twice: events in the
// meantime fold into the entry that waits (or is ready already).
func enqueueAfter(d time.Duration) handler.EventHandler {
	return handler.Funcs{
		GenericFunc: func(_ context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			q.AddAfter(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(e.Object)}, d)
		},
	}
}

// referencedSecrets are the names of the Secrets a policy reads: its
// rotation state Secret, then its credentials' Secrets.
func referencedSecrets(p *authv1alpha1.RegistryAuthPolicy) []string {
	return credentialSecrets(p, []string{stateSecretName(p.Name)})
}

// credentialSecrets appends to names those of the Secrets a policy's
// credentials are read from that names does not hold yet.
func credentialSecrets(p *authv1alpha1.RegistryAuthPolicy, names []string) []string {
	add := func(n string) {
		for _, x := range names {
			if x == n {
				return
			}
		}
		names = append(names, n)
	}
	// A disabled static token's Secret is not read: changes to it are no
	// reason to load the policy again.
	for _, ref := range caBundleRefs(p) {
		if ref.SecretKeyRef != nil {
			add(ref.SecretKeyRef.Name)
		}
	}
	if st := p.Spec.StaticToken; st != nil && st.Enabled && st.SecretRef != nil {
		add(st.SecretRef.Name)
	}
	if ft := p.Spec.FederationToken; ft != nil && ft.Enabled && ft.SecretRef != nil {
		add(ft.SecretRef.Name)
	}
	for _, k := range p.Spec.APIKeys {
		add(k.SecretRef.Name)
	}
	if s := p.Spec.Session; s != nil {
		add(s.SecretKeyRef.Name)
	}
	// The registry token reads one key: the signing key when there is
	// one, else the secret key.
	if rt := p.Spec.RegistryToken; rt != nil {
		switch {
		case rt.SigningKeyRef != nil:
			add(rt.SigningKeyRef.Name)
		case rt.SecretKeyRef != nil:
			add(rt.SecretKeyRef.Name)
		}
	}
	return names
}

// retryMax bounds the wait before a reconcile that failed is tried again
// (controller-runtime's default limiter backs off to 1,000 s). For the
// loader, a load that could not read the API server: meanwhile the policy's
// last loaded config stays in force, and so does anything it held that a
// change seen at the same time (a Secret deleted to revoke a token) would
// remove. For the status reconciler, a state Secret write that failed:
// meanwhile grace windows live only in memory.
const retryMax = 30 * time.Second

// retryLimiter is both controllers' retry limiter: per policy, exponential
// from 5 ms to retryMax; overall, 10 retries a second (bursts of 100), as
// controller-runtime's default.
func retryLimiter() workqueue.TypedRateLimiter[reconcile.Request] {
	return workqueue.NewTypedMaxOfRateLimiter(
		workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](5*time.Millisecond, retryMax),
		&workqueue.TypedBucketRateLimiter[reconcile.Request]{Limiter: rate.NewLimiter(rate.Limit(10), 100)},
	)
}

// caBundleRefs are the CA bundles a policy's issuers read (the kubernetes
// preset's is never read).
func caBundleRefs(p *authv1alpha1.RegistryAuthPolicy) []*authv1alpha1.CABundleRef {
	var refs []*authv1alpha1.CABundleRef
	if o := p.Spec.OIDC; o != nil && o.CABundleRef != nil {
		refs = append(refs, o.CABundleRef)
	}
	for i := range p.Spec.Issuers {
		if is := &p.Spec.Issuers[i]; is.CABundleRef != nil && is.Preset != authv1alpha1.PresetKubernetes {
			refs = append(refs, is.CABundleRef)
		}
	}
	return refs
}

// referencedConfigMaps are the names of the ConfigMaps a policy reads (its
// issuers' CA bundles), each once.
func referencedConfigMaps(p *authv1alpha1.RegistryAuthPolicy) []string {
	var names []string
	for _, ref := range caBundleRefs(p) {
		if c := ref.ConfigMapKeyRef; c != nil && !slices.Contains(names, c.Name) {
			names = append(names, c.Name)
		}
	}
	return names
}

// policiesReferencingConfigMap maps a ConfigMap to the policies in its
// namespace that read it.
func policiesReferencingConfigMap(ctx context.Context, c client.Client, o client.Object) []reconcile.Request {
	var list authv1alpha1.RegistryAuthPolicyList
	if err := c.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexConfigMaps: o.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing policies that reference a ConfigMap", "configmap", o.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, p := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&p)})
	}
	return reqs
}

// policiesReferencing maps a Secret to the policies in its namespace that
// read it.
func policiesReferencing(ctx context.Context, c client.Client, o client.Object) []reconcile.Request {
	var list authv1alpha1.RegistryAuthPolicyList
	if err := c.List(ctx, &list, client.InNamespace(o.GetNamespace()), client.MatchingFields{indexSecrets: o.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing policies that reference a Secret", "secret", o.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items)+1)
	for _, p := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&p)})
	}
	// A state Secret named after its policy is not in the index.
	if name, ok := strings.CutSuffix(o.GetName(), stateSecretSuffix); ok && name != "" {
		key := types.NamespacedName{Namespace: o.GetNamespace(), Name: name}
		var p authv1alpha1.RegistryAuthPolicy
		if err := c.Get(ctx, key, &p); err == nil && !slices.ContainsFunc(reqs, func(r reconcile.Request) bool { return r.NamespacedName == key }) {
			reqs = append(reqs, reconcile.Request{NamespacedName: key})
		}
	}
	return reqs
}

// policiesSharingHosts maps a policy to the others that list one of its
// hosts.
func policiesSharingHosts(ctx context.Context, c client.Client, p *authv1alpha1.RegistryAuthPolicy) []reconcile.Request {
	var reqs []reconcile.Request
	for _, h := range p.Spec.Hosts {
		var list authv1alpha1.RegistryAuthPolicyList
		if err := c.List(ctx, &list, client.MatchingFields{indexHosts: h}); err != nil {
			return nil
		}
		for _, o := range list.Items {
			if o.UID != p.UID {
				reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&o)})
			}
		}
	}
	return reqs
}

// CacheOptions restricts what the manager caches.
//
// Secrets: the operator must read the Secrets policies reference, but must
// not hold every Secret of the cluster in memory. It watches Secrets
// metadata-only (names and versions, to know when a referenced one changes)
// and reads a referenced Secret's data straight from the API server when it
// reconciles, hashing the value at once. The transform also drops annotations
// from the cached metadata: `kubectl apply` stores the whole Secret, data
// included, in the kubectl.kubernetes.io/last-applied-configuration
// annotation. managedFields are dropped from everything cached (memory).
//
// namespaces limits the cache (and so the policies served) to those
// namespaces; empty means all. health, if not nil, learns of watch failures
// (see recovery.go; pass the same one to Setup). credentials is
// Options.CredentialSecrets (pass the same one to Setup): the Secrets it
// selects are held, with their data, by the credential Secret cache, so
// the metadata watch leaves them out when the selector is one requirement
// it can turn around (the default's "in (true,state)" becomes
// "notin (true,state)"). Each Secret is then held once.
func CacheOptions(namespaces []string, health *WatchHealth, credentials labels.Selector) cache.Options {
	o := cache.Options{
		DefaultTransform: stripForCache,
		// A read of a type nobody watches fails instead of quietly
		// starting an informer (and caching, say, every Secret).
		ReaderFailOnMissingInformer: true,
	}
	if health != nil {
		o.DefaultWatchErrorHandler = health.handler
	}
	if len(namespaces) > 0 {
		o.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			o.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	if others := complementOf(credentials); others != nil {
		secrets := &metav1.PartialObjectMetadata{}
		secrets.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		o.ByObject = map[client.Object]cache.ByObject{secrets: {Label: others}}
	}
	return o
}

// complementOf is a selector of exactly the objects sel does not select,
// nil when sel is nil or not a single requirement that can be turned
// around (In, =, Exists).
func complementOf(sel labels.Selector) labels.Selector {
	if sel == nil {
		return nil
	}
	reqs, ok := sel.Requirements()
	if !ok || len(reqs) != 1 {
		return nil
	}
	r := reqs[0]
	var (
		op   selection.Operator
		vals []string
	)
	switch r.Operator() {
	case selection.In, selection.Equals, selection.DoubleEquals:
		op, vals = selection.NotIn, r.Values().List()
	case selection.Exists:
		op = selection.DoesNotExist
	default:
		return nil
	}
	not, err := labels.NewRequirement(r.Key(), op, vals)
	if err != nil {
		return nil
	}
	return labels.NewSelector().Add(*not)
}

// secretMetadata reads the cached metadata of a Secret: from the manager's
// cache, or, for a Secret the credential cache selects (which the manager's
// cache then does not watch, see CacheOptions), from the credential cache.
type secretMetadata struct {
	metadata    client.Reader
	credentials client.Reader // nil without a credential cache
}

// Get reads a Secret's metadata into obj, a PartialObjectMetadata.
func (s secretMetadata) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := s.metadata.Get(ctx, key, obj, opts...)
	m, ok := obj.(*metav1.PartialObjectMetadata)
	if s.credentials == nil || !ok || !apierrors.IsNotFound(err) {
		return err
	}
	var sec corev1.Secret
	if err := s.credentials.Get(ctx, key, &sec, opts...); err != nil {
		return err
	}
	m.ObjectMeta = sec.ObjectMeta
	return nil
}

// List lists from the manager's cache only (nothing lists Secret
// metadata through it).
func (s secretMetadata) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	return s.metadata.List(ctx, list, opts...)
}

// newCredentialCache starts a cache of the Secrets sel selects, with their
// data (Options.CredentialSecrets), on every replica.
func newCredentialCache(mgr ctrl.Manager, namespaces []string, sel labels.Selector) (cache.Cache, error) {
	o := cache.Options{
		Scheme:                      mgr.GetScheme(),
		Mapper:                      mgr.GetRESTMapper(),
		HTTPClient:                  mgr.GetHTTPClient(),
		DefaultLabelSelector:        sel,
		DefaultTransform:            stripCredentialSecret,
		ReaderFailOnMissingInformer: true,
	}
	if len(namespaces) > 0 {
		o.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			o.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	c, err := cache.New(mgr.GetConfig(), o)
	if err != nil {
		return nil, err
	}
	// The Secret informer, made now, starts with the cache; reads wait for
	// its first list.
	if _, err := c.GetInformer(context.Background(), &corev1.Secret{}); err != nil {
		return nil, err
	}
	return c, mgr.Add(credentialCache{c})
}

// stripCredentialSecret keeps of a Secret what a load reads (see
// resolver.resolve): its identity and version, when it was created and last
// changed, its owners (a state Secret's), the opt-in label, its type and
// data. Annotations can hold the whole Secret again (kubectl's
// last-applied-configuration), other labels and managedFields are not
// needed: lastChanged reads only the newest managedFields time, which is
// kept as the one entry.
func stripCredentialSecret(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil
	}
	out := &corev1.Secret{
		TypeMeta: s.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: s.Name, Namespace: s.Namespace, UID: s.UID, ResourceVersion: s.ResourceVersion,
			CreationTimestamp: s.CreationTimestamp, DeletionTimestamp: s.DeletionTimestamp,
			OwnerReferences: s.OwnerReferences,
		},
		Type: s.Type,
		Data: s.Data,
	}
	switch v, ok := s.Labels[LabelCredential]; {
	case v == "true":
		out.Labels = credentialLabels
	case v == "state":
		out.Labels = stateLabels
	case ok:
		out.Labels = map[string]string{LabelCredential: v}
	}
	var newest *metav1.Time
	for _, mf := range s.ManagedFields {
		if mf.Time != nil && (newest == nil || mf.Time.After(newest.Time)) {
			newest = mf.Time
		}
	}
	if newest != nil {
		out.ManagedFields = []metav1.ManagedFieldsEntry{{Time: newest}}
	}
	return out, nil
}

// credentialLabels and stateLabels are the labels of the Secrets in the
// credential cache, shared by all of them (a map per Secret would be 3 MB
// at 10,000): what the cache holds is never modified, and reads get deep
// copies.
var (
	credentialLabels = map[string]string{LabelCredential: "true"}
	stateLabels      = map[string]string{LabelCredential: "state"}
)

// credentialCache runs on every replica, leading or not.
type credentialCache struct{ cache.Cache }

func (credentialCache) NeedLeaderElection() bool { return false }

// ClientOptions make Secret reads through the manager's client go to the API
// server, never to a cache, so nothing can start a full Secret informer by
// accident.
func ClientOptions() client.Options {
	return client.Options{Cache: &client.CacheOptions{DisableFor: []client.Object{&corev1.Secret{}}}}
}

func stripForCache(obj any) (any, error) {
	if pom, ok := obj.(*metav1.PartialObjectMetadata); ok {
		pom.Annotations = nil
	}
	// `kubectl apply` keeps a copy of the whole policy in an annotation:
	// nothing reads a policy's annotations, and at 10,000 policies the
	// copies would be megabytes.
	if p, ok := obj.(*authv1alpha1.RegistryAuthPolicy); ok && p.Annotations != nil {
		delete(p.Annotations, corev1.LastAppliedConfigAnnotation)
		if len(p.Annotations) == 0 {
			p.Annotations = nil
		}
	}
	if a, ok := obj.(metav1.ObjectMetaAccessor); ok {
		a.GetObjectMeta().SetManagedFields(nil)
	}
	return obj, nil
}

// SetupWithManager registers the loader with mgr. It runs on every replica
// (no leader election) and loads a policy when the policy's spec, one of its
// Secrets (a metadata-only watch) or a recovery resync says so.
func (l *PolicyLoader) SetupWithManager(mgr ctrl.Manager, credentials cache.Cache, maxConcurrent int) error {
	secretToPolicies := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
		return policiesReferencing(ctx, mgr.GetClient(), o)
	})
	b := ctrl.NewControllerManagedBy(mgr).
		Named("policy-loader").
		For(&authv1alpha1.RegistryAuthPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Secret{}, secretToPolicies, builder.OnlyMetadata).
		// CA bundles: metadata only too, so a changed bundle reloads its
		// issuers without the cluster's ConfigMaps held in memory.
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return policiesReferencingConfigMap(ctx, mgr.GetClient(), o)
		}), builder.OnlyMetadata)
	if credentials != nil {
		// The Secrets the metadata watch leaves to the credential cache.
		b = b.WatchesRawSource(source.Kind[client.Object](credentials, &corev1.Secret{}, secretToPolicies))
	}
	return b.
		WatchesRawSource(source.Channel(l.recovered, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{
			NeedLeaderElection:      ptr.To(false),
			MaxConcurrentReconciles: maxConcurrent,
			RateLimiter:             retryLimiter(),
		}).
		Complete(l)
}

// SetupWithManager registers the status reconciler with mgr. It runs on
// every replica but writes only while leading (see LeaderElector), so losing
// the lease never stops the process. A new leader, and the end of the first
// full load, bring every policy's status up to date.
func (s *StatusReconciler) SetupWithManager(mgr ctrl.Manager, maxConcurrent int) error {
	resync := make(chan event.GenericEvent)
	resyncAll := func() {
		var list authv1alpha1.RegistryAuthPolicyList
		if err := mgr.GetClient().List(context.Background(), &list); err != nil {
			return // the watches will catch up
		}
		for i := range list.Items {
			resync <- event.GenericEvent{Object: &list.Items[i]}
		}
	}
	s.leader.OnStartedLeading(func() { go resyncAll() })
	s.ready.whenReady(resyncAll)
	return ctrl.NewControllerManagedBy(mgr).
		Named("policy-status").
		For(&authv1alpha1.RegistryAuthPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(resync, &handler.EnqueueRequestForObject{})).
		// Status follows the loader, StatusDelay later: it reports what
		// was loaded.
		WatchesRawSource(source.Channel(s.loader.loaded, enqueueAfter(StatusDelay))).
		// A policy's hosts decide other policies' HostConflict condition.
		Watches(&authv1alpha1.RegistryAuthPolicy{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return policiesSharingHosts(ctx, mgr.GetClient(), o.(*authv1alpha1.RegistryAuthPolicy))
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WithOptions(controller.Options{
			NeedLeaderElection:      ptr.To(false),
			MaxConcurrentReconciles: maxConcurrent,
			RateLimiter:             retryLimiter(),
		}).
		Complete(s)
}
