/*
Copyright 2026 The registry-auth-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package controllers

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authn/jwt"
)

// ClusterIssuer is the service account issuer of the cluster the operator
// runs in: the kubernetes preset of spec.issuers. Its discovery document and
// keys are read through the API server, with the operator's own credentials
// and the cluster's CA (the rest config's), so neither the issuer URL nor
// its jwks_uri has to be reachable from the pod, and a policy names no URL
// at all. Reading them takes the service-account-issuer-discovery
// ClusterRole, which the install binds to the operator's ServiceAccount.
//
// Tokens are verified by signature (JWKS), like every other issuer's: the
// API server is not asked about each token (TokenReview). A token stays
// valid until its exp even when its ServiceAccount, or the pod it is bound
// to, has been deleted; docs/ci-without-shared-secrets.md says why and how
// short to keep them.
type ClusterIssuer struct {
	issuers *jwt.Issuers
	// apiAudiences are audiences of tokens the API server itself accepts
	// (its --api-audiences, when known): a policy must not accept tokens
	// minted for the API server, which every pod's default token is.
	apiAudiences []string
}

// NewClusterIssuer reads the cluster's issuer through the API server of
// cfg. It makes no request until a policy uses it.
func NewClusterIssuer(cfg *rest.Config) (*ClusterIssuer, error) {
	c := rest.CopyConfig(cfg)
	c.Timeout = jwt.FetchTimeout
	hc, err := rest.HTTPClientFor(c)
	if err != nil {
		return nil, err
	}
	return &ClusterIssuer{
		issuers:      jwt.NewClusterIssuers(hc, c.Host),
		apiAudiences: ownTokenAudiences(cfg),
	}, nil
}

// wellKnownAPIAudiences are the API server's default audiences in common
// distributions, refused even when the operator cannot learn the cluster's.
var wellKnownAPIAudiences = []string{
	"https://kubernetes.default.svc", "https://kubernetes.default.svc.cluster.local",
	"kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "kubernetes", "api",
}

// resolve discovers the cluster's issuer into ic (its issuer URL is the one
// the API server names) and drops audiences that are the API server's own.
func (c *ClusterIssuer) resolve(ctx context.Context, ic *jwt.Config, field string) {
	if c == nil {
		ic.Problem = &authn.Problem{Reason: authn.ProblemOIDCDiscoveryFailed, Field: field + ".preset",
			Message: "this operator was started without access to the cluster's service account issuer"}
		return
	}
	iss, err := c.issuers.Resolve(ctx, jwt.ClusterIssuer)
	ic.Issuer = iss
	if iss != nil {
		ic.IssuerURL = iss.URL()
	}
	if err != nil {
		log.FromContext(ctx).Error(err, "discovery of the cluster's service account issuer failed")
		msg := "discovery of the cluster's service account issuer through the API server failed (the operator needs the service-account-issuer-discovery ClusterRole); the operator's log has the details"
		if iss != nil {
			msg += "; still verifying with the keys of the last successful discovery"
		}
		ic.Problem = &authn.Problem{Reason: authn.ProblemOIDCDiscoveryFailed, Field: field, Message: msg}
	}
	forbidden := slices.Concat(wellKnownAPIAudiences, c.apiAudiences)
	if iss != nil {
		// Without --api-audiences, the API server's audience is its
		// issuer URL.
		forbidden = append(forbidden, iss.URL(), strings.TrimSuffix(iss.URL(), "/"))
	}
	var keep, refused []string
	for _, a := range ic.Audiences {
		if slices.Contains(forbidden, a) || slices.Contains(forbidden, strings.TrimSuffix(a, "/")) {
			refused = append(refused, a)
		} else {
			keep = append(keep, a)
		}
	}
	if len(refused) > 0 {
		// Reported beside the compile step's problems: an entry left
		// without audiences is refused by Compile.
		ic.Audiences = keep
		c.report(ic, field, refused)
	}
}

// report records the refused audiences on ic: they are the API server's
// own, and a token for the API server (every pod's default token) must not
// be a registry credential.
func (c *ClusterIssuer) report(ic *jwt.Config, field string, refused []string) {
	p := &authn.Problem{Reason: authn.ProblemInvalidSpec, Field: field + ".audiences",
		Message: fmt.Sprintf("audience(s) %s are the API server's own: a token for the API server (every pod's default token) would be accepted; use an audience that names the registry", strings.Join(refused, ", "))}
	if ic.Problem == nil {
		ic.Problem = p
	}
}

// ownTokenAudiences are the audiences of the operator's own token (in a
// pod, its projected ServiceAccount token, minted for the API server): the
// API server's default audiences. The token is decoded, not verified, and
// nothing of it is kept or logged but its aud claim.
func ownTokenAudiences(cfg *rest.Config) []string {
	raw := cfg.BearerToken
	if raw == "" && cfg.BearerTokenFile != "" {
		b, err := os.ReadFile(cfg.BearerTokenFile)
		if err != nil {
			return nil
		}
		raw = strings.TrimSpace(string(b))
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var claims struct {
		Aud json.RawMessage `json:"aud"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return nil
	}
	var one string
	if json.Unmarshal(claims.Aud, &one) == nil && one != "" {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(claims.Aud, &many)
	return many
}
