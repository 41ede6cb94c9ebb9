package fusefs

import "testing"

func TestMounted(t *testing.T) {
	if !Mounted("/proc") {
		t.Error("/proc is not seen as a mount point")
	}
	if Mounted(t.TempDir()) {
		t.Error("a fresh temp dir is seen as a mount point")
	}
	if got := unescapeMountinfo(`/mnt/a\040b\134c`); got != `/mnt/a b\c` {
		t.Errorf("unescape: %q", got)
	}
}
