// Package builder turns source into images made of shared, read-only layers.
package builder
