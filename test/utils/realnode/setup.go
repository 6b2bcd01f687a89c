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
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// setUp creates the state directory, the namespaces, the cgroups and the
// certificates and configuration files.
func (c *Cluster) setUp() error {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return err
	}
	c.meta = meta{Owner: selfProc(), NetNS: c.NetNS, CgroupRoot: c.CgroupRoot}
	if err := c.saveMeta(); err != nil {
		return err
	}
	for _, d := range []string{"logs", "ns", "pki", "cni/net.d", "cni/ipam", "cni/cache", "containerd", "run-containerd",
		"log/pods", "log/containers", "kubelet", "sysctl", "etcd"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o700); err != nil {
			return err
		}
	}
	// The network namespace: loopback, the bridge with the node's address,
	// forwarding (pods reach the API server and each other through it).
	if err := c.run(c.tools.IP, "netns", "add", c.Name); err != nil {
		return err
	}
	c.meta.NetNSCreated = true
	if err := c.saveMeta(); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", bridgeName, "type", "bridge"},
		{"addr", "add", NodeIP + "/16", "dev", bridgeName},
		{"link", "set", bridgeName, "up"},
		// There is no default route: Services are reached through the
		// bridge (kube-proxy's output rules rewrite the address).
		{"route", "add", ServiceCIDR, "dev", bridgeName, "src", NodeIP},
	} {
		if err := c.run(c.tools.IP, append([]string{"-n", c.Name}, args...)...); err != nil {
			return err
		}
	}
	if err := c.run(c.tools.Nsenter, "--net="+c.NetNS, "--", "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"); err != nil {
		return err
	}
	if err := c.setUpMountNS(); err != nil {
		return fmt.Errorf("mount namespace: %w", err)
	}
	if err := createCgroup(c.CgroupRoot); err != nil {
		return fmt.Errorf("cgroup %s: %w", c.CgroupRoot, err)
	}

	var err error
	if c.pki, err = newPKI(filepath.Join(c.Dir, "pki")); err != nil {
		return err
	}
	if err := c.pki.writeAll(); err != nil {
		return err
	}
	server := fmt.Sprintf("https://%s:%d", NodeIP, APIServerPort)
	for _, cl := range clients {
		name := cl.file + ".kubeconfig"
		if err := os.WriteFile(filepath.Join(c.Dir, name), []byte(c.pki.kubeconfig(cl.file, server)), 0o600); err != nil {
			return err
		}
	}
	c.Kubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	files := map[string]string{
		"containerd.toml":              c.containerdConfig(),
		"cni/net.d/10-bridge.conflist": c.cniConfig(),
		"kubelet.yaml":                 c.kubeletConfig(),
		"kube-proxy.yaml":              c.kubeProxyConfig(),
		"audit-policy.yaml":            auditPolicy(c.opts.AuditNamespaces),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(c.Dir, name), []byte(data), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// The kernel settings the kubelet sets unless they have these values
// (pkg/kubelet/cm: setupKernelTunables). They are the machine's, not a
// namespace's: in the node's mount namespace the kubelet reads them from
// files that hold these values, so it changes nothing.
var kubeletSysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// hostDirs are mount points the node's mount namespace binds its own
// directories onto (so nothing is written into the machine's). They are
// created when missing (as installing and starting containerd and a kubelet
// would) and removed again by Stop if Start created them.
var hostDirs = map[string]string{
	"/run/containerd":     "run-containerd", // shim sockets
	"/var/lib/cni":        "cni/cache",      // the CNI library's result cache
	"/var/log/containers": "log/containers", // the kubelet's log symlinks
}

// setUpMountNS creates the node's mount namespace (a bind mount of it at
// <dir>/ns/mnt keeps it while no process is in it) and the mounts in it.
func (c *Cluster) setUpMountNS() error {
	nsDir := filepath.Join(c.Dir, "ns")
	// A namespace file can only be bind-mounted on a private mount.
	if err := syscall.Mount(nsDir, nsDir, "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", nsDir, err)
	}
	c.meta.NSDirMounted = true
	if err := c.saveMeta(); err != nil {
		return err
	}
	if err := syscall.Mount("", nsDir, "", syscall.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", nsDir, err)
	}
	mnt := filepath.Join(nsDir, "mnt")
	if err := os.WriteFile(mnt, nil, 0o600); err != nil {
		return err
	}
	if err := c.run(c.tools.Unshare, "--mount="+mnt, "--propagation", "private", "true"); err != nil {
		return err
	}
	c.meta.MountNS = mnt
	for host := range hostDirs {
		if _, err := os.Stat(host); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(host, 0o755); err != nil {
				return err
			}
			c.meta.CreatedDirs = append(c.meta.CreatedDirs, host)
		}
	}
	if err := c.saveMeta(); err != nil {
		return err
	}
	var script strings.Builder
	script.WriteString("set -e\n")
	for host, own := range hostDirs {
		fmt.Fprintf(&script, "mount --bind %q %q\n", filepath.Join(c.Dir, own), host)
	}
	for name, want := range kubeletSysctls {
		cur, err := os.ReadFile(filepath.Join("/proc/sys", name))
		if err != nil || strings.TrimSpace(string(cur)) == want {
			continue
		}
		f := filepath.Join(c.Dir, "sysctl", strings.ReplaceAll(name, "/", "."))
		if err := os.WriteFile(f, []byte(want+"\n"), 0o444); err != nil {
			return err
		}
		fmt.Fprintf(&script, "mount --bind %q %q\nmount -o remount,bind,ro %q\n", f, filepath.Join("/proc/sys", name), filepath.Join("/proc/sys", name))
	}
	return c.run(c.tools.Nsenter, "--mount="+mnt, "--", "sh", "-c", script.String())
}

// run runs a command to completion; its output goes into the error.
func (c *Cluster) run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
