package overlaycheck

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Policy is what the manifests are checked against. Its sources are documents people read, so
// the docs and the check cannot drift apart: the RBAC and capability tables in docs/deploy.md and the
// settings pages generated from each service's config struct (docs/settings/<service>.md).
type Policy struct {
	// RBAC lists every rule a service may have; a manifest rule must be covered by these rows.
	RBAC []RBACRow
	// Capabilities lists the Linux capabilities a service's containers may add. A service listed
	// here may also run as root (it needs the capabilities as uid 0 to use the host's bpffs).
	Capabilities map[string][]string
	// Settings are the ZONETOLL_* variables each service reads.
	Settings map[string]map[string]bool
}

// RBACRow is one allowed (service, API group, resource) with its verbs.
type RBACRow struct {
	Service  string
	APIGroup string // "" for the core group
	Resource string
	Verbs    []string
	// Cluster is true for a ClusterRole, false for a Role in the service's namespace.
	Cluster bool
	// ResourceNames, when set, is the only names a rule may name; a rule must then name some.
	ResourceNames []string
}

// Markers around the tables in docs/deploy.md.
const (
	rbacBegin = "<!-- overlaycheck:rbac:begin -->"
	rbacEnd   = "<!-- overlaycheck:rbac:end -->"
	capsBegin = "<!-- overlaycheck:capabilities:begin -->"
	capsEnd   = "<!-- overlaycheck:capabilities:end -->"
)

// LoadPolicy reads docs/deploy.md and docs/settings/*.md under the repository root.
func LoadPolicy(repoRoot string) (Policy, error) {
	deploy, err := os.ReadFile(filepath.Join(repoRoot, "docs", "deploy.md"))
	if err != nil {
		return Policy{}, fmt.Errorf("reading the RBAC table: %w", err)
	}
	p := Policy{Settings: map[string]map[string]bool{}}
	if p.RBAC, err = ParseRBACTable(string(deploy)); err != nil {
		return Policy{}, err
	}
	if p.Capabilities, err = ParseCapabilitiesTable(string(deploy)); err != nil {
		return Policy{}, err
	}
	pages, err := filepath.Glob(filepath.Join(repoRoot, "docs", "settings", "*.md"))
	if err != nil {
		return Policy{}, fmt.Errorf("listing the settings pages: %w", err)
	}
	if len(pages) == 0 {
		return Policy{}, fmt.Errorf("no settings pages in %s", filepath.Join(repoRoot, "docs", "settings"))
	}
	for _, page := range pages {
		data, err := os.ReadFile(page)
		if err != nil {
			return Policy{}, fmt.Errorf("reading settings: %w", err)
		}
		names := ParseSettings(string(data))
		if len(names) == 0 {
			return Policy{}, fmt.Errorf("settings page %s lists no ZONETOLL_ variable", page)
		}
		set := map[string]bool{}
		for _, n := range names {
			set[n] = true
		}
		p.Settings[strings.TrimSuffix(filepath.Base(page), ".md")] = set
	}
	return p, nil
}

// tableRows returns the cells of the markdown table between begin and end, without the header and
// the separator row.
func tableRows(md, begin, end, what string, columns int) ([][]string, error) {
	i := strings.Index(md, begin)
	j := strings.Index(md, end)
	if i < 0 || j < i {
		return nil, fmt.Errorf("docs/deploy.md has no %s table between %s and %s", what, begin, end)
	}
	var rows [][]string
	sc := bufio.NewScanner(strings.NewReader(md[i+len(begin) : j]))
	header := true
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for k := range cells {
			cells[k] = strings.TrimSpace(cells[k])
		}
		if header {
			header = false
			continue
		}
		if strings.HasPrefix(cells[0], "---") || strings.HasPrefix(cells[0], ":--") {
			continue
		}
		if len(cells) != columns {
			return nil, fmt.Errorf("%s table row %q has %d cells, want %d", what, line, len(cells), columns)
		}
		rows = append(rows, cells)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("docs/deploy.md: the %s table is empty", what)
	}
	return rows, nil
}

// list splits "a, b" into its items, without backticks; "" and "-" are empty.
func list(cell string) []string {
	cell = strings.ReplaceAll(cell, "`", "")
	if cell == "" || cell == "-" || cell == "—" {
		return nil
	}
	var out []string
	for _, s := range strings.Split(cell, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// ParseRBACTable reads the rows: service | API group | resource | verbs | scope | resource names | why.
// The core group is written `""` (core); scope is "cluster" or "namespace".
func ParseRBACTable(md string) ([]RBACRow, error) {
	rows, err := tableRows(md, rbacBegin, rbacEnd, "RBAC", 7)
	if err != nil {
		return nil, err
	}
	var out []RBACRow
	for _, c := range rows {
		group := strings.Fields(strings.ReplaceAll(c[1], "`", ""))
		if len(group) == 0 {
			return nil, fmt.Errorf("RBAC table: row for %s has no API group", c[0])
		}
		g := group[0]
		if g == `""` || g == "core" {
			g = ""
		}
		r := RBACRow{Service: strings.Trim(c[0], "`"), APIGroup: g, Resource: strings.Trim(c[2], "`"),
			Verbs: list(c[3]), ResourceNames: list(c[5])}
		switch strings.Fields(c[4])[0] {
		case "cluster":
			r.Cluster = true
		case "namespace":
		default:
			return nil, fmt.Errorf("RBAC table: scope %q of %s %s: want cluster or namespace", c[4], r.Service, r.Resource)
		}
		if r.Service == "" || r.Resource == "" || len(r.Verbs) == 0 {
			return nil, fmt.Errorf("RBAC table: incomplete row %q", strings.Join(c, " | "))
		}
		out = append(out, r)
	}
	return out, nil
}

// ParseCapabilitiesTable reads the rows: service | capabilities | why.
func ParseCapabilitiesTable(md string) (map[string][]string, error) {
	rows, err := tableRows(md, capsBegin, capsEnd, "capabilities", 3)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, c := range rows {
		var caps []string
		for _, cp := range list(c[1]) {
			caps = append(caps, strings.TrimPrefix(cp, "CAP_"))
		}
		out[strings.Trim(c[0], "`")] = caps
	}
	return out, nil
}

var settingRe = regexp.MustCompile("^\\| `(ZONETOLL_[A-Z0-9_]+)` \\|")

// ParseSettings returns the variable names of a generated settings page.
func ParseSettings(md string) []string {
	var names []string
	for _, line := range strings.Split(md, "\n") {
		if m := settingRe.FindStringSubmatch(line); m != nil {
			names = append(names, m[1])
		}
	}
	return names
}

// allows reports whether the row covers one verb on one resource, with the rule's names.
func (r RBACRow) allows(service, group, resource, verb string, cluster bool, names []string) bool {
	if r.Service != service || r.APIGroup != group || r.Resource != resource || r.Cluster != cluster || !slices.Contains(r.Verbs, verb) {
		return false
	}
	if len(r.ResourceNames) == 0 {
		return true
	}
	if len(names) == 0 {
		return false
	}
	for _, n := range names {
		if !slices.ContainsFunc(r.ResourceNames, func(pattern string) bool { return nameMatches(pattern, n) }) {
			return false
		}
	}
	return true
}

// nameMatches reports whether name is pattern, where a "<zone>" in pattern stands for one zone's name
// (the per-zone objects' name suffix): letters, digits and dashes.
func nameMatches(pattern, name string) bool {
	before, after, ok := strings.Cut(pattern, "<zone>")
	if !ok {
		return pattern == name
	}
	if len(name) <= len(before)+len(after) || !strings.HasPrefix(name, before) || !strings.HasSuffix(name, after) {
		return false
	}
	for _, c := range name[len(before) : len(name)-len(after)] {
		if !(c == '-' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
