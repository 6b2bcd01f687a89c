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
	"fmt"
	"os"
	"strings"
)

// The bases a FROM may name. Nothing is pulled: a distroless base is
// written here with the parts of gcr.io/distroless/static that a static Go
// binary uses (users and groups, a CA bundle, /tmp, the home directories,
// nsswitch.conf, and its PATH and SSL_CERT_FILE). What it leaves out: time
// zone data (/usr/share/zoneinfo), /etc/services and /etc/protocols, and
// the dpkg status and licence files.

const (
	caBundlePath = "/etc/ssl/certs/ca-certificates.crt"
	basePath     = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// distrolessPasswd and distrolessGroup are distroless's /etc/passwd and
// /etc/group.
const distrolessPasswd = `root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
`

const distrolessGroup = `root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
`

// base is what a FROM line gives: a first layer and the config it sets.
type base struct {
	entries    []entry
	user       string
	workingDir string
	env        []string
}

// baseFor returns the base named by FROM. caBundle is the CA bundle file a
// distroless base gets (Debian's ca-certificates writes
// /etc/ssl/certs/ca-certificates.crt).
func baseFor(name, caBundle string) (base, error) {
	if name == "scratch" {
		return base{workingDir: "/"}, nil
	}
	repo, tag, _ := strings.Cut(name, ":")
	switch repo {
	case "gcr.io/distroless/static", "gcr.io/distroless/static-debian12", "gcr.io/distroless/static-debian13":
	default:
		return base{}, fmt.Errorf("FROM %s: this builder knows scratch and gcr.io/distroless/static[-debian12|-debian13][:nonroot]; teach hack/tools/image the new base", name)
	}
	var user, workingDir string
	switch tag {
	case "nonroot":
		user, workingDir = "65532", "/home/nonroot"
	case "", "latest":
		user, workingDir = "", "/"
	default:
		return base{}, fmt.Errorf("FROM %s: unknown tag %q (want nonroot or latest)", name, tag)
	}
	ca, err := os.ReadFile(caBundle)
	if err != nil {
		return base{}, fmt.Errorf("the CA bundle of %s: %w (on Debian: apt-get install ca-certificates)", name, err)
	}
	if !strings.Contains(string(ca), "-----BEGIN CERTIFICATE-----") {
		return base{}, fmt.Errorf("the CA bundle %s holds no PEM certificate", caBundle)
	}
	return base{
		entries: []entry{
			dir("/etc", 0o755, 0, 0),
			file("/etc/passwd", 0o644, 0, 0, []byte(distrolessPasswd)),
			file("/etc/group", 0o644, 0, 0, []byte(distrolessGroup)),
			file("/etc/nsswitch.conf", 0o644, 0, 0, []byte("hosts: files dns\n")),
			dir("/etc/ssl", 0o755, 0, 0),
			dir("/etc/ssl/certs", 0o755, 0, 0),
			file(caBundlePath, 0o644, 0, 0, ca),
			dir("/home", 0o755, 0, 0),
			dir("/home/nonroot", 0o700, 65532, 65532),
			dir("/root", 0o700, 0, 0),
			dir("/tmp", 0o1777, 0, 0),
		},
		user:       user,
		workingDir: workingDir,
		env:        []string{"PATH=" + basePath, "SSL_CERT_FILE=" + caBundlePath},
	}, nil
}
