package app

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zonetoll/zonetoll/shared/kubeversion"
	"github.com/zonetoll/zonetoll/testkit/metricstest"
)

func TestKubernetesInfoLabels(t *testing.T) {
	for _, tt := range []struct {
		version, major, minor string
		err                   bool
	}{
		{version: "v1.37.2", major: "1", minor: "37"},
		{version: "v1.35.4-eks-1a2b3c", major: "1", minor: "35"},
		{version: "v1.36.3-gke.1200", major: "1", minor: "36"},
		{version: "not a version", err: true},
	} {
		reg := prometheus.NewRegistry()
		k, err := newKubernetesInfo(reg)
		if err != nil {
			t.Fatal(err)
		}
		err = k.set(tt.version)
		if tt.err != (err != nil) || (err != nil && !errors.Is(err, kubeversion.ErrVersion)) {
			t.Errorf("%q: error %v, want error %v (ErrVersion)", tt.version, err, tt.err)
			continue
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		f := metricstest.Families{}
		for _, mf := range mfs {
			f[mf.GetName()] = mf
		}
		n := len(f.Series("zonetoll_kubernetes_info", nil))
		if tt.err {
			if n != 0 {
				t.Errorf("%q: %d series, want none for a version that does not parse", tt.version, n)
			}
			continue
		}
		if v, ok := f.Value("zonetoll_kubernetes_info", map[string]string{"git_version": tt.version, "major": tt.major, "minor": tt.minor}); !ok || v != 1 || n != 1 {
			t.Errorf("%q: zonetoll_kubernetes_info = %v (found %v, %d series), want 1 with major %s minor %s", tt.version, v, ok, n, tt.major, tt.minor)
		}
	}
}
