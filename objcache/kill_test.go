package objcache

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lazytree/lazytree/index"
)

// killChildEnv makes the test binary act as the child of TestKill: it
// opens the cache in the named home and writes until it is killed.
const killChildEnv = "LAZYTREE_OBJCACHE_KILL_CHILD"

func TestMain(m *testing.M) {
	if home := os.Getenv(killChildEnv); home != "" {
		killChild(home)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// killChild writes content and metadata objects from several goroutines
// into a cache small enough to evict all the time, while reading, pinning
// and unpinning, and reports "ready" and its progress on stdout.
func killChild(home string) {
	ctx := context.Background()
	s, err := Open(ctx, home, Options{MaxBytes: 1 << 20})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	var n atomic.Int64
	var out sync.Mutex
	seed := uint64(time.Now().UnixNano())
	for g := range 8 {
		go func() {
			r := rand.New(rand.NewPCG(seed, uint64(g)))
			for i := 0; ; i++ {
				k := uint64(r.IntN(5000))
				switch {
				case i%10 == 9:
					data := []byte(fmt.Sprintf("dirtree %d %d", k, seed))
					sum := fmt.Sprintf("%x", sha256.Sum256(data))
					if err := s.PutMeta(ctx, index.TypeDirTree, sum, data, "kill"); err != nil {
						fmt.Println("putmeta:", err)
						os.Exit(1)
					}
				case i%5 == 4:
					if h, err := s.Open(ctx, makeObj(k, 0).sum); err == nil {
						readAll(h)
						h.Close()
					}
				case i%50 == 49:
					var ids []index.ObjectID
					for range 300 {
						ids = append(ids, makeObj(uint64(r.IntN(5000)), int(k%8192)).id())
					}
					commit := fmt.Sprintf("%x", sha256.Sum256([]byte{byte(k % 4)}))
					if err := s.PinCommit(ctx, commit, ids); err != nil {
						fmt.Println("pin:", err)
						os.Exit(1)
					}
					if err := s.UnpinCommit(ctx, fmt.Sprintf("%x", sha256.Sum256([]byte{byte(k%4 + 1)}))); err != nil && !strings.Contains(err.Error(), "not found") {
						fmt.Println("unpin:", err)
						os.Exit(1)
					}
				default:
					o := makeObj(k, int(k%8192))
					if err := s.PutContent(ctx, o.sum, o.hdr, bytes.NewReader(o.content), "kill"); err != nil {
						fmt.Println("put:", err)
						os.Exit(1)
					}
					if c := n.Add(1); c%10 == 0 {
						out.Lock()
						fmt.Println("n", c)
						out.Unlock()
					}
				}
			}
		}()
	}
	time.Sleep(30 * time.Second) // a safety net: the parent kills long before
	os.Exit(2)
}

// TestKill kills a process that is writing thousands of objects with
// SIGKILL at random moments, and after each kill checks that the next
// start finds no record without its file, that fsck finds nothing
// corrupt or missing and the index consistent, and that the cache works.
func TestKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a child process 30 times")
	}
	home := t.TempDir()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	const rounds = 30
	checked, written := 0, int64(0)
	var stats []string
	for round := range rounds {
		// Kill some children during start-up, including right after a crash
		// that nobody checked, so that reconciliation itself is interrupted.
		// Others are killed a random time after they are ready, or once
		// they have written a few hundred objects (a slow machine, or the
		// race detector, must not make the test write too little).
		mode := killTimed
		switch {
		case round%4 == 3 || (round > 0 && round%6 == 0):
			mode = killEarly
		case round%2 == 0:
			mode = killAfterWrites
		}
		n, err := runAndKill(home, mode, r)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		written += n
		// Every sixth round, leave the crash for the next child to find.
		if round%6 == 5 && round != rounds-1 {
			continue
		}
		s, err := Open(context.Background(), home, Options{MaxBytes: 1 << 20})
		if err != nil {
			t.Fatalf("round %d: open after kill: %v", round, err)
		}
		st := s.Startup()
		if len(st.RecordsDropped) != 0 {
			t.Errorf("round %d: records without a file after a kill: %v", round, st.RecordsDropped)
		}
		rep, err := s.Fsck(context.Background())
		if err != nil {
			t.Fatalf("round %d: fsck: %v", round, err)
		}
		if !rep.Clean() || rep.OrphansRemoved != 0 {
			t.Errorf("round %d: fsck after kill: corrupt %v, missing %v, index %v, orphans %d",
				round, rep.Corrupt, rep.Missing, rep.Index, rep.OrphansRemoved)
		}
		// The cache works: a new object goes in and comes out.
		o := makeObj(uint64(1_000_000+round), 3000)
		put(t, s, o)
		expectContent(t, s, o)
		used, objects := s.Usage()
		stats = append(stats, fmt.Sprintf("%d: clean=%v tmp=%d orphans=%d objects=%d bytes=%d checked=%d",
			round, st.Clean, st.TempRemoved, st.OrphansRemoved, objects, used, rep.Checked))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		checked++
	}
	if checked < 20 {
		t.Errorf("only %d kills were checked", checked)
	}
	if written < 2000 {
		t.Errorf("the children reported only %d objects written", written)
	}
	t.Logf("%d kills, %d checked, children wrote at least %d content objects", rounds, checked, written)
	for _, l := range stats {
		t.Log(l)
	}

	// Finally, a record whose file vanished while the cache was down after
	// a crash is found and dropped at the next start. The object is pinned
	// so that the child cannot evict it.
	s := openStore(t, home, Options{MaxBytes: 1 << 20})
	o := makeObj(2_000_000, 5000)
	put(t, s, o)
	if err := s.PinCommit(context.Background(), fmt.Sprintf("%x", sha256.Sum256([]byte("parent"))), []index.ObjectID{o.id()}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := runAndKill(home, killTimed, r); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(objPath(home, o.sum)); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, home, Options{MaxBytes: 1 << 20})
	if st := s.Startup(); st.Clean || len(st.RecordsDropped) != 1 || st.RecordsDropped[0] != o.sum+".file" {
		t.Errorf("start after a lost file: %+v, want %s dropped", st, o.sum)
	}
	fsckClean(t, s)
}

// When runAndKill kills its child.
const (
	killEarly       = iota // 0-80 ms after the start, maybe before Open returns
	killTimed              // 50-300 ms after the child is ready
	killAfterWrites        // 0-40 ms after it reports 200 objects written
)

// runAndKill starts a child on home, kills it with SIGKILL at a moment
// chosen by mode and returns how many content objects it reported.
func runAndKill(home string, mode int, r *rand.Rand) (int64, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killChildEnv+"="+home)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var n int64
	var failure string
	ready := false
	read := func(l string) {
		if c, ok := strings.CutPrefix(l, "n "); ok {
			if v, err := strconv.ParseInt(c, 10, 64); err == nil {
				n = v
			}
		} else if l == "ready" {
			ready = true
		} else if failure == "" {
			failure = l
		}
	}
	// waitFor reads the child's output until done says so.
	waitFor := func(done func() bool) error {
		timeout := time.After(30 * time.Second)
		for !done() {
			select {
			case l, ok := <-lines:
				if !ok {
					return fmt.Errorf("child exited early: %s", failure)
				}
				read(l)
			case <-timeout:
				return fmt.Errorf("child made no progress in 30 s (%d objects)", n)
			}
		}
		return nil
	}
	switch mode {
	case killEarly:
		time.Sleep(time.Duration(r.IntN(80)) * time.Millisecond)
	case killTimed:
		err = waitFor(func() bool { return ready })
		time.Sleep(time.Duration(50+r.IntN(250)) * time.Millisecond)
	case killAfterWrites:
		err = waitFor(func() bool { return n >= 200 })
		time.Sleep(time.Duration(r.IntN(40)) * time.Millisecond)
	}
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return n, err
	}
	cmd.Process.Signal(syscall.SIGKILL)
	for l := range lines {
		read(l)
	}
	err = cmd.Wait()
	if failure != "" {
		return n, fmt.Errorf("child failed: %s", failure)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		return n, fmt.Errorf("child was not killed: %v", err)
	}
	return n, nil
}
