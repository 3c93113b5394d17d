package k8s

import (
	"fmt"
	"slices"
	"strings"

	"bulwark/internal/compliance"
)

// IgnoreAnnotation is the prefix of the annotations that ignore a check on
// an object: bulwark.dev/ignore-check.<check slug>: "<reason>".
const IgnoreAnnotation = "bulwark.dev/ignore-check."

// Ignores returns the checks the object's annotations ignore, by slug, with
// the reasons given. The annotations are read from the object's metadata and
// from its pod template's (a Pod created from a Deployment carries the
// template's); the object's win. A reason is required: an annotation with an
// empty reason or no check name is a *ParseError naming the object and its
// line.
// The slugs are not checked against the catalog, so that custom checks can
// be ignored too.
func Ignores(o Object) (map[string]string, error) {
	var out map[string]string
	var bad []string
	for _, annotations := range []map[string]string{o.Workload.Source.Annotations, o.Template.Annotations} {
		keys := make([]string, 0, len(annotations))
		for k := range annotations {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			slug, ok := strings.CutPrefix(k, IgnoreAnnotation)
			if !ok {
				continue
			}
			reason := strings.TrimSpace(annotations[k])
			switch {
			case slug == "":
				bad = append(bad, fmt.Sprintf("annotation %q names no check", k))
				continue
			case reason == "":
				bad = append(bad, fmt.Sprintf("annotation %q needs a reason", k))
				continue
			}
			if _, seen := out[slug]; seen {
				continue
			}
			if out == nil {
				out = map[string]string{}
			}
			out[slug] = reason
		}
	}
	if len(bad) > 0 {
		s := o.Workload.Source
		return nil, &ParseError{File: s.File, Line: s.Line, Msg: describe(s.Object) + ": " + strings.Join(slices.Compact(bad), "; ")}
	}
	return out, nil
}

// describe names an object for messages: "Deployment prod/web".
func describe(o compliance.Object) string {
	if o.Namespace == "" {
		return o.Kind + " " + o.Name
	}
	return o.Kind + " " + o.Namespace + "/" + o.Name
}
