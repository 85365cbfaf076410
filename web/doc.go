// Package web serves berth's dashboard and JSON API over platform.
package web
