package markstore

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/dedupe"
)

func TestEncodeDecodeMerge(t *testing.T) {
	at := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	a := []dedupe.Mark{
		{Node: "node-a", BootID: [16]byte{1}, Sequence: 7, Updated: at},
		{Node: "node-a", BootID: [16]byte{2}, Sequence: 1 << 63, Updated: at},
		{Node: "node-b", BootID: [16]byte{1}, Sequence: 3, Updated: at.Add(-time.Minute)},
	}
	b := []dedupe.Mark{
		{Node: "node-a", BootID: [16]byte{1}, Sequence: 5, Updated: at.Add(time.Minute)}, // lower sequence, later time
		{Node: "node-b", BootID: [16]byte{1}, Sequence: 4, Updated: at.Add(-2 * time.Minute)},
		{Node: "node-c", BootID: [16]byte{3}, Sequence: 1, Updated: at},
	}
	data, err := encode(merge(a, b))
	if err != nil {
		t.Fatal(err)
	}
	got, err := decode(data)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]dedupe.Mark{
		"node-a/1": {Node: "node-a", BootID: [16]byte{1}, Sequence: 7, Updated: at.Add(time.Minute)},
		"node-a/2": {Node: "node-a", BootID: [16]byte{2}, Sequence: 1 << 63, Updated: at},
		"node-b/1": {Node: "node-b", BootID: [16]byte{1}, Sequence: 4, Updated: at.Add(-time.Minute)},
		"node-c/3": {Node: "node-c", BootID: [16]byte{3}, Sequence: 1, Updated: at},
	}
	if len(got) != len(want) {
		t.Fatalf("decoded %d marks, want %d: %v", len(got), len(want), got)
	}
	for _, m := range got {
		w := want[fmt.Sprintf("%s/%d", m.Node, m.BootID[0])]
		if m.Sequence != w.Sequence || !m.Updated.Equal(w.Updated) || m.BootID != w.BootID {
			t.Errorf("mark %s/%x = %d at %s, want %d at %s", m.Node, m.BootID, m.Sequence, m.Updated, w.Sequence, w.Updated)
		}
	}
	again, _ := encode(merge(b, a))
	if again != data {
		t.Errorf("the same marks encode differently:\n%s\n%s", data, again)
	}
}

func TestDecodeRefusesBrokenDocuments(t *testing.T) {
	for _, tt := range []struct{ data, want string }{
		{`{`, "decoding dedupe marks"},
		{`{"version":2,"marks":{}}`, "version 2, want 1"},
		{`{"version":1,"marks":{"n":{"zz":[1,2]}}}`, `boot id "zz" is not 32 hex digits`},
		{`{"version":1,"marks":{"n":{"01000000000000000000000000000000":[-1,2]}}}`, "want [sequence, unix seconds]"},
	} {
		if _, err := decode(tt.data); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("decode(%s) = %v, want an error with %q", tt.data, err, tt.want)
		}
	}
	if m, err := decode(""); err != nil || m != nil {
		t.Errorf("decode of the shipped, empty ConfigMap = %v, %v", m, err)
	}
}

// TestSize measures what a mark takes, for docs/flowserver.md's limits: node names as EKS names
// them (ip-10-0-12-34.us-east-1.compute.internal, 41 bytes), one process per node, and a node with
// many processes (a crash loop).
func TestSize(t *testing.T) {
	at := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	size := func(nodes, boots int) int {
		var marks []dedupe.Mark
		for n := range nodes {
			for b := range boots {
				m := dedupe.Mark{Node: fmt.Sprintf("ip-10-0-%d-%d.us-east-1.compute.internal", n/256+100, n%256+100), Sequence: 123456, Updated: at}
				m.BootID[0], m.BootID[1], m.BootID[15] = byte(b), byte(b>>8), 0xff
				marks = append(marks, m)
			}
		}
		data, err := encode(marks)
		if err != nil {
			t.Fatal(err)
		}
		return len(data)
	}
	perNode := float64(size(1000, 1)) / 1000
	perBoot := float64(size(10, 100)-size(10, 1)) / (10 * 99)
	t.Logf("one process per node: %.0f bytes a node, %d nodes fit; each further process of a node: %.0f bytes, %d fit",
		perNode, int(MaxBytes/perNode), perBoot, int(MaxBytes/perBoot))
	if perNode > 110 || perBoot > 70 {
		t.Errorf("marks grew: %.0f bytes per node, %.0f per further boot; update docs/flowserver.md", perNode, perBoot)
	}
	var marks []dedupe.Mark
	for i := range MaxBytes / 30 {
		m := dedupe.Mark{Node: "n", Updated: at}
		m.BootID[0], m.BootID[1], m.BootID[2] = byte(i), byte(i>>8), byte(i>>16)
		marks = append(marks, m)
	}
	if _, err := encode(marks); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "ZONETOLL_DEDUPE_MAX_KEYS") {
		t.Errorf("encode of %d marks = %v, want ErrTooLarge naming the setting", len(marks), err)
	}
}
