package controllers

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// With the credential Secret cache (the default), a policy whose Secret is
// opted in is loaded, and its rotations too, without a read of that Secret
// from the API server, and the cache knows when the Secret last changed
// (status, grace windows). A Secret that is not opted in is read from the API
// server and refused, as without the cache. The cache lists and watches
// only what the selector selects: the API server filters, so nothing else
// is held in memory.
func TestCredentialSecretCache(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	labelled, plain := randomToken(t), randomToken(t)
	mk := func(name, tok string, lbl map[string]string) {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbl}, StringData: map[string]string{"token": tok}}
		g.Expect(adminClient.Create(context.Background(), s)).To(Succeed())
	}
	mk("labelled", labelled, optedIn())
	// Changed after its creation: the value in force was put in then.
	time.Sleep(2100 * time.Millisecond)
	labelled = randomToken(t)
	var s corev1.Secret
	g.Expect(adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "labelled"}, &s)).To(Succeed())
	s.Data = map[string][]byte{"token": []byte(labelled)}
	g.Expect(adminClient.Update(context.Background(), &s)).To(Succeed())
	changed := time.Now()
	mk("plain", plain, map[string]string{"team": "payments"})
	const grace = time.Hour
	createPolicy(t, ns, "a", "labelled", func(p *authv1alpha1.RegistryAuthPolicy) {
		p.Spec.StaticToken.RotationGracePeriod = &metav1.Duration{Duration: grace}
	})
	createPolicy(t, ns, "b", "plain", func(p *authv1alpha1.RegistryAuthPolicy) { p.Spec.Hosts = []string{"b.example.com"} })
	reqs := &requestLog{}
	m := startManager(t, managerOpts{requests: reqs})
	g.Eventually(func(g Gomega) {
		g.Expect(m.allows(ns, "a", labelled)).To(BeTrue())
		c := readyCondition(g, ns, "b")
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(authn.ProblemSecretNotOptedIn))
		g.Expect(c.Message).To(ContainSubstring(LabelCredential + "=true"))
	}, 10*time.Second, 20*time.Millisecond).Should(Succeed())
	g.Expect(m.allows(ns, "b", plain)).To(BeFalse(), "a Secret that is not opted in is no credential, cache or not")
	g.Eventually(func(g Gomega) {
		st := getPolicy(g, ns, "a").Status.StaticToken
		g.Expect(st).NotTo(BeNil())
		g.Expect(st.RotatedAt.Time).To(BeTemporally("~", changed, 1500*time.Millisecond), "put in when the Secret last changed, not when it was created")
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())

	reads := map[string]int{}
	secretsPath := "/api/v1/namespaces/" + ns + "/secrets/"
	var lists []recordedRequest
	for _, r := range reqs.take() {
		if r.method != http.MethodGet {
			continue
		}
		if strings.HasPrefix(r.url.Path, secretsPath) {
			reads[strings.TrimPrefix(r.url.Path, secretsPath)]++
		}
		if strings.HasSuffix(r.url.Path, "/secrets") && !strings.Contains(r.accept, "PartialObjectMetadata") {
			lists = append(lists, r)
		}
	}
	// Each Secret is held once: the manager's metadata cache leaves the
	// selected ones to the credential cache.
	meta := func(name string) error {
		var pom metav1.PartialObjectMetadata
		pom.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		return m.mgr.GetCache().Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &pom)
	}
	g.Expect(apierrors.IsNotFound(meta("labelled"))).To(BeTrue(), "the labelled Secret's metadata is not cached twice")
	g.Expect(meta("plain")).To(Succeed())

	g.Expect(reads).NotTo(HaveKey("labelled"), "the labelled Secret is read from the credential cache")
	g.Expect(reads["plain"]).To(BeNumerically(">=", 1), "a Secret the selector does not select is read from the API server")
	g.Expect(lists).NotTo(BeEmpty(), "the credential cache lists Secrets")
	for _, r := range lists {
		g.Expect(r.url.Query().Get("labelSelector")).To(Equal(DefaultCredentialSecrets().String()),
			"Secrets with their data are listed and watched only as the selector selects: %s", r.url)
	}

	// A rotation of the labelled Secret is in force (read from the cache,
	// or from the API server when the metadata watch saw it first), and
	// the previous token has its window from now.
	old := labelled
	labelled = randomToken(t)
	g.Expect(adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "labelled"}, &s)).To(Succeed())
	s.Data = map[string][]byte{"token": []byte(labelled)}
	g.Expect(adminClient.Update(context.Background(), &s)).To(Succeed())
	rotated := time.Now()
	g.Eventually(func(g Gomega) {
		g.Expect(m.allows(ns, "a", labelled)).To(BeTrue())
		g.Expect(m.decide(ns, "a", "/api/servers", old).Reason).To(Equal(check.ReasonAllowedStaticTokenPrevious))
	}, 10*time.Second, 5*time.Millisecond).Should(Succeed())
	g.Eventually(func(g Gomega) {
		st := getPolicy(g, ns, "a").Status.StaticToken
		g.Expect(st.Fingerprint).To(Equal(fp(labelled)))
		g.Expect(st.PreviousExpiresAt).NotTo(BeNil())
		g.Expect(st.PreviousExpiresAt.Time).To(BeTemporally("~", rotated.Add(grace), time.Second))
	}, 10*time.Second, 50*time.Millisecond).Should(Succeed())

	// Labelled later, the plain Secret is opted in and loaded.
	g.Expect(adminClient.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "plain"}, &s)).To(Succeed())
	s.Labels[LabelCredential] = "true"
	g.Expect(adminClient.Update(context.Background(), &s)).To(Succeed())
	g.Eventually(func() bool { return m.allows(ns, "b", plain) }, 10*time.Second, 5*time.Millisecond).Should(BeTrue())
}

// The credential cache keeps of a Secret what a load reads, and when it
// last changed.
func TestStripCredentialSecret(t *testing.T) {
	g := NewWithT(t)
	t1, t2 := metav1.NewTime(time.Unix(1000, 0)), metav1.NewTime(time.Unix(2000, 0))
	in := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns", UID: "u", ResourceVersion: "7",
			Labels:          map[string]string{LabelCredential: "true", "team": "x"},
			Annotations:     map[string]string{corev1.LastAppliedConfigAnnotation: "the whole Secret"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "RegistryAuthPolicy", UID: "p"}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "a", Time: &t2}, {Manager: "b", Time: &t1}}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{"token": []byte("x")},
	}
	out, err := stripCredentialSecret(in)
	g.Expect(err).NotTo(HaveOccurred())
	s := out.(*corev1.Secret)
	g.Expect(s.Labels).To(Equal(map[string]string{LabelCredential: "true"}))
	g.Expect(s.Annotations).To(BeNil())
	g.Expect(s.OwnerReferences).To(Equal(in.OwnerReferences))
	g.Expect(s.Data).To(Equal(in.Data))
	g.Expect(s.UID).To(Equal(in.UID))
	g.Expect(s.ResourceVersion).To(Equal("7"))
	g.Expect(lastChanged(s, time.Unix(3000, 0))).To(Equal(t2.Time), "the newest write is kept")
}

// The metadata watch leaves out what the credential cache selects, when the
// selector can be turned around.
func TestComplementOf(t *testing.T) {
	g := NewWithT(t)
	for sel, want := range map[string]string{
		DefaultCredentialSecretSelector: LabelCredential + " notin (state,true)",
		"a=b":                           "a notin (b)",
		"a":                             "!a",
		"a!=b":                          "",
		"a=b,c=d":                       "",
	} {
		parsed, err := labels.Parse(sel)
		g.Expect(err).NotTo(HaveOccurred())
		got := complementOf(parsed)
		if want == "" {
			g.Expect(got).To(BeNil(), sel)
			continue
		}
		g.Expect(got).NotTo(BeNil(), sel)
		g.Expect(got.String()).To(Equal(want), sel)
		for _, lbls := range []labels.Set{{}, {LabelCredential: "true"}, {LabelCredential: "state"}, {LabelCredential: "x"}, {"a": "b"}, {"a": "c"}} {
			g.Expect(got.Matches(lbls)).To(Equal(!parsed.Matches(lbls)), "%s on %v", sel, lbls)
		}
	}
	g.Expect(complementOf(nil)).To(BeNil())
}

// A selector of its own (two labels, which the metadata watch cannot turn
// around: it then watches every Secret): a Secret it selects is loaded
// without a read from the API server, and rotated; an opted-in Secret it
// does not select is read from the API server as without the cache.
func TestCredentialSecretCacheCustomSelector(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	labelled, plain := randomToken(t), randomToken(t)
	mk := func(name, tok string, lbl map[string]string) {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: lbl}, StringData: map[string]string{"token": tok}}
		g.Expect(adminClient.Create(context.Background(), s)).To(Succeed())
	}
	mk("labelled", labelled, map[string]string{LabelCredential: "true", "example.com/cached": "yes"})
	mk("plain", plain, optedIn())
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
