package fleet

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
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
		buf := copyBufs.Get().(*[]byte)
		n, err := io.CopyBuffer(d, io.LimitReader(tr, max-total+1), *buf)
		copyBufs.Put(buf)
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

// copyBufs are the buffers members are hashed through: a fleet verifies
// every flash, and io.Copy would allocate 32 KiB for each member.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

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

// flashedSums remembers the checksums of the last few firmware tars the
// devices of a fleet flashed. One download is shared by every device that
// flashes it (Firmware.Tar is never modified), so each device verifying
// the same bytes gets the same answer: computing it once per tar instead of
// once per device keeps a rollout of a large fleet from spending its time
// hashing. A tar is known by its first byte's address and its length; the
// entries keep their tars alive, so there are few of them.
type flashedSums struct {
	mu      sync.Mutex
	entries [4]flashedSum
	next    int
}

type flashedSum struct {
	data *byte
	n    int
	sum  string
	err  error
}

// of returns Checksum(tar), computing it only for a tar not seen lately.
func (c *flashedSums) of(tar []byte) (string, error) {
	if len(tar) == 0 {
		return Checksum(bytes.NewReader(tar))
	}
	key := &tar[0]
	c.mu.Lock()
	for _, e := range c.entries {
		if e.data == key && e.n == len(tar) {
			c.mu.Unlock()
			return e.sum, e.err
		}
	}
	c.mu.Unlock()
	// Devices that flash a new tar at the same moment may each compute it
	// once; the answer is the same.
	sum, err := Checksum(bytes.NewReader(tar))
	c.mu.Lock()
	c.entries[c.next] = flashedSum{data: key, n: len(tar), sum: sum, err: err}
	c.next = (c.next + 1) % len(c.entries)
	c.mu.Unlock()
	return sum, err
}
