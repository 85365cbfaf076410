// Package builder turns source into images made of shared, read-only layers.
//
// A Store keeps content-addressed layer directories under DATA/layers, image
// records (an ordered layer list plus an OCI image config) under
// DATA/images, and the per-step build cache under DATA/buildcache. Layers are
// stored unpacked, in overlayfs' own format, so the engine can stack them as
// overlay lower directories without any conversion:
//
//   - a deleted file is a 0:0 character device (an overlay whiteout), which
//     is what an OCI ".wh.NAME" entry becomes on import;
//   - a directory whose lower contents are hidden carries the
//     trusted.overlay.opaque="y" xattr (an OCI ".wh..wh..opq" entry);
//   - files are owned by the image's own IDs (root is 0); the engine maps
//     them into a container's user namespace with idmapped mounts, and the
//     builder shifts a RUN step's upper directory back to image IDs before it
//     becomes a layer.
//
// A layer used by N images exists once on disk. Reference counts are derived
// from the image records and the build cache whenever they are needed (by
// Prune and LayerRefs), so a crash can never leave a stale count behind.
//
// A Builder runs Dockerfile builds (parsed with moby/buildkit's Dockerfile
// parser) and buildpack-style builds for apps with a Procfile and no
// Dockerfile. RUN steps execute in engine containers through the StepRunner
// interface; every other step is done by the builder itself, writing only
// into the step's new layer.
package builder
