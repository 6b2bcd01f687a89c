package controllers

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
)

// Ready once every listed policy was loaded, whether it was loaded before
// the list or after; the callbacks run once.
func TestReadiness(t *testing.T) {
	r := newReadiness()
	fired := make(chan struct{}, 2)
	r.whenReady(func() { fired <- struct{}{} })
	if r.Check(nil) == nil {
		t.Fatal("ready before the initial list")
	}
	r.loaded("ns/a") // before the list
	r.setListed([]string{"ns/a", "ns/b", "ns/c"})
	if err := r.Check(nil); err == nil || err.Error() != "2 policies not loaded yet" {
		t.Fatalf("Check = %v, want 2 policies pending", err)
	}
	r.loaded("ns/b")
	r.loaded("ns/x") // not listed: created after the list
	if r.ready() || r.Check(nil) == nil {
		t.Fatal("ready with ns/c pending")
	}
	r.loaded("ns/c")
	if !r.ready() || r.Check(nil) != nil {
		t.Fatalf("not ready after every listed policy loaded: %v", r.Check(nil))
	}
	r.loaded("ns/c")
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("whenReady callback did not run")
	}
	select {
	case <-fired:
		t.Fatal("whenReady callback ran twice")
	case <-time.After(50 * time.Millisecond):
	}
}

// Loading n listed policies costs O(n), not O(n²): 200,000 take well under
// the seconds the quadratic version needed for 20,000.
func TestReadinessLoadsAreNotQuadratic(t *testing.T) {
	const n = 200000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("ns/p%d", i)
	}
	r := newReadiness()
	r.setListed(keys)
	start := time.Now()
	for _, k := range keys {
		r.loaded(k)
	}
	if !r.ready() {
		t.Fatal("not ready")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("%d loads took %v", n, d)
	}
}

// The cache keeps no kubectl last-applied copy of a policy, nor Secret
// annotations, nor managedFields.
func TestStripForCache(t *testing.T) {
	p := &authv1alpha1.RegistryAuthPolicy{ObjectMeta: metav1.ObjectMeta{
		Annotations:   map[string]string{corev1.LastAppliedConfigAnnotation: `{"spec":{}}`, "team": "a"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}}
	if _, err := stripForCache(p); err != nil {
		t.Fatal(err)
	}
	if len(p.Annotations) != 1 || p.Annotations["team"] != "a" || p.ManagedFields != nil {
		t.Errorf("policy after strip: annotations %v, managedFields %v", p.Annotations, p.ManagedFields)
	}
	m := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{corev1.LastAppliedConfigAnnotation: "{}"}}}
	if _, err := stripForCache(m); err != nil {
		t.Fatal(err)
	}
	if m.Annotations != nil {
		t.Errorf("Secret metadata keeps annotations: %v", m.Annotations)
	}
}
