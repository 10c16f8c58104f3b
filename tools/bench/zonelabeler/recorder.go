package zonelabeler

import (
	"net/http"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// podTimes are the moments the benchmark saw for one pod, all on this process's monotonic clock.
type podTimes struct {
	created  time.Time // the create call returned (the pod exists, bound to its node)
	seen     time.Time // the benchmark's own watch first delivered the pod
	labelled time.Time // the benchmark's watch first delivered it with the zone label
}

// recorder collects podTimes from two sources: a transport wrapper on the client that creates pods, and
// a watch on the pods' namespace.
type recorder struct {
	zoneLabel, regionLabel string
	nodeZone, nodeRegion   map[string]string // what each pod must end up with, by node

	mu        sync.Mutex
	pods      map[string]*podTimes
	order     []string // pods in the order their create returned
	labelled  int
	want      int
	wrong     []string // pods labelled with a location other than their node's
	allDone   chan struct{}
	closeOnce sync.Once
}

func newRecorder(want int, zoneLabel, regionLabel string, nodeZone, nodeRegion map[string]string) *recorder {
	return &recorder{
		zoneLabel: zoneLabel, regionLabel: regionLabel, nodeZone: nodeZone, nodeRegion: nodeRegion,
		pods: make(map[string]*podTimes, want), want: want, allDone: make(chan struct{}),
	}
}

func (r *recorder) entry(name string) *podTimes {
	t, ok := r.pods[name]
	if !ok {
		t = &podTimes{}
		r.pods[name] = t
	}
	return t
}

// wrap returns a RoundTripper that notes when each pod's create call has returned. The testcluster
// helpers create a pod and then, at once, patch its status subresource; that PATCH is sent within
// microseconds of the create's response, and its URL names the pod, which the create's URL does not.
func (r *recorder) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		if name, ok := podStatusPatch(req); ok {
			now := time.Now()
			r.mu.Lock()
			if t := r.entry(name); t.created.IsZero() {
				t.created = now
				r.order = append(r.order, name)
			}
			r.mu.Unlock()
		}
		return rt.RoundTrip(req)
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// podStatusPatch reports the pod name of a PATCH /api/v1/namespaces/<ns>/pods/<name>/status.
func podStatusPatch(req *http.Request) (string, bool) {
	if req.Method != http.MethodPatch {
		return "", false
	}
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	if len(parts) != 7 || parts[0] != "api" || parts[1] != "v1" || parts[2] != "namespaces" ||
		parts[4] != "pods" || parts[6] != "status" || parts[5] == "" {
		return "", false
	}
	return parts[5], true
}

// observe is the watch handler for pod adds and updates.
func (r *recorder) observe(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.entry(pod.Name)
	if t.seen.IsZero() {
		t.seen = now
	}
	zone, ok := pod.Labels[r.zoneLabel]
	if !ok || !t.labelled.IsZero() {
		return
	}
	t.labelled = now
	if zone != r.nodeZone[pod.Spec.NodeName] || pod.Labels[r.regionLabel] != r.nodeRegion[pod.Spec.NodeName] {
		r.wrong = append(r.wrong, pod.Name+" on "+pod.Spec.NodeName+": zone="+zone+" region="+pod.Labels[r.regionLabel])
	}
	r.labelled++
	if r.labelled >= r.want {
		r.closeOnce.Do(func() { close(r.allDone) })
	}
}

// createdPod returns the i-th pod (modulo how many there are) whose create has returned, and false
// while there is none.
func (r *recorder) createdPod(i int) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.order) == 0 {
		return "", false
	}
	return r.order[i%len(r.order)], true
}

// progress returns how many pods have been seen labelled.
func (r *recorder) progress() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.labelled
}

// results is what the recorder measured once all pods are labelled.
type results struct {
	createToLabel []time.Duration // create returned → label seen
	seenToLabel   []time.Duration // pod first seen → label seen, both on the same watch
	lastCreated   time.Time
	lastLabelled  time.Time
	wrong         []string
	missing       int // pods labelled without a recorded create (should be none)
}

func (r *recorder) results() results {
	r.mu.Lock()
	defer r.mu.Unlock()
	var res results
	res.wrong = append(res.wrong, r.wrong...)
	for _, t := range r.pods {
		if t.created.After(res.lastCreated) {
			res.lastCreated = t.created
		}
		if t.labelled.IsZero() {
			continue
		}
		if t.labelled.After(res.lastLabelled) {
			res.lastLabelled = t.labelled
		}
		if t.created.IsZero() {
			res.missing++
		} else {
			res.createToLabel = append(res.createToLabel, t.labelled.Sub(t.created))
		}
		res.seenToLabel = append(res.seenToLabel, t.labelled.Sub(t.seen))
	}
	return res
}
