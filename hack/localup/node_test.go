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
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/registryauth/registry-auth-operator/test/utils"
	"github.com/registryauth/registry-auth-operator/test/utils/realnode"
)

// TestMakeRunNode runs what `make run NODE=1` runs: a real node with the
// operator as two pods, reachable from this machine through the kubeconfig
// and the auth address localup prints; Ctrl-C tears it all down. It needs
// what the real-node suite needs (test/node) and skips without it (fails
// with CI=true).
func TestMakeRunNode(t *testing.T) {
	root := utils.RepoRoot()
	why := realnode.Usable()
	if why == nil {
		_, why = realnode.FindBinaries(root)
	}
	if why != nil {
		if ci := strings.ToLower(os.Getenv("CI")); ci == "true" || ci == "1" {
			t.Fatalf("CI=true, nothing may be skipped: %v", why)
		}
		t.Skipf("make run NODE=1 cannot run here: %v", why)
	}
	g := NewWithT(t)
	utils.RecordModuleSources(t)
	images := t.TempDir()
	build := exec.Command(filepath.Join(root, "hack", "build-image.sh"), images)
	out, err := build.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "hack/build-image.sh: %s", out)
	localup := filepath.Join(t.TempDir(), "localup")
	g.Expect(exec.Command("go", "build", "-o", localup, ".").Run()).To(Succeed())

	dir := t.TempDir()
	auth := utils.FreeAddr(t)
	logs := &utils.SyncBuffer{}
	cmd := exec.Command(localup, "-node", "-dir", dir, "-images", images, "-auth-bind-address", auth)
	cmd.Stdout, cmd.Stderr = logs, logs
	utils.DieWithTest(cmd)
	g.Expect(cmd.Start()).To(Succeed())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if t.Failed() {
			_ = cmd.Process.Signal(syscall.SIGINT)
			t.Logf("localup output:\n%s", logs.String())
		}
	}()
	g.Eventually(func() (string, error) {
		select {
		case err := <-done:
			return "", StopTrying("localup exited: " + errString(err))
		default:
		}
		return logs.String(), nil
	}, 5*time.Minute, 200*time.Millisecond).Should(ContainSubstring("A real node is up; the operator runs on it as two pods."))

	token, err := os.ReadFile(filepath.Join(dir, "token"))
	g.Expect(err).NotTo(HaveOccurred())
	client := &http.Client{Timeout: 5 * time.Second}
	validate := func(token string) (int, error) {
		req, _ := http.NewRequest(http.MethodGet, "http://"+auth+"/validate", nil)
		req.Header.Set("X-Original-URL", "http://registry.localhost/api/servers")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_ = resp.Body.Close()
		return resp.StatusCode, nil
	}
	g.Eventually(func() (int, error) { return validate(strings.TrimSpace(string(token))) }, 20*time.Second, 100*time.Millisecond).
		Should(Equal(http.StatusOK), "the pods accept the generated token through the forwarded Service")
	g.Expect(validate("")).To(Equal(http.StatusUnauthorized))

	pods, err := exec.Command(filepath.Join(root, "bin", "k8s", "kubectl"), "--kubeconfig", filepath.Join(dir, "kubeconfig"),
		"-n", "registry-auth-system", "get", "pods", "-o",
		`jsonpath={range .items[*]}{.status.phase} {.spec.containers[0].image}{"\n"}{end}`).CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "%s", pods)
	g.Expect(strings.Fields(string(pods))).To(Equal([]string{
		"Running", "localhost/registry-auth:dev", "Running", "localhost/registry-auth:dev"}))

	netns := regexp.MustCompile(`nsenter --net=(/run/netns/\S+)`).FindStringSubmatch(logs.String())
	g.Expect(netns).To(HaveLen(2), "localup names the node's network namespace")
	g.Expect(cmd.Process.Signal(syscall.SIGINT)).To(Succeed())
	select {
	case err := <-done:
		g.Expect(err).NotTo(HaveOccurred(), "localup exits 0 after Ctrl-C")
	case <-time.After(60 * time.Second):
		t.Fatal("localup did not stop within 60s of SIGINT")
	}
	g.Expect(logs.String()).To(ContainSubstring("node torn down"))
	_, err = os.Stat(netns[1])
	g.Expect(os.IsNotExist(err)).To(BeTrue(), "%s is gone after Ctrl-C", netns[1])
}
