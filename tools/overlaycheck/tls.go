package overlaycheck

import (
	"net/url"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// The TLS settings of each side (docs/deploy.md#tls).
const (
	tlsCertSetting   = "ZONETOLL_HTTP_TLS_CERT_FILE"
	tlsKeySetting    = "ZONETOLL_HTTP_TLS_KEY_FILE"
	serverCASetting  = "ZONETOLL_SERVER_CA_FILE"
	scrapeCASetting  = "ZONETOLL_SCRAPE_CA_FILE"
	plaintextSetting = "ZONETOLL_ALLOW_PLAINTEXT"
	certManagerGroup = "cert-manager.io"
)

// checkTLS: TLS is on between the agents and the flowservers and between costcalc and the flowservers.
// Every flowserver serves HTTPS from files of a mounted Secret (probes too); the agents' server URL and
// every costcalc target are https, with a CA file from a mounted volume, and no agent allows plain HTTP.
// Where the build uses cert-manager, the Secrets those volumes name are written by a Certificate of the
// build, and each flowserver's certificate names the Service the agents and costcalc dial. Without
// cert-manager (components/tls-without-cert-manager) the Secrets are the operator's and only the mounts
// are checked.
func (c *checker) checkTLS() {
	certs := map[string]*unstructured.Unstructured{} // namespace/secretName → Certificate
	for _, o := range c.objs {
		if o.GetKind() == "Certificate" && strings.HasPrefix(o.GetAPIVersion(), certManagerGroup+"/") {
			if s, _, _ := unstructured.NestedString(o.Object, "spec", "secretName"); s != "" {
				certs[o.GetNamespace()+"/"+s] = o
			}
		}
	}
	// secretOf returns the Secret behind the file a setting names, after checking the file is mounted
	// (not through subPath, which never sees a renewed Secret); ok is false when the file is not
	// mounted, or (unless configMapOK: a CA bundle of trust-manager) not from a Secret.
	secretOf := func(w workload, setting string, configMapOK bool) (string, bool) {
		file := env(w.template.Spec.Containers, setting)
		if file == "" {
			c.add("tls", w.obj, "%s is not set: TLS is on by default (docs/deploy.md#tls)", setting)
			return "", false
		}
		for _, ct := range w.template.Spec.Containers {
			for _, m := range ct.VolumeMounts {
				if !strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") {
					continue
				}
				if m.SubPath != "" || m.SubPathExpr != "" {
					c.add("tls", w.obj, "%s=%s is mounted through subPath: a renewed certificate never reaches it", setting, file)
					return "", false
				}
				for _, v := range w.template.Spec.Volumes {
					if v.Name != m.Name {
						continue
					}
					if name, ok := volumeSecret(v, strings.TrimPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")); ok {
						return name, true
					}
					if !configMapOK || (v.ConfigMap == nil && v.Projected == nil) {
						c.add("tls", w.obj, "%s=%s is not from a Secret volume", setting, file)
					}
					return "", false
				}
			}
		}
		c.add("tls", w.obj, "%s=%s is in no volume the container mounts", setting, file)
		return "", false
	}
	issued := func(w workload, setting, secret string) *unstructured.Unstructured {
		if len(certs) == 0 {
			return nil // no cert-manager in this build: the Secrets are made by hand
		}
		cert := certs[w.obj.GetNamespace()+"/"+secret]
		if cert == nil {
			c.add("tls", w.obj, "%s comes from Secret %s/%s, which no cert-manager Certificate of the build writes", setting, w.obj.GetNamespace(), secret)
		}
		return cert
	}
	for _, w := range c.workloads {
		switch w.obj.GetLabels()[LabelName] {
		case "flowserver":
			secret, ok := secretOf(w, tlsCertSetting, false)
			if key, kok := secretOf(w, tlsKeySetting, false); ok && kok && key != secret {
				c.add("tls", w.obj, "%s and %s come from different Secrets (%s, %s)", tlsCertSetting, tlsKeySetting, secret, key)
			}
			for _, ct := range w.template.Spec.Containers {
				for _, p := range []*corev1.Probe{ct.LivenessProbe, ct.ReadinessProbe} {
					if p != nil && p.HTTPGet != nil && p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
						c.add("tls", w.obj, "probe %s uses %s on a server that serves HTTPS", p.HTTPGet.Path, p.HTTPGet.Scheme)
					}
				}
			}
			if !ok {
				continue
			}
			if cert := issued(w, tlsCertSetting, secret); cert != nil {
				names, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
				svc := w.obj.GetName()
				if z := serverZone(w); z != "" {
					svc = "flowserver-" + z
				}
				ns := w.obj.GetNamespace()
				for _, want := range []string{svc + "." + ns, svc + "." + ns + ".svc"} {
					if !slices.Contains(names, want) {
						c.add("tls", w.obj, "its certificate %s names %v, not %s, the name agents and costcalc dial", id(cert), names, want)
					}
				}
			}
		case "flowagent":
			if u := env(w.template.Spec.Containers, serverSetting); !isHTTPS(u) {
				c.add("tls", w.obj, "%s %q is plain HTTP: the agents' bearer tokens and reports would cross the network in clear text; use https:// with %s (docs/deploy.md#tls)", serverSetting, u, serverCASetting)
			}
			if v := env(w.template.Spec.Containers, plaintextSetting); v != "" && v != "false" {
				c.add("tls", w.obj, "%s=%s: plain HTTP is for tests and demos on one machine, never a deployment", plaintextSetting, v)
			}
			if secret, ok := secretOf(w, serverCASetting, true); ok {
				issued(w, serverCASetting, secret)
			}
		case "costcalc":
			for _, t := range strings.Split(c.containerSetting(w, targetsKey), ",") {
				if t = strings.TrimSpace(t); t != "" && !isHTTPS(t) {
					c.add("tls", w.obj, "%s has the plain HTTP target %q: use https:// with %s (docs/deploy.md#tls)", targetsKey, t, scrapeCASetting)
				}
			}
			if secret, ok := secretOf(w, scrapeCASetting, true); ok {
				issued(w, scrapeCASetting, secret)
			}
		}
	}
}

// isHTTPS says whether a URL (the agents' may hold {zone}) is https.
func isHTTPS(s string) bool {
	u, err := url.Parse(strings.ReplaceAll(s, zoneTemplate, "zone"))
	return err == nil && u.Scheme == "https"
}

// volumeSecret is the Secret a file of a mounted volume comes from (file relative to the mount), or
// false when it is not a Secret volume. Projected volumes count when the file is a Secret's.
func volumeSecret(v corev1.Volume, file string) (string, bool) {
	switch {
	case v.Secret != nil:
		return v.Secret.SecretName, true
	case v.Projected != nil:
		for _, s := range v.Projected.Sources {
			if s.Secret == nil {
				continue
			}
			if len(s.Secret.Items) == 0 {
				return s.Secret.Name, true
			}
			for _, it := range s.Secret.Items {
				if path.Clean(it.Path) == path.Clean(file) {
					return s.Secret.Name, true
				}
			}
		}
	}
	return "", false
}
