package images

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/zonetoll/zonetoll/shared/buildinfo"
	"github.com/zonetoll/zonetoll/testkit/repo"
	"github.com/zonetoll/zonetoll/testkit/servicebuild"
)

func TestImageConfig(t *testing.T) {
	opts := Options{Version: "v1.2.3", Revision: "abc123"}
	tests := []struct {
		svc      string
		wantUser string
	}{
		{"zonelabeler", "65532:65532"},
		{"flowserver", "65532:65532"},
		{"costcalc", "65532:65532"},
		// The agent writes to the host's root-owned bpffs; its manifest limits the capabilities.
		{"flowagent", "0:0"},
	}
	for _, tt := range tests {
		t.Run(tt.svc, func(t *testing.T) {
			svc, err := Lookup(tt.svc)
			if err != nil {
				t.Fatal(err)
			}
			c := ImageConfig(opts, svc)
			if c.User != tt.wantUser {
				t.Errorf("User = %q, want %q", c.User, tt.wantUser)
			}
			if got, want := strings.Join(c.Entrypoint, " "), "/usr/local/bin/"+tt.svc; got != want {
				t.Errorf("Entrypoint = %q, want %q", got, want)
			}
			if got := strings.Join(c.Cmd, " "); got != "run" {
				t.Errorf("Cmd = %q, want run", got)
			}
			want := map[string]string{LabelVersion: "v1.2.3", LabelRevision: "abc123", LabelSource: DefaultSource, LabelTitle: tt.svc}
			for k, v := range want {
				if c.Labels[k] != v {
					t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
				}
			}
		})
	}
	if _, err := Lookup("nosuch"); err == nil {
		t.Error("Lookup(nosuch) succeeded")
	}
}

// TestBuildZonelabelerImage builds the real zonelabeler image and runs the binary taken out of the
// image's filesystem: what a container runtime would start.
func TestBuildZonelabelerImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a service binary; skipped with -short")
	}
	svc, err := Lookup("zonelabeler")
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{RepoRoot: repo.RootT(t), Version: "v0.0.0-imagetest", Revision: "0123456789abcdef", GOARCH: runtime.GOARCH}
	img, err := Build(t.Context(), opts, svc)
	if err != nil {
		t.Fatal(err)
	}

	// Written as an OCI layout and read back, as skopeo or crane would.
	dir := filepath.Join(t.TempDir(), "zonelabeler")
	if err := WriteLayout(dir, opts.Version, img); err != nil {
		t.Fatal(err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Annotations[RefName] != opts.Version {
		t.Fatalf("layout index = %+v, want one image named %s", im.Manifests, opts.Version)
	}
	if mt := im.Manifests[0].MediaType; mt != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("manifest media type %s, want an OCI manifest", mt)
	}
	read, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}

	cf, err := read.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("config user %q os %q arch %q, want 65532:65532 linux %s", cf.Config.User, cf.OS, cf.Architecture, runtime.GOARCH)
	}
	for k, v := range map[string]string{LabelVersion: opts.Version, LabelRevision: opts.Revision, LabelTitle: "zonelabeler", LabelSource: DefaultSource} {
		if cf.Config.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, cf.Config.Labels[k], v)
		}
	}
	if !cf.Created.Time.Equal(time.Unix(0, 0)) {
		t.Errorf("created %v, want the Unix epoch (reproducible builds)", cf.Created)
	}

	files, err := Files(read)
	if err != nil {
		t.Fatal(err)
	}
	wantNames := []string{"/etc/", "/etc/group", "/etc/passwd", "/usr/", "/usr/local/", "/usr/local/bin/", "/usr/local/bin/zonelabeler"}
	if got := SortedNames(files); strings.Join(got, " ") != strings.Join(wantNames, " ") {
		t.Errorf("image files = %v, want exactly %v (no shell, no libc)", got, wantNames)
	}
	if !strings.Contains(string(files["/etc/passwd"]), "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd lacks the nonroot user:\n%s", files["/etc/passwd"])
	}

	bin := filepath.Join(t.TempDir(), "zonelabeler")
	if err := os.WriteFile(bin, files["/usr/local/bin/zonelabeler"], 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("zonelabeler version from the image: %v\n%s", err, out)
	}
	if want := "zonelabeler v0.0.0-imagetest (revision 0123456789abcdef,"; !strings.HasPrefix(string(out), want) {
		t.Errorf("zonelabeler version printed %q, want it to start with %q", out, want)
	}
	// A static binary has no program interpreter; `file` is not always there, so read the ELF header.
	if f, err := os.ReadFile(bin); err == nil && strings.Contains(string(f[:min(len(f), 4096)]), "ld-linux") {
		t.Error("binary asks for a dynamic loader: it must be static (CGO_ENABLED=0)")
	}

	// The same binary gives the same image: digests must not depend on when the image was assembled.
	// (Two full builds are not compared: other people edit the sources while the tests run.)
	again, err := Assemble(opts, svc, files["/usr/local/bin/zonelabeler"])
	if err != nil {
		t.Fatal(err)
	}
	d1, err := read.Digest()
	if err != nil {
		t.Fatal(err)
	}
	d2, err := again.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Errorf("the image read back is %s, the same binary assembled again %s: the image is not reproducible", d1, d2)
	}
}

// TestDockerfilesMatchImages keeps the Dockerfile (for people with Docker) in step with the images
// this package builds: same build flags, base, user, entrypoint and labels, one target per service.
func TestDockerfilesMatchImages(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repo.RootT(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages := dockerStages(string(data))
	var names []string
	for _, svc := range Services() {
		names = append(names, svc.Name)
	}
	build := stages["build"]
	for _, w := range []string{
		"CGO_ENABLED=0",
		"go build -trimpath",
		`-ldflags "` + buildinfo.LDFlags("${VERSION}", "${REVISION}") + `"`,
		"-o /out/usr/local/bin/$s ./cmd/$s",
	} {
		if !strings.Contains(build.text, w) {
			t.Errorf("the Dockerfile's build stage lacks %q", w)
		}
	}
	if want := `ARG SERVICES="` + strings.Join(names, " ") + `"`; !strings.Contains(string(data), want) {
		t.Errorf("the Dockerfile does not build every service: want %s", want)
	}
	for _, svc := range Services() {
		t.Run(svc.Name, func(t *testing.T) {
			st, ok := stages[svc.Name]
			if !ok {
				t.Fatalf("the Dockerfile has no target %q", svc.Name)
			}
			// What a stage inherits counts: walk up to scratch.
			text := st.text
			for parent := st.from; parent != "scratch"; parent = stages[parent].from {
				if _, ok := stages[parent]; !ok {
					t.Fatalf("target %q builds on unknown stage %q", svc.Name, parent)
				}
				text = stages[parent].text + text
			}
			for _, w := range []string{
				fmt.Sprintf("COPY --from=build /out%[1]s %[1]s", BinaryPath(svc.Name)),
				fmt.Sprintf(`ENTRYPOINT ["%s"]`, BinaryPath(svc.Name)),
				LabelTitle + `="` + svc.Name + `"`,
			} {
				if !strings.Contains(st.text, w) {
					t.Errorf("target %q lacks %q", svc.Name, w)
				}
			}
			// A new ENTRYPOINT clears an inherited CMD, so the target must set its own after it.
			if e, c := strings.Index(st.text, "ENTRYPOINT "), strings.Index(st.text, `CMD ["run"]`); c < e {
				t.Errorf("target %q does not set CMD [\"run\"] after its ENTRYPOINT", svc.Name)
			}
			for _, w := range []string{
				"COPY --from=build /out/etc/ /etc/",
				LabelVersion + `="${VERSION}"`,
				LabelRevision + `="${REVISION}"`,
				LabelSource + `="` + DefaultSource + `"`,
			} {
				if !strings.Contains(text, w) {
					t.Errorf("target %q (with what it inherits) lacks %q", svc.Name, w)
				}
			}
			users := strings.Count(text, "\nUSER ")
			if want := fmt.Sprintf("USER %d:%d", svc.UID, svc.UID); users == 0 || !strings.Contains(text[strings.LastIndex(text, "\nUSER "):], want) {
				t.Errorf("target %q runs as the wrong user: the last USER it has must be %q", svc.Name, want)
			}
		})
	}
}

type dockerStage struct{ from, text string }

// dockerStages splits a Dockerfile into its stages by name ("FROM parent AS name").
func dockerStages(df string) map[string]dockerStage {
	out := map[string]dockerStage{}
	var name string
	for _, line := range strings.SplitAfter(df, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "FROM" && strings.EqualFold(f[2], "AS") {
			name = f[3]
			out[name] = dockerStage{from: f[1], text: "\n"}
			continue
		}
		if name != "" {
			st := out[name]
			st.text += line
			out[name] = st
		}
	}
	return out
}

func TestGitStamp(t *testing.T) {
	version, revision, err := servicebuild.GitStamp(t.Context(), repo.RootT(t))
	if err != nil {
		t.Fatalf("stamp of the repository: %v", err)
	}
	if version == "" || len(revision) != 40 {
		t.Errorf("GitStamp = %q, %q; want a version and a 40-character commit", version, revision)
	}
	if _, _, err := servicebuild.GitStamp(t.Context(), t.TempDir()); err == nil || !strings.Contains(err.Error(), "git ") {
		t.Errorf("GitStamp outside a checkout = %v, want an error naming the git command", err)
	}
}
