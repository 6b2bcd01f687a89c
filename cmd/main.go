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

// Command registry-auth is the auth service that ingress-nginx calls through
// auth-url, and the operator that feeds it from RegistryAuthPolicy objects and
// their Secrets. With --standalone it runs without Kubernetes, configured
// from the environment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
	"github.com/registryauth/registry-auth-operator/authserver"
	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
	"github.com/registryauth/registry-auth-operator/authserver/frontend"
	"github.com/registryauth/registry-auth-operator/authserver/frontend/extauthz"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
	"github.com/registryauth/registry-auth-operator/controllers"
	"github.com/registryauth/registry-auth-operator/standalone"
)

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(authv1alpha1.AddToScheme(scheme))
}

type options struct {
	metricsAddr   string
	probeAddr     string
	pprofAddr     string
	authAddr      string
	grpcAddr      string
	leaderElect   bool
	leaderNS      string
	leaderID      string
	standalone    bool
	namespaces    string
	credSelector  string
	apiQPS        float64
	apiBurst      int
	shutdownGrace time.Duration
	shutdownDelay time.Duration
	trusted       string
	maxFailures   int
	maxIdleConns  int
	// Operator mode: which URLs policies may name.
	insecureLoopback bool
	delegateHosts    string
	hostGrants       string
	failureWindow    time.Duration
}

func main() {
	gc := applyGCSettings(os.LookupEnv)
	var o options
	flag.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "Address of the Prometheus metrics endpoint. \"0\" disables it.")
	flag.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz probes.")
	flag.StringVar(&o.pprofAddr, "pprof-bind-address", "0", "Address of the Go profiler (/debug/pprof/), for diagnosis only: keep it on 127.0.0.1. \"0\" disables it.")
	flag.StringVar(&o.authAddr, "auth-bind-address", ":8888", "Address of the auth service (/validate).")
	flag.StringVar(&o.grpcAddr, "grpc-auth-bind-address", "0", "Address of the auth service's Envoy gRPC ext_authz (envoy.service.auth.v3.Authorization/Check, with gRPC health checking); \"0\" disables it. The manifests and the Helm chart set :9191.")
	flag.BoolVar(&o.leaderElect, "leader-elect", false, "Elect a leader among replicas; only the leader writes status, events and rotation state. Every replica serves and loads config, leader or not, and keeps serving when the lease is lost.")
	flag.StringVar(&o.leaderID, "leader-election-id", "registry-auth-operator.registryauth.io", "Name of the leader election Lease; give each install in a namespace its own.")
	flag.StringVar(&o.leaderNS, "leader-election-namespace", "", "Namespace of the leader election Lease; defaults to the pod's namespace in a cluster.")
	flag.BoolVar(&o.standalone, "standalone", false, "Run without Kubernetes, configured from the environment (REGISTRY_STATIC_TOKEN_AUTH_ENABLED, REGISTRY_API_TOKEN, ...).")
	flag.StringVar(&o.namespaces, "namespace", "", "Comma-separated namespaces to watch for policies and their Secrets; empty watches all.")
	flag.StringVar(&o.credSelector, "credential-secret-selector", controllers.DefaultCredentialSecretSelector, "Label selector of the Secrets whose data the operator caches (a list and a watch instead of a read per policy load; 10,000 policies are ready in seconds instead of tens of seconds): by default the Secrets opted in as credentials and the operator's rotation state Secrets. Only Secrets it selects are held in memory: select credential Secrets only. A Secret it does not select is read from the API server when a policy is loaded, and refused unless opted in. Empty: no cache, every Secret is read from the API server.")
	flag.Float64Var(&o.apiQPS, "kube-api-qps", 500, "Client-side limit of queries per second to the Kubernetes API server (each policy load reads its Secrets directly; the server protects itself with API Priority and Fairness).")
	flag.IntVar(&o.apiBurst, "kube-api-burst", 1000, "Client-side burst of queries to the Kubernetes API server.")
	flag.DurationVar(&o.shutdownGrace, "shutdown-grace-period", 10*time.Second, "How long to drain in-flight auth requests on shutdown.")
	flag.DurationVar(&o.shutdownDelay, "shutdown-delay", 0, "How long the auth service keeps accepting requests after SIGTERM, while the endpoint is removed from the Service, before it drains (the Deployment sets 5s).")
	flag.StringVar(&o.trusted, "trusted-proxies", defaultTrusted(), "Comma-separated CIDRs of proxies whose X-Real-IP / X-Forwarded-For name the client (for the failure limit) and whose X-Forwarded-* headers describe the request (Traefik /forward-auth); other peers count as the client themselves.")
	flag.IntVar(&o.maxFailures, "max-auth-failures", 10, "Failed static token / API key attempts allowed per client per --auth-failure-window before its attempts are refused uncompared; 0 disables the limit.")
	flag.DurationVar(&o.failureWindow, "auth-failure-window", time.Minute, "Window of --max-auth-failures.")
	flag.BoolVar(&o.insecureLoopback, "allow-insecure-loopback", false, "Operator mode: allow policies to name plain http:// OIDC issuers and delegates on loopback addresses (tests, make run). Otherwise issuers must be https.")
	flag.StringVar(&o.hostGrants, "host-grants", "", "Operator mode: which namespaces' policies may answer for which hosts on plain /validate: NAMESPACE=HOST[,HOST...][;...], * for any namespace or host, *.example.com for any host under it. Among the policies a host is granted to, the oldest answers. Empty grants none (policies are then chosen by name only: /validate/<namespace>/<name>).")
	flag.StringVar(&o.delegateHosts, "allowed-delegate-hosts", "", "Operator mode: comma-separated hosts (host or host:port; *.suffix for any host under it) that policies may name as spec.delegate.url. Empty: no delegate is allowed.")
	flag.IntVar(&o.maxIdleConns, "max-idle-connections", authserver.DefaultMaxIdleConns, "Idle keep-alive connections the auth service keeps at most (under 20 KiB each); past that the one idle longest is closed.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()

	log := zap.New(zap.UseFlagOptions(&zapOpts))
	ctrl.SetLogger(log)
	for _, p := range gc.Problems {
		log.Error(nil, "garbage collector setting ignored", "problem", p)
	}
	log.Info("garbage collector", "gogc", gc.Percent, "gogcFrom", gc.PercentFrom, "memoryLimitBytes", gc.MemoryLimit, "memoryLimitFrom", gc.MemoryLimitFrom)
	ctx := ctrl.SetupSignalHandler()

	var err error
	if o.standalone {
		err = runStandalone(ctx, o, log.WithName("standalone"))
	} else {
		err = runOperator(ctx, o, log)
	}
	if err != nil {
		log.Error(err, "exiting")
		os.Exit(1)
	}
}

// authRunnable serves the auth check. It is a manager runnable that needs no
// leader election: every replica answers.
type authRunnable struct {
	what   string
	server *http.Server
	delay  time.Duration // keep serving this long after ctx ends
	// sanitize: the auth service answers only 200/401/403, even to
	// requests with control bytes (see authserver.SanitizeListener).
	sanitize bool
	grace    time.Duration
	log      logr.Logger
}

func (a *authRunnable) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.server.Addr)
	if err != nil {
		return fmt.Errorf("%s: %w", a.what, err)
	}
	if a.sanitize {
		ln = authserver.SanitizeListener(ln)
	}
	a.log.Info(a.what+" listening", "address", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- a.server.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	if a.delay > 0 {
		// Endpoints of a terminating pod are removed asynchronously; until
		// the ingress stops sending here, keep answering.
		a.log.Info("shutting down: still serving while the endpoint is removed", "delay", a.delay)
		time.Sleep(a.delay)
	}
	sctx, cancel := context.WithTimeout(context.Background(), a.grace)
	defer cancel()
	if err := a.server.Shutdown(sctx); err != nil {
		// Requests still in flight after the grace period (a JWKS fetch
		// from a slow IdP): cut them and exit normally, saying so; a
		// shutdown that was asked for is not a failure of the process.
		a.log.Error(err, a.what+": requests still in flight after the shutdown grace period; closing their connections", "grace", a.grace)
		return a.server.Close()
	}
	return nil
}

func (a *authRunnable) NeedLeaderElection() bool { return false }

// newAuthRunnables returns the auth service's servers: HTTP (every HTTP
// front-end) and, with --grpc-auth-bind-address, Envoy's gRPC ext_authz,
// both deciding with one Checker (one failure limit, one set of metrics).
func newAuthRunnables(o options, store *policy.Store, log logr.Logger) ([]manager.Runnable, error) {
	m := authserver.NewMetrics()
	if err := m.Register(metrics.Registry); err != nil {
		return nil, err
	}
	store.OnPublish(m.ObserveSnapshot)
	m.ObserveSnapshot(store.Load())
	trusted, err := frontend.ParsePrefixes(o.trusted)
	if err != nil {
		return nil, fmt.Errorf("--trusted-proxies: %w", err)
	}
	opts := authserver.HandlerOptions{
		Log:            log.WithName("validate"),
		Observer:       m,
		TrustedProxies: trusted,
		ClientIP:       frontend.ClientIPFunc(trusted),
		Failures:       authserver.NewFailureLimiter(authserver.FailureLimitOptions{MaxFailures: o.maxFailures, Window: o.failureWindow}),
		Delegator:      authserver.NewDelegator(m.ObserveDelegated),
	}
	checker := authserver.NewChecker(store, opts)
	h := authserver.NewHandlerFor(checker, opts)
	srv := authserver.NewServer(o.authAddr, h)
	conns := authserver.NewConnTracker(o.maxIdleConns)
	if err := conns.Register(metrics.Registry); err != nil {
		return nil, err
	}
	conns.Track(srv)
	srv.ErrorLog = nil
	out := []manager.Runnable{&authRunnable{what: "auth service", server: srv, delay: o.shutdownDelay, grace: o.shutdownGrace, sanitize: true, log: log}}
	if o.grpcAddr != "" && o.grpcAddr != "0" {
		gs, hs := extauthz.NewServer(extauthz.NewService(checker, trusted))
		out = append(out, &grpcRunnable{addr: o.grpcAddr, server: gs, health: hs, delay: o.shutdownDelay, grace: o.shutdownGrace, log: log})
	}
	return out, nil
}

// grpcRunnable serves Envoy's gRPC ext_authz; like authRunnable it needs no
// leader election.
type grpcRunnable struct {
	addr   string
	server *grpc.Server
	health *health.Server
	delay  time.Duration
	grace  time.Duration
	log    logr.Logger
}

func (g *grpcRunnable) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		return fmt.Errorf("gRPC ext_authz: %w", err)
	}
	g.log.Info("gRPC ext_authz listening", "address", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- g.server.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// NOT_SERVING first: a proxy that health-checks over gRPC stops
	// sending while the endpoint is removed; checks still get answers.
	g.health.Shutdown()
	if g.delay > 0 {
		time.Sleep(g.delay)
	}
	done := make(chan struct{})
	go func() { g.server.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(g.grace):
		g.log.Error(nil, "gRPC ext_authz: checks still in flight after the shutdown grace period; closing their connections", "grace", g.grace)
		g.server.Stop()
	}
	return nil
}

func (g *grpcRunnable) NeedLeaderElection() bool { return false }

func runOperator(ctx context.Context, o options, log logr.Logger) error {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.QPS = float32(o.apiQPS)
	cfg.Burst = o.apiBurst
	var namespaces []string
	for _, ns := range strings.Split(o.namespaces, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			namespaces = append(namespaces, ns)
		}
	}
	health := controllers.NewWatchHealth()
	var credentials labels.Selector
	if o.credSelector != "" {
		if credentials, err = labels.Parse(o.credSelector); err != nil {
			return fmt.Errorf("--credential-secret-selector: %w", err)
		}
		if credentials.Empty() {
			return fmt.Errorf("--credential-secret-selector %q selects every Secret", o.credSelector)
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress: o.probeAddr,
		PprofBindAddress:       o.pprofAddr,
		// Leader election is the controllers' own (controllers.LeaderElector):
		// the manager's would stop the whole process, auth service included,
		// when the lease is lost.
		LeaderElection:          false,
		Cache:                   controllers.CacheOptions(namespaces, health, credentials),
		Client:                  controllers.ClientOptions(),
		GracefulShutdownTimeout: ptrDuration(o.shutdownDelay + o.shutdownGrace + 5*time.Second),
	})
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	var leader *controllers.LeaderElector
	if o.leaderElect {
		leader, err = controllers.NewLeaderElector(cfg, o.leaderNS, o.leaderID,
			controllers.DefaultLeaderTiming, log.WithName("leader-election"))
		if err != nil {
			return err
		}
	}
	grants, err := controllers.ParseHostGrants(o.hostGrants)
	if err != nil {
		return fmt.Errorf("--host-grants: %w", err)
	}
	if grants.Empty() {
		log.Info("no host is granted (--host-grants): policies are chosen by name only, /validate/<namespace>/<name>; plain /validate answers no_policy")
	}
	store := policy.NewStore(policy.StoreOptions{})
	readyCheck, err := controllers.Setup(mgr, controllers.Options{
		Store:             store,
		Issuers:           jwt.NewIssuers(nil),
		Targets:           controllers.TargetRules{AllowLoopbackHTTP: o.insecureLoopback, DelegateHosts: splitComma(o.delegateHosts)},
		HostGrants:        grants,
		Leader:            leader,
		WatchHealth:       health,
		Namespaces:        namespaces,
		CredentialSecrets: credentials,
	})
	if err != nil {
		return fmt.Errorf("controllers: %w", err)
	}
	auth, err := newAuthRunnables(o, store, log)
	if err != nil {
		return err
	}
	for _, r := range auth {
		if err := mgr.Add(r); err != nil {
			return err
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("config", readyCheck); err != nil {
		return err
	}
	log.Info("starting operator and auth service", "auth", o.authAddr, "grpc", o.grpcAddr, "namespaces", namespaces, "leaderElection", o.leaderElect)
	return mgr.Start(ctx)
}

func defaultTrusted() string {
	var s []string
	for _, p := range frontend.DefaultTrustedProxies {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}

func ptrDuration(d time.Duration) *time.Duration { return &d }

// runStandalone serves the auth check configured from the environment, with
// probes and metrics, and no Kubernetes.
func runStandalone(ctx context.Context, o options, log logr.Logger) error {
	env, err := standalone.ParseEnv(os.Getenv)
	if err != nil {
		return fmt.Errorf("bad environment: %w", err)
	}
	store := policy.NewStore(policy.StoreOptions{SelectOnlyPolicy: true})
	auth, err := newAuthRunnables(o, store, log)
	if err != nil {
		return err
	}
	sa := standalone.NewLoader(env, store, jwt.NewIssuers(nil), log, policy.CompileOptions{})
	if err := sa.Start(ctx); err != nil {
		return fmt.Errorf("bad configuration: %w", err)
	}
	metrics.Registry.MustRegister(sa.Collectors()...)
	go sa.Run(ctx)

	servers := auth
	if o.probeAddr != "" && o.probeAddr != "0" {
		mux := http.NewServeMux()
		ok := func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) }
		mux.HandleFunc("/healthz", ok)
		// Ready once Start has loaded the configuration, until a read of
		// the secret files hangs or a reloaded secret is unusable.
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			if err := sa.Ready(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok"))
		})
		servers = append(servers, &authRunnable{what: "health probes", server: plainServer(o.probeAddr, mux), grace: time.Second, log: log})
	}
	if o.metricsAddr != "" && o.metricsAddr != "0" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{}))
		servers = append(servers, &authRunnable{what: "metrics", server: plainServer(o.metricsAddr, mux), grace: time.Second, log: log})
	}
	if o.pprofAddr != "" && o.pprofAddr != "0" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		srv := plainServer(o.pprofAddr, mux)
		srv.WriteTimeout = 0 // a CPU profile or trace takes as long as asked
		servers = append(servers, &authRunnable{what: "pprof", server: srv, grace: time.Second, log: log})
	}
	// Run every server; when one fails, stop the others.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s.Start(ctx) }()
	}
	var errs []error
	for range servers {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
			cancel()
		}
	}
	return errors.Join(errs...)
}

func plainServer(addr string, h http.Handler) *http.Server {
	return &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
}

// splitComma splits a comma-separated flag value, dropping empty entries.
func splitComma(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
