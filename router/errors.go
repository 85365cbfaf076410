package router

import "errors"

// Sentinel errors of the router, checked with errors.Is.
var (
	// ErrNoCertificate means the TLS listener has neither an uploaded
	// certificate nor ACME for the requested server name.
	ErrNoCertificate = errors.New("no certificate for this host: upload one with certs:add or enable ACME")
	// ErrHostNotAllowed means ACME was asked for a certificate for a host that
	// is not in the routing table.
	ErrHostNotAllowed = errors.New("host is not in the routing table")
	// ErrBadUpstreamResponse means a backend sent a response the router
	// could not parse as HTTP/1.x.
	ErrBadUpstreamResponse = errors.New("malformed response from backend")
	// ErrNoListener means Serve was asked to serve with no listener at all.
	ErrNoListener = errors.New("no listener to serve on")
	// ErrInvalidConfig means a Config field has a value the router cannot use.
	ErrInvalidConfig = errors.New("invalid router config")

	// errNothingRead means the peer closed the connection before sending
	// any byte of a message (typically a pooled backend connection the
	// backend had just closed): the request may be retried.
	errNothingRead = errors.New("connection closed before any byte of a message")
	// errBadTrailer means a chunked request body ended in a malformed
	// trailer section.
	errBadTrailer = errors.New("malformed trailer section")
	// errHeadTooLarge means a request or response head is over maxHeadBytes.
	errHeadTooLarge = errors.New("head too large")
)
