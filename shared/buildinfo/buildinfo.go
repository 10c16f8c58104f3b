// Package buildinfo holds the version of the running binary and exposes it as zonetoll_build_info.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Set at link time by the Makefile:
//
//	-X github.com/zonetoll/zonetoll/shared/buildinfo.Version=v0.1.0
//	-X github.com/zonetoll/zonetoll/shared/buildinfo.Revision=<git commit>
var (
	Version  = "dev"
	Revision = ""
)

// Info describes one binary.
type Info struct {
	Service   string
	Version   string
	Revision  string
	GoVersion string
}

// Get returns the build information of this binary for the named service. Without a link-time revision
// it falls back to the VCS stamp Go embeds, then to "unknown".
func Get(service string) Info {
	rev := Revision
	if rev == "" {
		rev = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					rev = s.Value
				}
			}
		}
	}
	return Info{Service: service, Version: Version, Revision: rev, GoVersion: runtime.Version()}
}

func (i Info) String() string {
	return fmt.Sprintf("%s %s (revision %s, %s, %s/%s)", i.Service, i.Version, i.Revision, i.GoVersion, runtime.GOOS, runtime.GOARCH)
}

// UserAgent names the service and version to API servers, so their audit logs and request metrics show
// which zonetoll component made a call.
func (i Info) UserAgent() string {
	return fmt.Sprintf("zonetoll-%s/%s (%s/%s)", i.Service, i.Version, runtime.GOOS, runtime.GOARCH)
}

// Collector returns the zonetoll_build_info gauge, always 1, whose labels carry the build.
func (i Info) Collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "zonetoll_build_info",
		Help: "Build information of the running zonetoll binary; always 1.",
		ConstLabels: prometheus.Labels{
			"service": i.Service, "version": i.Version, "revision": i.Revision, "goversion": i.GoVersion,
		},
	})
	g.Set(1)
	return g
}

// LDFlags are the linker flags of `make build`: stripped, with version and revision stamped into this
// package's variables. The image builder and the tests' service builds use them.
func LDFlags(version, revision string) string {
	return strings.Join([]string{"-s", "-w",
		"-X", "github.com/zonetoll/zonetoll/shared/buildinfo.Version=" + version,
		"-X", "github.com/zonetoll/zonetoll/shared/buildinfo.Revision=" + revision,
	}, " ")
}
