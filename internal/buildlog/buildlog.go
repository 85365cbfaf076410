// Package buildlog reads the build output berth keeps of every deploy, for
// the front doors that show it (the dashboard, the API, the SSH and local
// commands), so that each shows the same part of it.
package buildlog

import "os"

// MaxShown is how much of a build log a front door shows: its end, where a
// failed build says why.
const MaxShown = 1 << 20

// ReadTail reads at most n bytes from the end of the file at path and says
// whether it left the start out. A file still being written (a deploy in
// progress) is read up to the size it had when ReadTail looked.
func ReadTail(path string, n int64) (b []byte, truncated bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	off := int64(0)
	if st.Size() > n {
		off = st.Size() - n
	}
	b = make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, false, err
	}
	return b, off > 0, nil
}
