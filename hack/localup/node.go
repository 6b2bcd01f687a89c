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
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/registryauth/registry-auth-operator/test/utils/realnode"
)

// The images make image writes (hack/build-image.sh's defaults).
const (
	nodeImage      = "localhost/registry-auth:dev"
	nodePauseImage = "localhost/registry-auth-pause:dev"
)

// runNode is `make run NODE=1`: a real single-node cluster (test/utils/
// realnode) with the operator installed from dist/install.yaml as two pods
// of the image make image built, the token Secret and the samples. The API
// server and the auth Service are forwarded to 127.0.0.1, so kubectl and
// curl work from this machine as with `make run`. Ctrl-C tears it all down.
func runNode(root, localDir, imgDir, authAddr string) int {
	if err := realnode.Usable(); err != nil {
		logln("a real node cannot run here: %v", err)
		return 1
	}
	images := []string{filepath.Join(imgDir, "pause.oci.tar"), filepath.Join(imgDir, "registry-auth.oci.tar")}
	for _, img := range images {
		if _, err := os.Stat(img); err != nil {
			logln("%s not found: run `make image` (make run NODE=1 does)", img)
			return 1
		}
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)

	start := time.Now()
	logln("starting a real node (etcd, kube-apiserver, containerd, kubelet, kube-proxy, ...) in its own network namespace ...")
	c, err := realnode.Start(context.Background(), realnode.Options{
		Root:       root,
		Images:     images,
		PauseImage: nodePauseImage,
		Log:        func(format string, args ...any) { logln("node: "+format, args...) },
	})
	if err != nil {
		logln("starting the node: %v", err)
		return 1
	}
	defer func() {
		logln("tearing the node down ...")
		if err := c.Stop(); err != nil {
			logln("teardown: %v", err)
		} else {
			logln("node torn down")
		}
	}()
	logln("node Ready in %s (network namespace %s)", time.Since(start).Round(time.Millisecond), c.NetNS)

	// The API server on 127.0.0.1, for kubectl here.
	apiLn, err := c.Dialer.Forward("127.0.0.1:0", fmt.Sprintf("%s:%d", realnode.NodeIP, realnode.APIServerPort))
	if err != nil {
		logln("forwarding the API server: %v", err)
		return 1
	}
	defer func() { _ = apiLn.Close() }()
	kubeconfig := filepath.Join(localDir, "kubeconfig")
	kc, err := c.AdminKubeconfig("https://" + apiLn.Addr().String())
	if err == nil {
		err = writePrivate(kubeconfig, kc)
	}
	if err != nil {
		logln("writing kubeconfig: %v", err)
		return 1
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		logln("%v", err)
		return 1
	}
	kubectl := func(stdin []byte, args ...string) error {
		cmd := exec.Command(c.KubectlPath(), append([]string{"--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		return cmd.Run()
	}

	// The ingress controllers' CRDs (make crds), so that every sample
	// applies, then the install with the local image.
	if crds, err := filepath.EvalSymlinks(filepath.Join(root, "bin", "crds")); err == nil && dirExists(crds) {
		if err := kubectl(nil, "apply", "--server-side", "-f", crds); err != nil {
			logln("applying %s: %v", crds, err)
			return 1
		}
	}
	install, err := os.ReadFile(filepath.Join(root, "dist", "install.yaml"))
	if err != nil {
		logln("%v", err)
		return 1
	}
	install, err = localInstall(install)
	if err != nil {
		logln("dist/install.yaml: %v", err)
		return 1
	}
	if err := kubectl(install, "apply", "--server-side", "-f", "-"); err != nil {
		logln("applying dist/install.yaml: %v", err)
		return 1
	}
	tokenFile, err := seed(cfg, root, localDir, kubeconfig)
	if err != nil {
		logln("%v", err)
		return 1
	}
	if interrupted(sigs) {
		return 130
	}
	logln("waiting for the operator's pods ...")
	if err := kubectl(nil, "-n", "registry-auth-system", "rollout", "status", "deployment/registry-auth-controller-manager", "--timeout=180s"); err != nil {
		logln("the operator did not roll out: %v (see `kubectl -n registry-auth-system describe pods`)", err)
		return 1
	}
	logln("operator pods Ready %s after start", time.Since(start).Round(time.Millisecond))

	// The auth Service on authAddr, for curl here.
	svcIP, err := exec.Command(c.KubectlPath(), "--kubeconfig", kubeconfig, "-n", "registry-auth-system",
		"get", "service", "registry-auth-auth-service", "-o", "jsonpath={.spec.clusterIP}").Output()
	if err != nil {
		logln("reading the auth Service: %v", err)
		return 1
	}
	authLn, err := c.Dialer.Forward(authAddr, strings.TrimSpace(string(svcIP))+":8888")
	if err != nil {
		logln("forwarding the auth Service to %s: %v (set -auth-bind-address)", authAddr, err)
		return 1
	}
	defer func() { _ = authLn.Close() }()

	rel := func(p string) string {
		if r, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
		return p
	}
	printUsage("A real node is up; the operator runs on it as two pods.", rel(kubeconfig), rel(c.KubectlPath()), rel(tokenFile), authAddr, true)
	fmt.Printf(` The pods (image %[1]s, from dist/install.yaml):
   %[2]s get pods -n registry-auth-system -o wide
 Everything lives in the network namespace %[3]s; for a shell there:
   sudo nsenter --net=%[4]s bash     (pods: 10.88.x.x, Services: 10.96.x.x)
 Component logs: %[5]s
================================================================
`, nodeImage, rel(c.KubectlPath()), c.Name, c.NetNS, filepath.Join(c.Dir, "logs"))

	sig := <-sigs
	logln("got %s, shutting down", sig)
	return 0
}

// localInstall is dist/install.yaml for this machine: the local image, and
// the flags make run gives the operator too (one user, one local cluster:
// every namespace may claim any host; a local IdP or upstream auth server
// may be plain http on loopback).
func localInstall(install []byte) ([]byte, error) {
	const image, args = "image: controller:latest", "        - --leader-elect\n"
	if bytes.Count(install, []byte(image)) != 1 || bytes.Count(install, []byte(args)) != 1 {
		return nil, fmt.Errorf("want exactly one %q and one %q to change", image, strings.TrimSpace(args))
	}
	install = bytes.Replace(install, []byte(image), []byte("image: "+nodeImage), 1)
	return bytes.Replace(install, []byte(args), []byte(args+
		"        - --host-grants=*=*\n"+
		"        - --allow-insecure-loopback\n"), 1), nil
}
