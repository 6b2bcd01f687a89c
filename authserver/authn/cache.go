package authn

import (
	"sync"
	"time"

	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

// TokenCache remembers JWTs that verified, by digest, so a client that sends
// the same token on every request pays for the signature check once. It is
// part of a compiled policy: a policy change builds a new, empty cache.
//
// An entry lives until the token's exp, and at most MaxCachedTTL, which
// bounds how long a token stays accepted after its signing key was withdrawn
// at the issuer. Only successes are cached. The size is bounded, in entries
// and in bytes (an IdP may put hundreds of groups in a token, and each entry
// keeps them three times: the list, the X-Groups value and the JSON body);
// when a shard is full, expired entries go first, then arbitrary ones.
type TokenCache struct {
	shards   [cacheShards]cacheShard
	perCap   int
	perBytes int
}

const (
	cacheShards = 16
	// MaxCachedTTL bounds how long a verified token is cached.
	MaxCachedTTL = 5 * time.Minute
	// DefaultTokenCacheSize is the number of verified JWTs kept per policy.
	DefaultTokenCacheSize = 16384
	// tokenCacheBytes bounds the memory of a policy's cache: about 1 KiB
	// per entry when identities are ordinary (the count bounds first), and
	// at most this much when they are not.
	tokenCacheBytes = 16 << 20
)

type cacheShard struct {
	mu    sync.RWMutex
	m     map[secret.Digest]cacheEntry
	bytes int // the entries' sizes, summed
}

type cacheEntry struct {
	id    *check.Identity
	until time.Time
	size  int
	tag   int
}

// NewTokenCache returns a cache of at most size entries (and
// tokenCacheBytes), or nil (no caching) when size is not positive.
func NewTokenCache(size int) *TokenCache { return newTokenCacheBytes(size, tokenCacheBytes) }

// newTokenCacheBytes is newTokenCache with a memory bound of maxBytes.
func newTokenCacheBytes(size, maxBytes int) *TokenCache {
	if size <= 0 {
		return nil
	}
	per := (size + cacheShards - 1) / cacheShards
	c := &TokenCache{perCap: per, perBytes: max(maxBytes/cacheShards, 1)}
	for i := range c.shards {
		c.shards[i].m = make(map[secret.Digest]cacheEntry)
	}
	return c
}

func (c *TokenCache) shard(d *secret.Digest) *cacheShard { return &c.shards[d[0]%cacheShards] }

// Get returns the identity of a cached, unexpired token, or nil.
func (c *TokenCache) Get(d *secret.Digest, now time.Time) *check.Identity {
	id, _ := c.GetTagged(d, now)
	return id
}

// GetTagged is Get, with the tag the entry was put with.
func (c *TokenCache) GetTagged(d *secret.Digest, now time.Time) (*check.Identity, int) {
	if c == nil {
		return nil, 0
	}
	s := c.shard(d)
	s.mu.RLock()
	e, ok := s.m[*d]
	s.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return nil, 0
	}
	return e.id, e.tag
}

// Put caches id for the token with digest d until until (a nil cache
// keeps nothing).
func (c *TokenCache) Put(d *secret.Digest, id *check.Identity, until, now time.Time) {
	c.PutTagged(d, id, 0, until, now)
}

// PutTagged is Put with a tag, a small number the cache keeps beside the
// identity for its user (which of its issuers verified the token).
func (c *TokenCache) PutTagged(d *secret.Digest, id *check.Identity, tag int, until, now time.Time) {
	if c == nil {
		return
	}
	size := cacheEntryOverhead + id.MemSize()
	if size > c.perBytes {
		return // verified again on every request rather than crowding out the rest
	}
	s := c.shard(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[*d]; ok {
		s.remove(*d, old)
	}
	if len(s.m) >= c.perCap || s.bytes+size > c.perBytes {
		for k, e := range s.m {
			if !now.Before(e.until) {
				s.remove(k, e)
			}
		}
		// Still full: drop about an eighth, in map order (random).
		for k, e := range s.m {
			if len(s.m) < c.perCap-c.perCap/8 && s.bytes+size <= c.perBytes-c.perBytes/8 {
				break
			}
			s.remove(k, e)
		}
	}
	s.m[*d] = cacheEntry{id: id, until: until, size: size, tag: tag}
	s.bytes += size
}

func (s *cacheShard) remove(k secret.Digest, e cacheEntry) {
	delete(s.m, k)
	s.bytes -= e.size
}

// cacheEntryOverhead is what an entry costs besides its identity's MemSize:
// its map slot (key, time, pointer, size) and the Identity struct.
const cacheEntryOverhead = 64 + 256

// bytes is the memory the entries account for, for tests.
func (c *TokenCache) bytes() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += c.shards[i].bytes
		c.shards[i].mu.RUnlock()
	}
	return n
}

// Len is the number of entries.
func (c *TokenCache) Len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].m)
		c.shards[i].mu.RUnlock()
	}
	return n
}
