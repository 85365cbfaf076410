// Package deploy rolls releases out to containers, restarts crashed processes and reconciles desired and actual state.
package deploy
