package reposource

import (
	"testing"

	"github.com/lazytree/lazytree/internal/sourcetest"
)

// TestConformance runs the fusefs.Source suite over the vector repo.
func TestConformance(t *testing.T) {
	s, _ := newVectors(t)
	sourcetest.Run(t, s, sourcetest.Vector(t, "v"))
}
