package main

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// cliEnv makes the test binary act as the testcluster command, so `up` can
// re-execute it as `serve`.
const cliEnv = "ZONETOLL_TESTCLUSTER_CLI_TEST"

func TestMain(m *testing.M) {
	if os.Getenv(cliEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestUpStatusDown(t *testing.T) {
	testcluster.Need(t)
	t.Setenv(cliEnv, "1")
	dir := t.TempDir()
	ctx := t.Context()
	if err := status(ctx, dir); err == nil {
		t.Fatal("status succeeded before up")
	}
	version, err := testcluster.Version()
	if err != nil {
		t.Fatal(err)
	}
	if err := up(ctx, dir, version, []string{"--service-cluster-ip-range=198.19.128.0/24"}); err != nil {
		t.Fatalf("up: %v", err)
	}
	st, err := readState(dir)
	if err != nil || st == nil {
		t.Fatalf("no state after up: %v", err)
	}
	t.Cleanup(func() {
		// Only if the test failed before `down`.
		if processAlive(st.PID) {
			syscall.Kill(st.PID, syscall.SIGKILL)
		}
	})
	for _, pid := range []int{st.PID, st.APIServerPID, st.EtcdPID} {
		if !processAlive(pid) {
			t.Fatalf("pid %d not running after up", pid)
		}
	}
	if err := status(ctx, dir); err != nil {
		t.Errorf("status: %v", err)
	}
	if st.Version != version {
		t.Errorf("state says the server is %s, want %s", st.Version, version)
	}
	if err := up(ctx, dir, version, nil); err == nil || !strings.Contains(err.Error(), "already up") {
		t.Errorf("second up: %v, want an 'already up' error", err)
	}
	// The kubectl the state names is the one built with the server.
	out, err := exec.CommandContext(ctx, st.Kubectl, "--kubeconfig", st.Kubeconfig, "get", "--raw", "/readyz").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("kubectl get --raw /readyz: %v: %s", err, out)
	}
	// The extra apiserver arg reached the apiserver: the default
	// ServiceCIDR reflects the range.
	out, err = exec.CommandContext(ctx, st.Kubectl, "--kubeconfig", st.Kubeconfig, "get", "servicecidr", "kubernetes",
		"-o", "jsonpath={.spec.cidrs[0]}").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "198.19.128.0/24" {
		t.Errorf("service CIDR: %v: %s, want 198.19.128.0/24", err, out)
	}

	if err := down(ctx, dir); err != nil {
		t.Fatalf("down: %v", err)
	}
	for _, pid := range []int{st.PID, st.APIServerPID, st.EtcdPID} {
		if processAlive(pid) {
			t.Errorf("pid %d still running after down", pid)
		}
	}
	if st, err := readState(dir); err != nil || st != nil {
		t.Errorf("state after down: %+v, %v", st, err)
	}
}
