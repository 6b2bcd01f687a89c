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

package v1alpha1_test

// These tests run the generated CRD (config/crd/bases) in a real
// kube-apiserver + etcd (bin/k8s, built by `make envtest`): server-side
// defaults, OpenAPI and CEL validation, and the status subresource.

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	authv1alpha1 "github.com/registryauth/registry-auth-operator/api/v1alpha1"
	"github.com/registryauth/registry-auth-operator/test/utils"
)

const testNamespace = "default"

var k8sClient client.Client

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	logf.SetLogger(logr.Discard())

	if _, err := utils.FindBinaryAssetsDir(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env := utils.NewEnvironment()
	cfg, err := env.Start()
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping envtest: %v\n", err)
		}
	}()
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting envtest: %v\n", err)
		return 1
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := authv1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	k8sClient, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintf(os.Stderr, "creating client: %v\n", err)
		return 1
	}
	return m.Run()
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newPolicy(name string, spec authv1alpha1.RegistryAuthPolicySpec) *authv1alpha1.RegistryAuthPolicy {
	return &authv1alpha1.RegistryAuthPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNamespace},
		Spec:       spec,
	}
}

func ref(name string) authv1alpha1.SecretKeySelector {
	return authv1alpha1.SecretKeySelector{Name: name}
}

func refp(name string) *authv1alpha1.SecretKeySelector {
	r := ref(name)
	return &r
}

func dur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

// create creates obj and deletes it when the test ends.
func create(t *testing.T, obj *authv1alpha1.RegistryAuthPolicy) error {
	t.Helper()
	ctx := testContext(t)
	err := k8sClient.Create(ctx, obj)
	if err == nil {
		t.Cleanup(func() {
			_ = k8sClient.Delete(context.Background(), obj)
		})
	}
	return err
}

func TestDefaults(t *testing.T) {
	g := NewWithT(t)
	ctx := testContext(t)

	expires := metav1.NewTime(time.Date(2027, 1, 31, 12, 0, 0, 0, time.UTC))
	in := newPolicy("defaults", authv1alpha1.RegistryAuthPolicySpec{
		Hosts: []string{"registry.example.com"},
		StaticToken: &authv1alpha1.StaticTokenSpec{
			Enabled:   true,
			SecretRef: refp("registry-api-token"),
		},
		APIKeys: []authv1alpha1.APIKeySpec{{Name: "ci", SecretRef: ref("ci-key"), ExpiresAt: &expires}},
		OIDC: &authv1alpha1.OIDCSpec{
			IssuerURL: "https://idp.example.com/realms/registry",
			Audiences: []string{"registry"},
		},
		Session:       &authv1alpha1.SessionSpec{SecretKeyRef: ref("web-app")},
		RegistryToken: &authv1alpha1.RegistryTokenSpec{SecretKeyRef: refp("registry-secret")},
	})
	g.Expect(create(t, in)).To(Succeed())

	got := &authv1alpha1.RegistryAuthPolicy{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(in), got)).To(Succeed())
	spec := got.Spec

	g.Expect(spec.ExpiryWarning).To(Equal(&metav1.Duration{Duration: 7 * 24 * time.Hour}))
	g.Expect(spec.APIKeys[0].ExpiresAt.Time.Equal(expires.Time)).To(BeTrue())
	g.Expect(spec.StaticToken).NotTo(BeNil())
	st := spec.StaticToken
	g.Expect(st.Enabled).To(BeTrue())
	g.Expect(st.SecretRef).NotTo(BeNil())
	g.Expect(st.SecretRef.Key).To(Equal("token"))
	g.Expect(st.PathPrefixes).To(Equal([]string{"/api/", "/v0.1/"}))
	g.Expect(st.SessionCookieName).To(Equal("mcp_gateway_session"))
	g.Expect(st.Identity.Username).To(Equal("network-user"))
	g.Expect(st.Identity.ClientID).To(Equal("network-trusted"))
	g.Expect(st.Identity.Groups).To(Equal([]string{"mcp-registry-admin"}))
	g.Expect(st.Identity.Scopes).To(Equal([]string{
		"mcp-registry-admin",
		"mcp-servers-unrestricted/read",
		"mcp-servers-unrestricted/execute",
	}))
	g.Expect(st.RotationGracePeriod).To(Equal(dur(0)))

	g.Expect(spec.APIKeys).To(HaveLen(1))
	g.Expect(spec.APIKeys[0].SecretRef.Key).To(Equal("token"))
	g.Expect(spec.APIKeys[0].RotationGracePeriod).To(Equal(dur(0)))
	g.Expect(spec.APIKeys[0].Methods).To(BeEmpty())
	g.Expect(spec.APIKeys[0].PathPrefixes).To(BeEmpty())

	g.Expect(spec.OIDC).NotTo(BeNil())
	g.Expect(spec.OIDC.Preset).To(Equal("generic"))
	g.Expect(spec.OIDC.UsernameClaim).To(BeEmpty())
	g.Expect(spec.OIDC.GroupsClaim).To(BeEmpty())

	g.Expect(spec.Session).NotTo(BeNil())
	g.Expect(spec.Session.CookieName).To(Equal("mcp_gateway_session"))
	g.Expect(spec.Session.SecretKeyRef.Key).To(Equal("token"))
	g.Expect(spec.Session.MaxAge).To(Equal(dur(8 * time.Hour)))

	g.Expect(spec.RegistryToken).NotTo(BeNil())
	g.Expect(spec.RegistryToken.SecretKeyRef.Key).To(Equal("token"))
	g.Expect(spec.RegistryToken.SigningKeyRef).To(BeNil())
	g.Expect(spec.RegistryToken.TTL).To(Equal(dur(30 * time.Second)))
	g.Expect(spec.RegistryToken.Mode).To(Equal("on-request"))
	g.Expect(spec.RegistryToken.JWKSOverlap).To(Equal(dur(15 * time.Minute)))

	// Explicit values are kept, not overwritten by defaults.
	in2 := newPolicy("explicit", authv1alpha1.RegistryAuthPolicySpec{
		StaticToken: &authv1alpha1.StaticTokenSpec{
			Enabled:             true,
			SecretRef:           &authv1alpha1.SecretKeySelector{Name: "tok", Key: "api-token"},
			PathPrefixes:        []string{"/v0/"},
			SessionCookieName:   "session",
			Identity:            authv1alpha1.IdentitySpec{Username: "bot", Groups: []string{"readers"}},
			RotationGracePeriod: dur(90 * time.Minute),
		},
	})
	g.Expect(create(t, in2)).To(Succeed())
	got2 := &authv1alpha1.RegistryAuthPolicy{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(in2), got2)).To(Succeed())
	st2 := got2.Spec.StaticToken
	g.Expect(st2.SecretRef.Key).To(Equal("api-token"))
	g.Expect(st2.PathPrefixes).To(Equal([]string{"/v0/"}))
	g.Expect(st2.SessionCookieName).To(Equal("session"))
	g.Expect(st2.Identity.Username).To(Equal("bot"))
	g.Expect(st2.Identity.ClientID).To(Equal("network-trusted"))
	g.Expect(st2.Identity.Groups).To(Equal([]string{"readers"}))
	g.Expect(st2.RotationGracePeriod).To(Equal(dur(90 * time.Minute)))

	// An empty staticToken gets the defaults and is off.
	in3 := newPolicy("empty-static", authv1alpha1.RegistryAuthPolicySpec{
		StaticToken: &authv1alpha1.StaticTokenSpec{},
	})
	g.Expect(create(t, in3)).To(Succeed())
	got3 := &authv1alpha1.RegistryAuthPolicy{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(in3), got3)).To(Succeed())
	g.Expect(got3.Spec.StaticToken.Enabled).To(BeFalse())
	g.Expect(got3.Spec.StaticToken.PathPrefixes).To(Equal([]string{"/api/", "/v0.1/"}))
	g.Expect(got3.Spec.StaticToken.Identity.Username).To(Equal("network-user"))
}

func TestValidation(t *testing.T) {
	validStatic := func() *authv1alpha1.StaticTokenSpec {
		return &authv1alpha1.StaticTokenSpec{Enabled: true, SecretRef: refp("registry-api-token")}
	}
	validOIDC := func() *authv1alpha1.OIDCSpec {
		return &authv1alpha1.OIDCSpec{IssuerURL: "https://idp.example.com", Audiences: []string{"registry"}}
	}

	cases := []struct {
		name string
		spec authv1alpha1.RegistryAuthPolicySpec
		want []string // fragments of the API server's message
	}{{
		name: "kubernetes issuer with an issuer URL",
		spec: authv1alpha1.RegistryAuthPolicySpec{Issuers: []authv1alpha1.IssuerSpec{{Name: "k8s", Preset: authv1alpha1.PresetKubernetes,
			IssuerURL: "https://kubernetes.default.svc", Audiences: []string{"registry"}}}},
		want: []string{"spec.issuers[0]", "issuerURL must be empty for the kubernetes preset"},
	}, {
		name: "kubernetes issuer with a CA bundle",
		spec: authv1alpha1.RegistryAuthPolicySpec{Issuers: []authv1alpha1.IssuerSpec{{Name: "k8s", Preset: authv1alpha1.PresetKubernetes,
			Audiences: []string{"registry"}, CABundleRef: &authv1alpha1.CABundleRef{ConfigMapKeyRef: &authv1alpha1.CABundleKeySelector{Name: "ca", Key: "ca.crt"}}}}},
		want: []string{"spec.issuers[0]", "caBundleRef must be empty for the kubernetes preset"},
	}, {
		name: "CA bundle from both a ConfigMap and a Secret",
		spec: authv1alpha1.RegistryAuthPolicySpec{Issuers: []authv1alpha1.IssuerSpec{{Name: "idp", IssuerURL: "https://idp.example.com",
			Audiences: []string{"registry"}, CABundleRef: &authv1alpha1.CABundleRef{
				ConfigMapKeyRef: &authv1alpha1.CABundleKeySelector{Name: "ca", Key: "ca.crt"},
				SecretKeyRef:    &authv1alpha1.CABundleKeySelector{Name: "ca", Key: "ca.crt"}}}}},
		want: []string{"spec.issuers[0].caBundleRef", "exactly one of configMapKeyRef and secretKeyRef"},
	}, {
		name: "CA bundle from neither",
		spec: authv1alpha1.RegistryAuthPolicySpec{OIDC: &authv1alpha1.OIDCSpec{IssuerURL: "https://idp.example.com", Audiences: []string{"registry"},
			CABundleRef: &authv1alpha1.CABundleRef{}}},
		want: []string{"spec.oidc.caBundleRef", "exactly one of configMapKeyRef and secretKeyRef"},
	}, {
		name: "CA bundle without a key",
		spec: authv1alpha1.RegistryAuthPolicySpec{OIDC: &authv1alpha1.OIDCSpec{IssuerURL: "https://idp.example.com", Audiences: []string{"registry"},
			CABundleRef: &authv1alpha1.CABundleRef{ConfigMapKeyRef: &authv1alpha1.CABundleKeySelector{Name: "ca"}}}},
		want: []string{"spec.oidc.caBundleRef.configMapKeyRef.key"},
	}, {
		name: "generic issuer without an issuer URL",
		spec: authv1alpha1.RegistryAuthPolicySpec{Issuers: []authv1alpha1.IssuerSpec{{Name: "idp", Audiences: []string{"registry"}}}},
		want: []string{"spec.issuers[0]", "issuerURL is required unless the preset is kubernetes, github-actions or gitlab"},
	}, {
		name: "issuer without audiences",
		spec: authv1alpha1.RegistryAuthPolicySpec{Issuers: []authv1alpha1.IssuerSpec{{Name: "gh", Preset: authv1alpha1.PresetGitHubActions}}},
		want: []string{"spec.issuers[0].audiences"},
	}, {
		name: "claim mapping with a claim and an expression",
		spec: authv1alpha1.RegistryAuthPolicySpec{Issuers: []authv1alpha1.IssuerSpec{{Name: "gh", Preset: authv1alpha1.PresetGitHubActions, Audiences: []string{"registry"},
			ClaimMappings: &authv1alpha1.ClaimMappingsSpec{Username: &authv1alpha1.ClaimOrExpression{Claim: "sub", Expression: "claims.sub"}}}}},
		want: []string{"spec.issuers[0].claimMappings.username", "exactly one of claim and expression"},
	}, {
		name: "issuer name not a DNS label",
		spec: authv1alpha1.RegistryAuthPolicySpec{Issuers: []authv1alpha1.IssuerSpec{{Name: "GitHub CI", Preset: authv1alpha1.PresetGitHubActions, Audiences: []string{"registry"}}}},
		want: []string{"spec.issuers[0].name"},
	}, {
		name: "expiryWarning negative",
		spec: authv1alpha1.RegistryAuthPolicySpec{ExpiryWarning: &metav1.Duration{Duration: -time.Hour}},
		want: []string{"expiryWarning must be between 0s and 2160h"},
	}, {
		name: "expiryWarning over 90 days",
		spec: authv1alpha1.RegistryAuthPolicySpec{ExpiryWarning: &metav1.Duration{Duration: 2161 * time.Hour}},
		want: []string{"expiryWarning must be between 0s and 2160h"},
	}, {
		name: "enabled without secretRef",
		spec: authv1alpha1.RegistryAuthPolicySpec{StaticToken: &authv1alpha1.StaticTokenSpec{Enabled: true}},
		want: []string{"spec.staticToken", "secretRef is required when enabled is true"},
	}, {
		name: "federation token enabled without secretRef",
		spec: authv1alpha1.RegistryAuthPolicySpec{FederationToken: &authv1alpha1.FederationTokenSpec{Enabled: true}},
		want: []string{"spec.federationToken", "secretRef is required when enabled is true"},
	}, {
		name: "federation token grace period over 24h",
		spec: authv1alpha1.RegistryAuthPolicySpec{FederationToken: &authv1alpha1.FederationTokenSpec{
			Enabled: true, SecretRef: &authv1alpha1.SecretKeySelector{Name: "fed"}, RotationGracePeriod: &metav1.Duration{Duration: 25 * time.Hour}}},
		want: []string{"rotationGracePeriod must be between 0s and 24h"},
	}, {
		name: "federation path prefix not absolute",
		spec: authv1alpha1.RegistryAuthPolicySpec{FederationToken: &authv1alpha1.FederationTokenSpec{PathPrefixes: []string{"api/peers"}}},
		want: []string{"spec.federationToken.pathPrefixes"},
	}, {
		name: "agent path prefix with a query",
		spec: authv1alpha1.RegistryAuthPolicySpec{AgentPathPrefixes: []string{"/agent/?x"}},
		want: []string{"spec.agentPathPrefixes"},
	}, {
		name: "static token grace over 24h",
		spec: authv1alpha1.RegistryAuthPolicySpec{StaticToken: func() *authv1alpha1.StaticTokenSpec {
			s := validStatic()
			s.RotationGracePeriod = dur(24*time.Hour + time.Second)
			return s
		}()},
		want: []string{"spec.staticToken", "rotationGracePeriod must be between 0s and 24h"},
	}, {
		name: "negative static token grace",
		spec: authv1alpha1.RegistryAuthPolicySpec{StaticToken: func() *authv1alpha1.StaticTokenSpec {
			s := validStatic()
			s.RotationGracePeriod = dur(-time.Minute)
			return s
		}()},
		want: []string{"spec.staticToken", "rotationGracePeriod must be between 0s and 24h"},
	}, {
		name: "api key grace over 24h",
		spec: authv1alpha1.RegistryAuthPolicySpec{APIKeys: []authv1alpha1.APIKeySpec{
			{Name: "ci", SecretRef: ref("ci"), RotationGracePeriod: dur(25 * time.Hour)},
		}},
		want: []string{"spec.apiKeys[0]", "rotationGracePeriod must be between 0s and 24h"},
	}, {
		name: "duplicate api key names",
		spec: authv1alpha1.RegistryAuthPolicySpec{APIKeys: []authv1alpha1.APIKeySpec{
			{Name: "ci", SecretRef: ref("ci-a")},
			{Name: "ci", SecretRef: ref("ci-b")},
		}},
		want: []string{"spec.apiKeys[1]", "Duplicate value"},
	}, {
		name: "bad method",
		spec: authv1alpha1.RegistryAuthPolicySpec{APIKeys: []authv1alpha1.APIKeySpec{
			{Name: "ci", SecretRef: ref("ci"), Methods: []string{"GET", "FETCH"}},
		}},
		want: []string{"spec.apiKeys[0].methods[1]", "Unsupported value", `"FETCH"`},
	}, {
		name: "static token path prefix without leading slash",
		spec: authv1alpha1.RegistryAuthPolicySpec{StaticToken: func() *authv1alpha1.StaticTokenSpec {
			s := validStatic()
			s.PathPrefixes = []string{"/api/", "v0.1/"}
			return s
		}()},
		want: []string{"spec.staticToken.pathPrefixes[1]", "should match"},
	}, {
		name: "api key path prefix without leading slash",
		spec: authv1alpha1.RegistryAuthPolicySpec{APIKeys: []authv1alpha1.APIKeySpec{
			{Name: "ci", SecretRef: ref("ci"), PathPrefixes: []string{"api/servers"}},
		}},
		want: []string{"spec.apiKeys[0].pathPrefixes[0]", "should match"},
	}, {
		name: "empty audiences",
		spec: authv1alpha1.RegistryAuthPolicySpec{OIDC: func() *authv1alpha1.OIDCSpec {
			o := validOIDC()
			o.Audiences = []string{}
			return o
		}()},
		want: []string{"spec.oidc.audiences", "at least 1 items"},
	}, {
		name: "bad issuer URL",
		spec: authv1alpha1.RegistryAuthPolicySpec{OIDC: func() *authv1alpha1.OIDCSpec {
			o := validOIDC()
			o.IssuerURL = "idp.example.com"
			return o
		}()},
		want: []string{"spec.oidc.issuerURL", "should match"},
	}, {
		name: "bad preset",
		spec: authv1alpha1.RegistryAuthPolicySpec{OIDC: func() *authv1alpha1.OIDCSpec {
			o := validOIDC()
			o.Preset = "pingfederate"
			return o
		}()},
		want: []string{"spec.oidc.preset", "Unsupported value", `"okta"`},
	}, {
		name: "bad host",
		spec: authv1alpha1.RegistryAuthPolicySpec{Hosts: []string{"registry.localhost", "Registry_Example.com"}},
		want: []string{"spec.hosts[1]", "should match"},
	}, {
		name: "host with port",
		spec: authv1alpha1.RegistryAuthPolicySpec{Hosts: []string{"registry.localhost:8443"}},
		want: []string{"spec.hosts[0]", "should match"},
	}, {
		name: "bad static token cookie name",
		spec: authv1alpha1.RegistryAuthPolicySpec{StaticToken: func() *authv1alpha1.StaticTokenSpec {
			s := validStatic()
			s.SessionCookieName = "my session"
			return s
		}()},
		want: []string{"spec.staticToken.sessionCookieName", "should match"},
	}, {
		name: "bad session cookie name",
		spec: authv1alpha1.RegistryAuthPolicySpec{Session: &authv1alpha1.SessionSpec{
			CookieName: "a;b", SecretKeyRef: ref("web-app"),
		}},
		want: []string{"spec.session.cookieName", "should match"},
	}, {
		name: "bad secret name",
		spec: authv1alpha1.RegistryAuthPolicySpec{StaticToken: &authv1alpha1.StaticTokenSpec{
			Enabled: true, SecretRef: refp("Not_A_Secret"),
		}},
		want: []string{"spec.staticToken.secretRef.name", "should match"},
	}, {
		name: "bad api key name",
		spec: authv1alpha1.RegistryAuthPolicySpec{APIKeys: []authv1alpha1.APIKeySpec{
			{Name: "-ci", SecretRef: ref("ci")},
		}},
		want: []string{"spec.apiKeys[0].name", "should match"},
	}, {
		name: "group with comma",
		spec: authv1alpha1.RegistryAuthPolicySpec{StaticToken: func() *authv1alpha1.StaticTokenSpec {
			s := validStatic()
			s.Identity.Groups = []string{"a,b"}
			return s
		}()},
		want: []string{"spec.staticToken.identity.groups[0]", "should match"},
	}, {
		name: "empty groupScopes key",
		spec: authv1alpha1.RegistryAuthPolicySpec{GroupScopes: map[string][]string{"": {"x"}}},
		want: []string{"groupScopes keys must be 1 to 256 characters"},
	}, {
		name: "registry token without a key",
		spec: authv1alpha1.RegistryAuthPolicySpec{RegistryToken: &authv1alpha1.RegistryTokenSpec{}},
		want: []string{"spec.registryToken", "secretKeyRef or signingKeyRef is required"},
	}, {
		name: "registry token ttl under 5s",
		spec: authv1alpha1.RegistryAuthPolicySpec{RegistryToken: &authv1alpha1.RegistryTokenSpec{SecretKeyRef: refp("s"), TTL: dur(4 * time.Second)}},
		want: []string{"spec.registryToken", "ttl must be between 5s and 24h"},
	}, {
		name: "registry token ttl over 24h",
		spec: authv1alpha1.RegistryAuthPolicySpec{RegistryToken: &authv1alpha1.RegistryTokenSpec{SecretKeyRef: refp("s"), TTL: dur(25 * time.Hour)}},
		want: []string{"spec.registryToken", "ttl must be between 5s and 24h"},
	}, {
		name: "registry token unknown mode",
		spec: authv1alpha1.RegistryAuthPolicySpec{RegistryToken: &authv1alpha1.RegistryTokenSpec{SecretKeyRef: refp("s"), Mode: "sometimes"}},
		want: []string{"spec.registryToken.mode", "Unsupported value"},
	}, {
		name: "registry token negative overlap",
		spec: authv1alpha1.RegistryAuthPolicySpec{RegistryToken: &authv1alpha1.RegistryTokenSpec{SigningKeyRef: refp("k"), JWKSOverlap: dur(-time.Second)}},
		want: []string{"spec.registryToken", "jwksOverlap must be between 0s and 168h"},
	}, {
		name: "registry token bad signing key Secret name",
		spec: authv1alpha1.RegistryAuthPolicySpec{RegistryToken: &authv1alpha1.RegistryTokenSpec{SigningKeyRef: refp("Bad_Name")}},
		want: []string{"spec.registryToken.signingKeyRef.name", "should match"},
	}}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			err := create(t, newPolicy("invalid", tc.spec))
			g.Expect(err).To(HaveOccurred(), "the API server accepted an invalid spec")
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want an Invalid error, got %v", err)
			t.Log(err)
			for _, frag := range tc.want {
				g.Expect(err.Error()).To(ContainSubstring(frag))
			}
		})
	}

	// Some invalid specs cannot be sent through the typed client (omitempty
	// drops an empty list; a Duration always marshals as a Go duration).
	// Send them as raw JSON in a merge patch on a valid object instead.
	rawCases := []struct {
		name  string
		patch string
		want  []string
	}{{
		name:  "unparseable grace",
		patch: `{"spec":{"staticToken":{"rotationGracePeriod":"one hour"}}}`,
		want:  []string{"spec.staticToken"},
	}, {
		name:  "expiresAt not a timestamp",
		patch: `{"spec":{"apiKeys":[{"name":"k","secretRef":{"name":"k"},"expiresAt":"next friday"}]}}`,
		want:  []string{"spec.apiKeys[0].expiresAt"},
	}, {
		name:  "expiryWarning in days",
		patch: `{"spec":{"expiryWarning":"7d"}}`,
		want:  []string{"spec"},
	}, {
		name:  "empty static token path prefixes",
		patch: `{"spec":{"staticToken":{"pathPrefixes":[]}}}`,
		want:  []string{"spec.staticToken.pathPrefixes", "at least 1 items"},
	}, {
		// Not a Go duration: accepted, it would make the object unreadable
		// for every typed client (the operator's cache included).
		name:  "unparseable session maxAge",
		patch: `{"spec":{"session":{"maxAge":"1 day"}}}`,
		want:  []string{"spec.session", "maxAge"},
	}, {
		name:  "negative session maxAge",
		patch: `{"spec":{"session":{"maxAge":"-1h"}}}`,
		want:  []string{"spec.session", "maxAge must be a positive duration"},
	}, {
		name:  "unparseable api key grace",
		patch: `{"spec":{"apiKeys":[{"name":"ci","secretRef":{"name":"ci"},"rotationGracePeriod":"1d"}]}}`,
		want:  []string{"spec.apiKeys[0]"},
	}, {
		name:  "non-string scope",
		patch: `{"spec":{"groupScopes":{"admins":[1]}}}`,
		want:  []string{"spec.groupScopes.admins[0]"},
	}}
	base := newPolicy("raw", authv1alpha1.RegistryAuthPolicySpec{
		StaticToken: validStatic(),
		Session:     &authv1alpha1.SessionSpec{SecretKeyRef: ref("web-app")},
	})
	if err := create(t, base); err != nil {
		t.Fatalf("creating the base policy: %v", err)
	}
	for _, tc := range rawCases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			obj := base.DeepCopy()
			err := k8sClient.Patch(testContext(t), obj,
				client.RawPatch(types.MergePatchType, []byte(tc.patch)))
			g.Expect(err).To(HaveOccurred(), "the API server accepted an invalid patch")
			g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want an Invalid error, got %v", err)
			t.Log(err)
			for _, frag := range tc.want {
				g.Expect(err.Error()).To(ContainSubstring(frag))
			}
		})
	}
}

func TestStatusSubresource(t *testing.T) {
	g := NewWithT(t)
	ctx := testContext(t)

	p := newPolicy("status", authv1alpha1.RegistryAuthPolicySpec{
		Hosts:       []string{"registry.example.com"},
		StaticToken: &authv1alpha1.StaticTokenSpec{Enabled: true, SecretRef: refp("registry-api-token")},
	})
	// Status sent on create is dropped.
	p.Status.ObservedGeneration = 42
	g.Expect(create(t, p)).To(Succeed())
	g.Expect(p.Status.ObservedGeneration).To(BeZero())
	g.Expect(p.Generation).To(Equal(int64(1)))

	now := metav1.NewTime(time.Now().Truncate(time.Second))
	p.Status = authv1alpha1.RegistryAuthPolicyStatus{
		ObservedGeneration: p.Generation,
		Conditions: []metav1.Condition{{
			Type:               authv1alpha1.ConditionReady,
			Status:             metav1.ConditionTrue,
			Reason:             authv1alpha1.ReasonLoaded,
			Message:            "static token loaded",
			ObservedGeneration: p.Generation,
			LastTransitionTime: now,
		}},
		StaticToken: &authv1alpha1.CredentialStatus{Fingerprint: "0123456789ab", RotatedAt: &now},
	}
	g.Expect(k8sClient.Status().Update(ctx, p)).To(Succeed())

	got := &authv1alpha1.RegistryAuthPolicy{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), got)).To(Succeed())
	g.Expect(got.Generation).To(Equal(int64(1)), "a status update must not bump the generation")
	g.Expect(got.Status.ObservedGeneration).To(Equal(int64(1)))
	ready := meta.FindStatusCondition(got.Status.Conditions, authv1alpha1.ConditionReady)
	g.Expect(ready).NotTo(BeNil())
	g.Expect(ready.Status).To(Equal(metav1.ConditionTrue))
	g.Expect(ready.Reason).To(Equal(authv1alpha1.ReasonLoaded))
	g.Expect(got.Status.StaticToken).NotTo(BeNil())
	g.Expect(got.Status.StaticToken.Fingerprint).To(Equal("0123456789ab"))
	g.Expect(got.Status.StaticToken.RotatedAt.Equal(&now)).To(BeTrue())
	wantStatus := got.Status.DeepCopy()

	// A spec update through the main resource ignores status changes.
	got.Spec.Hosts = append(got.Spec.Hosts, "registry2.example.com")
	got.Status.ObservedGeneration = 99
	got.Status.Conditions = nil
	got.Status.StaticToken = nil
	g.Expect(k8sClient.Update(ctx, got)).To(Succeed())

	after := &authv1alpha1.RegistryAuthPolicy{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), after)).To(Succeed())
	g.Expect(after.Generation).To(Equal(int64(2)), "a spec update bumps the generation")
	g.Expect(after.Spec.Hosts).To(ConsistOf("registry.example.com", "registry2.example.com"))
	g.Expect(after.Status).To(Equal(*wantStatus), "a spec update must not change status")

	// And a status update ignores spec changes.
	after.Spec.Hosts = nil
	after.Status.ObservedGeneration = after.Generation
	g.Expect(k8sClient.Status().Update(ctx, after)).To(Succeed())
	final := &authv1alpha1.RegistryAuthPolicy{}
	g.Expect(k8sClient.Get(ctx, client.ObjectKeyFromObject(p), final)).To(Succeed())
	g.Expect(final.Spec.Hosts).To(HaveLen(2), "a status update must not change spec")
	g.Expect(final.Status.ObservedGeneration).To(Equal(int64(2)))
}
