package check

import (
	"os"
	"regexp"
	"strconv"
	"testing"

	. "github.com/onsi/gomega"
)

// The README's table of deny reasons is what operators read when they see a
// reason: every reason the service can answer, with its status and the exact
// message of the JSON body, and nothing else.
func TestReadmeDenyReasons(t *testing.T) {
	g := NewWithT(t)
	b, err := os.ReadFile("../../README.md")
	g.Expect(err).NotTo(HaveOccurred())
	// The section's table, up to the next heading.
	section := regexp.MustCompile("(?s)\n### Deny reasons\n(.*?)\n#").FindSubmatch(b)
	g.Expect(section).NotTo(BeNil(), "the README has no Deny reasons section")
	row := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| ([0-9]{3}) \\| `([^`]*)`")
	documented := map[Reason]bool{}
	rows := row.FindAllStringSubmatch(string(section[1]), -1)
	g.Expect(rows).NotTo(BeEmpty())
	for _, m := range rows {
		r := Reason(m[1])
		d, ok := denyReasons[r]
		g.Expect(ok).To(BeTrue(), "the README lists %s, which is no deny reason", r)
		if !ok {
			continue
		}
		documented[r] = true
		status, _ := strconv.Atoi(m[2])
		g.Expect(status).To(Equal(d.status), "README status of %s", r)
		g.Expect(m[3]).To(Equal(d.message), "README message of %s", r)
	}
	for r := range denyReasons {
		g.Expect(documented).To(HaveKey(r), "deny reason %s is not in the README's table", r)
	}
}
