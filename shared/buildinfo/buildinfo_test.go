package buildinfo

import (
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollector(t *testing.T) {
	Version, Revision = "v1.2.3", "abc123"
	t.Cleanup(func() { Version, Revision = "dev", "" })
	info := Get("flowserver")
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(info.Collector())
	want := `# HELP zonetoll_build_info Build information of the running zonetoll binary; always 1.
# TYPE zonetoll_build_info gauge
zonetoll_build_info{goversion="` + runtime.Version() + `",revision="abc123",service="flowserver",version="v1.2.3"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "zonetoll_build_info"); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
	if ua := info.UserAgent(); !strings.HasPrefix(ua, "zonetoll-flowserver/v1.2.3 (") {
		t.Errorf("UserAgent() = %q", ua)
	}
}
