package spool

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/zonetoll/zonetoll/services/flowagent/internal/reporttest"
	"github.com/zonetoll/zonetoll/shared/report"
)

// oneSize is the encoded size of one testReport with a three-digit byte count.
func oneSize(t *testing.T) int64 {
	t.Helper()
	s, err := New(Config{Bytes: 1 << 20}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Add(reporttest.Report(1, 100)); err != nil {
		t.Fatal(err)
	}
	return s.Bytes()
}

func seqs(s *Spool) []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []uint64
	for _, e := range s.queue {
		out = append(out, e.Seq)
	}
	return out
}

func dropped(s *Spool, reason string) float64 {
	return testutil.ToFloat64(s.m.dropped.WithLabelValues(reason))
}

// checkGauges asserts that the gauges show what the spool holds, within its bound.
func checkGauges(t *testing.T, s *Spool) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var held int64
	for _, e := range s.queue {
		held += int64(len(e.Body))
	}
	if held != s.bytes || held > s.cfg.Bytes {
		t.Errorf("spool counts %d bytes, holds %d, bound %d", s.bytes, held, s.cfg.Bytes)
	}
	if got := testutil.ToFloat64(s.m.spoolBytes); got != float64(held) {
		t.Errorf("spool_bytes = %v, want %d", got, held)
	}
	if got := testutil.ToFloat64(s.m.spoolReports); got != float64(len(s.queue)) {
		t.Errorf("spool_reports = %v, want %d", got, len(s.queue))
	}
}

func TestNewRejectsNoBound(t *testing.T) {
	for _, b := range []int64{0, -1} {
		if _, err := New(Config{Bytes: b}, prometheus.NewRegistry(), nil); err == nil {
			t.Errorf("New with bound %d: no error", b)
		}
	}
}

// TestBound: the bound keeps the newest reports and counts the traffic of those it dropped, also when
// a report taken out for an attempt comes back into a spool that filled meanwhile.
func TestBound(t *testing.T) {
	size := oneSize(t)
	tests := []struct {
		name        string
		fits        int64    // reports the bound holds
		add         []uint64 // sequences added in order (traffic 100+seq)
		takeBefore  int      // reports taken out after the first add, returned after the rest
		wantSeqs    []uint64
		wantDropped float64
	}{
		{"under the bound", 3, []uint64{1, 2}, 0, []uint64{1, 2}, 0},
		{"at the bound", 3, []uint64{1, 2, 3}, 0, []uint64{1, 2, 3}, 0},
		{"oldest go first", 3, []uint64{1, 2, 3, 4, 5, 6}, 0, []uint64{4, 5, 6}, 101 + 102 + 103},
		{"a bound below one report keeps none", 0, []uint64{1, 2}, 0, nil, 101 + 102},
		{"taken is not dropped while out", 2, []uint64{1, 2, 3}, 1, []uint64{2, 3}, 101},
		{"returned into a spool with room", 3, []uint64{1, 2, 3}, 1, []uint64{1, 2, 3}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Config{Bytes: tt.fits*size + size/2}, prometheus.NewRegistry(), nil)
			if err != nil {
				t.Fatal(err)
			}
			var out []*Entry
			for i, seq := range tt.add {
				if err := s.Add(reporttest.Report(seq, 100+seq)); err != nil {
					t.Fatal(err)
				}
				if i == 0 {
					for range tt.takeBefore {
						out = append(out, s.Take())
					}
				}
			}
			for _, e := range slices.Backward(out) {
				s.Return(e)
			}
			if got := seqs(s); !slices.Equal(got, tt.wantSeqs) {
				t.Errorf("spool holds %v, want %v", got, tt.wantSeqs)
			}
			if got := dropped(s, ReasonSpoolFull); got != tt.wantDropped {
				t.Errorf("dropped bytes (spool_full) = %v, want %v", got, tt.wantDropped)
			}
			checkGauges(t, s)
		})
	}
}

// TestEndings: each way a taken report ends, and what it counts.
func TestEndings(t *testing.T) {
	tests := []struct {
		name     string
		dir      bool
		end      func(t *testing.T, s *Spool, e *Entry)
		wantLeft []uint64 // sequences in the spool afterwards
		wantFile bool     // the taken report's file is still there
		dropped  map[string]float64
	}{
		{"done", false, func(t *testing.T, s *Spool, e *Entry) { s.Done(e) }, []uint64{2}, false, nil},
		{"done with files", true, func(t *testing.T, s *Spool, e *Entry) { s.Done(e) }, []uint64{2}, false, nil},
		{"rejected", true, func(t *testing.T, s *Spool, e *Entry) { s.Drop(e, ReasonRejected) }, []uint64{2}, false, map[string]float64{ReasonRejected: 11}},
		{"returned", true, func(t *testing.T, s *Spool, e *Entry) { s.Return(e) }, []uint64{1, 2}, true, nil},
		{"returned, then all dropped at shutdown", false, func(t *testing.T, s *Spool, e *Entry) {
			s.Return(e)
			if n, traffic, kept := s.DropAll(); n != 2 || traffic != 11+12 || kept {
				t.Errorf("DropAll without a directory = %d reports, %d bytes, kept %v; want 2, 23, false", n, traffic, kept)
			}
		}, nil, false, map[string]float64{ReasonShutdown: 11 + 12}},
		{"returned, files kept at shutdown", true, func(t *testing.T, s *Spool, e *Entry) {
			s.Return(e)
			if n, traffic, kept := s.DropAll(); n != 2 || traffic != 0 || !kept {
				t.Errorf("DropAll with a directory = %d reports, %d bytes, kept %v; want 2, 0, true", n, traffic, kept)
			}
		}, []uint64{1, 2}, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Bytes: 1 << 20}
			if tt.dir {
				cfg.Dir = t.TempDir()
			}
			s, err := New(cfg, prometheus.NewRegistry(), nil)
			if err != nil {
				t.Fatal(err)
			}
			for seq := uint64(1); seq <= 2; seq++ {
				if err := s.Add(reporttest.Report(seq, 10+seq)); err != nil {
					t.Fatal(err)
				}
			}
			e := s.Take()
			if e == nil || e.Seq != 1 || e.Traffic != 11 {
				t.Fatalf("Take gave %+v, want the oldest, report 1 with 11 bytes", e)
			}
			file := e.file
			if tt.dir && file == "" {
				t.Fatal("no file for a report in a directory spool")
			}
			tt.end(t, s, e)
			if got := seqs(s); !slices.Equal(got, tt.wantLeft) {
				t.Errorf("spool holds %v, want %v", got, tt.wantLeft)
			}
			if tt.dir {
				_, err := os.Stat(file)
				if exists := err == nil; exists != tt.wantFile {
					t.Errorf("file of the taken report exists = %v, want %v", exists, tt.wantFile)
				}
			}
			for _, r := range []string{ReasonSpoolFull, ReasonRejected, ReasonShutdown} {
				if got := dropped(s, r); got != tt.dropped[r] {
					t.Errorf("dropped bytes (%s) = %v, want %v", r, got, tt.dropped[r])
				}
			}
			checkGauges(t, s)
		})
	}
}

func TestAddUnencodableCountsRejected(t *testing.T) {
	s, err := New(Config{Bytes: 1 << 20}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r := reporttest.Report(1, 42)
	r.BootID = [16]byte{} // the wire format refuses an all-zero boot id
	if err := s.Add(r); !errors.Is(err, report.ErrInvalid) {
		t.Errorf("Add of an invalid report: %v, want report.ErrInvalid", err)
	}
	if got := dropped(s, ReasonRejected); got != 42 {
		t.Errorf("dropped bytes (rejected) = %v, want 42", got)
	}
	if s.Len() != 0 {
		t.Errorf("%d reports spooled, want none", s.Len())
	}
}

// TestAddedWakes: an Add signals a waiting sender, and signals pile up into one.
func TestAddedWakes(t *testing.T) {
	s, err := New(Config{Bytes: 1 << 20}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Added():
		t.Fatal("signal before any Add")
	default:
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if err := s.Add(reporttest.Report(seq, 1)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-s.Added():
	default:
		t.Fatal("no signal after Add")
	}
	select {
	case <-s.Added():
		t.Fatal("a second signal for Adds nobody waited between")
	default:
	}
}

// TestDirectoryLoad: a new spool over a directory resumes what an earlier process left, oldest first,
// with the original identity, under its own bound, and cleans up what is not a whole report.
func TestDirectoryLoad(t *testing.T) {
	size := oneSize(t)
	tests := []struct {
		name        string
		fits        int64
		junk        map[string]string // extra files: name -> content
		wantSeqs    []uint64
		wantDropped float64
		wantFiles   int // files left in the directory
	}{
		{"all four", 10, nil, []uint64{1, 2, 3, 4}, 0, 4},
		{"bound on load keeps the newest", 2, nil, []uint64{3, 4}, 101 + 102, 2},
		{"half-written and corrupt files go", 10, map[string]string{
			".00-x.report.gz.tmp":                "half",
			"99999999999999999999-bad.report.gz": "not gzip",
		}, []uint64{1, 2, 3, 4}, 0, 4},
		{"other files stay", 10, map[string]string{"README": "kept"}, []uint64{1, 2, 3, 4}, 0, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			first, err := New(Config{Bytes: 1 << 20, Dir: dir}, prometheus.NewRegistry(), nil)
			if err != nil {
				t.Fatal(err)
			}
			for seq := uint64(1); seq <= 4; seq++ {
				if err := first.Add(reporttest.Report(seq, 100+seq)); err != nil {
					t.Fatal(err)
				}
			}
			for name, content := range tt.junk {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			second, err := New(Config{Bytes: tt.fits*size + size/2, Dir: dir}, prometheus.NewRegistry(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := seqs(second); !slices.Equal(got, tt.wantSeqs) {
				t.Errorf("resumed %v, want %v", got, tt.wantSeqs)
			}
			for _, e := range second.queue {
				if e.Node != "node-a" || e.BootID != reporttest.Boot || e.Traffic != 100+e.Seq {
					t.Errorf("resumed report %d as node %q boot %x traffic %d: identity or traffic lost", e.Seq, e.Node, e.BootID, e.Traffic)
				}
			}
			if got := dropped(second, ReasonSpoolFull); got != tt.wantDropped {
				t.Errorf("dropped bytes (spool_full) = %v, want %v", got, tt.wantDropped)
			}
			left, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(left) != tt.wantFiles {
				var names []string
				for _, d := range left {
					names = append(names, d.Name())
				}
				t.Errorf("directory holds %s, want %d files", strings.Join(names, " "), tt.wantFiles)
			}
			checkGauges(t, second)
		})
	}
}

// TestDirectoryUnwritable: a spool whose directory cannot take a file still keeps the report in memory.
func TestDirectoryUnwritable(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Config{Bytes: 1 << 20, Dir: dir}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Removing the directory makes every write fail, also for root (chmod would not).
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(reporttest.Report(1, 5)); err != nil {
		t.Fatalf("Add with an unwritable directory: %v", err)
	}
	e := s.Take()
	if e == nil || e.file != "" {
		t.Fatalf("Take gave %+v, want report 1 held in memory only", e)
	}
	s.Done(e)
}

// TestDirectoryLoadKeepsSequenceOrder: the wall clock stepped back while a process spooled (its file
// names, which begin with the time, sort its later reports first). The next process must still send
// each boot's reports in sequence order: the server keeps the highest sequence applied per (node,
// boot) and answers every lower one as a duplicate, so a later report sent first would make the
// earlier ones count for nothing.
func TestDirectoryLoadKeepsSequenceOrder(t *testing.T) {
	dir := t.TempDir()
	first, err := New(Config{Bytes: 1 << 20, Dir: dir}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	other := [16]byte{9}
	add := func(boot [16]byte, seq uint64) {
		r := reporttest.Report(seq, 100+seq)
		r.BootID = boot
		if err := first.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	// An earlier boot's reports (left by the process before), then this boot's.
	add(other, 7)
	add(other, 8)
	for seq := uint64(1); seq <= 4; seq++ {
		add(reporttest.Boot, seq)
	}
	// The clock stepped back before this boot's 3 and 4 were spooled: give them earlier times than
	// 1 and 2, as the names would have had.
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := f.Name()
		_, rest, _ := strings.Cut(name, "-")
		var prefix string
		switch {
		case strings.HasSuffix(rest, "-00000000000000000003"+fileSuffix):
			prefix = "00000000000000000001"
		case strings.HasSuffix(rest, "-00000000000000000004"+fileSuffix):
			prefix = "00000000000000000002"
		default:
			continue
		}
		if strings.HasPrefix(rest, "090000") { // the other boot keeps its names
			continue
		}
		if err := os.Rename(filepath.Join(dir, name), filepath.Join(dir, prefix+"-"+rest)); err != nil {
			t.Fatal(err)
		}
	}
	second, err := New(Config{Bytes: 1 << 20, Dir: dir}, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	perBoot := map[[16]byte][]uint64{}
	for e := second.Take(); e != nil; e = second.Take() {
		perBoot[e.BootID] = append(perBoot[e.BootID], e.Seq)
		second.Done(e)
	}
	if got := perBoot[reporttest.Boot]; !slices.Equal(got, []uint64{1, 2, 3, 4}) {
		t.Errorf("this boot's reports resumed as %v, want [1 2 3 4]", got)
	}
	if got := perBoot[other]; !slices.Equal(got, []uint64{7, 8}) {
		t.Errorf("the earlier boot's reports resumed as %v, want [7 8]", got)
	}
}
