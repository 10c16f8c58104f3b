package counter

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// The program and its links are pinned in bpffs next to the maps, so the
// hooks keep counting into the pinned maps while no agent runs (a restart,
// an upgrade, a crash). Each loaded program has a directory of its own:
//
//	gen-<generation>-<program id>/prog
//	gen-<generation>-<program id>/<kind>-<netns inode>[-<interface, hex>]
//
// kind is nf4 or nf6 (netfilter, per family), tcx or tcxe (tcx ingress or
// egress), or cls or clse (a classic clsact filter at ingress or egress,
// kernels before tcx); the program id says what the program does
// (programID). Netfilter and tcx hooks are pinned links. A classic filter
// has no link to pin, but it outlives its loader too: its record is one
// more pin of the program, named for the hook, which tells the next process
// where the filter is and which program id it runs. The generation in active_idx is the
// one that counts. The next process adopts that generation's program and
// links when its program id is the same: nothing changes hands, so nothing
// can be lost or counted twice. Otherwise it loads its program as the next
// generation, attaches it beside the running one and takes over at its first
// Drain. Directories of other generations are leftovers (a process that
// died before taking over) and are removed.
const genDirPrefix = "gen-"

// progPin is the program's pin in its generation directory.
const progPin = "prog"

// maxGeneration bounds generations to 31 bits: active_idx holds
// generation << 1 | side.
const maxGeneration = 1<<31 - 1

// generationPlaceholder is GENERATION_PLACEHOLDER in counter.c.
const generationPlaceholder = 0x2a5a5447

// patchGeneration writes gen into the program's placeholder immediate.
func patchGeneration(p *ebpf.ProgramSpec, gen uint32) error {
	n := 0
	for i, ins := range p.Instructions {
		if ins.OpCode.ALUOp() == asm.Mov && ins.Constant == generationPlaceholder {
			p.Instructions[i].Constant = int64(gen)
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("program %s has no generation placeholder (was counter.c compiled differently?)", p.Name)
	}
	return nil
}

// nextGeneration is the generation a new program takes over from owner;
// 0 is what a fresh active_idx holds and belongs to nobody.
func nextGeneration(owner uint32) uint32 {
	g := (owner + 1) & maxGeneration
	if g == 0 {
		g = 1
	}
	return g
}

// programID identifies what a loaded program does: the object file, the
// program in it and the settings that change its behaviour (the netfilter
// priority; tc mode has none). Two processes with the same id run
// interchangeable programs.
func programID(elf []byte, progName string, mode Mode, priority int32) string {
	h := sha256.New()
	h.Write(elf)
	h.Write([]byte(progName))
	if mode == ModeNetfilter {
		_ = binary.Write(h, binary.LittleEndian, priority)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// hookKind is what a pinned link attaches to.
type hookKind string

const (
	hookNF4 hookKind = "nf4"
	hookNF6 hookKind = "nf6"
	hookTCX hookKind = "tcx"
	hookCls hookKind = "cls" // classic clsact ingress filter
	// hookTCXEgress is tcx egress of an interface (AttachTCEgress).
	hookTCXEgress hookKind = "tcxe"
	// hookClsEgress is a classic clsact egress filter (AttachTCEgress
	// without tcx).
	hookClsEgress hookKind = "clse"
)

// classic reports whether h is a classic clsact filter (recorded, not a
// pinned link).
func (k hookKind) classic() bool { return k == hookCls || k == hookClsEgress }

// hook names one attachment point: a netfilter family in a network
// namespace, or tcx or classic ingress or egress of an interface there.
type hook struct {
	kind   hookKind
	netns  uint64 // inode of the network namespace
	ifname string // tcx, tcxe, cls and clse only
}

// String is the hook's pin name. bpffs refuses names with dots (EPERM), and
// interface names may have them, so the interface name is in hex.
func (h hook) String() string {
	s := fmt.Sprintf("%s-%d", h.kind, h.netns)
	if h.ifname != "" {
		s += "-" + hex.EncodeToString([]byte(h.ifname))
	}
	return s
}

// parseHook is String's inverse.
func parseHook(name string) (hook, error) {
	f := strings.Split(name, "-")
	if len(f) < 2 {
		return hook{}, fmt.Errorf("link pin %q: want <kind>-<netns inode>[-<interface in hex>]", name)
	}
	h := hook{kind: hookKind(f[0])}
	switch {
	case (h.kind == hookNF4 || h.kind == hookNF6) && len(f) == 2:
	case (h.kind == hookTCX || h.kind == hookTCXEgress || h.kind.classic()) && len(f) == 3:
		ifname, err := hex.DecodeString(f[2])
		if err != nil || len(ifname) == 0 {
			return hook{}, fmt.Errorf("link pin %q: interface name is not hex", name)
		}
		h.ifname = string(ifname)
	default:
		return hook{}, fmt.Errorf("link pin %q: want nf4-<netns>, nf6-<netns>, tcx-<netns>-<interface in hex>, tcxe-, cls- or clse-<netns>-<interface in hex>", name)
	}
	var err error
	if h.netns, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return hook{}, fmt.Errorf("link pin %q: netns inode: %w", name, err)
	}
	return h, nil
}

// generation is one loaded program and its hooks, as pinned.
type generation struct {
	gen   uint32
	id    string // programID
	dir   string
	links map[hook]link.Link
	// filters are its classic tc filters, with the kernel's id of the
	// program they run (which tells them from another generation's).
	filters map[hook]ebpf.ProgramID
}

func newGeneration(gen uint32, id, dir string) *generation {
	return &generation{gen: gen, id: id, dir: dir, links: map[hook]link.Link{}, filters: map[hook]ebpf.ProgramID{}}
}

// hooks is the number of places g is attached.
func (g *generation) hooks() int { return len(g.links) + len(g.filters) }

func genDirName(gen uint32, id string) string {
	return fmt.Sprintf("%s%d-%s", genDirPrefix, gen, id)
}

func parseGenDir(name string) (uint32, string, bool) {
	rest, ok := strings.CutPrefix(name, genDirPrefix)
	if !ok {
		return 0, "", false
	}
	g, id, ok := strings.Cut(rest, "-")
	if !ok || id == "" {
		return 0, "", false
	}
	n, err := strconv.ParseUint(g, 10, 31)
	if err != nil {
		return 0, "", false
	}
	return uint32(n), id, true
}

// openGenerations opens the links of every generation pinned in dir.
// Entries it cannot parse are logged and skipped rather than failing the
// start; a generation that is removed goes with everything in it.
func openGenerations(dir string, log *slog.Logger) ([]*generation, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing pin dir: %w", err)
	}
	var out []*generation
	for _, e := range ents {
		gen, id, ok := parseGenDir(e.Name())
		if !ok || !e.IsDir() {
			continue
		}
		g := newGeneration(gen, id, filepath.Join(dir, e.Name()))
		out = append(out, g)
		files, err := os.ReadDir(g.dir)
		if err != nil {
			closeGenerations(out)
			return nil, fmt.Errorf("listing %s: %w", g.dir, err)
		}
		for _, f := range files {
			if f.Name() == progPin {
				continue
			}
			h, err := parseHook(f.Name())
			if err != nil {
				log.Warn("ignoring a pin in a generation directory", "dir", g.dir, "error", err)
				continue
			}
			if h.kind.classic() {
				progID, err := pinnedProgramID(filepath.Join(g.dir, f.Name()))
				if err != nil {
					closeGenerations(out)
					return nil, err
				}
				g.filters[h] = progID
				continue
			}
			l, err := link.LoadPinnedLink(filepath.Join(g.dir, f.Name()), nil)
			if err != nil {
				closeGenerations(out)
				return nil, fmt.Errorf("opening pinned link %s/%s: %w", g.dir, f.Name(), err)
			}
			g.links[h] = l
		}
	}
	return out, nil
}

// pin pins l for h in g's directory.
func (g *generation) pin(h hook, l link.Link) error {
	if err := l.Pin(filepath.Join(g.dir, h.String())); err != nil {
		return fmt.Errorf("pinning link %s: %w", h, err)
	}
	g.links[h] = l
	return nil
}

// recordFilter pins prog again as the record of a classic filter at h.
// (Program.Pin would move the program's pin; a clone has none.)
func (g *generation) recordFilter(h hook, prog *ebpf.Program, progID ebpf.ProgramID) error {
	if _, ok := g.filters[h]; ok {
		return nil
	}
	clone, err := prog.Clone()
	if err != nil {
		return fmt.Errorf("recording tc filter %s: %w", h, err)
	}
	defer clone.Close()
	if err := clone.Pin(filepath.Join(g.dir, h.String())); err != nil {
		return fmt.Errorf("recording tc filter %s: %w", h, err)
	}
	g.filters[h] = progID
	return nil
}

// pinnedProgramID is the kernel's id of the program pinned at path.
func pinnedProgramID(path string) (ebpf.ProgramID, error) {
	prog, err := ebpf.LoadPinnedProgram(path, nil)
	if err != nil {
		return 0, fmt.Errorf("opening pinned program %s: %w", path, err)
	}
	defer prog.Close()
	return programIDOf(prog)
}

func programIDOf(prog *ebpf.Program) (ebpf.ProgramID, error) {
	info, err := prog.Info()
	if err != nil {
		return 0, fmt.Errorf("reading program info: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return 0, errors.New("reading program info: the kernel reports no program id")
	}
	return id, nil
}

// detach removes h's pin and closes its link, which detaches it: nothing
// else holds it. A classic filter is deleted from its interface, if the
// namespace and interface still exist and it still runs g's program.
func (g *generation) detach(h hook) error {
	if progID, ok := g.filters[h]; ok {
		delete(g.filters, h)
		if err := deleteClassicFilter(h, progID); err != nil {
			return err
		}
		if err := os.Remove(filepath.Join(g.dir, h.String())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing the record of tc filter %s: %w", h, err)
		}
		return nil
	}
	l, ok := g.links[h]
	if !ok {
		return nil
	}
	delete(g.links, h)
	if err := os.Remove(filepath.Join(g.dir, h.String())); err != nil && !errors.Is(err, os.ErrNotExist) {
		_ = l.Close()
		return fmt.Errorf("unpinning link %s: %w", h, err)
	}
	// Detach explicitly: closing only detaches when no other descriptor
	// (bpftool, a debugger) holds the link.
	if err := l.Detach(); err != nil && !errors.Is(err, link.ErrNotSupported) {
		_ = l.Close()
		return fmt.Errorf("detaching link %s: %w", h, err)
	}
	if err := l.Close(); err != nil {
		return fmt.Errorf("closing link %s: %w", h, err)
	}
	return nil
}

// remove detaches every link of g and removes its directory with the
// program's pin.
func (g *generation) remove() error {
	var errs []error
	for h := range g.links {
		errs = append(errs, g.detach(h))
	}
	for h := range g.filters {
		errs = append(errs, g.detach(h))
	}
	if err := os.RemoveAll(g.dir); err != nil {
		errs = append(errs, fmt.Errorf("removing %s: %w", g.dir, err))
	}
	return errors.Join(errs...)
}

// close closes g's file descriptors; the pins keep the links attached, and
// classic filters hold no descriptor.
func (g *generation) close() error {
	var errs []error
	for h, l := range g.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing link %s: %w", h, err))
		}
	}
	g.links = map[hook]link.Link{}
	return errors.Join(errs...)
}

func closeGenerations(gs []*generation) {
	for _, g := range gs {
		_ = g.close()
	}
}

// netnsInode is the inode of the network namespace at path ("" = this
// process's), which names it for as long as it exists.
func netnsInode(path string) (uint64, error) {
	if path == "" {
		path = "/proc/self/ns/net"
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("opening netns %s: %w", path, err)
	}
	return st.Ino, nil
}
