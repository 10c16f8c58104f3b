// Package lease elects one leader among replicas with a coordination.k8s.io/v1 Lease.
//
// It follows the protocol of client-go's tools/leaderelection, so it interoperates with it on the same
// Lease: the holder renews spec.renewTime every RetryPeriod; another replica takes the Lease only after
// it has seen the same record unchanged for LeaseDuration on its own clock (so clock skew between
// replicas does not matter); writes are optimistic (resourceVersion), so two replicas can never both
// take it. It exists because client-go's package imports the typed clientset, whose scheme links every
// built-in API group into the binary: 18 MiB more resident memory, idle, for a process that reads pods
// and nodes (see kubeclient/clientset).
//
// Unlike client-go's elector, Run waits for the leading function to return before it releases the
// Lease or campaigns again, so a replica's work has stopped before another replica may start.
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// Config says which Lease to hold, as whom, and how fast to act.
type Config struct {
	// Client talks to coordination.k8s.io/v1.
	Client    rest.Interface
	Namespace string
	Name      string
	Identity  string
	// LeaseDuration is how long a record must stay unchanged before another replica may take the Lease.
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader keeps failing to renew before it stops leading.
	RenewDeadline time.Duration
	// RetryPeriod is the interval between attempts to take or renew.
	RetryPeriod time.Duration
	Log         *slog.Logger
}

func (c Config) validate() error {
	switch {
	case c.Client == nil:
		return errors.New("no coordination.k8s.io client")
	case c.Namespace == "" || c.Name == "" || c.Identity == "":
		return errors.New("lease namespace, name and identity must all be set")
	case !(0 < c.RetryPeriod && c.RetryPeriod < c.RenewDeadline && c.RenewDeadline < c.LeaseDuration):
		return fmt.Errorf("want 0 < retry period (%s) < renew deadline (%s) < lease duration (%s)", c.RetryPeriod, c.RenewDeadline, c.LeaseDuration)
	}
	return nil
}

// elector is one Run's state: the record it last saw and when it saw it change.
type elector struct {
	cfg      Config
	log      *slog.Logger
	observed *coordinationv1.Lease
	seenAt   time.Time // local time the observed record last changed
	leader   string    // holder last logged
}

// Run campaigns for the Lease until ctx is done. Each time it takes the Lease it calls lead with a
// context that ends when ctx is done or the Lease cannot be renewed within RenewDeadline, and waits for
// lead to return. Then, if ctx is done, it releases the Lease so a standby takes over at once;
// otherwise (the Lease was lost) it campaigns again. It returns nil when ctx is done, or an error for
// an invalid Config.
func Run(ctx context.Context, cfg Config, lead func(ctx context.Context)) error {
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("configuring leader election: %w", err)
	}
	e := &elector{cfg: cfg, log: cfg.Log}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	for ctx.Err() == nil {
		if !e.acquire(ctx) {
			break
		}
		e.lead(ctx, lead)
	}
	return nil
}

// acquire tries every RetryPeriod until it holds the Lease (true) or ctx is done (false).
func (e *elector) acquire(ctx context.Context) bool {
	for {
		if e.tryAcquireOrRenew(ctx) {
			e.log.Info("took the lease")
			return true
		}
		if !sleep(ctx, jitter(e.cfg.RetryPeriod)) {
			return false
		}
	}
}

// lead runs fn while the Lease is renewed, and returns after fn has returned.
func (e *elector) lead(ctx context.Context, fn func(context.Context)) {
	leadCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer stop() // fn gave up on its own: nothing left to lead for
		fn(leadCtx)
	}()
	for leadCtx.Err() == nil {
		if !sleep(leadCtx, e.cfg.RetryPeriod) {
			break
		}
		if !e.renew(leadCtx) {
			e.log.Warn("could not renew the lease within the renew deadline: stopping work", "renew_deadline", e.cfg.RenewDeadline)
			break
		}
	}
	stop()
	<-done
	if ctx.Err() != nil {
		e.release()
	}
}

// renew retries every RetryPeriod until it renewed (true) or RenewDeadline passed (false).
func (e *elector) renew(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RenewDeadline)
	defer cancel()
	for {
		if e.tryAcquireOrRenew(ctx) {
			return true
		}
		if !sleep(ctx, e.cfg.RetryPeriod) {
			return false
		}
	}
}

// tryAcquireOrRenew makes one attempt to write this replica as the holder. Errors are logged and
// reported as false: the callers retry.
func (e *elector) tryAcquireOrRenew(ctx context.Context) bool {
	now := time.Now()
	// Fast path: the leader renews the record it wrote last, without reading it first. A conflict
	// means someone else wrote it; the slow path below finds out who.
	if e.observed != nil && holder(e.observed) == e.cfg.Identity && now.Before(e.seenAt.Add(e.cfg.LeaseDuration)) {
		next := e.observed.DeepCopy()
		next.Spec.RenewTime = &metav1.MicroTime{Time: now}
		if err := e.update(ctx, next, now); err == nil {
			return true
		}
	}
	current := &coordinationv1.Lease{}
	err := e.cfg.Client.Get().Namespace(e.cfg.Namespace).Resource("leases").Name(e.cfg.Name).Do(ctx).Into(current)
	if apierrors.IsNotFound(err) {
		lease := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: e.cfg.Namespace, Name: e.cfg.Name},
			Spec:       e.spec(now, now, 0),
		}
		created := &coordinationv1.Lease{}
		err := e.cfg.Client.Post().Namespace(e.cfg.Namespace).Resource("leases").Body(lease).Do(ctx).Into(created)
		if err != nil {
			e.log.Warn("creating the lease failed", "error", err)
			return false
		}
		e.observe(created, now)
		return true
	}
	if err != nil {
		e.log.Warn("reading the lease failed", "error", err)
		return false
	}
	if e.observed == nil || !sameRecord(e.observed, current) {
		e.observe(current, now)
	} else {
		e.observed = current // same record, newer object (resourceVersion)
	}
	h := holder(current)
	if h != "" && h != e.cfg.Identity && now.Before(e.seenAt.Add(e.recordDuration(current))) {
		return false // held by another replica that renewed within its lease duration
	}
	next := current.DeepCopy()
	if h == e.cfg.Identity {
		next.Spec = e.spec(timeOr(current.Spec.AcquireTime, now), now, int32Or(current.Spec.LeaseTransitions))
	} else {
		next.Spec = e.spec(now, now, int32Or(current.Spec.LeaseTransitions)+1)
	}
	if err := e.update(ctx, next, now); err != nil {
		if !apierrors.IsConflict(err) {
			e.log.Warn("writing the lease failed", "error", err)
		}
		return false
	}
	return true
}

// recordDuration is the lease duration the holder wrote: a holder configured differently from us (or
// one that released the Lease with a one-second duration) is judged by its own promise.
func (e *elector) recordDuration(l *coordinationv1.Lease) time.Duration {
	if s := int32Or(l.Spec.LeaseDurationSeconds); s > 0 {
		return time.Duration(s) * time.Second
	}
	return e.cfg.LeaseDuration
}

func (e *elector) update(ctx context.Context, lease *coordinationv1.Lease, now time.Time) error {
	updated := &coordinationv1.Lease{}
	err := e.cfg.Client.Put().Namespace(e.cfg.Namespace).Resource("leases").Name(e.cfg.Name).Body(lease).Do(ctx).Into(updated)
	if err != nil {
		return err
	}
	e.observe(updated, now)
	return nil
}

// release hands the Lease back: no holder and a one-second duration, as client-go's elector writes, so
// a standby (of ours or client-go's) takes over without waiting out the lease duration.
func (e *elector) release() {
	if e.observed == nil || holder(e.observed) != e.cfg.Identity {
		return
	}
	// ctx is done when we release: the writes get their own bounded time.
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RenewDeadline)
	defer cancel()
	for {
		now := time.Now()
		next := e.observed.DeepCopy()
		empty := ""
		next.Spec = e.spec(now, now, int32Or(e.observed.Spec.LeaseTransitions))
		next.Spec.HolderIdentity = &empty
		one := int32(1)
		next.Spec.LeaseDurationSeconds = &one
		err := e.update(ctx, next, now)
		if err == nil {
			e.log.Info("released the lease")
			return
		}
		// A renewal whose request the ending context cut off on our side may still have been written:
		// our record is then a version behind and the release conflicts. Read the Lease again and
		// release it while it still names us.
		if apierrors.IsConflict(err) {
			current := &coordinationv1.Lease{}
			if gerr := e.cfg.Client.Get().Namespace(e.cfg.Namespace).Resource("leases").Name(e.cfg.Name).Do(ctx).Into(current); gerr == nil {
				if holder(current) != e.cfg.Identity {
					return // another replica took it after it expired: nothing of ours to release
				}
				e.observed = current
				continue
			}
		}
		e.log.Warn("releasing the lease failed; a standby takes over when it expires", "error", err)
		return
	}
}

func (e *elector) spec(acquired, renewed time.Time, transitions int32) coordinationv1.LeaseSpec {
	id := e.cfg.Identity
	seconds := int32((e.cfg.LeaseDuration + time.Second - 1) / time.Second) // whole seconds, never shorter
	return coordinationv1.LeaseSpec{
		HolderIdentity:       &id,
		LeaseDurationSeconds: &seconds,
		AcquireTime:          &metav1.MicroTime{Time: acquired},
		RenewTime:            &metav1.MicroTime{Time: renewed},
		LeaseTransitions:     &transitions,
	}
}

func (e *elector) observe(lease *coordinationv1.Lease, now time.Time) {
	e.observed, e.seenAt = lease, now
	if h := holder(lease); h != e.leader {
		e.leader = h
		if h != "" && h != e.cfg.Identity {
			e.log.Info("another replica leads", "leader", h)
		}
	}
}

// sameRecord compares what the holder writes; a change of any of it restarts the expiry clock.
func sameRecord(a, b *coordinationv1.Lease) bool {
	return holder(a) == holder(b) &&
		int32Or(a.Spec.LeaseDurationSeconds) == int32Or(b.Spec.LeaseDurationSeconds) &&
		int32Or(a.Spec.LeaseTransitions) == int32Or(b.Spec.LeaseTransitions) &&
		timeOr(a.Spec.AcquireTime, time.Time{}).Equal(timeOr(b.Spec.AcquireTime, time.Time{})) &&
		timeOr(a.Spec.RenewTime, time.Time{}).Equal(timeOr(b.Spec.RenewTime, time.Time{}))
}

func holder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func int32Or(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

func timeOr(t *metav1.MicroTime, def time.Time) time.Time {
	if t == nil {
		return def
	}
	return t.Time
}

// jitter spreads the replicas' attempts as client-go does (up to 1.2 periods more).
func jitter(d time.Duration) time.Duration {
	return d + time.Duration(rand.Float64()*1.2*float64(d))
}

// sleep waits d or until ctx is done, and reports whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
