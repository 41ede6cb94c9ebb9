package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lazytree/lazytree/fetch"
	"github.com/lazytree/lazytree/fetch/fetchtest"
	"github.com/lazytree/lazytree/ostree"
	"github.com/lazytree/lazytree/ostree/repo"
)

// Peers.
const (
	PeerOstree  = "peer:ostree"
	PeerFlatpak = "peer:flatpak"
)

// remoteName is the name of the remote each run adds.
const remoteName = "bench"

// Config is one bench matrix: every network × strategy × workload, Runs
// times each.
type Config struct {
	// Binary is the lazytree executable that runs the daemons (each run
	// is its own process with its own state, so that its RSS is its own).
	Binary string
	// Repo is the archive repository served through the emulated link.
	Repo string
	// Ref is the ref measured; empty picks the repo's only ref.
	Ref string
	// GPGKeys and SignKeys are the public keys lazytree trusts for the
	// repo (remote add --gpg-import, --sign-pubkey-file); with neither,
	// the remote is added with --no-gpg-verify. Peers never verify (say
	// so in the notes).
	GPGKeys, SignKeys []string
	Networks          []Network
	// Strategies are --prefetch modes and peers (PeerOstree, PeerFlatpak).
	Strategies []string
	Workloads  []Workload
	Runs       int
	// HTTP2 lets clients that speak it use cleartext HTTP/2; lazytree
	// does, ostree and flatpak do not, so it is off unless asked.
	HTTP2 bool
	// Concurrency is the daemon's requests in flight (mount
	// --concurrency); 0 is its default.
	Concurrency int
	// Loss holds back each 64 KiB of a response with this probability,
	// for LossStall (fetchtest.Options): a lossy link's retransmissions.
	Loss      float64
	LossStall time.Duration
	// Timeout bounds each run; 0 is 10 minutes.
	Timeout time.Duration
	// Work is where runs keep their state; empty is a temporary directory.
	Work string
	// Progress, when set, is told before each run starts.
	Progress func(done, total int, what string)
}

// ValidStrategy checks a strategy: a prefetch mode or a peer.
func ValidStrategy(s string) error {
	if IsPeer(s) {
		if s != PeerOstree && s != PeerFlatpak {
			return fmt.Errorf("bench: no peer %q (have %s, %s)", s, PeerOstree, PeerFlatpak)
		}
		return nil
	}
	if !fetch.ValidPrefetch(s) {
		return fmt.Errorf("bench: strategy %q is neither a prefetch mode (%s) nor a peer (%s, %s)",
			s, strings.Join(fetch.PrefetchModes, ", "), PeerOstree, PeerFlatpak)
	}
	return nil
}

// Validate checks the matrix before anything runs: known strategies, each
// once; workload names, each once; a valid ref.
func (cfg *Config) Validate() error {
	if len(cfg.Networks) == 0 || len(cfg.Strategies) == 0 || len(cfg.Workloads) == 0 {
		return errors.New("bench: need at least one network, strategy and workload")
	}
	seen := map[string]bool{}
	for _, s := range cfg.Strategies {
		if err := ValidStrategy(s); err != nil {
			return err
		}
		if seen[s] {
			return fmt.Errorf("bench: strategy %s given twice", s)
		}
		seen[s] = true
	}
	names := map[string]bool{}
	for _, w := range cfg.Workloads {
		if names[w.Name] {
			return fmt.Errorf("bench: two workloads named %q", w.Name)
		}
		names[w.Name] = true
	}
	nets := map[Network]bool{}
	for _, n := range cfg.Networks {
		if nets[n] {
			return fmt.Errorf("bench: network %s given twice", n)
		}
		nets[n] = true
	}
	if cfg.Ref != "" {
		if err := ostree.ValidateRef(cfg.Ref); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	return nil
}

// Run measures the matrix and returns the report. It fails only when
// nothing can be measured (no repo, no ref); a cell that fails keeps its
// error and the others go on. When ctx ends it returns what it measured
// so far, with a note, and ctx's error.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Runs <= 0 {
		cfg.Runs = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	work := cfg.Work
	if work == "" {
		d, err := os.MkdirTemp("", "lazytree-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		work = d
	}
	r := &runner{cfg: cfg, work: work}
	srv, err := newServer(cfg.Repo, fetchtest.Options{HTTP2: cfg.HTTP2, ErrorStatuses: []int{500}})
	if err != nil {
		return nil, err
	}
	defer srv.Close()
	r.srv = srv
	var rep *Report
	if isURL(cfg.Repo) {
		rep, err = r.surveyURL(ctx)
	} else {
		rep, err = r.survey()
	}
	if err != nil {
		return nil, err
	}
	for i := range r.cfg.Workloads {
		if w := &r.cfg.Workloads[i]; w.Builtin == WorkloadFirstRead && w.Deep == "" {
			w.Deep = r.deep
		}
	}
	cfg = r.cfg
	rep.Notes = append(rep.Notes, r.settings())
	peerNoted := map[string]bool{}
	total := len(cfg.Networks) * len(cfg.Strategies) * len(cfg.Workloads) * cfg.Runs
	done := 0
	for _, n := range cfg.Networks {
		if err := srv.SetOptions(fetchtest.Options{HTTP2: cfg.HTTP2, ErrorStatuses: []int{500},
			Latency: n.RTT, ConnLatency: n.RTT, Bandwidth: n.Bandwidth / 8, Loss: cfg.Loss, LossStall: cfg.LossStall, Seed: 1}); err != nil {
			return nil, err
		}
		for _, w := range cfg.Workloads {
			for _, s := range cfg.Strategies {
				c := Cell{Network: n, Strategy: s, Workload: w.Name}
				for i := 0; i < cfg.Runs; i++ {
					if cfg.Progress != nil {
						cfg.Progress(done, total, fmt.Sprintf("%s %s %s run %d/%d", n, w.Name, s, i+1, cfg.Runs))
					}
					done++
					if err := ctx.Err(); err != nil {
						return r.interrupted(rep, c), err
					}
					sm, err := r.measure(ctx, s, w)
					if err != nil {
						if ctx.Err() != nil {
							return r.interrupted(rep, c), ctx.Err()
						}
						c.Error = err.Error()
						if errors.Is(err, errPeerMissing) && !peerNoted[s] {
							peerNoted[s] = true
							rep.Notes = append(rep.Notes, err.Error())
						}
						done += cfg.Runs - 1 - i
						break
					}
					c.Samples = append(c.Samples, sm)
				}
				c.Summarize()
				if c.Noisy {
					st := c.Summary[MetricDone]
					rep.Notes = append(rep.Notes, fmt.Sprintf("%s, %s, %s: runs spread %.0f%% (%.2f–%.2f s), more than %.0f%%",
						n, w.Name, s, 100*st.Spread, st.Min, st.Max, 100*NoiseLimit))
				}
				rep.Cells = append(rep.Cells, c)
			}
		}
	}
	if cfg.Progress != nil {
		cfg.Progress(total, total, "done")
	}
	return rep, nil
}

// interrupted closes a report whose run was cut short in cell c.
func (r *runner) interrupted(rep *Report, c Cell) *Report {
	if len(c.Samples) > 0 {
		c.Summarize()
		rep.Cells = append(rep.Cells, c)
	}
	rep.Notes = append(rep.Notes, "interrupted: the matrix is not complete")
	return rep
}

// isURL tells a repository URL from a directory.
func isURL(repo string) bool {
	return strings.HasPrefix(repo, "http://") || strings.HasPrefix(repo, "https://")
}

// newServer serves a directory through the emulated link, or proxies a
// URL through it.
func newServer(repo string, o fetchtest.Options) (*fetchtest.Server, error) {
	if isURL(repo) {
		return fetchtest.NewProxy(repo, o)
	}
	return fetchtest.New(repo, o)
}

// settings says how the clients were set up, where they differ.
func (r *runner) settings() string {
	proto := "HTTP/1.1 for every client (equal settings)"
	if r.cfg.HTTP2 {
		proto = "cleartext HTTP/2 offered: lazytree uses it, ostree and flatpak speak HTTP/1.1 (unequal settings)"
	}
	conc := "its default"
	if r.cfg.Concurrency > 0 {
		conc = strconv.Itoa(r.cfg.Concurrency)
	}
	s := fmt.Sprintf("link: %s; lazytree's requests in flight: %s, the peers' their own; peers do not verify signatures", proto, conc)
	if r.cfg.Loss > 0 {
		s += fmt.Sprintf("; loss: %.3g of each 64 KiB stalls %s", r.cfg.Loss, r.cfg.LossStall)
	}
	return s
}

// surveyURL learns the ref of a remote repository through a mount of it
// (unmeasured, unshaped, metadata prefetch): its commit, files, deepest
// file and, for want of the archived sizes, the bytes of its files.
func (r *runner) surveyURL(ctx context.Context) (*Report, error) {
	if r.cfg.Ref == "" {
		return nil, errors.New("bench: --ref is needed with a repository URL")
	}
	dir := filepath.Join(r.work, "survey")
	defer os.RemoveAll(dir)
	home, mp := filepath.Join(dir, "home"), filepath.Join(dir, "mnt")
	if err := r.addRemote(ctx, home); err != nil {
		return nil, err
	}
	d, err := r.startDaemon(ctx, home, mp, fetch.PrefetchMetadata)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	root := filepath.Join(mp, remoteName, r.cfg.Ref)
	rep := &Report{Version: ReportVersion, Started: time.Now().UTC(), Repo: r.cfg.Repo, Ref: r.cfg.Ref, Runs: r.cfg.Runs,
		Host: Host{CPUs: runtime.NumCPU(), Go: runtime.Version(), Kernel: kernel()}}
	depth := -1
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rep.RefFiles++
		if n := strings.Count(rel, "/"); n > depth && e.Type().IsRegular() {
			r.deep, depth = rel, n
		}
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			rep.RefBytes += fi.Size()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bench: survey %s: %w%s", r.cfg.Ref, err, d.stderrTail())
	}
	if st, ok := mountStatus(mp); ok {
		rep.Commit = st.Refs[remoteName+":"+r.cfg.Ref].Commit
	}
	rep.Notes = append(rep.Notes, "the repository is a URL: bytes in the ref are its files' sizes, not its archived objects'")
	return rep, nil
}

// errPeerMissing is what a peer whose tool is missing fails with.
var errPeerMissing = errors.New("peer not installed")

type runner struct {
	cfg     Config
	work    string
	srv     *fetchtest.Server
	commit  ostree.Checksum
	deep    string // deepest regular file, for first-read
	counter int
}

// survey reads the ref from the repository: its commit, files, bytes and
// deepest file.
func (r *runner) survey() (*Report, error) {
	rp, err := repo.Open(r.cfg.Repo)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if r.cfg.Ref == "" {
		refs, err := rp.Refs()
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		if len(refs) != 1 {
			return nil, fmt.Errorf("bench: %s has %d refs; say which with --ref (%s)", r.cfg.Repo, len(refs), strings.Join(repo.SortedRefs(refs), ", "))
		}
		r.cfg.Ref = repo.SortedRefs(refs)[0]
	}
	c, ok, err := rp.ResolveRef(r.cfg.Ref)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("bench: no ref %s in %s", r.cfg.Ref, r.cfg.Repo)
	}
	r.commit = c
	commit, _, err := rp.ReadCommit(c)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	rep := &Report{Version: ReportVersion, Started: time.Now().UTC(), Repo: r.cfg.Repo, Ref: r.cfg.Ref, Commit: c.String(), Runs: r.cfg.Runs,
		Host: Host{CPUs: runtime.NumCPU(), Go: runtime.Version(), Kernel: kernel()}}
	if st, err := os.Stat(filepath.Join(r.cfg.Repo, ostree.ObjectPath(c, ostree.ObjCommit, true))); err == nil {
		rep.RefBytes += st.Size()
	}
	err = rp.Walk(commit, func(sum ostree.Checksum, t ostree.ObjectType) error {
		st, err := os.Stat(filepath.Join(r.cfg.Repo, ostree.ObjectPath(sum, t, true)))
		if err != nil {
			return err
		}
		rep.RefBytes += st.Size()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bench: walk %s: %w", r.cfg.Ref, err)
	}
	files, deep, err := r.treeFiles(rp, commit)
	if err != nil {
		return nil, fmt.Errorf("bench: walk %s: %w", r.cfg.Ref, err)
	}
	rep.RefFiles, r.deep = files, deep
	return rep, nil
}

// treeFiles counts the non-directory entries of the commit's tree and
// returns its deepest file (the first by name at the greatest depth).
func (r *runner) treeFiles(rp *repo.Repo, commit *ostree.Commit) (int, string, error) {
	n, deep, depth := 0, "", -1
	var visit func(tree ostree.Checksum, dir string, d int) error
	visit = func(tree ostree.Checksum, dir string, d int) error {
		b, err := rp.ReadObject(tree, ostree.ObjDirTree)
		if err != nil {
			return err
		}
		dt, err := ostree.DecodeDirTree(b)
		if err != nil {
			return err
		}
		for _, f := range dt.Files {
			n++
			if d > depth && r.regularFile(f.Checksum) {
				deep, depth = filepath.Join(dir, f.Name), d
			}
		}
		for _, sub := range dt.Dirs {
			if err := visit(sub.Tree, filepath.Join(dir, sub.Name), d+1); err != nil {
				return err
			}
		}
		return nil
	}
	err := visit(commit.RootTree, "", 0)
	return n, deep, err
}

// regularFile reports whether the content object c of the repo is a
// regular file (not a symlink), from its archive header.
func (r *runner) regularFile(c ostree.Checksum) bool {
	f, err := os.Open(filepath.Join(r.cfg.Repo, ostree.ObjectPath(c, ostree.ObjFile, true)))
	if err != nil {
		return false
	}
	defer f.Close()
	h, err := ostree.ReadArchiveHeader(io.LimitReader(f, 1<<20))
	return err == nil && !h.IsSymlink()
}

func kernel() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

// measure runs w once with strategy s on a fresh state.
func (r *runner) measure(ctx context.Context, s string, w Workload) (Sample, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	r.counter++
	dir := filepath.Join(r.work, fmt.Sprintf("run-%d", r.counter))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Sample{}, err
	}
	defer os.RemoveAll(dir)
	switch s {
	case PeerOstree:
		return r.ostreeRun(ctx, dir, w)
	case PeerFlatpak:
		return r.flatpakRun(ctx, dir, w)
	}
	return r.lazyRun(ctx, dir, s, w)
}

// lt runs a lazytree command to completion.
func (r *runner) lt(ctx context.Context, home string, args ...string) error {
	cmd := exec.CommandContext(ctx, r.cfg.Binary, append([]string{"--home", home}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("lazytree %s: %v: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (r *runner) addRemote(ctx context.Context, home string) error {
	args := []string{"remote", "add", remoteName, r.srv.URL()}
	for _, k := range r.cfg.GPGKeys {
		args = append(args, "--gpg-import", k)
	}
	for _, k := range r.cfg.SignKeys {
		args = append(args, "--sign-pubkey-file", k)
	}
	if len(r.cfg.GPGKeys)+len(r.cfg.SignKeys) == 0 {
		args = append(args, "--no-gpg-verify")
	}
	return r.lt(ctx, home, args...)
}

func (r *runner) lazyRun(ctx context.Context, dir, strategy string, w Workload) (Sample, error) {
	home, mp := filepath.Join(dir, "home"), filepath.Join(dir, "mnt")
	if err := r.addRemote(ctx, home); err != nil {
		return Sample{}, err
	}
	if strategy == fetch.PrefetchProfile {
		if err := r.recordProfile(ctx, dir, home, w); err != nil {
			return Sample{}, err
		}
	}
	r.srv.Reset()
	t0 := time.Now()
	d, err := r.startDaemon(ctx, home, mp, strategy)
	if err != nil {
		return Sample{}, err
	}
	defer d.stop()
	sm := Sample{Mount: time.Since(t0).Seconds()}
	tm, err := w.run(ctx, filepath.Join(mp, remoteName, r.cfg.Ref), t0)
	if err != nil {
		return Sample{}, fmt.Errorf("%s: %w%s", w.Name, err, d.stderrTail())
	}
	sm.FirstByte, sm.Done = tm.first.Seconds(), tm.done.Seconds()
	r.server(&sm)
	if st, ok := mountStatus(mp); ok {
		if st.CacheHits+st.ObjectsFetched > 0 {
			n := st.CacheHits + st.ObjectsFetched
			sm.CacheHitRatio = float64(st.CacheHits) / float64(n)
		}
	}
	sm.PeakRSS = peakRSS(d.cmd.Process.Pid)
	return sm, nil
}

// mountStatus reads the fetch section of a mount's status.json.
func mountStatus(mp string) (fetch.Status, bool) {
	var doc struct {
		Source fetch.Status `json:"source"`
	}
	b, err := os.ReadFile(filepath.Join(mp, ".lazytree", "status.json"))
	return doc.Source, err == nil && json.Unmarshal(b, &doc) == nil
}

// server fills in what the server saw since its last Reset.
func (r *runner) server(sm *Sample) {
	log := r.srv.Log()
	sm.Requests = len(log)
	sm.CriticalPath = fetchtest.CriticalPath(log)
	sm.Bytes = r.srv.Stats().Bytes
}

// recordProfile records the access profile of one unmeasured run of w in
// a cache of its own and imports it into home: a second cold start, cache
// emptied, profile kept.
func (r *runner) recordProfile(ctx context.Context, dir, home string, w Workload) error {
	rec, mp := filepath.Join(dir, "record-home"), filepath.Join(dir, "record-mnt")
	if err := r.addRemote(ctx, rec); err != nil {
		return err
	}
	d, err := r.startDaemon(ctx, rec, mp, fetch.PrefetchNone)
	if err != nil {
		return err
	}
	_, err = w.run(ctx, filepath.Join(mp, remoteName, r.cfg.Ref), time.Now())
	d.stop()
	if err != nil {
		return fmt.Errorf("recording a profile: %w", err)
	}
	prof := filepath.Join(dir, "profile")
	if err := r.lt(ctx, rec, "profile", "export", remoteName+":"+r.cfg.Ref, "-o", prof); err != nil {
		if strings.Contains(err.Error(), "no access profile recorded") {
			// The workload opened no file (ls -lR): there is nothing
			// to replay, and the strategy runs as it would for a user.
			return nil
		}
		return err
	}
	return r.lt(ctx, home, "profile", "import", prof)
}

// daemon is a `lazytree mount --foreground` child.
type daemon struct {
	cmd    *exec.Cmd
	mp     string
	mu     sync.Mutex
	stderr strings.Builder
	done   chan struct{}
	unhook func() bool
}

func (d *daemon) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stderr.Len() < 64<<10 {
		d.stderr.Write(p)
	}
	return len(p), nil
}

func (d *daemon) stderrTail() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := strings.TrimSpace(d.stderr.String())
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	if s == "" {
		return ""
	}
	return " (daemon: " + s + ")"
}

// startDaemon mounts home's remotes at mp and returns once the mount
// answers.
func (r *runner) startDaemon(ctx context.Context, home, mp, prefetch string) (*daemon, error) {
	args := []string{"--home", home, "mount", "--foreground", "--prefetch", prefetch}
	if r.cfg.Concurrency > 0 {
		args = append(args, "--concurrency", strconv.Itoa(r.cfg.Concurrency))
	}
	d := &daemon{mp: mp, done: make(chan struct{})}
	d.cmd = exec.Command(r.cfg.Binary, append(args, mp)...)
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	d.cmd.Stderr = d
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	// A read stuck in the mount ends when its daemon does.
	d.unhook = context.AfterFunc(ctx, func() { d.cmd.Process.Kill() })
	mounted := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		once := false
		for sc.Scan() {
			if !once && strings.HasPrefix(sc.Text(), "mounted ") {
				once = true
				close(mounted)
			}
		}
	}()
	timeout := time.NewTimer(time.Minute)
	defer timeout.Stop()
	select {
	case <-mounted:
		return d, nil
	case <-d.done:
		return nil, fmt.Errorf("lazytree mount exited before mounting%s", d.stderrTail())
	case <-timeout.C:
		err = errors.New("lazytree mount did not mount within a minute")
	case <-ctx.Done():
		err = ctx.Err()
	}
	d.stop()
	return nil, err
}

// stop ends the daemon (SIGTERM, then SIGKILL after 15 s) and makes sure
// its mount point is gone.
func (d *daemon) stop() {
	d.unhook()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
	// A killed daemon leaves its mount behind: detach exactly this one.
	_ = unix.Unmount(d.mp, unix.MNT_DETACH)
}

// peakRSS is the peak resident set of a live process (VmHWM), in bytes.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// tool runs a peer's command and raises *rss to its peak resident set.
// That is read from /proc (VmHWM) while it runs, not from wait4: a child
// that the kernel made by vfork from this process inherits this process's
// peak there (ru_maxrss carries the pre-exec image's), which is not the
// peer's.
func tool(ctx context.Context, env []string, rss *int64, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	polled := make(chan int64, 1)
	go func() {
		var peak int64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, peakRSS(cmd.Process.Pid))
			select {
			case <-done:
				polled <- peak
				return
			case <-t.C:
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	*rss = max(*rss, <-polled)
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", filepath.Base(name), args[0], err, strings.TrimSpace(out.String()))
	}
	return nil
}

// limitedBuffer keeps the first 64 KiB written to it.
type limitedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := 64<<10 - l.b.Len(); n > 0 {
		l.b.Write(p[:min(len(p), n)])
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func lookTool(name string) (string, error) {
	for _, p := range []string{name, "/usr/sbin/" + name, "/sbin/" + name} {
		if path, err := exec.LookPath(p); err == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("%w: %s not found; install it to compare with it", errPeerMissing, name)
}

// ostreeRun is what an ostree user does: pull into a bare-user repo
// (static deltas where the repo has them), check out, then the workload
// on the checkout.
func (r *runner) ostreeRun(ctx context.Context, dir string, w Workload) (Sample, error) {
	bin, err := lookTool("ostree")
	if err != nil {
		return Sample{}, err
	}
	client, co := filepath.Join(dir, "repo"), filepath.Join(dir, "checkout")
	env := append(os.Environ(), "LC_ALL=C")
	var sm Sample
	r.srv.Reset()
	t0 := time.Now()
	steps := [][]string{
		{"init", "--repo=" + client, "--mode=bare-user"},
		{"remote", "add", "--repo=" + client, "--no-gpg-verify", remoteName, r.srv.URL()},
		{"pull", "--repo=" + client, remoteName, r.cfg.Ref},
		{"checkout", "--repo=" + client, "-U", remoteName + ":" + r.cfg.Ref, co},
	}
	for _, s := range steps {
		if err := tool(ctx, env, &sm.PeakRSS, bin, s...); err != nil {
			return Sample{}, err
		}
	}
	sm.Mount = time.Since(t0).Seconds()
	tm, err := w.run(ctx, co, t0)
	if err != nil {
		return Sample{}, fmt.Errorf("%s on the ostree checkout: %w", w.Name, err)
	}
	sm.FirstByte, sm.Done = tm.first.Seconds(), tm.done.Seconds()
	r.server(&sm)
	return sm, nil
}

// flatpakRun is what a Flatpak user does: remote-add and install into a
// private user installation, then the workload on the deployed tree.
func (r *runner) flatpakRun(ctx context.Context, dir string, w Workload) (Sample, error) {
	bin, err := lookTool("flatpak")
	if err != nil {
		return Sample{}, err
	}
	parts := strings.Split(r.cfg.Ref, "/")
	if len(parts) != 4 || (parts[0] != "app" && parts[0] != "runtime") {
		return Sample{}, fmt.Errorf("%w: flatpak installs app/ and runtime/ refs only, not %s", errPeerMissing, r.cfg.Ref)
	}
	home := filepath.Join(dir, "home")
	for _, d := range []string{home, filepath.Join(dir, "user"), filepath.Join(dir, "system"), filepath.Join(dir, "run")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return Sample{}, err
		}
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "XDG_RUNTIME_DIR=" + filepath.Join(dir, "run"),
		"FLATPAK_USER_DIR=" + filepath.Join(dir, "user"), "FLATPAK_SYSTEM_DIR=" + filepath.Join(dir, "system"),
		"FLATPAK_SYSTEM_HELPER_ON_SESSION=1", "DBUS_SESSION_BUS_ADDRESS=disabled:", "LC_ALL=C.UTF-8"}
	var sm Sample
	r.srv.Reset()
	t0 := time.Now()
	if err := tool(ctx, env, &sm.PeakRSS, bin, "remote-add", "--user", "--no-gpg-verify", remoteName, r.srv.URL()); err != nil {
		return Sample{}, err
	}
	if err := tool(ctx, env, &sm.PeakRSS, bin, "install", "--user", "-y", "--noninteractive", remoteName, r.cfg.Ref); err != nil {
		return Sample{}, err
	}
	sm.Mount = time.Since(t0).Seconds()
	root := filepath.Join(dir, "user", parts[0], parts[1], parts[2], parts[3], "active")
	tm, err := w.run(ctx, root, t0)
	if err != nil {
		return Sample{}, fmt.Errorf("%s on the flatpak installation: %w", w.Name, err)
	}
	sm.FirstByte, sm.Done = tm.first.Seconds(), tm.done.Seconds()
	r.server(&sm)
	return sm, nil
}

var _ io.Writer = (*daemon)(nil)
