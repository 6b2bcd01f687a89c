package jwt

import (
	"net/url"
	"strings"
)

// Presets: where an IdP puts the username, the groups and the audience.
const (
	PresetGeneric  = "generic"
	PresetKeycloak = "keycloak"
	PresetEntra    = "entra"
	PresetCognito  = "cognito"
)

// presetDefaults returns the default username claims and groups claim.
func presetDefaults(preset string) (username []string, groups string) {
	switch preset {
	case PresetEntra:
		return []string{"preferred_username", "upn", "unique_name", "sub"}, "groups"
	case PresetCognito:
		return []string{"username", "cognito:username", "sub"}, "cognito:groups"
	default:
		return []string{"preferred_username", "sub"}, "groups"
	}
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
func (a *Authenticator) audienceOK(aud []string, claims map[string]any) bool {
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
