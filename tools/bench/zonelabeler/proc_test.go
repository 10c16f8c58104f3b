package zonelabeler

import (
	"os"
	"testing"
)

func TestStatusKiB(t *testing.T) {
	const status = "Name:\tzonelabeler\nVmPeak:\t 1300000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nRssAnon:\t    8192 kB\nRssFile:\t   32768 kB\nThreads:\t9\n"
	tests := []struct {
		key     string
		want    uint64
		wantErr bool
	}{
		{"VmHWM", 50 << 20, false},
		{"VmRSS", 40 << 20, false},
		{"RssFile", 32 << 20, false},
		{"Threads", 0, true}, // no kB unit
		{"VmSwap", 0, true},  // absent
	}
	for _, tt := range tests {
		got, err := statusKiB(status, tt.key)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("statusKiB(%s) = %d, %v; want %d, error %v", tt.key, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCPUTicks(t *testing.T) {
	tests := []struct {
		name    string
		stat    string
		want    uint64
		wantErr bool
	}{
		{"plain", "4242 (zonelabeler) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 37 0 0 20 0 9 0", 187, false},
		{"name with spaces and parens", "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0", 11, false},
		{"truncated", "7 (x) R 1 2", 0, true},
		{"no name", "garbage", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := cpuTicks(tt.stat)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("cpuTicks = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestReadUsageSelf reads this test process, which certainly has resident memory and has used CPU.
func TestReadUsageSelf(t *testing.T) {
	buf := make([]byte, 8<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	u, err := readUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.PeakRSS < 8<<20 || u.RSS == 0 || u.PeakRSS < u.RSS {
		t.Errorf("implausible memory: peak %d, current %d bytes after touching 8 MiB", u.PeakRSS, u.RSS)
	}
	// The 8 MiB buffer is anonymous memory; the test binary's own pages are file-backed.
	if u.RSSAnon < 8<<20 || u.RSSFile == 0 || u.RSSAnon+u.RSSFile > u.RSS {
		t.Errorf("implausible split: anon %d, file %d, total %d bytes", u.RSSAnon, u.RSSFile, u.RSS)
	}
	if u.CPUSeconds < 0 {
		t.Errorf("negative CPU time %v", u.CPUSeconds)
	}
	_ = buf[len(buf)-1]
	if _, err := readUsage(-1); err == nil {
		t.Error("readUsage of a process that cannot exist succeeded")
	}
}
