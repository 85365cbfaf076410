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
//     them into a container's user namespace with idmapped mounts. A RUN
//     step's upper directory is idmapped the same way by the engine, so it
//     already holds image IDs; a runner that cannot do that reports the
//     host ID of container root in StepResult and the builder shifts the
//     directory back before it becomes a layer. Overlay bookkeeping xattrs
//     are dropped and user.overlay.* marks become trusted.overlay.* ones.
//
// A layer used by N images exists once on disk. Reference counts are derived
// from the image records and the build cache whenever they are needed (by
// Prune and LayerRefs), so a crash can never leave a stale count behind.
//
// A Builder runs Dockerfile builds (parsed with moby/buildkit's Dockerfile
// parser) and buildpack-style builds for apps with a Procfile and no
// Dockerfile. RUN steps execute in engine containers through the StepRunner
// interface (EngineRunner adapts package engine); every other step is done
// by the builder itself, writing only into the step's new layer. Each step's
// cache key chains its parent's key with the expanded instruction, the
// content hash of COPY/ADD sources and, for RUN, the build-arg values in
// scope, so a change rebuilds only from the first step it affects and apps
// with identical leading steps share those layers.
package builder
