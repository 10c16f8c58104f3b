// Package process runs the child processes of tests and benchmarks (Prometheus, vmagent, a service's
// binary): output to a log file, a process group of its own, killed if the parent dies, ready when a
// URL answers 200, stopped with SIGTERM and then SIGKILL after a grace period.
package process

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/zonetoll/zonetoll/testkit/gate"
	"github.com/zonetoll/zonetoll/testkit/modbuild"
)

// Process is a started child process.
type Process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
}

// Launch starts cmd from one OS thread that never ends, for children that ask for a parent-death
// signal: the kernel sends it when the *thread* that forked the child ends, not the process, and Go
// ends a thread when a goroutine locked to it returns without unlocking (shared/netns.Do does so when it
// cannot switch a thread back; bpfbench pins CPUs that way). A child forked from a thread that later
// served such a goroutine would be killed mid-test.
func Launch(cmd *exec.Cmd) error {
	launcherOnce.Do(func() {
		launches = make(chan launchRequest)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread must outlive every child
			for r := range launches {
				r.errc <- r.cmd.Start()
			}
		}()
	})
	errc := make(chan error, 1)
	launches <- launchRequest{cmd: cmd, errc: errc}
	return <-errc
}

type launchRequest struct {
	cmd  *exec.Cmd
	errc chan error
}

var (
	launcherOnce sync.Once
	launches     chan launchRequest
)

// Start starts cmd (through Launch) with its standard output and error appended to logPath, in a
// process group of its own; if the parent dies, cmd dies too.
func Start(name string, cmd *exec.Cmd, logPath string) (*Process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating the log of %s: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := Launch(cmd); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// PID is the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// WaitReady returns once readyURL answers 200, or an error with the log's tail if the process exits or
// ctx ends first.
func (p *Process) WaitReady(ctx context.Context, readyURL string) error {
	for {
		resp, err := http.Get(readyURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", p.name, p.waitErr, p.LogTail(30))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w:\n%s", p.name, readyURL, ctx.Err(), p.LogTail(30))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Name is the name the process was started under, for messages.
func (p *Process) Name() string { return p.name }

// LogPath is the file its standard output and error go to.
func (p *Process) LogPath() string { return p.logPath }

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Running reports whether the process has not ended yet.
func (p *Process) Running() bool {
	done, _ := p.Exited()
	return !done
}

// ExitDescription says how the process ended ("still running" while it runs), for messages.
func (p *Process) ExitDescription() string {
	switch done, err := p.Exited(); {
	case !done:
		return "still running"
	case err == nil:
		return "exited with status 0"
	default:
		return err.Error()
	}
}

// ErrKilled is what Stop returns when the process had to be killed.
var ErrKilled = errors.New("killed after its grace period")

// Stop sends SIGTERM to the process's group, and SIGKILL if the process has not exited after grace
// (an error wrapping ErrKilled then). The whole group, so what the child started itself goes too. A
// process that has exited already is left as it is.
func (p *Process) Stop(grace time.Duration) error {
	if !p.Running() {
		return nil
	}
	pgid := p.PID() // Start made it the leader of its own group
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping %s: %w", p.name, err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing %s: %w", p.name, err)
	}
	<-p.done
	return fmt.Errorf("%s did not stop within %s of SIGTERM: %w", p.name, grace, ErrKilled)
}

// LogTail returns the last n lines of the process' log.
func (p *Process) LogTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	return modbuild.Tail(string(b), n)
}

// StartReady starts cmd for a test and returns once readyURL answers 200. When the test ends, it stops
// cmd (SIGTERM, then SIGKILL after 30 s) and, if the test failed, logs the log's tail. If cmd exits or
// ctx ends first, cmd is stopped and the error says why, with the log's tail.
func StartReady(ctx context.Context, t gate.TB, name string, cmd *exec.Cmd, readyURL string) error {
	t.Helper()
	p, err := Start(name, cmd, filepath.Join(t.TempDir(), "process.log"))
	if err != nil {
		return err
	}
	t.Cleanup(func() {
		p.Stop(30 * time.Second)
		if t.Failed() {
			t.Logf("%s log:\n%s", name, p.LogTail(30))
		}
	})
	if err := p.WaitReady(ctx, readyURL); err != nil {
		p.Stop(30 * time.Second)
		return err
	}
	return nil
}
