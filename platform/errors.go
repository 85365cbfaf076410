package platform

import (
	"errors"
	"fmt"
)

// Sentinel errors; check them with errors.Is. The errors platform returns
// wrap them in types that carry a message for the user.
var (
	// ErrNotFound: the thing does not exist, or the actor may not see it.
	ErrNotFound = errors.New("not found")
	// ErrExists: a name, hostname or key is already taken.
	ErrExists = errors.New("already exists")
	// ErrInvalid: bad input; the error is an *InvalidError naming the field.
	ErrInvalid = errors.New("invalid")
	// ErrForbidden: the actor may see the thing but not do this to it.
	ErrForbidden = errors.New("forbidden")
	// ErrBadCredentials: a user name and password (or token) did not match.
	ErrBadCredentials = errors.New("bad credentials")
	// ErrConflict: the request cannot be done in the thing's current state.
	ErrConflict = errors.New("conflict")
)

// InvalidError says which input field was wrong and how. It never holds a
// config var's value.
type InvalidError struct {
	// Field names the input, e.g. "app name", "hostname", "memory".
	Field string
	// Value is the rejected input as the user gave it, quoted in the
	// message; empty for secrets.
	Value string
	// Reason says what is wrong and what to do.
	Reason string
}

// Error implements error.
func (e *InvalidError) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("invalid %s %q: %s", e.Field, e.Value, e.Reason)
	}
	return fmt.Sprintf("invalid %s: %s", e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, value, reason string) error {
	return &InvalidError{Field: field, Value: value, Reason: reason}
}

// NotFoundError says what was not found.
type NotFoundError struct {
	// Kind is the sort of thing: "app", "release", "user", ...
	Kind string
	// Name identifies it.
	Name string
	// Hint says what to do, e.g. "see apps:list".
	Hint string
}

// Error implements error.
func (e *NotFoundError) Error() string {
	msg := fmt.Sprintf("%s %q not found", e.Kind, e.Name)
	if e.Hint != "" {
		msg += ": " + e.Hint
	}
	return msg
}

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

func notFound(kind, name, hint string) error {
	return &NotFoundError{Kind: kind, Name: name, Hint: hint}
}

// ExistsError says what is already taken.
type ExistsError struct {
	// Kind is the sort of thing: "app", "domain", "SSH key", ...
	Kind string
	// Name is the taken name.
	Name string
	// Hint says what to do.
	Hint string
}

// Error implements error.
func (e *ExistsError) Error() string {
	msg := fmt.Sprintf("%s %q already exists", e.Kind, e.Name)
	if e.Hint != "" {
		msg += ": " + e.Hint
	}
	return msg
}

// Is makes errors.Is(err, ErrExists) true.
func (e *ExistsError) Is(target error) bool { return target == ErrExists }

func exists(kind, name, hint string) error {
	return &ExistsError{Kind: kind, Name: name, Hint: hint}
}

// forbidden wraps ErrForbidden with a message saying who may do it.
func forbidden(msg string) error {
	return fmt.Errorf("%s: %w", msg, ErrForbidden)
}
