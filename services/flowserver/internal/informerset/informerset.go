// Package informerset runs a few client-go informers as one: each added with the transform that trims
// its objects and the handler that feeds them into the flowserver's tables, started together, synced
// when all are, and waited for at shutdown. The resolver's (pods, nodes, owners) and the Service
// index's (Services, EndpointSlices) informers are such sets.
package informerset

import (
	"context"
	"fmt"
	"sync"

	"k8s.io/client-go/tools/cache"
)

// Set is a group of informers. The zero value is empty and ready to use.
type Set struct {
	all    []cache.SharedIndexInformer
	synced []cache.InformerSynced
	wg     sync.WaitGroup
}

// Add registers i with its transform (nil for none) and its handler. name says what i caches, for errors.
func (s *Set) Add(name string, i cache.SharedIndexInformer, transform cache.TransformFunc, h cache.ResourceEventHandler) error {
	if transform != nil {
		if err := i.SetTransform(transform); err != nil {
			return fmt.Errorf("setting the %s cache transform: %w", name, err)
		}
	}
	reg, err := i.AddEventHandler(h)
	if err != nil {
		return fmt.Errorf("adding the %s informer handler: %w", name, err)
	}
	s.all = append(s.all, i)
	s.synced = append(s.synced, reg.HasSynced)
	return nil
}

// Start starts the informers; they stop when ctx is done.
func (s *Set) Start(ctx context.Context) {
	for _, i := range s.all {
		s.wg.Go(func() { i.RunWithContext(ctx) })
	}
}

// Shutdown waits for the informers' goroutines after ctx is done.
func (s *Set) Shutdown() { s.wg.Wait() }

// Synced reports whether every informer has listed and delivered its objects to its handler.
func (s *Set) Synced() bool {
	for _, ok := range s.synced {
		if !ok() {
			return false
		}
	}
	return true
}
