// Package router is berth's HTTP(S) reverse proxy: Host to app to healthy
// instances.
//
// The deploy package builds a whole Table (apps with their backends, hosts,
// uploaded certificates) and hands it over with SetTable; the router swaps it
// in atomically, so requests in flight finish where they started and new
// ones see the new table. A request goes to one of its app's backends by
// round-robin or least connections over pooled keep-alive connections. A
// backend that refuses a connection is left out for Config.FailTimeout, and
// the request is retried on another backend; requests that can be sent again
// (idempotent, without a body) are also retried when a backend closes the
// connection before answering. Unknown hosts get a 404 page, apps with no
// backend able to answer a 503 page.
//
// The plain-HTTP listener is served by the router's own HTTP/1.x server
// (fast.go), which forwards heads in place and allocates nothing per request
// on the common path; the HTTPS listener (TLS, HTTP/2) is net/http calling
// Router.ServeHTTP. Both pass on X-Forwarded-For/Proto/Host and X-Request-Id,
// drop hop-by-hop headers, stream bodies (chunked or not) both ways, relay
// protocol upgrades (websockets) and write one access log line per request.
//
// Certificates come from the table (certs:add) or, with ACME on, from an ACME
// CA through autocert for hosts in the table only; the http-01 challenge is
// answered on the plain-HTTP listener.
package router
