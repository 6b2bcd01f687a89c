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
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	kustomizeNamespace = "registry-auth-system"
	chartNamespace     = "registry-auth-chart"
	authPort           = 8888
	healthPort         = 8081
	tokenSecret        = "registry-api-token" // the sample policy's, in namespace default
	// A Secret rotated with kubectl must be in force on every replica
	// within this time after kubectl returns.
	rotationBudget = time.Second
)

// install is one way of installing the product.
type install struct {
	name           string
	namespace      string
	deployment     string
	authService    string
	serviceAccount string
	lease          string
	selector       string
	replicas       int32
	apply          func(t *testing.T)
	restart        func(t *testing.T) // a rolling update
	remove         func(t *testing.T)

	// hostGranted: the install grants registry.localhost to namespace
	// default, so plain /validate answers for it too.
	hostGranted bool

	authServiceIP string
	token         string // the static token in force
}

// The names are config/default's (namePrefix registry-auth-), and the
// chart's with release name registry-auth.
func newInstall(name, namespace, lease string) *install {
	return &install{
		name:           name,
		namespace:      namespace,
		deployment:     "registry-auth-controller-manager",
		authService:    "registry-auth-auth-service",
		serviceAccount: "registry-auth-controller-manager",
		lease:          lease,
		selector:       "control-plane=controller-manager,app.kubernetes.io/name=registry-auth-operator",
		replicas:       2,
	}
}

func kustomizeInstall() *install {
	in := newInstall("dist/install.yaml", kustomizeNamespace, "registry-auth-operator.registryauth.io")
	manifest := func(t *testing.T) []byte {
		data, err := os.ReadFile(filepath.Join(root, "dist", "install.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		const committed = "image: controller:latest"
		if bytes.Count(data, []byte(committed)) != 1 {
			t.Fatalf("dist/install.yaml does not have exactly one %q to replace", committed)
		}
		return bytes.Replace(data, []byte(committed), []byte("image: "+image), 1)
	}
	in.apply = func(t *testing.T) {
		run(t, cluster.Kubectl("apply", "--server-side", "-f", "-"), manifest(t))
	}
	in.restart = func(t *testing.T) {
		kubectl(t, "-n", in.namespace, "rollout", "restart", "deployment/"+in.deployment)
	}
	in.remove = func(t *testing.T) {
		run(t, cluster.Kubectl("delete", "--wait", "--timeout=120s", "-f", "-"), manifest(t))
	}
	return in
}

func chartInstall() *install {
	in := newInstall("Helm chart (dist/chart)", chartNamespace, "registry-auth.registryauth.io")
	helm := func(args ...string) []string {
		return append([]string{filepath.Join(root, "bin", "helm"), "--kubeconfig", cluster.Kubeconfig}, args...)
	}
	repo, tag, _ := strings.Cut(image, ":")
	in.hostGranted = true
	in.apply = func(t *testing.T) {
		args := helm("install", "registry-auth", filepath.Join(root, "dist", "chart"), "--namespace", in.namespace,
			"--create-namespace", "--set", "image.repository="+repo, "--set", "image.tag="+tag,
			"--set-json", `hostGrants={"default":["registry.localhost"]}`)
		run(t, cluster.Command(args[0], args[1:]...), nil)
	}
	in.restart = func(t *testing.T) {
		args := helm("upgrade", "registry-auth", filepath.Join(root, "dist", "chart"), "--namespace", in.namespace,
			"--reuse-values", "--set-string", "podAnnotations.restartedAt="+time.Now().Format(time.RFC3339Nano))
		run(t, cluster.Command(args[0], args[1:]...), nil)
	}
	in.remove = func(t *testing.T) {
		args := helm("uninstall", "registry-auth", "--namespace", in.namespace, "--wait", "--timeout", "120s")
		run(t, cluster.Command(args[0], args[1:]...), nil)
		// The chart keeps the CRD (crds.keep); the next install may bring
		// its own.
		kubectl(t, "delete", "--ignore-not-found", "--wait", "crd", "registryauthpolicies.auth.registryauth.io")
		kubectl(t, "delete", "--ignore-not-found", "--wait", "namespace", in.namespace)
	}
	return in
}

// steps runs fs in order as subtests and stops at the first that fails
// (each builds on the state the ones before left); the last one (the
// uninstall) runs in any case, so that the next install starts clean.
func steps(t *testing.T, fs ...step) {
	t.Helper()
	last := fs[len(fs)-1]
	for _, s := range fs[:len(fs)-1] {
		if !t.Run(s.name, s.f) {
			t.Errorf("stopped after %q failed", s.name)
			break
		}
	}
	t.Run(last.name, last.f)
}

type step = struct {
	name string
	f    func(t *testing.T)
}

func TestInstallYAML(t *testing.T) {
	requireNode(t)
	adminClients(t)
	in := kustomizeInstall()
	steps(t,
		step{"install and Ready", func(t *testing.T) { installReady(t, in) }},
		step{"probes", func(t *testing.T) { probes(t, in) }},
		step{"process: uid/gid 65532, read-only root, no capabilities", func(t *testing.T) { processSecurity(t, in) }},
		step{"own ServiceAccount token", func(t *testing.T) { ownToken(t, in) }},
		step{"RBAC: exactly the declared rules", func(t *testing.T) { rbacRules(t, in) }},
		step{"policy loaded, status by the leader", func(t *testing.T) { policy(t, in) }},
		step{"leader election", func(t *testing.T) { leaderElection(t, in) }},
		step{"Secret rotation in force on every replica", func(t *testing.T) { rotation(t, in) }},
		step{"rolling update under load", func(t *testing.T) { rollingUpdate(t, in) }},
		step{"leader pod deleted under load", func(t *testing.T) { deleteLeader(t, in) }},
		step{"containerd killed and restarted under load", func(t *testing.T) { killContainerd(t, in) }},
		step{"RBAC sufficient: no request refused (audit log)", func(t *testing.T) { auditNoForbidden(t, in) }},
		step{"uninstall", func(t *testing.T) { uninstall(t, in) }},
	)
}

func TestHelmChart(t *testing.T) {
	requireNode(t)
	adminClients(t)
	in := chartInstall()
	steps(t,
		step{"install and Ready", func(t *testing.T) { installReady(t, in) }},
		step{"probes", func(t *testing.T) { probes(t, in) }},
		step{"process: uid/gid 65532, read-only root, no capabilities", func(t *testing.T) { processSecurity(t, in) }},
		step{"own ServiceAccount token", func(t *testing.T) { ownToken(t, in) }},
		step{"RBAC: exactly the declared rules", func(t *testing.T) { rbacRules(t, in) }},
		step{"policy loaded, status by the leader", func(t *testing.T) { policy(t, in) }},
		step{"leader election", func(t *testing.T) { leaderElection(t, in) }},
		step{"Secret rotation in force on every replica", func(t *testing.T) { rotation(t, in) }},
		step{"rolling update (helm upgrade) under load", func(t *testing.T) { rollingUpdate(t, in) }},
		step{"leader pod deleted under load", func(t *testing.T) { deleteLeader(t, in) }},
		step{"RBAC sufficient: no request refused (audit log)", func(t *testing.T) { auditNoForbidden(t, in) }},
		step{"uninstall", func(t *testing.T) { uninstall(t, in) }},
	)
}

func installReady(t *testing.T, in *install) {
	start := time.Now()
	in.apply(t)
	applied := time.Since(start)
	waitRolledOut(t, in, 3*time.Minute)
	report.add(in.name+": apply, then both pods Ready", time.Since(start))
	t.Logf("applied in %s, %d pods Ready %s after the apply began", applied.Round(time.Millisecond), in.replicas, time.Since(start).Round(time.Millisecond))
	svc, err := clients.CoreV1().Services(in.namespace).Get(ctx(t), in.authService, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in.authServiceIP = svc.Spec.ClusterIP
}

// probes: the pods are Ready because the kubelet's probes passed (Ready is
// the readiness probe's verdict), the probes are the Deployment's, and the
// endpoints they call answer on every pod.
func probes(t *testing.T, in *install) {
	plain := cluster.HTTPClient(false)
	for _, p := range operatorPods(t, in) {
		c := p.Spec.Containers[0]
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("pod %s: readiness probe %+v, want httpGet /readyz", p.Name, c.ReadinessProbe)
		}
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("pod %s: liveness probe %+v, want httpGet /healthz", p.Name, c.LivenessProbe)
		}
		if !podReady(&p) {
			t.Errorf("pod %s is not Ready", p.Name)
		}
		for _, cs := range p.Status.ContainerStatuses {
			if !cs.Ready || cs.Started == nil || !*cs.Started || cs.RestartCount != 0 {
				t.Errorf("pod %s container %s: ready %v, started %v, restarts %d", p.Name, cs.Name, cs.Ready, cs.Started, cs.RestartCount)
			}
		}
		for _, path := range []string{"/readyz", "/healthz"} {
			resp, err := plain.Get(fmt.Sprintf("http://%s:%d%s", p.Status.PodIP, healthPort, path))
			if err != nil {
				t.Errorf("pod %s %s: %v", p.Name, path, err)
				continue
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("pod %s %s: %s", p.Name, path, resp.Status)
			}
		}
	}
}

func uninstall(t *testing.T, in *install) {
	start := time.Now()
	kubectl(t, "delete", "--ignore-not-found", "--wait", "-n", "default", "registryauthpolicy", "registry")
	kubectl(t, "delete", "--ignore-not-found", "-n", "default", "secret", tokenSecret)
	in.remove(t)
	eventually(t, "the pods gone", time.Minute, 200*time.Millisecond, func() error {
		list, err := clients.CoreV1().Pods(in.namespace).List(ctx(t), metav1.ListOptions{LabelSelector: in.selector})
		if err != nil {
			return err
		}
		if n := len(list.Items); n > 0 {
			return fmt.Errorf("%d pods left", n)
		}
		return nil
	})
	t.Logf("uninstalled in %s", time.Since(start).Round(time.Millisecond))
}

func newToken(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// byNamePolicy is the sample policy without hosts: an install that grants
// no host calls it by name (validatePath).
const byNamePolicy = `apiVersion: auth.registryauth.io/v1alpha1
kind: RegistryAuthPolicy
metadata:
  name: registry
  namespace: default
spec:
  staticToken:
    enabled: true
    secretRef:
      name: ` + tokenSecret + `
`

// policy creates the token Secret and applies the sample policy (without
// its hosts where the install grants none); every replica answers 200 with
// the token and 401 without, directly and through the Service, and the
// policy's status (which only the leader writes) says it is in force.
func policy(t *testing.T, in *install) {
	in.token = newToken(t)
	kubectl(t, "-n", "default", "create", "secret", "generic", tokenSecret, "--from-literal=token="+in.token)
	// Only a Secret that opts in is a credential.
	kubectl(t, "-n", "default", "label", "secret", tokenSecret, "registryauth.io/credential=true")
	if in.hostGranted {
		kubectl(t, "apply", "-f", filepath.Join(root, "config", "samples", "auth_v1alpha1_registryauthpolicy.yaml"))
	} else {
		run(t, cluster.Kubectl("apply", "-f", "-"), []byte(byNamePolicy))
	}
	eventually(t, "the policy's Ready condition", 30*time.Second, 100*time.Millisecond, func() error {
		out := strings.TrimSpace(kubectl(t, "-n", "default", "get", "rap", "registry", "-o",
			`jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.staticToken.fingerprint} `+
				`{.status.conditions[?(@.type=="Ready")].reason}: {.status.conditions[?(@.type=="Ready")].message}`))
		if !strings.HasPrefix(out, "True ") {
			return fmt.Errorf("status %q", out)
		}
		return nil
	})
	plain := cluster.HTTPClient(false)
	for _, p := range operatorPods(t, in) {
		base := fmt.Sprintf("http://%s:%d", p.Status.PodIP, authPort)
		eventually(t, "pod "+p.Name+" answers 200 with the token", 10*time.Second, 50*time.Millisecond, func() error {
			code, err := validate(plain, base, in.token)
			if err != nil {
				return err
			}
			if code != http.StatusOK {
				return fmt.Errorf("HTTP %d", code)
			}
			return nil
		})
		if code, err := validate(plain, base, ""); err != nil || code != http.StatusUnauthorized {
			t.Errorf("pod %s without a token: HTTP %d, %v; want 401", p.Name, code, err)
		}
	}
	svc := fmt.Sprintf("http://%s:%d", in.authServiceIP, authPort)
	if code, err := validate(plain, svc, in.token); err != nil || code != http.StatusOK {
		t.Errorf("the Service with the token: HTTP %d, %v; want 200", code, err)
	}
	if code, err := validate(plain, svc, newToken(t)); err != nil || code != http.StatusUnauthorized {
		t.Errorf("the Service with a wrong token: HTTP %d, %v; want 401", code, err)
	}
	// Plain /validate (the host decides) answers only where the install
	// grants the host.
	want := http.StatusForbidden // no_policy
	if in.hostGranted {
		want = http.StatusOK
	}
	if code, err := validateAt(plain, svc+"/validate", in.token); err != nil || code != want {
		t.Errorf("plain /validate for registry.localhost with the token: HTTP %d, %v; want %d (host granted: %v)", code, err, want, in.hostGranted)
	}
}

// leaderElection: one of the two pods holds the Lease, and only that one
// logged that it leads.
func leaderElection(t *testing.T, in *install) {
	pods := operatorPods(t, in)
	var holder string
	eventually(t, "a leader", 30*time.Second, 200*time.Millisecond, func() error {
		holder = leaseHolder(t, in)
		for _, p := range pods {
			if p.Name == holder {
				return nil
			}
		}
		return fmt.Errorf("lease holder %q is none of the pods", holder)
	})
	for _, p := range pods {
		logs := kubectl(t, "-n", in.namespace, "logs", p.Name, "-c", "manager")
		leads := strings.Contains(logs, "became leader")
		if leads != (p.Name == holder) {
			t.Errorf("pod %s logged leading: %v; the Lease holder is %s", p.Name, leads, holder)
		}
	}
	t.Logf("leader: %s", holder)
}

// rotation patches the token Secret with kubectl and measures, for every
// replica, when the new token is accepted (and the old one refused), from
// the moment kubectl returned.
func rotation(t *testing.T, in *install) {
	pods := operatorPods(t, in)
	plain := cluster.HTTPClient(false)
	plain.Timeout = time.Second
	next := newToken(t)
	patch := fmt.Sprintf(`{"stringData":{"token":%q}}`, next)
	before := time.Now()
	kubectl(t, "-n", "default", "patch", "secret", tokenSecret, "-p", patch)
	applied := time.Now()
	var wg sync.WaitGroup
	took := make([]time.Duration, len(pods))
	for i, p := range pods {
		wg.Add(1)
		go func(i int, p corev1.Pod) {
			defer wg.Done()
			base := fmt.Sprintf("http://%s:%d", p.Status.PodIP, authPort)
			for time.Since(applied) < 10*time.Second {
				if code, err := validate(plain, base, next); err == nil && code == http.StatusOK {
					took[i] = time.Since(applied)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			took[i] = -1
		}(i, p)
	}
	wg.Wait()
	old := in.token
	in.token = next
	var parts []string
	for i, p := range pods {
		if took[i] < 0 {
			t.Errorf("pod %s: the new token not accepted within 10s", p.Name)
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s", shortPod(p.Name), took[i].Round(time.Millisecond)))
		if took[i] > rotationBudget {
			t.Errorf("pod %s: the new token in force %s after kubectl returned, want within %s", p.Name, took[i], rotationBudget)
		}
		if code, err := validate(plain, fmt.Sprintf("http://%s:%d", p.Status.PodIP, authPort), old); err != nil || code != http.StatusUnauthorized {
			t.Errorf("pod %s: the old token after the rotation: HTTP %d, %v; want 401 (no grace period)", p.Name, code, err)
		}
	}
	report.addf(in.name+": Secret rotated with kubectl patch, new token in force per replica (after kubectl returned; kubectl itself took "+
		applied.Sub(before).Round(time.Millisecond).String()+")", "%s", strings.Join(parts, ", "))
}

func shortPod(name string) string {
	if i := strings.LastIndexByte(name, '-'); i >= 0 {
		return "pod …" + name[i:]
	}
	return name
}

// rollingUpdate restarts the Deployment (a new ReplicaSet, maxSurge 1,
// maxUnavailable 0) under steady load: no check may fail.
func rollingUpdate(t *testing.T, in *install) {
	before := operatorPods(t, in)
	l := startLoad(in, in.token)
	time.Sleep(time.Second)
	start := time.Now()
	in.restart(t)
	after := waitRolledOut(t, in, 3*time.Minute)
	rolled := time.Since(start)
	time.Sleep(time.Second)
	st := l.stop()
	for _, p := range after {
		for _, b := range before {
			if p.Name == b.Name {
				t.Errorf("pod %s survived the rolling update", p.Name)
			}
		}
	}
	report.addf(in.name+": rolling update under load ("+rolled.Round(time.Millisecond).String()+")", "%s", st)
	t.Logf("rolled out in %s; load: %s", rolled.Round(time.Millisecond), st)
	checkLoad(t, st)
}

func checkLoad(t *testing.T, st loadStats) {
	t.Helper()
	if st.failed() > 0 {
		t.Errorf("%d of %d checks failed: %s", st.failed(), st.total(), strings.Join(st.Failures, "; "))
	}
	if st.ServiceOK == 0 || st.EndpointsOK == 0 {
		t.Errorf("the load made no successful check on one path: %s", st)
	}
}

// deleteLeader deletes the leader's pod (graceful: it releases the Lease)
// under steady load: the other replica takes the Lease, the Deployment
// replaces the pod, no check fails.
func deleteLeader(t *testing.T, in *install) {
	leader := leaseHolder(t, in)
	if leader == "" {
		t.Fatal("no leader")
	}
	l := startLoad(in, in.token)
	time.Sleep(time.Second)
	start := time.Now()
	kubectl(t, "-n", in.namespace, "delete", "pod", leader, "--wait=false")
	var newLeader string
	var failover time.Duration
	eventually(t, "a new leader", 60*time.Second, 50*time.Millisecond, func() error {
		newLeader = leaseHolder(t, in)
		if newLeader == "" || newLeader == leader {
			return fmt.Errorf("holder %q", newLeader)
		}
		failover = time.Since(start)
		return nil
	})
	waitRolledOut(t, in, 2*time.Minute)
	replaced := time.Since(start)
	time.Sleep(time.Second)
	st := l.stop()
	report.addf(in.name+": leader pod deleted under load (new leader after "+failover.Round(time.Millisecond).String()+
		", replacement Ready after "+replaced.Round(time.Millisecond).String()+")", "%s", st)
	t.Logf("leader %s deleted; %s leads after %s; load: %s", leader, newLeader, failover.Round(time.Millisecond), st)
	checkLoad(t, st)
}

// killContainerd kills containerd (SIGKILL, a node-level crash) under load
// and starts it again: the containers and their shims are untouched, no
// check fails, the kubelet restarts nothing.
func killContainerd(t *testing.T, in *install) {
	type state struct {
		containerID string
		restarts    int32
		pid         int
	}
	snapshot := func() map[string]state {
		m := map[string]state{}
		for _, p := range operatorPods(t, in) {
			for _, cs := range p.Status.ContainerStatuses {
				m[p.Name] = state{cs.ContainerID, cs.RestartCount, mainPID(t, &p)}
			}
		}
		return m
	}
	before := snapshot()
	l := startLoad(in, in.token)
	time.Sleep(time.Second)
	pid, err := cluster.KillContainerd()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed containerd (pid %d)", pid)
	time.Sleep(5 * time.Second)
	down := l.stop()
	checkLoad(t, down)
	if _, err := cluster.StartContainerd(ctx(t)); err != nil {
		t.Fatal(err)
	}
	l = startLoad(in, in.token)
	// The kubelet reconnects and resyncs; give it a few sync periods.
	time.Sleep(15 * time.Second)
	up := l.stop()
	checkLoad(t, up)
	waitRolledOut(t, in, time.Minute)
	after := snapshot()
	for name, b := range before {
		a, ok := after[name]
		if !ok {
			t.Errorf("pod %s is gone after the containerd restart", name)
			continue
		}
		if a != b {
			t.Errorf("pod %s changed across the containerd restart: before %+v, after %+v", name, b, a)
		}
	}
	report.addf(in.name+": containerd killed (SIGKILL): checks while it was down (5s)", "%s", down)
	report.addf(in.name+": containerd started again: checks in the 15s after", "%s", up)
}
