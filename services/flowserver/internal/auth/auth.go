// Package auth checks the bearer tokens of agent reports with the Kubernetes TokenReview API and
// allows only configured service accounts. Answers are cached briefly, keyed by a SHA-256 of the
// token, so the token itself is never kept, and a report every few seconds from every node does not
// become a TokenReview every few seconds.
package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/prometheus/client_golang/prometheus"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/zonetoll/zonetoll/shared/metricdef"
)

// Errors of Authenticate; the ingest handler maps them to 401, 403 and 503.
var (
	ErrUnauthenticated = errors.New("unauthenticated")
	ErrForbidden       = errors.New("forbidden")
	ErrUnavailable     = errors.New("token review unavailable")
)

// Where the API server puts what a service-account token is bound to (TokenReview status.user.extra):
// the pod of a pod-bound token (what the kubelet mounts), and its node (Kubernetes 1.30+, feature
// ServiceAccountTokenPodNodeInfo; absent when the pod had no node when the token was made).
const (
	podNameExtra  = "authentication.kubernetes.io/pod-name"
	podUIDExtra   = "authentication.kubernetes.io/pod-uid"
	nodeNameExtra = "authentication.kubernetes.io/node-name"
	nodeUIDExtra  = "authentication.kubernetes.io/node-uid"
)

// Identity is an authenticated caller: its service account and what its token is bound to. Pod is
// empty for a token bound to no pod (kubectl create token, a legacy Secret).
type Identity struct {
	Username string // system:serviceaccount:<namespace>:<name>
	// Pod and PodUID name the pod the token is bound to, in the service account's namespace.
	Pod, PodUID string
	// Node and NodeUID are the node the token's pod was on when the token was made, or empty.
	Node, NodeUID string
}

// Namespace is the service account's namespace (where a bound pod runs), Name its name.
func (id Identity) Namespace() string { ns, _, _ := splitUser(id.Username); return ns }

// ServiceAccount is the service account's name.
func (id Identity) ServiceAccount() string { _, name, _ := splitUser(id.Username); return name }

func splitUser(u string) (namespace, name string, ok bool) {
	rest, ok := strings.CutPrefix(u, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, ":")
}

// Reviewer creates TokenReviews; client-go's AuthenticationV1().TokenReviews() is one.
type Reviewer interface {
	Create(ctx context.Context, review *authnv1.TokenReview, opts metav1.CreateOptions) (*authnv1.TokenReview, error)
}

// RESTReviewer creates TokenReviews through a REST client for authentication.k8s.io/v1
// (kubeclient.NewRESTClient), without the typed clientset.
type RESTReviewer struct{ Client rest.Interface }

// Create implements Reviewer; opts are not sent (TokenReview has no create options that matter).
func (r RESTReviewer) Create(ctx context.Context, review *authnv1.TokenReview, _ metav1.CreateOptions) (*authnv1.TokenReview, error) {
	out := &authnv1.TokenReview{}
	if err := r.Client.Post().Resource("tokenreviews").Body(review).Do(ctx).Into(out); err != nil {
		return nil, fmt.Errorf("creating TokenReview: %w", err)
	}
	return out, nil
}

// Options configure an Authenticator.
type Options struct {
	// Allowed are the service accounts that may report, as namespace/name.
	Allowed []string
	// Audiences are passed to TokenReview; empty means the API server's own audiences.
	Audiences []string
	// TTL is how long an accepted token is trusted without asking again; NegativeTTL the same for a
	// rejected one (shorter, so a token that just became valid is not refused for long).
	TTL, NegativeTTL time.Duration
	// CacheSize bounds each cache.
	CacheSize int
}

// Authenticator checks tokens.
type Authenticator struct {
	reviews   Reviewer
	allowed   map[string]bool
	audiences []string
	ok        *expirable.LRU[[32]byte, Identity]
	denied    *expirable.LRU[[32]byte, error]

	reviewsTotal *prometheus.CounterVec
	cacheTotal   *prometheus.CounterVec
}

// ParseAccounts turns namespace/name items into TokenReview usernames, or says which item is wrong.
func ParseAccounts(items []string) ([]string, error) {
	out := make([]string, 0, len(items))
	for _, it := range items {
		ns, name, ok := strings.Cut(strings.TrimSpace(it), "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("%q is not a service account as namespace/name (e.g. zonetoll/flowagent)", it)
		}
		out = append(out, "system:serviceaccount:"+ns+":"+name)
	}
	return out, nil
}

// New returns an Authenticator whose metrics are registered on reg.
func New(reviews Reviewer, opts Options, reg prometheus.Registerer) (*Authenticator, error) {
	users, err := ParseAccounts(opts.Allowed)
	if err != nil {
		return nil, err
	}
	if len(users) == 0 {
		return nil, errors.New("no service account is allowed to report")
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 4096
	}
	a := &Authenticator{
		reviews:   reviews,
		allowed:   map[string]bool{},
		audiences: opts.Audiences,
		ok:        expirable.NewLRU[[32]byte, Identity](opts.CacheSize, nil, opts.TTL),
		denied:    expirable.NewLRU[[32]byte, error](opts.CacheSize, nil, opts.NegativeTTL),
	}
	var ms metricdef.Set
	a.reviewsTotal = ms.CounterVec("zonetoll_flowserver_token_reviews_total",
		"TokenReview requests to the Kubernetes API by result: authenticated, unauthenticated, error.",
		"result", "authenticated", "unauthenticated", "error")
	a.cacheTotal = ms.CounterVec("zonetoll_flowserver_token_cache_lookups_total",
		"Token cache lookups by result: hit (no TokenReview needed) or miss.", "result", "hit", "miss")
	for _, u := range users {
		a.allowed[u] = true
	}
	if err := ms.Register(reg, "auth metrics"); err != nil {
		return nil, err
	}
	return a, nil
}

// Authenticate returns the caller of token, or an error wrapping ErrUnauthenticated (bad or expired
// token), ErrForbidden (a valid token of an account that may not report) or ErrUnavailable (the
// review itself failed; try again later).
func (a *Authenticator) Authenticate(ctx context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	key := sha256.Sum256([]byte(token))
	if id, ok := a.ok.Get(key); ok {
		a.cacheTotal.WithLabelValues("hit").Inc()
		return id, nil
	}
	if err, ok := a.denied.Get(key); ok {
		a.cacheTotal.WithLabelValues("hit").Inc()
		return Identity{}, err
	}
	a.cacheTotal.WithLabelValues("miss").Inc()
	res, err := a.reviews.Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: a.audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		a.reviewsTotal.WithLabelValues("error").Inc()
		return Identity{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !res.Status.Authenticated {
		a.reviewsTotal.WithLabelValues("unauthenticated").Inc()
		msg := res.Status.Error
		if msg == "" {
			msg = "token not accepted"
		}
		err := fmt.Errorf("%w: %s", ErrUnauthenticated, msg)
		a.denied.Add(key, err)
		return Identity{}, err
	}
	a.reviewsTotal.WithLabelValues("authenticated").Inc()
	extra := func(k string) string {
		if v := res.Status.User.Extra[k]; len(v) == 1 {
			return v[0]
		}
		return ""
	}
	id := Identity{
		Username: res.Status.User.Username,
		Pod:      extra(podNameExtra), PodUID: extra(podUIDExtra),
		Node: extra(nodeNameExtra), NodeUID: extra(nodeUIDExtra),
	}
	if !a.allowed[id.Username] {
		err := fmt.Errorf("%w: %s may not send reports (allowed: ZONETOLL_AUTH_SERVICE_ACCOUNTS)", ErrForbidden, id.Username)
		a.denied.Add(key, err)
		return Identity{}, err
	}
	a.ok.Add(key, id)
	return id, nil
}
