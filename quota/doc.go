// Package quota enforces per-app disk and network limits for the engine's
// containers, and parses the limit values users type.
//
// # Disk
//
// A Disk gives each app one directory on a limited filesystem; the engine
// puts the upper and work directories of that app's containers under it,
// so everything the app's containers write to their writable layers (and
// volumes placed there) counts against one per-app limit. Writes past the
// limit fail with EDQUOT or ENOSPC; the host and other apps are unaffected.
// Three drivers exist, tried in this order by "auto":
//
//   - setquota: a kernel user quota (bytes and inodes) on the app's host
//     UID, the UID its user-namespace root maps to, on the filesystem
//     holding Root, set with quotactl(2) — the Cloud Foundry warden way. It
//     needs no devices and no copies, but the filesystem must be mounted
//     with usrquota and the kernel built with quota support (for ext4,
//     CONFIG_QUOTA and CONFIG_QFMT_V2; for xfs, CONFIG_XFS_QUOTA). Writes
//     through an overlay run with the mounter's credentials, and a process
//     with CAP_SYS_RESOURCE ignores hard limits, so with this driver the
//     engine must mount a container's overlay from inside its user
//     namespace (or without CAP_SYS_RESOURCE). A user quota also counts
//     only files owned by the app's host UID: files written by other users
//     inside the container belong to other mapped UIDs. The other drivers
//     bind whatever the credentials and owners.
//   - btrfs: one btrfs subvolume per app with a qgroup limit on its
//     referenced bytes. On a btrfs host the subvolumes live on the host's
//     filesystem; elsewhere they live in one sparse, loop-backed btrfs
//     image under Root (the pool), which grows when the sum of the limits
//     outgrows it, so that no app runs out of pool space before reaching
//     its own limit. This is the preferred fallback for
//     kernels without quota support: the whole pool costs one loop device,
//     however many apps there are (hosts often have only eight), a limit
//     can be raised or lowered at any time, even below current use, and
//     nothing is allocated up front. Overlayfs accepts a btrfs upper layer.
//     Qgroups count bytes only, so there is no inode limit.
//   - loop: one sparse ext4 image per app on its own loop device, with a
//     fixed inode count. A root-only reserve file inside takes up the room
//     beyond the limit, so limits change online by resizing that file; a
//     limit beyond the image's room needs an online resize2fs, which needs
//     CAP_SYS_RESOURCE. It works wherever ext4 and loop devices do, at the
//     cost of one loop device per app.
//
// Detect reports which drivers work and why the others do not; Driver and
// Mechanism say which one is in use, for `berth info` and resource:report.
// The state file under Root records every app's quota, so that Restore
// re-attaches pools and images after a restart, reusing a loop device an
// image is still attached to. Loop devices are attached with
// LO_FLAGS_AUTOCLEAR, so the kernel detaches them when their filesystem is
// unmounted, by Remove, by Close or after a crash. Images are sparse: they
// take host space only as apps write, so a host whose own filesystem fills
// up fails the images' writes too; keep the data directory's filesystem
// larger than the limits handed out.
//
// # Network
//
// SetBandwidth caps the traffic of a container's veth from the host side,
// through netlink, as the CNI bandwidth plugin does: a tbf at the root of
// the host veth shapes traffic into the container, and an ingress qdisc
// redirects traffic out of the container to an ifb device, named from the
// veth by IFBName, whose root tbf shapes it. ClearBandwidth and
// PruneBandwidth remove them.
//
// # Values
//
// The command layer (platform) parses `resource:limit` values with
// internal/units, which this package also prints sizes and rates with;
// limits reaching this package are checked against the same bounds. Report
// renders the disk part of `resource:report`.
package quota
