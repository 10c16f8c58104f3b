package process

import (
	"context"
	"os/exec"
	"strings"
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
