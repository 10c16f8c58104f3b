package kubeversion

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
)

// schemaWith is a core/v1 OpenAPI v3 document cut down to ServiceSpec with the given properties.
func schemaWith(props ...string) string {
	p := ""
	for i, name := range props {
		if i > 0 {
			p += ","
		}
		p += fmt.Sprintf("%q:{\"type\":\"string\"}", name)
	}
	return `{"openapi":"3.0.0","components":{"schemas":{"` + ServiceSpecSchema + `":{"type":"object","properties":{` + p + `}}}}}`
}

func TestDiscover(t *testing.T) {
	all := []string{PreferSameZone, PreferSameNode, PreferClose}
	withField := schemaWith("type", "trafficDistribution")
	tests := []struct {
		name       string
		gitVersion string
		schema     string // "" answers 404
		schemaCode int    // overrides 200
		want       TrafficDistribution
		wantZone   string
		wantErr    error
	}{
		{name: "1.29: annotation only", gitVersion: "v1.29.10", schema: schemaWith("type"),
			want: TrafficDistribution{ServerVersion: "v1.29.10"}},
		{name: "1.30: field alpha, off by default", gitVersion: "v1.30.14", schema: withField,
			want: TrafficDistribution{ServerVersion: "v1.30.14"}},
		{name: "1.31: PreferClose", gitVersion: "v1.31.0", schema: withField,
			want: TrafficDistribution{ServerVersion: "v1.31.0", Field: true, Values: []string{PreferClose}, SchemaChecked: true}, wantZone: PreferClose},
		{name: "1.33: PreferSameZone still alpha", gitVersion: "v1.33.13", schema: withField,
			want: TrafficDistribution{ServerVersion: "v1.33.13", Field: true, Values: []string{PreferClose}, SchemaChecked: true}, wantZone: PreferClose},
		{name: "1.34: PreferSameZone beta", gitVersion: "v1.34.2", schema: withField,
			want: TrafficDistribution{ServerVersion: "v1.34.2", Field: true, Values: all, SchemaChecked: true}, wantZone: PreferSameZone},
		{name: "1.35 with a provider suffix", gitVersion: "v1.35.4-eks-1a2b3c", schema: withField,
			want: TrafficDistribution{ServerVersion: "v1.35.4-eks-1a2b3c", Field: true, Values: all, SchemaChecked: true}, wantZone: PreferSameZone},
		{name: "1.37", gitVersion: "v1.37.2", schema: withField,
			want: TrafficDistribution{ServerVersion: "v1.37.2", Field: true, Values: all, SchemaChecked: true}, wantZone: PreferSameZone},
		{name: "version says yes, schema says no", gitVersion: "v1.36.3", schema: schemaWith("type"),
			want: TrafficDistribution{ServerVersion: "v1.36.3", SchemaChecked: true}},
		{name: "schema forbidden: the version decides", gitVersion: "v1.36.3", schema: withField, schemaCode: http.StatusForbidden,
			want: TrafficDistribution{ServerVersion: "v1.36.3", Field: true, Values: all}, wantZone: PreferSameZone},
		{name: "schema not served: the version decides", gitVersion: "v1.36.3",
			want: TrafficDistribution{ServerVersion: "v1.36.3", Field: true, Values: all}, wantZone: PreferSameZone},
		{name: "schema fails", gitVersion: "v1.36.3", schema: withField, schemaCode: http.StatusInternalServerError,
			wantErr: errAny},
		{name: "schema without ServiceSpec", gitVersion: "v1.36.3", schema: `{"components":{"schemas":{}}}`, wantErr: errAny},
		{name: "unreadable version", gitVersion: "devel", wantErr: ErrVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fakeServer(t, tt.gitVersion, tt.schema, tt.schemaCode)
			got, err := Discover(t.Context(), c)
			if tt.wantErr != nil {
				if err == nil || (tt.wantErr != errAny && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("Discover = %+v, %v; want error %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Discover: %v", err)
			}
			if got.ServerVersion != tt.want.ServerVersion || got.Field != tt.want.Field || got.SchemaChecked != tt.want.SchemaChecked ||
				!slices.Equal(got.Values, tt.want.Values) {
				t.Errorf("Discover = %+v, want %+v", got, tt.want)
			}
			value, annotation := got.SameZone()
			if value != tt.wantZone {
				t.Errorf("SameZone value = %q, want %q", value, tt.wantZone)
			}
			if (value == "") != (annotation == TopologyModeAnnotation) {
				t.Errorf("SameZone = %q, %q: want exactly one of a value or the annotation", value, annotation)
			}
		})
	}
}

var errAny = errors.New("any error")

func fakeServer(t *testing.T, gitVersion, schemaDoc string, schemaCode int) rest.Interface {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/version", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"major":"1","minor":"x","gitVersion":%q}`, gitVersion)
	})
	mux.HandleFunc("/openapi/v3/api/v1", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Accept") != "application/json" {
			http.Error(w, "want JSON", http.StatusNotAcceptable)
			return
		}
		if schemaDoc == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if schemaCode != 0 {
			w.WriteHeader(schemaCode)
		}
		fmt.Fprint(w, schemaDoc)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	c, err := rest.RESTClientFor(&rest.Config{Host: srv.URL, ContentConfig: rest.ContentConfig{
		GroupVersion:         &schema.GroupVersion{Version: "v1"},
		NegotiatedSerializer: serializer.NewCodecFactory(runtime.NewScheme()).WithoutConversion(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
