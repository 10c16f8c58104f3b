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
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/abusetest"
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

	mix := abusetest.New(&http.Client{Timeout: 30 * time.Second}, srv.URL+Path, 5*time.Second)
	do, attack := mix.Send, mix.Attack
	attack("heavy", 8, 40, func(w, _ int) int {
		b := heavyBodies[w%4]
		return do(fmt.Sprintf("agent-h-%d", w%4), bytes.NewReader(b), int64(len(b)), "gzip")
	})
	attack("bad_token", 4, 200, func(w, i int) int {
		return do(fmt.Sprintf("junk-%d-%d", w, i), strings.NewReader("ZTRP"), 4, "")
	})
	attack("slow", 4, 2, func(int, int) int {
		return do("agent-slow", mix.Trickle(4096, 20*time.Millisecond), 4096, "")
	})
	// Refused 503 while maximal reports hold the budget, streamed bodies back off and come again
	// through the whole mix (the cluster test of the same name says why).
	attack("streamed", 2, 80, abusetest.Backoff(100*time.Millisecond, func(int, int) int {
		return do("agent-stream", io.MultiReader(bytes.NewReader(make([]byte, 1<<20))), -1, "")
	}))

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
	mix.Stop()
	answers := mix.Got()
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
	mix.CheckDefences(t)
	// Four slow senders share one identity that may have two requests in flight: the server refuses the
	// others before reading a byte (identity_busy; no other class has more workers per identity than
	// that). Whether a trickling client reads that 429 or only sees the connection end while it is still
	// writing is a race in the client, so the server's own count is the truth checked here.
	if n := hs.rejected(t, "identity_busy"); n == 0 {
		t.Errorf("the slow senders were never refused as identity_busy (they saw %v)", answers["slow"])
	}
	var all float64
	for _, r := range reasons {
		all += hs.rejected(t, r)
	}
	mix.CheckCounted(t, good, func(r string) float64 { return hs.rejected(t, r) }, all)
	if used := hs.h.budget.inUse(); used != 0 {
		t.Errorf("%d bytes of the budget still reserved after every request ended", used)
	}
}
