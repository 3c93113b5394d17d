package admission_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"bulwark/internal/admission"
	"bulwark/internal/admission/admissiontest"
	"bulwark/internal/sqlite"
	"bulwark/internal/store"
)

// fuzzSeeds are reviews of every pod kind, operation and shape the tests
// use, and broken ones.
func fuzzSeeds() [][]byte {
	hardened, privileged := admissiontest.HardenedSpec(), admissiontest.PrivilegedSpec()
	objs := []runtime.Object{
		admissiontest.Pod("prod", "p", privileged),
		admissiontest.Deployment("prod", "d", hardened),
		admissiontest.CronJob("kube-system", "c", privileged),
		&corev1.Service{},
	}
	var out [][]byte
	for _, o := range objs {
		out = append(out, admissiontest.Review(admissiontest.Request("u", admissionv1.Create, o, nil)))
	}
	out = append(out,
		admissiontest.Review(admissiontest.Request("u", admissionv1.Update, objs[1], admissiontest.Deployment("prod", "d", privileged))),
		admissiontest.Review(admissiontest.Request("u", admissionv1.Delete, nil, objs[0])),
		[]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"CREATE","object":{"apiVersion":"apps/v1","kind":"Deployment","spec":{"template":{"spec":{"hostPID":true,"containers":[{"name":"a","image":"b"}]}}}}}}`),
		[]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","kind":"AdmissionReview"}`),
		[]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`),
		[]byte(`[]`), []byte(`null`), []byte(`{`), nil,
	)
	return out
}

// FuzzReview posts arbitrary bodies: the answer is a 200 AdmissionReview
// with the request's UID or a 400, never a crash or a 500.
func FuzzReview(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	logger := slog.New(slog.DiscardHandler)
	db, err := sqlite.Open(f.Context(), filepath.Join(f.TempDir(), "bulwark.db"), logger)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = db.Close() })
	if err := db.Update(f.Context(), func(w store.Writer) error {
		_, err := w.PutPolicy(f.Context(), "admission", []byte(`{"mode":"enforce","pssLevel":"restricted","ignoreAnnotations":true,`+blockPrivileged+`}`))
		return err
	}); err != nil {
		f.Fatal(err)
	}
	// Run is not started: the audits queue up to the bound, then count as dropped.
	wh, err := admission.New(f.Context(), admission.Config{AuditQueue: 1}, db, logger)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/admission", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		wh.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			resp, err := admissiontest.DecodeResponse(rec.Body.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			var in struct {
				Request struct {
					UID string `json:"uid"`
				} `json:"request"`
			}
			_ = json.Unmarshal(body, &in)
			if string(resp.UID) != in.Request.UID || resp.UID == "" {
				t.Fatalf("answer uid %q, request uid %q", resp.UID, in.Request.UID)
			}
			if !resp.Allowed && (resp.Result == nil || resp.Result.Code != http.StatusForbidden) {
				t.Fatalf("a denial without a 403 result: %+v", resp)
			}
		case http.StatusBadRequest:
			var e struct {
				Err string `json:"err"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Err == "" {
				t.Fatalf("400 without a message: %s", rec.Body)
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	})
}
