// Package images builds zonetoll's service images without a container engine: the service binary is
// built with the same flags as `make build` and put, with a minimal /etc/passwd and /etc/group, into a
// single-layer OCI image on an empty base (no shell, no libc, no package manager).
package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/zonetoll/zonetoll/testkit/servicebuild"
)

// Users of the images. 65532 is distroless' "nonroot", so runAsUser in manifests reads the same
// for images built here and with the Dockerfile.
const (
	NonRootUID = 65532
	RootUID    = 0
)

// The OCI annotation keys the image labels use.
const (
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelSource   = "org.opencontainers.image.source"
	LabelTitle    = "org.opencontainers.image.title"
	// RefName names an image inside an OCI layout (what `skopeo copy oci:<dir>:<ref>` looks up).
	RefName = "org.opencontainers.image.ref.name"
)

// DefaultSource is the repository the images are built from.
const DefaultSource = "https://github.com/zonetoll/zonetoll"

// Service is one image: the service's module and the user its process runs as.
type Service struct {
	Name string
	UID  int
}

// Services lists every service image. flowagent runs as root because it writes to the host's bpffs
// (owned by root, mode 0700) and loads BPF programs; its manifest drops every capability but the
// few it needs (docs/deploy.md). Adding a service here is all a new image needs.
func Services() []Service {
	var out []Service
	for _, name := range servicebuild.Names() {
		uid := NonRootUID
		if name == "flowagent" {
			uid = RootUID
		}
		out = append(out, Service{Name: name, UID: uid})
	}
	return out
}

// Lookup returns the service called name.
func Lookup(name string) (Service, error) {
	for _, s := range Services() {
		if s.Name == name {
			return s, nil
		}
	}
	names := make([]string, 0, len(Services()))
	for _, s := range Services() {
		names = append(names, s.Name)
	}
	return Service{}, fmt.Errorf("unknown service %q (known: %s)", name, strings.Join(names, ", "))
}

// Options are the inputs of a build shared by all images.
type Options struct {
	RepoRoot string // the directory holding go.work
	Version  string // buildinfo.Version and the image's version label
	Revision string // buildinfo.Revision (git commit) and the image's revision label
	Source   string // org.opencontainers.image.source; DefaultSource when empty
	GOARCH   string // runtime.GOARCH when empty
	// Created is the image's creation time and the files' modification time; when zero, the Unix
	// epoch, so the same binary always gives the same image digest.
	Created time.Time
	// Stderr receives the go build output; nil discards it.
	Stderr io.Writer
}

// BinaryPath is where the service binary sits in the image.
func BinaryPath(svc string) string { return "/usr/local/bin/" + svc }

// BuildBinary builds the service's static binary into dir and returns its path.
func BuildBinary(ctx context.Context, opts Options, svc Service, dir string) (string, error) {
	return servicebuild.Build(ctx, servicebuild.Options{RepoRoot: opts.RepoRoot, Version: opts.Version,
		Revision: opts.Revision, GOARCH: opts.goarch(), Output: opts.stderr()}, svc.Name, dir)
}

func (o Options) goarch() string {
	if o.GOARCH == "" {
		return runtime.GOARCH
	}
	return o.GOARCH
}

func (o Options) stderr() io.Writer {
	if o.Stderr == nil {
		return io.Discard
	}
	return o.Stderr
}

// Build builds the service binary and returns its image.
func Build(ctx context.Context, opts Options, svc Service) (v1.Image, error) {
	if opts.Version == "" || opts.Revision == "" {
		return nil, errors.New("building an image: version and revision must be set (they become labels)")
	}
	dir, err := os.MkdirTemp("", "zonetoll-image-")
	if err != nil {
		return nil, fmt.Errorf("making a build dir: %w", err)
	}
	defer os.RemoveAll(dir)
	bin, err := BuildBinary(ctx, opts, svc, dir)
	if err != nil {
		return nil, err
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("reading the built binary: %w", err)
	}
	return Assemble(opts, svc, binary)
}

// Assemble puts an already built binary into the service's image.
func Assemble(opts Options, svc Service, binary []byte) (v1.Image, error) {
	if opts.Created.IsZero() {
		opts.Created = time.Unix(0, 0).UTC()
	}
	layerTar, err := rootFS(svc, binary, opts.Created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("making the %s layer: %w", svc.Name, err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{Layer: layer, History: v1.History{
		Created:   v1.Time{Time: opts.Created},
		CreatedBy: "zonetoll tools/images: go build " + svc.Name,
	}})
	if err != nil {
		return nil, fmt.Errorf("adding the %s layer: %w", svc.Name, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the %s image config: %w", svc.Name, err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = opts.goarch()
	cf.OS = "linux"
	cf.Created = v1.Time{Time: opts.Created}
	cf.Config = ImageConfig(opts, svc)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("setting the %s image config: %w", svc.Name, err)
	}
	return img, nil
}

// ImageConfig is the runtime configuration of the service's image.
func ImageConfig(opts Options, svc Service) v1.Config {
	source := opts.Source
	if source == "" {
		source = DefaultSource
	}
	return v1.Config{
		Entrypoint:   []string{BinaryPath(svc.Name)},
		Cmd:          []string{"run"},
		User:         fmt.Sprintf("%d:%d", svc.UID, svc.UID),
		WorkingDir:   "/",
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		Labels: map[string]string{
			LabelVersion:  opts.Version,
			LabelRevision: opts.Revision,
			LabelSource:   source,
			LabelTitle:    svc.Name,
		},
	}
}

// rootFS is the image's only layer: the binary and the two files that let the user ids resolve to
// names (Go's os/user, and people running `id` in a debug container).
func rootFS(svc Service, binary []byte, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := []string{"etc/", "usr/", "usr/local/", "usr/local/bin/"}
	for _, d := range dirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return nil, fmt.Errorf("writing %s: %w", d, err)
		}
	}
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{"etc/group", 0o644, []byte("root:x:0:\nnonroot:x:65532:\n")},
		{strings.TrimPrefix(BinaryPath(svc.Name), "/"), 0o755, binary},
	}
	for _, f := range files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: mtime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("writing %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, fmt.Errorf("writing %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("closing the layer: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteLayout writes img as the only image of an OCI layout at dir (replacing what was there), named
// by ref (e.g. v0.1.0) so `skopeo copy oci:<dir>:<ref> docker://...` finds it.
func WriteLayout(dir, ref string, img v1.Image) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clearing %s: %w", dir, err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("creating the OCI layout %s: %w", dir, err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{RefName: ref})); err != nil {
		return fmt.Errorf("writing the image into %s: %w", dir, err)
	}
	return nil
}

// Files lists the regular files and directories of an image's flattened filesystem with their
// content (nil for directories), for checks and tests.
func Files(img v1.Image) (map[string][]byte, error) {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading the image filesystem: %w", err)
		}
		name := "/" + strings.TrimPrefix(hdr.Name, "./")
		switch hdr.Typeflag {
		case tar.TypeDir:
			files[strings.TrimSuffix(name, "/")+"/"] = nil
		case tar.TypeReg:
			data, err := io.ReadAll(tr)
			if err != nil {
				return nil, fmt.Errorf("reading %s from the image: %w", name, err)
			}
			files[name] = data
		default:
			// Links and devices would be a surprise in an image we assemble ourselves.
			return nil, fmt.Errorf("unexpected entry %s of type %c in the image", name, hdr.Typeflag)
		}
	}
}

// SortedNames returns the keys of files in order.
func SortedNames(files map[string][]byte) []string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
