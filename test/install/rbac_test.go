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

package install

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ---------------------------------------------------------------------------
// 5. What the installed operator's ServiceAccount can do, asked of the API
// server with that account's own token.

// stateSecretRefusal is what config/rbac/state_secret_policy.yaml's message
// starts with.
const stateSecretRefusal = "the registry auth operator writes only the rotation state Secrets of its policies"

// TestOperatorWritesOnlyStateSecrets installs dist/install.yaml's
// ServiceAccount, ClusterRole and ClusterRoleBinding for real, then, with a
// token of that ServiceAccount (TokenRequest): first shows what RBAC alone
// lets it do (create a Secret in kube-system), then applies the file's
// ValidatingAdmissionPolicy and its binding and checks that every Secret
// write but a policy's own state Secret is refused, while the state Secret
// writes the operator makes still pass.
func TestOperatorWritesOnlyStateSecrets(t *testing.T) {
	ctx := context.Background()
	docs := parseDocs(t, readRepoFile(t, "dist/install.yaml"), "dist/install.yaml")
	var rbac, vap []object
	var saName string
	for _, o := range docs {
		switch o.kind() {
		case "Namespace", "ClusterRole", "ClusterRoleBinding":
			rbac = append(rbac, o)
		case "ServiceAccount":
			rbac = append(rbac, o)
			saName = o.name()
		case "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
			vap = append(vap, o)
		}
	}
	if saName == "" || len(vap) != 2 {
		t.Fatalf("dist/install.yaml: ServiceAccount %q, %d admission policy objects (want a ServiceAccount, the policy and its binding)", saName, len(vap))
	}
	applyObjects(t, rbac...)
	t.Cleanup(func() { deleteObjects(t, vap...) })

	admin := kubernetes.NewForConfigOrDie(adminConfig)
	tr, err := admin.CoreV1().ServiceAccounts(installNamespace).CreateToken(ctx, saName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", installNamespace, saName, err)
	}
	saConfig := rest.AnonymousClientConfig(adminConfig)
	saConfig.BearerToken = tr.Status.Token
	operator := kubernetes.NewForConfigOrDie(saConfig)
	review, err := operator.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectReview as the ServiceAccount: %v", err)
	}
	wantUser := "system:serviceaccount:" + installNamespace + ":" + saName
	if u := review.Status.UserInfo.Username; u != wantUser {
		t.Fatalf("the token authenticates as %q, want %q", u, wantUser)
	}

	// RBAC alone: the ClusterRole's create on Secrets reaches kube-system.
	probe := func(name string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system"}, Data: map[string][]byte{"k": []byte("v")}}
	}
	if _, err := operator.CoreV1().Secrets("kube-system").Create(ctx, probe("rbac-alone"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("before the admission policy, RBAC should let the ServiceAccount create a Secret in kube-system (what the policy is for); got %v", err)
	}
	_ = admin.CoreV1().Secrets("kube-system").Delete(ctx, "rbac-alone", metav1.DeleteOptions{})

	applyObjects(t, vap...)
	// The API server enforces a new policy once its informer has it.
	start := time.Now()
	for i := 0; ; i++ {
		_, err := operator.CoreV1().Secrets("kube-system").Create(ctx, probe(fmt.Sprintf("probe-%d", i)), metav1.CreateOptions{})
		if err != nil {
			wantRefused(t, err, "create Secret kube-system/probe")
			break
		}
		_ = admin.CoreV1().Secrets("kube-system").Delete(ctx, fmt.Sprintf("probe-%d", i), metav1.DeleteOptions{})
		if time.Since(start) > 30*time.Second {
			t.Fatal("the admission policy was not enforced within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("admission policy enforced %v after it was applied", time.Since(start).Round(time.Millisecond))

	// A policy namespace with a policy, its Secrets, and a Secret of someone
	// else's.
	const ns = "rbac-team-a"
	applyObjects(t, namespaceObject(ns))
	pol := object{
		"apiVersion": "auth.registryauth.io/v1alpha1", "kind": "RegistryAuthPolicy",
		"metadata": map[string]any{"name": "registry", "namespace": ns},
		"spec":     map[string]any{"staticToken": map[string]any{"enabled": true, "secretRef": map[string]any{"name": "registry-api-token"}}},
	}
	applyObjects(t, pol)
	uid, err := kubectl(nil, "get", "registryauthpolicy", "registry", "-n", ns, "-o", "jsonpath={.metadata.uid}")
	if err != nil {
		t.Fatalf("reading the policy's uid: %v\n%s", err, uid)
	}
	owner := metav1.OwnerReference{APIVersion: "auth.registryauth.io/v1alpha1", Kind: "RegistryAuthPolicy", Name: "registry", UID: types.UID(uid), Controller: ptr(true)}
	stateSecret := func(name string, owners ...metav1.OwnerReference) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: ns, OwnerReferences: owners,
				Labels: map[string]string{"registryauth.io/credential": "state", "app.kubernetes.io/managed-by": "registry-auth-operator"},
			},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{"state.json": []byte(`{"version":1}`)},
		}
	}
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "victim", Namespace: "kube-system"}, Data: map[string][]byte{"k": []byte("v")}},
		{ObjectMeta: metav1.ObjectMeta{Name: "registry-api-token", Namespace: ns, Labels: map[string]string{"registryauth.io/credential": "true"}}, Data: map[string][]byte{"token": []byte("an-api-token-of-32-characters-xx")}},
		stateSecret("orphan-rap-state"), // state-like, owned by no policy
	} {
		if _, err := admin.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating %s/%s as admin: %v", s.Namespace, s.Name, err)
		}
	}

	mergePatch := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	create := func(s *corev1.Secret) error {
		_, err := operator.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
		return err
	}
	patch := func(namespace, name string, p any) error {
		_, err := operator.CoreV1().Secrets(namespace).Patch(ctx, name, types.MergePatchType, mergePatch(p), metav1.PatchOptions{})
		return err
	}
	data := func(k, v string) map[string]any { return map[string]any{"data": map[string]any{k: []byte(v)}} }

	refused := []struct {
		name string
		do   func() error
	}{
		{"a service-account-token Secret in kube-system", func() error {
			return create(&corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "escalate", Namespace: "kube-system", Annotations: map[string]string{corev1.ServiceAccountNameKey: "default"}},
				Type:       corev1.SecretTypeServiceAccountToken,
			})
		}},
		{"a bootstrap-token Secret in kube-system", func() error {
			return create(&corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-abcdef", Namespace: "kube-system"},
				Type:       corev1.SecretTypeBootstrapToken,
				Data:       map[string][]byte{"token-id": []byte("abcdef"), "token-secret": []byte("0123456789abcdef")},
			})
		}},
		{"a patch of a Secret in kube-system", func() error { return patch("kube-system", "victim", data("k", "changed")) }},
		{"a patch of a policy's credential Secret", func() error {
			return patch(ns, "registry-api-token", data("token", "attacker-chosen-token-value-xxxx"))
		}},
		{"a state-named Secret without an owner", func() error { return create(stateSecret("registry-rap-state")) }},
		{"a state Secret named for another policy", func() error { return create(stateSecret("other-rap-state", owner)) }},
		{"a state Secret of a policy, not Opaque", func() error {
			s := stateSecret("registry-rap-state", owner)
			s.Type = "example.com/other"
			return create(s)
		}},
		{"a state Secret of a policy with a second key", func() error {
			s := stateSecret("registry-rap-state", owner)
			s.Data["token"] = []byte("x")
			return create(s)
		}},
		{"taking over a Secret by adding an owner", func() error {
			return patch(ns, "orphan-rap-state", map[string]any{"metadata": map[string]any{"ownerReferences": []metav1.OwnerReference{{
				APIVersion: owner.APIVersion, Kind: owner.Kind, Name: "orphan", UID: owner.UID, Controller: ptr(true),
			}}}})
		}},
		{"a delete", func() error {
			return operator.CoreV1().Secrets("kube-system").Delete(ctx, "victim", metav1.DeleteOptions{})
		}},
	}
	for _, tc := range refused {
		wantRefused(t, tc.do(), tc.name)
	}

	// What the operator does (controllers/status.go's writeState) passes:
	// create the state Secret, patch its value and its label.
	if err := create(stateSecret("registry-rap-state", owner)); err != nil {
		t.Fatalf("creating the policy's state Secret as the operator: %v", err)
	}
	if err := patch(ns, "registry-rap-state", map[string]any{
		"metadata": map[string]any{"labels": map[string]any{"registryauth.io/credential": "state"}},
		"data":     map[string]any{"state.json": []byte(`{"version":2}`)},
	}); err != nil {
		t.Fatalf("patching the policy's state Secret as the operator: %v", err)
	}
	// But not into something else.
	wantRefused(t, patch(ns, "registry-rap-state", map[string]any{"metadata": map[string]any{"ownerReferences": nil}}), "dropping the state Secret's owner")
	wantRefused(t, patch(ns, "registry-rap-state", data("token", "x")), "adding a key to the state Secret")

	// Other users are not affected.
	if _, err := admin.CoreV1().Secrets("kube-system").Patch(ctx, "victim", types.MergePatchType, mergePatch(data("k", "admin")), metav1.PatchOptions{}); err != nil {
		t.Errorf("the admission policy refused the cluster admin: %v", err)
	}
}

// TestNamespacedOverlay builds config/namespaced, applies its RBAC for real
// under a ServiceAccount of its own, and checks that the operator's account
// can read Secrets only in the watched namespace and that the manager is
// told to watch only there.
func TestNamespacedOverlay(t *testing.T) {
	ctx := context.Background()
	out, err := run(nil, kubectlBin, "kustomize", root+"/config/namespaced")
	if err != nil {
		t.Fatalf("kubectl kustomize config/namespaced: %v\n%s", err, out)
	}
	docs := parseDocs(t, []byte(out), "kustomize build config/namespaced")
	for _, o := range docs {
		// The one cluster-wide binding is of the built-in issuer
		// discovery role: GET on two public non-resource URLs, no
		// resource at all.
		if o.kind() == "ClusterRoleBinding" && o.get("roleRef", "name") != "system:service-account-issuer-discovery" {
			t.Errorf("config/namespaced binds cluster-wide: %s", o.id())
		}
	}
	wantArgs(t, managerArgs(t, docs), "--namespace="+installNamespace)
	serverDryRun(t, []byte(out), len(docs))

	// The overlay's RoleBinding, for a ServiceAccount of this test's (the
	// install's own names are bound cluster-wide by the other test).
	const watched, other, sa = "rbac-ns-watched", "rbac-ns-other", "namespaced-operator"
	applyObjects(t, namespaceObject(watched), namespaceObject(other))
	var role, binding object
	for _, o := range docs {
		switch {
		case o.kind() == "ClusterRole" && strings.HasSuffix(o.name(), "manager-role"):
			role = o
		case o.kind() == "RoleBinding" && strings.HasSuffix(o.name(), "manager-rolebinding"):
			binding = o
		}
	}
	if role == nil || binding == nil {
		t.Fatalf("config/namespaced: manager ClusterRole %v, RoleBinding %v", role != nil, binding != nil)
	}
	binding = deepCopy(t, []object{binding})[0]
	binding["metadata"].(map[string]any)["namespace"] = watched
	binding["subjects"] = []any{map[string]any{"kind": "ServiceAccount", "name": sa, "namespace": watched}}
	applyObjects(t, role, object{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": map[string]any{"name": sa, "namespace": watched}}, binding)

	admin := kubernetes.NewForConfigOrDie(adminConfig)
	for _, n := range []string{watched, other} {
		if _, err := admin.CoreV1().Secrets(n).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Data: map[string][]byte{"k": []byte("v")}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	tr, err := admin.CoreV1().ServiceAccounts(watched).CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := rest.AnonymousClientConfig(adminConfig)
	cfg.BearerToken = tr.Status.Token
	operator := kubernetes.NewForConfigOrDie(cfg)
	if _, err := operator.CoreV1().Secrets(watched).Get(ctx, "s", metav1.GetOptions{}); err != nil {
		t.Errorf("reading a Secret in the watched namespace: %v", err)
	}
	for _, n := range []string{other, "kube-system"} {
		if _, err := operator.CoreV1().Secrets(n).Get(ctx, "s", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("reading a Secret in %s: got %v, want Forbidden", n, err)
		}
		if _, err := operator.CoreV1().Secrets(n).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("listing Secrets in %s: got %v, want Forbidden", n, err)
		}
	}
	if _, err := operator.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing Secrets cluster-wide: got %v, want Forbidden", err)
	}
}

func wantRefused(t *testing.T, err error, what string) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s as the operator's ServiceAccount: allowed, want refused", what)
	case !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err):
		t.Errorf("%s as the operator's ServiceAccount: %v, want Forbidden", what, err)
	case strings.Contains(err.Error(), stateSecretRefusal), strings.Contains(err.Error(), "cannot delete resource"):
		// the admission policy, or RBAC (delete is not granted)
	default:
		t.Errorf("%s as the operator's ServiceAccount: refused, but not by the admission policy: %v", what, err)
	}
}

func deleteObjects(t *testing.T, objs ...object) {
	t.Helper()
	for _, o := range objs {
		if out, err := kubectl(nil, "delete", "--ignore-not-found", strings.ToLower(o.kind()), o.name()); err != nil {
			t.Logf("deleting %s: %v\n%s", o.id(), err, out)
		}
	}
}

func ptr[T any](v T) *T { return &v }
