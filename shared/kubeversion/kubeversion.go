// Package kubeversion finds out what the API server of the cluster at hand supports, so that what
// zonetoll writes or advises about Services uses the field and values that cluster accepts instead of
// the ones of the release zonetoll was built against.
//
// Service traffic distribution moved between the releases zonetoll meets in the field:
//
//   - before 1.30 there is no field; EndpointSlice hints come from the annotation
//     service.kubernetes.io/topology-mode: Auto (1.27+);
//   - 1.30: spec.trafficDistribution exists but is alpha, off by default (ServiceTrafficDistribution);
//   - 1.31, 1.32: PreferClose (beta, then GA in 1.33);
//   - 1.33: PreferSameZone and PreferSameNode are alpha, off by default (PreferSameTrafficDistribution);
//   - 1.34: PreferSameZone and PreferSameNode beta, on by default;
//   - 1.35 on: GA; PreferClose stays accepted as a deprecated alias of PreferSameZone.
//
// The release comes from the server's /version; the field's presence from its OpenAPI v3 schema of
// core/v1, which also catches a distribution whose version string says more than its API has.
package kubeversion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/rest"
)

// Service traffic distribution values (k8s.io/api/core/v1 names them too; repeated here so the table
// below does not depend on which client-go release zonetoll links).
const (
	PreferClose    = "PreferClose"
	PreferSameZone = "PreferSameZone"
	PreferSameNode = "PreferSameNode"
)

// TopologyModeAnnotation is what clusters without a usable spec.trafficDistribution read instead
// (value "Auto").
const TopologyModeAnnotation = "service.kubernetes.io/topology-mode"

// ServiceSpecSchema is the OpenAPI v3 schema name of core/v1 ServiceSpec.
const ServiceSpecSchema = "io.k8s.api.core.v1.ServiceSpec"

// TrafficDistribution is what a cluster's API server accepts for keeping a Service's traffic close.
type TrafficDistribution struct {
	// ServerVersion is the server's gitVersion (e.g. v1.37.2, v1.35.4-eks-1a2b3c).
	ServerVersion string
	// Field reports that Services have a usable spec.trafficDistribution: in the server's OpenAPI
	// schema and not behind a gate that is off by default in its release.
	Field bool
	// Values are the values spec.trafficDistribution accepts with the release's default feature
	// gates, newest first; empty when Field is false.
	Values []string
	// SchemaChecked is false when the OpenAPI schema could not be read (e.g. RBAC without
	// /openapi/*), so Field rests on the version alone.
	SchemaChecked bool
}

// Accepts reports whether v is one of Values.
func (t TrafficDistribution) Accepts(v string) bool { return slices.Contains(t.Values, v) }

// SameZone returns how to ask this cluster to keep a Service's traffic in its zone: the field value
// (PreferSameZone where it exists, else PreferClose), or, where no value is accepted, "" and the
// annotation to set instead (TopologyModeAnnotation: Auto).
func (t TrafficDistribution) SameZone() (value, annotation string) {
	switch {
	case t.Accepts(PreferSameZone):
		return PreferSameZone, ""
	case t.Accepts(PreferClose):
		return PreferClose, ""
	default:
		return "", TopologyModeAnnotation
	}
}

// valuesFor is the table of the package comment: the values a release accepts with its default
// feature gates.
func valuesFor(v *version.Version) []string {
	switch {
	case v.Major() < 1:
		return nil
	case v.Major() > 1 || v.Minor() >= 34:
		return []string{PreferSameZone, PreferSameNode, PreferClose}
	case v.Minor() >= 31:
		return []string{PreferClose}
	default:
		return nil
	}
}

// ErrVersion means the server's version string could not be read as a release.
var ErrVersion = errors.New("unrecognised Kubernetes server version")

// Discover asks the API server behind c (any REST client of the cluster, e.g.
// clientset.Discovery().RESTClient() or one made by kubeclient.NewRESTClient) for its version and its
// core/v1 OpenAPI schema and returns what it accepts. A schema refused by RBAC (403) or not served
// (404) leaves SchemaChecked false and the answer to the version; other errors are returned.
func Discover(ctx context.Context, c rest.Interface) (TrafficDistribution, error) {
	raw, err := c.Get().AbsPath("/version").SetHeader("Accept", "application/json").Do(ctx).Raw()
	if err != nil {
		return TrafficDistribution{}, fmt.Errorf("reading the API server's version: %w", err)
	}
	var info struct {
		GitVersion string `json:"gitVersion"`
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		return TrafficDistribution{}, fmt.Errorf("decoding the API server's version: %w", err)
	}
	t, err := fromVersion(info.GitVersion)
	if err != nil {
		return t, err
	}
	if !t.Field {
		// Nothing the schema could add: the release has no usable field.
		return t, nil
	}
	schema, err := c.Get().AbsPath("/openapi/v3/api/v1").SetHeader("Accept", "application/json").Do(ctx).Raw()
	if apierrors.IsForbidden(err) || apierrors.IsNotFound(err) {
		return t, nil
	}
	if err != nil {
		return t, fmt.Errorf("reading the API server's core/v1 OpenAPI schema: %w", err)
	}
	has, err := serviceSpecHas(schema, "trafficDistribution")
	if err != nil {
		return t, err
	}
	t.SchemaChecked = true
	if !has {
		t.Field, t.Values = false, nil
	}
	return t, nil
}

func fromVersion(gitVersion string) (TrafficDistribution, error) {
	t := TrafficDistribution{ServerVersion: gitVersion}
	// Generic parsing: providers append their own suffixes (v1.35.4-eks-1a2b3c, v1.36.3-gke.1200).
	v, err := version.ParseGeneric(gitVersion)
	if err != nil {
		return t, fmt.Errorf("%w %q: %w", ErrVersion, gitVersion, err)
	}
	t.Values = valuesFor(v)
	t.Field = len(t.Values) > 0
	return t, nil
}

// serviceSpecHas reports whether the OpenAPI v3 document of core/v1 gives ServiceSpec the property.
func serviceSpecHas(doc []byte, property string) (bool, error) {
	var d struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return false, fmt.Errorf("decoding the API server's core/v1 OpenAPI schema: %w", err)
	}
	spec, ok := d.Components.Schemas[ServiceSpecSchema]
	if !ok {
		return false, fmt.Errorf("the API server's core/v1 OpenAPI schema has no %s", ServiceSpecSchema)
	}
	_, ok = spec.Properties[property]
	return ok, nil
}
