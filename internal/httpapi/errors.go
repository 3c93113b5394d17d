package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"bulwark/internal/auth"
	"bulwark/internal/store"
)

// Error kinds raised by handlers. classify maps them, and the store's and the
// domain's errors, to an HTTP status in one place.
var (
	errUnauthorized = errors.New("unauthorized")
	errForbidden    = errors.New("forbidden")
)

// badRequestError carries a message safe to show the caller.
type badRequestError struct{ msg string }

func (e *badRequestError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &badRequestError{msg: fmt.Sprintf(format, args...)}
}

// conflictError is a change that the current state does not allow; its
// message is safe to show the caller.
type conflictError struct{ msg string }

func (e *conflictError) Error() string { return e.msg }

// tooManyError tells the caller when to come back.
type tooManyError struct{ retryAfter time.Duration }

func (e *tooManyError) Error() string {
	return fmt.Sprintf("too many failed logins; retry in %s", e.retryAfter.Round(time.Second))
}

// classify returns the status and the message the caller may see. Internal
// errors get a generic message; their cause is logged by writeError.
func classify(err error) (int, string) {
	var br *badRequestError
	var tm *tooManyError
	var ce *conflictError
	switch {
	case errors.As(err, &br):
		return http.StatusBadRequest, br.msg
	case errors.As(err, &ce):
		return http.StatusConflict, ce.msg
	case errors.Is(err, auth.ErrInvalid):
		return http.StatusBadRequest, err.Error()
	case errors.As(err, &tm):
		return http.StatusTooManyRequests, tm.Error()
	case errors.Is(err, errUnauthorized):
		return http.StatusUnauthorized, "unauthorized: valid credentials required"
	case errors.Is(err, errForbidden):
		return http.StatusForbidden, err.Error()
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict, err.Error()
	}
	return http.StatusInternalServerError, "internal error"
}

// writeError answers with {"err": "..."} (Prisma's error shape) and logs
// server-side failures once, here.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := classify(err)
	if status >= 500 {
		s.logger.ErrorContext(r.Context(), "request failed", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
	}
	var tm *tooManyError
	if errors.As(err, &tm) {
		w.Header().Set("Retry-After", strconv.Itoa(int(tm.retryAfter.Seconds()+0.999)))
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="bulwark", charset="UTF-8"`)
	}
	writeJSON(w, status, map[string]string{"err": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client went away; nothing to do
}
