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
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
	"github.com/registryauth/registry-auth-operator/test/utils"
)

// The tests of this package run the controllers against a real
// kube-apiserver and etcd (envtest), as a user that holds only the RBAC the
// manifests grant (config/rbac), so a missing permission fails here first.

var (
	testEnv     *envtest.Environment
	adminClient client.Client
	// managerConfig authenticates as the operator's user, bound to
	// config/rbac/role.yaml and the leader election Role.
	managerConfig *rest.Config
	// namespacedConfig authenticates as a user with no cluster-wide
	// binding: the leader election Role, and whatever RoleBindings of
	// config/rbac/role.yaml's ClusterRole a test creates (bindNamespaced),
	// as the Helm chart does with watchNamespaces.
	namespacedConfig *rest.Config
	kubeconfig       string // admin kubeconfig file for kubectl
	scheme           = runtime.NewScheme()
	nsCounter        atomic.Int64
)

const leaseNamespace = "registry-auth-system"

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(authv1alpha1.AddToScheme(scheme))
}

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true), zap.Level(zapcore.Level(zapLevel())), zap.StacktraceLevel(zapcore.PanicLevel)))
	testEnv = utils.NewEnvironment()
	cfg, err := testEnv.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		os.Exit(1)
	}
	code := 1
	func() {
		defer func() { _ = testEnv.Stop() }()
		if err := setupSuite(cfg); err != nil {
			fmt.Fprintln(os.Stderr, "setting up:", err)
			return
		}
		code = m.Run()
	}()
	os.Exit(code)
}

func zapLevel() int8 {
	if os.Getenv("TEST_VERBOSE") != "" {
		return -2 // debug
	}
	return 2 // errors only: tests provoke many expected problems
}

func setupSuite(cfg *rest.Config) error {
	ctx := context.Background()
	var err error
	adminClient, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	admin, err := testEnv.AddUser(envtest.User{Name: "test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "rap-controllers-")
	if err != nil {
		return err
	}
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return err
	}

	// The operator's identity, with the manifests' RBAC.
	const user = "registry-auth-manager"
	mu, err := testEnv.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		return err
	}
	managerConfig = mu.Config()
	nu, err := testEnv.AddUser(envtest.User{Name: namespacedUser}, nil)
	if err != nil {
		return err
	}
	namespacedConfig = nu.Config()
	if err := adminClient.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: leaseNamespace}}); err != nil {
		return err
	}
	var role rbacv1.ClusterRole
	if err := readYAML("config/rbac/role.yaml", &role); err != nil {
		return err
	}
	var leRole rbacv1.Role
	if err := readYAML("config/rbac/leader_election_role.yaml", &leRole); err != nil {
		return err
	}
	leRole.Namespace = leaseNamespace
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	// The install's binding of the issuer discovery role, to the suite's
	// users instead of the install's ServiceAccount.
	var discovery rbacv1.ClusterRoleBinding
	if err := readYAML("config/rbac/issuer_discovery_role_binding.yaml", &discovery); err != nil {
		return err
	}
	discovery.Subjects = append(slices.Clone(subject), rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: namespacedUser})
	for _, o := range []client.Object{
		&discovery,
		&role,
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "manager-rolebinding"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects:   subject,
		},
		&leRole,
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "leader-election-rolebinding", Namespace: leaseNamespace},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: leRole.Name},
			Subjects:   subject,
		},
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "leader-election-rolebinding-namespaced", Namespace: leaseNamespace},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: leRole.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: namespacedUser}},
		},
	} {
		if err := adminClient.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T: %w", o, err)
		}
	}
	return installStateSecretPolicy(ctx, mu.Config(), user, namespacedUser)
}

// installStateSecretPolicy creates config/rbac/state_secret_policy.yaml's
// ValidatingAdmissionPolicy and binding, bound to the suite's operator users
// instead of the install's ServiceAccount, and waits until the API server
// enforces it: every Secret the operator writes in these tests passes it.
func installStateSecretPolicy(ctx context.Context, operator *rest.Config, users ...string) error {
	b, err := os.ReadFile(filepath.Join(utils.RepoRoot(), "config", "rbac", "state_secret_policy.yaml"))
	if err != nil {
		return err
	}
	const installUser = "request.userInfo.username == 'system:serviceaccount:registry-auth-system:registry-auth-controller-manager'"
	if !bytes.Contains(b, []byte(installUser)) {
		return fmt.Errorf("config/rbac/state_secret_policy.yaml does not match %q", installUser)
	}
	b = bytes.Replace(b, []byte(installUser), []byte("request.userInfo.username in ['"+strings.Join(users, "', '")+"']"), 1)
	parts := strings.Split(string(b), "\n---\n")
	if len(parts) != 2 {
		return fmt.Errorf("config/rbac/state_secret_policy.yaml: %d documents, want 2", len(parts))
	}
	var vap admissionregistrationv1.ValidatingAdmissionPolicy
	var binding admissionregistrationv1.ValidatingAdmissionPolicyBinding
	if err := yaml.UnmarshalStrict([]byte(parts[0]), &vap); err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict([]byte(parts[1]), &binding); err != nil {
		return err
	}
	for _, o := range []client.Object{&vap, &binding} {
		if err := adminClient.Create(ctx, o); err != nil {
			return fmt.Errorf("creating %T: %w", o, err)
		}
	}
	c, err := client.New(operator, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		probe := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: leaseNamespace, Name: "admission-probe"}}
		err := c.Create(ctx, probe, client.DryRunAll)
		if err != nil && strings.Contains(err.Error(), "writes only the rotation state Secrets") {
			return nil
		}
		if err != nil {
			return fmt.Errorf("probing the state Secret policy: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the state Secret policy was not enforced within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// namespacedUser is namespacedConfig's user.
const namespacedUser = "registry-auth-manager-namespaced"

// bindNamespaced grants namespacedUser config/rbac/role.yaml's ClusterRole
// in ns only (a RoleBinding).
func bindNamespaced(t *testing.T, ns string) {
	t.Helper()
	var role rbacv1.ClusterRole
	if err := readYAML("config/rbac/role.yaml", &role); err != nil {
		t.Fatal(err)
	}
	rb := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "manager-rolebinding", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: namespacedUser}},
	}
	if err := adminClient.Create(context.Background(), rb); err != nil {
		t.Fatal(err)
	}
}

func readYAML(rel string, into any) error {
	b, err := os.ReadFile(filepath.Join(utils.RepoRoot(), rel))
	if err != nil {
		return err
	}
	return yaml.Unmarshal(b, into)
}

// manager is one running operator replica (without the HTTP servers: tests
// call the store, as the handler does).
type manager struct {
	name   string
	leader *LeaderElector
	store  *policy.Store
	ready  func() error
	mgr    ctrl.Manager
	cancel context.CancelFunc
	done   chan error
}

type managerOpts struct {
	name        string
	leaderElect bool
	namespaces  []string
	// namespacedRBAC runs the manager as namespacedUser.
	namespacedRBAC bool
	// requests, if set, records every request the manager sends to the
	// API server.
	requests *requestLog
	// targets are the URLs policies may name.
	targets TargetRules
	// grants are the host grants; nil grants every host to every
	// namespace.
	grants *HostGrants
	// credentials is Options.CredentialSecrets; nil means the default
	// (DefaultCredentialSecrets), as cmd/main.go runs it.
	credentials labels.Selector
	// noCredentialCache runs without the credential Secret cache
	// (--credential-secret-selector="").
	noCredentialCache bool
}

// requestLog records API requests: method, URL and Accept header.
type requestLog struct {
	mu   sync.Mutex
	reqs []recordedRequest
}

type recordedRequest struct {
	method, accept string
	url            *url.URL
	// code is the answer's status code, 0 when there was none.
	code int
}

func (l *requestLog) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(r)
		rec := recordedRequest{method: r.Method, accept: r.Header.Get("Accept"), url: r.URL}
		if resp != nil {
			rec.code = resp.StatusCode
		}
		l.mu.Lock()
		l.reqs = append(l.reqs, rec)
		l.mu.Unlock()
		return resp, err
	})
}

// take returns the requests recorded so far and forgets them.
func (l *requestLog) take() []recordedRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.reqs
	l.reqs = nil
	return out
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// startManager runs a manager like cmd/main.go does, as the operator's user.
func startManager(t *testing.T, o managerOpts) *manager {
	t.Helper()
	if o.name == "" {
		o.name = "manager"
	}
	cfg := rest.CopyConfig(managerConfig)
	if o.namespacedRBAC {
		cfg = rest.CopyConfig(namespacedConfig)
	}
	cfg.UserAgent = o.name // shows in managedFields: who wrote what
	cfg.QPS, cfg.Burst = 200, 400
	if o.requests != nil {
		cfg.Wrap(o.requests.wrap)
	}
	health := NewWatchHealth()
	credentials := o.credentials
	switch {
	case o.noCredentialCache:
		credentials = nil
	case credentials == nil:
		credentials = DefaultCredentialSecrets()
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Cache:                  CacheOptions(o.namespaces, health, credentials),
		Client:                 ClientOptions(),
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	var leader *LeaderElector
	if o.leaderElect {
		leader, err = NewLeaderElector(cfg, leaseNamespace, "registry-auth-operator.registryauth.io",
			LeaderTiming{LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: 500 * time.Millisecond},
			ctrl.Log.WithName(o.name))
		if err != nil {
			t.Fatal(err)
		}
	}
	store := policy.NewStore(policy.StoreOptions{})
	grants, _ := ParseHostGrants("*=*")
	if o.grants != nil {
		grants = *o.grants
	}
	check, err := Setup(mgr, Options{Store: store, Issuers: jwt.NewIssuers(nil), Targets: o.targets, HostGrants: grants, EventRecorderName: "registry-auth-operator",
		Leader: leader, WatchHealth: health, Namespaces: o.namespaces, CredentialSecrets: credentials})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &manager{name: o.name, leader: leader, store: store, mgr: mgr, cancel: cancel, done: make(chan error, 1),
		ready: func() error { return check(nil) }}
	go func() { m.done <- mgr.Start(ctx) }()
	t.Cleanup(m.stop)
	return m
}

func (m *manager) stop() {
	if m.cancel == nil {
		return
	}
	m.cancel()
	m.cancel = nil
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		panic("manager did not stop")
	}
}

func (m *manager) isLeader() bool { return m.leader != nil && m.leader.IsLeader() }

// decide asks the manager's store, as the auth handler does.
func (m *manager) decide(ns, name, path, token string) policy.Decision {
	req := &check.Request{
		Policy: ns + "/" + name,
		Scheme: "http", Host: "registry.test", Path: path,
		Method: "GET",
	}
	if token != "" {
		req.Authorization = []string{"Bearer " + token}
	}
	return policy.Decide(context.Background(), m.store.Load(), req, time.Now())
}

func (m *manager) allows(ns, name, token string) bool {
	return m.decide(ns, name, "/api/servers", token).Allowed()
}

// newNamespace makes a fresh namespace for one test.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := fmt.Sprintf("t%d-%s", nsCounter.Add(1), strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")))
	if len(ns) > 60 {
		ns = ns[:60]
	}
	ns = strings.TrimRight(strings.ReplaceAll(ns, "_", "-"), "-")
	if err := adminClient.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// kubectl runs the locally built kubectl against envtest as admin.
func kubectl(t *testing.T, stdin string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(utils.KubectlPath(), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// randomToken returns a fresh 64-hex-digit token.
func randomToken(t testing.TB) string {
	t.Helper()
	return rand.Text() + rand.Text()
}
