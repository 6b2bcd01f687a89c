package jwt

import (
	"net/url"
	"strings"

	"github.com/registryauth/registry-auth-operator/authserver/check"
)

// Presets: where an IdP puts the username, the groups, the client and the
// audience. A preset's name is also the X-Auth-Method of its users, as the
// upstream auth server names its providers.
const (
	PresetGeneric  = "generic"
	PresetKeycloak = "keycloak"
	PresetEntra    = "entra"
	PresetCognito  = "cognito"
	PresetOkta     = "okta"
	PresetAuth0    = "auth0"
	// PresetGitHubActions is GitHub Actions' OIDC token
	// (permissions: id-token: write). Username: sub
	// ("repo:OWNER/REPO:ref:refs/heads/main", ...); no groups (map them
	// with a CEL expression). Claims rules are written on: repository,
	// repository_owner, ref, ref_type, workflow_ref, job_workflow_ref,
	// environment, event_name, actor, sha, run_id.
	PresetGitHubActions = "github-actions"
	// PresetGitLab is GitLab CI's id_tokens. Username: sub
	// ("project_path:GROUP/PROJECT:ref_type:branch:ref:main"); no groups.
	// Claims: namespace_path, project_path, ref, ref_type, ref_protected,
	// pipeline_source, environment, user_login.
	PresetGitLab = "gitlab"
	// PresetKubernetes is a Kubernetes ServiceAccount token. Username: sub
	// ("system:serviceaccount:NAMESPACE:NAME"); no groups. Claims:
	// claims["kubernetes.io"].namespace,
	// claims["kubernetes.io"].serviceaccount.name, and .pod.name when the
	// token is bound to a pod.
	PresetKubernetes = "kubernetes"
)

// Presets lists every preset.
var Presets = []string{PresetGeneric, PresetKeycloak, PresetEntra, PresetCognito, PresetOkta, PresetAuth0, PresetGitHubActions, PresetGitLab, PresetKubernetes}

// Default issuers of the presets that have one.
const (
	GitHubActionsIssuer = "https://token.actions.githubusercontent.com"
	GitLabIssuer        = "https://gitlab.com"
)

// DefaultIssuerURL is the issuer URL of a preset that has a well-known one
// ("" for the others).
func DefaultIssuerURL(preset string) string {
	switch preset {
	case PresetGitHubActions:
		return GitHubActionsIssuer
	case PresetGitLab:
		return GitLabIssuer
	}
	return ""
}

// Auth0GroupsClaim is where the upstream auth server reads Auth0 groups by
// default (AUTH0_GROUPS_CLAIM): Auth0 puts custom claims under a namespace.
const Auth0GroupsClaim = "https://mcp-gateway/groups"

// presetClaims are where a preset finds the username, the groups and the
// client: the first claim present (and not empty) of each list.
type presetClaims struct {
	username []string
	groups   []string
	client   []string
}

// presetDefaults returns the preset's default claims.
func presetDefaults(preset string) presetClaims {
	generic := []string{"azp", "client_id", "appid"}
	switch preset {
	case PresetEntra:
		return presetClaims{[]string{"preferred_username", "upn", "unique_name", "sub"}, []string{"groups"}, generic}
	case PresetCognito:
		return presetClaims{[]string{"username", "cognito:username", "sub"}, []string{"cognito:groups"}, generic}
	case PresetOkta:
		// Okta's access tokens name the user in sub and the client in cid.
		return presetClaims{[]string{"sub", "preferred_username"}, []string{"groups"}, []string{"cid", "azp", "client_id"}}
	case PresetAuth0:
		// Auth0's access tokens carry groups in a namespaced custom claim,
		// or, with Auth0 RBAC, as permissions.
		return presetClaims{[]string{"nickname", "sub"}, []string{Auth0GroupsClaim, "permissions"}, generic}
	case PresetGitHubActions, PresetGitLab, PresetKubernetes:
		// Workload identities: the subject names the workload; there
		// are no groups, and no client but the audience.
		return presetClaims{[]string{"sub"}, nil, nil}
	default:
		return presetClaims{[]string{"preferred_username", "sub"}, []string{"groups"}, generic}
	}
}

// method is the X-Auth-Method of the preset's users.
func presetMethod(preset string) check.Method {
	if preset == PresetGeneric || preset == "" {
		return check.MethodOIDC
	}
	return check.Method(preset)
}

// entraV1Issuer returns the v1 issuer (https://sts.windows.net/<tenant>/) of
// an Entra ID v2 issuer URL (https://login.microsoftonline.com/<tenant>/v2.0),
// or "".
func entraV1Issuer(v2 string) string {
	u, err := url.Parse(v2)
	if err != nil {
		return ""
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) != 2 || parts[1] != "v2.0" || parts[0] == "" {
		return ""
	}
	return "https://sts.windows.net/" + parts[0] + "/"
}

// audienceOK checks aud against the configured audiences. Keycloak's access
// tokens name the requesting client in azp (aud is often "account"); Cognito's
// access tokens carry client_id and no aud.
func (a *entry) audienceOK(aud []string, claims map[string]any) bool {
	for _, x := range aud {
		if contains(a.audiences, x) {
			return true
		}
	}
	switch a.preset {
	case PresetKeycloak:
		if s, _ := claims["azp"].(string); s != "" && contains(a.audiences, s) {
			return true
		}
	case PresetCognito:
		use, _ := claims["token_use"].(string)
		if s, _ := claims["client_id"].(string); s != "" && use == "access" && contains(a.audiences, s) {
			return true
		}
	}
	return false
}
