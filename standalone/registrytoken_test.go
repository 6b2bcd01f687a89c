package standalone

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/registryauth/registry-auth-operator/authserver/authn"
	"github.com/registryauth/registry-auth-operator/authserver/authtest"
	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/hoptoken"
	"github.com/registryauth/registry-auth-operator/authserver/policy"
)

// The registry's hop token in standalone mode: on with SECRET_KEY (HS256,
// keyed with the raw value) or INTERNAL_SIGNING_KEY_PATH (ES256, the file
// watched like the other secrets). Tokens are checked with
// authtest.RegistryVerifier, which shares no code with the minting.

func TestStandaloneRegistryTokenEnv(t *testing.T) {
	key := standaloneTestToken(t)
	tests := []struct {
		name    string
		env     map[string]string
		wantErr []string
		check   func(g Gomega, e *Env)
	}{
		{"defaults", map[string]string{"SECRET_KEY": key}, nil, func(g Gomega, e *Env) {
			g.Expect(e.TokenTTL).To(Equal(30 * time.Second))
			g.Expect(e.TokenMode).To(Equal(hoptoken.ModeOnRequest))
			g.Expect(e.SigningKeyOverlap).To(Equal(15 * time.Minute))
			g.Expect(e.Warnings).To(BeEmpty())
			g.Expect(e.Config().RegistryToken).NotTo(BeNil())
		}},
		{"no key: no token", map[string]string{"INTERNAL_TOKEN_TTL_SECONDS": "60"}, nil, func(g Gomega, e *Env) {
			g.Expect(e.Config().RegistryToken).To(BeNil(), "the TTL alone turns nothing on: upstream's .env always has it")
		}},
		{"TTL as int() reads it", map[string]string{"SECRET_KEY": key, "INTERNAL_TOKEN_TTL_SECONDS": " +45 "}, nil, func(g Gomega, e *Env) {
			g.Expect(e.TokenTTL).To(Equal(45 * time.Second))
		}},
		{"TTL below the minimum is raised, with a warning", map[string]string{"SECRET_KEY": key, "INTERNAL_TOKEN_TTL_SECONDS": "2"}, nil, func(g Gomega, e *Env) {
			g.Expect(e.TokenTTL).To(Equal(5 * time.Second))
			g.Expect(e.Warnings).To(ConsistOf(ContainSubstring("INTERNAL_TOKEN_TTL_SECONDS=2")))
		}},
		{"TTL negative is raised too", map[string]string{"SECRET_KEY": key, "INTERNAL_TOKEN_TTL_SECONDS": "-1"}, nil, func(g Gomega, e *Env) {
			g.Expect(e.TokenTTL).To(Equal(5 * time.Second))
		}},
		{"TTL that does not parse stops start-up", map[string]string{"SECRET_KEY": key, "INTERNAL_TOKEN_TTL_SECONDS": "30s"}, []string{"INTERNAL_TOKEN_TTL_SECONDS", "whole seconds"}, nil},
		{"TTL over a day", map[string]string{"SECRET_KEY": key, "INTERNAL_TOKEN_TTL_SECONDS": "86401"}, []string{"INTERNAL_TOKEN_TTL_SECONDS", "at most 86400"}, nil},
		{"mode always", map[string]string{"SECRET_KEY": key, "REGISTRY_TOKEN_MODE": "Always"}, nil, func(g Gomega, e *Env) {
			g.Expect(e.TokenMode).To(Equal(hoptoken.ModeAlways))
			g.Expect(e.Config().RegistryToken.Mode).To(Equal(hoptoken.ModeAlways))
		}},
		{"mode without a key", map[string]string{"REGISTRY_TOKEN_MODE": "always"}, []string{"REGISTRY_TOKEN_MODE", "SECRET_KEY"}, nil},
		{"unknown mode", map[string]string{"SECRET_KEY": key, "REGISTRY_TOKEN_MODE": "sometimes"}, []string{"REGISTRY_TOKEN_MODE", "on-request or always"}, nil},
		{"signing key alone turns it on", map[string]string{"INTERNAL_SIGNING_KEY_PATH": "/run/secrets/key.pem"}, nil, func(g Gomega, e *Env) {
			rt := e.Config().RegistryToken
			g.Expect(rt).NotTo(BeNil())
			g.Expect(rt.SecretKey).To(BeNil())
			g.Expect(rt.SigningKey).NotTo(BeNil())
			g.Expect(rt.SigningKey.Problem).NotTo(BeNil(), "the file does not exist")
			g.Expect(e.files()).To(ContainElement(secretFile{"/run/secrets/key.pem", "INTERNAL_SIGNING_KEY_PATH"}), "watched")
		}},
		{"overlap as seconds", map[string]string{"SECRET_KEY": key, "INTERNAL_SIGNING_KEY_OVERLAP_SECONDS": "600"}, nil, func(g Gomega, e *Env) {
			g.Expect(e.SigningKeyOverlap).To(Equal(10 * time.Minute))
		}},
		{"overlap as a duration", map[string]string{"SECRET_KEY": key, "INTERNAL_SIGNING_KEY_OVERLAP_SECONDS": "1h"}, nil, func(g Gomega, e *Env) {
			g.Expect(e.SigningKeyOverlap).To(Equal(time.Hour))
		}},
		{"overlap negative", map[string]string{"SECRET_KEY": key, "INTERNAL_SIGNING_KEY_OVERLAP_SECONDS": "-5"}, []string{"INTERNAL_SIGNING_KEY_OVERLAP_SECONDS"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			e, err := ParseEnv(standaloneEnv(tc.env))
			if len(tc.wantErr) > 0 {
				g.Expect(err).To(HaveOccurred())
				for _, w := range tc.wantErr {
					g.Expect(err.Error()).To(ContainSubstring(w))
				}
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			tc.check(g, e)
		})
	}
}

// mintFor mints the standalone policy's token for the static identity.
func mintFor(store *policy.Store, now time.Time) (string, error) {
	p := store.Load().Only()
	if p == nil || p.RegistryToken() == nil {
		return "", hoptoken.ErrUnavailable
	}
	v, err := p.RegistryToken().Mint(check.NewIdentity("network-user", "network-trusted", []string{"mcp-registry-admin"}, nil, check.MethodNetworkTrusted), now)
	if err != nil {
		return "", err
	}
	return v[0], nil
}

// SECRET_KEY keys the token with its raw value, as the registry's verifier
// is keyed; SECRET_KEY_FILE with its trimmed content.
func TestStandaloneRegistryTokenHS256(t *testing.T) {
	key := standaloneTestToken(t)
	t.Run("SECRET_KEY raw", func(t *testing.T) {
		g := NewWithT(t)
		raw := key + " "
		_, store, logs, err := standaloneStart(t, map[string]string{"SECRET_KEY": raw})
		g.Expect(err).NotTo(HaveOccurred())
		now := time.Now()
		tok, err := mintFor(store, now)
		g.Expect(err).NotTo(HaveOccurred())
		_, err = (&authtest.RegistryVerifier{SecretKey: []byte(raw)}).Verify(tok, now)
		g.Expect(err).NotTo(HaveOccurred())
		_, err = (&authtest.RegistryVerifier{SecretKey: []byte(key)}).Verify(tok, now)
		g.Expect(err).To(HaveOccurred(), "not the trimmed value")
		standaloneExpectNoSecret(g, logs, key)
		g.Expect(strings.Join(logs.all(), "\n")).To(ContainSubstring(`"algorithm"="HS256"`))
	})
	t.Run("SECRET_KEY_FILE trimmed, and re-read", func(t *testing.T) {
		g := NewWithT(t)
		file := filepath.Join(t.TempDir(), "secret-key")
		g.Expect(os.WriteFile(file, []byte(key+"\n"), 0o600)).To(Succeed())
		sa, store, logs, err := standaloneStart(t, map[string]string{"SECRET_KEY_FILE": file, "INTERNAL_TOKEN_TTL_SECONDS": "12"})
		g.Expect(err).NotTo(HaveOccurred())
		standaloneRun(t, sa)
		now := time.Now()
		tok, err := mintFor(store, now)
		g.Expect(err).NotTo(HaveOccurred())
		claims, err := (&authtest.RegistryVerifier{SecretKey: []byte(key)}).Verify(tok, now)
		g.Expect(err).NotTo(HaveOccurred())
		exp, _ := claims["exp"].(json.Number).Int64()
		iat, _ := claims["iat"].(json.Number).Int64()
		g.Expect(exp - iat).To(Equal(int64(12)))

		key2 := standaloneTestToken(t)
		g.Expect(os.WriteFile(file, []byte(key2+"\n"), 0o600)).To(Succeed())
		g.Eventually(func() error {
			tok, err := mintFor(store, time.Now())
			if err != nil {
				return err
			}
			_, err = (&authtest.RegistryVerifier{SecretKey: []byte(key2)}).Verify(tok, time.Now())
			return err
		}, time.Second, 10*time.Millisecond).Should(Succeed(), "tokens signed with the new key within a second")
		standaloneExpectNoSecret(g, logs, key, key2)
	})
	t.Run("weak SECRET_KEY stops start-up", func(t *testing.T) {
		g := NewWithT(t)
		_, _, _, err := standaloneStart(t, map[string]string{"SECRET_KEY": "short"})
		g.Expect(err).To(HaveOccurred())
		g.Expect(err.Error()).To(ContainSubstring("SECRET_KEY"))
		g.Expect(err.Error()).To(ContainSubstring("registry token"))
	})
}

func standaloneECKey(t *testing.T) ([]byte, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(k)
	kid, err := hoptoken.SigningKeyID(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), kid
}

// writeAtomically replaces a file by a rename, as kubelet and careful
// scripts do.
func writeAtomically(t *testing.T, file string, b []byte) {
	t.Helper()
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

func kidOf(t *testing.T, tok string) string {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var header struct{ Kid string }
	if err := json.Unmarshal(h, &header); err != nil {
		t.Fatal(err)
	}
	return header.Kid
}

// INTERNAL_SIGNING_KEY_PATH is watched: a new key signs within a second,
// without a restart, and the replaced public key stays in the JWKS for the
// overlap, so tokens it signed still verify; a broken file refuses tokens
// until a good key is back.
func TestStandaloneSigningKeyRotation(t *testing.T) {
	g := NewWithT(t)
	file := filepath.Join(t.TempDir(), "key.pem")
	pemA, kidA := standaloneECKey(t)
	pemB, kidB := standaloneECKey(t)
	pemC, kidC := standaloneECKey(t)
	writeAtomically(t, file, pemA)

	sa, store, logs, err := standaloneStart(t, map[string]string{
		"SECRET_KEY":                           standaloneTestToken(t),
		"INTERNAL_SIGNING_KEY_PATH":            file,
		"INTERNAL_SIGNING_KEY_OVERLAP_SECONDS": "600",
	})
	g.Expect(err).NotTo(HaveOccurred())
	clock := time.Now()
	sa.now = func() time.Time { return clock }
	standaloneRun(t, sa)
	jwks := func(now time.Time) func() ([]byte, error) {
		return func() ([]byte, error) { return store.Load().Only().RegistryToken().JWKS(now), nil }
	}

	tokA, err := mintFor(store, time.Now())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(kidOf(t, tokA)).To(Equal(kidA))
	_, err = (&authtest.RegistryVerifier{JWKS: jwks(time.Now()), RejectHS256: true}).Verify(tokA, time.Now())
	g.Expect(err).NotTo(HaveOccurred())

	writeAtomically(t, file, pemB)
	rotated := time.Now()
	g.Eventually(func() (string, error) {
		tok, err := mintFor(store, time.Now())
		if err != nil {
			return "", err
		}
		return kidOf(t, tok), nil
	}, time.Second, 10*time.Millisecond).Should(Equal(kidB), "the new key signs within a second")
	t.Logf("new key in force after %v", time.Since(rotated))
	keys, err := authtest.ParseRegistryJWKS(store.Load().Only().RegistryToken().JWKS(time.Now()))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(keys).To(HaveKey(kidA), "the replaced key stays for the overlap")
	g.Expect(keys).To(HaveKey(kidB))
	_, err = (&authtest.RegistryVerifier{JWKS: jwks(time.Now())}).Verify(tokA, time.Now())
	g.Expect(err).NotTo(HaveOccurred(), "a token in flight, signed with the replaced key")
	keys, _ = authtest.ParseRegistryJWKS(store.Load().Only().RegistryToken().JWKS(clock.Add(601 * time.Second)))
	g.Expect(keys).NotTo(HaveKey(kidA), "gone once the overlap ends")

	// Half-written or broken: tokens are refused, not sent unsigned or with
	// the old key; the next good key replaces B, which stays published.
	writeAtomically(t, file, pemC[:40])
	g.Eventually(func() error { _, err := mintFor(store, time.Now()); return err }, time.Second, 10*time.Millisecond).
		Should(MatchError(hoptoken.ErrUnavailable))
	writeAtomically(t, file, pemC)
	g.Eventually(func() (string, error) {
		tok, err := mintFor(store, time.Now())
		if err != nil {
			return "", err
		}
		return kidOf(t, tok), nil
	}, time.Second, 10*time.Millisecond).Should(Equal(kidC))
	keys, _ = authtest.ParseRegistryJWKS(store.Load().Only().RegistryToken().JWKS(time.Now()))
	g.Expect(keys).To(HaveKey(kidA))
	g.Expect(keys).To(HaveKey(kidB))
	g.Expect(keys).To(HaveKey(kidC))

	// Back to A: current, and listed once.
	writeAtomically(t, file, pemA)
	g.Eventually(func() (string, error) {
		tok, err := mintFor(store, time.Now())
		if err != nil {
			return "", err
		}
		return kidOf(t, tok), nil
	}, time.Second, 10*time.Millisecond).Should(Equal(kidA))
	keys, err = authtest.ParseRegistryJWKS(store.Load().Only().RegistryToken().JWKS(time.Now()))
	g.Expect(err).NotTo(HaveOccurred(), "no kid twice")
	g.Expect(keys).To(HaveLen(3))

	all := strings.Join(logs.all(), "\n")
	g.Expect(all).To(ContainSubstring("registry token signing key rotated"))
	g.Expect(all).To(ContainSubstring(kidB))
	g.Expect(logs.errorLines()).NotTo(BeEmpty(), "the broken key was logged")
	for _, p := range [][]byte{pemA, pemB, pemC} {
		body := strings.Split(string(p), "\n")[1] // a line of the base64 body
		standaloneExpectNoSecret(g, logs, body)
	}
}

// An unusable signing key at start-up stops the process, naming the variable.
func TestStandaloneSigningKeyInvalidAtStart(t *testing.T) {
	g := NewWithT(t)
	file := filepath.Join(t.TempDir(), "key.pem")
	g.Expect(os.WriteFile(file, []byte("not a key"), 0o600)).To(Succeed())
	_, _, _, err := standaloneStart(t, map[string]string{"INTERNAL_SIGNING_KEY_PATH": file})
	g.Expect(err).To(HaveOccurred())
	g.Expect(err.Error()).To(ContainSubstring("INTERNAL_SIGNING_KEY_PATH"))
	g.Expect(err.Error()).To(ContainSubstring(authn.ProblemSigningKeyInvalid))
}
