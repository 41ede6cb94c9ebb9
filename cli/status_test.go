package cli

import (
	"encoding/json"
	"github.com/lazytree/lazytree/fetch/fetchtest"
	"strings"
	"testing"
)

// TestStatus: `lazytree status` tells a person what the daemon does
// (mount, remote online with its URL, cache against the quota, pins,
// fetches), and --json carries the same; without a daemon it says so
// and still shows the cache.
func TestStatus(t *testing.T) {
	m := startMount(t, map[string]string{"hello": "hi\n", "sub/file": strings.Repeat("x", 5000)}, fetchtest.Options{}, mountOptions{})
	if out, err := readInChild(t, m.path("sub/file")); err != nil || len(out) != 5000 {
		t.Fatalf("read through the mount: %v", err)
	}
	lt(t, "--home", m.home, "pin", "r:os/x86_64/stable")
	out := lt(t, "--home", m.home, "status")
	for _, want := range []string{"daemon", "mounted at " + m.mp, "cache", "%), ", "pins", "r:os/x86_64/stable", "REMOTE", "online", m.srv.URL(), "fetched", "in flight", "no recent errors"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	var st statusJSON
	if err := json.Unmarshal([]byte(lt(t, "--home", m.home, "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if !st.Running || st.Mountpoint != m.mp || st.Source == nil || len(st.Source.Remotes) != 1 || st.Source.Remotes[0].Name != "r" ||
		st.Cache.Stats == nil || st.Cache.Objects == 0 || st.Cache.MaxBytes == 0 || len(st.Pins) != 1 || st.Source.ObjectsFetched == 0 {
		t.Fatalf("status --json: %+v", st)
	}
	m.cancel()
	<-m.done
	out = lt(t, "--home", m.home, "status")
	if !strings.Contains(out, "not running") || !strings.Contains(out, "r:os/x86_64/stable") || !strings.Contains(out, "objects") {
		t.Fatalf("status without a daemon:\n%s", out)
	}
	if err := json.Unmarshal([]byte(lt(t, "--home", m.home, "status", "--json")), &st); err != nil || st.Running {
		t.Fatalf("status --json without a daemon: %v %+v", err, st)
	}
}
