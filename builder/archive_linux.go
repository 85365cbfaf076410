package builder

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
)

// isArchive reports whether path is a tar archive (plain, gzip or bzip2)
// that ADD extracts instead of copying.
func isArchive(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	r, err := decompress(bufio.NewReader(f))
	if err != nil {
		return false
	}
	hdr := make([]byte, 512)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return false
	}
	return bytes.Equal(hdr[257:262], []byte("ustar"))
}

func decompress(br *bufio.Reader) (io.Reader, error) {
	magic, _ := br.Peek(3)
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		return gzip.NewReader(br)
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(br), nil
	}
	return br, nil
}

// extractArchive unpacks a local tar archive into dst for ADD, owning the
// files as opt says (root by default, as COPY does).
func extractArchive(ctx context.Context, path, dst string, opt copyOptions) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open archive: %w", err)
	}
	defer f.Close()
	r, err := decompress(bufio.NewReader(f))
	if err != nil {
		return fmt.Errorf("decompress archive: %w", err)
	}
	return unpackTar(ctx, r, dst, unpackOptions{keepOwner: false, uid: opt.uid, gid: opt.gid})
}
