// Package gitreceive is berth's SSH front door: git push to deploy and the Dokku-style command set.
package gitreceive
