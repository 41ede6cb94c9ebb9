package objcache

// TmpDir is the store's directory for in-flight writes (tmp/), on the
// same file system as objects/ and emptied at every start, for callers
// that need scratch files next to the cache (a static-delta part being
// decompressed, say).
func (s *Store) TmpDir() string { return s.tmpDir }
