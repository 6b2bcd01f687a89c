package check

import (
	"testing"

	. "github.com/onsi/gomega"
)

// Identity values must reach the registry as they are: Go's and Python's
// trimming drop Unicode white space at either end, and control and format
// characters make one name look like another.
func TestHeaderSafe(t *testing.T) {
	g := NewWithT(t)
	for _, s := range []string{"alice", "Zoë Doe", "alice@example.com", "ci-read", "a b", "日本"} {
		g.Expect(HeaderSafe(s)).To(BeTrue(), "%q", s)
	}
	for _, s := range []string{
		" admin", "admin ", "\tadmin", "network-user\u00a0", "\u0085network-user", "network-user\u2028",
		"\u3000admin", "admin\u2029", "ad\x00min", "ad\x7fmin", "ad\u200bmin", "ad\u202emin", "\ufeffadmin",
		"ad\u0085min", "adm\xffin", "ad\r\nmin",
	} {
		g.Expect(HeaderSafe(s)).To(BeFalse(), "%q", s)
	}
	g.Expect(SafeList([]string{"dev", "a,b", "a b", "x\u00a0", "y\u200b", "\xff", "", "dev", "ops"})).To(Equal([]string{"dev", "ops"}))
}
