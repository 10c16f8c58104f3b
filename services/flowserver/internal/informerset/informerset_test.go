package informerset

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	fcache "k8s.io/client-go/tools/cache/testing"
)

// TestSetTransformsFeedsAndSyncs: an added informer's objects reach its handler through its
// transform, Synced turns true only once every informer has delivered its initial state, and
// Shutdown returns after the context ends.
func TestSetTransformsFeedsAndSyncs(t *testing.T) {
	src := fcache.NewFakeControllerSource()
	src.Add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns", Labels: map[string]string{"x": "y"}}})
	i := cache.NewSharedIndexInformer(src, &corev1.Pod{}, 0, cache.Indexers{})
	var set Set
	var seen, labelled atomic.Int32
	trim := func(obj any) (any, error) {
		if p, ok := obj.(*corev1.Pod); ok {
			p.Labels = nil
		}
		return obj, nil
	}
	err := set.Add("pod", i, trim, cache.ResourceEventHandlerFuncs{AddFunc: func(obj any) {
		seen.Add(1)
		if len(obj.(*corev1.Pod).Labels) != 0 {
			labelled.Add(1)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if set.Synced() {
		t.Fatal("Synced before Start")
	}
	ctx, cancel := context.WithCancel(t.Context())
	set.Start(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for !set.Synced() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !set.Synced() {
		t.Fatal("never synced")
	}
	if seen.Load() != 1 || labelled.Load() != 0 {
		t.Errorf("handler saw %d pods, %d with labels; want 1 trimmed pod", seen.Load(), labelled.Load())
	}
	cancel()
	set.Shutdown()
}
