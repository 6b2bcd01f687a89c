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
	"fmt"
	"path/filepath"
	"strings"
)

// The configuration files of containerd, CNI, the kubelet and kube-proxy.
// Every setting that is not a default is here for a reason given beside it.

func (c *Cluster) containerdConfig() string {
	d := func(p string) string { return filepath.Join(c.Dir, p) }
	return fmt.Sprintf(`version = 2
# Its own root, state and socket: nothing of the machine's containerd (if
# any) is touched.
root = %q
state = %q
# Plugins that need what this node does not have or use.
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = %q

[plugins."io.containerd.grpc.v1.cri"]
  # Built locally (make image), never pulled.
  sandbox_image = %q
  # The kubelet asks for oom_score_adj -998; lowering it needs
  # CAP_SYS_RESOURCE, which this machine's root may lack. Without this every
  # sandbox fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  # Pod network namespaces are mounted under the state directory (in the
  # node's mount namespace), not in the machine's /run/netns.
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # The kubelet's cgroup driver is cgroupfs (no systemd here).
        SystemdCgroup = false
        BinaryName = %q
        Root = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, d("containerd/root"), d("containerd/state"), c.ContainerdSocket(), c.opts.PauseImage,
		c.tools.Runc, d("containerd/runc"), c.tools.CNIDir, d("cni/net.d"), d("containerd/opt"))
}

// cniConfig is the pod network: a bridge that is also the node's address
// (this kernel may have no dummy interface driver, and the API server must
// be reachable from pods), host-local addresses, no masquerading (nothing
// leaves the namespace).
func (c *Cluster) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "realnode",
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q, "rangeStart": "10.88.1.1", "rangeEnd": "10.88.255.254", "gateway": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    }
  ]
}
`, bridgeName, PodSubnet, NodeIP, filepath.Join(c.Dir, "cni/ipam"))
}

func (c *Cluster) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: %s
tlsPrivateKeyFile: %s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://%s
# No systemd: cgroupfs. This machine has cgroup v1 only, which 1.37 refuses
# unless told otherwise. The node's pods live under a cgroup of its own.
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupRoot: %s
# Lowering oom_score_adj needs CAP_SYS_RESOURCE.
oomScoreAdj: 0
failSwapOn: false
# No cluster DNS: pods get an empty resolv.conf (the operator needs none).
resolvConf: ""
podLogsDir: %s
# Only the locally imported images exist: never let disk pressure evict
# pods or garbage-collect them on a full CI disk.
evictionHard: {memory.available: "50Mi", nodefs.available: "1%%", imagefs.available: "1%%", nodefs.inodesFree: "1%%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# Faster status for a test: the node and pods report sooner.
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
fileCheckFrequency: 0s
registerNode: true
serializeImagePulls: false
`, NodeIP, c.pki.path("kubelet-serving.crt"), c.pki.path("kubelet-serving.key"), c.pki.path("ca.crt"),
		c.ContainerdSocket(), c.CgroupRoot, filepath.Join(c.Dir, "log/pods"))
}

func (c *Cluster) kubeProxyConfig() string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection:
  kubeconfig: %s
hostnameOverride: %s
clusterCIDR: %s
# Lowering oom_score_adj needs CAP_SYS_RESOURCE.
oomScoreAdj: 0
# nf_conntrack_max is the machine's, not the namespace's: leave every
# conntrack setting as it is.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
`, filepath.Join(c.Dir, "kube-proxy.kubeconfig"), NodeName, PodSubnet)
}

// auditPolicy logs, at Metadata level, what ServiceAccounts in the
// namespaces given do (the suite checks the operator's requests against its
// RBAC), and nothing else.
func auditPolicy(namespaces []string) string {
	var groups []string
	for _, ns := range namespaces {
		groups = append(groups, fmt.Sprintf("%q", "system:serviceaccounts:"+ns))
	}
	return fmt.Sprintf(`apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  userGroups: [%s]
- level: None
`, strings.Join(groups, ", "))
}
