package testcluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

func TestStartStop(t *testing.T) {
	Need(t)
	ctx := t.Context()
	c, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			c.Stop()
		}
	})

	body, err := c.Client.RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil || string(body) != "ok" {
		t.Fatalf("/readyz = %q, %v; want ok", body, err)
	}
	v, err := c.Client.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	want, err := Version()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != want || c.Version != want {
		t.Errorf("server reports %s (Cluster.Version %s), want %s (version ldflags)", v.GitVersion, c.Version, want)
	}
	if _, err := os.Stat(c.Kubeconfig); err != nil {
		t.Errorf("kubeconfig: %v", err)
	}
	apiPID, etcdPID := c.PIDs()
	if !alive(apiPID) || !alive(etcdPID) {
		t.Fatalf("apiserver (pid %d) or etcd (pid %d) not running", apiPID, etcdPID)
	}

	if err := c.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	stopped = true
	if err := c.Stop(); err != nil {
		t.Errorf("second stop: %v", err)
	}
	for _, pid := range []int{apiPID, etcdPID} {
		if alive(pid) {
			t.Errorf("pid %d still running after Stop", pid)
		}
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("cluster dir %s still exists after Stop (err %v)", c.Dir, err)
	}
	if _, err := c.Client.Discovery().ServerVersion(); err == nil {
		t.Errorf("server still answers after Stop")
	}
}

func TestStartFailsWithHintWhenBinariesMissing(t *testing.T) {
	tests := []struct {
		version string
		want    []string
	}{
		{version: KubernetesVersion, want: []string{"kube-apiserver " + KubernetesVersion + " not found in ", "make testcluster"}},
		{version: "oldest", want: []string{"kube-apiserver " + OldestKubernetesVersion + " not found in ",
			"go run ./cmd/testcluster build --kubernetes-version " + OldestKubernetesVersion}},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Start(t.Context(), Options{Version: tt.version, BinDir: dir})
			if err == nil {
				t.Fatal("Start succeeded without binaries")
			}
			for _, want := range append(tt.want, dir) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestStartFailureShowsLogs(t *testing.T) {
	Need(t)
	_, err := Start(t.Context(), Options{ExtraAPIServerArgs: []string{"--no-such-flag"}})
	if err == nil {
		t.Fatal("Start succeeded with an unknown apiserver flag")
	}
	for _, want := range []string{"kube-apiserver exit status", "unknown flag: --no-such-flag", "last 40 lines of"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestNodeAndPodVisibleThroughInformer(t *testing.T) {
	c := StartT(t, Options{})
	ctx := t.Context()
	ns := "informer"
	if _, err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateNode(ctx, NodeSpec{Name: "node-a", Zone: "zone-a", Region: "region-1",
		InternalIPs: []string{"198.18.0.10", "fd00::10"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePod(ctx, PodSpec{Namespace: ns, Name: "web", NodeName: "node-a",
		IPs: []string{"198.18.1.5", "fd00::1:5"}, Labels: map[string]string{"app": "web"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePod(ctx, PodSpec{Namespace: ns, Name: "agent", NodeName: "node-a", HostNetwork: true}); err != nil {
		t.Fatal(err)
	}

	factory := informers.NewSharedInformerFactory(c.Client, 0)
	pods := factory.Core().V1().Pods()
	nodes := factory.Core().V1().Nodes()
	podsInformer := pods.Informer()
	nodes.Informer()
	deleted := make(chan string, 10)
	podsInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			deleted <- key
		}
	}})
	stop := make(chan struct{})
	defer close(stop)
	factory.Start(stop)
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for typ, ok := range factory.WaitForCacheSync(syncCtx.Done()) {
		if !ok {
			t.Fatalf("informer for %v did not sync", typ)
		}
	}

	node, err := nodes.Lister().Get("node-a")
	if err != nil {
		t.Fatalf("node from lister: %v", err)
	}
	if node.Labels[LabelZone] != "zone-a" || node.Labels[LabelRegion] != "region-1" {
		t.Errorf("node labels = %v, want zone-a/region-1", node.Labels)
	}
	if got := internalIPs(node); strings.Join(got, ",") != "198.18.0.10,fd00::10" {
		t.Errorf("node InternalIPs = %v", got)
	}

	tests := []struct {
		name        string
		wantIPs     []string
		hostNetwork bool
	}{
		{name: "web", wantIPs: []string{"198.18.1.5", "fd00::1:5"}},
		{name: "agent", wantIPs: []string{"198.18.0.10", "fd00::10"}, hostNetwork: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod, err := pods.Lister().Pods(ns).Get(tt.name)
			if err != nil {
				t.Fatalf("pod from lister: %v", err)
			}
			if pod.Spec.NodeName != "node-a" || pod.Spec.HostNetwork != tt.hostNetwork {
				t.Errorf("nodeName=%q hostNetwork=%v", pod.Spec.NodeName, pod.Spec.HostNetwork)
			}
			if pod.Status.Phase != corev1.PodRunning {
				t.Errorf("phase = %s, want Running", pod.Status.Phase)
			}
			var ips []string
			for _, ip := range pod.Status.PodIPs {
				ips = append(ips, ip.IP)
			}
			if pod.Status.PodIP != tt.wantIPs[0] || strings.Join(ips, ",") != strings.Join(tt.wantIPs, ",") {
				t.Errorf("podIP=%q podIPs=%v, want %v", pod.Status.PodIP, ips, tt.wantIPs)
			}
			if pod.Status.HostIP != "198.18.0.10" {
				t.Errorf("hostIP = %q, want the node's 198.18.0.10", pod.Status.HostIP)
			}
		})
	}

	// The status.podIP field selector is what an IP resolver would use.
	list, err := c.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "status.podIP=198.18.1.5"})
	if err != nil || len(list.Items) != 1 || list.Items[0].Name != "web" {
		t.Errorf("field selector status.podIP: %v items, err %v", len(list.Items), err)
	}

	if err := c.DeletePod(ctx, ns, "web"); err != nil {
		t.Fatal(err)
	}
	select {
	case key := <-deleted:
		if key != ns+"/web" {
			t.Errorf("deleted %s, want %s/web", key, ns)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("informer saw no delete of the pod")
	}
	if _, err := c.Client.CoreV1().Pods(ns).Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get after delete: %v, want NotFound", err)
	}
}

func TestServiceAccountPermissions(t *testing.T) {
	c := StartT(t, Options{})
	ctx := t.Context()
	for _, ns := range []string{"mine", "other"} {
		if _, err := c.CreateNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	sa, err := c.ServiceAccount(ctx, ServiceAccountSpec{
		Namespace:    "mine",
		Name:         "reader",
		Rules:        []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch"}}},
		ClusterRules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"list"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if sa.Config.BearerToken != sa.Token || sa.Config.CertData != nil || sa.Config.Username != "" {
		t.Fatalf("service-account config carries other credentials: %+v", sa.Config)
	}
	if sa.Username != "system:serviceaccount:mine:reader" {
		t.Errorf("username = %q", sa.Username)
	}
	cs := sa.Client
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: PauseImage}}}}
	tests := []struct {
		name    string
		call    func(ctx context.Context) error
		allowed bool
	}{
		{"list pods in own namespace", func(ctx context.Context) error {
			_, err := cs.CoreV1().Pods("mine").List(ctx, metav1.ListOptions{})
			return err
		}, true},
		{"list nodes (cluster rule)", func(ctx context.Context) error {
			_, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			return err
		}, true},
		{"list pods in another namespace", func(ctx context.Context) error {
			_, err := cs.CoreV1().Pods("other").List(ctx, metav1.ListOptions{})
			return err
		}, false},
		{"list pods cluster-wide", func(ctx context.Context) error {
			_, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
			return err
		}, false},
		{"create pod in own namespace", func(ctx context.Context) error {
			_, err := cs.CoreV1().Pods("mine").Create(ctx, pod, metav1.CreateOptions{})
			return err
		}, false},
		{"get node (only list granted)", func(ctx context.Context) error {
			_, err := cs.CoreV1().Nodes().Get(ctx, "any", metav1.GetOptions{})
			return err
		}, false},
		{"list secrets in own namespace", func(ctx context.Context) error {
			_, err := cs.CoreV1().Secrets("mine").List(ctx, metav1.ListOptions{})
			return err
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(t.Context())
			switch {
			case tt.allowed && err != nil:
				t.Errorf("refused: %v", err)
			case !tt.allowed && !apierrors.IsForbidden(err):
				t.Errorf("got %v, want 403 Forbidden", err)
			}
		})
	}
}

func TestTokenReview(t *testing.T) {
	c := StartT(t, Options{})
	ctx := t.Context()
	if _, err := c.CreateNamespace(ctx, "reviews"); err != nil {
		t.Fatal(err)
	}
	agent, err := c.ServiceAccount(ctx, ServiceAccountSpec{Namespace: "reviews", Name: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	scoped, err := c.ServiceAccount(ctx, ServiceAccountSpec{Namespace: "reviews", Name: "scoped", Audiences: []string{"flowserver"}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		token     string
		audiences []string
		wantUser  string // empty: not authenticated
	}{
		{name: "issued token", token: agent.Token, wantUser: agent.Username},
		{name: "garbage token", token: "not-a-token"},
		// Not the last character: in base64url its low bits are padding that decoders ignore, so changing
		// it can leave the signature intact (this test once passed a "tampered" token that way).
		{name: "issued token with a signature byte changed", token: tamper(agent.Token, len(agent.Token)-10)},
		{name: "audience-bound token for its audience", token: scoped.Token, audiences: []string{"flowserver"}, wantUser: scoped.Username},
		{name: "audience-bound token for the apiserver", token: scoped.Token},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := c.Client.AuthenticationV1().TokenReviews().Create(t.Context(), &authenticationv1.TokenReview{
				Spec: authenticationv1.TokenReviewSpec{Token: tt.token, Audiences: tt.audiences},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("token review: %v", err)
			}
			if got := tr.Status.Authenticated; got != (tt.wantUser != "") {
				t.Fatalf("authenticated = %v (error %q), want %v", got, tr.Status.Error, tt.wantUser != "")
			}
			if tt.wantUser != "" && tr.Status.User.Username != tt.wantUser {
				t.Errorf("user = %q, want %q", tr.Status.User.Username, tt.wantUser)
			}
		})
	}
}

func flip(b byte) string {
	if b == 'A' {
		return "B"
	}
	return "A"
}

func TestTwoClustersSideBySide(t *testing.T) {
	Need(t)
	var (
		wg       sync.WaitGroup
		clusters [2]*Cluster
		errs     [2]error
	)
	for i := range clusters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clusters[i], errs[i] = Start(t.Context(), Options{})
		}()
	}
	wg.Wait()
	for i, c := range clusters {
		if c != nil {
			t.Cleanup(func() { c.Stop() })
		}
		if errs[i] != nil {
			t.Fatalf("cluster %d: %v", i, errs[i])
		}
	}
	a, b := clusters[0], clusters[1]
	if a.Config.Host == b.Config.Host || a.EtcdURL == b.EtcdURL || a.Dir == b.Dir {
		t.Fatalf("clusters share an address or dir: %s %s, %s %s", a.Config.Host, b.Config.Host, a.Dir, b.Dir)
	}
	ctx := t.Context()
	if _, err := a.CreateNamespace(ctx, "only-in-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Client.CoreV1().Namespaces().Get(ctx, "only-in-a", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace created in cluster a seen in b: %v", err)
	}
	// A token of one cluster means nothing to the other: separate signing keys.
	sa, err := a.ServiceAccount(ctx, ServiceAccountSpec{Namespace: "only-in-a", Name: "x"})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := b.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: sa.Token}}, metav1.CreateOptions{})
	if err != nil || tr.Status.Authenticated {
		t.Errorf("cluster b accepted cluster a's token (err %v)", err)
	}
}

// TestKubectlVersionAgainstCluster runs the kubectl built with the server
// (not whatever kubectl the machine has): both sides report the release.
func TestKubectlVersionAgainstCluster(t *testing.T) {
	c := StartT(t, Options{})
	out, err := exec.CommandContext(t.Context(), c.Kubectl(), "--kubeconfig", c.Kubeconfig, "version", "-o", "json").CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl version: %v\n%s", err, out)
	}
	var v struct {
		ClientVersion struct{ GitVersion string } `json:"clientVersion"`
		ServerVersion struct{ GitVersion string } `json:"serverVersion"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("decoding kubectl output: %v\n%s", err, out)
	}
	if v.ServerVersion.GitVersion != c.Version || v.ClientVersion.GitVersion != c.Version {
		t.Errorf("kubectl %q sees server %q, want %s for both", v.ClientVersion.GitVersion, v.ServerVersion.GitVersion, c.Version)
	}
}

const helperEnv = "ZONETOLL_TESTCLUSTER_HELPER"

// TestChildrenDieWithParent runs a helper test binary that starts a cluster
// from a goroutine whose OS thread then exits, checks etcd and kube-apiserver
// survive that thread, then SIGKILLs the helper (as a crashed or killed
// `go test` would be) and checks both die with it.
func TestChildrenDieWithParent(t *testing.T) {
	Need(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	helperDone := make(chan struct{})
	go func() { cmd.Wait(); close(helperDone) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-helperDone })

	var apiPID, etcdPID int
	var dir string
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(3 * time.Minute)
wait:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("helper exited before reporting its cluster")
			}
			if rest, ok := strings.CutPrefix(line, "HELPER-CLUSTER "); ok {
				if _, err := fmt.Sscan(rest, &apiPID, &etcdPID, &dir); err != nil {
					t.Fatalf("parsing %q: %v", line, err)
				}
				break wait
			}
			if strings.HasPrefix(line, "HELPER-ERROR") {
				t.Fatal(line)
			}
		case <-timeout:
			t.Fatal("helper did not report a cluster in 3 minutes")
		}
	}
	go func() {
		for range lines {
		}
	}()
	t.Cleanup(func() { os.RemoveAll(dir) })
	if !alive(apiPID) || !alive(etcdPID) {
		t.Fatalf("children died when the starting goroutine's thread exited: apiserver alive=%v etcd alive=%v",
			alive(apiPID), alive(etcdPID))
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-helperDone
	for _, pid := range []int{apiPID, etcdPID} {
		// Death is asynchronous; the bound only keeps a broken build from
		// hanging the run.
		deadline := time.Now().Add(30 * time.Second)
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("pid %d survived its parent's SIGKILL", pid)
		}
	}
}

// helperStartAndHang is the child of TestChildrenDieWithParent (TestMain
// runs it instead of the tests when helperEnv is set).
func helperStartAndHang() {
	// Keep the main thread for the main goroutine: the runtime wedges rather
	// than ends the main thread when a locked goroutine exits on it, which
	// would hide the thread exit this helper is about.
	runtime.LockOSThread()
	type result struct {
		c   *Cluster
		err error
	}
	res := make(chan result)
	go func() {
		// Exiting while locked makes the runtime end this thread.
		runtime.LockOSThread()
		c, err := Start(context.Background(), Options{})
		res <- result{c, err}
	}()
	r := <-res
	if r.err != nil {
		fmt.Println("HELPER-ERROR", strconv.Quote(r.err.Error()))
		return
	}
	// Give the runtime time to retire the thread, then prove the cluster
	// still serves.
	time.Sleep(500 * time.Millisecond)
	if _, err := r.c.Client.Discovery().ServerVersion(); err != nil {
		fmt.Println("HELPER-ERROR cluster stopped answering:", err)
		return
	}
	api, etcd := r.c.PIDs()
	fmt.Printf("HELPER-CLUSTER %d %d %s\n", api, etcd, r.c.Dir)
	time.Sleep(5 * time.Minute)
}

func TestRestartAPIServer(t *testing.T) {
	c := StartT(t, Options{})
	ctx := t.Context()
	if _, err := c.CreateNode(ctx, NodeSpec{Name: "before-restart", Zone: "zone-a"}); err != nil {
		t.Fatal(err)
	}
	oldPID, etcdPID := c.PIDs()
	if err := c.RestartAPIServer(ctx, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	newPID, etcdAfter := c.PIDs()
	if newPID == oldPID || etcdAfter != etcdPID {
		t.Errorf("PIDs apiserver %d→%d etcd %d→%d: want a new apiserver and the same etcd", oldPID, newPID, etcdPID, etcdAfter)
	}
	// Same port, same certificates: the admin client made before the restart still works, and the data is kept.
	n, err := c.Client.CoreV1().Nodes().Get(ctx, "before-restart", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("reading a node created before the restart: %v", err)
	}
	if n.Labels[LabelZone] != "zone-a" {
		t.Errorf("node labels after restart = %v", n.Labels)
	}
}

// tamper changes the character at i of a token to another base64url character.
func tamper(token string, i int) string {
	return token[:i] + flip(token[i]) + token[i+1:]
}
