// Package servicetest runs a service's real command line in-process for tests: `run` with a given
// environment, on a free loopback port, stopped and checked for a clean exit when the test ends.
// It is imported only by tests.
package servicetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/zonetoll/zonetoll/shared/servicecmd"
	"github.com/zonetoll/zonetoll/testkit/gate"
)

// Service is a running service.
type Service struct {
	URL  string // http://127.0.0.1:port
	stop func() (int, string)
	out  *SyncBuffer
}

// Output is what the service has written so far (its log).
func (s *Service) Output() string { return s.out.String() }

// Stop cancels the service as SIGTERM would and returns its exit code and output.
func (s *Service) Stop() (int, string) { return s.stop() }

// SyncBuffer is a bytes.Buffer safe for one writer and concurrent readers:
// a test reads a process's output while the process still writes it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start runs `<service> run` with env (ZONETOLL_* variables; the listen address is set to a free
// loopback port) and returns once the HTTP server listens. At cleanup the service is stopped and a
// non-zero exit fails the test.
func Start[C any, PC interface {
	*C
	servicecmd.Configurer
}](t gate.TB, spec servicecmd.Spec[C], env map[string]string, args ...string) *Service {
	t.Helper()
	t.Setenv("ZONETOLL_HTTP_LISTEN_ADDRESS", "127.0.0.1:0")
	t.Setenv("ZONETOLL_LOG_FORMAT", "text")
	for k, v := range env {
		t.Setenv(k, v)
	}
	out := &SyncBuffer{}
	spec.Stdout, spec.Stderr = out, out
	addrs := make(chan string, 1)
	run := spec.Run
	spec.Run = func(ctx context.Context, cfg *C, e servicecmd.Env) error {
		addrs <- e.Server.Addr().String()
		return run(ctx, cfg, e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	exit := make(chan int, 1)
	go func() { exit <- servicecmd.Main[C, PC](ctx, spec, append([]string{spec.Name, "run"}, args...)) }()
	var addr string
	select {
	case addr = <-addrs:
	case code := <-exit:
		cancel()
		t.Fatalf("%s exited with %d before serving; output:\n%s", spec.Name, code, out.String())
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("%s did not start serving within 60s; output:\n%s", spec.Name, out.String())
	}
	var once sync.Once
	var code int
	stop := func() (int, string) {
		once.Do(func() {
			cancel()
			select {
			case code = <-exit:
			case <-time.After(60 * time.Second):
				code = -1
				fmt.Fprintf(out, "servicetest: %s did not exit within 60s of cancel\n", spec.Name)
			}
		})
		return code, out.String()
	}
	t.Cleanup(func() {
		if c, output := stop(); c != servicecmd.ExitOK {
			t.Errorf("%s exited with %d; output:\n%s", spec.Name, c, output)
		}
	})
	return &Service{URL: "http://" + addr, stop: stop, out: out}
}

// Run runs the command line of spec with args (what follows the command's name) to its end, as
// `<service> args...` would, and returns its exit code and what it wrote to standard output and error.
func Run[C any, PC interface {
	*C
	servicecmd.Configurer
}](spec servicecmd.Spec[C], args ...string) (int, string) {
	var out bytes.Buffer
	spec.Stdout, spec.Stderr = &out, &out
	code := servicecmd.Main[C, PC](context.Background(), spec, append([]string{spec.Name}, args...))
	return code, out.String()
}

// Help returns the output of `<service> run --help`.
func Help[C any, PC interface {
	*C
	servicecmd.Configurer
}](t gate.TB, spec servicecmd.Spec[C]) string {
	t.Helper()
	code, out := Run[C, PC](spec, "run", "--help")
	if code != servicecmd.ExitOK {
		t.Fatalf("%s run --help exited %d: %s", spec.Name, code, out)
	}
	return out
}

// HelpLists fails t for every variable of want that `run --help` does not list.
func HelpLists[C any, PC interface {
	*C
	servicecmd.Configurer
}](t gate.TB, spec servicecmd.Spec[C], want ...string) {
	t.Helper()
	help := Help[C, PC](t, spec)
	for _, w := range want {
		if !strings.Contains(help, w) {
			t.Errorf("%s run --help lacks %q:\n%s", spec.Name, w, help)
		}
	}
}

// WaitFor polls cond until it holds and fails the test after timeout (0: 60 s), naming what it
// waited for and cond's last description of the state. The deadline catches a hang; it measures
// nothing.
func WaitFor(t gate.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Ready is a WaitFor condition: base's /readyz answers 200. Otherwise it describes the answer.
func Ready(base string) func() (bool, string) {
	return func() (bool, string) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Sprintf("%d %s", resp.StatusCode, body)
	}
}
