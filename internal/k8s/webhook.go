package k8s

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AdmissionPath is where the admission controller takes AdmissionReviews;
// AdmissionPath/<cluster> names the cluster the reviews come from, for rules
// whose collections list clusters.
const AdmissionPath = "/v1/admission"

// WebhookName is the name of the generated webhook: kubectl shows it in
// "admission webhook ... denied the request".
const WebhookName = "workloads.admission.bulwark.dev"

// Failure policies of the generated webhook: what the API server does when
// it cannot reach the admission controller in time.
const (
	FailureIgnore = "Ignore" // admit the request
	FailureFail   = "Fail"   // refuse it
)

// WebhookOptions describe the ValidatingWebhookConfiguration to generate.
type WebhookOptions struct {
	// Name is the configuration's metadata.name; "bulwark-admission" when
	// empty.
	Name string
	// Service and Namespace name the Service in front of the admission
	// listener, Port its port (443 when 0). Or URL gives the listener's
	// https:// address, when it is outside the cluster: the path is added.
	Service, Namespace string
	Port               int32
	URL                string
	// Cluster, when set, is appended to the path and matched by the
	// clusters of rules' collections.
	Cluster string
	// CABundle is the PEM of the CA that issued the listener's certificate.
	CABundle []byte
	// FailurePolicy is FailureIgnore (when empty) or FailureFail.
	FailurePolicy string
	// ExemptNamespaces are left out by the webhook's namespaceSelector, with
	// the Service's own namespace: the API server does not call the webhook
	// for them, so the Console's own pods can start while it is down.
	ExemptNamespaces []string
	// TimeoutSeconds is how long the API server waits (1-30; 10 when 0).
	TimeoutSeconds int32
}

// ValidatingWebhookConfiguration returns the webhook configuration that
// sends the creation and update of Pods (and their ephemeral containers)
// and of every pod controller to the admission controller, with
// admissionReviewVersions v1 and sideEffects None.
func ValidatingWebhookConfiguration(o WebhookOptions) (admissionregv1.ValidatingWebhookConfiguration, error) {
	var errs []error
	if o.Name == "" {
		o.Name = "bulwark-admission"
	} else if err := dnsSubdomain(o.Name); err != nil {
		errs = append(errs, fmt.Errorf("name %q: %w", o.Name, err))
	}
	path := AdmissionPath
	if o.Cluster != "" {
		if err := dnsSubdomain(o.Cluster); err != nil {
			errs = append(errs, fmt.Errorf("cluster %q: %w", o.Cluster, err))
		}
		path += "/" + o.Cluster
	}
	if len(o.CABundle) == 0 {
		errs = append(errs, errors.New("caBundle: empty"))
	}
	failure := admissionregv1.Ignore
	switch o.FailurePolicy {
	case "", FailureIgnore:
	case FailureFail:
		failure = admissionregv1.Fail
	default:
		errs = append(errs, fmt.Errorf("failure policy %q: want Ignore or Fail", o.FailurePolicy))
	}
	timeout := o.TimeoutSeconds
	if timeout == 0 {
		timeout = 10
	}
	if timeout < 1 || timeout > 30 {
		errs = append(errs, fmt.Errorf("timeout %ds: want 1 to 30 seconds", timeout))
	}
	client := admissionregv1.WebhookClientConfig{CABundle: o.CABundle}
	exempt := slices.Clone(o.ExemptNamespaces)
	switch {
	case (o.Service == "") == (o.URL == ""):
		errs = append(errs, errors.New("give a service (with its namespace) or a URL, not both"))
	case o.URL != "":
		u, err := webhookURL(o.URL, path)
		if err != nil {
			errs = append(errs, err)
		}
		if o.Namespace != "" || o.Port != 0 {
			errs = append(errs, errors.New("namespace and port belong to a service; a URL has its own"))
		}
		client.URL = &u
	default:
		if err := dnsLabel(o.Service); err != nil {
			errs = append(errs, fmt.Errorf("service %q: %w", o.Service, err))
		}
		if o.Namespace == "" {
			errs = append(errs, errors.New("namespace of the service: empty"))
		} else if err := ValidateNamespace(o.Namespace); err != nil {
			errs = append(errs, fmt.Errorf("namespace: %w", err))
		}
		port := o.Port
		if port == 0 {
			port = 443
		}
		if port < 1 || port > 65535 {
			errs = append(errs, fmt.Errorf("port %d: want 1 to 65535", port))
		}
		client.Service = &admissionregv1.ServiceReference{Namespace: o.Namespace, Name: o.Service, Path: &path, Port: &port}
		exempt = append(exempt, o.Namespace)
	}
	for _, ns := range o.ExemptNamespaces {
		if err := ValidateNamespace(ns); err != nil {
			errs = append(errs, fmt.Errorf("exempt namespace: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return admissionregv1.ValidatingWebhookConfiguration{}, err
	}

	slices.Sort(exempt)
	exempt = slices.Compact(exempt)
	var selector *metav1.LabelSelector
	if len(exempt) > 0 {
		selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
			// Set by the API server on every namespace since Kubernetes 1.21.
			Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn, Values: exempt,
		}}}
	}
	ops := []admissionregv1.OperationType{admissionregv1.Create, admissionregv1.Update}
	scope := admissionregv1.NamespacedScope
	rule := func(group string, resources ...string) admissionregv1.RuleWithOperations {
		return admissionregv1.RuleWithOperations{Operations: ops, Rule: admissionregv1.Rule{
			APIGroups: []string{group}, APIVersions: []string{"v1"}, Resources: resources, Scope: &scope,
		}}
	}
	sideEffects := admissionregv1.SideEffectClassNone
	// Equivalent: a Deployment written through an older API version is
	// converted to apps/v1 and sent too.
	match := admissionregv1.Equivalent
	return admissionregv1.ValidatingWebhookConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{
			Name:   o.Name,
			Labels: map[string]string{"app.kubernetes.io/name": "bulwark", "app.kubernetes.io/component": "admission"},
		},
		Webhooks: []admissionregv1.ValidatingWebhook{{
			Name:         WebhookName,
			ClientConfig: client,
			Rules: []admissionregv1.RuleWithOperations{
				rule("", "pods", "pods/ephemeralcontainers", "replicationcontrollers", "podtemplates"),
				rule("apps", "deployments", "replicasets", "statefulsets", "daemonsets"),
				rule("batch", "jobs", "cronjobs"),
			},
			FailurePolicy:           &failure,
			MatchPolicy:             &match,
			NamespaceSelector:       selector,
			SideEffects:             &sideEffects,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}, nil
}

// webhookURL checks an https:// address and puts path on it; an address
// with its own path must end in path already.
func webhookURL(raw, path string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("url %q: %w", raw, err)
	}
	switch {
	case u.Scheme != "https":
		return "", fmt.Errorf("url %q: the scheme must be https", raw)
	case u.Host == "" || u.Hostname() == "":
		return "", fmt.Errorf("url %q: no host", raw)
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", fmt.Errorf("url %q: user, query and fragment are not allowed", raw)
	}
	switch strings.TrimSuffix(u.Path, "/") {
	case "":
		u.Path = path
	case path:
		u.Path = path
	default:
		return "", fmt.Errorf("url %q: the path must be empty or %s", raw, path)
	}
	u.RawPath = ""
	return u.String(), nil
}

// dnsSubdomain checks an RFC 1123 subdomain: dot-separated labels, at most
// 253 characters.
func dnsSubdomain(s string) error {
	if len(s) > 253 {
		return errors.New("longer than 253 characters")
	}
	for label := range strings.SplitSeq(s, ".") {
		if err := dnsLabel(label); err != nil {
			return err
		}
	}
	return nil
}
