package web

import (
	"errors"
	"net/http"

	"github.com/berthhq/berth/deploy"
	"github.com/berthhq/berth/platform"
)

// Sentinel errors of the web layer; platform's sentinels cover the rest.
var (
	// ErrCSRF: a state-changing form or request came without the CSRF
	// token of the page it was posted from.
	ErrCSRF = errors.New("missing or wrong CSRF token: reload the page and try again")
	// ErrCrossOrigin: a state-changing request came from a page of
	// another origin (an app's, say), not from the dashboard.
	ErrCrossOrigin = errors.New("request from another site refused: use the dashboard's own pages")
	// ErrUnauthenticated: no session or API token, or an expired one.
	ErrUnauthenticated = errors.New("sign in first: send Authorization: Bearer <API token> (create one on your account page)")
	// ErrTooManyAttempts: sign-ins are backing off after failed attempts.
	ErrTooManyAttempts = errors.New("too many failed sign-ins")
	// ErrBadRequest: the request could not be read (bad JSON, bad form).
	ErrBadRequest = errors.New("bad request")
)

// statusOf maps an error to its HTTP status and whether it is the user's
// doing (not logged) rather than the server's.
func statusOf(err error) (int, bool) {
	switch {
	case errors.Is(err, ErrCSRF), errors.Is(err, ErrCrossOrigin):
		return http.StatusForbidden, true
	case errors.Is(err, ErrUnauthenticated), errors.Is(err, platform.ErrBadCredentials):
		return http.StatusUnauthorized, true
	case errors.Is(err, ErrTooManyAttempts):
		return http.StatusTooManyRequests, true
	case errors.Is(err, ErrBadRequest), errors.Is(err, platform.ErrInvalid):
		return http.StatusBadRequest, true
	case errors.Is(err, platform.ErrNotFound):
		return http.StatusNotFound, true
	case errors.Is(err, platform.ErrExists), errors.Is(err, platform.ErrConflict):
		return http.StatusConflict, true
	case errors.Is(err, platform.ErrForbidden):
		return http.StatusForbidden, true
	case errors.Is(err, deploy.ErrHealthCheck), errors.Is(err, deploy.ErrNoRelease), errors.Is(err, deploy.ErrNoImage),
		errors.Is(err, deploy.ErrAppStopped):
		return http.StatusConflict, true
	case errors.Is(err, deploy.ErrUnknownProcessType), errors.Is(err, deploy.ErrInvalidChecks):
		return http.StatusBadRequest, true
	}
	return http.StatusInternalServerError, false
}
