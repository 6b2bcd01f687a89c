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

package node

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// processSecurity looks at each pod's process on this machine (through the
// node's cgroups and /proc): it runs as uid and gid 65532 with no other
// group, without capabilities, under seccomp, with no_new_privs, on a
// read-only root filesystem.
func processSecurity(t *testing.T, in *install) {
	for _, p := range operatorPods(t, in) {
		pid := mainPID(t, &p)
		status := procStatus(t, pid)
		want := map[string]string{
			"Uid":        "65532\t65532\t65532\t65532",
			"Gid":        "65532\t65532\t65532\t65532",
			"Groups":     "65532",
			"CapEff":     "0000000000000000",
			"CapPrm":     "0000000000000000",
			"CapBnd":     "0000000000000000",
			"NoNewPrivs": "1",
			"Seccomp":    "2", // filter mode: RuntimeDefault
		}
		for k, v := range want {
			if got := status[k]; got != v {
				t.Errorf("pod %s (pid %d): %s: %q, want %q", p.Name, pid, k, got, v)
			}
		}
		if status["Name"] != "registry-auth" {
			t.Errorf("pod %s (pid %d) runs %q, want registry-auth", p.Name, pid, status["Name"])
		}
		opts := rootMountOptions(t, pid)
		if !slices.Contains(opts, "ro") {
			t.Errorf("pod %s (pid %d): the root filesystem is mounted %v, want ro", p.Name, pid, opts)
		}
		// And a write is refused (as the container's user, from its root).
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/root/tmp/probe", pid), nil, 0o600); err == nil {
			t.Errorf("pod %s: writing to its root filesystem worked", p.Name)
		}
		t.Logf("pod %s: pid %d, Uid %s, Gid %s, Groups %q, root %v", p.Name, pid, status["Uid"], status["Gid"], status["Groups"], opts)
	}
}

func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		m[k] = strings.TrimSpace(v)
	}
	return m
}

// rootMountOptions are the mount options of "/" as the process sees it.
func rootMountOptions(t *testing.T, pid int) []string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" {
			return strings.Split(f[5], ",")
		}
	}
	t.Fatalf("pid %d has no / mount", pid)
	return nil
}

// ownToken: the token the kubelet mounted into each pod is the install's
// own ServiceAccount's, and the API server saw the operator use it.
func ownToken(t *testing.T, in *install) {
	wantSub := "system:serviceaccount:" + in.namespace + ":" + in.serviceAccount
	for _, p := range operatorPods(t, in) {
		if p.Spec.ServiceAccountName != in.serviceAccount {
			t.Errorf("pod %s runs as ServiceAccount %q, want %q", p.Name, p.Spec.ServiceAccountName, in.serviceAccount)
		}
		pid := mainPID(t, &p)
		tok, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/var/run/secrets/kubernetes.io/serviceaccount/token", pid))
		if err != nil {
			t.Fatalf("pod %s: %v", p.Name, err)
		}
		parts := strings.Split(strings.TrimSpace(string(tok)), ".")
		if len(parts) != 3 {
			t.Fatalf("pod %s: the token is not a JWT", p.Name)
		}
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		var claims struct {
			Sub string `json:"sub"`
			K8s struct {
				Pod struct{ Name string } `json:"pod"`
			} `json:"kubernetes.io"`
		}
		if err := json.Unmarshal(payload, &claims); err != nil {
			t.Fatal(err)
		}
		if claims.Sub != wantSub || claims.K8s.Pod.Name != p.Name {
			t.Errorf("pod %s: token for %s (pod %s), want %s (pod %s)", p.Name, claims.Sub, claims.K8s.Pod.Name, wantSub, p.Name)
		}
	}
	if n := len(auditEvents(t, wantSub)); n == 0 {
		t.Errorf("the audit log has no request by %s: the operator does not use its own token", wantSub)
	}
}

// rule is one permission: verb on group/resource[/subresource].
type rule struct{ group, resource, verb string }

func (r rule) String() string {
	g := r.group
	if g == "" {
		g = "core"
	}
	return r.verb + " " + g + "/" + r.resource
}

// The declared rules are config/rbac's (the chart renders the same:
// test/install checks), plus Kubernetes' defaults for every authenticated
// user (system:basic-user: the self reviews) and every ServiceAccount
// (system:cluster-trust-bundle-discovery). Cluster-wide: clusterRules; in
// the install's namespace also namespaceRules.
var (
	clusterRules = expand(
		[]string{""}, []string{"secrets"}, []string{"create", "get", "list", "patch", "watch"},
		[]string{""}, []string{"configmaps"}, []string{"get", "list", "watch"},
		[]string{"auth.registryauth.io"}, []string{"registryauthpolicies"}, []string{"get", "list", "watch"},
		[]string{"auth.registryauth.io"}, []string{"registryauthpolicies/finalizers"}, []string{"update"},
		[]string{"auth.registryauth.io"}, []string{"registryauthpolicies/status"}, []string{"patch"},
		[]string{"events.k8s.io"}, []string{"events"}, []string{"create", "patch"},
		[]string{"authorization.k8s.io"}, []string{"selfsubjectaccessreviews", "selfsubjectrulesreviews"}, []string{"create"},
		[]string{"authentication.k8s.io"}, []string{"selfsubjectreviews"}, []string{"create"},
		[]string{"certificates.k8s.io"}, []string{"clustertrustbundles"}, []string{"get", "list", "watch"},
	)
	namespaceRules = expand(
		[]string{"coordination.k8s.io"}, []string{"leases"}, []string{"get", "create", "update"},
	)
)

// expand turns (groups, resources, verbs) triples into rules.
func expand(triples ...[]string) map[rule]bool {
	m := map[rule]bool{}
	for i := 0; i+2 < len(triples); i += 3 {
		for _, g := range triples[i] {
			for _, r := range triples[i+1] {
				for _, v := range triples[i+2] {
					m[rule{g, r, v}] = true
				}
			}
		}
	}
	return m
}

// saClient is a client that impersonates the install's ServiceAccount.
func saClient(t *testing.T, in *install) *kubernetes.Clientset {
	t.Helper()
	cfg, err := cluster.RestConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + in.namespace + ":" + in.serviceAccount,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + in.namespace, "system:authenticated"},
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// rbacRules asks the API server what the ServiceAccount may do (a
// SelfSubjectRulesReview as the ServiceAccount), in the install's namespace
// and in another one, and compares it with the declared rules: nothing
// more, nothing less. A wildcard, a stray binding or a chart that grants
// more fails here.
func rbacRules(t *testing.T, in *install) {
	sa := saClient(t, in)
	for _, ns := range []string{in.namespace, "default"} {
		review, err := sa.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx(t), &authorizationv1.SelfSubjectRulesReview{
			Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: ns},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if review.Status.Incomplete {
			t.Errorf("namespace %s: the rules review is incomplete: %s", ns, review.Status.EvaluationError)
		}
		got := map[rule]bool{}
		for _, r := range review.Status.ResourceRules {
			if len(r.ResourceNames) > 0 {
				t.Errorf("namespace %s: a rule limited to names %v: %+v (none is declared)", ns, r.ResourceNames, r)
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						got[rule{g, res, v}] = true
					}
				}
			}
		}
		want := map[rule]bool{}
		for r := range clusterRules {
			want[r] = true
		}
		if ns == in.namespace {
			for r := range namespaceRules {
				want[r] = true
			}
		}
		var extra, missing []string
		for r := range got {
			if !want[r] {
				extra = append(extra, r.String())
			}
		}
		for r := range want {
			if !got[r] {
				missing = append(missing, r.String())
			}
		}
		sort.Strings(extra)
		sort.Strings(missing)
		if len(extra) > 0 {
			t.Errorf("namespace %s: the ServiceAccount may do more than config/rbac declares: %s", ns, strings.Join(extra, ", "))
		}
		if len(missing) > 0 {
			t.Errorf("namespace %s: the ServiceAccount may not do what config/rbac declares: %s", ns, strings.Join(missing, ", "))
		}
		t.Logf("namespace %s: %d permissions, as declared", ns, len(got))
	}
	// And a few things it must never do, asked one by one.
	for _, attr := range []authorizationv1.ResourceAttributes{
		{Verb: "delete", Resource: "secrets", Namespace: "default"},
		{Verb: "update", Resource: "secrets", Namespace: "default"},
		{Verb: "create", Resource: "pods", Namespace: in.namespace},
		{Verb: "list", Resource: "nodes"},
		{Verb: "update", Group: "auth.registryauth.io", Resource: "registryauthpolicies", Namespace: "default"},
		{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system"},
		{Verb: "escalate", Group: "rbac.authorization.k8s.io", Resource: "clusterroles"},
		{Verb: "create", Resource: "serviceaccounts/token", Namespace: in.namespace},
	} {
		review, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx(t), &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attr},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if review.Status.Allowed {
			t.Errorf("the ServiceAccount may %s %s/%s in %q", attr.Verb, attr.Group, attr.Resource, attr.Namespace)
		}
	}
}

// auditEvent is what the audit log says about one request.
type auditEvent struct {
	Verb string `json:"verb"`
	User struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		APIGroup    string `json:"apiGroup"`
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
	} `json:"objectRef"`
	RequestURI     string `json:"requestURI"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
}

func auditEvents(t *testing.T, user string) []auditEvent {
	t.Helper()
	f, err := os.Open(cluster.AuditLog())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var out []auditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e auditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("%s: %v", filepath.Base(cluster.AuditLog()), err)
		}
		if e.User.Username == user {
			out = append(out, e)
		}
	}
	return out
}

// auditNoForbidden: over everything the suite did with this install, the
// API server refused none of the operator's requests. It also reports
// which declared permissions were used and which were not.
func auditNoForbidden(t *testing.T, in *install) {
	user := "system:serviceaccount:" + in.namespace + ":" + in.serviceAccount
	events := auditEvents(t, user)
	used := map[string]int{}
	forbidden := map[string]int{}
	for _, e := range events {
		what := e.Verb + " " + e.RequestURI
		if e.ObjectRef != nil {
			res := e.ObjectRef.Resource
			if e.ObjectRef.Subresource != "" {
				res += "/" + e.ObjectRef.Subresource
			}
			g := e.ObjectRef.APIGroup
			if g == "" {
				g = "core"
			}
			what = e.Verb + " " + g + "/" + res
		}
		used[what]++
		if e.ResponseStatus != nil && e.ResponseStatus.Code == 403 {
			forbidden[what+" ("+e.RequestURI+")"]++
		}
	}
	if len(forbidden) > 0 {
		t.Errorf("the API server refused requests of %s: %v", user, forbidden)
	}
	var usedList []string
	for k, n := range used {
		usedList = append(usedList, k+" ×"+strconv.Itoa(n))
	}
	sort.Strings(usedList)
	var unused []string
	for r := range clusterRules {
		if r.group == "authorization.k8s.io" || r.group == "authentication.k8s.io" || r.group == "certificates.k8s.io" {
			continue // Kubernetes' defaults
		}
		if used[r.String()] == 0 {
			unused = append(unused, r.String())
		}
	}
	for r := range namespaceRules {
		if used[r.String()] == 0 {
			unused = append(unused, r.String())
		}
	}
	sort.Strings(unused)
	t.Logf("%d requests by %s, none refused: %s", len(events), user, strings.Join(usedList, ", "))
	report.addf(in.name+": API requests by the operator's ServiceAccount (audit log)", "%d, none refused; declared but not exercised by this suite: %s",
		len(events), strings.Join(unused, ", "))
}
