package controllers

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
)

// With Options.CredentialSecrets, a policy whose Secret the selector
// selects is loaded, and its rotations too, without a read of that Secret
// from the API server; a Secret the selector does not select is read as
// before. (Both Secrets opt in as credentials; the selector takes one.)
func TestCredentialSecretCache(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	labelled, plain := randomToken(t), randomToken(t)
	mk := func(name, tok string, lbl map[string]string) {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbl}, StringData: map[string]string{"token": tok}}
		g.Expect(adminClient.Create(context.Background(), s)).To(Succeed())
	}
	optIn := map[string]string{LabelCredential: "true"}
	mk("labelled", labelled, map[string]string{LabelCredential: "true", "example.com/cached": "yes"})
	mk("plain", plain, optIn)
	createPolicy(t, ns, "a", "labelled")
	createPolicy(t, ns, "b", "plain", func(p *authv1alpha1.RegistryAuthPolicy) { p.Spec.Hosts = []string{"b.example.com"} })
	reqs := &requestLog{}
	m := startManager(t, managerOpts{requests: reqs, credentials: labels.SelectorFromSet(labels.Set{LabelCredential: "true", "example.com/cached": "yes"})})
	g.Eventually(func(g Gomega) {
		g.Expect(m.allows(ns, "a", labelled)).To(BeTrue())
		g.Expect(m.allows(ns, "b", plain)).To(BeTrue())
	}, 10*time.Second, 20*time.Millisecond).Should(Succeed())

	reads := map[string]int{}
	secretsPath := "/api/v1/namespaces/" + ns + "/secrets/"
	for _, r := range reqs.take() {
		if r.method == http.MethodGet && strings.HasPrefix(r.url.Path, secretsPath) {
			reads[strings.TrimPrefix(r.url.Path, secretsPath)]++
		}
	}
	g.Expect(reads).NotTo(HaveKey("labelled"), "the labelled Secret is read from the credential cache")
	g.Expect(reads["plain"]).To(BeNumerically(">=", 1), "a Secret the selector does not select is read from the API server")

	// A rotation of the labelled Secret is in force (read from the cache,
	// or from the API server when the metadata watch saw it first).
	old := labelled
	labelled = randomToken(t)
	var s corev1.Secret
	g.Expect(adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "labelled"}, &s)).To(Succeed())
	s.Data = map[string][]byte{"token": []byte(labelled)}
	g.Expect(adminClient.Update(context.Background(), &s)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(m.allows(ns, "a", labelled)).To(BeTrue())
		g.Expect(m.allows(ns, "a", old)).To(BeFalse())
	}, 10*time.Second, 5*time.Millisecond).Should(Succeed())
}
