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

package realnode

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// process is a component Start started.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *os.File
}

// start starts a component inside the network namespace (and, with
// inMount, the mount namespace) with its output in LogFile(name). It dies
// with this process (parent-death signal).
func (c *Cluster) start(name string, inMount bool, bin string, args ...string) (*process, error) {
	logf, err := os.OpenFile(c.LogFile(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	ns := []string{"--net=" + c.NetNS}
	if inMount {
		ns = append(ns, "--mount="+c.meta.MountNS)
	}
	cmd := exec.Command(c.tools.Nsenter, append(append(ns, "--", bin), args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// nsenter execs the component (no --pid: no fork), so the PID is the
	// component's and the parent-death signal reaches it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(c.tools.Shim)+":"+filepath.Dir(c.tools.Runc)+":"+os.Getenv("PATH"))
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, err
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{}), log: logf}
	go func() {
		p.err = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
	c.meta.PIDs = append(c.meta.PIDs, procOf(cmd.Process.Pid))
	return p, c.saveMeta()
}

// exited reports an error if p has exited.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %w", p.name, p.err)
	default:
		return nil
	}
}

// waitFor polls check every 100ms until it returns nil, ctx ends, timeout
// passes or one of procs exits.
func waitFor(ctx context.Context, what string, timeout time.Duration, check func() error, procs ...*process) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		for _, p := range procs {
			if err := p.exited(); err != nil {
				return fmt.Errorf("waiting for %s: %w; the end of its log:\n%s", what, err, tail(p.log.Name(), 15))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %w)", what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tail returns the last n lines of a file, indented.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "    (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}

func (c *Cluster) startControlPlane(ctx context.Context) error {
	etcd, err := c.start("etcd", false, c.bins.Etcd,
		"--data-dir="+filepath.Join(c.Dir, "etcd"),
		fmt.Sprintf("--listen-client-urls=http://127.0.0.1:%d", etcdPort),
		fmt.Sprintf("--advertise-client-urls=http://127.0.0.1:%d", etcdPort),
		"--listen-peer-urls=http://127.0.0.1:2380",
		"--unsafe-no-fsync=true")
	if err != nil {
		return err
	}
	plain := c.HTTPClient(false)
	if err := waitFor(ctx, "etcd", 30*time.Second, func() error {
		return httpOK(plain, fmt.Sprintf("http://127.0.0.1:%d/health", etcdPort))
	}, etcd); err != nil {
		return err
	}
	p := c.pki.path
	args := []string{
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", etcdPort),
		"--advertise-address=" + NodeIP,
		"--bind-address=0.0.0.0", // inside the namespace
		fmt.Sprintf("--secure-port=%d", APIServerPort),
		"--tls-cert-file=" + p("apiserver.crt"), "--tls-private-key-file=" + p("apiserver.key"),
		"--client-ca-file=" + p("ca.crt"),
		"--kubelet-client-certificate=" + p("apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + p("apiserver-kubelet-client.key"),
		"--kubelet-certificate-authority=" + p("ca.crt"),
		"--kubelet-preferred-address-types=InternalIP",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p("sa.pub"),
		"--service-account-signing-key-file=" + p("sa.key"),
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=false",
		"--profiling=false",
		"--audit-policy-file=" + filepath.Join(c.Dir, "audit-policy.yaml"),
		"--audit-log-path=" + c.AuditLog(),
		"--audit-log-format=json",
		"--audit-log-mode=blocking",
	}
	api, err := c.start("kube-apiserver", false, c.bins.APIServer, args...)
	if err != nil {
		return err
	}
	admin := c.HTTPClient(true)
	return waitFor(ctx, "kube-apiserver", 90*time.Second, func() error {
		return httpOK(admin, fmt.Sprintf("https://%s:%d/readyz", NodeIP, APIServerPort))
	}, api, etcd)
}

// Ctr runs ctr against the node's containerd (namespace k8s.io) in its
// namespaces.
func (c *Cluster) Ctr(args ...string) *exec.Cmd {
	full := append([]string{"--net=" + c.NetNS, "--mount=" + c.meta.MountNS, "--", c.tools.Ctr,
		"--address", c.ContainerdSocket(), "--namespace", "k8s.io"}, args...)
	return exec.Command(c.tools.Nsenter, full...)
}

func (c *Cluster) startContainerd(ctx context.Context) error {
	if _, err := c.StartContainerd(ctx); err != nil {
		return err
	}
	for _, img := range c.opts.Images {
		out, err := c.Ctr("images", "import", img).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ctr images import %s: %w: %s", img, err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// StartContainerd starts containerd (again, after KillContainerd) and waits
// for it to answer. It returns its PID.
func (c *Cluster) StartContainerd(ctx context.Context) (int, error) {
	p, err := c.start("containerd", true, c.tools.Containerd, "--config", filepath.Join(c.Dir, "containerd.toml"))
	if err != nil {
		return 0, err
	}
	err = waitFor(ctx, "containerd", 30*time.Second, func() error {
		return c.Ctr("version").Run()
	}, p)
	return p.cmd.Process.Pid, err
}

// KillContainerd kills containerd with SIGKILL, as a crash or an OOM kill
// would, and waits until it is gone. Its shims and the containers stay.
func (c *Cluster) KillContainerd() (int, error) {
	c.mu.Lock()
	p := c.procs["containerd"]
	c.mu.Unlock()
	if p == nil || p.exited() != nil {
		return 0, errors.New("containerd is not running")
	}
	pid := p.cmd.Process.Pid
	if err := p.cmd.Process.Kill(); err != nil {
		return pid, err
	}
	<-p.done
	return pid, nil
}

func (c *Cluster) startNode(ctx context.Context) error {
	kc := func(name string) string { return filepath.Join(c.Dir, name+".kubeconfig") }
	p := c.pki.path
	cm, err := c.start("kube-controller-manager", false, c.bins.KubeControllerManager,
		"--kubeconfig="+kc("kube-controller-manager"),
		"--authentication-kubeconfig="+kc("kube-controller-manager"),
		"--authorization-kubeconfig="+kc("kube-controller-manager"),
		"--bind-address=127.0.0.1",
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file="+p("sa.key"),
		"--root-ca-file="+p("ca.crt"),
		"--cluster-signing-cert-file="+p("ca.crt"), "--cluster-signing-key-file="+p("ca.key"),
		"--allocate-node-cidrs=false",
		"--controllers=*,-node-ipam-controller",
		"--profiling=false")
	if err != nil {
		return err
	}
	sched, err := c.start("kube-scheduler", false, c.bins.KubeScheduler,
		"--kubeconfig="+kc("kube-scheduler"),
		"--authentication-kubeconfig="+kc("kube-scheduler"),
		"--authorization-kubeconfig="+kc("kube-scheduler"),
		"--bind-address=127.0.0.1",
		"--leader-elect=false",
		"--profiling=false")
	if err != nil {
		return err
	}
	kubelet, err := c.start("kubelet", true, c.bins.Kubelet,
		"--config="+filepath.Join(c.Dir, "kubelet.yaml"),
		"--kubeconfig="+kc("kubelet"),
		"--root-dir="+filepath.Join(c.Dir, "kubelet"),
		"--cert-dir="+filepath.Join(c.Dir, "kubelet", "pki"),
		"--hostname-override="+NodeName,
		"--node-ip="+NodeIP,
		"--v=1")
	if err != nil {
		return err
	}
	proxy, err := c.start("kube-proxy", true, c.bins.KubeProxy, "--config="+filepath.Join(c.Dir, "kube-proxy.yaml"))
	if err != nil {
		return err
	}
	admin := c.HTTPClient(true)
	return waitFor(ctx, "the node to be Ready", 120*time.Second, func() error {
		return nodeReady(admin)
	}, cm, sched, kubelet, proxy)
}

// nodeReady checks the Node's Ready condition and that the node has no
// taints left (the node lifecycle controller removes not-ready).
func nodeReady(cl *http.Client) error {
	resp, err := cl.Get(fmt.Sprintf("https://%s:%d/api/v1/nodes/%s", NodeIP, APIServerPort, NodeName))
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET node: %s", resp.Status)
	}
	var node struct {
		Spec struct {
			Taints []struct{ Key string } `json:"taints"`
		} `json:"spec"`
		Status struct {
			Conditions []struct{ Type, Status, Message string } `json:"conditions"`
		} `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&node); err != nil {
		return err
	}
	if len(node.Spec.Taints) > 0 {
		return fmt.Errorf("node has taints %v", node.Spec.Taints)
	}
	for _, cond := range node.Status.Conditions {
		if cond.Type == "Ready" {
			if cond.Status == "True" {
				return nil
			}
			return fmt.Errorf("node not Ready: %s", cond.Message)
		}
	}
	return errors.New("node has no Ready condition yet")
}

// stopProcess sends SIGTERM, waits up to grace, then SIGKILL.
func (c *Cluster) stopProcess(name string, grace time.Duration) {
	c.mu.Lock()
	p := c.procs[name]
	c.mu.Unlock()
	if p == nil || p.exited() != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}
