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

// Command image writes a container image without a container engine: it
// follows the last stage of a Dockerfile (FROM, WORKDIR, COPY, USER, ENV,
// LABEL, ENTRYPOINT, CMD, EXPOSE) and writes the result as an OCI archive
// (oci-archive, what `ctr images import` and skopeo read) and, if asked, a
// docker archive (what `docker load` reads). Earlier stages are built by the
// caller; -stage says where a stage's files are (make image builds the
// binary with the flags of the Dockerfile's builder stage).
//
//	go run . -dockerfile ../../../Dockerfile \
//	    -stage builder:/workspace=../../../bin/image/builder \
//	    -tag localhost/registry-auth:dev -oci out.oci.tar
//
// FROM scratch starts empty; FROM gcr.io/distroless/static[:nonroot] starts
// from the files of that image a static Go binary uses (see base.go),
// written here, never pulled. Every file's time is SOURCE_DATE_EPOCH (0 when
// unset), so the same inputs give the same digests.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// entry is one file or directory of a layer. src, when set, is read at
// write time (a COPY source); data otherwise.
type entry struct {
	path     string // absolute, clean
	dir      bool
	mode     int64 // Unix mode bits: permissions, setuid (04000), setgid (02000), sticky (01000)
	uid, gid int
	data     []byte
	src      string
}

func dir(p string, mode int64, uid, gid int) entry {
	return entry{path: p, dir: true, mode: mode, uid: uid, gid: gid}
}

func file(p string, mode int64, uid, gid int, data []byte) entry {
	return entry{path: p, mode: mode, uid: uid, gid: gid, data: data}
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("image", flag.ContinueOnError)
	dockerfile := fl.String("dockerfile", "Dockerfile", "the Dockerfile whose last stage is followed")
	contextDir := fl.String("context", "", "the build context COPY without --from reads (default: the Dockerfile's directory)")
	var stages stringList
	fl.Var(&stages, "stage", "NAME:DIR=LOCALDIR: stage NAME's directory DIR is LOCALDIR here (COPY --from=NAME); repeatable")
	tag := fl.String("tag", "", "the image's name, e.g. localhost/registry-auth:dev (required)")
	ociOut := fl.String("oci", "", "write an OCI archive (oci-archive) here")
	dockerOut := fl.String("docker", "", "write a docker archive (docker load) here")
	caBundle := fl.String("ca-bundle", caBundlePath, "the CA bundle a distroless base gets (Debian: ca-certificates)")
	arch := fl.String("arch", runtime.GOARCH, "the image's architecture (the binaries copied in must match)")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fl.Args())
	}
	if *tag == "" || (*ociOut == "" && *dockerOut == "") {
		return errors.New("-tag and at least one of -oci and -docker are required")
	}
	ref, err := name.NewTag(*tag, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("-tag %s: %w (give registry/repository:tag)", *tag, err)
	}
	if ref.TagStr() == "latest" {
		return fmt.Errorf("-tag %s: not latest, which makes the kubelet pull (imagePullPolicy Always)", *tag)
	}
	ctxDir := *contextDir
	if ctxDir == "" {
		ctxDir = filepath.Dir(*dockerfile)
	}
	stageDirs := map[string][2]string{}
	for _, s := range stages {
		spec, local, ok := strings.Cut(s, "=")
		stage, dirIn, ok2 := strings.Cut(spec, ":")
		if !ok || !ok2 || !path.IsAbs(dirIn) || local == "" {
			return fmt.Errorf("-stage %q: want NAME:/DIR=LOCALDIR", s)
		}
		stageDirs[stage] = [2]string{path.Clean(dirIn), local}
	}
	epoch, err := sourceDateEpoch()
	if err != nil {
		return err
	}

	df, err := os.Open(*dockerfile)
	if err != nil {
		return err
	}
	stage, err := finalStage(df)
	_ = df.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", *dockerfile, err)
	}
	b := &builder{ctxDir: ctxDir, stages: stageDirs, caBundle: *caBundle, epoch: epoch}
	if err := b.follow(stage); err != nil {
		return fmt.Errorf("%s: %w", *dockerfile, err)
	}
	img, err := b.image(*arch)
	if err != nil {
		return err
	}
	if *ociOut != "" {
		if err := writeOCIArchive(*ociOut, ref, img, epoch); err != nil {
			return err
		}
	}
	if *dockerOut != "" {
		if err := writeAtomically(*dockerOut, func(f string) error { return tarball.WriteToFile(f, ref, img) }); err != nil {
			return err
		}
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s %s\n", ref.Name(), digest)
	return nil
}

func sourceDateEpoch() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", v, err)
	}
	return time.Unix(n, 0).UTC(), nil
}
