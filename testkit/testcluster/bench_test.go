package testcluster

import (
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkStartToReady measures Start (both processes, up to /readyz ok);
// Stop is not timed. Run with -benchtime=5x: each iteration is seconds.
func BenchmarkStartToReady(b *testing.B) {
	Need(b)
	for b.Loop() {
		c, err := Start(b.Context(), Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := c.Stop(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkMemory reports the resident memory of kube-apiserver and etcd idle
// and after creating 100 nodes in 3 zones and 10,000 running pods with IPs
// (the design's scale target). Run with -benchtime=1x.
func BenchmarkMemory(b *testing.B) {
	Need(b)
	const settle = 5 * time.Second // let start-up allocations and caches settle before sampling
	b.Run("idle", func(b *testing.B) {
		for b.Loop() {
			c := StartT(b, Options{})
			time.Sleep(settle)
			reportRSS(b, c)
			c.Stop() // StartT's cleanup runs only after all iterations.
		}
	})
	b.Run("nodes=100,pods=10000", func(b *testing.B) {
		for b.Loop() {
			c := StartT(b, Options{})
			ctx := b.Context()
			const nodes, pods = 100, 10000
			zones := []string{"zone-a", "zone-b", "zone-c"}
			for i := range nodes {
				if _, err := c.CreateNode(ctx, NodeSpec{
					Name: fmt.Sprintf("node-%03d", i), Zone: zones[i%len(zones)], Region: "region-1",
					InternalIPs: []string{fmt.Sprintf("198.18.0.%d", i+1)},
				}); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := c.CreateNamespace(ctx, "scale"); err != nil {
				b.Fatal(err)
			}
			specs := make([]PodSpec, pods)
			for i := range specs {
				specs[i] = PodSpec{
					Namespace: "scale", Name: fmt.Sprintf("pod-%05d", i), NodeName: fmt.Sprintf("node-%03d", i%nodes),
					// 198.18.1.0 .. 198.18.40.15: inside 198.18.0.0/15, away from node IPs.
					IPs:    []string{fmt.Sprintf("198.18.%d.%d", 1+i/256, i%256)},
					Labels: map[string]string{"app": fmt.Sprintf("app-%d", i%50)},
				}
			}
			start := time.Now()
			if err := c.CreatePods(ctx, specs, 16); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(pods)/time.Since(start).Seconds(), "pods/s")
			time.Sleep(settle)
			reportRSS(b, c)
			list, err := c.Client.CoreV1().Pods("scale").List(ctx, metav1.ListOptions{FieldSelector: "status.phase=Running"})
			if err != nil || len(list.Items) != pods {
				b.Fatalf("listing running pods: %d, %v; want %d", len(list.Items), err, pods)
			}
			c.Stop()
		}
	})
}

func reportRSS(b *testing.B, c *Cluster) {
	b.Helper()
	api, etcd, err := c.RSS()
	if err != nil {
		b.Fatal(err)
	}
	const mib = 1 << 20
	b.ReportMetric(float64(api)/mib, "apiserver-MiB")
	b.ReportMetric(float64(etcd)/mib, "etcd-MiB")
	b.ReportMetric(float64(api+etcd)/mib, "total-MiB")
}
