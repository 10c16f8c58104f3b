// Package abusetest is the attack harness of the flowserver's worst-mix tests (ingest's against its
// handler, app's against the whole server): senders by class until a deadline, slow and streamed
// bodies, and the check that every refusal a client saw is counted under a reason of its status.
// Imported only by tests.
package abusetest

import (
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/zonetoll/zonetoll/testkit/gate"
)

// Mix runs attackers against one report URL until its deadline or Stop.
type Mix struct {
	client   *http.Client
	url      string
	deadline time.Time
	stop     chan struct{}
	wg       sync.WaitGroup

	mu  sync.Mutex
	got map[string]map[int]int // sender class → status → count (0: no answer, connection cut)
}

// New starts a mix posting to url (the full report path) with client; attackers send until d has
// passed.
func New(client *http.Client, url string, d time.Duration) *Mix {
	return &Mix{client: client, url: url, deadline: time.Now().Add(d), stop: make(chan struct{}), got: map[string]map[int]int{}}
}

// Send posts body with the bearer token and returns the status, or 0 when the connection was cut
// before an answer. contentLength -1 sends the body chunked.
func (m *Mix) Send(token string, body io.Reader, contentLength int64, encoding string) int {
	req, err := http.NewRequest(http.MethodPost, m.url, body)
	if err != nil {
		return -1
	}
	req.ContentLength = contentLength
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := m.client.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// Attack runs workers senders of class, each sending at most maxRequests (bounded in count and
// time), and tallies their answers; one(worker, i) sends request i of a worker and returns its status.
func (m *Mix) Attack(class string, workers, maxRequests int, one func(worker, i int) int) {
	for w := range workers {
		m.wg.Go(func() {
			for i := range maxRequests {
				select {
				case <-m.stop:
					return
				default:
				}
				if time.Now().After(m.deadline) {
					return
				}
				st := one(w, i)
				m.mu.Lock()
				if m.got[class] == nil {
					m.got[class] = map[int]int{}
				}
				m.got[class][st]++
				m.mu.Unlock()
			}
		})
	}
}

// Backoff wraps a sender so that, told to retry (429 or 503), it waits d before its next request, as
// a persistent client honouring Retry-After does. A class whose defence shows only once the server
// admits its body (a streamed body is cut at its limit, 413, only when the byte budget had room for
// it) then meets the server at many moments of the mix instead of spending all its requests in the
// first milliseconds, while maximal reports hold the budget (CI saw 20 of 20 streamed bodies
// refused 503 that way).
func Backoff(d time.Duration, one func(worker, i int) int) func(worker, i int) int {
	return func(w, i int) int {
		st := one(w, i)
		if st == http.StatusTooManyRequests || st == http.StatusServiceUnavailable {
			time.Sleep(d)
		}
		return st
	}
}

// Stop ends every attacker (slow bodies included) and waits for them; Got is final afterwards.
func (m *Mix) Stop() {
	close(m.stop)
	m.wg.Wait()
}

// Got is the tally of answers by class and status.
func (m *Mix) Got() map[string]map[int]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.got
}

// Trickle is a body that sends one byte every interval, up to n bytes or until Stop.
func (m *Mix) Trickle(n int, interval time.Duration) io.Reader {
	return &trickle{n: n, interval: interval, stop: m.stop}
}

type trickle struct {
	n        int
	interval time.Duration
	stop     chan struct{}
}

func (s *trickle) Read(p []byte) (int, error) {
	if s.n == 0 {
		return 0, io.EOF
	}
	select {
	case <-s.stop:
		return 0, io.ErrUnexpectedEOF
	case <-time.After(s.interval):
	}
	p[0] = 'Z'
	s.n--
	return 1, nil
}

// reasons are the refusal reasons a status may stand for in these mixes.
var reasons = map[int][]string{
	http.StatusUnauthorized:          {"unauthenticated"},
	http.StatusTooManyRequests:       {"rate_limited", "identity_busy"},
	http.StatusServiceUnavailable:    {"overloaded"},
	http.StatusRequestEntityTooLarge: {"body_too_large"},
	http.StatusBadRequest:            {"read_error"},
}

// CheckDefences checks that every kind of attack of the worst mix met its defence, by what the
// attackers of the classes "bad_token", "heavy" and "streamed" were answered: tokens are checked before
// a slot is taken, so a bad token is answered 401 only, never 503, even while maximal reports hold every
// slot; and maximal reports were applied (200), bad tokens refused (401) and streamed bodies cut off
// (413) at least once each.
func (m *Mix) CheckDefences(t gate.TB) {
	t.Helper()
	answers := m.Got()
	for st, n := range answers["bad_token"] {
		if st != http.StatusUnauthorized {
			t.Errorf("bad tokens got %d %d times, want only 401", st, n)
		}
	}
	for class, status := range map[string]int{"heavy": http.StatusOK, "bad_token": http.StatusUnauthorized, "streamed": http.StatusRequestEntityTooLarge} {
		if answers[class][status] == 0 {
			t.Errorf("%s senders never got %d: %v", class, status, answers[class])
		}
	}
}

// CheckCounted fails t unless every refusal a client saw (the attackers' and good, the well-behaved
// agent's answers) is counted by the server under a reason of its status (rejected gives the server's
// count of a reason), and no refusal is counted under another reason (allRejected is the server's count
// of every refusal). A body cut off while being sent may leave its sender without an answer (status 0);
// the server still counts it, so counts may exceed what clients saw, never fall short.
func (m *Mix) CheckCounted(t gate.TB, good map[int]int, rejected func(reason string) float64, allRejected float64) {
	t.Helper()
	seen := map[int]int{}
	for class, byStatus := range m.Got() {
		for status, n := range byStatus {
			if status == http.StatusOK {
				continue
			}
			cut := status == 0 && (class == "slow" || class == "streamed")
			if _, ok := reasons[status]; !ok && !cut {
				t.Errorf("%s senders got %d %d times, which no defence here answers", class, status, n)
			}
			seen[status] += n
		}
	}
	for status, n := range good {
		if status != http.StatusOK {
			seen[status] += n
		}
	}
	var counted float64
	for status, rs := range reasons {
		var sum float64
		for _, r := range rs {
			sum += rejected(r)
		}
		counted += sum
		if sum < float64(seen[status]) {
			t.Errorf("clients saw %d answers %d, the server counted %v under %v", seen[status], status, sum, rs)
		}
	}
	if rejected("read_error") == 0 {
		t.Error("no slow body was cut off by the read timeout (read_error)")
	}
	if allRejected != counted {
		t.Errorf("%v refusals counted in all, %v under the expected reasons: some other reason appeared", allRejected, counted)
	}
}
