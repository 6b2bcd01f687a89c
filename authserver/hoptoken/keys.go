package hoptoken

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// PublicKey is an ES256 public key as the JWKS publishes it.
type PublicKey struct {
	// KeyID is the kid: "es256-" + base64url (no padding) of the RFC 7638
	// SHA-256 thumbprint of the public JWK.
	KeyID string
	// JWK is the public key as a JSON Web Key: kty, crv, x, y, kid, use
	// ("sig") and alg ("ES256").
	JWK []byte
	// ExpiresAt, for a key replaced by a newer one, is when it leaves the
	// JWKS; zero for the key in force.
	ExpiresAt time.Time
}

// KeyIDPrefix starts every ES256 key id, as upstream's.
const KeyIDPrefix = "es256-"

// ParseSigningKey reads an unencrypted PEM P-256 private key: SEC 1
// ("EC PRIVATE KEY", what `openssl ecparam -genkey` writes, with or without
// its "EC PARAMETERS" block) or PKCS #8 ("PRIVATE KEY", what
// `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` writes).
// The error never holds key material.
func ParseSigningKey(b []byte) (*ecdsa.PrivateKey, error) {
	rest := b
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM private key found (want an unencrypted EC P-256 key, e.g. from `openssl ecparam -name prime256v1 -genkey -noout`)")
		}
		switch block.Type {
		case "EC PARAMETERS":
			continue
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the PEM key is encrypted; an unencrypted key is required")
		case "EC PRIVATE KEY":
			if _, encrypted := block.Headers["Proc-Type"]; encrypted {
				return nil, errors.New("the PEM key is encrypted; an unencrypted key is required")
			}
			k, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, errors.New("the EC PRIVATE KEY block does not parse")
			}
			return p256(k)
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, errors.New("the PRIVATE KEY block does not parse")
			}
			ek, ok := k.(*ecdsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("the key is %T; an EC P-256 key is required", k)
			}
			return p256(ek)
		default:
			return nil, fmt.Errorf("a PEM %q block; want an EC P-256 private key", block.Type)
		}
	}
}

func p256(k *ecdsa.PrivateKey) (*ecdsa.PrivateKey, error) {
	if k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("the key is on curve %s; P-256 is required (ES256)", k.Curve.Params().Name)
	}
	return k, nil
}

// PublicKeyOf is the published form of pub, with its key id.
func PublicKeyOf(pub *ecdsa.PublicKey) (PublicKey, error) {
	if pub == nil || pub.Curve != elliptic.P256() {
		return PublicKey{}, errors.New("not a P-256 public key")
	}
	thumb, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return PublicKey{}, err
	}
	kid := KeyIDOfThumbprint(thumb)
	b, err := json.Marshal(jose.JSONWebKey{Key: pub, KeyID: kid, Use: "sig", Algorithm: string(jose.ES256)})
	if err != nil {
		return PublicKey{}, err
	}
	return PublicKey{KeyID: kid, JWK: b}, nil
}

// KeyIDOfThumbprint is the kid of the key with this RFC 7638 SHA-256
// thumbprint.
func KeyIDOfThumbprint(thumb []byte) string {
	return KeyIDPrefix + base64.RawURLEncoding.EncodeToString(thumb)
}

// ThumbprintOf is the SHA-256 thumbprint a kid names; false for a string
// that is no ES256 kid.
func ThumbprintOf(kid string) ([]byte, bool) {
	rest, ok := strings.CutPrefix(kid, KeyIDPrefix)
	if !ok {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(b) != 32 {
		return nil, false
	}
	return b, true
}

// ParsePublicJWK reads a published key back (a previous key kept in the
// operator's state Secret) and checks that it is a P-256 public key whose
// key id is its thumbprint's.
func ParsePublicJWK(b []byte) (PublicKey, error) {
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(b); err != nil {
		return PublicKey{}, err
	}
	pub, ok := k.Key.(*ecdsa.PublicKey)
	if !ok {
		return PublicKey{}, fmt.Errorf("a %T, not an EC public key", k.Key)
	}
	pk, err := PublicKeyOf(pub)
	if err != nil {
		return PublicKey{}, err
	}
	if k.KeyID != pk.KeyID {
		return PublicKey{}, fmt.Errorf("kid %q is not the key's thumbprint %q", k.KeyID, pk.KeyID)
	}
	return pk, nil
}

// SigningKeyID is the key id of a PEM signing key, for status and logs.
func SigningKeyID(b []byte) (string, error) {
	k, err := ParseSigningKey(b)
	if err != nil {
		return "", err
	}
	pk, err := PublicKeyOf(&k.PublicKey)
	return pk.KeyID, err
}
