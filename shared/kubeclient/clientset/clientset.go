// Package clientset builds client-go's full typed Clientset. It is a package of its own because
// importing k8s.io/client-go/kubernetes links every built-in API group into a binary (its scheme
// registers them all at start-up): about 28 MB of executable and some 20 MiB of resident memory that a
// service using one or two groups never reads. Services that need few groups use
// kubeclient.NewRESTClient with their own scheme instead.
package clientset

import (
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// New returns a typed clientset for rc.
func New(rc *rest.Config) (*kubernetes.Clientset, error) {
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("creating Kubernetes client for %s: %w", rc.Host, err)
	}
	return cs, nil
}
