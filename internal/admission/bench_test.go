package admission_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	"bulwark/internal/admission"
	"bulwark/internal/admission/admissiontest"
)

// BenchmarkReview is the controller's own cost per review of
// admissiontest.ProductionDeployment, without TLS and HTTP: decode, evaluate
// (catalog and PSS baseline), answer and queue the audit. Each request is
// handed to ServeHTTP on a new goroutine, as the HTTP/2 server does.
func BenchmarkReview(b *testing.B) {
	for _, mode := range []string{"audit", "enforce"} {
		b.Run(mode, func(b *testing.B) {
			e := start(b, `{"mode":"`+mode+`",`+blockPrivileged+`}`, admission.Config{})
			bodies := make([][]byte, 256)
			for i := range bodies {
				bodies[i] = admissiontest.Review(admissiontest.Request(fmt.Sprint("uid-", i), admissionv1.Create, admissiontest.ProductionDeployment(), nil))
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				req := httptest.NewRequest(http.MethodPost, "/v1/admission", bytes.NewReader(bodies[i%len(bodies)]))
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				done := make(chan struct{})
				go func() { e.wh.ServeHTTP(rec, req); close(done) }()
				<-done
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code, rec.Body)
				}
			}
		})
	}
}
