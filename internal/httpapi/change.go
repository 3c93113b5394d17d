package httpapi

import (
	"context"
	"net/http"

	"bulwark/internal/audit"
	"bulwark/internal/store"
)

// change applies fn and its management audit record in one transaction, so
// that a change is never stored without its record nor a record without its
// change. fn returns the words that describe the change.
func (s *Server) change(r *http.Request, p principal, typ string, fn func(ctx context.Context, tx store.Writer) (string, error)) error {
	ctx := r.Context()
	return s.store.Update(ctx, func(tx store.Writer) error {
		diff, err := fn(ctx, tx)
		if err != nil {
			return err
		}
		who := p.username
		if p.keyID != "" {
			who += " (key " + p.keyID + ")"
		}
		_, err = tx.AppendAudit(ctx, audit.Mgmt{
			Time: s.cfg.Now(), Username: who, Type: typ, Method: r.Method, API: r.URL.Path,
			Status: "succeeded", SourceIP: clientIP(r), Diff: diff,
		})
		return err
	})
}
