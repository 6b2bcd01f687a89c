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
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// builder follows a stage's instructions: layers and the config.
type builder struct {
	ctxDir   string
	stages   map[string][2]string
	caBundle string
	epoch    time.Time

	layers  [][]entry
	history []string // one per layer, what made it
	exists  map[string]bool
	isDir   map[string]bool
	cfg     v1.Config
}

func (b *builder) follow(stage []instruction) error {
	b.exists, b.isDir = map[string]bool{"/": true}, map[string]bool{"/": true}
	for _, ins := range stage {
		if err := b.apply(ins); err != nil {
			return fmt.Errorf("line %d: %s: %w", ins.line, ins.cmd, err)
		}
	}
	return nil
}

func (b *builder) apply(ins instruction) error {
	noFlags := func() error {
		if len(ins.flags) > 0 {
			return fmt.Errorf("flags %v are not supported", ins.flags)
		}
		return nil
	}
	switch ins.cmd {
	case "FROM":
		if err := noFlags(); err != nil {
			return err
		}
		fields := strings.Fields(ins.args)
		if len(fields) != 1 && (len(fields) != 3 || !strings.EqualFold(fields[1], "AS")) {
			return fmt.Errorf("want FROM IMAGE [AS NAME], got %q", ins.args)
		}
		bs, err := baseFor(fields[0], b.caBundle)
		if err != nil {
			return err
		}
		b.cfg = v1.Config{User: bs.user, WorkingDir: bs.workingDir, Env: bs.env}
		if len(bs.entries) > 0 {
			b.addLayer(bs.entries, "FROM "+fields[0]+" (written by hack/tools/image)")
		}
	case "WORKDIR":
		if err := noFlags(); err != nil {
			return err
		}
		wd := b.resolve(ins.args)
		b.cfg.WorkingDir = wd
		if !b.exists[wd] {
			b.addLayer(b.parents(wd+"/x"), "WORKDIR "+wd)
		}
	case "USER":
		if err := noFlags(); err != nil {
			return err
		}
		if ins.args == "" {
			return errors.New("no user")
		}
		b.cfg.User = ins.args
	case "ENV":
		if err := noFlags(); err != nil {
			return err
		}
		return b.env(ins.args)
	case "LABEL":
		if err := noFlags(); err != nil {
			return err
		}
		return b.labels(ins.args)
	case "EXPOSE":
		if err := noFlags(); err != nil {
			return err
		}
		if b.cfg.ExposedPorts == nil {
			b.cfg.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range strings.Fields(ins.args) {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			b.cfg.ExposedPorts[p] = struct{}{}
		}
	case "ENTRYPOINT":
		argv, err := execForm(ins)
		if err != nil {
			return err
		}
		// As docker does: a new ENTRYPOINT drops the CMD the base set.
		b.cfg.Entrypoint, b.cfg.Cmd = argv, nil
	case "CMD":
		argv, err := execForm(ins)
		if err != nil {
			return err
		}
		b.cfg.Cmd = argv
	case "COPY":
		return b.copy(ins)
	default:
		return fmt.Errorf("not supported by hack/tools/image (it follows FROM, WORKDIR, COPY, USER, ENV, LABEL, EXPOSE, ENTRYPOINT and CMD in the last stage; RUN would need a container engine)")
	}
	return nil
}

// resolve makes p absolute against the working directory.
func (b *builder) resolve(p string) string {
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	return path.Join(b.cfg.WorkingDir, p)
}

// parents returns the directories (0755 root) missing above p.
func (b *builder) parents(p string) []entry {
	var out []entry
	for d := path.Dir(p); !b.exists[d]; d = path.Dir(d) {
		out = append([]entry{dir(d, 0o755, 0, 0)}, out...)
	}
	return out
}

func (b *builder) addLayer(entries []entry, createdBy string) {
	for _, e := range entries {
		b.exists[e.path] = true
		b.isDir[e.path] = e.dir
	}
	b.layers = append(b.layers, entries)
	b.history = append(b.history, createdBy)
}

func (b *builder) env(args string) error {
	// ENV K=V [K2=V2 ...] or the old ENV K V.
	if k, v, ok := strings.Cut(args, " "); ok && !strings.Contains(k, "=") {
		b.setEnv(k, strings.TrimSpace(v))
		return nil
	}
	for _, kv := range strings.Fields(args) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q (quoting is not supported)", kv)
		}
		b.setEnv(k, v)
	}
	return nil
}

func (b *builder) setEnv(k, v string) {
	for i, kv := range b.cfg.Env {
		if strings.HasPrefix(kv, k+"=") {
			b.cfg.Env[i] = k + "=" + v
			return
		}
	}
	b.cfg.Env = append(b.cfg.Env, k+"="+v)
}

func (b *builder) labels(args string) error {
	if b.cfg.Labels == nil {
		b.cfg.Labels = map[string]string{}
	}
	for _, kv := range strings.Fields(args) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Errorf("want KEY=VALUE, got %q", kv)
		}
		b.cfg.Labels[k] = strings.Trim(v, `"`)
	}
	return nil
}

// copy follows COPY [--from=STAGE] [--chown=UID:GID] [--chmod=MODE] SRC...
// DEST for regular files, as docker does: the file keeps its permission
// bits (unless --chmod), belongs to 0:0 (unless --chown), and goes into
// DEST when DEST ends with a slash or is a directory.
func (b *builder) copy(ins instruction) error {
	uid, gid, chmod := 0, 0, int64(-1)
	var srcRoot, srcDirIn string
	for k, v := range ins.flags {
		switch k {
		case "from":
			s, ok := b.stages[v]
			if !ok {
				return fmt.Errorf("--from=%s: no -stage %s:DIR=LOCALDIR given", v, v)
			}
			srcDirIn, srcRoot = s[0], s[1]
		case "chown":
			u, g, ok := strings.Cut(v, ":")
			if !ok {
				g = u
			}
			var err1, err2 error
			uid, err1 = strconv.Atoi(u)
			gid, err2 = strconv.Atoi(g)
			if err1 != nil || err2 != nil {
				return fmt.Errorf("--chown=%s: numeric UID:GID only", v)
			}
		case "chmod":
			m, err := strconv.ParseUint(v, 8, 32)
			if err != nil {
				return fmt.Errorf("--chmod=%s: %w", v, err)
			}
			chmod = int64(m)
		default:
			return fmt.Errorf("flag --%s is not supported", k)
		}
	}
	fields := strings.Fields(ins.args)
	if strings.HasPrefix(ins.args, "[") {
		return errors.New("the JSON form of COPY is not supported")
	}
	if len(fields) < 2 {
		return fmt.Errorf("want SRC... DEST, got %q", ins.args)
	}
	srcs, dest := fields[:len(fields)-1], fields[len(fields)-1]
	destPath := b.resolve(dest)
	intoDir := strings.HasSuffix(dest, "/") || dest == "." || b.isDir[destPath] || len(srcs) > 1
	var entries []entry
	for _, src := range srcs {
		local, err := b.localSource(src, srcRoot, srcDirIn)
		if err != nil {
			return err
		}
		st, err := os.Stat(local)
		if err != nil {
			return err
		}
		if !st.Mode().IsRegular() {
			return fmt.Errorf("%s (%s) is not a regular file; only files are supported", src, local)
		}
		target := destPath
		if intoDir {
			target = path.Join(destPath, path.Base(src))
		}
		mode := unixMode(st.Mode())
		if chmod >= 0 {
			mode = chmod
		}
		entries = append(entries, b.parents(target)...)
		entries = append(entries, entry{path: target, mode: mode, uid: uid, gid: gid, src: local})
	}
	b.addLayer(entries, "COPY "+ins.args)
	return nil
}

// unixMode is m's permission, setuid, setgid and sticky bits as Unix mode
// bits.
func unixMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// localSource maps a COPY source to a file here: under the context, or
// under a stage's local directory.
func (b *builder) localSource(src, root, dirIn string) (string, error) {
	if root == "" {
		if path.IsAbs(src) || strings.HasPrefix(path.Clean(src), "..") {
			return "", fmt.Errorf("%s is outside the build context", src)
		}
		return filepath.Join(b.ctxDir, filepath.FromSlash(path.Clean(src))), nil
	}
	rel, err := filepath.Rel(dirIn, path.Clean(src))
	if err != nil || strings.HasPrefix(rel, "..") || !path.IsAbs(src) {
		return "", fmt.Errorf("%s is not under %s, the stage directory given with -stage", src, dirIn)
	}
	return filepath.Join(root, filepath.FromSlash(rel)), nil
}
