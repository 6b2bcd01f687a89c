package frontend

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func TestPolicyKeyFromPath(t *testing.T) {
	g := NewWithT(t)
	for p, want := range map[string]string{"/validate": "", "/validate/": "", "/validate/ns/name": "ns/name", "/validate/ns/name/": "ns/name"} {
		got, ok := policyKeyFrom(strings.TrimPrefix(p, "/validate"))
		g.Expect(ok).To(BeTrue(), p)
		g.Expect(got).To(Equal(want), p)
	}
	for _, p := range []string{"/validat", "/validate/ns", "/validate//name", "/validate/ns/", "/validate/a/b/c"} {
		_, ok := policyKeyFrom(strings.TrimPrefix(p, "/validate"))
		g.Expect(ok).To(BeFalse(), p)
	}
}
