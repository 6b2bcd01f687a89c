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
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/registryauth/registry-auth-operator/test/utils"
)

// TestMakeRun runs what `make run` runs, the README's first command: a local
// control plane with config/samples applied and registry-auth serving the
// sample policy with the generated token; Ctrl-C stops it all.
func TestMakeRun(t *testing.T) {
	g := NewWithT(t)
	utils.RecordModuleSources(t)
	registryAuth, cleanup, err := utils.BuildBinary()
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(cleanup)
	localup := filepath.Join(t.TempDir(), "localup")
	build := exec.Command("go", "build", "-o", localup, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	g.Expect(build.Run()).To(Succeed())

	dir := t.TempDir()
	auth, metrics, probe := utils.FreeAddr(t), utils.FreeAddr(t), utils.FreeAddr(t)
	out := &utils.SyncBuffer{}
	cmd := exec.Command(localup, "-dir", dir, "-binary", registryAuth,
		"-auth-bind-address", auth, "-metrics-bind-address", metrics, "-health-probe-bind-address", probe)
	cmd.Stdout, cmd.Stderr = out, out
	utils.DieWithTest(cmd)
	g.Expect(cmd.Start()).To(Succeed())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if t.Failed() {
			t.Logf("localup output:\n%s", out.String())
		}
	}()

	client := &http.Client{Timeout: 5 * time.Second}
	g.Eventually(func() (int, error) {
		select {
		case err := <-done:
			return 0, StopTrying("localup exited: " + errString(err))
		default:
		}
		resp, err := client.Get("http://" + probe + "/readyz")
		if err != nil {
			return 0, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}, 120*time.Second, 100*time.Millisecond).Should(Equal(http.StatusOK), "registry-auth ready")

	token, err := os.ReadFile(filepath.Join(dir, "token"))
	g.Expect(err).NotTo(HaveOccurred())
	fi, err := os.Stat(filepath.Join(dir, "token"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o600)))
	g.Expect(out.String()).NotTo(ContainSubstring(strings.TrimSpace(string(token))), "the token is never printed")

	validate := func(token string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+auth+"/validate/default/registry", nil)
		req.Header.Set("X-Original-URL", "http://registry.localhost/api/servers")
		req.Header.Set("X-Original-Method", "GET")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	g.Eventually(func() int { return validate(strings.TrimSpace(string(token))) }, 10*time.Second, 50*time.Millisecond).
		Should(Equal(http.StatusOK), "the sample policy accepts the generated token")
	g.Expect(validate("")).To(Equal(http.StatusUnauthorized))

	kubeconfig := filepath.Join(dir, "kubeconfig")
	kubectl := func(args ...string) (string, error) {
		c := exec.Command(utils.KubectlPath(), append([]string{"--kubeconfig", kubeconfig}, args...)...)
		b, err := c.CombinedOutput()
		return string(b), err
	}
	g.Eventually(func() (string, error) {
		return kubectl("get", "rap", "registry", "-n", "default", "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}")
	}, 20*time.Second, 200*time.Millisecond).Should(Equal("True"))

	// Every sample applies when the ingress controllers' CRDs are there
	// (make crds, a prerequisite of make run and make test); without them,
	// their samples are skipped with a message.
	if _, err := os.Stat(filepath.Join(utils.RepoRoot(), "bin", "crds")); err == nil {
		_, err := kubectl("get", "middlewares.traefik.io", "registry-auth", "-n", "default")
		g.Expect(err).NotTo(HaveOccurred(), "the Traefik sample is applied")
		_, err = kubectl("get", "securitypolicies.gateway.envoyproxy.io", "registry-auth", "-n", "default")
		g.Expect(err).NotTo(HaveOccurred(), "the Envoy Gateway sample is applied")
		// But the samples whose CRDs no Go module provides (test/install's
		// samplesNeedingExtraCRDs: kgateway, F5 NGINX Ingress Controller).
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.Contains(line, "skipping") {
				g.Expect(line).To(Or(ContainSubstring("skipping kgateway-gatewayextension.yaml"),
					ContainSubstring("skipping nginx-ingress-controller-externalauth.yaml")), "only samples without a CRD source are skipped")
			}
		}
	} else {
		g.Expect(out.String()).To(ContainSubstring("skipping traefik-forwardauth.yaml"))
	}

	// Ctrl-C: registry-auth and the control plane stop, and localup exits 0.
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	g.Expect(err).NotTo(HaveOccurred())
	apiserver, err := url.Parse(cfg.Host)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cmd.Process.Signal(syscall.SIGINT)).To(Succeed())
	select {
	case err := <-done:
		g.Expect(err).NotTo(HaveOccurred(), "localup exits 0 after Ctrl-C")
	case <-time.After(60 * time.Second):
		t.Fatal("localup did not stop within 60s of SIGINT")
	}
	for _, addr := range []string{auth, apiserver.Host} {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
		}
		g.Expect(err).To(HaveOccurred(), "nothing listens on %s after Ctrl-C", addr)
	}
	g.Expect(out.String()).To(ContainSubstring("control plane stopped"))
}

func errString(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}
