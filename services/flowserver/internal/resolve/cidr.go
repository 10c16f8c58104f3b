package resolve

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"unique"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// CIDR is one configured address range: a managed database, a VPC subnet, a load balancer.
type CIDR struct {
	// Name becomes the workload label of traffic to or from the range.
	Name string `json:"name"`
	// CIDRs are the ranges, IPv4 or IPv6 (e.g. 198.18.200.0/24).
	CIDRs []string `json:"cidrs"`
	// Kind is the kind label; empty means "cidr:<name>".
	Kind string `json:"kind,omitempty"`
	// Namespace is the namespace label; usually empty.
	Namespace string `json:"namespace,omitempty"`
	// Zone and Region place the range; an empty zone means it is not billed as cross-zone.
	Zone   string `json:"zone,omitempty"`
	Region string `json:"region,omitempty"`
}

// CIDRFile is the file format of ZONETOLL_CIDRS_FILE (YAML or JSON).
type CIDRFile struct {
	CIDRs []CIDR `json:"cidrs"`
}

// LoadCIDRs reads and validates a CIDR file. Errors name the file, the entry and the field.
func LoadCIDRs(path string) ([]CIDR, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading CIDR file: %w", err)
	}
	var f CIDRFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("parsing CIDR file %s: %w", path, err)
	}
	if _, err := newCIDRTable(f.CIDRs); err != nil {
		return nil, fmt.Errorf("CIDR file %s: %w", path, err)
	}
	return f.CIDRs, nil
}

// cidrTable finds the longest configured prefix holding an address: one map per prefix length,
// longest first, so a lookup costs at most one map probe per distinct length.
type cidrTable struct {
	lengths []int // distinct prefix lengths in the 16-byte (IPv4-mapped) space, longest first
	byLen   map[int]map[netip.Prefix]*Endpoint
}

func newCIDRTable(entries []CIDR) (*cidrTable, error) {
	t := &cidrTable{byLen: map[int]map[netip.Prefix]*Endpoint{}}
	names := map[string]bool{}
	for i, c := range entries {
		where := fmt.Sprintf("cidrs[%d]", i)
		if c.Name == "" {
			return nil, fmt.Errorf("%s.name: empty; every range needs a name (it becomes the workload label)", where)
		}
		where = fmt.Sprintf("cidrs[%d] (%s)", i, c.Name)
		if names[c.Name] {
			return nil, fmt.Errorf("%s.name: used twice; names must be unique", where)
		}
		names[c.Name] = true
		if len(c.CIDRs) == 0 {
			return nil, fmt.Errorf("%s.cidrs: empty; list at least one range such as 198.18.200.0/24", where)
		}
		if c.Namespace != "" {
			if errs := validation.IsDNS1123Label(c.Namespace); len(errs) > 0 {
				return nil, fmt.Errorf("%s.namespace %q: %s", where, c.Namespace, strings.Join(errs, "; "))
			}
		}
		kind := c.Kind
		if kind == "" {
			kind = "cidr:" + c.Name
		}
		ep := &Endpoint{
			Workload: unique.Make(Workload{Namespace: c.Namespace, Name: c.Name, Kind: kind, Zone: c.Zone, Region: c.Region}),
			Source:   SourceCIDR,
		}
		for j, s := range c.CIDRs {
			p, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil {
				return nil, fmt.Errorf("%s.cidrs[%d] %q: not a CIDR (want e.g. 198.18.200.0/24 or fd00:1::/64): %w", where, j, s, err)
			}
			if p != p.Masked() {
				return nil, fmt.Errorf("%s.cidrs[%d] %q: host bits set; did you mean %s?", where, j, s, p.Masked())
			}
			p = mapped(p)
			m := t.byLen[p.Bits()]
			if m == nil {
				m = map[netip.Prefix]*Endpoint{}
				t.byLen[p.Bits()] = m
				t.lengths = append(t.lengths, p.Bits())
			}
			if other, dup := m[p]; dup {
				return nil, fmt.Errorf("%s.cidrs[%d] %q: already belongs to %s", where, j, s, other.Workload.Value().Name)
			}
			m[p] = ep
		}
	}
	slices.SortFunc(t.lengths, func(a, b int) int { return b - a })
	return t, nil
}

// mapped moves an IPv4 prefix into the IPv4-mapped IPv6 space, where lookups happen.
func mapped(p netip.Prefix) netip.Prefix {
	if !p.Addr().Is4() {
		return p
	}
	return netip.PrefixFrom(netip.AddrFrom16(p.Addr().As16()), p.Bits()+96)
}

// lookup returns the endpoint of the longest prefix holding a (a 16-byte address), or nil.
func (t *cidrTable) lookup(a netip.Addr) *Endpoint {
	for _, bits := range t.lengths {
		p, err := a.Prefix(bits)
		if err != nil {
			continue
		}
		if ep := t.byLen[bits][p]; ep != nil {
			return ep
		}
	}
	return nil
}
