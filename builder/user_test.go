package builder

import (
	"reflect"
	"strings"
	"testing"
)

const (
	testPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"app:x:1000:1000::/home/app:/bin/sh\n" +
		"broken:x:12:notnum::/:/bin/sh\n" +
		"dup:x:1000:1500::/:/bin/sh\n" +
		"# a comment\n\n" +
		"web:x:33:33::/var/www:/bin/false\r\n"
	testGroup = "root:x:0:\n" +
		"app:x:1000:\n" +
		"extra:x:2000:nobody,app\n" +
		"bad:x:zz:app\n" +
		"short:app\n" +
		":x:4000:app\n" +
		"web:x:33:app,web\r\n" +
		"huge:x:70000:app\n" +
		"again:x:2000:app\n" +
		"apps:x:2500:application,ap\n"
)

func TestResolveExecUser(t *testing.T) {
	member := ExecUser{UID: 1000, GID: 1000, Groups: []uint32{1000, 2000, 33}}
	tests := []struct {
		name    string
		spec    string
		noFiles bool
		sameGID bool
		want    ExecUser
		wantErr string
	}{
		{name: "name gets its memberships, malformed and out-of-range lines skipped, duplicates once", spec: "app", want: member},
		{name: "uid gets the first passwd entry's memberships", spec: "1000", want: member},
		{name: "empty group is no group", spec: "app:", want: member},
		{name: "explicit group by name is the only group", spec: "app:extra", want: ExecUser{UID: 1000, GID: 2000, Groups: []uint32{2000}}},
		{name: "explicit numeric group need not exist", spec: "1000:4321", want: ExecUser{UID: 1000, GID: 4321, Groups: []uint32{4321}}},
		{name: "uid not in passwd is in group 0 alone", spec: "4242", want: ExecUser{UID: 4242, GID: 0, Groups: []uint32{0}}},
		{name: "no user is root", spec: "", want: ExecUser{Groups: []uint32{0}}},
		{name: "CRLF lines, primary group listed again", spec: "web", want: ExecUser{UID: 33, GID: 33, Groups: []uint32{33}}},
		{name: "uid without files", spec: "1000", noFiles: true, want: ExecUser{UID: 1000, Groups: []uint32{0}}},
		{name: "COPY --chown uid takes its own number as group", spec: "1000", sameGID: true, want: ExecUser{UID: 1000, GID: 1000, Groups: []uint32{1000, 2000, 33}}},
		{name: "name on a malformed line", spec: "broken", wantErr: `user "broken" is not in the image's /etc/passwd`},
		{name: "unknown name", spec: "nobody", wantErr: `user "nobody" is not in the image's /etc/passwd`},
		{name: "name without files", spec: "app", noFiles: true, wantErr: `user "app" is not in`},
		{name: "unknown group", spec: "app:nogroup", wantErr: `group "nogroup" is not in the image's /etc/group`},
		{name: "group on a malformed line", spec: "app:bad", wantErr: `group "bad" is not in`},
		{name: "uid beyond the container's IDs", spec: "70000", wantErr: "containers have IDs 0 to 65535 only"},
		{name: "gid beyond the container's IDs", spec: "app:70000", wantErr: "containers have IDs 0 to 65535 only"},
		{name: "group without user", spec: ":extra", wantErr: "names no user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			passwd, group := []byte(testPasswd), []byte(testGroup)
			if tt.noFiles {
				passwd, group = nil, nil
			}
			got, err := resolveExecUser(tt.spec, passwd, group, tt.sameGID)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
