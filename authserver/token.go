package authserver

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

// MinSecretLength is the shortest static token, API key or session key the
// service accepts.
const MinSecretLength = 32

// Digest is the SHA-256 of a token. The service keeps digests in memory, not
// tokens: a presented token is hashed once per request and compared in
// constant time with the digests of the configured tokens. Hashing first also
// makes the comparison independent of the tokens' lengths.
type Digest [sha256.Size]byte

// DigestOf returns the SHA-256 digest of a token.
func DigestOf(token []byte) Digest { return sha256.Sum256(token) }

// digestString hashes a string without copying it. sha256.Sum256 does not
// keep or modify its argument, so viewing the string's bytes is safe and saves
// an allocation on the request path.
func digestString(s string) Digest {
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

// equal compares two digests in constant time.
func (d *Digest) equal(o *Digest) bool { return subtle.ConstantTimeCompare(d[:], o[:]) == 1 }

// Fingerprint returns the fingerprint of a token value.
func Fingerprint(token []byte) string { return DigestOf(token).Fingerprint() }

// PreviousDigest is a replaced token that stays valid until ExpiresAt.
type PreviousDigest struct {
	Digest    Digest
	ExpiresAt time.Time
}

// credentialDigests is one credential's current digest and the previous ones
// still inside their rotation grace window.
type credentialDigests struct {
	current  Digest
	previous []PreviousDigest
}

// match compares d with the current digest and every previous one, without an
// early exit. It reports whether d matched, and whether the match was a
// previous token (still inside its window at now).
func (c *credentialDigests) match(d *Digest, now time.Time) (ok, previous bool) {
	cur := c.current.equal(d)
	prev := false
	for i := range c.previous {
		p := &c.previous[i]
		if p.Digest.equal(d) && now.Before(p.ExpiresAt) {
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
}

// minDistinctBytes catches values such as "aaaa..." or "abababab...".
const minDistinctBytes = 8

// CleanSecret trims surrounding white space (files and `echo` add a newline)
// from a secret value. It returns a new slice; the input is not changed.
func CleanSecret(v []byte) []byte { return bytes.Clone(bytes.TrimSpace(v)) }

// SecretUsable reports whether a cleaned secret value passes the checks of
// the compile step (not empty, long enough, not a placeholder).
func SecretUsable(v []byte) bool {
	reason, _ := checkSecret(v, true)
	return reason == ""
}

// checkSecret reports why a (cleaned) secret value cannot be used, as a
// problem reason and message, or "" when it is fine. The message never
// contains the value. bearer is true for a static token or an API key; a
// session signing key is an HMAC key, which may hold any bytes and look like
// anything, so only the rules about its strength apply to it.
func checkSecret(v []byte, bearer bool) (reason, msg string) {
	if len(v) == 0 {
		return ProblemTokenEmpty, "the value is empty"
	}
	if bearer {
		for _, c := range v {
			if c <= 0x20 || c >= 0x7f {
				return ProblemTokenTooWeak, "the value contains spaces, control or non-ASCII characters, which a Bearer token cannot carry"
			}
		}
		if looksLikeJWT(string(v)) {
			return ProblemTokenTooWeak, "the value has the shape of a JWT (three dot-separated parts starting with 'e'); static tokens and API keys must not, so they are never mistaken for IdP tokens"
		}
	}
	if len(v) < MinSecretLength {
		return ProblemTokenTooWeak, fmt.Sprintf("the value has %d characters; at least %d are required (e.g. `openssl rand -hex 32`)", len(v), MinSecretLength)
	}
	lower := strings.ToLower(string(v))
	for _, p := range placeholders {
		if strings.Contains(lower, p) {
			return ProblemTokenTooWeak, "the value contains a documentation placeholder; generate a random one (e.g. `openssl rand -hex 32`)"
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
		return ProblemTokenTooWeak, "the value repeats too few distinct characters; generate a random one (e.g. `openssl rand -hex 32`)"
	}
	return "", ""
}
