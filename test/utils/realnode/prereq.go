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
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Tools are the machine's commands and CNI plugins a node runs with.
type Tools struct {
	Containerd, Shim, Ctr, Runc, Nft, IP, Nsenter, Unshare string
	CNIDir                                                 string
}

// FindTools looks for the node's commands as hack/provision.sh --node does:
// on PATH, then in NODE_SBIN_PATH (default
// /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin); the CNI
// plugins in the first directory of CNI_BIN_DIRS (default
// /usr/lib/cni:/opt/cni/bin) that has bridge, host-local and loopback. The
// error names what is missing and how to get it.
func FindTools() (Tools, error) {
	sbin, ok := os.LookupEnv("NODE_SBIN_PATH")
	if !ok {
		sbin = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	dirs := filepath.SplitList(os.Getenv("PATH") + ":" + sbin)
	var t Tools
	var missing []string
	for _, c := range []struct {
		name string
		dst  *string
	}{
		{"containerd", &t.Containerd}, {"containerd-shim-runc-v2", &t.Shim}, {"ctr", &t.Ctr},
		{"runc", &t.Runc}, {"nft", &t.Nft}, {"ip", &t.IP}, {"nsenter", &t.Nsenter}, {"unshare", &t.Unshare},
	} {
		for _, d := range dirs {
			p := filepath.Join(d, c.name)
			if fi, err := os.Stat(p); d != "" && err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				*c.dst = p
				break
			}
		}
		if *c.dst == "" {
			missing = append(missing, c.name)
		}
	}
	cniDirs, ok := os.LookupEnv("CNI_BIN_DIRS")
	if !ok {
		cniDirs = "/usr/lib/cni:/opt/cni/bin"
	}
	for _, d := range filepath.SplitList(cniDirs) {
		all := d != ""
		for _, p := range []string{"bridge", "host-local", "loopback"} {
			if _, err := os.Stat(filepath.Join(d, p)); err != nil {
				all = false
			}
		}
		if all {
			t.CNIDir = d
			break
		}
	}
	if t.CNIDir == "" {
		missing = append(missing, "the CNI plugins (bridge, host-local, loopback)")
	}
	if len(missing) > 0 {
		return t, fmt.Errorf("no %s: run hack/provision.sh --node as root (Debian: containerd, runc, containernetworking-plugins, nftables, iproute2)", strings.Join(missing, ", "))
	}
	return t, nil
}

// Binaries are the cluster's own binaries: the control plane from bin/k8s
// (make envtest) and the node from bin/node (make node).
type Binaries struct {
	Etcd, APIServer, Kubectl                                 string
	Kubelet, KubeProxy, KubeControllerManager, KubeScheduler string
}

// FindBinaries returns the binaries under root/bin, or an error that says
// which make target builds what is missing.
func FindBinaries(root string) (Binaries, error) {
	k8s, node := filepath.Join(root, "bin", "k8s"), filepath.Join(root, "bin", "node")
	b := Binaries{
		Etcd: filepath.Join(k8s, "etcd"), APIServer: filepath.Join(k8s, "kube-apiserver"), Kubectl: filepath.Join(k8s, "kubectl"),
		Kubelet: filepath.Join(node, "kubelet"), KubeProxy: filepath.Join(node, "kube-proxy"),
		KubeControllerManager: filepath.Join(node, "kube-controller-manager"), KubeScheduler: filepath.Join(node, "kube-scheduler"),
	}
	var errs []error
	for _, p := range []string{b.Etcd, b.APIServer, b.Kubectl} {
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, fmt.Errorf("%s not found: run `make envtest`", p))
		}
	}
	for _, p := range []string{b.Kubelet, b.KubeProxy, b.KubeControllerManager, b.KubeScheduler} {
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, fmt.Errorf("%s not found: run `make node` (~4 min after the control plane)", p))
		}
	}
	return b, errors.Join(errs...)
}

// Usable says why this machine cannot run a node, or nil: it needs root
// (containerd, the kubelet and the namespaces) and the tools above.
func Usable() error {
	if os.Geteuid() != 0 {
		return errors.New("not root (a real node runs containerd, a kubelet and network and mount namespaces of its own): run as root, e.g. sudo make test-node")
	}
	_, err := FindTools()
	return err
}
