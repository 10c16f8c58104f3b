package app

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zonetoll/zonetoll/bpf/counter"
	"github.com/zonetoll/zonetoll/bpf/kerneltest"
	"github.com/zonetoll/zonetoll/testkit/servicetest"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

// TestServiceEndToEnd runs the real flowagent command twice in-process, once per "node" namespace,
// against a real API server (testkit/testcluster) that holds the Nodes and Pods, and a real HTTP
// flowserver per zone path: each agent learns its zone and local addresses from the API, reports to
// its zone with its token, and on stop drains and sends once more. The server's bytes equal what
// the pods sent, each byte once.
//
// In tc mode (forced here; auto picks it on kernels before 6.4) no interface is configured: each
// agent finds its node's uplink by the default route and counts at its egress.
func TestServiceEndToEnd(t *testing.T) { eachMode(t, testServiceEndToEnd) }

func testServiceEndToEnd(t *testing.T, mode counter.Mode, c *cluster) {
	c.listen(c.a, "198.18.1.2", "fd00:1::2")
	c.listen(c.b, "198.18.2.2", "fd00:2::2")

	kc := testcluster.StartT(t, testcluster.Options{})
	ctx := t.Context()
	if _, err := kc.CreateNamespace(ctx, "apps"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []testcluster.NodeSpec{
		{Name: "node-1", Zone: "zone-a", InternalIPs: []string{"198.18.100.1", "fd00:100::1"}},
		{Name: "node-2", Zone: "zone-b", InternalIPs: []string{"198.18.100.2", "fd00:100::2"}},
	} {
		if _, err := kc.CreateNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []testcluster.PodSpec{
		{Namespace: "apps", Name: "a", NodeName: "node-1", IPs: []string{"198.18.1.2", "fd00:1::2"}},
		{Namespace: "apps", Name: "b", NodeName: "node-2", IPs: []string{"198.18.2.2", "fd00:2::2"}},
	} {
		if _, err := kc.CreatePod(ctx, p); err != nil {
			t.Fatal(err)
		}
	}

	fs := &flowserver{token: "agent-token", zones: map[string]string{}}
	url := fs.start(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("agent-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(node, netns string) *servicetest.Service {
		return servicetest.Start(t, Spec(), map[string]string{
			"ZONETOLL_NODE_NAME":  node,
			"ZONETOLL_NETNS":      "/run/netns/" + netns,
			"ZONETOLL_SERVER_URL": url + "/{zone}",
			// The test's flowserver is plain HTTP on loopback; TLS is the sender's tests'.
			"ZONETOLL_ALLOW_PLAINTEXT": "true",
			"ZONETOLL_TOKEN_FILE":      tokenFile,
			"ZONETOLL_INTERVAL":        "200ms",
			"ZONETOLL_BPF_MODE":        string(mode),
			"ZONETOLL_BPF_PIN_DIR":     kerneltest.PinDir(t),
		}, "--kubeconfig", kc.Kubeconfig)
	}
	svc1 := start("node-1", c.node1)
	svc2 := start("node-2", c.node2)
	for _, svc := range []*servicetest.Service{svc1, svc2} {
		waitFor(t, "agent ready", func() bool {
			resp, err := httpGet(svc.URL + "/readyz")
			return err == nil && resp == 200
		})
	}

	aSent, bSent := c.sendBothWays(1500, 1000, 800, 400)

	if aSent == 0 || bSent == 0 {
		t.Fatalf("no traffic measured (a %d, b %d)", aSent, bSent)
	}
	for i, svc := range []*servicetest.Service{svc1, svc2} {
		code, out := svc.Stop()
		if code != 0 {
			t.Fatalf("agent exited %d:\n%s", code, out)
		} else if strings.Contains(out, "reports not delivered") {
			t.Errorf("agent lost reports:\n%s", out)
		}
		// The one start line: mode, why, hooks.
		line := startLine(t, out)
		want := map[string]any{"mode": string(mode), "reason": "configured (ZONETOLL_BPF_MODE=" + string(mode) + ")"}
		if mode == counter.ModeTC {
			want["hook"], want["interfaces"], want["counting_on"] = "tc egress", "follow", fmt.Sprintf("n%d(uplink)", i+1)
		}
		for k, v := range want {
			if line[k] != v {
				t.Errorf("start line: %s = %v, want %v", k, line[k], v)
			}
		}
	}
	fs.checkBothWays(t, aSent, bSent)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.zones["node-1"] != "zone-a" || fs.zones["node-2"] != "zone-b" {
		t.Errorf("reports arrived at zones %v, want node-1 at zone-a and node-2 at zone-b", fs.zones)
	}
}

func httpGet(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
