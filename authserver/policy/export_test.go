package policy

import (
	"github.com/registryauth/registry-auth-operator/authserver/authn/session"
	"github.com/registryauth/registry-auth-operator/authserver/authn/statictoken"
	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// What the external tests of this package may see of a compiled policy.

// RegistryPrefixes are the policy's Registry API prefixes.
func RegistryPrefixes(p *Policy) []string { return p.registryPrefixes }

// StaticIdentity is the static token's identity, nil when none is loaded.
func StaticIdentity(p *Policy) *check.Identity {
	for _, a := range p.authenticators {
		if st, ok := a.(*statictoken.Authenticator); ok {
			return st.Identity()
		}
	}
	return nil
}

// HasSession reports whether the policy accepts session cookies.
func HasSession(p *Policy) bool {
	for _, a := range p.authenticators {
		if _, ok := a.(*session.Authenticator); ok {
			return true
		}
	}
	return false
}
