// Package secret holds what the service keeps of a shared secret (a static
// token, an API key): its SHA-256 digest, compared in constant time, and the
// digests of replaced values still inside their grace window. It also holds
// the strength rules a secret must pass before it is used. Nothing here keeps
// or prints a secret value.
package secret

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unsafe"
)

// MinLength is the shortest static token, API key or session key the
// service accepts.
const MinLength = 32

// Digest is the SHA-256 of a token. The service keeps digests in memory, not
// tokens: a presented token is hashed once per request and compared in
// constant time with the digests of the configured tokens. Hashing first also
// makes the comparison independent of the tokens' lengths.
type Digest [sha256.Size]byte

// DigestOf returns the SHA-256 digest of a token.
func DigestOf(token []byte) Digest { return sha256.Sum256(token) }

// DigestString hashes a string without copying it. sha256.Sum256 does not
// keep or modify its argument, so viewing the string's bytes is safe and saves
// an allocation on the request path.
func DigestString(s string) Digest {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(s), len(s)))
}

// Fingerprint is the first 12 hex digits of the digest: enough to tell tokens
// apart in status, events and logs, useless for guessing the token.
func (d Digest) Fingerprint() string { return hex.EncodeToString(d[:6]) }

// Hex is the full digest in hex.
func (d Digest) Hex() string { return hex.EncodeToString(d[:]) }

// ParseDigest parses a digest written by Hex.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(d) {
		return d, fmt.Errorf("not a hex SHA-256 digest")
	}
	copy(d[:], b)
	return d, nil
}

// Equal compares two digests in constant time.
func (d *Digest) Equal(o *Digest) bool { return subtle.ConstantTimeCompare(d[:], o[:]) == 1 }

// Fingerprint returns the fingerprint of a token value.
func Fingerprint(token []byte) string { return DigestOf(token).Fingerprint() }

// PreviousDigest is a replaced token that stays valid until ExpiresAt.
type PreviousDigest struct {
	Digest    Digest
	ExpiresAt time.Time
}

// Digests are one credential's current digest and the previous ones still
// inside their rotation grace window.
type Digests struct {
	Current  Digest
	Previous []PreviousDigest
}

// Match compares d with the current digest and every previous one, without an
// early exit. It reports whether d matched, and whether the match was a
// previous token (still inside its window at now).
func (c *Digests) Match(d *Digest, now time.Time) (ok, previous bool) {
	cur := c.Current.Equal(d)
	prev := false
	for i := range c.Previous {
		p := &c.Previous[i]
		if p.Digest.Equal(d) && now.Before(p.ExpiresAt) {
			prev = true
		}
	}
	return cur || prev, prev && !cur
}

// placeholders are values people copy from documentation. A secret that
// contains one is refused even when it is long enough.
var placeholders = []string{
	"changeme", "change-me", "change_me", "replaceme", "replace-me", "replace_me",
	"your-generated-token", "your_generated_token", "your-api-token", "your-token",
	"your-secret", "placeholder", "example", "<token>", "xxxxxxxx", "secret-key-here",
	"insecure",
	// The upstream auth server's list (registry/common/secret_key.py).
	"development-secret-key", "change-this", "test-secret-key", "changemeimmediately",
}

// minDistinctBytes catches values such as "aaaa..." or "abababab...".
const minDistinctBytes = 8

// Clean trims surrounding white space (files and `echo` add a newline)
// from a secret value. It returns a new slice; the input is not changed.
func Clean(v []byte) []byte { return bytes.Clone(bytes.TrimSpace(v)) }

// Usable reports whether a cleaned bearer secret passes the checks of the
// compile step (not empty, long enough, not a placeholder).
func Usable(v []byte) bool {
	w, _ := Check(v, true)
	return w == Strong
}

// Weakness is why a secret value cannot be used.
type Weakness int

const (
	// Strong: the value can be used.
	Strong Weakness = iota
	// Empty: there is no value.
	Empty
	// Weak: the value is too short, a placeholder, too regular, or (for a
	// bearer secret) not a token a Bearer header can carry.
	Weak
)

// Check reports why a (cleaned) secret value cannot be used, and a message
// saying so, or Strong and "" when it is fine. The message never
// contains the value. bearer is true for a static token or an API key; a
// session signing key is an HMAC key, which may hold any bytes and look like
// anything, so only the rules about its strength apply to it.
func Check(v []byte, bearer bool) (Weakness, string) {
	if len(v) == 0 {
		return Empty, "the value is empty"
	}
	if bearer {
		for _, c := range v {
			if c <= 0x20 || c >= 0x7f {
				return Weak, "the value contains spaces, control or non-ASCII characters, which a Bearer token cannot carry"
			}
		}
		if LooksLikeJWT(string(v)) {
			return Weak, "the value has the shape of a JWT (three dot-separated parts starting with 'e'); static tokens and API keys must not, so they are never mistaken for IdP tokens"
		}
	}
	if len(v) < MinLength {
		return Weak, fmt.Sprintf("the value has %d characters; at least %d are required (e.g. `openssl rand -hex 32`)", len(v), MinLength)
	}
	lower := strings.ToLower(string(v))
	for _, p := range placeholders {
		if strings.Contains(lower, p) {
			return Weak, "the value contains a documentation placeholder; generate a random one (e.g. `openssl rand -hex 32`)"
		}
	}
	var seen [256]bool
	distinct := 0
	for _, c := range v {
		if !seen[c] {
			seen[c] = true
			distinct++
		}
	}
	if distinct < minDistinctBytes {
		return Weak, "the value repeats too few distinct characters; generate a random one (e.g. `openssl rand -hex 32`)"
	}
	return Strong, ""
}

// LooksLikeJWT is a cheap test for the compact JWS form (three base64url
// parts), so opaque tokens are not handed to the JWT parser. A shared secret
// of this shape is refused (Check), so the two kinds never overlap.
func LooksLikeJWT(s string) bool {
	return len(s) >= 16 && strings.Count(s, ".") == 2 && s[0] == 'e'
}
