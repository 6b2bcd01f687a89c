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
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// clients is an admin clientset that dials inside the node's namespace.
var clients *kubernetes.Clientset

func adminClients(t *testing.T) *kubernetes.Clientset {
	t.Helper()
	if clients != nil {
		return clients
	}
	cfg, err := cluster.RestConfig()
	if err != nil {
		t.Fatal(err)
	}
	if clients, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return clients
}

// run runs cmd (kubectl, helm) with stdin and returns its output; any
// failure fails the test with the output.
func run(t *testing.T, cmd *exec.Cmd, stdin []byte) string {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out.String())
	}
	return out.String()
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, cluster.Kubectl(args...), nil)
}

// eventually polls f every interval until it returns nil or timeout passes.
func eventually(t *testing.T, what string, timeout, interval time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(interval)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// operatorPods lists the install's running pods that are not being
// deleted, by name.
func operatorPods(t *testing.T, in *install) []corev1.Pod {
	t.Helper()
	list, err := clients.CoreV1().Pods(in.namespace).List(ctx(t), metav1.ListOptions{LabelSelector: in.selector})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitRolledOut waits until the Deployment has in.replicas updated, ready
// and available pods and no others, and returns its pods.
func waitRolledOut(t *testing.T, in *install, timeout time.Duration) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	eventually(t, "the Deployment "+in.deployment+" rolled out", timeout, 200*time.Millisecond, func() error {
		d, err := clients.AppsV1().Deployments(in.namespace).Get(ctx(t), in.deployment, metav1.GetOptions{})
		if err != nil {
			return err
		}
		st := d.Status
		if st.ObservedGeneration < d.Generation || st.UpdatedReplicas != in.replicas || st.ReadyReplicas != in.replicas ||
			st.AvailableReplicas != in.replicas || st.Replicas != in.replicas {
			return fmt.Errorf("status %+v", st)
		}
		pods = nil
		all, err := clients.CoreV1().Pods(in.namespace).List(ctx(t), metav1.ListOptions{LabelSelector: in.selector})
		if err != nil {
			return err
		}
		for _, p := range all.Items {
			if p.DeletionTimestamp != nil {
				return fmt.Errorf("pod %s is still terminating", p.Name)
			}
			if !podReady(&p) {
				return fmt.Errorf("pod %s is not Ready", p.Name)
			}
			pods = append(pods, p)
		}
		if int32(len(pods)) != in.replicas {
			return fmt.Errorf("%d pods, want %d", len(pods), in.replicas)
		}
		return nil
	})
	return pods
}

// leaseHolder returns the pod that holds the install's leader Lease (the
// identity is <hostname>_<uuid>, and a pod's hostname is its name).
func leaseHolder(t *testing.T, in *install) string {
	t.Helper()
	l, err := clients.CoordinationV1().Leases(in.namespace).Get(ctx(t), in.lease, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	pod, _, _ := strings.Cut(*l.Spec.HolderIdentity, "_")
	return pod
}

// mainPID is the PID (on this machine) of the pod's manager container's
// process, found through the node's cgroups.
func mainPID(t *testing.T, p *corev1.Pod) int {
	t.Helper()
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name != "manager" {
			continue
		}
		pids, err := cluster.ContainerPIDs(cs.ContainerID)
		if err != nil {
			t.Fatalf("pod %s: %v", p.Name, err)
		}
		if len(pids) != 1 {
			t.Fatalf("pod %s: container %s has processes %v, want exactly one (the binary)", p.Name, cs.ContainerID, pids)
		}
		return pids[0]
	}
	t.Fatalf("pod %s has no manager container status", p.Name)
	return 0
}
