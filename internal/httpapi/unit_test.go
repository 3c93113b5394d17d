package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestLoginLimiterBackoff(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := newLoginLimiter(func() time.Time { return now }, freeUserFailures)
	for i := range freeUserFailures - 1 {
		l.fail("u:alice")
		if w := l.check("u:alice"); w != 0 {
			t.Fatalf("after %d failures check = %v, want 0", i+1, w)
		}
	}
	var last time.Duration
	for i := range 4 {
		l.fail("u:alice")
		w := l.check("u:alice")
		if w <= last {
			t.Fatalf("failure %d: wait %v, want more than %v", freeUserFailures+i, w, last)
		}
		last = w
	}
	if w := l.check("u:bob"); w != 0 {
		t.Errorf("other user check = %v, want 0", w)
	}
	now = now.Add(last)
	if w := l.check("u:alice"); w != 0 {
		t.Errorf("after the back-off check = %v, want 0", w)
	}
	l.succeed("u:alice")
	l.fail("u:alice")
	if w := l.check("u:alice"); w != 0 {
		t.Errorf("after success and one failure check = %v, want 0", w)
	}
	for range 100 {
		l.fail("u:mallory")
	}
	if w := l.check("u:mallory"); w > maxBackoff {
		t.Errorf("wait %v exceeds the cap %v", w, maxBackoff)
	}
}

func TestDecodeJSON(t *testing.T) {
	type req struct {
		Name string `json:"name"`
		N    int    `json:"n"`
	}
	tests := []struct {
		name, body, ctype, want string
	}{
		{"ok", `{"name":"a","n":1}`, "application/json", ""},
		{"malformed", `{"name":`, "", "malformed JSON"},
		{"syntax", `{"name" "a"}`, "", "malformed JSON at byte"},
		{"unknown field", `{"name":"a","evil":1}`, "", `unknown field "evil"`},
		{"wrong type", `{"n":"x"}`, "", `field "n" must be int`},
		{"trailing", `{"name":"a"} {}`, "", "data after the JSON value"},
		{"empty", ``, "", "request body is empty"},
		{"too big", `{"name":"` + strings.Repeat("a", maxBodyBytes) + `"}`, "", "larger than"},
		{"content type", `{}`, "text/plain", "not application/json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tc.body))
			if tc.ctype != "" {
				r.Header.Set("Content-Type", tc.ctype)
			}
			var v req
			err := decodeJSON(httptest.NewRecorder(), r, &v)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("decodeJSON(%q) = %v, want nil", tc.body, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("decodeJSON(%q) = %v, want error containing %q", tc.body, err, tc.want)
			}
			if tc.want != "" {
				if st, _ := classify(err); st != http.StatusBadRequest {
					t.Errorf("classify(%v) = %d, want 400", err, st)
				}
			}
		})
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"username":"a","password":"b"}`, `{`, `[]`, `{"username":1}`, "\x00", `{"a":{"b":[1,2,{}]}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		var v authRequest
		if err := decodeJSON(httptest.NewRecorder(), r, &v); err != nil {
			if st, _ := classify(err); st != http.StatusBadRequest {
				t.Fatalf("decodeJSON(%q) error %v classified %d, want 400", body, err, st)
			}
		}
	})
}
