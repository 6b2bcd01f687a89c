package authn

import (
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// Problem reasons. They are the condition reasons of RegistryAuthPolicy
// status, and the operator copies them verbatim.
const (
	ProblemSecretNotFound      = "SecretNotFound"
	ProblemSecretNotOptedIn    = "SecretNotOptedIn"
	ProblemKeyMissing          = "KeyMissing"
	ProblemTokenEmpty          = "TokenEmpty"
	ProblemTokenTooWeak        = "TokenTooWeak"
	ProblemOIDCDiscoveryFailed = "OIDCDiscoveryFailed"
	ProblemInvalidSpec         = "InvalidSpec"
	ProblemHostConflict        = "HostConflict"
	ProblemHostNotGranted      = "HostNotGranted"
	// ProblemSigningKeyInvalid: the registry token's ES256 signing key is
	// not an unencrypted PEM P-256 private key.
	ProblemSigningKeyInvalid = "SigningKeyInvalid"
	// ProblemClaimRuleInvalid: a JWT issuer's claim rule or claim mapping
	// (CEL) does not compile; the issuer's tokens are refused.
	ProblemClaimRuleInvalid = "ClaimRuleInvalid"
)

// Problem is something in a policy that could not be put in force. The
// credential concerned is left out of the compiled policy (fail closed); the
// rest of the policy works.
type Problem struct {
	// Reason is one of the Problem constants.
	Reason string
	// Field names the part of the policy, e.g. "spec.staticToken" or
	// `spec.apiKeys[ci]`.
	Field string
	// Message says what is wrong and how to fix it. It never holds a secret.
	Message string
}

func (p Problem) Error() string { return p.Field + ": " + p.Message + " (" + p.Reason + ")" }

// SecretValue is a secret read from its source, or the reason it could not be
// read.
type SecretValue struct {
	// Value is the raw secret. The compile step trims surrounding white
	// space.
	Value []byte
	// Problem, when set, says why Value could not be read (e.g.
	// ProblemSecretNotFound, ProblemKeyMissing). The credential is not loaded.
	Problem *Problem
}

// LoadDigest cleans and checks a bearer secret (a static token, an API key)
// and returns its digest.
func LoadDigest(sv SecretValue, field string) (secret.Digest, *Problem) {
	v, prob := LoadSecret(sv, field, true)
	if prob != nil {
		return secret.Digest{}, prob
	}
	return secret.DigestOf(v), nil
}

// LoadSecret cleans and checks a bearer secret or, with bearer false, a
// signing key, and returns the cleaned value.
func LoadSecret(sv SecretValue, field string, bearer bool) ([]byte, *Problem) {
	if sv.Problem != nil {
		p := *sv.Problem
		if p.Field == "" {
			p.Field = field
		}
		return nil, &p
	}
	v := secret.Clean(sv.Value)
	if w, msg := secret.Check(v, bearer); w != secret.Strong {
		reason := ProblemTokenTooWeak
		switch {
		case w == secret.Empty && bearer:
			reason = ProblemTokenEmpty
			msg += "; static token and API key authentication are off for it, IdP (JWT) authentication still applies"
		case w == secret.Empty:
			reason = ProblemTokenEmpty
			msg += "; session cookies signed with it are not accepted, other credentials still apply"
		}
		return nil, &Problem{Reason: reason, Field: field, Message: msg}
	}
	return v, nil
}

// ClonePrevious copies the previous digests, dropping the current one (a
// token rotated back is current, not previous).
func ClonePrevious(prev []secret.PreviousDigest, current secret.Digest) []secret.PreviousDigest {
	var out []secret.PreviousDigest
	for _, p := range prev {
		if p.Digest != current {
			out = append(out, p)
		}
	}
	return out
}
