// Package web serves berth's dashboard and JSON API over platform.
//
// The dashboard is server-rendered html/template pages with a little
// progressive enhancement (the live log view); every template, style sheet
// and script is embedded in the binary, so it works on a host without
// internet. People sign in with a user name and password (platform's
// bcrypt hashes); sessions live in Postgres and ride in an HttpOnly,
// SameSite cookie (Secure, with a __Host- name, over TLS). Every state-changing form carries a
// CSRF token bound to the session (to a pre-session cookie on the login
// form) and must come from the dashboard's own origin, not merely its
// site: apps are served on its subdomains. Failed sign-ins back off per
// user and per address, and a strict Content-Security-Policy allows only
// berth's own script.
//
// The JSON API under /api/v1 takes personal API tokens (Authorization:
// Bearer) and offers the SSH command set's operations; its OpenAPI
// document is served at /api/v1/openapi.json.
//
// Both go through platform with the signed-in user as the actor, and run
// the same deploy operations as gitreceive's commands, so one set of rules
// holds everywhere: a member sees and changes only their own and shared
// apps, and anything else is not found.
package web
