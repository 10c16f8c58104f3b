package testcluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/zonetoll/zonetoll/testkit/freeport"
)

// DefaultControllers are the kube-controller-manager controllers a routing
// test needs: the EndpointSlice controller (slices of Services with a
// selector, with zones and hints) and its mirroring twin (slices of
// Services without one, from their Endpoints). Nothing else runs: no garbage
// collector, no namespace or node lifecycle controller, so the cluster stays
// what the tests made it.
var DefaultControllers = []string{"endpointslice-controller", "endpointslice-mirroring-controller"}

// ControllerManagerOptions configures StartControllerManager.
type ControllerManagerOptions struct {
	// Controllers is kube-controller-manager's --controllers list; empty
	// means DefaultControllers.
	Controllers []string
	// ExtraArgs are appended to the defaults (the last of a flag wins).
	ExtraArgs []string
}

// StartControllerManager starts kube-controller-manager of the cluster's
// release (built by BuildRoutingVersion) with only the controllers asked
// for, as the cluster's admin, and returns once its /healthz answers ok. Its
// log is kube-controller-manager.log in LogDir; Stop stops it first.
func (c *Cluster) StartControllerManager(ctx context.Context, opts ControllerManagerOptions) error {
	c.routingMu.Lock()
	defer c.routingMu.Unlock()
	if c.controllerManager != nil && c.controllerManager.Running() {
		return errors.New("kube-controller-manager is already running")
	}
	bin, err := c.routingBinary(ControllerManagerBinary)
	if err != nil {
		return err
	}
	controllers := opts.Controllers
	if len(controllers) == 0 {
		controllers = DefaultControllers
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	var lastErr error
	// A free port can be taken between finding it and binding it.
	for attempt := 1; attempt <= 3; attempt++ {
		port, err := freeport.Ports(1)
		if err != nil {
			return err
		}
		args := append([]string{
			"--kubeconfig=" + c.Kubeconfig,
			"--controllers=" + strings.Join(controllers, ","),
			// One instance per cluster: nothing to elect.
			"--leader-elect=false",
			// Every controller acts as the admin; the API server has no
			// controller service accounts to give them.
			"--use-service-account-credentials=false",
			"--bind-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(port[0]),
			"--cert-dir=" + filepath.Join(c.Dir, "kube-controller-manager"),
			"--profiling=false",
			"--v=2",
		}, opts.ExtraArgs...)
		p, err := startProcess("kube-controller-manager", bin, filepath.Join(c.LogDir, "kube-controller-manager.log"), args)
		if err != nil {
			return err
		}
		c.controllerManager = p
		host := "https://127.0.0.1:" + strconv.Itoa(port[0])
		lastErr = c.waitHealthy(ctx, p, healthz(host))
		if lastErr == nil {
			c.log.Info("kube-controller-manager ready", "controllers", controllers, "pid", p.PID())
			return nil
		}
		stopProcess(p)
		if !errors.Is(lastErr, errPortClash) || ctx.Err() != nil {
			break
		}
	}
	return fmt.Errorf("waiting for kube-controller-manager /healthz: %w\n%s", lastErr, c.logTail("kube-controller-manager.log"))
}

// StopControllerManager stops kube-controller-manager (SIGTERM, SIGKILL after
// 15 s); the objects its controllers wrote stay.
func (c *Cluster) StopControllerManager() error {
	c.routingMu.Lock()
	defer c.routingMu.Unlock()
	if c.controllerManager == nil {
		return nil
	}
	return stopProcess(c.controllerManager)
}

// ControllerManagerPID is kube-controller-manager's process id (0 if never started).
func (c *Cluster) ControllerManagerPID() int {
	c.routingMu.Lock()
	defer c.routingMu.Unlock()
	if c.controllerManager == nil {
		return 0
	}
	return c.controllerManager.PID()
}

// routingBinary is the path of a routing binary of the cluster's release, or
// an error with the command that builds it.
func (c *Cluster) routingBinary(name string) (string, error) {
	dir, err := RoutingBinDirFor(c.opts.Version)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	if err := checkExecutable(bin); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%s %s not found in %s: %s", name, c.opts.Version, dir, RoutingBuildHint(c.opts.Version))
		}
		return "", fmt.Errorf("%s in %s is unusable (%v): %s", name, dir, err, RoutingBuildHint(c.opts.Version))
	}
	return bin, nil
}

// healthz checks a component's /healthz on its self-signed port (loopback,
// so the certificate is not verified). /healthz is one of the paths
// kube-controller-manager serves without authentication.
func healthz(host string) func(context.Context) error {
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return func(ctx context.Context) error {
		body, err := httpGet(ctx, client, host+"/healthz", "")
		if err != nil {
			return err
		}
		if strings.TrimSpace(body) != "ok" {
			return fmt.Errorf("/healthz: %s", body)
		}
		return nil
	}
}

// logTail is the end of one log in LogDir.
func (c *Cluster) logTail(name string) string {
	path := filepath.Join(c.LogDir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("--- %s: %v", path, err)
	}
	return fmt.Sprintf("--- last %d lines of %s:\n%s", logTailLines, path, tail(string(data), logTailLines))
}
