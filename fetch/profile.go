package fetch

import "github.com/lazytree/lazytree/ostree"

type profile struct {
	seen  map[string]bool
	paths []string
	dirty bool
}

// RecordAccess notes an opened path for the commit's access profile.
//
// It also starts speculation for the opened file (see speculate.go),
// fetching from remote, the one the reader came through ("" for a reader
// that came by checksum alone: then the remote the commit was first
// verified for).
func (s *MountSource) RecordAccess(remote string, commit ostree.Checksum, p string) {
	s.record(commit, p)
	s.examineOpen(remote, commit, p)
}

func (s *MountSource) record(commit ostree.Checksum, p string) {
	s.mu.Lock()
	pr := s.profiles[commit]
	s.mu.Unlock()
	if pr == nil {
		// The stored profile is read once per commit, without s.mu:
		// lookups and opens elsewhere take it and must not wait on the
		// index.
		fresh := &profile{seen: map[string]bool{}}
		if old, err := s.f.Profile(commit); err == nil {
			for _, o := range old {
				fresh.seen[o] = true
			}
			fresh.paths = old
		}
		s.mu.Lock()
		if pr = s.profiles[commit]; pr == nil {
			pr = fresh
			s.profiles[commit] = pr
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if pr.seen[p] {
		return
	}
	pr.seen[p] = true
	pr.paths = append(pr.paths, p)
	pr.dirty = true
}

func (s *MountSource) flushProfiles() error {
	s.mu.Lock()
	var todo []struct {
		c     ostree.Checksum
		paths []string
	}
	for c, pr := range s.profiles {
		if pr.dirty {
			todo = append(todo, struct {
				c     ostree.Checksum
				paths []string
			}{c, append([]string(nil), pr.paths...)})
			pr.dirty = false
		}
	}
	s.mu.Unlock()
	var first error
	for _, t := range todo {
		if err := s.f.SetProfile(t.c, t.paths); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// FlushProfiles saves the profiles recorded so far (lazytree profile
// export asks before it reads them).
func (s *MountSource) FlushProfiles() error { return s.flushProfiles() }

// ImportProfile records paths as the profile of commit (lazytree profile
// import), replacing what this mount had recorded for it.
func (s *MountSource) ImportProfile(commit ostree.Checksum, paths []string) error {
	s.mu.Lock()
	delete(s.profiles, commit)
	s.mu.Unlock()
	return s.f.SetProfile(commit, paths)
}
