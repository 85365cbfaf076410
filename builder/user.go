package builder

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ExecUser is who a container's process runs as: the IDs an image's USER
// names, resolved in the image's /etc/passwd and /etc/group.
type ExecUser struct {
	// UID and GID are the process's user and primary group.
	UID, GID uint32
	// Groups are the supplementary groups, as Docker sets them: GID first,
	// then, when USER names no group, every group of /etc/group that lists
	// the user by name.
	Groups []uint32
}

// maxContainerID is the highest ID inside a container: user namespaces
// map 65536 IDs.
const maxContainerID = 1<<16 - 1

// passwdEntry is one well-formed line of /etc/passwd.
type passwdEntry struct {
	name     string
	uid, gid uint32
}

// groupEntry is one well-formed line of /etc/group.
type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// dbRecords splits a passwd- or group-style file into the colon-separated
// fields of its lines, leaving out blank lines, comments and lines with no
// name or fewer than want fields.
func dbRecords(b []byte, want int) [][]string {
	var out [][]string
	for line := range strings.Lines(string(b)) {
		line = strings.TrimRight(line, "\r\n")
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) < want || f[0] == "" {
			continue
		}
		out = append(out, f)
	}
	return out
}

// parseID parses a decimal user or group ID.
func parseID(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}

// parsePasswd returns the entries of an /etc/passwd in file order; lines
// without a name or with a uid or gid that is not a number are skipped.
func parsePasswd(b []byte) []passwdEntry {
	var out []passwdEntry
	for _, f := range dbRecords(b, 4) {
		uid, ok1 := parseID(f[2])
		gid, ok2 := parseID(f[3])
		if ok1 && ok2 {
			out = append(out, passwdEntry{name: f[0], uid: uid, gid: gid})
		}
	}
	return out
}

// parseGroup returns the entries of an /etc/group in file order; lines
// without a name or with a gid that is not a number are skipped (runc
// would read such a gid as 0 and so put the user in root's group).
func parseGroup(b []byte) []groupEntry {
	var out []groupEntry
	for _, f := range dbRecords(b, 3) {
		gid, ok := parseID(f[2])
		if !ok {
			continue
		}
		e := groupEntry{name: f[0], gid: gid}
		if len(f) > 3 {
			for _, m := range strings.Split(f[3], ",") {
				if m != "" {
					e.members = append(e.members, m)
				}
			}
		}
		out = append(out, e)
	}
	return out
}

// resolveExecUser resolves an image's USER ("user[:group]", each a name or
// a number) against its /etc/passwd and /etc/group (nil when the image has
// none) as Docker does (runc's GetExecUser, then the primary group added
// to the supplementary ones):
//   - a user name must be in /etc/passwd; a uid need not be, and one that
//     is not gets group 0 and no memberships;
//   - without a group, the primary group is the passwd entry's and the
//     user is also in every group that lists its name;
//   - with a group (a name, which must be in /etc/group, or a number), that
//     group is the primary and only one.
//
// An empty USER is uid 0. sameGID gives a bare uid its own number as group
// (COPY --chown). Supplementary groups outside the container's ID range
// are left out: no file in the container can carry them.
func resolveExecUser(spec string, passwd, group []byte, sameGID bool) (ExecUser, error) {
	if spec == "" {
		spec = "0"
	}
	user, grp, _ := strings.Cut(spec, ":")
	if user == "" {
		return ExecUser{}, fmt.Errorf("%q names no user", spec)
	}
	var u ExecUser
	var name string // the passwd entry's, whose memberships count
	users := parsePasswd(passwd)
	if n, ok := parseID(user); ok {
		u.UID = n
		if i := slices.IndexFunc(users, func(e passwdEntry) bool { return e.uid == n }); i >= 0 {
			name, u.GID = users[i].name, users[i].gid
		}
		if sameGID {
			u.GID = n
		}
	} else {
		i := slices.IndexFunc(users, func(e passwdEntry) bool { return e.name == user })
		if i < 0 {
			return ExecUser{}, fmt.Errorf("user %q is not in the image's /etc/passwd; add it there or give a numeric uid", user)
		}
		name, u.UID, u.GID = users[i].name, users[i].uid, users[i].gid
	}
	groups := parseGroup(group)
	if grp != "" {
		name = "" // Docker adds no memberships to an explicit group
		if n, ok := parseID(grp); ok {
			u.GID = n
		} else {
			i := slices.IndexFunc(groups, func(e groupEntry) bool { return e.name == grp })
			if i < 0 {
				return ExecUser{}, fmt.Errorf("group %q is not in the image's /etc/group; add it there or give a numeric gid", grp)
			}
			u.GID = groups[i].gid
		}
	}
	if u.UID > maxContainerID || u.GID > maxContainerID {
		return ExecUser{}, fmt.Errorf("user %q is %d:%d; containers have IDs 0 to %d only", spec, u.UID, u.GID, maxContainerID)
	}
	u.Groups = []uint32{u.GID}
	if name == "" {
		return u, nil
	}
	seen := map[uint32]bool{u.GID: true}
	for _, g := range groups {
		if g.gid <= maxContainerID && !seen[g.gid] && slices.Contains(g.members, name) {
			seen[g.gid] = true
			u.Groups = append(u.Groups, g.gid)
		}
	}
	return u, nil
}
