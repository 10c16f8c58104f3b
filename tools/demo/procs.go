package demo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zonetoll/zonetoll/testkit/servicebuild"
)

// BuildServices builds every service from repo into binDir as `make build` and the images do
// (servicebuild.Build), printing a line per binary. Go's build cache makes a rebuild of an unchanged
// tree take seconds. Outside a git checkout the binaries say version dev.
func BuildServices(ctx context.Context, repo, binDir string, progress io.Writer) error {
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", binDir, err)
	}
	opts := servicebuild.Options{RepoRoot: repo, Version: "dev", Revision: "unknown"}
	if version, revision, err := servicebuild.GitStamp(ctx, repo); err == nil {
		opts.Version, opts.Revision = version, revision
	}
	for _, name := range servicebuild.Names() {
		fmt.Fprintf(progress, "building %s\n", name)
		done := stillRunning(progress, "building "+name)
		_, err := servicebuild.Build(ctx, opts, name, binDir)
		done()
		if err != nil {
			return err
		}
	}
	return nil
}

// stillRunning prints "still <what>" every 15 s until the returned function is called.
func stillRunning(w io.Writer, what string) func() {
	stop := make(chan struct{})
	exited := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(exited)
		t := time.NewTicker(15 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				fmt.Fprintf(w, "  still %s (%s)\n", what, time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() { close(stop); <-exited }
}

// lockedWriter serialises writes from the demo's goroutines (progress lines come from several).
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// childEnv is the demo's environment without ZONETOLL_* variables: each service gets exactly the
// settings the demo gives it (a stray ZONETOLL_ZONE in the user's shell would change a flowserver).
func childEnv(extra []string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ZONETOLL_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// Proc is one service process: started with its environment, logged to a file, stopped by its PID.
type Proc struct {
	Name string
	Bin  string
	Args []string
	Env  []string
	Log  string // path of its log file
	Addr string // host:port of its HTTP server
	// Client, if set, is the HTTPS client for a process that serves HTTPS (the flowservers); nil means
	// plain HTTP.
	Client *http.Client
	// ReadyPath answers 200 once the process is ready; empty means /readyz.
	ReadyPath string
	cmd       *exec.Cmd
	exited    chan struct{}
	Starts    int
	lastPID   int
}

// Start runs the process (its own process group, SIGKILL if the demo dies) and waits until /readyz
// answers 200, or the process exits, or ctx ends.
func (p *Proc) Start(ctx context.Context) error {
	logf, err := os.OpenFile(p.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening log of %s: %w", p.Name, err)
	}
	fmt.Fprintf(logf, "----- start %d of %s at %s\n", p.Starts+1, p.Name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Env = childEnv(p.Env)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", p.Name, err)
	}
	logf.Close()
	p.cmd, p.exited, p.lastPID = cmd, make(chan struct{}), cmd.Process.Pid
	p.Starts++
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(cmd, p.exited)
	return p.waitReady(ctx)
}

// URL is the address of path on the process's HTTP(S) server.
func (p *Proc) URL(path string) string {
	if p.Client != nil {
		return "https://" + p.Addr + path
	}
	return "http://" + p.Addr + path
}

// PID is the process id of the running (or last) process.
func (p *Proc) PID() int { return p.lastPID }

func (p *Proc) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	if p.Client != nil {
		client = &http.Client{Transport: p.Client.Transport, Timeout: 2 * time.Second}
	}
	path := p.ReadyPath
	if path == "" {
		path = "/readyz"
	}
	last := ""
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited at start (log %s):\n%s", p.Name, p.Log, tailFile(p.Log, 30))
		case <-ctx.Done():
			return fmt.Errorf("%s not ready (%s; log %s):\n%s", p.Name, last, p.Log, tailFile(p.Log, 30))
		case <-time.After(100 * time.Millisecond):
		}
		resp, err := client.Get(p.URL(path))
		if err != nil {
			last = err.Error()
			continue
		}
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		last = resp.Status
	}
}

// Stop sends SIGTERM to the process's PID, waits (SIGKILL after 30 s) and returns its exit code.
func (p *Proc) Stop() int {
	if p.cmd == nil {
		return 0
	}
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	code := p.cmd.ProcessState.ExitCode()
	p.cmd = nil
	return code
}

// Kill ends the process with SIGKILL and waits for it.
func (p *Proc) Kill() error {
	if p.cmd == nil {
		return fmt.Errorf("%s is not running", p.Name)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("killing %s: %w", p.Name, err)
	}
	<-p.exited
	p.cmd = nil
	return nil
}

// Running reports whether the process is alive.
func (p *Proc) Running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
