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

// Package install checks what users install: dist/install.yaml (make
// build-installer), the Helm chart in dist/chart and config/samples. Against
// a local control plane (envtest, with the project's CRDs and the ingress
// controllers' from bin/crds) it applies them with the locally built kubectl
// (server-side dry runs for the installs, real applies for the samples), and
// it fails when dist/ drifts from config/: install.yaml not regenerated, the
// chart's CRD, RBAC, Deployment or object set different from config/default's.
//
// Needs `make envtest helm crds` (make test runs them).
package install

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/registryauth/registry-auth-operator/controllers"
	"github.com/registryauth/registry-auth-operator/test/utils"
)

const (
	// The release name that gives the chart's objects the kustomize install's
	// names (config/default's namePrefix "registry-auth-").
	releaseName = "registry-auth"
	// config/default's namespace.
	installNamespace = "registry-auth-system"
	// The namespace the chart renders are dry-run into.
	chartNamespace = "registry-auth-chart"
	// The field manager of every apply.
	fieldManager = "install-test"
)

var (
	root       string // repository root
	kubeconfig string // admin kubeconfig of the test control plane
	kubectlBin string
	helmBin    string
	// adminConfig is the control plane's admin (envtest's own user).
	adminConfig *rest.Config
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "test/install: "+format+"\n", args...)
		return 1
	}
	var err error
	if root, err = utils.FindRepoRoot(); err != nil {
		return fail("%v", err)
	}
	if _, err := utils.FindBinaryAssetsDir(); err != nil {
		return fail("%v", err) // says to run `make envtest`
	}
	kubectlBin = utils.KubectlPath()
	helmBin = filepath.Join(root, "bin", "helm")
	if _, err := os.Stat(helmBin); err != nil {
		return fail("%s not found: run `make helm` in the repository root (builds bin/helm from hack/tools)", helmBin)
	}
	crdDir := filepath.Join(root, "bin", "crds")
	if found, _ := filepath.Glob(filepath.Join(crdDir, "*.yaml")); len(found) == 0 {
		return fail("no CRDs in %s: run `make crds` in the repository root (Traefik, Envoy Gateway, Gateway API CRDs for the samples)", crdDir)
	}

	env := utils.NewEnvironment()
	env.CRDDirectoryPaths = append(env.CRDDirectoryPaths, crdDir)
	if extra := os.Getenv(extraCRDsEnv); extra != "" {
		env.CRDDirectoryPaths = append(env.CRDDirectoryPaths, extra)
	}
	start := time.Now()
	if _, err := env.Start(); err != nil {
		return fail("starting envtest: %v", err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "test/install: stopping envtest: %v\n", err)
		}
	}()
	adminConfig = env.Config
	fmt.Fprintf(os.Stderr, "test/install: control plane with %d CRDs started in %v\n",
		len(env.CRDs), time.Since(start).Round(time.Millisecond))

	admin, err := env.AddUser(envtest.User{Name: "install-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fail("adding the admin user: %v", err)
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		return fail("admin kubeconfig: %v", err)
	}
	dir, err := os.MkdirTemp("", "rap-install-")
	if err != nil {
		return fail("%v", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return fail("%v", err)
	}
	return m.Run()
}

// ---------------------------------------------------------------------------
// 1. dist/install.yaml is accepted by the API server.

// TestInstallYAMLServerDryRun applies dist/install.yaml as a server-side dry
// run. A dry run creates nothing, so the objects in the file's Namespace
// would be refused ("namespace not found"): the file's Namespace objects are
// applied for real first, then the whole file, Namespaces included, is dry
// run. The file must be self-contained: every namespaced object is in one of
// its Namespaces.
func TestInstallYAMLServerDryRun(t *testing.T) {
	data := readRepoFile(t, "dist/install.yaml")
	docs := parseDocs(t, data, "dist/install.yaml")

	var namespaces []object
	nsNames := map[string]bool{}
	for _, o := range docs {
		if o.kind() == "Namespace" {
			namespaces = append(namespaces, o)
			nsNames[o.name()] = true
		}
	}
	if !nsNames[installNamespace] {
		t.Fatalf("dist/install.yaml has no Namespace %s (has %v)", installNamespace, keys(nsNames))
	}
	for _, o := range docs {
		if ns := o.namespace(); ns != "" && !nsNames[ns] {
			t.Errorf("%s is in namespace %q, which dist/install.yaml does not create", o.id(), ns)
		}
	}
	applyObjects(t, namespaces...)

	out := serverDryRun(t, data, len(docs))
	t.Logf("dist/install.yaml: %d objects accepted (server dry run):\n%s", len(docs), out)
}

// ---------------------------------------------------------------------------
// 2. Every sample applies for real.

// extraCRDsEnv names a directory of CRDs that `make crds` cannot provide:
// their projects' modules are refused by the Go module proxy (403), and
// their files are not committed here. The samples that need them are
// skipped without it.
const extraCRDsEnv = "RAP_EXTRA_CRDS"

// samplesNeedingExtraCRDs are those samples, with whose CRDs they need.
var samplesNeedingExtraCRDs = map[string]string{
	"kgateway-gatewayextension.yaml":             "kgateway's GatewayExtension and TrafficPolicy (github.com/kgateway-dev/kgateway/v2)",
	"nginx-ingress-controller-externalauth.yaml": "F5 NGINX Ingress Controller's Policy and VirtualServer (github.com/nginx/kubernetes-ingress, config/crd/bases)",
}

// TestSamplesApply applies every YAML file in config/samples (but
// kustomization.yaml) for real, each after creating the namespaces its
// objects name (objects without one go to "default"), and reads the objects
// back. The Traefik, Envoy Gateway and Gateway API samples need the CRDs from
// bin/crds.
func TestSamplesApply(t *testing.T) {
	dir := filepath.Join(root, "config", "samples")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || name == "kustomization.yaml" || name == "kustomization.yml" {
			continue
		}
		if strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml") {
			files = append(files, filepath.Join(dir, name))
		}
	}
	sort.Strings(files)
	if len(files) == 0 {
		t.Fatalf("no samples in %s", dir)
	}
	policies := 0
	for _, file := range files {
		rel, _ := filepath.Rel(root, file)
		t.Run(filepath.Base(file), func(t *testing.T) {
			if crds, ok := samplesNeedingExtraCRDs[filepath.Base(file)]; ok && os.Getenv(extraCRDsEnv) == "" {
				t.Skipf("needs %s, which the Go module proxy does not serve: set %s to a directory holding them", crds, extraCRDsEnv)
			}
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			docs := parseDocs(t, data, rel)
			if len(docs) == 0 {
				t.Fatalf("%s holds no object", rel)
			}
			created := map[string]bool{}
			for _, o := range docs {
				if o.kind() == "RegistryAuthPolicy" {
					policies++
				}
				if o.kind() == "Namespace" {
					created[o.name()] = true
				}
			}
			var nss []object
			for _, o := range docs {
				if ns := o.namespace(); ns != "" && ns != "default" && !created[ns] {
					created[ns] = true
					nss = append(nss, namespaceObject(ns))
				}
			}
			applyObjects(t, nss...)

			out, err := kubectl(nil, "apply", "--server-side", "--field-manager="+fieldManager, "-f", file)
			if err != nil {
				t.Fatalf("kubectl apply --server-side -f %s: %v\n%s", rel, err, out)
			}
			t.Logf("kubectl apply -f %s:\n%s", rel, out)
			got, err := kubectl(nil, "get", "-f", file, "-o", "name")
			if err != nil {
				t.Fatalf("kubectl get -f %s: %v\n%s", rel, err, got)
			}
			if n := len(nonEmptyLines(got)); n != len(docs) {
				t.Errorf("kubectl get -f %s found %d objects, want %d:\n%s", rel, n, len(docs), got)
			}
		})
	}
	if policies == 0 {
		t.Errorf("no RegistryAuthPolicy among the samples %v", files)
	}
}

// wantPorts checks the auth Service's ports and the auth NetworkPolicy's:
// exactly the named ones, with these numbers.
func wantPorts(t *testing.T, docs []object, want map[string]int) {
	t.Helper()
	var numbers []any
	for _, n := range want {
		numbers = append(numbers, float64(n))
	}
	for _, o := range docs {
		switch {
		case o.kind() == "Service" && strings.HasSuffix(o.name(), "-auth-service"):
			got := map[string]int{}
			for _, p := range o.list("spec", "ports") {
				m, _ := p.(map[string]any)
				n, _ := m["port"].(float64)
				got[fmt.Sprint(m["name"])] = int(n)
				if m["name"] == "grpc" && m["appProtocol"] != "grpc" {
					t.Errorf("%s: the grpc port has appProtocol %v, want grpc", o.id(), m["appProtocol"])
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s ports %v, want %v", o.id(), got, want)
			}
		case o.kind() == "NetworkPolicy" && strings.HasSuffix(o.name(), "-allow-auth-from-ingress"):
			var got []any
			for _, p := range o.list("spec", "ingress", "0", "ports") {
				m, _ := p.(map[string]any)
				got = append(got, m["port"])
			}
			if len(got) != len(numbers) || !containsAll(got, numbers) {
				t.Errorf("%s admits ports %v, want %v", o.id(), got, numbers)
			}
		}
	}
}

func containsAll(have, want []any) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// 3. The Helm chart lints, renders, and its renders are accepted.

// valueSets are the chart values the tests render: the defaults, and a set
// that turns the optional objects off and sets every flag value.
var valueSets = []struct {
	name   string
	values string
	check  func(t *testing.T, docs []object)
}{
	{
		name: "defaults",
		check: func(t *testing.T, docs []object) {
			wantKinds(t, docs, "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding",
				"Role", "RoleBinding", "Service", "Service", "Deployment", "PodDisruptionBudget", "NetworkPolicy", "NetworkPolicy",
				"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
			args := managerArgs(t, docs)
			wantArgs(t, args, "--leader-elect", "--metrics-bind-address=:8080", "--auth-bind-address=:8888",
				"--grpc-auth-bind-address=:9191", "--zap-log-level=info", "--max-auth-failures=10")
			wantPorts(t, docs, map[string]int{"auth": 8888, "grpc": 9191})
			refuseArgPrefixes(t, args, "--namespace", "--trusted-proxies")
			for _, o := range docs {
				if o.kind() == "Deployment" {
					env := toJSON(o.get("spec", "template", "spec", "containers", "0", "env"))
					if want := `[{"name":"CONTAINER_MEMORY_LIMIT","valueFrom":{"resourceFieldRef":{"resource":"limits.memory"}}}]`; env != want {
						t.Errorf("env = %s, want %s", env, want)
					}
				}
			}
		},
	},
	{
		name: "restricted",
		values: `networkPolicy:
  enabled: false
metrics:
  enabled: false
grpc:
  enabled: false
watchNamespaces: [team-a, team-b]
logLevel: debug
trustedProxies: [10.0.0.0/8, 192.168.0.0/16]
maxAuthFailures: 0
crds:
  install: false
podDisruptionBudget:
  enabled: false
stateSecretPolicy:
  enabled: false
serviceAccountIssuerDiscovery:
  enabled: false
replicaCount: 3
extraEnv:
- name: GOGC
  value: "100"
- name: GOMEMLIMIT
  value: 200MiB
`,
		check: func(t *testing.T, docs []object) {
			// The manager's ClusterRole is bound in the watched namespaces
			// only: no ClusterRoleBinding.
			wantKinds(t, docs, "ServiceAccount", "ClusterRole",
				"Role", "RoleBinding", "RoleBinding", "RoleBinding", "Service", "Deployment")
			bound := map[string]bool{}
			for _, o := range docs {
				if o.kind() != "RoleBinding" || o.get("roleRef", "kind") != "ClusterRole" {
					continue
				}
				bound[o.namespace()] = true
				if sa := o.get("subjects", "0", "name"); sa != "registry-auth-controller-manager" {
					t.Errorf("%s binds %v, want the manager's ServiceAccount", o.id(), sa)
				}
			}
			if !bound["team-a"] || !bound["team-b"] || len(bound) != 2 {
				t.Errorf("the manager's ClusterRole is bound in %v, want team-a and team-b", keys(bound))
			}
			args := managerArgs(t, docs)
			wantArgs(t, args, "--leader-elect", "--metrics-bind-address=0", "--namespace=team-a,team-b",
				"--zap-log-level=debug", "--trusted-proxies=10.0.0.0/8,192.168.0.0/16", "--max-auth-failures=0")
			refuseArgPrefixes(t, args, "--grpc-auth-bind-address")
			wantPorts(t, docs, map[string]int{"auth": 8888})
			for _, o := range docs {
				if o.kind() == "Deployment" {
					env := toJSON(o.get("spec", "template", "spec", "containers", "0", "env"))
					if want := `[{"name":"CONTAINER_MEMORY_LIMIT","valueFrom":{"resourceFieldRef":{"resource":"limits.memory"}}},{"name":"GOGC","value":"100"},{"name":"GOMEMLIMIT","value":"200MiB"}]`; env != want {
						t.Errorf("env = %s, want %s", env, want)
					}
					if r := o.get("spec", "replicas"); r != float64(3) {
						t.Errorf("replicas = %v, want 3", r)
					}
					for _, p := range o.list("spec", "template", "spec", "containers", "0", "ports") {
						if m, _ := p.(map[string]any); m["name"] == "metrics" {
							t.Errorf("metrics disabled, yet the container has a metrics port: %v", m)
						}
					}
				}
			}
		},
	},
}

// TestHelmLint runs `helm lint --strict` with each value set.
func TestHelmLint(t *testing.T) {
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			args := []string{"lint", "--strict", filepath.Join(root, "dist", "chart")}
			args = append(args, valuesArgs(t, vs.values)...)
			out, err := helm(args...)
			if err != nil {
				t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}

// TestHelmTemplateServerDryRun renders the chart with each value set into a
// namespace that exists (created for real), checks what the values turn on
// and off, and applies the render as a server-side dry run.
func TestHelmTemplateServerDryRun(t *testing.T) {
	// The release's namespace, and the "restricted" set's watched ones.
	applyObjects(t, namespaceObject(chartNamespace), namespaceObject("team-a"), namespaceObject("team-b"))
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			data := helmTemplate(t, chartNamespace, vs.values)
			docs := parseDocs(t, data, "helm template ("+vs.name+")")
			for _, o := range docs {
				if o.kind() == "RoleBinding" && o.get("roleRef", "kind") == "ClusterRole" {
					continue // the manager's, in a watched namespace
				}
				if ns := o.namespace(); ns != "" && ns != chartNamespace {
					t.Errorf("%s is in namespace %q, want the release namespace %q", o.id(), ns, chartNamespace)
				}
			}
			vs.check(t, docs)
			out := serverDryRun(t, data, len(docs))
			t.Logf("chart (%s): %d objects accepted (server dry run):\n%s", vs.name, len(docs), out)
		})
	}
}

// TestHelmTemplateRefusesBadValues: values that would break the install fail
// the render instead.
func TestHelmTemplateRefusesBadValues(t *testing.T) {
	for _, tc := range []struct{ name, values, wantErr string }{
		{"replicas without leader election", "leaderElection:\n  enabled: false\n", "requires leaderElection.enabled"},
		{"network policy without ingress namespace", "networkPolicy:\n  ingressNamespace: \"\"\n", "networkPolicy.ingressNamespace is required"},
		{"no service account name", "serviceAccount:\n  create: false\n", "serviceAccount.name is required"},
		// values.schema.json
		{"misspelt key", "networkpolicy:\n  enabled: false\n", "additional properties 'networkpolicy' not allowed"},
		{"namespaces as a string", "watchNamespaces: team-a,team-b\n", "got string, want array"},
		{"negative failure limit", "maxAuthFailures: -1\n", "maxAuthFailures"},
		{"unknown log level", "logLevel: verbose\n", "logLevel"},
		{"lease name not a DNS name", "leaderElection:\n  id: Registry_Auth\n", "leaderElection"},
		{"an environment value that is not a string", "extraEnv:\n- name: GOGC\n  value: 100\n", "extraEnv"},
		{"a release name too long for the Service names", "fullnameOverride: registry-auth-operator-production\n", "fullnameOverride"},
		{"no peer for the metrics NetworkPolicy", "networkPolicy:\n  metricsNamespaceSelector: null\n", "metricsNamespaceSelector is required"},
		{"the metrics port on the health port", "metrics:\n  port: 8081\n", "must differ"},
		{"the auth and metrics ports equal", "auth:\n  port: 9000\nmetrics:\n  port: 9000\n", "must differ"},
		{"the gRPC port on the auth port", "grpc:\n  port: 8888\n", "must differ"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"template", releaseName, filepath.Join(root, "dist", "chart"), "--namespace", chartNamespace},
				valuesArgs(t, tc.values)...)
			out, err := helm(args...)
			if err == nil {
				t.Fatalf("helm template with %q rendered, want an error containing %q", tc.values, tc.wantErr)
			}
			if !strings.Contains(out, tc.wantErr) {
				t.Errorf("helm template with %q: error %q does not contain %q", tc.values, out, tc.wantErr)
			}
		})
	}
	// One replica without leader election is fine.
	docs := parseDocs(t, helmTemplate(t, chartNamespace, "replicaCount: 1\nleaderElection:\n  enabled: false\n"), "helm template")
	refuseArgPrefixes(t, managerArgs(t, docs), "--leader-elect")
	for _, o := range docs {
		if o.kind() == "Role" || o.kind() == "RoleBinding" {
			t.Errorf("leader election off, yet the chart renders %s", o.id())
		}
		// minAvailable 1 of one replica would block every node drain.
		if o.kind() == "PodDisruptionBudget" {
			t.Errorf("one replica, yet the chart renders %s", o.id())
		}
	}
}

// hostGrants and allowedDelegateHosts render as the flags the operator
// parses; unset, neither flag is passed (nothing granted, no delegate host
// allowed).
func TestHelmGrantsRenderAsFlags(t *testing.T) {
	refuseArgPrefixes(t, managerArgs(t, parseDocs(t, helmTemplate(t, chartNamespace, ""), "helm template")),
		"--host-grants", "--allowed-delegate-hosts")

	values := "hostGrants:\n" +
		"  default: [registry.example.com]\n" +
		"  team-b: [\"*.team-b.example.com\", api.example.com]\n" +
		"  \"*\": [shared.example.com]\n" +
		"allowedDelegateHosts: [auth-server.registry.svc, auth.example.com]\n"
	args := managerArgs(t, parseDocs(t, helmTemplate(t, chartNamespace, values), "helm template"))
	wantArgs(t, args, "--allowed-delegate-hosts=auth-server.registry.svc,auth.example.com")
	var flag string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--host-grants="); ok {
			flag = v
		}
	}
	if flag == "" {
		t.Fatalf("manager args %q lack --host-grants", args)
	}
	g, err := controllers.ParseHostGrants(flag)
	if err != nil {
		t.Fatalf("the operator refuses the rendered --host-grants=%s: %v", flag, err)
	}
	for _, tc := range []struct {
		ns, host string
		want     bool
	}{
		{"default", "registry.example.com", true},
		{"default", "api.example.com", false},
		{"team-b", "x.team-b.example.com", true},
		{"team-b", "api.example.com", true},
		{"team-b", "registry.example.com", false},
		{"team-c", "shared.example.com", true},
		{"team-c", "registry.example.com", false},
	} {
		if got := g.Allows(tc.ns, tc.host); got != tc.want {
			t.Errorf("--host-grants=%s: namespace %s host %s granted %v, want %v", flag, tc.ns, tc.host, got, tc.want)
		}
	}
}

// podLabels add to the pods' labels; they cannot change the ones the
// Deployment's selector matches (the API server would refuse it).
func TestHelmPodLabelsKeepTheSelector(t *testing.T) {
	docs := parseDocs(t, helmTemplate(t, chartNamespace, "podLabels:\n  control-plane: other\n  team: registry\n"), "helm template")
	n := 0
	for _, o := range docs {
		if o.kind() != "Deployment" {
			continue
		}
		n++
		labels, _ := o.get("spec", "template", "metadata", "labels").(map[string]any)
		selector, _ := o.get("spec", "selector", "matchLabels").(map[string]any)
		if labels["team"] != "registry" {
			t.Errorf("%s: pod labels %v lack podLabels' team", o.id(), labels)
		}
		for k, v := range selector {
			if labels[k] != v {
				t.Errorf("%s: pod label %s=%v, the selector wants %v", o.id(), k, labels[k], v)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d Deployments rendered, want 1", n)
	}
}

// Two releases in one namespace elect their leaders apart: each passes a
// Lease name of its own.
func TestHelmReleasesHaveTheirOwnLease(t *testing.T) {
	ids := map[string]string{}
	for _, release := range []string{"team-a", "team-b"} {
		out, err := helm("template", release, filepath.Join(root, "dist", "chart"), "--namespace", chartNamespace)
		if err != nil {
			t.Fatalf("helm template %s: %v\n%s", release, err, out)
		}
		for _, a := range managerArgs(t, parseDocs(t, []byte(out), "helm template "+release)) {
			if id, ok := strings.CutPrefix(a, "--leader-election-id="); ok {
				ids[release] = id
			}
		}
		if ids[release] == "" {
			t.Fatalf("release %s: no --leader-election-id", release)
		}
	}
	if ids["team-a"] == ids["team-b"] {
		t.Errorf("releases team-a and team-b share the Lease %q", ids["team-a"])
	}
	// leaderElection.id keeps a kustomize install's Lease.
	docs := parseDocs(t, helmTemplate(t, chartNamespace, "leaderElection:\n  id: registry-auth-operator.registryauth.io\n"), "helm template")
	wantArgs(t, managerArgs(t, docs), "--leader-election-id=registry-auth-operator.registryauth.io")
}

// ---------------------------------------------------------------------------
// 4. dist/ is what make build-installer makes from config/.

// TestInstallYAMLUpToDate regenerates dist/install.yaml the way make
// build-installer does (kustomize build config/default; kubectl's built-in
// kustomize, checked to be the Makefile's KUSTOMIZE_VERSION) and compares it
// with the committed file. The manager image may differ (a release sets IMG);
// nothing else may. It also checks that the chart's CRD copies
// (dist/chart/files/crds) are config/crd/bases' files.
func TestInstallYAMLUpToDate(t *testing.T) {
	const hint = "run `make build-installer` and commit dist/"

	want := regexp.MustCompile(`(?m)^KUSTOMIZE_VERSION \?= (\S+)$`).FindSubmatch(readRepoFile(t, "Makefile"))
	if want == nil {
		t.Fatal("no KUSTOMIZE_VERSION in the Makefile")
	}
	out, err := run(nil, kubectlBin, "version", "--client", "-o", "json")
	if err != nil {
		t.Fatalf("kubectl version: %v\n%s", err, out)
	}
	var v struct {
		Kustomize string `json:"kustomizeVersion"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("kubectl version: %v\n%s", err, out)
	}
	if v.Kustomize != string(want[1]) {
		t.Fatalf("kubectl's kustomize is %q, the Makefile's KUSTOMIZE_VERSION %q: this test regenerates "+
			"dist/install.yaml with kubectl kustomize, so they must be the same", v.Kustomize, want[1])
	}

	generated := kustomizeDefault(t)
	committed := readRepoFile(t, "dist/install.yaml")
	imageLine := regexp.MustCompile(`(?m)^(\s+image: )(\S+)$`)
	images := imageLine.FindAllSubmatch(committed, -1)
	if len(images) != 1 {
		t.Fatalf("dist/install.yaml has %d image lines, want 1 (the manager's)", len(images))
	}
	t.Logf("dist/install.yaml's image: %s", images[0][2])
	generated = imageLine.ReplaceAll(generated, []byte("${1}"+string(images[0][2])))
	if !bytes.Equal(generated, committed) {
		t.Errorf("dist/install.yaml differs from kustomize build config/default (%s):\n%s", hint, firstDiff(committed, generated))
	}

	bases := globRepo(t, "config/crd/bases/*.yaml")
	copies := globRepo(t, "dist/chart/files/crds/*.yaml")
	if len(bases) == 0 {
		t.Fatal("no CRDs in config/crd/bases")
	}
	if !slices.Equal(baseNames(bases), baseNames(copies)) {
		t.Fatalf("dist/chart/files/crds has %v, config/crd/bases %v (%s)", baseNames(copies), baseNames(bases), hint)
	}
	for i := range bases {
		a, b := readRepoFile(t, bases[i]), readRepoFile(t, copies[i])
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from %s (%s):\n%s", copies[i], bases[i], hint, firstDiff(b, a))
		}
	}
}

// ---------------------------------------------------------------------------
// 5. The chart's objects are config/default's.

// TestChartMatchesKustomize renders the chart with default values as release
// "registry-auth" in registry-auth-system, which gives its objects the
// kustomize install's names, and compares it with kustomize build
// config/default: the same objects (but the Namespace, which Helm leaves to
// --create-namespace), the same RBAC rules and bindings, the same CRD, and a
// Deployment with the same security contexts, resources, probes, ports,
// rollout and (a superset of the) flags.
func TestChartMatchesKustomize(t *testing.T) {
	kust := parseDocs(t, kustomizeDefault(t), "kustomize build config/default")
	chart := parseDocs(t, helmTemplate(t, installNamespace, ""), "helm template")
	for _, p := range chartDrift(kust, chart) {
		t.Error(p)
	}
}

// chartDrift lists the differences between the kustomize install and the
// chart render that matter.
func chartDrift(kust, chart []object) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	kustByID, chartByID := map[string]object{}, map[string]object{}
	for _, o := range kust {
		if o.kind() != "Namespace" {
			kustByID[o.id()] = o
		}
	}
	for _, o := range chart {
		chartByID[o.id()] = o
	}
	if a, b := keys(kustByID), keys(chartByID); !slices.Equal(a, b) {
		add("objects differ:\n  kustomize: %v\n  chart:     %v", a, b)
	}

	// RBAC: rules, and what the bindings bind.
	for id, k := range kustByID {
		c, ok := chartByID[id]
		if !ok {
			continue
		}
		switch k.kind() {
		case "ClusterRole", "Role":
			if !reflect.DeepEqual(k["rules"], c["rules"]) {
				add("%s rules differ (mirror config/rbac exactly):\n  kustomize: %s\n  chart:     %s", id, toJSON(k["rules"]), toJSON(c["rules"]))
			}
		case "ClusterRoleBinding", "RoleBinding":
			for _, f := range []string{"roleRef", "subjects"} {
				if !reflect.DeepEqual(k[f], c[f]) {
					add("%s %s differ:\n  kustomize: %s\n  chart:     %s", id, f, toJSON(k[f]), toJSON(c[f]))
				}
			}
		case "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
			if !reflect.DeepEqual(k["spec"], c["spec"]) {
				add("%s spec differs (mirror config/rbac/state_secret_policy.yaml exactly):\n  kustomize: %s\n  chart:     %s", id, toJSON(k["spec"]), toJSON(c["spec"]))
			}
		case "CustomResourceDefinition":
			if !reflect.DeepEqual(k["spec"], c["spec"]) {
				add("%s spec differs from config/crd/bases (run make build-installer)", id)
			}
		case "Service":
			if !reflect.DeepEqual(k.get("spec", "ports"), c.get("spec", "ports")) {
				add("%s ports differ:\n  kustomize: %s\n  chart:     %s", id, toJSON(k.get("spec", "ports")), toJSON(c.get("spec", "ports")))
			}
		case "PodDisruptionBudget":
			for _, f := range []string{"minAvailable", "maxUnavailable"} {
				if !reflect.DeepEqual(k.get("spec", f), c.get("spec", f)) {
					add("%s spec.%s: kustomize %v, chart %v", id, f, k.get("spec", f), c.get("spec", f))
				}
			}
		case "NetworkPolicy":
			for _, f := range []string{"policyTypes", "ingress", "egress"} {
				if !reflect.DeepEqual(k.get("spec", f), c.get("spec", f)) {
					add("%s spec.%s differs:\n  kustomize: %s\n  chart:     %s", id, f, toJSON(k.get("spec", f)), toJSON(c.get("spec", f)))
				}
			}
		case "Deployment":
			problems = append(problems, deploymentDrift(k, c)...)
		}
	}
	return problems
}

// deploymentDrift compares the chart's Deployment with the kustomize one.
// Labels differ (the chart adds app.kubernetes.io/instance to the selector),
// and the chart passes more flags (--zap-log-level, --max-auth-failures).
func deploymentDrift(k, c object) []string {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	same := func(what string, path ...string) {
		a, b := k.get(path...), c.get(path...)
		if !reflect.DeepEqual(a, b) {
			add("Deployment %s differs:\n  kustomize: %s\n  chart:     %s", what, toJSON(a), toJSON(b))
		}
	}
	same("replicas", "spec", "replicas")
	same("strategy", "spec", "strategy")
	pod := []string{"spec", "template", "spec"}
	same("pod securityContext", append(pod, "securityContext")...)
	same("terminationGracePeriodSeconds", append(pod, "terminationGracePeriodSeconds")...)
	// The same spread over zones, on the same labels but the chart's release
	// label, which kustomize's pods do not have.
	for _, tsc := range c.list(append(pod, "topologySpreadConstraints")...) {
		t, _ := tsc.(map[string]any)
		if m, ok := object(t).get("labelSelector", "matchLabels").(map[string]any); ok {
			delete(m, "app.kubernetes.io/instance")
		}
	}
	same("topologySpreadConstraints", append(pod, "topologySpreadConstraints")...)
	kc, cc := k.list(append(pod, "containers")...), c.list(append(pod, "containers")...)
	if len(kc) != len(cc) {
		add("Deployment has %d containers in the chart, %d in kustomize", len(cc), len(kc))
		return problems
	}
	for i := range kc {
		kcon, _ := kc[i].(map[string]any)
		ccon, _ := cc[i].(map[string]any)
		name := fmt.Sprint(kcon["name"])
		for _, f := range []string{"name", "image", "command", "env", "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe", "ports"} {
			if !reflect.DeepEqual(kcon[f], ccon[f]) {
				add("container %s: %s differs:\n  kustomize: %s\n  chart:     %s", name, f, toJSON(kcon[f]), toJSON(ccon[f]))
			}
		}
		chartArgs := map[string]bool{}
		for _, a := range asList(ccon["args"]) {
			chartArgs[fmt.Sprint(a)] = true
		}
		for _, a := range asList(kcon["args"]) {
			if !chartArgs[fmt.Sprint(a)] {
				add("container %s: the chart does not pass %v (kustomize does); chart args: %s", name, a, toJSON(ccon["args"]))
			}
		}
	}
	return problems
}

// ---------------------------------------------------------------------------
// 6. Every container is hardened, bounded and probed.

// TestContainersHardened checks every container of dist/install.yaml and of
// the chart's renders.
func TestContainersHardened(t *testing.T) {
	sources := map[string][]object{
		"dist/install.yaml": parseDocs(t, readRepoFile(t, "dist/install.yaml"), "dist/install.yaml"),
	}
	for _, vs := range valueSets {
		name := "chart (" + vs.name + ")"
		sources[name] = parseDocs(t, helmTemplate(t, chartNamespace, vs.values), name)
	}
	for name, docs := range sources {
		problems, containers := hardeningProblems(docs)
		if containers == 0 {
			t.Errorf("%s: no container found", name)
		}
		for _, p := range problems {
			t.Errorf("%s: %s", name, p)
		}
		t.Logf("%s: %d container(s) checked", name, containers)
	}
}

// hardeningProblems checks each container of each workload: runAsNonRoot,
// readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL,
// seccomp RuntimeDefault (container, or pod where Kubernetes inherits it),
// CPU and memory requests and limits, and (but init containers) liveness and
// readiness probes.
func hardeningProblems(docs []object) (problems []string, containers int) {
	for _, o := range docs {
		var podPath []string
		switch o.kind() {
		case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job":
			podPath = []string{"spec", "template", "spec"}
		case "CronJob":
			podPath = []string{"spec", "jobTemplate", "spec", "template", "spec"}
		case "Pod":
			podPath = []string{"spec"}
		default:
			continue
		}
		podSC, _ := o.get(append(podPath, "securityContext")...).(map[string]any)
		for _, field := range []string{"initContainers", "containers"} {
			for _, item := range o.list(append(podPath, field)...) {
				c, _ := item.(map[string]any)
				containers++
				where := fmt.Sprintf("%s container %v", o.id(), c["name"])
				add := func(format string, args ...any) {
					problems = append(problems, where+": "+fmt.Sprintf(format, args...))
				}
				sc, _ := c["securityContext"].(map[string]any)
				inherited := func(f string) any {
					if v, ok := sc[f]; ok {
						return v
					}
					return podSC[f]
				}
				if inherited("runAsNonRoot") != true {
					add("runAsNonRoot is not true")
				}
				if sc["readOnlyRootFilesystem"] != true {
					add("readOnlyRootFilesystem is not true")
				}
				if v, ok := sc["allowPrivilegeEscalation"]; !ok || v != false {
					add("allowPrivilegeEscalation is not false")
				}
				if sc["privileged"] == true {
					add("privileged")
				}
				caps, _ := sc["capabilities"].(map[string]any)
				if !slices.ContainsFunc(asList(caps["drop"]), func(v any) bool { return v == "ALL" }) {
					add("capabilities do not drop ALL")
				}
				if len(asList(caps["add"])) > 0 {
					add("capabilities add %v", caps["add"])
				}
				seccomp, _ := inherited("seccompProfile").(map[string]any)
				if seccomp["type"] != "RuntimeDefault" {
					add("seccompProfile type is %v, want RuntimeDefault", seccomp["type"])
				}
				res, _ := c["resources"].(map[string]any)
				for _, kind := range []string{"requests", "limits"} {
					m, _ := res[kind].(map[string]any)
					for _, r := range []string{"cpu", "memory"} {
						if m[r] == nil || m[r] == "" {
							add("no %s %s", r, strings.TrimSuffix(kind, "s"))
						}
					}
				}
				if field == "containers" {
					for _, p := range []string{"livenessProbe", "readinessProbe"} {
						if c[p] == nil {
							add("no %s", p)
						}
					}
				}
			}
		}
	}
	return problems, containers
}

// TestCheckersCatchProblems makes sure the drift and hardening checks above
// are not vacuous: each flaw put into a copy of the real objects is found.
func TestCheckersCatchProblems(t *testing.T) {
	kust := parseDocs(t, kustomizeDefault(t), "kustomize build config/default")
	chart := parseDocs(t, helmTemplate(t, installNamespace, ""), "helm template")
	if p := chartDrift(kust, chart); len(p) != 0 {
		t.Fatalf("the unmodified chart drifts (see TestChartMatchesKustomize): %v", p)
	}
	if p, _ := hardeningProblems(kust); len(p) != 0 {
		t.Fatalf("the unmodified install is not hardened (see TestContainersHardened): %v", p)
	}

	container := func(docs []object) map[string]any {
		for _, o := range docs {
			if o.kind() == "Deployment" {
				c, _ := o.list("spec", "template", "spec", "containers")[0].(map[string]any)
				return c
			}
		}
		t.Fatal("no Deployment")
		return nil
	}
	role := func(docs []object, kind string) object {
		for _, o := range docs {
			if o.kind() == kind {
				return o
			}
		}
		t.Fatalf("no %s", kind)
		return nil
	}
	for _, tc := range []struct {
		name  string
		flaw  func(kust, chart []object)
		drift bool // else a hardening problem of the kustomize objects
		want  string
	}{
		{"extra verb", func(_, c []object) {
			rules := role(c, "ClusterRole").list("rules")
			r, _ := rules[0].(map[string]any)
			r["verbs"] = append(asList(r["verbs"]), "delete")
		}, true, "rules differ"},
		{"wildcard rule", func(_, c []object) {
			o := role(c, "Role")
			o["rules"] = append(o.list("rules"), map[string]any{"apiGroups": []any{"*"}, "resources": []any{"*"}, "verbs": []any{"*"}})
		}, true, "rules differ"},
		{"missing object", func(_, c []object) {
			for _, o := range c {
				if o.kind() == "PodDisruptionBudget" {
					o["kind"] = "Gone"
				}
			}
		}, true, "objects differ"},
		{"security context", func(_, c []object) {
			sc, _ := container(c)["securityContext"].(map[string]any)
			delete(sc, "readOnlyRootFilesystem")
		}, true, "securityContext differs"},
		{"dropped flag", func(_, c []object) {
			co := container(c)
			co["args"] = slices.DeleteFunc(asList(co["args"]), func(a any) bool { return a == "--leader-elect" })
		}, true, "does not pass --leader-elect"},
		{"privilege escalation", func(k, _ []object) {
			sc, _ := container(k)["securityContext"].(map[string]any)
			sc["allowPrivilegeEscalation"] = true
		}, false, "allowPrivilegeEscalation is not false"},
		{"capabilities", func(k, _ []object) {
			sc, _ := container(k)["securityContext"].(map[string]any)
			delete(sc, "capabilities")
		}, false, "do not drop ALL"},
		{"seccomp", func(k, _ []object) {
			sc, _ := container(k)["securityContext"].(map[string]any)
			sc["seccompProfile"] = map[string]any{"type": "Unconfined"}
		}, false, "want RuntimeDefault"},
		{"limits", func(k, _ []object) {
			res, _ := container(k)["resources"].(map[string]any)
			delete(res, "limits")
		}, false, "no memory limit"},
		{"probe", func(k, _ []object) {
			delete(container(k), "readinessProbe")
		}, false, "no readinessProbe"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, c := deepCopy(t, kust), deepCopy(t, chart)
			tc.flaw(k, c)
			var got []string
			if tc.drift {
				got = chartDrift(k, c)
			} else {
				got, _ = hardeningProblems(k)
			}
			if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("flaw %q not reported (want %q); got %q", tc.name, tc.want, got)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Objects.

// object is one decoded manifest.
type object map[string]any

func (o object) get(path ...string) any {
	var cur any = map[string]any(o)
	for _, p := range path {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[p]
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i < 0 || i >= len(c) {
				return nil
			}
			cur = c[i]
		default:
			return nil
		}
	}
	return cur
}

func (o object) list(path ...string) []any { return asList(o.get(path...)) }

func (o object) str(path ...string) string {
	s, _ := o.get(path...).(string)
	return s
}

func (o object) kind() string      { return o.str("kind") }
func (o object) name() string      { return o.str("metadata", "name") }
func (o object) namespace() string { return o.str("metadata", "namespace") }

// id is Kind/namespace/name (Kind//name for cluster-scoped objects).
func (o object) id() string { return o.kind() + "/" + o.namespace() + "/" + o.name() }

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func namespaceObject(name string) object {
	return object{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": name}}
}

// parseDocs splits a multi-document YAML stream into objects, skipping
// empty documents (comments only).
func parseDocs(t *testing.T, data []byte, source string) []object {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", source, err)
		}
		var o object
		if err := yaml.Unmarshal(doc, &o); err != nil {
			t.Fatalf("%s: %v\n%s", source, err, doc)
		}
		if len(o) == 0 {
			continue
		}
		if o.kind() == "" || o.str("apiVersion") == "" || o.name() == "" {
			t.Fatalf("%s: a document without apiVersion, kind or metadata.name:\n%s", source, doc)
		}
		docs = append(docs, o)
	}
	return docs
}

func deepCopy(t *testing.T, docs []object) []object {
	t.Helper()
	b, err := json.Marshal(docs)
	if err != nil {
		t.Fatal(err)
	}
	var out []object
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func toJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func wantKinds(t *testing.T, docs []object, want ...string) {
	t.Helper()
	var got []string
	for _, o := range docs {
		got = append(got, o.kind())
	}
	sort.Strings(got)
	sort.Strings(want)
	if !slices.Equal(got, want) {
		t.Errorf("rendered kinds %v, want %v", got, want)
	}
}

func managerArgs(t *testing.T, docs []object) []string {
	t.Helper()
	var args []string
	n := 0
	for _, o := range docs {
		if o.kind() != "Deployment" {
			continue
		}
		n++
		for _, a := range o.list("spec", "template", "spec", "containers", "0", "args") {
			args = append(args, fmt.Sprint(a))
		}
	}
	if n != 1 {
		t.Fatalf("%d Deployments rendered, want 1", n)
	}
	return args
}

func wantArgs(t *testing.T, args []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(args, w) {
			t.Errorf("manager args %q lack %q", args, w)
		}
	}
}

func refuseArgPrefixes(t *testing.T, args []string, prefixes ...string) {
	t.Helper()
	for _, a := range args {
		for _, p := range prefixes {
			if a == p || strings.HasPrefix(a, p+"=") {
				t.Errorf("manager args %q have %q", args, a)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Files and commands.

func readRepoFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// globRepo returns the matches of a pattern relative to the root, relative
// and sorted.
func globRepo(t *testing.T, pattern string) []string {
	t.Helper()
	found, err := filepath.Glob(filepath.Join(root, pattern))
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range found {
		if found[i], err = filepath.Rel(root, f); err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(found)
	return found
}

func baseNames(paths []string) []string {
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = filepath.Base(p)
	}
	return out
}

func nonEmptyLines(s string) []string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

// firstDiff describes the first line where got differs from want.
func firstDiff(got, want []byte) string {
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl || i >= len(g) || i >= len(w) {
			return fmt.Sprintf("  first difference at line %d (%d vs %d lines):\n  committed: %q\n  generated: %q", i+1, len(g), len(w), gl, wl)
		}
	}
	return "  (no line differs)"
}

// run runs a command with a timeout and returns its combined output.
func run(stdin []byte, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Dir = root
	err := cmd.Run()
	return out.String(), err
}

// kubectl runs the locally built kubectl against the test control plane.
func kubectl(stdin []byte, args ...string) (string, error) {
	return run(stdin, kubectlBin, append([]string{"--kubeconfig", kubeconfig}, args...)...)
}

// helm runs bin/helm with its cache, config and data in a fresh directory:
// nothing of the user's (repositories, plugins) is read or written.
func helm(args ...string) (string, error) {
	home, err := os.MkdirTemp("", "rap-helm-")
	if err != nil {
		return "", err
	}
	defer func() { _ = os.RemoveAll(home) }()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helmBin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "no-kubeconfig"), // template and lint need no cluster
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	return out.String(), err
}

// valuesArgs writes values (if any) to a file and returns the -f flag for it.
func valuesArgs(t *testing.T, values string) []string {
	t.Helper()
	if values == "" {
		return nil
	}
	f := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(f, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"-f", f}
}

// helmTemplate renders dist/chart as release "registry-auth" in namespace.
// Only the rendered manifests go to stdout; helm writes NOTES and warnings
// elsewhere, so the output is checked to parse.
func helmTemplate(t *testing.T, namespace, values string) []byte {
	t.Helper()
	args := append([]string{"template", releaseName, filepath.Join(root, "dist", "chart"), "--namespace", namespace},
		valuesArgs(t, values)...)
	out, err := helm(args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return []byte(out)
}

// kustomizeDefault is `kustomize build config/default`, with kubectl's
// built-in kustomize.
func kustomizeDefault(t *testing.T) []byte {
	t.Helper()
	out, err := run(nil, kubectlBin, "kustomize", filepath.Join(root, "config", "default"))
	if err != nil {
		t.Fatalf("kubectl kustomize config/default: %v\n%s", err, out)
	}
	return []byte(out)
}

// applyObjects applies objects for real (server-side).
func applyObjects(t *testing.T, objs ...object) {
	t.Helper()
	if len(objs) == 0 {
		return
	}
	var b bytes.Buffer
	for _, o := range objs {
		y, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	out, err := kubectl(b.Bytes(), "apply", "--server-side", "--field-manager="+fieldManager, "-f", "-")
	if err != nil {
		t.Fatalf("kubectl apply --server-side: %v\n%s\n%s", err, out, b.String())
	}
}

// serverDryRun applies a manifest as a server-side dry run and requires the
// API server to accept each of its want objects.
func serverDryRun(t *testing.T, manifest []byte, want int) string {
	t.Helper()
	out, err := kubectl(manifest, "apply", "--server-side", "--dry-run=server", "--field-manager="+fieldManager, "-f", "-")
	if err != nil {
		t.Fatalf("kubectl apply --server-side --dry-run=server refused it: %v\n%s", err, out)
	}
	accepted := 0
	for _, l := range nonEmptyLines(out) {
		if strings.HasSuffix(l, "(server dry run)") {
			accepted++
		}
	}
	if accepted != want {
		t.Fatalf("the API server accepted %d of %d objects:\n%s", accepted, want, out)
	}
	return out
}
