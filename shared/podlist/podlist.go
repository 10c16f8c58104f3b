// Package podlist is the initial pod list of an informer that keeps trimmed pods: page by page, each
// page trimmed as it arrives, so that a process never holds more than one page of full pods. The
// zonelabeler and the flowserver list their pods through it when their informer lists: from client-go
// 0.35 an informer streams its initial state with a watch from servers that support it (1.35+) and
// lists only against servers that do not.
//
// An informer's own list asks for resourceVersion "0", which the API server answers from its watch
// cache in one response whatever the limit, and client-go decodes every full pod of it before the
// informer's transform runs: at 10,000 pods that burst took the labeler from 25 to 134 MiB and was the
// flowserver's peak memory. A list without a resourceVersion is paged by the API server (from its
// cache or etcd) and still consistent.
package podlist

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// DefaultPageSize is how many pods one page holds: small enough that a page of full pods is a few
// MiB, large enough that 10,000 pods are 20 requests.
const DefaultPageSize = 500

// List lists the pods of namespace (metav1.NamespaceAll for every namespace) through core, a core/v1
// REST client (kubeclient.NewRESTClient), pageSize pods per request (DefaultPageSize if not positive).
// opts are the informer's list options: their label and field selectors apply, and a resourceVersion
// of "0" is dropped so that the API server pages. trim is called once per pod, in list order, as its
// page arrives; the page itself is dropped before the next is requested. List returns the trimmed
// pods and the resourceVersion the informer's watch starts from.
func List[T any](ctx context.Context, core rest.Interface, namespace string, opts metav1.ListOptions, pageSize int64, trim func(*corev1.Pod) T) (items []T, resourceVersion string, err error) {
	if pageSize <= 0 {
		pageSize = DefaultPageSize
	}
	opts.Limit = pageSize
	if opts.ResourceVersion == "0" {
		opts.ResourceVersion, opts.ResourceVersionMatch = "", ""
	}
	for {
		page := &corev1.PodList{}
		err := core.Get().Namespace(namespace).Resource("pods").
			VersionedParams(&opts, metav1.ParameterCodec).Do(ctx).Into(page)
		if err != nil {
			return nil, "", fmt.Errorf("listing pods (%d so far): %w", len(items), err)
		}
		for i := range page.Items {
			items = append(items, trim(&page.Items[i]))
		}
		if page.Continue == "" {
			return items, page.ResourceVersion, nil
		}
		// The continue token carries the list's resourceVersion; the API server refuses both.
		opts.Continue, opts.ResourceVersion, opts.ResourceVersionMatch = page.Continue, "", ""
	}
}
