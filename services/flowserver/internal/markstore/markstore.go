// Package markstore keeps the dedupe marks (package dedupe) of one flowserver in a ConfigMap, so that
// the next process, after a restart or a rollout, starts with them: a report applied by the previous
// process whose answer was lost is then still answered as a duplicate.
//
// The ConfigMap is shipped with the manifests and only read and replaced here (RBAC get and update
// on its name alone). Writes are optimistic (resourceVersion); on a conflict the stored marks are read
// again and merged, the higher sequence winning per agent process, so no writer ever lowers a mark.
package markstore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"

	"github.com/zonetoll/zonetoll/services/flowserver/internal/dedupe"
)

// Key is the ConfigMap data key the marks are stored under.
const Key = "marks.json"

// MaxBytes is the most the marks may take: the API server refuses a ConfigMap over 1 MiB (data,
// keys and metadata together); the rest is left for the metadata.
const MaxBytes = 1<<20 - 16<<10

// ErrTooLarge is returned by Save when the marks do not fit in a ConfigMap.
var ErrTooLarge = errors.New("dedupe marks too large for a ConfigMap")

// FieldManager names this writer in the ConfigMap's managedFields.
const FieldManager = "flowserver"

// Store reads and writes the marks of one ConfigMap.
type Store struct {
	client          rest.Interface // core/v1
	namespace, name string
}

// New returns a Store of the ConfigMap namespace/name through a core/v1 REST client.
func New(client rest.Interface, namespace, name string) *Store {
	return &Store{client: client, namespace: namespace, name: name}
}

// Name is namespace/name of the ConfigMap.
func (s *Store) Name() string { return s.namespace + "/" + s.name }

// document is the stored form: per node, per boot id (hex), the sequence and the Unix second of the
// mark's last update. Node names are written once, which keeps a mark near 60 bytes.
type document struct {
	Version int                                  `json:"version"`
	Marks   map[string]map[string][2]json.Number `json:"marks"`
}

// Load reads the stored marks. A ConfigMap without the key (as shipped) holds none.
func (s *Store) Load(ctx context.Context) ([]dedupe.Mark, error) {
	cm, err := s.get(ctx)
	if err != nil {
		return nil, err
	}
	return decode(cm.Data[Key])
}

func (s *Store) get(ctx context.Context) (*corev1.ConfigMap, error) {
	var cm corev1.ConfigMap
	err := s.client.Get().Namespace(s.namespace).Resource("configmaps").Name(s.name).Do(ctx).Into(&cm)
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("reading dedupe marks: ConfigMap %s not found (ZONETOLL_DEDUPE_CONFIG_MAP; the manifests ship it: kustomize/base/flowserver/zone): %w", s.Name(), err)
	case err != nil:
		return nil, fmt.Errorf("reading dedupe marks from ConfigMap %s: %w", s.Name(), err)
	}
	return &cm, nil
}

// Save replaces the stored marks with marks merged with what is stored (the higher sequence per agent
// process wins), read just before: the update carries that read's resourceVersion, so a write in
// between is a conflict, read and merged again. It returns the size written.
func (s *Store) Save(ctx context.Context, marks []dedupe.Mark) (int, error) {
	for attempt := 0; ; attempt++ {
		cm, err := s.get(ctx)
		if err != nil {
			return 0, err
		}
		stored, err := decode(cm.Data[Key])
		if err != nil {
			// A broken document is replaced rather than kept forever: the live marks are newer.
			stored = nil
		}
		data, err := encode(merge(marks, stored))
		if err != nil {
			return 0, err
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[Key] = data
		var out corev1.ConfigMap
		err = s.client.Put().Namespace(s.namespace).Resource("configmaps").Name(s.name).
			Param("fieldManager", FieldManager).Body(cm).Do(ctx).Into(&out)
		if apierrors.IsConflict(err) && attempt < 4 {
			continue // another writer in between: read and merge again
		}
		if err != nil {
			return 0, fmt.Errorf("writing dedupe marks to ConfigMap %s: %w", s.Name(), err)
		}
		return len(data), nil
	}
}

// merge returns a's marks with b's added, the higher sequence per (node, boot id) winning.
func merge(a, b []dedupe.Mark) []dedupe.Mark {
	type boot struct {
		node string
		id   [16]byte
	}
	idx := make(map[boot]int, len(a)+len(b))
	out := make([]dedupe.Mark, 0, len(a)+len(b))
	for _, list := range [][]dedupe.Mark{a, b} {
		for _, m := range list {
			k := boot{m.Node, m.BootID}
			i, ok := idx[k]
			if !ok {
				idx[k] = len(out)
				out = append(out, m)
				continue
			}
			if m.Sequence > out[i].Sequence {
				out[i].Sequence = m.Sequence
			}
			if m.Updated.After(out[i].Updated) {
				out[i].Updated = m.Updated
			}
		}
	}
	return out
}

func encode(marks []dedupe.Mark) (string, error) {
	doc := document{Version: 1, Marks: map[string]map[string][2]json.Number{}}
	for _, m := range marks {
		boots := doc.Marks[m.Node]
		if boots == nil {
			boots = map[string][2]json.Number{}
			doc.Marks[m.Node] = boots
		}
		boots[hex.EncodeToString(m.BootID[:])] = [2]json.Number{
			json.Number(fmt.Sprint(m.Sequence)), json.Number(fmt.Sprint(m.Updated.Unix())),
		}
	}
	b, err := json.Marshal(doc) // maps are written in key order: the same marks, the same bytes
	if err != nil {
		return "", fmt.Errorf("encoding dedupe marks: %w", err)
	}
	if len(b) > MaxBytes {
		return "", fmt.Errorf("%w: %d marks take %d bytes, more than %d: lower ZONETOLL_DEDUPE_MAX_KEYS or ZONETOLL_DEDUPE_RETENTION", ErrTooLarge, len(marks), len(b), MaxBytes)
	}
	return string(b), nil
}

func decode(data string) ([]dedupe.Mark, error) {
	if strings.TrimSpace(data) == "" {
		return nil, nil
	}
	var doc document
	if err := json.Unmarshal([]byte(data), &doc); err != nil {
		return nil, fmt.Errorf("decoding dedupe marks (%s): %w", Key, err)
	}
	if doc.Version != 1 {
		return nil, fmt.Errorf("decoding dedupe marks (%s): version %d, want 1", Key, doc.Version)
	}
	var out []dedupe.Mark
	nodes := make([]string, 0, len(doc.Marks))
	for n := range doc.Marks {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for _, node := range nodes {
		for bootHex, v := range doc.Marks[node] {
			id, err := hex.DecodeString(bootHex)
			if err != nil || len(id) != 16 {
				return nil, fmt.Errorf("decoding dedupe marks (%s): node %q: boot id %q is not 32 hex digits", Key, node, bootHex)
			}
			seq, err1 := parseUint(v[0])
			unix, err2 := parseUint(v[1])
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("decoding dedupe marks (%s): node %q boot %s: want [sequence, unix seconds], got %v", Key, node, bootHex, v)
			}
			m := dedupe.Mark{Node: node, Sequence: seq, Updated: time.Unix(int64(unix), 0)}
			copy(m.BootID[:], id)
			out = append(out, m)
		}
	}
	return out, nil
}

func parseUint(n json.Number) (uint64, error) {
	var v uint64
	_, err := fmt.Sscan(string(n), &v)
	return v, err
}
