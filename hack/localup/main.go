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
//
// With -node (make run NODE=1) it starts a real single-node cluster instead
// and runs the operator on it as pods (node.go).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/registryauth/registry-auth-operator/controllers"
	"github.com/registryauth/registry-auth-operator/test/utils"
)

const (
	tokenSecretName      = "registry-api-token"
	tokenSecretNamespace = "default"
	tokenSecretKey       = "token"

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
	dir := flag.String("dir", "bin/local",
		"directory for the kubeconfig, the token file and the control plane's data (its etcd/ and apiserver/ are recreated at every start; relative paths are from the repository root)")
	authAddr := flag.String("auth-bind-address", "127.0.0.1:8888", "registry-auth's auth service address")
	metricsAddr := flag.String("metrics-bind-address", "127.0.0.1:8080", "registry-auth's metrics address")
	healthAddr := flag.String("health-probe-bind-address", "127.0.0.1:8081", "registry-auth's probe address")
	noOperator := flag.Bool("no-operator", false,
		"only start the control plane (and create the token Secret and samples); do not run registry-auth")
	node := flag.Bool("node", false,
		"start a real single-node cluster (needs root and hack/provision.sh --node) and run the operator on it as pods of the image make image built (make run NODE=1)")
	images := flag.String("images", "bin/image",
		"with -node: the directory holding registry-auth.oci.tar and pause.oci.tar (make image; relative paths are from the repository root)")
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
	if !*noOperator && !*node {
		if _, err := os.Stat(bin); err != nil {
			logln("%s not found: run `make build` first (or `make run`, which builds it)", bin)
			return 1
		}
	}
	localDir := *dir
	if !filepath.IsAbs(localDir) {
		localDir = filepath.Join(root, localDir)
	}
	if err := os.MkdirAll(localDir, 0o755); err != nil {
		logln("%v", err)
		return 1
	}
	if *node {
		imgDir := *images
		if !filepath.IsAbs(imgDir) {
			imgDir = filepath.Join(root, imgDir)
		}
		return runNode(root, localDir, imgDir, *authAddr)
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
	// The ingress controllers' CRDs (make crds), so that the Traefik and
	// Envoy Gateway samples apply too.
	if crds := filepath.Join(root, "bin", "crds"); dirExists(crds) {
		env.CRDDirectoryPaths = append(env.CRDDirectoryPaths, crds)
	}
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
	tokenFile, err := seed(cfg, root, localDir, kubeconfig)
	if err != nil {
		logln("%v", err)
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
			"--auth-bind-address", *authAddr,
			"--metrics-bind-address", *metricsAddr,
			"--health-probe-bind-address", *healthAddr,
			"--zap-devel",
			// A local IdP or upstream auth server on this machine may be
			// plain http.
			"--allow-insecure-loopback",
			// One user, one local cluster: every namespace may claim any
			// host (the oldest policy wins).
			"--host-grants=*=*",
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

	printUsage("Local control plane is up.", rel(kubeconfig), kubectl, rel(tokenFile), *authAddr, !*noOperator)

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

// seed creates the token Secret (its value in localDir/token, whose path it
// returns) and applies the samples: what make run does to both kinds of
// cluster once its API server answers.
func seed(cfg *rest.Config, root, localDir, kubeconfig string) (string, error) {
	tokenFile := filepath.Join(localDir, "token")
	if err := createTokenSecret(cfg, tokenFile); err != nil {
		return "", fmt.Errorf("creating the token Secret: %w", err)
	}
	if err := applySamples(cfg, root, kubeconfig); err != nil {
		return "", fmt.Errorf("applying samples: %w", err)
	}
	return tokenFile, nil
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
		ObjectMeta: metav1.ObjectMeta{Name: tokenSecretName, Namespace: tokenSecretNamespace,
			Labels: map[string]string{controllers.LabelCredential: "true"}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{tokenSecretKey: []byte(token)},
	}
	if err := c.Create(ctx, secret); err != nil {
		return err
	}
	logln("created Secret %s/%s (key %q); the token is in %s", tokenSecretNamespace, tokenSecretName, tokenSecretKey, tokenFile)
	return nil
}

// applySamples applies every YAML in config/samples except kustomization.yaml
// with the locally built kubectl, in sorted order. A sample of a kind the
// cluster does not serve (another project's CRD that is not installed) is
// skipped with a message, not an error.
func applySamples(cfg *rest.Config, root, kubeconfig string) error {
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
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	cl, err := client.New(cfg, client.Options{})
	if err != nil {
		return err
	}
	kubectl := utils.KubectlPath()
	for _, f := range files {
		missing, namespaces, err := inspectManifest(mapper, f)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		if len(missing) > 0 {
			logln("skipping %s: this cluster has no %s (run `make crds` to install the ingress controllers' CRDs)",
				filepath.Base(f), strings.Join(missing, ", "))
			continue
		}
		// A sample may live in the operator's namespace (which an install
		// creates; this cluster has no install).
		for _, ns := range namespaces {
			if err := cl.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating namespace %s for %s: %w", ns, f, err)
			}
		}
		cmd := exec.Command(kubectl, "--kubeconfig", kubeconfig, "apply", "-f", f)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("kubectl apply -f %s: %w", f, err)
		}
	}
	return nil
}

// inspectManifest lists the kinds in a manifest file that the API server
// does not serve, and the namespaces its objects name.
func inspectManifest(mapper meta.RESTMapper, file string) (missing, namespaces []string, err error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = f.Close() }()
	add := func(list []string, s string) []string {
		if s == "" || slices.Contains(list, s) {
			return list
		}
		return append(list, s)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return missing, namespaces, nil
			}
			return nil, nil, err
		}
		if len(obj.Object) == 0 {
			continue
		}
		namespaces = add(namespaces, obj.GetNamespace())
		gvk := obj.GroupVersionKind()
		if _, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err != nil {
			if !meta.IsNoMatchError(err) {
				return nil, nil, err
			}
			missing = add(missing, gvk.Kind+" ("+gvk.GroupVersion().String()+")")
		}
	}
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func printUsage(title, kubeconfig, kubectl, tokenFile, authAddr string, operator bool) {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	p("")
	p("================================================================")
	p(" %s", title)
	p("   kubeconfig: %s", kubeconfig)
	p("   token:      %s (mode 0600; also in Secret %s/%s)", tokenFile, tokenSecretNamespace, tokenSecretName)
	p("")
	p(" In another shell, from the repository root:")
	if filepath.IsAbs(kubeconfig) {
		p("   export KUBECONFIG=%s", kubeconfig)
	} else {
		p("   export KUBECONFIG=$PWD/%s", kubeconfig)
	}
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
