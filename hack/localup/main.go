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

// Command localup is `make run`: it starts a local control plane (etcd and
// kube-apiserver from bin/k8s, via envtest) with the CRDs installed, writes an
// admin kubeconfig to bin/local/kubeconfig, creates the static API token
// Secret, applies config/samples and runs bin/registry-auth against it until
// SIGINT or SIGTERM. It never prints the token.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/registryauth/registry-auth-operator/test/utils"
)

const (
	tokenSecretName      = "registry-api-token"
	tokenSecretNamespace = "default"
	tokenSecretKey       = "token"

	authAddr    = "127.0.0.1:8888"
	metricsAddr = "127.0.0.1:8080"
	healthAddr  = "127.0.0.1:8081"

	childStopGrace = 10 * time.Second
)

func main() {
	os.Exit(run())
}

func logln(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[localup] "+format+"\n", args...)
}

func run() int {
	binary := flag.String("binary", "bin/registry-auth",
		"registry-auth binary to run (relative paths are from the repository root)")
	noOperator := flag.Bool("no-operator", false,
		"only start the control plane (and create the token Secret and samples); do not run registry-auth")
	flag.Parse()
	if flag.NArg() > 0 {
		logln("unexpected arguments: %v", flag.Args())
		return 2
	}

	// envtest logs through controller-runtime's logger; show what it logs at V(0).
	logf.SetLogger(funcr.New(func(prefix, args string) {
		fmt.Fprintf(os.Stderr, "[localup] envtest %s %s\n", prefix, args)
	}, funcr.Options{Verbosity: 0}))

	root, err := utils.FindRepoRoot()
	if err != nil {
		logln("%v", err)
		return 1
	}
	if _, err := utils.FindBinaryAssetsDir(); err != nil {
		logln("%v", err)
		return 1
	}
	bin := *binary
	if !filepath.IsAbs(bin) {
		bin = filepath.Join(root, bin)
	}
	if !*noOperator {
		if _, err := os.Stat(bin); err != nil {
			logln("%s not found: run `make build` first (or `make run`, which builds it)", bin)
			return 1
		}
	}
	localDir := filepath.Join(root, "bin", "local")
	if err := os.MkdirAll(localDir, 0o755); err != nil {
		logln("%v", err)
		return 1
	}

	// Catch signals before starting anything, so an early Ctrl-C still
	// tears down what was started.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)

	env := utils.NewEnvironment()
	// etcd data and API server certificates live under bin/local rather than
	// envtest's temporary directories, so a run that was killed leaves
	// nothing in /tmp; each run starts from scratch.
	etcdDir, certDir := filepath.Join(localDir, "etcd"), filepath.Join(localDir, "apiserver")
	for _, d := range []string{etcdDir, certDir} {
		if err := os.RemoveAll(d); err != nil {
			logln("%v", err)
			return 1
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			logln("%v", err)
			return 1
		}
	}
	if env.ControlPlane.Etcd == nil {
		env.ControlPlane.Etcd = &envtest.Etcd{}
	}
	env.ControlPlane.Etcd.DataDir = etcdDir
	env.ControlPlane.GetAPIServer().CertDir = certDir
	start := time.Now()
	logln("starting etcd and kube-apiserver from %s ...", env.BinaryAssetsDirectory)
	cfg, err := env.Start()
	defer func() {
		logln("stopping the control plane ...")
		if err := env.Stop(); err != nil {
			logln("stopping the control plane: %v", err)
		} else {
			logln("control plane stopped")
		}
	}()
	if err != nil {
		logln("starting the control plane: %v", err)
		return 1
	}
	logln("control plane up in %s at %s", time.Since(start).Round(time.Millisecond), cfg.Host)
	if interrupted(sigs) {
		return 130
	}

	kubeconfig := filepath.Join(localDir, "kubeconfig")
	if err := writeKubeconfig(env, kubeconfig); err != nil {
		logln("writing kubeconfig: %v", err)
		return 1
	}
	tokenFile := filepath.Join(localDir, "token")
	if err := createTokenSecret(cfg, tokenFile); err != nil {
		logln("creating the token Secret: %v", err)
		return 1
	}
	if err := applySamples(root, kubeconfig); err != nil {
		logln("applying samples: %v", err)
		return 1
	}
	if interrupted(sigs) {
		return 130
	}

	rel := func(p string) string {
		if r, err := filepath.Rel(root, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
		return p
	}
	kubectl := rel(filepath.Join(env.BinaryAssetsDirectory, "kubectl"))

	var child *exec.Cmd
	childDone := make(chan error, 1)
	if !*noOperator {
		child = exec.Command(bin,
			"--kubeconfig", kubeconfig,
			"--auth-bind-address", authAddr,
			"--metrics-bind-address", metricsAddr,
			"--health-probe-bind-address", healthAddr,
			"--zap-devel",
		)
		child.Dir = root
		child.Stdout, child.Stderr = os.Stdout, os.Stderr
		child.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig)
		// Dies with us even if we are killed with SIGKILL; own process
		// group, so we stop it in order (child first, then the control plane).
		child.SysProcAttr = childSysProcAttr()
		if err := child.Start(); err != nil {
			logln("starting %s: %v", bin, err)
			return 1
		}
		logln("started %s (pid %d)", rel(bin), child.Process.Pid)
		go func() { childDone <- child.Wait() }()
	}

	printUsage(rel(kubeconfig), kubectl, rel(tokenFile), !*noOperator)

	select {
	case sig := <-sigs:
		logln("got %s, shutting down", sig)
		if child != nil {
			stopChild(child, childDone, sigs)
		}
		return 0
	case err := <-childDone:
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			logln("%s exited: %v", rel(bin), err)
			if code := exitErr.ExitCode(); code > 0 {
				return code
			}
			return 1
		}
		if err != nil {
			logln("%s: %v", rel(bin), err)
			return 1
		}
		logln("%s exited", rel(bin))
		return 0
	}
}

// interrupted reports whether a signal arrived while we were busy.
func interrupted(sigs <-chan os.Signal) bool {
	select {
	case sig := <-sigs:
		logln("got %s during startup, shutting down", sig)
		return true
	default:
		return false
	}
}

// stopChild sends SIGTERM, waits up to childStopGrace (or a second signal),
// then SIGKILLs.
func stopChild(child *exec.Cmd, done <-chan error, sigs <-chan os.Signal) {
	if err := child.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		logln("sending SIGTERM to the operator: %v", err)
	}
	logln("waiting up to %s for the operator to exit (signal again to kill it now)", childStopGrace)
	timer := time.NewTimer(childStopGrace)
	defer timer.Stop()
	select {
	case err := <-done:
		logln("operator exited (%v)", exitStatus(err))
		return
	case <-timer.C:
		logln("operator did not exit within %s, killing it", childStopGrace)
	case <-sigs:
		logln("second signal, killing the operator")
	}
	_ = child.Process.Kill()
	logln("operator killed (%v)", exitStatus(<-done))
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func writeKubeconfig(env *envtest.Environment, path string) error {
	user, err := env.AddUser(envtest.User{Name: "localup-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	data, err := user.KubeConfig()
	if err != nil {
		return err
	}
	// It holds a client key: owner only.
	return writePrivate(path, data)
}

// writePrivate writes data to path with mode 0600, also when path exists with
// wider permissions.
func writePrivate(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// createTokenSecret makes a random token, writes it to tokenFile and stores it
// in the Secret the sample policy references. The token is never printed.
func createTokenSecret(cfg *rest.Config, tokenFile string) error {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return err
	}
	token := hex.EncodeToString(raw)
	if err := writePrivate(tokenFile, []byte(token)); err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: tokenSecretName, Namespace: tokenSecretNamespace},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{tokenSecretKey: []byte(token)},
	}
	if err := c.Create(ctx, secret); err != nil {
		return err
	}
	logln("created Secret %s/%s (key %q); the token is in %s", tokenSecretNamespace, tokenSecretName, tokenSecretKey, tokenFile)
	return nil
}

// applySamples applies every YAML in config/samples except kustomization.yaml
// with the locally built kubectl, in sorted order.
func applySamples(root, kubeconfig string) error {
	dir := filepath.Join(root, "config", "samples")
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			logln("no %s, nothing to apply", dir)
			return nil
		}
		return err
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || name == "kustomization.yaml" || name == "kustomization.yml" {
			continue
		}
		if strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml") {
			files = append(files, filepath.Join(dir, name))
		}
	}
	sort.Strings(files)
	kubectl := utils.KubectlPath()
	for _, f := range files {
		cmd := exec.Command(kubectl, "--kubeconfig", kubeconfig, "apply", "-f", f)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("kubectl apply -f %s: %w", f, err)
		}
	}
	return nil
}

func printUsage(kubeconfig, kubectl, tokenFile string, operator bool) {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("")
	p("================================================================")
	p(" Local control plane is up.")
	p("   kubeconfig: %s", kubeconfig)
	p("   token:      %s (mode 0600; also in Secret %s/%s)", tokenFile, tokenSecretNamespace, tokenSecretName)
	p("")
	p(" In another shell, from the repository root:")
	p("   export KUBECONFIG=$PWD/%s", kubeconfig)
	p("   %s get rap", kubectl)
	if operator {
		p("")
		p(" Authenticated request (expect 200):")
		p(`   curl -i -H "X-Original-URL: http://registry.localhost/api/servers" -H "Authorization: Bearer $(cat %s)" http://%s/validate`, tokenFile, authAddr)
		p(" Without credentials (expect 401):")
		p(`   curl -i -H "X-Original-URL: http://registry.localhost/api/servers" http://%s/validate`, authAddr)
	} else {
		p("")
		p(" --no-operator: registry-auth is not running.")
	}
	p("")
	p(" Press Ctrl-C to stop everything.")
	p("================================================================")
	fmt.Fprint(os.Stdout, b.String())
}
