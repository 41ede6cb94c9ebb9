package fusefs_test

import (
	"testing"

	"github.com/lazytree/lazytree/fusefs"
	"github.com/lazytree/lazytree/internal/sourcetest"
)

// TestMemSourceConformance runs the fusefs.Source suite over the
// in-memory source the tree tests use, so that what they assume of a
// Source is what every Source does.
func TestMemSourceConformance(t *testing.T) {
	fx := sourcetest.Vector(t, "r")
	sourcetest.Run(t, fusefs.NewMemSource(t, fx.Remote, fx.Ref, fx.Content), fx)
}
