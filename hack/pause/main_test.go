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

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var pauseBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pause-")
	if err != nil {
		panic(err)
	}
	pauseBin = filepath.Join(dir, "pause")
	build := exec.Command("go", "build", "-o", pauseBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building pause: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// wait waits up to d for cmd to exit.
func wait(t *testing.T, cmd *exec.Cmd, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("pause did not exit within %s", d)
		return nil
	}
}

func TestExitsZeroOnSIGTERMAndSIGINT(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(pauseBin)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // the handler is installed first thing
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		if err := wait(t, cmd, 5*time.Second); err != nil {
			t.Errorf("after %s: %v, want exit status 0", sig, err)
		}
	}
}

func TestRefusesArguments(t *testing.T) {
	err := exec.Command(pauseBin, "x").Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Errorf("with an argument: %v, want exit status 2", err)
	}
}

// TestReapsOrphans runs pause as PID 1 of a new PID namespace (as in a pod
// that shares its process namespace), leaves an orphan in it, and checks
// that no zombie stays behind once the orphan has exited. Needs root.
func TestReapsOrphans(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a new PID namespace)")
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Skip("needs nsenter (util-linux)")
	}
	cmd := exec.Command(pauseBin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	time.Sleep(200 * time.Millisecond)
	// sh starts sleep in the background and exits at once: sleep becomes
	// an orphan, and PID 1 of the namespace (pause) its parent.
	out, err := exec.Command(nsenter, "--target", strconv.Itoa(pid), "--pid", "--", "sh", "-c", "sleep 60 >/dev/null 2>&1 & exit 0").CombinedOutput()
	if err != nil {
		t.Fatalf("nsenter: %v: %s", err, out)
	}
	var orphan []string
	poll(t, "the orphan to become pause's child", func() bool { orphan = children(t, pid); return len(orphan) == 1 })
	opid, _ := strconv.Atoi(strings.Fields(orphan[0])[0])
	if err := syscall.Kill(opid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Killed, it is a zombie until its parent waits for it.
	poll(t, "pause to reap the orphan it adopted", func() bool { return len(children(t, pid)) == 0 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, cmd, 5*time.Second); err != nil {
		t.Errorf("as PID 1, after SIGTERM: %v, want exit status 0", err)
	}
}

// poll waits up to 10s for cond.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within 10s", what)
		}
	}
}

// children lists the processes whose parent is pid, with their state.
func children(t *testing.T, pid int) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, e.Name()+" "+f[0])
		}
	}
	return out
}
