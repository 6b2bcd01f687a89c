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
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// meta is what teardown needs to know about a node, kept in <dir>/meta.json
// from the moment each thing exists, so that a run that was killed can be
// cleaned up by the next.
type meta struct {
	Owner        proc     `json:"owner"` // the process that started the node
	PIDs         []proc   `json:"pids"`  // the components it started
	NetNS        string   `json:"netns"`
	NetNSCreated bool     `json:"netnsCreated"`
	NSDirMounted bool     `json:"nsDirMounted"`
	MountNS      string   `json:"mountns"`
	CgroupRoot   string   `json:"cgroupRoot"`
	CreatedDirs  []string `json:"createdDirs"`
}

// proc names a process by PID and start time, so that a PID the kernel
// gave to another process since is never killed.
type proc struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

func selfProc() proc { return procOf(os.Getpid()) }

func procOf(pid int) proc { return proc{PID: pid, Start: startTime(pid)} }

// startTime is field 22 of /proc/PID/stat, or 0.
func startTime(pid int) uint64 {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; it ends at the last ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return 0
	}
	n, _ := strconv.ParseUint(fields[19], 10, 64)
	return n
}

// alive reports whether p is still the process it was.
func (p proc) alive() bool {
	return p.PID > 0 && p.Start != 0 && startTime(p.PID) == p.Start
}

func (c *Cluster) saveMeta() error {
	data, err := json.MarshalIndent(c.meta, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(c.Dir, "meta.json.tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(c.Dir, "meta.json"))
}

// CleanupStale tears down every node under StateBase whose owner is gone
// (a run that was killed or timed out) and returns how many it found.
func CleanupStale(logf func(string, ...any)) (int, error) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	entries, err := os.ReadDir(StateBase)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(StateBase, e.Name())
		m := meta{NetNS: filepath.Join("/run/netns", e.Name()), NetNSCreated: true, CgroupRoot: "/" + e.Name(),
			MountNS: filepath.Join(dir, "ns", "mnt"), NSDirMounted: true}
		if data, err := os.ReadFile(filepath.Join(dir, "meta.json")); err == nil {
			if err := json.Unmarshal(data, &m); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", dir, err))
				continue
			}
		}
		if m.Owner.alive() {
			continue // a node that is running
		}
		n++
		logf("tearing down %s, left by process %d", dir, m.Owner.PID)
		if err := teardown(m, dir, logf); err != nil {
			errs = append(errs, err)
		}
	}
	return n, errors.Join(errs...)
}

// teardown removes what meta names, in order: the processes (by PID), the
// mount namespace, the cgroups, the network namespace, the directories.
// Each step runs even if an earlier one failed.
func teardown(m meta, dir string, logf func(string, ...any)) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(killAll(m, dir, logf))
	if m.MountNS != "" {
		add(detach(m.MountNS))
	}
	if m.NSDirMounted {
		add(detach(filepath.Join(dir, "ns")))
	}
	add(detachUnder(dir))
	if m.CgroupRoot != "" {
		add(removeCgroup(m.CgroupRoot))
	}
	if m.NetNSCreated {
		if _, err := os.Stat(m.NetNS); err == nil {
			ip := "ip"
			if t, _ := FindTools(); t.IP != "" {
				ip = t.IP
			}
			if out, err := exec.Command(ip, "netns", "delete", filepath.Base(m.NetNS)).CombinedOutput(); err != nil {
				add(fmt.Errorf("ip netns delete %s: %w: %s", filepath.Base(m.NetNS), err, strings.TrimSpace(string(out))))
			}
		}
	}
	// The mount points this node created, if empty and no other node is
	// running: another node's mount namespace may have its own directories
	// mounted on them.
	if !otherNodeRunning(dir) {
		for _, d := range slices.Backward(m.CreatedDirs) {
			_ = syscall.Rmdir(d)
		}
	}
	if len(errs) == 0 {
		add(os.RemoveAll(dir))
	}
	return errors.Join(errs...)
}

// otherNodeRunning reports whether a node other than the one in dir is
// running (its owner is alive).
func otherNodeRunning(dir string) bool {
	entries, _ := os.ReadDir(StateBase)
	for _, e := range entries {
		other := filepath.Join(StateBase, e.Name())
		if other == dir {
			continue
		}
		var m meta
		if data, err := os.ReadFile(filepath.Join(other, "meta.json")); err == nil && json.Unmarshal(data, &m) == nil && m.Owner.alive() {
			return true
		}
	}
	return false
}

// killAll SIGKILLs, until none is left (10s at most): the components
// (recorded PIDs), every process in the node's cgroups (the containers) and
// every process in its mount namespace (containerd, its shims, the kubelet,
// kube-proxy).
func killAll(m meta, dir string, logf func(string, ...any)) error {
	var mntIno uint64
	if m.MountNS != "" {
		var st unix.Stat_t
		if err := unix.Stat(m.MountNS, &st); err == nil && st.Dev != 0 {
			// A bind-mounted namespace file is on nsfs; an unmounted one is
			// the empty file under dir, whose inode no process has.
			if fs := new(unix.Statfs_t); unix.Statfs(m.MountNS, fs) == nil && fs.Type == unix.NSFS_MAGIC {
				mntIno = st.Ino
			}
		}
	}
	self := os.Getpid()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pids := map[int]bool{}
		for _, p := range m.PIDs {
			if p.alive() {
				pids[p.PID] = true
			}
		}
		if m.CgroupRoot != "" {
			for _, pid := range cgroupPIDs(m.CgroupRoot) {
				pids[pid] = true
			}
		}
		if mntIno != 0 {
			for _, pid := range mountNSPIDs(mntIno) {
				pids[pid] = true
			}
		}
		delete(pids, self)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes of %s still there after 10s: %v", dir, keys(pids))
		}
		for pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func keys(m map[int]bool) []int {
	var out []int
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// mountNSPIDs lists the processes whose mount namespace has inode ino.
func mountNSPIDs(ino uint64) []int {
	entries, _ := os.ReadDir("/proc")
	want := fmt.Sprintf("mnt:[%d]", ino)
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if link, err := os.Readlink(filepath.Join("/proc", e.Name(), "ns", "mnt")); err == nil && link == want {
			out = append(out, pid)
		}
	}
	return out
}

// detach unmounts p lazily if it is a mount point.
func detach(p string) error {
	if !isMountPoint(p) {
		return nil
	}
	if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount %s: %w", p, err)
	}
	return nil
}

// detachUnder unmounts whatever is still mounted under dir (deepest first).
func detachUnder(dir string) error {
	var errs []error
	mounts := mountPoints()
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, mp := range mounts {
		if strings.HasPrefix(mp, dir+"/") || mp == dir {
			if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
			}
		}
	}
	return errors.Join(errs...)
}

// mountPoints lists this mount namespace's mount points.
func mountPoints() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 {
			out = append(out, unescapeMount(fields[4]))
		}
	}
	return out
}

func isMountPoint(p string) bool { return slices.Contains(mountPoints(), p) }

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupMounts lists the cgroup hierarchies' mount points (v1 controllers,
// the named systemd hierarchy, the v2 unified one).
func cgroupMounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer func() { _ = f.Close() }()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		_, post, ok := strings.Cut(line, " - ")
		fields := strings.Fields(line)
		if !ok || len(fields) < 5 {
			continue
		}
		if fs := strings.Fields(post); len(fs) > 0 && (fs[0] == "cgroup" || fs[0] == "cgroup2") {
			out = append(out, unescapeMount(fields[4]))
		}
	}
	return out
}

// createCgroup creates root in every hierarchy (the kubelet wants its
// --cgroup-root to exist in all of them). A v1 cpuset cgroup starts with no
// CPUs and no memory nodes: it gets its parent's.
func createCgroup(root string) error {
	for _, mp := range cgroupMounts() {
		d := filepath.Join(mp, root)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			parent, err := os.ReadFile(filepath.Join(mp, f))
			if err != nil {
				continue // not the cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(d, f), parent, 0o644); err != nil {
				return fmt.Errorf("%s: %w", filepath.Join(d, f), err)
			}
		}
	}
	return nil
}

// cgroupPIDs lists the processes in root and below, in every hierarchy.
func cgroupPIDs(root string) []int {
	seen := map[int]bool{}
	for _, mp := range cgroupMounts() {
		_ = filepath.WalkDir(filepath.Join(mp, root), func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			if err != nil {
				return nil
			}
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	return keys(seen)
}

// removeCgroup removes root and everything below it in every hierarchy,
// deepest first (a cgroup directory goes with rmdir once it has no
// processes and no children).
func removeCgroup(root string) error {
	var errs []error
	for _, mp := range cgroupMounts() {
		top := filepath.Join(mp, root)
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for _, d := range slices.Backward(dirs) {
			var err error
			for range 50 { // a killed process may take a moment to leave
				if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
					err = nil
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("rmdir %s: %w", d, err))
			}
		}
	}
	return errors.Join(errs...)
}
