package ingest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/auth"
	"github.com/zonetoll/zonetoll/shared/report"
)

// boundAuth accepts "agent-<node>" as the agent's token bound to a pod on <node>, and reviews every
// other token for a millisecond before refusing it, as TokenReview would.
type boundAuth struct{}

func (boundAuth) Authenticate(_ context.Context, token string) (auth.Identity, error) {
	if node, ok := strings.CutPrefix(token, "agent-"); ok {
		return auth.Identity{Username: "system:serviceaccount:zonetoll:flowagent", Node: node}, nil
	}
	time.Sleep(time.Millisecond)
	return auth.Identity{}, fmt.Errorf("%w: token not accepted", auth.ErrUnauthenticated)
}

// The worst mix the limits allow, over a real HTTP server on loopback with its read timeout: maximal
// reports from four agents on every slot, a flood of bad tokens, slow bodies, bodies streamed without
// Content-Length past their limit, while a well-behaved agent reports and retries 429/503 as the
// agent does. Its reports all land, counted exactly, and every refusal is counted under a reason of
// its status. The cluster test of the same name in internal/app does this with TokenReview.
func TestWorstAllowedMixOverHTTP(t *testing.T) {
	c := newCluster(t, 30, 3, 3, 0)
	const maxFlows = 5_000
	lim := Limits{MaxBodyBytes: 1 << 20, MaxFlows: maxFlows, NodeRate: 2, NodeBurst: 20, MaxInFlight: 8,
		MaxInFlightPerIdentity: 2, MaxStreamedBodyBytes: 16 << 10, MaxClockSkew: time.Minute}
	hs := newHarness(t, c, lim, time.Hour)
	hs.h.now = time.Now
	hs.h.auth = boundAuth{}
	rng := rand.New(rand.NewPCG(30, 30))
	now := time.Now()
	heavyBodies := make([][]byte, 4)
	for i := range heavyBodies {
		r := &report.Report{Node: fmt.Sprintf("h-%d", i), BootID: [16]byte{9}, Sequence: 1, WindowStart: now.Add(-10 * time.Second), WindowEnd: now, Flows: c.flows(maxFlows, rng)}
		var buf bytes.Buffer
		if err := report.WriteGzip(&buf, r); err != nil {
			t.Fatal(err)
		}
		heavyBodies[i] = buf.Bytes()
	}
	// Two maximal reports fill the budget.
	hs.h.budget.max = 2 * (int64(len(heavyBodies[0])) + hs.h.cost(0, report.Limits{MaxFlows: maxFlows}.MaxEncodedLen()))
	srv := httptest.NewUnstartedServer(hs.h)
	srv.Config.ReadTimeout = 2 * time.Second
	srv.Start()
	defer srv.Close()

	client := &http.Client{Timeout: 30 * time.Second}
	do := func(token string, body io.Reader, contentLength int64, encoding string) int {
		req, err := http.NewRequest(http.MethodPost, srv.URL+Path, body)
		if err != nil {
			return -1
		}
		req.ContentLength = contentLength
		req.Header.Set("Authorization", "Bearer "+token)
		if encoding != "" {
			req.Header.Set("Content-Encoding", encoding)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	var mu sync.Mutex
	answers := map[string]map[int]int{}
	deadline := time.Now().Add(5 * time.Second)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	attack := func(class string, workers, maxRequests int, one func(worker, i int) int) {
		for w := range workers {
			wg.Go(func() {
				for i := range maxRequests {
					select {
					case <-stop:
						return
					default:
					}
					if time.Now().After(deadline) {
						return
					}
					st := one(w, i)
					mu.Lock()
					if answers[class] == nil {
						answers[class] = map[int]int{}
					}
					answers[class][st]++
					mu.Unlock()
				}
			})
		}
	}
	attack("heavy", 8, 40, func(w, _ int) int {
		b := heavyBodies[w%4]
		return do(fmt.Sprintf("agent-h-%d", w%4), bytes.NewReader(b), int64(len(b)), "gzip")
	})
	attack("bad_token", 4, 200, func(w, i int) int {
		return do(fmt.Sprintf("junk-%d-%d", w, i), strings.NewReader("ZTRP"), 4, "")
	})
	attack("slow", 4, 2, func(int, int) int {
		return do("agent-slow", &slowBody{n: 4096, interval: 20 * time.Millisecond, stop: stop}, 4096, "")
	})
	attack("streamed", 2, 10, func(int, int) int {
		return do("agent-stream", io.MultiReader(bytes.NewReader(make([]byte, 1<<20))), -1, "")
	})

	good := map[int]int{}
	var want float64
	for seq := uint64(1); seq <= 15; seq++ {
		r := &report.Report{Node: "node-000", BootID: [16]byte{10}, Sequence: seq, WindowStart: time.Now().Add(-time.Second), WindowEnd: time.Now(),
			Flows: []report.Flow{{Src: c.podIPs[0], Dst: c.podIPs[1], Bytes: 1_000 + seq, Packets: 1}}}
		body, err := report.Encode(r)
		if err != nil {
			t.Fatal(err)
		}
		landed := false
		for attempt := 0; attempt < 40 && !landed; attempt++ {
			st := do("agent-node-000", bytes.NewReader(body), int64(len(body)), "")
			good[st]++
			switch st {
			case http.StatusOK:
				landed = true
			case http.StatusTooManyRequests, http.StatusServiceUnavailable:
				time.Sleep(100 * time.Millisecond)
			default:
				t.Fatalf("the good agent's report %d: %d", seq, st)
			}
		}
		if !landed {
			t.Fatalf("the good agent's report %d did not land in 40 attempts (answers %v)", seq, good)
		}
		want += float64(1_000 + seq)
		time.Sleep(150 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("good agent: %v; attackers: %v", good, answers)

	// The heavy reports' bytes (each applied once) and the good agent's.
	for _, b := range heavyBodies {
		r, err := report.ReadGzip(bytes.NewReader(b), 0, report.Limits{MaxFlows: maxFlows})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range r.Flows {
			want += float64(f.Bytes)
		}
	}
	if got, _ := hs.totals(t); got != want {
		t.Errorf("counted %v bytes, want %v (the good agent's and each heavy report once)", got, want)
	}
	// Tokens are checked before a slot is taken: a bad token is answered 401 even while maximal
	// reports hold every slot, never 503.
	for st, n := range answers["bad_token"] {
		if st != http.StatusUnauthorized {
			t.Errorf("bad tokens got %d %d times, want only 401", st, n)
		}
	}
	for class, status := range map[string]int{"heavy": http.StatusOK, "bad_token": http.StatusUnauthorized, "streamed": http.StatusRequestEntityTooLarge, "slow": http.StatusTooManyRequests} {
		if answers[class][status] == 0 {
			t.Errorf("%s senders never got %d: %v", class, status, answers[class])
		}
	}
	byStatus := map[int][]string{
		http.StatusUnauthorized:          {"unauthenticated"},
		http.StatusTooManyRequests:       {"rate_limited", "identity_busy"},
		http.StatusServiceUnavailable:    {"overloaded"},
		http.StatusRequestEntityTooLarge: {"body_too_large"},
		http.StatusBadRequest:            {"read_error"},
	}
	seen := map[int]int{}
	for class, got := range answers {
		for st, n := range got {
			if st == http.StatusOK {
				continue
			}
			cut := st == 0 && (class == "slow" || class == "streamed")
			if _, ok := byStatus[st]; !ok && !cut {
				t.Errorf("%s senders got %d %d times, which no defence here answers", class, st, n)
			}
			seen[st] += n
		}
	}
	for st, n := range good {
		if st != http.StatusOK {
			seen[st] += n
		}
	}
	var counted float64
	for st, rs := range byStatus {
		var sum float64
		for _, r := range rs {
			sum += hs.rejected(t, r)
		}
		counted += sum
		if sum < float64(seen[st]) {
			t.Errorf("clients saw %d answers %d, the server counted %v under %v", seen[st], st, sum, rs)
		}
	}
	if v := hs.rejected(t, "read_error"); v == 0 {
		t.Error("no slow body was cut off by the read timeout (read_error)")
	}
	var all float64
	for _, r := range reasons {
		all += hs.rejected(t, r)
	}
	if all != counted {
		t.Errorf("%v refusals counted in all, %v under the expected reasons: some other reason appeared", all, counted)
	}
	if used := hs.h.budget.inUse(); used != 0 {
		t.Errorf("%d bytes of the budget still reserved after every request ended", used)
	}
}

// slowBody sends one byte every interval, up to n bytes or until stopped.
type slowBody struct {
	n        int
	interval time.Duration
	stop     chan struct{}
}

func (s *slowBody) Read(p []byte) (int, error) {
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
