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
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The node's pieces are looked for where hack/provision.sh --node looks
// (its tests in test/scripts use the same variables).
func TestFindTools(t *testing.T) {
	sbin, cni := t.TempDir(), t.TempDir()
	t.Setenv("PATH", "")
	t.Setenv("NODE_SBIN_PATH", sbin)
	t.Setenv("CNI_BIN_DIRS", filepath.Join(t.TempDir(), "none")+":"+cni)
	_, err := FindTools()
	if err == nil || !strings.Contains(err.Error(), "no containerd, containerd-shim-runc-v2, ctr, runc, nft, ip, nsenter, unshare, the CNI plugins (bridge, host-local, loopback): run hack/provision.sh --node") {
		t.Fatalf("with nothing there: %v", err)
	}
	for _, c := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "nft", "ip", "nsenter", "unshare"} {
		if err := os.WriteFile(filepath.Join(sbin, c), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"bridge", "host-local", "loopback"} {
		if err := os.WriteFile(filepath.Join(cni, p), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tools, err := FindTools()
	if err != nil {
		t.Fatal(err)
	}
	if tools.Runc != filepath.Join(sbin, "runc") || tools.CNIDir != cni {
		t.Errorf("found %+v", tools)
	}
}

func TestProcessIdentity(t *testing.T) {
	self := selfProc()
	if !self.alive() {
		t.Fatalf("this process (%+v) is not alive", self)
	}
	if (proc{PID: self.PID, Start: self.Start + 1}).alive() {
		t.Error("a PID with another start time counts as the same process")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if procOf(cmd.Process.Pid).alive() {
		t.Error("a process that exited counts as alive")
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/var/lib/a\040b\011c`); got != "/var/lib/a b\tc" {
		t.Errorf("got %q", got)
	}
}
