package fetchtest_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/lazytree/lazytree/fetch/fetchtest"
)

// A flaky, slow mirror: 25 ms per request on a shared 10 MB/s link, with
// a tenth of the requests failing in one of three ways, the same ones on
// every run. Later the test fixes it and checks what the client asked for.
func Example() {
	dir, _ := os.MkdirTemp("", "repo")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "config"), []byte("[core]\nrepo_version=1\nmode=archive-z2\n"), 0o644)

	srv, err := fetchtest.New(dir, fetchtest.Options{
		Latency:       25 * time.Millisecond,
		Bandwidth:     10 << 20,
		Seed:          42,
		Status5xx:     fetchtest.Rule{P: 0.04},
		ErrorStatuses: []int{500},
		Reset:         fetchtest.Rule{P: 0.03, After: fetchtest.Seeded},
		Truncate:      fetchtest.Rule{P: 0.03, Paths: "/objects/", After: fetchtest.Seeded},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	// ... pull from srv.URL() and expect retries to cope ...

	// Fix the server mid-test.
	_ = srv.Update(func(o *fetchtest.Options) {
		o.Status5xx, o.Reset, o.Truncate = fetchtest.Rule{}, fetchtest.Rule{}, fetchtest.Rule{}
	})
	resp, err := http.Get(srv.URL() + "/config")
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	fmt.Println(srv.Count("/config"), srv.Log()[0].Status)
	// Output: 1 200
}
