package kubeclient

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func writeKubeconfig(t *testing.T, server string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: test
  user: {token: secret-token}
contexts:
- name: test
  context: {cluster: test, user: test}
current-context: test
`, server)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRESTConfigFromKubeconfigTalksToServer(t *testing.T) {
	var mu sync.Mutex
	var gotUA, gotAuth string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotUA, gotAuth = r.UserAgent(), r.Header.Get("Authorization")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"major":"1","minor":"33","gitVersion":"v1.33.13"}`)
	}))
	defer srv.Close()
	path := writeKubeconfig(t, srv.URL)
	missing := filepath.Join(t.TempDir(), "missing")

	// A KUBECONFIG-style list: the first file that exists wins.
	rc, err := RESTConfig(missing+string(filepath.ListSeparator)+path, Config{QPS: 7, Burst: 9, Timeout: 3 * time.Second}, "zonetoll-zonelabeler/v1 (linux/amd64)")
	if err != nil {
		t.Fatal(err)
	}
	if rc.ContentType != "application/vnd.kubernetes.protobuf" {
		t.Errorf("content type = %q, want protobuf", rc.ContentType)
	}
	if rc.QPS != 7 || rc.Burst != 9 || rc.Timeout != 3*time.Second || rc.Host != srv.URL {
		t.Errorf("rest config = qps %v burst %v timeout %v host %q", rc.QPS, rc.Burst, rc.Timeout, rc.Host)
	}
	cs, err := NewClientset(rc)
	if err != nil {
		t.Fatal(err)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if v.GitVersion != "v1.33.13" || gotUA != "zonetoll-zonelabeler/v1 (linux/amd64)" || gotAuth != "Bearer secret-token" {
		t.Errorf("server saw UA %q auth %q, version %q", gotUA, gotAuth, v.GitVersion)
	}
}

func TestRESTConfigErrors(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	_, err := RESTConfig("", Config{QPS: 1, Burst: 1}, "ua")
	if !errors.Is(err, ErrNoConfig) || !strings.Contains(err.Error(), "--kubeconfig") {
		t.Errorf("no config: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad")
	if err := os.WriteFile(bad, []byte("not: [yaml"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := RESTConfig(bad, Config{QPS: 1, Burst: 1}, "ua"); err == nil || !strings.Contains(err.Error(), "loading kubeconfig "+bad) {
		t.Errorf("bad kubeconfig: %v", err)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		cfg     Config
		wantErr string
	}{
		{Config{QPS: 20, Burst: 40}, ""},
		{Config{QPS: 0, Burst: 40}, "ZONETOLL_KUBE_QPS=0"},
		{Config{QPS: 20, Burst: 5}, "ZONETOLL_KUBE_BURST=5"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate("ZONETOLL_KUBE_")
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("Validate(%+v) = %v, want %q", tt.cfg, err, tt.wantErr)
		}
	}
}
