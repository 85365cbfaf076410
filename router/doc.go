// Package router is berth's HTTP(S) reverse proxy: Host to app to healthy instances.
package router
