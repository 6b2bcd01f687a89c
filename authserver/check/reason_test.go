package check

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// Every Reason constant of the package (read from its source) has a
// counter, and each reason for allowing a method.
func TestEveryReasonIsCounted(t *testing.T) {
	g := NewWithT(t)
	g.Expect(reasonIndex).To(HaveLen(len(allReasons)), "a reason is listed twice in allReasons")

	files, err := filepath.Glob("*.go")
	g.Expect(err).NotTo(HaveOccurred())
	var declared []Reason
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		g.Expect(err).NotTo(HaveOccurred())
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Reason" {
					continue
				}
				for _, v := range vs.Values {
					lit, ok := v.(*ast.BasicLit)
					g.Expect(ok).To(BeTrue(), "a Reason constant that is not a string literal")
					val, err := strconv.Unquote(lit.Value)
					g.Expect(err).NotTo(HaveOccurred())
					declared = append(declared, Reason(val))
				}
			}
		}
	}
	g.Expect(len(declared)).To(BeNumerically(">", 25), "the source scan found too few reasons")
	for _, r := range declared {
		g.Expect(reasonIndex).To(HaveKey(r), "reason %q is not in allReasons", r)
		_, deny := denyReasons[r]
		if r != ReasonUnlisted && r != ReasonUntrustedProxy && !deny {
			g.Expect(allowMethod).To(HaveKey(r), "reason %q neither denies nor has a method", r)
		}
	}
	g.Expect(allReasons).To(HaveLen(len(declared)), "allReasons lists a reason that is not declared")
	for r := range allowMethod {
		g.Expect(denyReasons).NotTo(HaveKey(r))
	}
}
