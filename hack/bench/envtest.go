package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
	"github.com/registryauth/registry-auth-operator/controllers"
	"github.com/registryauth/registry-auth-operator/test/utils"
)

// kube is the bench's control plane (envtest: etcd and kube-apiserver from
// bin/k8s) and its clients.
type kube struct {
	env        *envtest.Environment
	kubeconfig string
	clientset  *kubernetes.Clientset
	client     client.Client
}

func startEnvtest(workDir string) (*kube, error) {
	if _, err := utils.FindBinaryAssetsDir(); err != nil {
		return nil, err // says to run `make envtest`
	}
	crlog.SetLogger(logr.Discard())
	env := utils.NewEnvironment()
	begin := time.Now()
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting envtest: %w", err)
	}
	k := &kube{env: env}
	logf("control plane started in %v", time.Since(begin).Round(time.Millisecond))
	admin, err := env.AddUser(envtest.User{Name: "bench-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		k.stop()
		return nil, err
	}
	kc, err := admin.KubeConfig()
	if err != nil {
		k.stop()
		return nil, err
	}
	k.kubeconfig = filepath.Join(workDir, "kubeconfig")
	if err := os.WriteFile(k.kubeconfig, kc, 0o600); err != nil {
		k.stop()
		return nil, err
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 2000, 4000
	if k.clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		k.stop()
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := authv1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if k.client, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		k.stop()
		return nil, err
	}
	return k, nil
}

func (k *kube) stop() {
	if err := k.env.Stop(); err != nil {
		logf("stopping envtest: %v", err)
	}
}

func (k *kube) createNamespace(ctx context.Context, name string) error {
	_, err := k.clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// createPolicy creates a Secret holding token (key "token") and a policy
// for host with the static token from it, rotation grace 0.
func (k *kube) createPolicy(ctx context.Context, ns, name, host, token string) error {
	sec := &corev1.Secret{
		// The credential opt-in label: without it the operator refuses
		// the Secret. The credential Secret cache (the default) holds it;
		// -operator-args --credential-secret-selector= measures the
		// operator without that cache.
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-token", Labels: map[string]string{controllers.LabelCredential: "true"}},
		Data:       map[string][]byte{"token": []byte(token)},
	}
	if _, err := k.clientset.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating Secret %s/%s: %w", ns, sec.Name, err)
	}
	pol := &authv1alpha1.RegistryAuthPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: authv1alpha1.RegistryAuthPolicySpec{
			Hosts: []string{host},
			StaticToken: &authv1alpha1.StaticTokenSpec{
				Enabled:             true,
				SecretRef:           &authv1alpha1.SecretKeySelector{Name: sec.Name, Key: "token"},
				RotationGracePeriod: &metav1.Duration{Duration: 0},
			},
		},
	}
	if err := k.client.Create(ctx, pol); err != nil {
		return fmt.Errorf("creating policy %s/%s: %w", ns, name, err)
	}
	return nil
}

// createPolicies creates n policies in ns with workers in parallel.
func (k *kube) createPolicies(ctx context.Context, ns string, names, hosts, tokens []string, workers int) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := k.createPolicy(ctx, ns, names[i], hosts[i], tokens[i]); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range names {
		next <- i
	}
	close(next)
	wg.Wait()
	return firstErr
}
