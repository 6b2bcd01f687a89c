package authn

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/registryauth/registry-auth-operator/authserver/check"
	"github.com/registryauth/registry-auth-operator/authserver/secret"
)

func TestTokenCacheBounded(t *testing.T) {
	t.Parallel()
	id := check.NewIdentity("alice", "cli", nil, nil, check.MethodOIDC)
	until := time.Now().Add(time.Hour)
	for _, size := range []int{1, 16, 32, 100, 1024} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			g := NewWithT(t)
			c := NewTokenCache(size)
			// Shards round the capacity up to a multiple of cacheShards.
			limit := (size + cacheShards - 1) / cacheShards * cacheShards
			var last secret.Digest
			for i := range 1000 {
				last = secret.DigestOf(fmt.Appendf(nil, "token-%d", i))
				c.Put(&last, id, until, time.Now())
				if n := c.Len(); n > limit {
					t.Fatalf("after %d puts the cache holds %d entries, more than %d", i+1, n, limit)
				}
			}
			g.Expect(c.Get(&last, time.Now())).To(BeIdenticalTo(id), "the newest entry survives")
		})
	}
	t.Run("32 holds at most 32", func(t *testing.T) {
		g := NewWithT(t)
		c := NewTokenCache(32)
		for i := range 1000 {
			d := secret.DigestOf(fmt.Appendf(nil, "t%d", i))
			c.Put(&d, id, until, time.Now())
			g.Expect(c.Len()).To(BeNumerically("<=", 32))
		}
		g.Expect(c.Len()).To(BeNumerically(">=", 16), "eviction drops about an eighth, not everything")
	})
	t.Run("disabled", func(t *testing.T) {
		g := NewWithT(t)
		for _, size := range []int{0, -1} {
			c := NewTokenCache(size)
			g.Expect(c).To(BeNil())
			d := secret.DigestOf([]byte("x"))
			c.Put(&d, id, until, time.Now())
			g.Expect(c.Get(&d, time.Now())).To(BeNil())
		}
	})
	t.Run("expired entries are evicted first", func(t *testing.T) {
		g := NewWithT(t)
		c := NewTokenCache(cacheShards * 8)
		var keep []secret.Digest
		for i := range 2000 {
			d := secret.DigestOf(fmt.Appendf(nil, "e%d", i))
			u := time.Now().Add(-time.Minute)
			if i%50 == 0 {
				u = until
				keep = append(keep, d)
			}
			c.Put(&d, id, u, time.Now())
		}
		// 40 live entries spread over 16 shards of 8: a shard would need
		// more than 7 of them for one to be evicted.
		for _, d := range keep {
			g.Expect(c.Get(&d, time.Now())).To(BeIdenticalTo(id))
		}
	})
}

// The cache is bounded in bytes too: identities with hundreds of groups (an
// Entra token may carry 200) would otherwise take gigabytes at the entry
// bound.
func TestTokenCacheBoundedInBytes(t *testing.T) {
	bigIdentity := func(i int) *check.Identity {
		groups := make([]string, 200)
		for j := range groups {
			groups[j] = fmt.Sprintf("%08x-0000-4000-8000-%012x", i, j)
		}
		return check.NewIdentity(fmt.Sprintf("user-%d", i), "cli", groups, nil, check.MethodOIDC)
	}
	until := time.Now().Add(time.Hour)

	t.Run("ordinary identities meet the entry bound first", func(t *testing.T) {
		g := NewWithT(t)
		id := check.NewIdentity("alice@example.com", "registry-web", []string{"mcp-registry-admin", "dev"},
			[]string{"mcp-registry-admin", "mcp-servers-unrestricted/read", "mcp-servers-unrestricted/execute"}, check.MethodOIDC)
		g.Expect(cacheEntryOverhead + id.MemSize()).To(BeNumerically("<", tokenCacheBytes/DefaultTokenCacheSize))
	})
	t.Run("the byte bound holds, and the heap agrees", func(t *testing.T) {
		g := NewWithT(t)
		const budget = 4 << 20
		c := newTokenCacheBytes(DefaultTokenCacheSize, budget)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		var last secret.Digest
		for i := range 2000 { // about 50 MB of identities without the bound
			last = secret.DigestOf(fmt.Appendf(nil, "token-%d", i))
			c.Put(&last, bigIdentity(i), until, time.Now())
			g.Expect(c.bytes()).To(BeNumerically("<=", budget))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		g.Expect(c.Get(&last, time.Now())).NotTo(BeNil(), "the newest entry survives")
		g.Expect(c.Len()).To(BeNumerically(">", 50), "the budget is used, not emptied")
		// memSize is an estimate: what the heap holds for the cache must
		// stay within twice the budget.
		g.Expect(int64(after.HeapAlloc) - int64(before.HeapAlloc)).To(BeNumerically("<", 2*budget))
		runtime.KeepAlive(c)
	})
	t.Run("an identity larger than a shard's share is not cached", func(t *testing.T) {
		g := NewWithT(t)
		c := newTokenCacheBytes(DefaultTokenCacheSize, cacheShards*1024)
		d := secret.DigestOf([]byte("big"))
		c.Put(&d, bigIdentity(1), until, time.Now())
		g.Expect(c.Get(&d, time.Now())).To(BeNil())
		g.Expect(c.bytes()).To(BeZero())
	})
	t.Run("putting a token again does not count it twice", func(t *testing.T) {
		g := NewWithT(t)
		c := NewTokenCache(DefaultTokenCacheSize)
		d := secret.DigestOf([]byte("again"))
		id := bigIdentity(2)
		c.Put(&d, id, until, time.Now())
		once := c.bytes()
		c.Put(&d, id, until, time.Now())
		g.Expect(c.bytes()).To(Equal(once))
		g.Expect(c.Len()).To(Equal(1))
	})
}

// TestJWTCacheNewPerCompile: a policy change starts with an empty cache, so
// a changed policy re-verifies every token.
