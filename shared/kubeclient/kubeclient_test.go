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

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
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
	client, err := NewRESTClient(rc, runtime.NewScheme(), schema.GroupVersion{Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	body, err := client.Get().AbsPath("/version").DoRaw(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(string(body), "v1.33.13") || gotUA != "zonetoll-zonelabeler/v1 (linux/amd64)" || gotAuth != "Bearer secret-token" {
		t.Errorf("server saw UA %q auth %q, answer %s", gotUA, gotAuth, body)
	}
}

// The narrow client must find each group at its path and decode objects with the scheme it is given,
// in protobuf (what RESTConfig asks for) and JSON (what the server may answer instead).
func TestNewRESTClient(t *testing.T) {
	scheme, err := NewScheme(corev1.AddToScheme, coordinationv1.AddToScheme)
	if err != nil {
		t.Fatal(err)
	}
	codecs := serializer.NewCodecFactory(scheme)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: map[string]string{"app": "x"}}, Spec: corev1.PodSpec{NodeName: "n"}}
	holder := "replica-1"
	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "l", Namespace: "ns"}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}
	var mu sync.Mutex
	var gotAccept []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotAccept = append(gotAccept, r.Header.Get("Accept"))
		mu.Unlock()
		var obj runtime.Object
		var gv schema.GroupVersion
		switch r.URL.Path {
		case "/api/v1/namespaces/ns/pods/p":
			obj, gv = pod, corev1.SchemeGroupVersion
		case "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l":
			obj, gv = lease, coordinationv1.SchemeGroupVersion
		default:
			http.NotFound(w, r)
			return
		}
		mediaType := runtime.ContentTypeJSON
		if strings.HasPrefix(r.Header.Get("Accept"), runtime.ContentTypeProtobuf) && r.URL.Query().Get("json") == "" {
			mediaType = runtime.ContentTypeProtobuf
		}
		info, _ := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), mediaType)
		w.Header().Set("Content-Type", mediaType)
		if err := codecs.EncoderForVersion(info.Serializer, gv).Encode(obj, w); err != nil {
			t.Error(err)
		}
	}))
	defer srv.Close()
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	rc, err := RESTConfig(writeKubeconfig(t, srv.URL), Config{QPS: 100, Burst: 100, Timeout: 5 * time.Second}, "ua")
	if err != nil {
		t.Fatal(err)
	}
	core, err := NewRESTClient(rc, scheme, corev1.SchemeGroupVersion)
	if err != nil {
		t.Fatal(err)
	}
	coordination, err := NewRESTClient(rc, scheme, coordinationv1.SchemeGroupVersion)
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"protobuf", "json"} {
		var gotPod corev1.Pod
		req := core.Get().Namespace("ns").Resource("pods").Name("p")
		if format == "json" {
			req = req.Param("json", "1")
		}
		if err := req.Do(t.Context()).Into(&gotPod); err != nil {
			t.Fatalf("%s: getting pod: %v", format, err)
		}
		if gotPod.Name != "p" || gotPod.Spec.NodeName != "n" || gotPod.Labels["app"] != "x" {
			t.Errorf("%s: decoded pod %+v", format, gotPod)
		}
	}
	var gotLease coordinationv1.Lease
	if err := coordination.Get().Namespace("ns").Resource("leases").Name("l").Do(t.Context()).Into(&gotLease); err != nil {
		t.Fatalf("getting lease: %v", err)
	}
	if gotLease.Spec.HolderIdentity == nil || *gotLease.Spec.HolderIdentity != holder {
		t.Errorf("decoded lease %+v", gotLease)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(gotAccept) == 0 || !strings.HasPrefix(gotAccept[0], runtime.ContentTypeProtobuf) {
		t.Errorf("client asked for %q, want protobuf first", gotAccept)
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
