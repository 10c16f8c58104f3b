// Package kubeclient builds the Kubernetes API client of a zonetoll service: from a kubeconfig when one
// is given (--kubeconfig or KUBECONFIG), else from the pod's in-cluster service account, with client-side
// rate limits and a user agent that names the service and its version.
package kubeclient

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Config holds the client settings. Embed it in a service's configuration under the field name Kube so
// its variables become ZONETOLL_KUBE_*.
type Config struct {
	QPS     float32       `default:"200" desc:"Sustained requests per second to the Kubernetes API (client-side limit); zonelabeler writes once per new pod, so keep it above the cluster's peak pod creation rate. The API server's priority and fairness still protects it."`
	Burst   int           `default:"400" desc:"Requests allowed in a burst above QPS."`
	Timeout time.Duration `default:"30s" desc:"Timeout of one Kubernetes API request (watches excepted)."`
}

// ErrNoConfig means neither a kubeconfig nor an in-cluster service account was found.
var ErrNoConfig = errors.New("no Kubernetes API configuration")

// RESTConfig returns the client configuration. kubeconfig is a path, or a list of paths separated as
// in KUBECONFIG; empty means in-cluster.
func RESTConfig(kubeconfig string, cfg Config, userAgent string) (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if kubeconfig != "" {
		rules := &clientcmd.ClientConfigLoadingRules{Precedence: filepath.SplitList(kubeconfig)}
		rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("loading kubeconfig %s: %w", kubeconfig, err)
		}
	} else {
		if os.Getenv("KUBERNETES_SERVICE_HOST") == "" {
			return nil, fmt.Errorf("%w: not running in a pod (KUBERNETES_SERVICE_HOST is unset) and no kubeconfig given: pass --kubeconfig or set KUBECONFIG", ErrNoConfig)
		}
		rc, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("loading in-cluster configuration: %w", err)
		}
	}
	rc.QPS = cfg.QPS
	rc.Burst = cfg.Burst
	// Protobuf instead of JSON for built-in types: decoding a watch event or a list allocates several
	// times less, which is most of what an informer-heavy process spends memory on.
	rc.ContentType = runtime.ContentTypeProtobuf
	rc.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	rc.Timeout = cfg.Timeout
	rc.UserAgent = userAgent
	return rc, nil
}

// Validate checks the limits make sense together.
func (c Config) Validate(prefix string) error {
	if c.QPS <= 0 {
		return fmt.Errorf("invalid setting %sQPS=%v: expected a number above 0", prefix, c.QPS)
	}
	if c.Burst < int(c.QPS) {
		return fmt.Errorf("invalid setting %sBURST=%d: expected an integer of at least QPS (%v)", prefix, c.Burst, c.QPS)
	}
	return nil
}

// NewScheme returns a scheme holding only the API groups the adders register (e.g. corev1.AddToScheme),
// for NewRESTClient.
func NewScheme(adders ...func(*runtime.Scheme) error) (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	for _, add := range adders {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("building the API scheme: %w", err)
		}
	}
	return scheme, nil
}

// NewRESTClient returns a client for one API group version whose objects are encoded and decoded with
// scheme alone. A scheme holding only the groups a service uses keeps the rest of Kubernetes' API types
// out of its binary (see package clientset for the cost of the full one). rc is not modified.
func NewRESTClient(rc *rest.Config, scheme *runtime.Scheme, gv schema.GroupVersion) (*rest.RESTClient, error) {
	c := rest.CopyConfig(rc)
	c.GroupVersion = &gv
	c.APIPath = "/apis"
	if gv.Group == "" {
		c.APIPath = "/api"
	}
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	client, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("creating Kubernetes client for %s at %s: %w", gv, rc.Host, err)
	}
	return client, nil
}

// Group is an API group version a service talks to, with the function that registers its types.
type Group struct {
	Version     schema.GroupVersion
	AddToScheme func(*runtime.Scheme) error
}

// NewRESTClients returns a REST client per group, in their order, sharing rc and one scheme that holds
// the types of these groups alone (NewScheme, NewRESTClient).
func NewRESTClients(rc *rest.Config, groups ...Group) ([]*rest.RESTClient, error) {
	adders := make([]func(*runtime.Scheme) error, len(groups))
	for i, g := range groups {
		adders[i] = g.AddToScheme
	}
	scheme, err := NewScheme(adders...)
	if err != nil {
		return nil, err
	}
	clients := make([]*rest.RESTClient, len(groups))
	for i, g := range groups {
		if clients[i], err = NewRESTClient(rc, scheme, g.Version); err != nil {
			return nil, err
		}
	}
	return clients, nil
}
