package jwt

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/authtest"
)

// TestResolveWithCA: a private issuer over TLS whose certificate no system
// root trusts is discovered, and its keys fetched, with its own CA bundle
// only; another bundle, or none, is refused; a bundle without a valid
// certificate makes no request.
func TestResolveWithCA(t *testing.T) {
	idp := authtest.NewIssuer(t, authtest.WithTLS())
	otherCA := testCAPEM(t) // httptest serves every TLS issuer with one certificate
	ctx := oidcCtx(t)

	if _, err := NewIssuers(nil).Resolve(ctx, idp.URL()); err == nil {
		t.Fatal("a private issuer resolved with the system roots")
	}
	if _, err := NewIssuers(nil).ResolveWithCA(ctx, idp.URL(), otherCA); err == nil {
		t.Fatal("a private issuer resolved with another issuer's CA")
	}
	before := idp.DiscoveryRequests()
	for _, bad := range [][]byte{[]byte("not a PEM"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")} {
		if _, err := NewIssuers(nil).ResolveWithCA(ctx, idp.URL(), bad); !errors.Is(err, ErrNoCertificates) {
			t.Fatalf("bundle %q: error %v, want ErrNoCertificates", bad, err)
		}
	}
	if idp.DiscoveryRequests() != before {
		t.Fatal("a bundle without certificates made a request")
	}

	reg := NewIssuers(nil)
	iss, err := reg.ResolveWithCA(ctx, idp.URL(), idp.CAPEM())
	if err != nil || iss == nil || iss.URL() != idp.URL() {
		t.Fatalf("with its CA: issuer %v, error %v", iss, err)
	}
	tok := idp.Sign(idp.Claims("registry", "ci", nil, time.Minute))
	if _, err := iss.keys.VerifySignature(ctx, tok); err != nil {
		t.Fatalf("keys fetched over TLS with the bundle: %v", err)
	}
	// The same URL with another bundle is another issuer, discovered again
	// (and refused here): a changed bundle is not served from the cache.
	if _, err := reg.ResolveWithCA(ctx, idp.URL(), otherCA); err == nil {
		t.Fatal("a changed bundle reused the issuer discovered with the old one")
	}
	if _, err := reg.Resolve(ctx, idp.URL()); err == nil {
		t.Fatal("the URL without a bundle reused the issuer discovered with one")
	}
}

// testCAPEM is a fresh self-signed CA certificate for 127.0.0.1, in PEM.
func testCAPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
