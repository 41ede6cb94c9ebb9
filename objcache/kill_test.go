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

	"golang.org/x/sync/errgroup"

	"github.com/lazytree/lazytree/index"
	"github.com/lazytree/lazytree/internal/testutil"
)

// killChildEnv makes the test binary act as the child of TestKill: it
// opens the cache in the named home and writes until it is killed.
// killRoundEnv numbers the child, so that each writes its own probes.
const (
	killChildEnv = "LAZYTREE_OBJCACHE_KILL_CHILD"
	killRoundEnv = "LAZYTREE_OBJCACHE_KILL_ROUND"
)

func TestMain(m *testing.M) {
	if home := os.Getenv(killChildEnv); home != "" {
		round, err := strconv.Atoi(os.Getenv(killRoundEnv))
		if err != nil {
			fmt.Println("round:", err)
			os.Exit(1)
		}
		killChild(home, round)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Probes are the writes whose acknowledgement the parent checks: a child
// pins its round's probes before writing any (so that eviction cannot
// take them), then writes them one at a time and reports each on stdout
// only after PutContent or PutMeta returned. A report is in the pipe once
// Println returns, so every probe the parent reads was acknowledged
// before the kill.
const (
	probesPerRound = 1000
	probeWriters   = 4
)

// probe is probe i of round: every fifth a dirtree, the others content
// objects of 1 to 256 bytes.
type probe struct {
	meta    bool
	content obj    // when !meta
	data    []byte // when meta
	sum     string
}

func makeProbe(round, i int) probe {
	if i%5 == 4 {
		data := []byte(fmt.Sprintf("probe dirtree %d %d", round, i))
		return probe{meta: true, data: data, sum: index.Sum(sha256.Sum256(data)).String()}
	}
	o := makeObj(uint64(3_000_000+round*probesPerRound+i), 1+i%256)
	return probe{content: o, sum: o.sum.String()}
}

func (p probe) id() index.ObjectID {
	if !p.meta {
		return p.content.id()
	}
	s, _ := index.ParseSum(p.sum)
	return index.ObjectID{Sum: s, Type: index.TypeDirTree}
}

// probePin is the commit the probes of round are pinned as.
func probePin(round int) string {
	return index.Sum(sha256.Sum256([]byte(fmt.Sprintf("probes of round %d", round)))).String()
}

// writeProbes pins round's probes, reports "pinned", then writes them and
// reports "ack I SUM" after each.
func writeProbes(ctx context.Context, s *Store, round int, report func(string)) error {
	ids := make([]index.ObjectID, probesPerRound)
	for i := range ids {
		ids[i] = makeProbe(round, i).id()
	}
	if err := s.PinCommit(ctx, hexSum(probePin(round)), ids); err != nil {
		return fmt.Errorf("pin probes: %w", err)
	}
	report("pinned")
	// Several writers, so that acknowledged writes share group commits.
	var g errgroup.Group
	for w := range probeWriters {
		g.Go(func() error {
			for i := w; i < probesPerRound; i += probeWriters {
				p := makeProbe(round, i)
				var err error
				if p.meta {
					err = s.PutMeta(ctx, index.TypeDirTree, hexSum(p.sum), p.data, "kill")
				} else {
					err = s.PutContent(ctx, hexSum(p.sum), p.content.hdr, bytes.NewReader(p.content.content), "kill")
				}
				if err != nil {
					return fmt.Errorf("probe %d: %w", i, err)
				}
				report(fmt.Sprintf("ack %d %s", i, p.sum))
			}
			return nil
		})
	}
	return g.Wait()
}

// checkProbes checks, after a restart, that every probe acknowledged in
// acks (round → probe numbers) is present and reads back its own bytes
// (the first open after a restart rehashes), and that every acknowledged
// pin is still there. It returns how many probes it checked.
func checkProbes(t *testing.T, s *Store, pinned map[int]bool, acks map[int][]int) int {
	t.Helper()
	ctx := context.Background()
	pins, err := s.Pins(ctx)
	if err != nil {
		t.Fatalf("pins: %v", err)
	}
	have := map[string]bool{}
	for _, p := range pins {
		have[p.Commit.String()] = true
	}
	for round := range pinned {
		if !have[probePin(round)] {
			t.Errorf("round %d: the pin acknowledged before the kill is gone", round)
		}
	}
	n := 0
	for round, is := range acks {
		for _, i := range is {
			p := makeProbe(round, i)
			n++
			if p.meta {
				got, err := s.ReadMeta(ctx, index.TypeDirTree, hexSum(p.sum))
				if err != nil || !bytes.Equal(got, p.data) {
					t.Errorf("round %d: acknowledged dirtree probe %d (%s): %q, %v; want %q", round, i, p.sum[:8], got, err, p.data)
				}
				continue
			}
			h, err := s.Open(ctx, hexSum(p.sum))
			if err != nil {
				t.Errorf("round %d: acknowledged probe %d (%s) lost: %v", round, i, p.sum[:8], err)
				continue
			}
			got, err := readAll(h)
			h.Close()
			if err != nil || !bytes.Equal(got, p.content.content) {
				t.Errorf("round %d: acknowledged probe %d (%s): %d bytes, %v; want %d bytes", round, i, p.sum[:8], len(got), err, len(p.content.content))
			}
		}
	}
	return n
}

// killChild writes content and metadata objects from several goroutines
// into a cache small enough to evict all the time, while reading, pinning
// and unpinning, and reports "ready" and its progress on stdout; one more
// goroutine writes the round's probes (writeProbes).
func killChild(home string, round int) {
	ctx := context.Background()
	s, err := Open(ctx, home, Options{MaxBytes: 1 << 20})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	var n atomic.Int64
	var out sync.Mutex
	report := func(l string) {
		out.Lock()
		fmt.Println(l)
		out.Unlock()
	}
	go func() {
		if err := writeProbes(ctx, s, round, report); err != nil {
			report(err.Error())
			os.Exit(1)
		}
	}()
	seed := uint64(time.Now().UnixNano())
	for g := range 8 {
		go func() {
			r := rand.New(rand.NewPCG(seed, uint64(g)))
			for i := 0; ; i++ {
				k := uint64(r.IntN(5000))
				switch {
				case i%10 == 9:
					data := []byte(fmt.Sprintf("dirtree %d %d", k, seed))
					sum := index.Sum(sha256.Sum256(data))
					if err := s.PutMeta(ctx, index.TypeDirTree, hexSum(sum.String()), data, "kill"); err != nil {
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
					commit := index.Sum(sha256.Sum256([]byte{byte(k % 4)}))
					if err := s.PinCommit(ctx, hexSum(commit.String()), ids); err != nil {
						fmt.Println("pin:", err)
						os.Exit(1)
					}
					if err := s.UnpinCommit(ctx, index.Sum(sha256.Sum256([]byte{byte(k%4 + 1)}))); err != nil && !strings.Contains(err.Error(), "not found") {
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
// SIGKILL at random moments, and after each kill checks that every write
// and pin the child acknowledged before the kill is there and verifies,
// that the next start finds no record without its file, that fsck finds
// nothing corrupt or missing and the index consistent, and that the cache
// works.
func TestKill(t *testing.T) {
	if testing.Short() && !testutil.InCI() {
		t.Skip("kills a child process 30 times")
	}
	home := t.TempDir()
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	const rounds = 30
	checked, written, probed := 0, int64(0), 0
	// Acknowledged pins and probes not yet checked, by round.
	pinned, acks := map[int]bool{}, map[int][]int{}
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
		res, err := runAndKill(home, round, mode, r)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		written += res.written
		if res.pinned {
			pinned[round] = true
		}
		if len(res.acked) > 0 {
			acks[round] = res.acked
		}
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
		nProbes := checkProbes(t, s, pinned, acks)
		probed += nProbes
		rep, err := s.Fsck(context.Background())
		if err != nil {
			t.Fatalf("round %d: fsck: %v", round, err)
		}
		if !rep.Clean() || rep.OrphansRemoved != 0 {
			t.Errorf("round %d: fsck after kill: corrupt %v, missing %v, index %v, orphans %d",
				round, rep.Corrupt, rep.Missing, rep.Index, rep.OrphansRemoved)
		}
		// Checked: release the probes so that they do not fill the quota.
		for pr := range pinned {
			if err := s.UnpinCommit(context.Background(), hexSum(probePin(pr))); err != nil {
				t.Fatalf("round %d: unpin probes of round %d: %v", round, pr, err)
			}
		}
		clear(pinned)
		clear(acks)
		// The cache works: a new object goes in and comes out.
		o := makeObj(uint64(1_000_000+round), 3000)
		put(t, s, o)
		expectContent(t, s, o)
		used, objects := s.Usage()
		stats = append(stats, fmt.Sprintf("%d: clean=%v tmp=%d orphans=%d objects=%d bytes=%d checked=%d probes=%d",
			round, st.Clean, st.TempRemoved, st.OrphansRemoved, objects, used, rep.Checked, nProbes))
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
	if probed < 200 {
		t.Errorf("only %d acknowledged probes were checked after kills", probed)
	}
	t.Logf("%d kills, %d checked, children wrote at least %d content objects, %d acknowledged probes checked", rounds, checked, written, probed)
	for _, l := range stats {
		t.Log(l)
	}

	// Finally, a record whose file vanished while the cache was down after
	// a crash is found and dropped at the next start. The object is pinned
	// so that the child cannot evict it.
	s := openStore(t, home, Options{MaxBytes: 1 << 20})
	o := makeObj(2_000_000, 5000)
	put(t, s, o)
	if err := s.PinCommit(context.Background(), index.Sum(sha256.Sum256([]byte("parent"))), []index.ObjectID{o.id()}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := runAndKill(home, rounds, killTimed, r); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(objPath(home, o.sum.String())); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, home, Options{MaxBytes: 1 << 20})
	if st := s.Startup(); st.Clean || len(st.RecordsDropped) != 1 || st.RecordsDropped[0] != o.sum.String()+".file" {
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

// killResult is what a child reported before it was killed.
type killResult struct {
	written int64 // content objects, as last reported
	pinned  bool  // the probe pin was acknowledged
	acked   []int // probes acknowledged
}

// runAndKill starts child round on home, kills it with SIGKILL at a
// moment chosen by mode and returns what it reported.
func runAndKill(home string, round, mode int, r *rand.Rand) (killResult, error) {
	var res killResult
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killChildEnv+"="+home, killRoundEnv+"="+strconv.Itoa(round))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return res, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return res, err
	}
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var failure string
	ready := false
	read := func(l string) {
		if c, ok := strings.CutPrefix(l, "n "); ok {
			if v, err := strconv.ParseInt(c, 10, 64); err == nil {
				res.written = v
			}
		} else if c, ok := strings.CutPrefix(l, "ack "); ok {
			// "ack I SUM": the sum must be the probe's, or the child and
			// the parent disagree about what was written.
			var i int
			var sum string
			if _, err := fmt.Sscanf(c, "%d %s", &i, &sum); err != nil || i < 0 || i >= probesPerRound || makeProbe(round, i).sum != sum {
				if failure == "" {
					failure = "bad acknowledgement: " + l
				}
				return
			}
			res.acked = append(res.acked, i)
		} else if l == "pinned" {
			res.pinned = true
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
				return fmt.Errorf("child made no progress in 30 s (%d objects)", res.written)
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
		err = waitFor(func() bool { return res.written >= 200 })
		time.Sleep(time.Duration(r.IntN(40)) * time.Millisecond)
	}
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return res, err
	}
	cmd.Process.Signal(syscall.SIGKILL)
	// What the child wrote to the pipe before it died is still read here.
	for l := range lines {
		read(l)
	}
	err = cmd.Wait()
	if failure != "" {
		return res, fmt.Errorf("child failed: %s", failure)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		return res, fmt.Errorf("child was not killed: %v", err)
	}
	return res, nil
}
