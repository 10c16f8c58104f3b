package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/testkit/freeport"
)

// TestStartReadyFailures: a process that never becomes ready is an error saying why, with its log,
// and is not left running.
func TestStartReadyFailures(t *testing.T) {
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cmd     *exec.Cmd
		timeout time.Duration
		want    []string
	}{
		{"exits at start", exec.Command("sh", "-c", "echo no config here; exit 3"), time.Minute,
			[]string{"exits at start exited before it was ready", "exit status 3", "no config here"}},
		{"never ready", exec.Command("sleep", "600"), 500 * time.Millisecond,
			[]string{"never ready not ready at http://" + addr, "context deadline exceeded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			err := StartReady(ctx, t, tt.name, tt.cmd, "http://"+addr+"/-/ready")
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if tt.cmd.ProcessState == nil {
				t.Errorf("%s is still running after StartReady returned", tt.name)
			}
		})
	}
}

// TestStop: SIGTERM goes to the whole group, so what the child started ends with it; a child that
// ignores SIGTERM is killed after its grace, with ErrKilled.
func TestStop(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		wantErr error
	}{
		// The shell waits on a sleep of its own; only a signal to the group ends the sleep too.
		{"group ends", `sleep 600 & echo $! > "$0"; wait`, nil},
		{"SIGTERM ignored", `trap '' TERM; sleep 600 & echo $! > "$0"; wait`, ErrKilled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			pidFile := filepath.Join(dir, "grandchild.pid")
			p, err := Start(tt.name, exec.Command("sh", "-c", tt.script, pidFile), filepath.Join(dir, "log"))
			if err != nil {
				t.Fatal(err)
			}
			grandchild := 0
			for deadline := time.Now().Add(10 * time.Second); grandchild == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
					grandchild, _ = strconv.Atoi(strings.TrimSpace(string(b)))
				}
			}
			if grandchild == 0 {
				t.Fatalf("the child never wrote its sleep's pid (log: %s)", p.LogTail(5))
			}
			if err := p.Stop(500 * time.Millisecond); !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("Stop = %v, want %v", err, tt.wantErr)
			}
			if p.Running() {
				t.Errorf("%s still running after Stop", p.Name())
			}
			// The grandchild is not ours to reap: gone, or a zombie until init reaps it.
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", grandchild))
				if err != nil || strings.Contains(string(stat), ") Z ") {
					break
				}
				if time.Now().After(deadline) {
					_ = syscall.Kill(grandchild, syscall.SIGKILL)
					t.Fatalf("the child's own sleep (pid %d) outlived Stop", grandchild)
				}
			}
		})
	}
}
