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

// Package realnode runs a real single-node Kubernetes cluster on this
// machine, for the real-node suite (test/node) and `make run NODE=1`
// (hack/localup): etcd and kube-apiserver from bin/k8s, kubelet,
// kube-proxy, kube-controller-manager and kube-scheduler from bin/node,
// and the machine's containerd, runc and CNI plugins (hack/provision.sh
// --node). Images are imported from OCI archives (make image), never pulled.
//
// Nothing of the machine's own configuration is changed:
//   - every process runs inside a network namespace of its own
//     (/run/netns/<name>), where the node's address sits on the pod bridge
//     and kube-proxy writes its nftables rules; every server listens there;
//   - containerd, the kubelet and kube-proxy also run in a mount namespace of
//     their own: every mount they make (container root filesystems, volumes,
//     pod network namespaces) lives and dies with it; /run/containerd,
//     /var/lib/cni and /var/log/containers are bind mounts of directories
//     under the state directory there, and the kernel settings the kubelet
//     would otherwise change machine-wide (vm.overcommit_memory,
//     kernel.panic, kernel.panic_on_oops, ...) are files holding the values
//     it wants;
//   - the pods' cgroups are under a cgroup of the node's own (/<name>).
//
// Stop tears everything down: processes by PID (the ones it started, those
// in the node's cgroup and those in its mount namespace: containerd's shims
// and the containers), the namespaces, the cgroups, the state directory. A
// run that could not (killed, timed out) is cleaned up by the next Start, or
// by CleanupStale.
package realnode

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// The node's addresses, inside its network namespace.
const (
	NodeName            = "realnode"
	NodeIP              = "10.88.0.1"
	PodSubnet           = "10.88.0.0/16"
	ServiceCIDR         = "10.96.0.0/16"
	KubernetesServiceIP = "10.96.0.1"
	APIServerPort       = 6443
	bridgeName          = "cni0"
	etcdPort            = 2379
)

// StateBase holds one directory per node (<name>), removed by Stop.
const StateBase = "/var/lib/registry-auth-node"

// Options configure Start.
type Options struct {
	// Root is the repository root: binaries in bin/k8s and bin/node.
	Root string
	// Name names the network namespace, the state directory and the cgroup;
	// default rauth-node-<pid>.
	Name string
	// Images are OCI archives (make image) imported before the kubelet
	// starts.
	Images []string
	// PauseImage is the sandbox image's name (one of Images).
	PauseImage string
	// AuditNamespaces: the API server keeps an audit log (AuditLog) of what
	// the ServiceAccounts of these namespaces do.
	AuditNamespaces []string
	// Log receives progress lines; nil discards them.
	Log func(format string, args ...any)
}

// Cluster is a running node. Its fields are read-only.
type Cluster struct {
	Name       string
	Dir        string // state directory
	NetNS      string // /run/netns/<Name>
	CgroupRoot string // the kubelet's --cgroup-root: /<Name>
	// Kubeconfig is an admin (system:masters) kubeconfig for
	// https://NodeIP:6443, reachable inside the namespace only: through
	// Dialer, RestConfig, Command and Kubectl.
	Kubeconfig string
	Dialer     *Dialer
	// Timings of Start's phases, for the suite's report.
	Timings []Timing

	opts  Options
	tools Tools
	bins  Binaries
	pki   *pki
	meta  meta

	mu    sync.Mutex
	procs map[string]*process
}

// Timing is how long a phase of Start took.
type Timing struct {
	Phase string
	Took  time.Duration
}

func (c *Cluster) logf(format string, args ...any) {
	if c.opts.Log != nil {
		c.opts.Log(format, args...)
	}
}

// ContainerdSocket is the node's containerd socket.
func (c *Cluster) ContainerdSocket() string {
	return filepath.Join(c.Dir, "containerd", "containerd.sock")
}

// AuditLog is the API server's audit log (Options.AuditNamespaces).
func (c *Cluster) AuditLog() string { return filepath.Join(c.Dir, "logs", "audit.log") }

// LogFile is the log of a component: etcd, kube-apiserver, containerd,
// kube-controller-manager, kube-scheduler, kubelet, kube-proxy.
func (c *Cluster) LogFile(component string) string {
	return filepath.Join(c.Dir, "logs", component+".log")
}

// Start brings the node up, from nothing to a Ready node with the images
// imported. On error everything started so far is torn down.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if err := Usable(); err != nil {
		return nil, err
	}
	tools, _ := FindTools()
	bins, err := FindBinaries(opts.Root)
	if err != nil {
		return nil, err
	}
	if opts.Name == "" {
		opts.Name = fmt.Sprintf("rauth-node-%d", os.Getpid())
	}
	c := &Cluster{
		Name:       opts.Name,
		Dir:        filepath.Join(StateBase, opts.Name),
		NetNS:      filepath.Join("/run/netns", opts.Name),
		CgroupRoot: "/" + opts.Name,
		opts:       opts,
		tools:      tools,
		bins:       bins,
		procs:      map[string]*process{},
	}
	c.Dialer = NewDialer(c.NetNS)
	if n, err := CleanupStale(c.logf); err != nil {
		return nil, fmt.Errorf("cleaning up after an earlier run: %w", err)
	} else if n > 0 {
		c.logf("cleaned up %d node(s) an earlier run left behind", n)
	}
	defer func() {
		if err != nil {
			c.logf("start failed (%v); tearing down", err)
			if serr := c.Stop(); serr != nil {
				c.logf("teardown: %v", serr)
			}
		}
	}()
	phase := func(name string, f func() error) error {
		start := time.Now()
		if err := f(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		c.Timings = append(c.Timings, Timing{name, time.Since(start)})
		c.logf("%s: %s", name, time.Since(start).Round(time.Millisecond))
		return nil
	}
	if err := phase("namespaces, cgroups and certificates", c.setUp); err != nil {
		return nil, err
	}
	if err := phase("etcd and kube-apiserver", func() error { return c.startControlPlane(ctx) }); err != nil {
		return nil, err
	}
	if err := phase("containerd and image import", func() error { return c.startContainerd(ctx) }); err != nil {
		return nil, err
	}
	if err := phase("controller-manager, scheduler, kubelet and kube-proxy up, node Ready", func() error { return c.startNode(ctx) }); err != nil {
		return nil, err
	}
	return c, nil
}

// HTTPClient returns a client that connects inside the namespace,
// authenticated as the admin when admin is set (it trusts the cluster CA).
func (c *Cluster) HTTPClient(admin bool) *http.Client {
	tr := &http.Transport{DialContext: c.Dialer.DialContext, DisableKeepAlives: true}
	pool := x509.NewCertPool()
	if ca, err := os.ReadFile(c.pki.path("ca.crt")); err == nil {
		pool.AppendCertsFromPEM(ca)
	}
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if admin {
		if cert, err := tls.LoadX509KeyPair(c.pki.path("admin.crt"), c.pki.path("admin.key")); err == nil {
			tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
		}
	}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}
}

func httpOK(cl *http.Client, url string) error {
	resp, err := cl.Get(url)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// RestConfig is an admin client configuration that dials inside the
// namespace.
func (c *Cluster) RestConfig() (*rest.Config, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.Dial = c.Dialer.DialContext
	return cfg, nil
}

// Command returns a command that runs inside the node's network namespace.
func (c *Cluster) Command(name string, args ...string) *exec.Cmd {
	return exec.Command(c.tools.Nsenter, append([]string{"--net=" + c.NetNS, "--", name}, args...)...)
}

// Kubectl returns bin/k8s/kubectl with the admin kubeconfig, inside the
// namespace.
func (c *Cluster) Kubectl(args ...string) *exec.Cmd {
	return c.Command(c.bins.Kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
}

// KubectlPath is the kubectl Kubectl runs.
func (c *Cluster) KubectlPath() string { return c.bins.Kubectl }

// NsenterPath is the nsenter Command runs.
func (c *Cluster) NsenterPath() string { return c.tools.Nsenter }

// Stop tears the node down: components, containers, shims, namespaces,
// cgroups, the state directory. It can be called more than once.
func (c *Cluster) Stop() error {
	var errs []error
	// The kubelet first, so that it restarts nothing while the rest goes.
	for _, name := range []string{"kubelet", "kube-proxy", "kube-scheduler", "kube-controller-manager"} {
		c.stopProcess(name, 5*time.Second)
	}
	errs = append(errs, teardown(c.meta, c.Dir, c.logf))
	// teardown killed the rest; wait until they are reaped.
	for _, name := range []string{"containerd", "kube-apiserver", "etcd"} {
		c.stopProcess(name, 5*time.Second)
	}
	return errors.Join(errs...)
}

// CopyLogs copies the components' logs (and the audit log) into dst, e.g.
// before Stop when a test failed.
func (c *Cluster) CopyLogs(dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(c.Dir, "logs"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(c.Dir, "logs", e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// ContainerPIDs returns the processes of a container (its ID as in a pod's
// containerStatuses, with or without the containerd:// prefix), found in
// the node's cgroups: the kubelet's cgroupfs layout puts each container in
// .../kubepods/<qos>/pod<uid>/<id>.
func (c *Cluster) ContainerPIDs(containerID string) ([]int, error) {
	id := strings.TrimPrefix(containerID, "containerd://")
	var found []int
	for _, mp := range cgroupMounts() {
		_ = filepath.WalkDir(filepath.Join(mp, c.CgroupRoot), func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() || d.Name() != id || found != nil {
				return nil
			}
			data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			if err != nil {
				return nil
			}
			for _, f := range strings.Fields(string(data)) {
				var pid int
				if _, err := fmt.Sscan(f, &pid); err == nil {
					found = append(found, pid)
				}
			}
			return filepath.SkipAll
		})
		if found != nil {
			return found, nil
		}
	}
	return nil, fmt.Errorf("no cgroup named %s under %s", id, c.CgroupRoot)
}
