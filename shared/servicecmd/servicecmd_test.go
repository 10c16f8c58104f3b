package servicecmd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/testkit/metricstest"
)

type testConfig struct {
	Common
	Workers int `default:"2" desc:"Worker goroutines."`
}

// testSpec is a service whose Run reports its address on addrs and, on shutdown, takes stopDelay.
func testSpec(addrs chan<- string, out io.Writer) Spec[testConfig] {
	return Spec[testConfig]{
		Name:  "testsvc",
		Usage: "a service for tests",
		Run: func(ctx context.Context, cfg *testConfig, env Env) error {
			env.Server.AddReadinessCheck("workers", func(context.Context) error { return nil })
			if addrs != nil {
				// Before Started, /readyz must say the service is still starting.
				resp, err := http.Get("http://" + env.Server.Addr().String() + "/readyz")
				if err != nil {
					return err
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "[-]started failed: starting up") {
					return fmt.Errorf("/readyz before Started = %d %q, want 503 starting up", resp.StatusCode, body)
				}
			}
			env.Started()
			env.Logger.Info("running", "workers", cfg.Workers)
			if addrs != nil {
				addrs <- env.Server.Addr().String()
			}
			<-ctx.Done()
			return nil
		},
		Stdout: out,
		Stderr: out,
	}
}

func TestRunServesUntilCancelled(t *testing.T) {
	t.Setenv("ZONETOLL_HTTP_LISTEN_ADDRESS", "127.0.0.1:0")
	t.Setenv("ZONETOLL_LOG_FORMAT", "text")
	var out bytes.Buffer
	addrs := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() { code <- Main(ctx, testSpec(addrs, &out), []string{"testsvc", "run"}) }()
	var addr string
	select {
	case addr = <-addrs:
	case c := <-code:
		t.Fatalf("exited %d before serving: %s", c, out.String())
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s = %d %s", path, resp.StatusCode, body)
		}
	}
	fams := metricstest.Scrape(t, "http://"+addr+"/metrics")
	if v, ok := fams.Value("zonetoll_build_info", map[string]string{"service": "testsvc"}); !ok || v != 1 {
		t.Errorf("zonetoll_build_info{service=testsvc} = %v %v", v, ok)
	}
	cancel()
	if c := <-code; c != ExitOK {
		t.Fatalf("exit code %d after cancel, want 0; output:\n%s", c, out.String())
	}
	if !strings.Contains(out.String(), "workers=2") || !strings.Contains(out.String(), "msg=stopped") {
		t.Errorf("log lacks the service's lines:\n%s", out.String())
	}
}

func TestRunRejectsBadSettings(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"ZONETOLL_WORKERS": "lots"}, `invalid setting ZONETOLL_WORKERS="lots": expected an integer`},
		{map[string]string{"ZONETOLL_LOG_LEVEL": "chatty"}, `invalid setting ZONETOLL_LOG_LEVEL="chatty": expected one of debug, info, warn, error`},
		{map[string]string{"ZONETOLL_HTTP_SHUTDOWN_TIMEOUT": "soon"}, `invalid setting ZONETOLL_HTTP_SHUTDOWN_TIMEOUT="soon": expected a duration`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			if code := Main(context.Background(), testSpec(nil, &out), []string{"testsvc", "run"}); code != ExitUsage {
				t.Errorf("exit code = %d, want %d", code, ExitUsage)
			}
			if !strings.Contains(out.String(), tt.want) {
				t.Errorf("output %q lacks %q", out.String(), tt.want)
			}
		})
	}
}

func TestRunHelpListsEverySetting(t *testing.T) {
	var out bytes.Buffer
	if code := Main(context.Background(), testSpec(nil, &out), []string{"testsvc", "run", "--help"}); code != ExitOK {
		t.Fatalf("exit %d: %s", code, out.String())
	}
	for _, want := range []string{"ZONETOLL_WORKERS", "Worker goroutines.", "ZONETOLL_LOG_LEVEL", "ZONETOLL_HTTP_LISTEN_ADDRESS", ":8080", "ZONETOLL_HTTP_SHUTDOWN_TIMEOUT", "20s"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("run --help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if code := Main(context.Background(), testSpec(nil, &out), []string{"testsvc", "version"}); code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	if !strings.HasPrefix(out.String(), "testsvc dev (revision ") {
		t.Errorf("version = %q", out.String())
	}
}

// TestSIGTERM runs the service as a real child process (this test binary re-executed) and stops it with
// SIGTERM, as the kubelet does.
func TestSIGTERM(t *testing.T) {
	if os.Getenv("SERVICECMD_CHILD") == "1" {
		os.Exit(Main(context.Background(), testSpec(nil, nil), []string{"testsvc", "run"}))
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSIGTERM$")
	cmd.Env = append(os.Environ(), "SERVICECMD_CHILD=1", "ZONETOLL_HTTP_LISTEN_ADDRESS=127.0.0.1:0", "ZONETOLL_LOG_FORMAT=text")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	lines := bufio.NewScanner(stderr)
	var log strings.Builder
	for lines.Scan() {
		log.WriteString(lines.Text() + "\n")
		if strings.Contains(lines.Text(), "msg=running") {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for lines.Scan() {
			log.WriteString(lines.Text() + "\n")
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("child exited with %v after SIGTERM; log:\n%s", err, log.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("child still running 30s after SIGTERM; log:\n%s", log.String())
	}
	if !strings.Contains(log.String(), "msg=stopped") {
		t.Errorf("child log lacks a clean stop:\n%s", log.String())
	}
}

// TestServeThroughShutdown: with ServeThroughShutdown, the HTTP server keeps answering after the
// service's context ends, until Run returns (without it, it shuts down at once and the later GETs
// fail: checked by hand when written).
func TestServeThroughShutdown(t *testing.T) {
	t.Setenv("ZONETOLL_HTTP_LISTEN_ADDRESS", "127.0.0.1:0")
	var out bytes.Buffer
	afterCancel := make(chan error, 1)
	spec := Spec[testConfig]{
		Name: "testsvc", Stdout: &out, Stderr: &out, ServeThroughShutdown: true,
		Run: func(ctx context.Context, cfg *testConfig, env Env) error {
			env.Started()
			<-ctx.Done()
			// What scrapes during the service's own shutdown get.
			var err error
			for range 10 {
				time.Sleep(20 * time.Millisecond)
				var resp *http.Response
				if resp, err = http.Get("http://" + env.Server.Addr().String() + "/healthz"); err != nil {
					break
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("/healthz = %d", resp.StatusCode)
					break
				}
			}
			afterCancel <- err
			return nil
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() { code <- Main(ctx, spec, []string{"testsvc", "run"}) }()
	time.Sleep(50 * time.Millisecond) // not an assertion: lets Run reach its wait
	cancel()
	if err := <-afterCancel; err != nil {
		t.Errorf("/healthz after the context ended: %v", err)
	}
	if c := <-code; c != ExitOK {
		t.Errorf("exit %d: %s", c, out.String())
	}
}
