package jwt

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
)

// Claim rules and claim mappings are CEL expressions (the language of
// Kubernetes' structured authentication configuration) over one variable,
// claims: the verified token's claims as a map. They are compiled once, when
// the policy is compiled, and evaluated once per token: a verified identity
// is cached with the verdict, so a cached token costs no evaluation.
//
//	claims.repository == "acme/registry-sync" && claims.ref == "refs/heads/main"
//	claims["kubernetes.io"].namespace == "ci"
//
// A claim that is absent is an error, and an error fails the rule: write
// has(claims.x) or "x" in claims where a claim may be missing.

// Rule is a claim rule: a CEL expression that must evaluate to true for a
// token to be accepted.
type Rule struct {
	Expression string
	// Message is what status and the operator's log say when a token fails
	// it; "" means the expression itself.
	Message string
}

// ExpressionCostLimit bounds the runtime cost of one evaluation of one
// expression (CEL's cost units: roughly one per operation, per element a
// comprehension visits, per byte a string function reads). An evaluation
// that would exceed it is aborted and counts as failed. A realistic rule
// over a token's claims costs tens to a few thousand units; the limit stops
// a rule that is quadratic in a claim the token's holder controls.
const ExpressionCostLimit = 100_000

// maxExpressionLength bounds an expression's source.
const maxExpressionLength = 4096

// celEnv is the environment every expression compiles in.
var celEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		ext.Strings(),
	)
})

// program is a compiled expression.
type program struct {
	source string
	prg    cel.Program
}

// exprKind is what an expression must produce.
type exprKind uint8

const (
	exprBool exprKind = iota
	exprString
	exprStrings // a string or a list of strings
)

// compileExpression compiles one expression with the cost limit; the error
// says what is wrong (CEL's message, which quotes the expression).
func compileExpression(src string, kind exprKind, costLimit uint64) (*program, error) {
	if strings.TrimSpace(src) == "" {
		return nil, errors.New("the expression is empty")
	}
	if len(src) > maxExpressionLength {
		return nil, fmt.Errorf("the expression is longer than %d characters", maxExpressionLength)
	}
	env, err := celEnv()
	if err != nil {
		return nil, err
	}
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		return nil, iss.Err()
	}
	out := ast.OutputType()
	ok := out.IsExactType(cel.DynType)
	switch kind {
	case exprBool:
		ok = ok || out.IsExactType(cel.BoolType)
	case exprString:
		ok = ok || out.IsExactType(cel.StringType)
	case exprStrings:
		ok = ok || out.IsExactType(cel.StringType) || out.Kind() == types.ListKind
	}
	if !ok {
		want := map[exprKind]string{exprBool: "bool", exprString: "string", exprStrings: "a string or a list of strings"}[kind]
		return nil, fmt.Errorf("the expression evaluates to %s, want %s", out, want)
	}
	if costLimit == 0 {
		costLimit = ExpressionCostLimit
	}
	prg, err := env.Program(ast, cel.CostLimit(costLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, err
	}
	return &program{source: src, prg: prg}, nil
}

// activation binds claims for the evaluations of one token.
func activation(claims map[string]any) interpreter.Activation {
	act, err := interpreter.NewActivation(map[string]any{"claims": claims})
	if err != nil { // only for an input that is not a map or activation
		panic(err)
	}
	return act
}

// evalBool evaluates a rule: true only for a boolean true.
func (p *program) evalBool(act interpreter.Activation) bool {
	v, _, err := p.prg.Eval(act)
	if err != nil {
		return false
	}
	b, ok := v.(types.Bool)
	return ok && bool(b)
}

// evalString evaluates a mapping to a string; "" on error or another type.
func (p *program) evalString(act interpreter.Activation) string {
	v, _, err := p.prg.Eval(act)
	if err != nil {
		return ""
	}
	s, _ := v.Value().(string)
	return s
}

// evalStrings evaluates a mapping to a list of strings (a single string is a
// list of one; elements that are not strings are dropped). ok is false when
// the evaluation failed or gave another type.
func (p *program) evalStrings(act interpreter.Activation) (out []string, ok bool) {
	v, _, err := p.prg.Eval(act)
	if err != nil {
		return nil, false
	}
	return stringsOf(v)
}

func stringsOf(v ref.Val) ([]string, bool) {
	if s, ok := v.(types.String); ok {
		if s == "" {
			return nil, true
		}
		return []string{string(s)}, true
	}
	l, ok := v.(traits.Lister)
	if !ok {
		return nil, false
	}
	n, ok := l.Size().(types.Int)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, int(n))
	for i := types.Int(0); i < n; i++ {
		if s, ok := l.Get(i).(types.String); ok {
			out = append(out, string(s))
		}
	}
	return out, true
}
