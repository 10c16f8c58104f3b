package zonelabeler

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/zonetoll/zonetoll/testkit/metricstest"
	"github.com/zonetoll/zonetoll/testkit/testcluster"
)

const (
	nodeCount      = 100
	region         = "region-1"
	podNamespace   = "bench"
	leaseNamespace = "zonetoll-bench"
	fastWorkers    = 16 // create workers when pods go in as fast as the API server takes them
	pacedWorkers   = 8  // enough to keep 100 pods/s when one create takes tens of milliseconds
	mib            = 1 << 20
)

var zones = []string{"zone-a", "zone-b", "zone-c"}

// BenchmarkZonelabeler runs the real zonelabeler binary against a fresh test cluster per run, with
// 100 nodes in 3 zones and ZONETOLL_BENCH_PODS pods (default 10,000) created as fast as the API server
// takes them (rate=max) or paced at 100 pods/s (rate=100). Run with -benchtime=1x; see
// docs/benchmarks.md. The figures are reported as benchmark metrics and in the log.
func BenchmarkZonelabeler(b *testing.B) {
	testcluster.Need(b)
	pods := 10000
	if v := os.Getenv("ZONETOLL_BENCH_PODS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("ZONETOLL_BENCH_PODS=%q: want a positive integer", v)
		}
		pods = n
	}
	bin := os.Getenv("ZONETOLL_BENCH_ZONELABELER_BIN")
	if bin == "" {
		src, err := filepath.Abs("../../../services/zonelabeler")
		if err != nil {
			b.Fatal(err)
		}
		if bin, err = buildLabeler(b.Context(), src, b.TempDir()); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("rate=max", func(b *testing.B) {
		for b.Loop() {
			runBench(b, bin, pods, 0, load{})
		}
	})
	b.Run("rate=100", func(b *testing.B) {
		for b.Loop() {
			runBench(b, bin, pods, 100, load{})
		}
	})
	// The pods exist before the labeler starts (first install, or a restart): its caches fill from
	// one initial list of every pod, the usual memory peak of an informer, which the runs above
	// never see because the labeler starts on an empty cluster.
	b.Run("start=late", func(b *testing.B) {
		for b.Loop() {
			runBench(b, bin, pods, lateStart, load{})
		}
	})
	// The labeler under its real identity (issue 17): pods created as fast as possible while their
	// status churns and other clients watch every pod, once as the admin (exempt from API priority
	// and fairness) and once with the deployed service account and RBAC.
	watchers, churn := envInt(b, "ZONETOLL_BENCH_WATCHERS", 3), envInt(b, "ZONETOLL_BENCH_CHURN", 100)
	for _, sa := range []bool{false, true} {
		ld := load{serviceAccount: sa, watchers: watchers, churn: churn}
		name := "load/identity=admin"
		if sa {
			name = "load/identity=serviceaccount"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				runBench(b, bin, pods, 0, ld)
			}
		})
	}
}

// envInt reads a non-negative integer setting of the benchmark.
func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		b.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

// lateStart as a rate: create every pod as fast as possible, then start the labeler.
const lateStart = -1

// runBench is one run on a fresh cluster; rate 0 means as fast as possible, lateStart see there.
func runBench(b *testing.B, bin string, pods int, rate int, ld load) {
	ctx, cancel := context.WithTimeout(b.Context(), 30*time.Minute)
	defer cancel()
	c := testcluster.StartT(b, testcluster.Options{})
	defer c.Stop() // StartT's cleanup runs only after every iteration

	nodeZone, nodeRegion := map[string]string{}, map[string]string{}
	nodeNames := make([]string, nodeCount)
	for i := range nodeCount {
		name := fmt.Sprintf("node-%03d", i)
		nodeNames[i] = name
		nodeZone[name], nodeRegion[name] = zones[i%len(zones)], region
		if _, err := c.CreateNode(ctx, testcluster.NodeSpec{
			Name: name, Zone: nodeZone[name], Region: region,
			InternalIPs: []string{fmt.Sprintf("198.18.%d.%d", i/250, i%250+1)},
		}); err != nil {
			b.Fatal(err)
		}
	}
	for _, ns := range []string{podNamespace, leaseNamespace} {
		if _, err := c.CreateNamespace(ctx, ns); err != nil {
			b.Fatal(err)
		}
	}

	kubeconfig := ld.labelerKubeconfig(ctx, b, c)
	watcherEvents := startWatchers(ctx, b, c, ld.watchers)
	rec := newRecorder(pods, testcluster.LabelZone, testcluster.LabelRegion, nodeZone, nodeRegion)
	watchPods(ctx, b, c.Client, rec)
	creatorCfg := rest.CopyConfig(c.Config)
	creatorCfg.Wrap(rec.wrap)
	creator, err := kubernetes.NewForConfig(creatorCfg)
	if err != nil {
		b.Fatal(err)
	}

	specs := make([]testcluster.PodSpec, pods)
	for i := range specs {
		specs[i] = testcluster.PodSpec{
			Namespace: podNamespace, Name: fmt.Sprintf("pod-%05d", i), NodeName: nodeNames[i%nodeCount],
			IPs: []string{fmt.Sprintf("198.19.%d.%d", i/250, i%250+1)}, Labels: map[string]string{"app": "bench"},
		}
	}
	var start, createdAll time.Time
	create := func() {
		start = time.Now()
		switch rate {
		case 0, lateStart:
			err = testcluster.CreatePods(ctx, creator, specs, fastWorkers)
		default:
			err = testcluster.CreatePodsPaced(ctx, creator, specs, pacedWorkers, rate)
		}
		if err != nil {
			b.Fatal(err)
		}
		createdAll = time.Now()
	}
	var patchesBefore float64
	if rate == lateStart {
		patchesBefore = podPatches(ctx, b, c.Client)
		create()
	}

	settings := labelerSettings(os.Environ())
	labelerStart := time.Now()
	l, err := startLabeler(bin, kubeconfig, leaseNamespace, filepath.Join(b.TempDir(), "zonelabeler.log"), settings)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := l.stop(15 * time.Second); err != nil {
			b.Error(err)
		}
	}()
	if err := l.waitLeading(ctx, time.Minute); err != nil {
		b.Fatal(err)
	}
	// With a late start this is after the initial list: the caches hold every pod already.
	idle, err := readUsage(l.pid())
	if err != nil {
		b.Fatal(err)
	}
	apiBefore := apiserverMetrics(ctx, b, c.Client)
	churn := startChurn(ctx, c.Client, rec, ld.churn)
	defer churn.stop()
	if rate != lateStart {
		patchesBefore = podPatches(ctx, b, c.Client)
		create()
	}

	// Every pod must get its label; the bound only keeps a broken labeler from hanging the run.
	// 60 ms a pod allows for the labeler's default client limit (20 requests/s, one patch a pod).
	limit := 5*time.Minute + time.Duration(pods)*60*time.Millisecond
	deadline := time.After(limit)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case <-rec.allDone:
			break wait
		case <-deadline:
			b.Fatalf("%d of %d pods labelled %s after the last create; labeler log:\n%s", rec.progress(), pods, limit, l.logTail())
		case <-ctx.Done():
			b.Fatalf("%d of %d pods labelled: %v", rec.progress(), pods, ctx.Err())
		case <-tick.C:
			if done, err := l.exited(); done {
				b.Fatalf("zonelabeler exited (%v) with %d of %d pods labelled; log:\n%s", err, rec.progress(), pods, l.logTail())
			}
		}
	}
	churn.stop()
	apiAfter := apiserverMetrics(ctx, b, c.Client)
	apiDelta := apiAfter.Minus(apiBefore)
	labelMetrics := settle(ctx, b, l)
	used, err := readUsage(l.pid())
	if err != nil {
		b.Fatal(err)
	}
	patches := podPatches(ctx, b, c.Client) - patchesBefore

	res := rec.results()
	if len(res.wrong) > 0 {
		b.Fatalf("%d pods labelled with another location than their node's, e.g. %s", len(res.wrong), res.wrong[0])
	}
	if res.missing > 0 {
		b.Fatalf("%d labelled pods have no recorded create time", res.missing)
	}
	report(b, figures{
		pods: pods, rate: rate, start: start, createdAll: createdAll, res: res,
		patches: patches, labelMetrics: labelMetrics, idle: idle, used: used, settings: settings,
		labelerStart: labelerStart,
	})
	if ld != (load{}) {
		b.Logf("load: %s; %d status patches (%d failed), %d pod events to the watchers\n%s",
			ld, churn.patches.Load(), churn.errors.Load(), watcherEvents.Load(), flowcontrolReport(apiDelta, apiAfter))
	}
}

// watchPods runs an informer on the benchmark's pod namespace that feeds rec, and waits for its sync.
func watchPods(ctx context.Context, b *testing.B, cs kubernetes.Interface, rec *recorder) {
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(podNamespace))
	inf := f.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    rec.observe,
		UpdateFunc: func(_, obj any) { rec.observe(obj) },
	}); err != nil {
		b.Fatal(err)
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		b.Fatal("benchmark pod watch did not sync")
	}
	b.Cleanup(f.Shutdown)
}

// settle waits until the labeler's queue is empty and its write count has stopped moving, so a second
// write to an already labelled pod (the thing "writes per pod" is there to catch) is counted, and
// returns the last scrape.
func settle(ctx context.Context, b *testing.B, l *labeler) metricstest.Samples {
	var prev float64 = -1
	for range 30 {
		m, err := l.metrics(ctx)
		if err != nil {
			b.Fatal(err)
		}
		writes := m.Sum("zonetoll_zonelabeler_label_writes_total", nil)
		if m.Sum("zonetoll_zonelabeler_workqueue_depth", nil) == 0 && writes == prev {
			return m
		}
		prev = writes
		time.Sleep(time.Second)
	}
	b.Fatal("zonelabeler still busy 30 s after every pod was labelled")
	return nil
}

// podPatches is the API server's count of PATCH requests on pods themselves; the helpers' status
// updates go to the status subresource and are not in it.
func podPatches(ctx context.Context, b *testing.B, cs kubernetes.Interface) float64 {
	return apiserverMetrics(ctx, b, cs).Sum("apiserver_request_total", map[string]string{"verb": "PATCH", "group": "", "resource": "pods", "subresource": ""})
}

type figures struct {
	pods, rate        int
	start, createdAll time.Time
	labelerStart      time.Time
	res               results
	patches           float64
	labelMetrics      metricstest.Samples
	idle, used        usage
	settings          []string
}

func report(b *testing.B, f figures) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	p50, _ := percentile(f.res.createToLabel, 0.50)
	p99, _ := percentile(f.res.createToLabel, 0.99)
	pmax, _ := percentile(f.res.createToLabel, 1)
	w50, _ := percentile(f.res.seenToLabel, 0.50)
	w99, _ := percentile(f.res.seenToLabel, 0.99)
	const hist = "zonetoll_zonelabeler_binding_to_label_seconds"
	h50, h50Beyond, _ := f.labelMetrics.HistogramQuantile(hist, 0.50)
	h99, h99Beyond, _ := f.labelMetrics.HistogramQuantile(hist, 0.99)
	histText := func(v float64, beyond bool) string {
		if beyond {
			return fmt.Sprintf("> %.0f ms (past the last bucket)", v*1000)
		}
		return fmt.Sprintf("%.0f ms", v*1000)
	}
	hCount := f.labelMetrics.Sum(hist+"_count", nil)
	ok := f.labelMetrics.Sum("zonetoll_zonelabeler_label_writes_total", map[string]string{"result": "success"})
	allWrites := f.labelMetrics.Sum("zonetoll_zonelabeler_label_writes_total", nil)
	createSecs := f.createdAll.Sub(f.start).Seconds()
	allLabelled := f.res.lastLabelled.Sub(f.start).Seconds()
	n := float64(f.pods)

	b.ReportMetric(n/createSecs, "created-pods/s")
	b.ReportMetric(allLabelled, "all-labelled-s")
	b.ReportMetric(f.res.lastLabelled.Sub(f.createdAll).Seconds(), "labelled-after-last-create-s")
	b.ReportMetric(ms(p50), "p50-ms")
	b.ReportMetric(ms(p99), "p99-ms")
	b.ReportMetric(ms(pmax), "max-ms")
	// A quantile past the histogram's last bucket is only a lower bound: left out of the metrics.
	if !h50Beyond {
		b.ReportMetric(h50*1000, "labeler-p50-ms")
	}
	if !h99Beyond {
		b.ReportMetric(h99*1000, "labeler-p99-ms")
	}
	b.ReportMetric(f.patches/n, "pod-patches/pod")
	b.ReportMetric(allWrites/n, "labeler-writes/pod")
	b.ReportMetric(float64(f.used.PeakRSS)/mib, "peak-RSS-MiB")
	b.ReportMetric(float64(f.idle.RSSFile)/mib, "idle-RSS-file-MiB")
	b.ReportMetric(float64(f.idle.RSSAnon)/mib, "idle-RSS-anon-MiB")
	b.ReportMetric(f.used.CPUSeconds, "CPU-s")
	b.ReportMetric(f.used.CPUSeconds-f.idle.CPUSeconds, "CPU-s-during-run")

	rateText := "as fast as the API server takes them"
	idleText := "before pods"
	switch {
	case f.rate > 0:
		rateText = fmt.Sprintf("paced at %d pods/s", f.rate)
	case f.rate == lateStart:
		rateText = fmt.Sprintf("as fast as possible before the labeler started; all labelled %.1f s after the labeler started",
			f.res.lastLabelled.Sub(f.labelerStart).Seconds())
		idleText = "once leading, all pods cached"
		b.ReportMetric(f.res.lastLabelled.Sub(f.labelerStart).Seconds(), "labelled-after-labeler-start-s")
	}
	if len(f.settings) > 0 {
		rateText += fmt.Sprintf("; labeler settings changed: %v", f.settings)
	}
	b.Logf(`zonelabeler, %d pods on %d nodes in %d zones, created %s:
  created in %.1f s (%.0f pods/s); all labelled %.1f s after the first create, %.2f s after the last
  create returned → label seen (benchmark watch): p50 %.0f ms, p99 %.0f ms, max %.0f ms
  first seen → label seen (same watch):           p50 %.0f ms, p99 %.0f ms
  labeler's histogram (bucket estimates, %.0f pods): p50 %s, p99 %s
  PATCH on pods (API server): %.0f = %.3f per pod; labeler writes: %.0f (%.0f success) = %.3f per pod
  labeler peak RSS (VmHWM) %.1f MiB (RSS at end %.1f MiB = file %.1f + anon %.1f; %s %.1f MiB = file %.1f + anon %.1f); CPU %.2f s total, %.2f s during the run`,
		f.pods, nodeCount, len(zones), rateText,
		createSecs, n/createSecs, allLabelled, f.res.lastLabelled.Sub(f.createdAll).Seconds(),
		ms(p50), ms(p99), ms(pmax), ms(w50), ms(w99),
		hCount, histText(h50, h50Beyond), histText(h99, h99Beyond),
		f.patches, f.patches/n, allWrites, ok, allWrites/n,
		float64(f.used.PeakRSS)/mib, float64(f.used.RSS)/mib, float64(f.used.RSSFile)/mib, float64(f.used.RSSAnon)/mib,
		idleText, float64(f.idle.RSS)/mib, float64(f.idle.RSSFile)/mib, float64(f.idle.RSSAnon)/mib, f.used.CPUSeconds, f.used.CPUSeconds-f.idle.CPUSeconds)
	// Targets from issue 5; a miss is reported, not hidden or failed: the figures are the result.
	if f.rate == 100 && p99 >= time.Second {
		b.Logf("TARGET MISSED: p99 binding→label %.0f ms at 100 pods/s (target < 1000 ms)", ms(p99))
	}
	if f.patches != n {
		b.Logf("TARGET MISSED: %.3f pod PATCHes per pod (target exactly 1)", f.patches/n)
	}
	if f.pods >= 10000 && f.used.PeakRSS >= 50*mib {
		b.Logf("TARGET MISSED: peak RSS %.1f MiB at %d pods (target < 50 MiB)", float64(f.used.PeakRSS)/mib, f.pods)
	}
}
