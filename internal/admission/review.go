package admission

import (
	"errors"
	"fmt"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	k8sjson "sigs.k8s.io/json"
)

// The AdmissionReview version the controller speaks.
const (
	reviewAPIVersion = "admission.k8s.io/v1"
	reviewKind       = "AdmissionReview"
)

// malformedError is a request that is not an AdmissionReview the controller
// can answer: the handler answers 400 with its message.
type malformedError struct{ msg string }

func (e *malformedError) Error() string { return e.msg }

func malformed(format string, args ...any) error {
	return &malformedError{msg: fmt.Sprintf(format, args...)}
}

// decodeReview decodes an AdmissionReview v1 request as the API server
// writes it: exactly one JSON object, field names matched case-sensitively,
// no field twice, apiVersion and kind as expected, a request with its uid,
// operation and kind, and the object for a CREATE or UPDATE.
//
// Unknown fields are accepted: a newer API server may send fields this
// version does not know, and refusing them would fail every admission of
// a cluster whose webhook fails closed.
func decodeReview(data []byte) (*admissionv1.AdmissionRequest, error) {
	var rv admissionv1.AdmissionReview
	strict, err := k8sjson.UnmarshalStrict(data, &rv, k8sjson.DisallowDuplicateFields)
	if err != nil {
		if ok, off := k8sjson.SyntaxErrorOffset(err); ok {
			return nil, malformed("malformed JSON at byte %d: %s", off, trimJSON(err))
		}
		return nil, malformed("not an AdmissionReview: %s", trimJSON(err))
	}
	if len(strict) > 0 {
		return nil, malformed("not an AdmissionReview: %s", trimJSON(errors.Join(strict...)))
	}
	if rv.APIVersion != reviewAPIVersion || rv.Kind != reviewKind {
		return nil, malformed("want apiVersion %s and kind %s, got %q and %q", reviewAPIVersion, reviewKind, rv.APIVersion, rv.Kind)
	}
	req := rv.Request
	switch {
	case req == nil:
		return nil, malformed("the AdmissionReview has no request")
	case req.UID == "":
		return nil, malformed("request.uid is missing")
	case req.Kind.Kind == "" || req.Kind.Version == "":
		return nil, malformed("request.kind is missing its version or kind")
	}
	switch req.Operation {
	case admissionv1.Create, admissionv1.Update:
		if len(req.Object.Raw) == 0 {
			return nil, malformed("request.object is missing for %s", req.Operation)
		}
	case admissionv1.Delete, admissionv1.Connect:
	default:
		return nil, malformed("request.operation %q is not CREATE, UPDATE, DELETE or CONNECT", req.Operation)
	}
	return req, nil
}

func trimJSON(err error) string { return strings.TrimPrefix(err.Error(), "json: ") }

// podKind reports whether group and kind name a Pod or a pod controller: the
// kinds the generated webhook configuration sends, and the older API groups
// of the same kinds.
func podKind(group, kind string) bool {
	switch group {
	case "":
		return kind == "Pod" || kind == "PodTemplate" || kind == "ReplicationController"
	case "apps":
		return kind == "Deployment" || kind == "ReplicaSet" || kind == "StatefulSet" || kind == "DaemonSet"
	case "extensions":
		return kind == "Deployment" || kind == "ReplicaSet" || kind == "DaemonSet"
	case "batch":
		return kind == "Job" || kind == "CronJob"
	}
	return false
}
