// Package servicecmd is the command line every zonetoll service shares: `<service> run` loads the
// ZONETOLL_* settings, builds the logger, the metrics registry and the HTTP server, then runs the service
// until SIGTERM or SIGINT; `<service> version` prints the build. A service's main.go is a few lines that
// hand its Config type and Run function to Main.
package servicecmd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/urfave/cli/v2"
	"k8s.io/klog/v2"

	"github.com/zonetoll/zonetoll/shared/buildinfo"
	"github.com/zonetoll/zonetoll/shared/config"
	"github.com/zonetoll/zonetoll/shared/httpserver"
	"github.com/zonetoll/zonetoll/shared/logging"
)

// Exit codes of Main.
const (
	ExitOK      = 0
	ExitFailure = 1 // the service failed while running
	ExitUsage   = 2 // bad settings or arguments: nothing was started
)

var klogOnce sync.Once

// Common holds the settings every long-running service has. Embed it (anonymously) in a service's
// Config: its variables are ZONETOLL_LOG_* and ZONETOLL_HTTP_*.
type Common struct {
	Log  logging.Config
	HTTP httpserver.Config
}

func (c *Common) common() *Common { return c }

// Configurer is satisfied by every struct that embeds Common.
type Configurer interface{ common() *Common }

// Env is what the service's Run gets besides its settings.
type Env struct {
	Info     buildinfo.Info
	Logger   *slog.Logger
	Registry *prometheus.Registry // register the service's metrics here; it is what /metrics serves
	Server   *httpserver.Server   // listening already; add routes and checks, Main serves it
	// Kubeconfig is the --kubeconfig flag (or KUBECONFIG); empty means the in-cluster configuration.
	Kubeconfig string
	// Started tells /readyz that the service has finished setting up (its own readiness checks are
	// registered). Until Run calls it, /readyz fails with "starting up": the HTTP server answers from the
	// first moment, before the service could register anything.
	Started func()
}

// Spec describes one service binary.
type Spec[C any] struct {
	Name  string // the service name: binary, metrics label, log field
	Usage string // one line for --help
	// Run runs the service until ctx is done, then stops its work and returns. It must return within the
	// HTTP shutdown timeout after ctx is done (with ServeThroughShutdown: within the pod's termination
	// grace). A returned error stops the process with exit code 1.
	Run func(ctx context.Context, cfg *C, env Env) error
	// Kubernetes adds --kubeconfig to `run` and sends client-go's klog output to the service's logger.
	Kubernetes bool
	// ServeThroughShutdown keeps the HTTP server (/metrics, /healthz, the service's routes) serving
	// after SIGTERM until Run returns, instead of shutting it down at once: Run then owns the order of
	// its shutdown (the flowserver stops taking reports, saves its state, and serves a last scrape).
	// Run should fail /readyz itself when it begins, and its whole shutdown must fit the pod's
	// terminationGracePeriodSeconds.
	ServeThroughShutdown bool
	// Commands are further one-shot subcommands (costcalc's estimate and report).
	Commands []*cli.Command
	// Stdout and Stderr default to the process's; tests set them.
	Stdout, Stderr io.Writer
}

// Main runs the command line and returns the process exit code.
func Main[C any, PC interface {
	*C
	Configurer
}](ctx context.Context, spec Spec[C], args []string) int {
	app := App[C, PC](spec)
	if err := app.RunContext(ctx, args); err != nil {
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			fmt.Fprintf(app.ErrWriter, "%s: %v\n", spec.Name, err)
			return ec.ExitCode()
		}
		fmt.Fprintf(app.ErrWriter, "%s: %v\n", spec.Name, err)
		return ExitFailure
	}
	return ExitOK
}

// App builds the urfave/cli application of spec.
func App[C any, PC interface {
	*C
	Configurer
}](spec Spec[C]) *cli.App {
	stdout, stderr := spec.Stdout, spec.Stderr
	if stdout == nil {
		stdout = os.Stdout
	}
	if stderr == nil {
		stderr = os.Stderr
	}
	info := buildinfo.Get(spec.Name)
	var usage bytes.Buffer
	usage.WriteString("Settings are read from the environment (see docs/configuration.md):\n\n")
	if err := config.WriteUsage(&usage, PC(new(C))); err != nil {
		// The config type is fixed at compile time; a struct envconfig cannot walk is a programming error.
		panic(fmt.Sprintf("servicecmd: %s: %v", spec.Name, err))
	}
	run := &cli.Command{
		Name:        "run",
		Usage:       "run the " + spec.Name + " service until SIGTERM or SIGINT",
		Description: usage.String(),
		Action: func(c *cli.Context) error {
			return runService[C, PC](c.Context, spec, info, c.String("kubeconfig"), stderr)
		},
	}
	if spec.Kubernetes {
		run.Flags = append(run.Flags, &cli.StringFlag{
			Name:    "kubeconfig",
			Usage:   "kubeconfig file (or list of files) to reach the API server; empty means in-cluster",
			EnvVars: []string{"KUBECONFIG"},
		})
	}
	version := &cli.Command{
		Name:  "version",
		Usage: "print the version and build of this binary",
		Action: func(c *cli.Context) error {
			_, err := fmt.Fprintln(c.App.Writer, info.String())
			return err
		},
	}
	settings := &cli.Command{
		Name:  "settings",
		Usage: "print every ZONETOLL_* setting of run with its default (--markdown for docs)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "markdown", Usage: "write a Markdown table"},
			&cli.StringFlag{Name: "output", Usage: "write to this file instead of standard output"},
		},
		Action: func(c *cli.Context) error {
			w := c.App.Writer
			if path := c.String("output"); path != "" {
				f, err := os.Create(path)
				if err != nil {
					return fmt.Errorf("writing settings: %w", err)
				}
				defer f.Close()
				w = f
			}
			if c.Bool("markdown") {
				fmt.Fprintf(w, "<!-- Code generated by `%s settings --markdown`; DO NOT EDIT. -->\n# %s settings\n\n%s\n\n", spec.Name, spec.Name, spec.Usage)
				return config.WriteMarkdown(w, PC(new(C)))
			}
			return config.WriteUsage(w, PC(new(C)))
		},
	}
	return &cli.App{
		Name:                 spec.Name,
		Usage:                spec.Usage,
		Version:              info.Version,
		HideVersion:          true,
		Commands:             append([]*cli.Command{run, version, settings}, spec.Commands...),
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: false,
		ExitErrHandler:       func(*cli.Context, error) {}, // Main prints and exits; never os.Exit inside
	}
}

func runService[C any, PC interface {
	*C
	Configurer
}](ctx context.Context, spec Spec[C], info buildinfo.Info, kubeconfig string, stderr io.Writer) error {
	cfg := PC(new(C))
	unknown, err := config.Load(cfg)
	if err != nil {
		return cli.Exit(err, ExitUsage)
	}
	common := cfg.common()
	log, err := logging.New(stderr, common.Log, spec.Name)
	if err != nil {
		return cli.Exit(err, ExitUsage)
	}
	for _, key := range unknown {
		log.Warn("ignoring unknown setting; check its spelling", "variable", key)
	}
	if spec.Kubernetes {
		// klog's logger is process-global and not safe to replace while client-go reads it: set it once.
		// A binary runs one service; only tests run several in one process, and they share the first.
		klogOnce.Do(func() { klog.SetSlogLogger(log.With("component", "client-go")) })
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), info.Collector())
	srv, err := httpserver.New(common.HTTP, reg, log)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return cli.Exit(err, ExitFailure)
	}
	log.Info("starting", "version", info.Version, "revision", info.Revision, "goversion", info.GoVersion)

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var started atomic.Bool
	srv.AddReadinessCheck("started", func(context.Context) error {
		if !started.Load() {
			return errors.New("starting up")
		}
		return nil
	})
	env := Env{Info: info, Logger: log, Registry: reg, Server: srv, Kubeconfig: kubeconfig, Started: func() { started.Store(true) }}
	serveCtx, stopServing := ctx, cancel
	if spec.ServeThroughShutdown {
		// Ended when Run returns (or fails), not by the signal.
		serveCtx, stopServing = context.WithCancel(context.WithoutCancel(ctx))
		defer stopServing()
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(serveCtx) }()
	runErr := make(chan error, 1)
	go func() { runErr <- spec.Run(ctx, (*C)(cfg), env) }()

	var errs []error
	select {
	case err := <-runErr:
		if err != nil {
			errs = append(errs, fmt.Errorf("running %s: %w", spec.Name, err))
		}
		cancel()
		stopServing()
		if err := <-serveErr; err != nil {
			errs = append(errs, err)
		}
	case err := <-serveErr:
		if err != nil {
			errs = append(errs, err)
		}
		cancel()
		// The service's own shutdown gets the same deadline as in-flight HTTP requests.
		select {
		case err := <-runErr:
			if err != nil {
				errs = append(errs, fmt.Errorf("running %s: %w", spec.Name, err))
			}
		case <-time.After(common.HTTP.ShutdownTimeout):
			errs = append(errs, fmt.Errorf("%s did not stop within %s of shutdown", spec.Name, common.HTTP.ShutdownTimeout))
		}
	}
	if err := errors.Join(errs...); err != nil {
		log.Error("stopped with an error", "error", err)
		return cli.Exit(err, ExitFailure)
	}
	log.Info("stopped")
	return nil
}
