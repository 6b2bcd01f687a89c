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

// Package image checks that make image (hack/build-image.sh, which builds
// without a container engine) produces what the Dockerfile describes: the
// same files with the same modes and owners, the same user, entrypoint and
// working directory. There is no Docker engine here to build the Dockerfile
// itself, so the test reads the Dockerfile's last stage and adds what its
// base, gcr.io/distroless/static:nonroot, provides (the table below, from
// that image), and compares the archive's layers and config with that. The
// local pause image is checked against hack/pause/Dockerfile the same way.
package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/x509"
	"debug/elf"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/registryauth/registry-auth-operator/test/utils"
)

const (
	img      = "localhost/registry-auth:test"
	pauseImg = "localhost/registry-auth-pause:test"
)

// node is a file or directory of an image's filesystem.
type node struct {
	dir      bool
	mode     fs.FileMode // permission bits and sticky/setuid/setgid
	uid, gid int
	data     []byte
}

func (n node) String() string {
	kind := "file"
	if n.dir {
		kind = "dir"
	}
	return fmt.Sprintf("%s %04o %d:%d", kind, uint32(n.mode), n.uid, n.gid)
}

// distrolessStaticNonroot is what gcr.io/distroless/static:nonroot has that
// a static Go binary uses, as the files and directories of that image
// (Debian 12 based) are: owner, mode. hack/tools/image writes these from
// Debian's CA bundle; what it leaves out (zoneinfo, /etc/services, dpkg
// status, licences) nothing here reads.
var distrolessStaticNonroot = map[string]node{
	"/etc":                               {dir: true, mode: 0o755},
	"/etc/passwd":                        {mode: 0o644},
	"/etc/group":                         {mode: 0o644},
	"/etc/nsswitch.conf":                 {mode: 0o644},
	"/etc/ssl":                           {dir: true, mode: 0o755},
	"/etc/ssl/certs":                     {dir: true, mode: 0o755},
	"/etc/ssl/certs/ca-certificates.crt": {mode: 0o644},
	"/home":                              {dir: true, mode: 0o755},
	"/home/nonroot":                      {dir: true, mode: 0o700, uid: 65532, gid: 65532},
	"/root":                              {dir: true, mode: 0o700},
	"/tmp":                               {dir: true, mode: 0o1777},
}

// stage is what a Dockerfile's last stage declares.
type stage struct {
	from, user, workdir string
	entrypoint          []string
	copies              []string // destination paths in the image
	copyFrom            []string // --from stages, one per copy
}

// readStage parses the last stage of a Dockerfile (FROM, WORKDIR, COPY,
// USER, ENTRYPOINT; continuation lines joined) on its own, independently
// of hack/tools/image.
func readStage(t *testing.T, file string) stage {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var st stage
	var joined []string
	var cur strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			cur.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		cur.WriteString(line)
		joined = append(joined, cur.String())
		cur.Reset()
	}
	for _, l := range joined {
		f := strings.Fields(l)
		switch strings.ToUpper(f[0]) {
		case "FROM":
			st = stage{from: f[1], workdir: "/"}
		case "WORKDIR":
			st.workdir = path.Join(st.workdir, f[1])
		case "USER":
			st.user = f[1]
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(strings.TrimSpace(strings.TrimPrefix(l, f[0]))), &st.entrypoint); err != nil {
				t.Fatalf("%s: ENTRYPOINT: %v", file, err)
			}
		case "COPY":
			args := f[1:]
			from := ""
			for len(args) > 0 && strings.HasPrefix(args[0], "--") {
				if v, ok := strings.CutPrefix(args[0], "--from="); ok {
					from = v
				} else {
					t.Fatalf("%s: COPY %s: this test does not know the flag; extend it", file, args[0])
				}
				args = args[1:]
			}
			if len(args) != 2 {
				t.Fatalf("%s: COPY %v: one source and a destination expected", file, args)
			}
			dest := args[1]
			if !path.IsAbs(dest) {
				dest = path.Join(st.workdir, dest)
			}
			if strings.HasSuffix(args[1], "/") || args[1] == "." {
				dest = path.Join(dest, path.Base(args[0]))
			}
			st.copies = append(st.copies, dest)
			st.copyFrom = append(st.copyFrom, from)
		}
	}
	if st.from == "" {
		t.Fatalf("%s: no FROM", file)
	}
	return st
}

// ociImage is an image read from an OCI archive.
type ociImage struct {
	name   string
	config struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Config       struct {
			User       string   `json:"User"`
			Entrypoint []string `json:"Entrypoint"`
			Cmd        []string `json:"Cmd"`
			WorkingDir string   `json:"WorkingDir"`
			Env        []string `json:"Env"`
		} `json:"config"`
	}
	files map[string]node
}

// readOCI reads an OCI archive with the standard library only: index.json,
// the manifest it names, the config and the layers, applied in order.
func readOCI(t *testing.T, file string) ociImage {
	t.Helper()
	blobs := map[string][]byte{}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			blobs[h.Name] = data
		}
	}
	blob := func(digest string) []byte {
		b, ok := blobs["blobs/"+strings.Replace(digest, ":", "/", 1)]
		if !ok {
			t.Fatalf("%s: no blob %s", file, digest)
		}
		return b
	}
	var index struct {
		Manifests []struct {
			Digest      string            `json:"digest"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(blobs["index.json"], &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("%s: index.json: %v, %d manifests (want 1)", file, err, len(index.Manifests))
	}
	var manifest struct {
		Config struct{ Digest string }              `json:"config"`
		Layers []struct{ Digest, MediaType string } `json:"layers"`
	}
	if err := json.Unmarshal(blob(index.Manifests[0].Digest), &manifest); err != nil {
		t.Fatal(err)
	}
	var im ociImage
	im.name = index.Manifests[0].Annotations["io.containerd.image.name"]
	if err := json.Unmarshal(blob(manifest.Config.Digest), &im.config); err != nil {
		t.Fatal(err)
	}
	im.files = map[string]node{}
	for _, l := range manifest.Layers {
		zr, err := gzip.NewReader(bytes.NewReader(blob(l.Digest)))
		if err != nil {
			t.Fatalf("layer %s (%s): %v", l.Digest, l.MediaType, err)
		}
		lr := tar.NewReader(zr)
		for {
			h, err := lr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			p := path.Clean("/" + h.Name)
			if strings.HasPrefix(path.Base(p), ".wh.") {
				t.Fatalf("layer %s has a whiteout %s: not expected", l.Digest, p)
			}
			n := node{dir: h.Typeflag == tar.TypeDir, mode: fs.FileMode(h.Mode & 0o777), uid: h.Uid, gid: h.Gid}
			if h.Mode&0o1000 != 0 {
				n.mode |= 0o1000
			}
			if h.Mode&0o6000 != 0 {
				t.Errorf("%s is setuid or setgid", p)
			}
			if !n.dir {
				if h.Typeflag != tar.TypeReg {
					t.Fatalf("%s: type %c, want a regular file or a directory", p, h.Typeflag)
				}
				if n.data, err = io.ReadAll(lr); err != nil {
					t.Fatal(err)
				}
			}
			im.files[p] = n
		}
	}
	return im
}

// build runs hack/build-image.sh into a new directory.
func build(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(filepath.Join(utils.RepoRoot(), "hack", "build-image.sh"), dir)
	cmd.Env = append(os.Environ(), "IMG="+img, "PAUSE_IMG="+pauseImg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/build-image.sh: %v\n%s", err, out)
	}
	return dir
}

// modeOf is the mode the file has here (COPY keeps it).
func modeOf(t *testing.T, p string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// compareFiles compares an image's files with the expected ones: the same
// paths, kinds, modes and owners.
func compareFiles(t *testing.T, name string, got, want map[string]node) {
	t.Helper()
	var paths []string
	for p := range want {
		paths = append(paths, p)
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		g, inGot := got[p]
		w, inWant := want[p]
		switch {
		case !inGot:
			t.Errorf("%s: %s is missing (the Dockerfile's image has %s)", name, p, w)
		case !inWant:
			t.Errorf("%s: %s (%s) is not in the Dockerfile's image", name, p, g)
		case g.dir != w.dir || g.mode != w.mode || g.uid != w.uid || g.gid != w.gid:
			t.Errorf("%s: %s is %s, the Dockerfile's image has %s", name, p, g, w)
		}
	}
}

// checkStatic fails unless data is a static ELF executable for this
// architecture (no interpreter, no shared libraries: CGO_ENABLED=0).
func checkStatic(t *testing.T, what string, data []byte) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: not ELF: %v", what, err)
	}
	wantMachine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[runtime.GOARCH]
	if wantMachine != 0 && f.Machine != wantMachine {
		t.Errorf("%s: machine %v, want %v", what, f.Machine, wantMachine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has an ELF interpreter: not static", what)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %v: not static", what, libs)
	}
}

func TestImageMatchesDockerfile(t *testing.T) {
	root := utils.RepoRoot()
	utils.RecordModuleSources(t)
	dir := build(t)
	st := readStage(t, filepath.Join(root, "Dockerfile"))
	if st.from != "gcr.io/distroless/static:nonroot" {
		t.Fatalf("the Dockerfile's last stage is FROM %s; this test knows the files of gcr.io/distroless/static:nonroot only: extend it", st.from)
	}
	want := map[string]node{}
	for p, n := range distrolessStaticNonroot {
		want[p] = n
	}
	// COPY --from=builder: root-owned, the mode the builder's go build gave
	// it (hack/build-image.sh builds it as the builder stage does).
	for i, dest := range st.copies {
		if st.copyFrom[i] != "builder" {
			t.Fatalf("COPY to %s is not from the builder stage; extend this test", dest)
		}
		want[dest] = node{mode: modeOf(t, filepath.Join(dir, "builder", path.Base(dest)))}
	}
	im := readOCI(t, filepath.Join(dir, "registry-auth.oci.tar"))
	compareFiles(t, "registry-auth image", im.files, want)

	cfg := im.config.Config
	if im.name != img {
		t.Errorf("image name %q, want %q", im.name, img)
	}
	if cfg.User != st.user || !slices.Equal(cfg.Entrypoint, st.entrypoint) || cfg.WorkingDir != st.workdir || len(cfg.Cmd) != 0 {
		t.Errorf("config: user %q, entrypoint %q, cmd %q, workdir %q; the Dockerfile says user %q, entrypoint %q, no cmd, workdir %q",
			cfg.User, cfg.Entrypoint, cfg.Cmd, cfg.WorkingDir, st.user, st.entrypoint, st.workdir)
	}
	if im.config.OS != "linux" || im.config.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", im.config.OS, im.config.Architecture, runtime.GOARCH)
	}
	for _, env := range []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"} {
		if !slices.Contains(cfg.Env, env) {
			t.Errorf("config Env %q lacks distroless's %s", cfg.Env, env)
		}
	}

	// The contents that matter: the user and group the Deployment runs as
	// exist (the kubelet would give gid 0 otherwise), the CA bundle holds
	// certificates, the binary is static and is the one the builder built.
	if !strings.Contains(string(im.files["/etc/passwd"].data), "\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n") {
		t.Errorf("/etc/passwd has no nonroot 65532:\n%s", im.files["/etc/passwd"].data)
	}
	if !strings.Contains(string(im.files["/etc/group"].data), "\nnonroot:x:65532:\n") {
		t.Errorf("/etc/group has no nonroot 65532:\n%s", im.files["/etc/group"].data)
	}
	certs := 0
	for rest := im.files["/etc/ssl/certs/ca-certificates.crt"].data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if _, err := x509.ParseCertificate(b.Bytes); err == nil {
			certs++
		}
	}
	if certs < 50 {
		t.Errorf("the CA bundle has %d certificates, want a system bundle (Debian's has over 100)", certs)
	}
	entry := im.files[st.entrypoint[0]]
	checkStatic(t, st.entrypoint[0], entry.data)
	built, err := os.ReadFile(filepath.Join(dir, "builder", path.Base(st.entrypoint[0])))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(entry.data, built) {
		t.Errorf("%s in the image differs from the binary the builder built", st.entrypoint[0])
	}
	t.Logf("%s: %d files and directories, user %s, entrypoint %q, %d CA certificates", im.name, len(im.files), cfg.User, cfg.Entrypoint, certs)

	// The same inputs give the same image (SOURCE_DATE_EPOCH, sorted
	// entries, -trimpath).
	again := readOCIDigest(t, filepath.Join(build(t), "registry-auth.oci.tar"))
	if first := readOCIDigest(t, filepath.Join(dir, "registry-auth.oci.tar")); first != again {
		t.Errorf("two builds of the same tree gave %s and %s", first, again)
	}
}

func readOCIDigest(t *testing.T, file string) string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s: no index.json: %v", file, err)
		}
		if h.Name == "index.json" {
			var index struct {
				Manifests []struct{ Digest string } `json:"manifests"`
			}
			if err := json.NewDecoder(tr).Decode(&index); err != nil || len(index.Manifests) == 0 {
				t.Fatalf("%s: index.json: %v", file, err)
			}
			return index.Manifests[0].Digest
		}
	}
}

func TestPauseImageMatchesDockerfile(t *testing.T) {
	root := utils.RepoRoot()
	utils.RecordModuleSources(t)
	dir := build(t)
	st := readStage(t, filepath.Join(root, "hack", "pause", "Dockerfile"))
	if st.from != "scratch" {
		t.Fatalf("hack/pause/Dockerfile is FROM %s, want scratch", st.from)
	}
	want := map[string]node{}
	for _, dest := range st.copies {
		want[dest] = node{mode: modeOf(t, filepath.Join(dir, "pause", path.Base(dest)))}
	}
	im := readOCI(t, filepath.Join(dir, "pause.oci.tar"))
	compareFiles(t, "pause image", im.files, want)
	if im.name != pauseImg || im.config.Config.User != st.user || !slices.Equal(im.config.Config.Entrypoint, st.entrypoint) {
		t.Errorf("pause image %q: user %q, entrypoint %q; want %q, %q, %q", im.name, im.config.Config.User, im.config.Config.Entrypoint,
			pauseImg, st.user, st.entrypoint)
	}
	checkStatic(t, "/pause", im.files["/pause"].data)
}
