package lease

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/zonetoll/zonetoll/shared/kubeclient"
	"github.com/zonetoll/zonetoll/testkit/servicetest"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

const ns = "lease-test"

type fixture struct {
	t   *testing.T
	c   *testcluster.Cluster
	cfg Config // template: Identity to be set
}

func newFixture(t *testing.T) *fixture {
	c := testcluster.StartT(t, testcluster.Options{})
	if _, err := c.CreateNamespace(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	clients, err := kubeclient.NewRESTClients(c.Config, kubeclient.Group{Version: coordinationv1.SchemeGroupVersion, AddToScheme: coordinationv1.AddToScheme})
	if err != nil {
		t.Fatal(err)
	}
	client := clients[0]
	// What the electors log is shown when a test fails (a release that failed says so there).
	var logs servicetest.SyncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("electors' log:\n%s", logs.String())
		}
	})
	return &fixture{t: t, c: c, cfg: Config{
		Client: client, Namespace: ns, Name: "labeler",
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(&logs, nil)),
	}}
}

func (f *fixture) holder() string {
	f.t.Helper()
	l, err := f.c.Client.CoordinationV1().Leases(ns).Get(context.Background(), f.cfg.Name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return holder(l)
}

// waitFor is servicetest.WaitFor for a condition with nothing to describe.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	servicetest.WaitFor(t, what, 0, func() (bool, string) { return cond(), "" })
}

// replica runs one elector and records its terms.
type replica struct {
	id      string
	terms   atomic.Int32
	leading atomic.Bool
	cancel  context.CancelFunc
	done    chan error
}

// start runs an elector whose work, after its context ends, takes workTail more before returning
// (workers finishing their last write); during it, onTail is called.
func (f *fixture) start(id string, active *atomic.Int32, workTail time.Duration, onTail func()) *replica {
	r := &replica{id: id, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	cfg := f.cfg
	cfg.Identity = id
	go func() {
		r.done <- Run(ctx, cfg, func(lctx context.Context) {
			if n := active.Add(1); n != 1 {
				f.t.Errorf("%s leads while %d other replicas lead", id, n-1)
			}
			r.terms.Add(1)
			r.leading.Store(true)
			<-lctx.Done()
			if onTail != nil {
				onTail()
			}
			time.Sleep(workTail)
			r.leading.Store(false)
			active.Add(-1)
		})
	}()
	f.t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func (r *replica) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("%s: Run returned %v", r.id, err)
	}
	r.done <- nil // for the cleanup
}

func TestOneLeaderAndHandOverAfterWorkStopped(t *testing.T) {
	f := newFixture(t)
	var active atomic.Int32
	var tailHolder string
	first := f.start("first", &active, 500*time.Millisecond, func() { tailHolder = f.holder() })
	waitFor(t, "first replica leads", first.leading.Load)
	if h := f.holder(); h != "first" {
		t.Fatalf("lease holder %q while first leads", h)
	}
	second := f.start("second", &active, 0, nil)
	// The standby keeps campaigning for several renewals of the leader and must not take the lease.
	for range 10 {
		time.Sleep(f.cfg.RetryPeriod)
		if second.leading.Load() {
			t.Fatal("second replica leads while the first renews the lease")
		}
	}
	first.stop(t)
	// The lease was still ours while the work finished, and released only afterwards.
	if tailHolder != "first" {
		t.Errorf("while the first replica's work was finishing the lease holder was %q, want first", tailHolder)
	}
	if h := f.holder(); h != "" && h != "second" {
		t.Errorf("after the first replica stopped the holder is %q, want released (\"\") or second", h)
	}
	waitFor(t, "second replica leads", second.leading.Load)
	l, err := f.c.Client.CoordinationV1().Leases(ns).Get(t.Context(), f.cfg.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if holder(l) != "second" || int32Or(l.Spec.LeaseTransitions) != 1 || int32Or(l.Spec.LeaseDurationSeconds) != 3 {
		t.Errorf("lease after hand-over: holder %q, transitions %d, duration %ds; want second, 1, 3s",
			holder(l), int32Or(l.Spec.LeaseTransitions), int32Or(l.Spec.LeaseDurationSeconds))
	}
	if first.terms.Load() != 1 || second.terms.Load() != 1 {
		t.Errorf("terms: first %d, second %d; want 1 each", first.terms.Load(), second.terms.Load())
	}
}

// A leader that cannot renew (another holder wrote the lease) stops working, and campaigns again.
// A renewal that the ending context cut off on the client's side may still have been written by the
// API server; the leader's record is then a version behind. Its release must still hand the Lease back
// (CI once found the holder unchanged after the first replica stopped, under heavy load).
func TestReleaseFromAStaleRecord(t *testing.T) {
	f := newFixture(t)
	cfg := f.cfg
	cfg.Identity = "first"
	e := &elector{cfg: cfg, log: cfg.Log}
	if !e.tryAcquireOrRenew(t.Context()) {
		t.Fatal("could not take the lease")
	}
	stale := e.observed
	if !e.tryAcquireOrRenew(t.Context()) {
		t.Fatal("could not renew the lease")
	}
	if stale.ResourceVersion == e.observed.ResourceVersion {
		t.Fatal("the renewal did not change the Lease's resourceVersion: the test proves nothing")
	}
	e.observed = stale
	e.release()
	if h := f.holder(); h != "" {
		t.Errorf("after releasing from a stale record the holder is %q, want released", h)
	}
	// A Lease another replica took meanwhile is left alone.
	e.observed = stale
	other := cfg
	other.Identity = "second"
	l, err := f.c.Client.CoordinationV1().Leases(ns).Get(t.Context(), cfg.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o := &elector{cfg: other, log: other.Log, observed: l, seenAt: time.Now().Add(-time.Hour)}
	if !o.tryAcquireOrRenew(t.Context()) {
		t.Fatal("second could not take the released lease")
	}
	e.release()
	if h := f.holder(); h != "second" {
		t.Errorf("first's release from a stale record changed the holder to %q; second holds it", h)
	}
}

func TestLostLeaseStopsWorkAndCampaignsAgain(t *testing.T) {
	f := newFixture(t)
	var active atomic.Int32
	r := f.start("replica", &active, 0, nil)
	waitFor(t, "replica leads", r.leading.Load)

	// An intruder takes the lease over and keeps renewing it, as a split brain would look from here.
	ctx, stopIntruder := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			l, err := f.c.Client.CoordinationV1().Leases(ns).Get(ctx, f.cfg.Name, metav1.GetOptions{})
			if err == nil {
				intruder := "intruder"
				l.Spec.HolderIdentity = &intruder
				l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
				_, _ = f.c.Client.CoordinationV1().Leases(ns).Update(ctx, l, metav1.UpdateOptions{})
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	waitFor(t, "replica to stop working", func() bool { return !r.leading.Load() })
	stopIntruder()
	wg.Wait()
	if h := f.holder(); h != "intruder" {
		t.Errorf("holder %q right after the replica gave up, want intruder (the replica must not release a lease it lost)", h)
	}
	// The intruder stopped renewing: after its lease duration the replica takes the lease back.
	waitFor(t, "replica leads again", func() bool { return r.terms.Load() == 2 && r.leading.Load() })
	if h := f.holder(); h != "replica" {
		t.Errorf("holder %q, want replica", h)
	}
}

// The protocol is client-go's: a client-go elector and ours never lead at once, and each takes over
// from the other's release.
func TestInteroperatesWithClientGo(t *testing.T) {
	f := newFixture(t)
	var active atomic.Int32
	var clientGoLeading atomic.Bool
	ctx, stopClientGo := context.WithCancel(t.Context())
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: ns, Name: f.cfg.Name},
			Client:     f.c.Client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: "client-go"},
		},
		LeaseDuration: f.cfg.LeaseDuration, RenewDeadline: f.cfg.RenewDeadline, RetryPeriod: f.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) {
				if n := active.Add(1); n != 1 {
					t.Errorf("client-go leads while %d other replicas lead", n-1)
				}
				clientGoLeading.Store(true)
			},
			OnStoppedLeading: func() {
				if clientGoLeading.Swap(false) {
					active.Add(-1)
				}
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	clientGoDone := make(chan struct{})
	go func() {
		defer close(clientGoDone)
		elector.Run(ctx)
	}()
	waitFor(t, "client-go leads", clientGoLeading.Load)
	ours := f.start("ours", &active, 0, nil)
	for range 10 {
		time.Sleep(f.cfg.RetryPeriod)
		if ours.leading.Load() {
			t.Fatal("our elector leads while client-go's renews the lease")
		}
	}
	stopClientGo()
	<-clientGoDone
	waitFor(t, "ours leads after client-go released", ours.leading.Load)
	if h := f.holder(); h != "ours" {
		t.Errorf("holder %q, want ours", h)
	}
}

func TestInvalidConfig(t *testing.T) {
	base := Config{Client: nil, Namespace: "n", Name: "l", Identity: "i", LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"no client", func(*Config) {}, "no coordination.k8s.io client"},
		{"no identity", func(c *Config) { c.Client = fakeClient(t); c.Identity = "" }, "identity"},
		{"renew deadline beyond lease duration", func(c *Config) { c.Client = fakeClient(t); c.RenewDeadline = 20 * time.Second }, "renew deadline (20s) < lease duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.change(&cfg)
			err := Run(t.Context(), cfg, func(context.Context) { t.Error("lead called with an invalid config") })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// fakeClient points nowhere: with an invalid config nothing may be requested.
func fakeClient(t *testing.T) rest.Interface {
	t.Helper()
	clients, err := kubeclient.NewRESTClients(&rest.Config{Host: "http://127.0.0.1:1"}, kubeclient.Group{Version: coordinationv1.SchemeGroupVersion, AddToScheme: coordinationv1.AddToScheme})
	if err != nil {
		t.Fatal(err)
	}
	c := clients[0]
	return c
}
