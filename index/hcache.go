package index

import "sync"

// headerCache keeps recently used file headers in memory, because stat
// is the hottest lookup a mount makes (ls -l of a large directory asks
// for every header) and Badger's read path through its tables costs a
// few microseconds. Entries are copies; eviction is random (Go's map
// order), which for this use is as good as LRU and costs nothing.
//
// A reader that misses may race a writer: it notes its shard's
// generation before reading Badger and fills the cache only if no write
// to the shard happened meanwhile, so the cache never goes back to an
// older header than the index holds.
type headerCache struct {
	shards [16]hcShard
	per    int
}

type hcShard struct {
	mu  sync.Mutex
	gen uint64
	m   map[Sum]FileHeader
}

func newHeaderCache(entries int) *headerCache {
	if entries <= 0 {
		return nil
	}
	c := &headerCache{per: max(1, entries/16)}
	for i := range c.shards {
		c.shards[i].m = make(map[Sum]FileHeader)
	}
	return c
}

func (c *headerCache) shard(s Sum) *hcShard { return &c.shards[s[0]&15] }

func cloneHeader(h FileHeader) FileHeader {
	h.Raw = append([]byte(nil), h.Raw...)
	return h
}

// get returns a copy of the cached header, or the shard's generation to
// pass to fill.
func (c *headerCache) get(s Sum) (FileHeader, uint64, bool) {
	sh := c.shard(s)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	h, ok := sh.m[s]
	if ok {
		return cloneHeader(h), 0, true
	}
	return FileHeader{}, sh.gen, false
}

// fill caches h, read from the index, unless a write happened since get.
func (c *headerCache) fill(s Sum, h FileHeader, gen uint64) {
	sh := c.shard(s)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen == gen {
		c.insertLocked(sh, s, h)
	}
}

// set caches h after it was written to the index.
func (c *headerCache) set(s Sum, h FileHeader) {
	sh := c.shard(s)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.gen++
	c.insertLocked(sh, s, h)
}

// forget drops s after a write whose order against other writers of
// the same header is not known (PutHeader): the next read refills.
func (c *headerCache) forget(s Sum) {
	sh := c.shard(s)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.gen++
	delete(sh.m, s)
}

func (c *headerCache) insertLocked(sh *hcShard, s Sum, h FileHeader) {
	if _, ok := sh.m[s]; !ok && len(sh.m) >= c.per {
		for k := range sh.m {
			delete(sh.m, k)
			break
		}
	}
	sh.m[s] = cloneHeader(h)
}
