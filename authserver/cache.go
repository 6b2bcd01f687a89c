package authserver

import (
	"sync"
	"time"
)

// tokenCache remembers JWTs that verified, by digest, so a client that sends
// the same token on every request pays for the signature check once. It is
// part of a compiled policy: a policy change builds a new, empty cache.
//
// An entry lives until the token's exp, and at most maxCachedTokenTTL, which
// bounds how long a token stays accepted after its signing key was withdrawn
// at the issuer. Only successes are cached. The size is bounded; when a shard
// is full, expired entries go first, then arbitrary ones.
type tokenCache struct {
	shards [cacheShards]cacheShard
	perCap int
}

const (
	cacheShards       = 16
	maxCachedTokenTTL = 5 * time.Minute
	// DefaultTokenCacheSize is the number of verified JWTs kept per policy.
	DefaultTokenCacheSize = 16384
)

type cacheShard struct {
	mu sync.RWMutex
	m  map[Digest]cacheEntry
}

type cacheEntry struct {
	id    *Identity
	until time.Time
}

func newTokenCache(size int) *tokenCache {
	if size <= 0 {
		return nil
	}
	per := (size + cacheShards - 1) / cacheShards
	c := &tokenCache{perCap: per}
	for i := range c.shards {
		c.shards[i].m = make(map[Digest]cacheEntry)
	}
	return c
}

func (c *tokenCache) shard(d *Digest) *cacheShard { return &c.shards[d[0]%cacheShards] }

// get returns the identity of a cached, unexpired token, or nil.
func (c *tokenCache) get(d *Digest, now time.Time) *Identity {
	if c == nil {
		return nil
	}
	s := c.shard(d)
	s.mu.RLock()
	e, ok := s.m[*d]
	s.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return nil
	}
	return e.id
}

func (c *tokenCache) put(d *Digest, id *Identity, until, now time.Time) {
	if c == nil {
		return
	}
	s := c.shard(d)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= c.perCap {
		for k, e := range s.m {
			if !now.Before(e.until) {
				delete(s.m, k)
			}
		}
		// Still full: drop about an eighth, in map order (random).
		for k := range s.m {
			if len(s.m) < c.perCap-c.perCap/8 {
				break
			}
			delete(s.m, k)
		}
	}
	s.m[*d] = cacheEntry{id: id, until: until}
}

// len is the number of entries, for tests.
func (c *tokenCache) len() int {
	n := 0
	for i := range c.shards {
		c.shards[i].mu.RLock()
		n += len(c.shards[i].m)
		c.shards[i].mu.RUnlock()
	}
	return n
}
