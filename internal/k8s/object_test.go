package k8s_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"bulwark/internal/compliance"
	"bulwark/internal/k8s"
)

func TestDecodeObject(t *testing.T) {
	tests := []struct {
		name, raw string
		want      compliance.Object // for objects
		podPath   string
		notWork   bool // ErrNotWorkload
		parse     string
	}{
		{
			name:    "pod",
			raw:     `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"n"},"spec":{"containers":[{"name":"a","image":"a:1"}]}}`,
			want:    compliance.Object{APIVersion: "v1", Kind: "Pod", Name: "a", Namespace: "n"},
			podPath: "spec",
		},
		{
			name:    "cronjob",
			raw:     `{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"c"},"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[]}}}}}}`,
			want:    compliance.Object{APIVersion: "batch/v1", Kind: "CronJob", Name: "c"},
			podPath: "spec.jobTemplate.spec.template.spec",
		},
		{name: "service", raw: `{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}}`, notWork: true},
		{name: "list", raw: `{"apiVersion":"v1","kind":"List","items":[]}`, notWork: true},
		{name: "deployment without template", raw: `{"apiVersion":"apps/v1","kind":"Deployment","spec":{"replicas":2}}`, notWork: true},
		{name: "wrong type", raw: `{"apiVersion":"v1","kind":"Pod","spec":{"hostPID":"yes"}}`, parse: "spec.hostPID: want a boolean, got string"},
		{name: "not an object", raw: `[{"kind":"Pod"}]`, parse: "want a JSON object"},
		{name: "kind not a string", raw: `{"apiVersion":"v1","kind":7}`, parse: "apiVersion and kind"},
		{name: "case-sensitive fields", raw: `{"apiVersion":"v1","kind":"Pod","spec":{"HostPID":true,"hostPID":false,"containers":[]}}`,
			want: compliance.Object{APIVersion: "v1", Kind: "Pod"}, podPath: "spec"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj, err := k8s.DecodeObject([]byte(tc.raw))
			switch {
			case tc.notWork:
				if !errors.Is(err, k8s.ErrNotWorkload) {
					t.Fatalf("DecodeObject(%s) error = %v, want ErrNotWorkload", tc.raw, err)
				}
				return
			case tc.parse != "":
				var pe *k8s.ParseError
				if !errors.As(err, &pe) || !strings.Contains(pe.Msg, tc.parse) {
					t.Fatalf("DecodeObject(%s) error = %v, want a ParseError containing %q", tc.raw, err, tc.parse)
				}
				return
			case err != nil:
				t.Fatalf("DecodeObject(%s): %v", tc.raw, err)
			}
			if diff := cmp.Diff(tc.want, obj.Workload.Source.Object); diff != "" {
				t.Errorf("DecodeObject(%s) object (-want +got):\n%s", tc.name, diff)
			}
			if obj.Workload.Pod.Path != tc.podPath {
				t.Errorf("DecodeObject(%s) pod path %q, want %q", tc.name, obj.Workload.Pod.Path, tc.podPath)
			}
			if hp := obj.Workload.Pod.HostPID; hp != nil {
				t.Errorf("DecodeObject(%s) hostPID = %v; HostPID is not hostPID", tc.name, *hp)
			}
		})
	}
}

// TestDecodeObjectOf: whatever kind the caller expects, DecodeObjectOf
// returns what DecodeObject returns.
func TestDecodeObjectOf(t *testing.T) {
	raws := []string{
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","namespace":"n","labels":{"a":"b"}},"spec":{"containers":[{"name":"a","image":"a:1","resources":{"limits":{"cpu":"500m"}}}],"volumes":[{"name":"v"}]}}`,
		`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"generateName":"d-"},"spec":{"template":{"metadata":{"annotations":{"x":"y"}},"spec":{"hostPID":true,"containers":[{"name":"a"}]}}}}`,
		`{"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"c"},"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[]}}}}}}`,
		`{"apiVersion":"v1","kind":"PodTemplate","template":{"spec":{"containers":[{"name":"p"}]}}}`,
		`{"apiVersion":"v1","kind":"Pod","spec":{"HostPID":true,"hostPID":false,"containers":[]}}`,
		`{"kind":"Pod","apiVersion":"v1","kind":"Deployment","spec":{"containers":[]}}`,
		`{"apiVersion":"apps/v1","kind":"Deployment","spec":{"replicas":2}}`,
		`{"apiVersion":"v1","kind":"Pod","spec":{"hostPID":"yes"}}`,
		`{"apiVersion":"v1","kind":7}`,
		`{"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}}`,
		`{"apiVersion":"v1","kind":"List","items":[]}`,
		`[{"kind":"Pod"}]`, `{`, ` {"apiVersion":"v1","kind":"Pod","spec":{}} `,
	}
	for _, raw := range raws {
		obj, err := k8s.DecodeObject([]byte(raw))
		sameAsDecodeObjectOf(t, []byte(raw), obj, err)
	}
}

// sameAsDecodeObjectOf fails unless DecodeObjectOf(raw) returns obj and err
// (what DecodeObject returned) for the kind raw has and for each pod kind.
func sameAsDecodeObjectOf(t *testing.T, raw []byte, obj k8s.Object, err error) {
	t.Helper()
	kinds := [][2]string{{"v1", "Pod"}, {"apps/v1", "Deployment"}, {"batch/v1", "CronJob"}, {"v1", "PodTemplate"}, {"v1", "Service"}}
	var h struct{ APIVersion, Kind any }
	if json.Unmarshal(raw, &h) == nil {
		if v, ok := h.APIVersion.(string); ok {
			if k, ok := h.Kind.(string); ok {
				kinds = append(kinds, [2]string{v, k})
			}
		}
	}
	for _, k := range kinds {
		got, gotErr := k8s.DecodeObjectOf(raw, k[0], k[1])
		if fmt.Sprint(gotErr) != fmt.Sprint(err) || !errors.Is(gotErr, k8s.ErrNotWorkload) != !errors.Is(err, k8s.ErrNotWorkload) ||
			reflect.TypeOf(gotErr) != reflect.TypeOf(err) {
			t.Fatalf("DecodeObjectOf(%q, %s %s) error = %v, want %v (of DecodeObject)", raw, k[0], k[1], gotErr, err)
		}
		if !reflect.DeepEqual(got, obj) {
			t.Fatalf("DecodeObjectOf(%q, %s %s) = %+v, want %+v (of DecodeObject)", raw, k[0], k[1], got, obj)
		}
	}
}

func TestIgnores(t *testing.T) {
	obj := func(objAnn, podAnn map[string]string) k8s.Object {
		o := k8s.Object{Workload: compliance.Workload{Source: compliance.Source{
			File: "a.yaml", Line: 4, Annotations: objAnn,
			Object: compliance.Object{Kind: "Deployment", Namespace: "ns", Name: "web"},
		}}}
		o.Template.Annotations = podAnn
		return o
	}
	tests := []struct {
		name           string
		objAnn, podAnn map[string]string
		want           map[string]string
		err            string
	}{
		{name: "none", objAnn: map[string]string{"other": "x"}},
		{
			name:   "object and template, object wins",
			objAnn: map[string]string{"bulwark.dev/ignore-check.host-pid": " node agent "},
			podAnn: map[string]string{"bulwark.dev/ignore-check.host-pid": "other", "bulwark.dev/ignore-check.net-raw": "ping"},
			want:   map[string]string{"host-pid": "node agent", "net-raw": "ping"},
		},
		{name: "empty reason", objAnn: map[string]string{"bulwark.dev/ignore-check.privileged": "  "},
			err: `a.yaml:4: Deployment ns/web: annotation "bulwark.dev/ignore-check.privileged" needs a reason`},
		{name: "no check", podAnn: map[string]string{"bulwark.dev/ignore-check.": "why"},
			err: `a.yaml:4: Deployment ns/web: annotation "bulwark.dev/ignore-check." names no check`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := k8s.Ignores(obj(tc.objAnn, tc.podAnn))
			if tc.err != "" {
				var pe *k8s.ParseError
				if !errors.As(err, &pe) || err.Error() != tc.err {
					t.Fatalf("Ignores() error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Ignores() (-want +got):\n%s", diff)
			}
		})
	}
}
