package testcluster

import (
	"errors"
	"os/exec"
	"time"

	childproc "github.com/zonetoll/zonetoll/testkit/process"
)

// The cluster's children (etcd, kube-apiserver, kube-controller-manager, kube-proxy) are the test
// kit's child processes (testkit/process): a log file each, a process group of their own, killed
// when the test process dies.

func startProcess(name, bin, logPath string, args []string) (*childproc.Process, error) {
	return childproc.Start(name, exec.Command(bin, args...), logPath)
}

// stopGrace is how long a child has to stop after SIGTERM.
const stopGrace = 15 * time.Second

// stopProcess stops p as childproc's Stop does. A child killed after its grace is no error here: the
// cluster's parts are stopped to be thrown away or started again, and keep nothing a kill could lose.
func stopProcess(p *childproc.Process) error {
	if err := p.Stop(stopGrace); err != nil && !errors.Is(err, childproc.ErrKilled) {
		return err
	}
	return nil
}
