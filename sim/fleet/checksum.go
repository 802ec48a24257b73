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

// Checksum returns the checksum of a firmware tar (an assets download): the
// hex SHA-256 over its regular-file members in byte order of their names,
// each written as name, NUL, size in decimal, NUL, content. A leading "./"
// of a name is dropped; directories, links and other member types are
// ignored; a name given twice counts with its last content (as extracting
// the tar would). So tar metadata and member order do not change the
// checksum, and ChecksumFiles of the same files gives the same value.
func Checksum(r io.Reader) (string, error) {
	files := map[string][]byte{}
	tr := tar.NewReader(r)
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
		b, err := io.ReadAll(tr)
		if err != nil {
			return "", fmt.Errorf("reading firmware tar member %s: %w", h.Name, err)
		}
		files[h.Name] = b
	}
	return ChecksumFiles(files), nil
}

// ChecksumFiles returns the checksum Checksum gives for a tar holding files
// (name → content).
func ChecksumFiles(files map[string][]byte) string {
	norm := make(map[string][]byte, len(files))
	for name, b := range files {
		norm[strings.TrimPrefix(name, "./")] = b
	}
	names := make([]string, 0, len(norm))
	for n := range norm {
		names = append(names, n)
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		b := norm[n]
		io.WriteString(h, n)
		h.Write([]byte{0})
		io.WriteString(h, strconv.Itoa(len(b)))
		h.Write([]byte{0})
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}
