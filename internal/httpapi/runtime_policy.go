package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"bulwark/internal/audit"
	"bulwark/internal/runtimepolicy"
	"bulwark/internal/store"
)

// getRuntimePolicy answers GET /api/v1/policies/runtime/{container,host}:
// the stored policy, or the default policy when none was ever set.
func (s *Server) getRuntimePolicy(kind runtimepolicy.Kind) func(http.ResponseWriter, *http.Request, principal) error {
	return func(w http.ResponseWriter, r *http.Request, _ principal) error {
		snap, err := s.store.PolicySnapshot(r.Context())
		if err != nil {
			return fmt.Errorf("load policy: %w", err)
		}
		doc, ok := snap.Policies[kind.PolicyType()]
		if !ok {
			if doc, err = json.Marshal(runtimepolicy.DefaultPolicy(kind)); err != nil {
				return err
			}
		}
		w.Header().Set("X-Bulwark-Policy-Revision", fmt.Sprint(snap.Revision))
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append(doc, '\n'))
		return nil
	}
}

// putRuntimePolicy answers PUT /api/v1/policies/runtime/{container,host}:
// a policy that runtimepolicy.ParsePolicy accepts replaces the stored one,
// as sent, and every connected Defender gets the new snapshot.
func (s *Server) putRuntimePolicy(kind runtimepolicy.Kind) func(http.ResponseWriter, *http.Request, principal) error {
	return func(w http.ResponseWriter, r *http.Request, p principal) error {
		var doc json.RawMessage
		if err := decodeJSON(w, r, &doc); err != nil {
			return err
		}
		if _, err := runtimepolicy.ParsePolicy(doc); err != nil {
			return badRequest("%v", err)
		}
		rev, err := s.putSnapshotDoc(r, p, kind.PolicyType(), doc, fmt.Sprintf("replaced the %s runtime policy", kind))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]int64{"revision": rev})
		return nil
	}
}

// putSnapshotDoc stores one document of the policy snapshot with its audit
// record, then pushes the snapshot to the Defenders.
func (s *Server) putSnapshotDoc(r *http.Request, p principal, typ string, doc []byte, what string) (int64, error) {
	var rev int64
	err := s.change(r, p, audit.TypePolicy, func(ctx context.Context, tx store.Writer) (string, error) {
		var err error
		rev, err = tx.PutPolicy(ctx, typ, compactJSON(doc))
		return fmt.Sprintf("%s (revision %d)", what, rev), err
	})
	if err != nil {
		return 0, err
	}
	return rev, s.pushPolicy(r.Context())
}

func compactJSON(doc []byte) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, doc); err != nil {
		return doc
	}
	return b.Bytes()
}
