package fleet

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// DefaultMaxContentBytes bounds the content Checksum reads from one tar (a
// tar's sparse members may expand far beyond its size).
const DefaultMaxContentBytes int64 = 2 << 30

// ErrTooLarge is the cause of a Checksum refused for reading more than its
// limit.
var ErrTooLarge = errors.New("firmware tar content exceeds the limit")

// Checksum returns the checksum of a firmware tar (an assets download), as
// ChecksumLimit with DefaultMaxContentBytes.
func Checksum(r io.Reader) (string, error) { return ChecksumLimit(r, DefaultMaxContentBytes) }

// ChecksumLimit returns the checksum of a firmware tar: the hex SHA-256,
// over its regular-file members in byte order of their names, of each
// member's name, NUL, size in decimal, NUL and the SHA-256 of its content
// (32 bytes). A leading "./" of a name is dropped; directories, links and
// other member types are ignored; a name given twice counts with its last
// content (as extracting the tar would). So tar metadata and member order
// do not change the checksum, and ChecksumFiles of the same files gives the
// same value. Content is streamed, never held; reading more than max bytes
// of it fails with ErrTooLarge.
func ChecksumLimit(r io.Reader, max int64) (string, error) {
	members := map[string]member{}
	tr := tar.NewReader(r)
	var total int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("reading firmware tar: %w", err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		d := sha256.New()
		n, err := io.Copy(d, io.LimitReader(tr, max-total+1))
		total += n
		if total > max {
			return "", fmt.Errorf("%w (%d bytes)", ErrTooLarge, max)
		}
		if err != nil {
			return "", fmt.Errorf("reading firmware tar member %s: %w", h.Name, err)
		}
		var m member
		m.size = n
		d.Sum(m.digest[:0])
		members[strings.TrimPrefix(h.Name, "./")] = m
	}
	return checksumMembers(members), nil
}

type member struct {
	size   int64
	digest [sha256.Size]byte
}

// ChecksumFiles returns the checksum Checksum gives for a tar holding files
// (name → content).
func ChecksumFiles(files map[string][]byte) string {
	members := make(map[string]member, len(files))
	for name, b := range files {
		members[strings.TrimPrefix(name, "./")] = member{size: int64(len(b)), digest: sha256.Sum256(b)}
	}
	return checksumMembers(members)
}

func checksumMembers(members map[string]member) string {
	names := make([]string, 0, len(members))
	for n := range members {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		m := members[n]
		io.WriteString(h, n)
		h.Write([]byte{0})
		io.WriteString(h, strconv.FormatInt(m.size, 10))
		h.Write([]byte{0})
		h.Write(m.digest[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}
