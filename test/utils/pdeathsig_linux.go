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

package utils

// envtest starts etcd and kube-apiserver in their own process group and gives
// no way to set their parent-death signal, so a test binary that panics, times
// out or is killed leaves both running. To tie them to the process that
// started them, NewEnvironment points envtest at symlinks named etcd and
// kube-apiserver that lead back to the running binary itself. Started under
// such a name (and with the environment below), any binary importing this
// package sets PR_SET_PDEATHSIG to SIGKILL in init and execs the real program;
// the setting survives exec.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

const (
	wrapEnvPrefix    = "REGISTRY_AUTH_ENVTEST_WRAP_"
	wrapParentPIDEnv = wrapEnvPrefix + "PARENT_PID"
)

// wrapRealEnv is the variable holding the real path of the named binary.
func wrapRealEnv(name string) string {
	return wrapEnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

func init() {
	name := filepath.Base(os.Args[0])
	if name != "etcd" && name != "kube-apiserver" {
		return
	}
	target := os.Getenv(wrapRealEnv(name))
	if target == "" {
		return
	}
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "envtest %s wrapper: "+format+"\n", append([]any{name}, args...)...)
		os.Exit(1)
	}
	// The parent-death signal belongs to the calling thread; exec must run
	// on the same one.
	runtime.LockOSThread()
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0); errno != 0 {
		fail("prctl(PR_SET_PDEATHSIG): %v", errno)
	}
	// The parent may have died before the prctl.
	if want := os.Getenv(wrapParentPIDEnv); want != "" && want != strconv.Itoa(os.Getppid()) {
		fail("parent %s is gone", want)
	}
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, wrapEnvPrefix) {
			env = append(env, kv)
		}
	}
	if err := syscall.Exec(target, append([]string{target}, os.Args[1:]...), env); err != nil {
		fail("exec %s: %v", target, err)
	}
}

// tieControlPlaneToProcess makes env run etcd and kube-apiserver through the
// wrapper above. On any error it leaves env as it is: the control plane then
// runs, untied, as envtest starts it.
func tieControlPlaneToProcess(env *envtest.Environment) {
	self, err := os.Executable()
	if err != nil {
		return
	}
	// Next to the binary: for `go test` and `go run` that is their temporary
	// build directory, which the go command removes.
	dir := filepath.Join(filepath.Dir(self), ".envtest-wrap")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	links := map[string]string{}
	for _, name := range []string{"etcd", "kube-apiserver"} {
		link := filepath.Join(dir, name)
		if cur, err := os.Readlink(link); err != nil || cur != self {
			_ = os.Remove(link)
			if err := os.Symlink(self, link); err != nil {
				return
			}
		}
		links[name] = link
	}
	for _, name := range []string{"etcd", "kube-apiserver"} {
		// envtest's own per-binary override, TEST_ASSET_<NAME>, still wins.
		target := os.Getenv("TEST_ASSET_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")))
		if target == "" {
			target = filepath.Join(env.BinaryAssetsDirectory, name)
		}
		if err := os.Setenv(wrapRealEnv(name), target); err != nil {
			return
		}
	}
	if err := os.Setenv(wrapParentPIDEnv, strconv.Itoa(os.Getpid())); err != nil {
		return
	}
	if env.ControlPlane.Etcd == nil {
		env.ControlPlane.Etcd = &envtest.Etcd{}
	}
	env.ControlPlane.Etcd.Path = links["etcd"]
	env.ControlPlane.GetAPIServer().Path = links["kube-apiserver"]
}

// DieWithTest makes a child process the tests start get SIGKILL when the
// test process dies, even when it is killed, so no binary or nginx outlives
// a crashed or timed-out test run.
func DieWithTest(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
