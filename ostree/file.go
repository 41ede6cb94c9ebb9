package ostree

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/klauspost/compress/flate"

	"github.com/lazytree/lazytree/ostree/gvariant"
)

// MaxFileHeaderSize caps the header of a content object (mostly xattrs).
const MaxFileHeaderSize = 1 << 20

// FileHeader is the metadata of a content object: a regular file or a
// symlink.
type FileHeader struct {
	Size   uint64 // content size; 0 for symlinks
	UID    uint32
	GID    uint32
	Mode   uint32 // full st_mode: S_IFREG or S_IFLNK plus permission bits
	Rdev   uint32 // always 0
	Target string // symlink target; "" for regular files
	Xattrs []Xattr
}

// IsSymlink reports whether the header describes a symlink.
func (h *FileHeader) IsSymlink() bool { return h.Mode&ModeTypeMask == ModeSymlink }

// Validate checks what ostree checks of a content header.
func (h *FileHeader) Validate() error {
	switch h.Mode & ModeTypeMask {
	case ModeReg:
		if h.Target != "" {
			return fmt.Errorf("regular file with a symlink target")
		}
	case ModeSymlink:
		if h.Target == "" {
			return fmt.Errorf("symlink with an empty target")
		}
		if h.Size != 0 {
			return fmt.Errorf("symlink with size %d", h.Size)
		}
	default:
		return fmt.Errorf("mode %o is neither a regular file nor a symlink", h.Mode)
	}
	if h.Mode&^(ModeTypeMask|ModePerm) != 0 {
		return fmt.Errorf("invalid mode bits %o", h.Mode)
	}
	if h.Rdev != 0 {
		return fmt.Errorf("rdev %d is not 0", h.Rdev)
	}
	return nil
}

func frame(body []byte) []byte {
	out := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint32(out, uint32(len(body)))
	return append(out, body...)
}

// StreamHeader returns the prefix of the content stream that a content
// checksum covers: [u32 BE len][4 zero bytes][(uuuusa(ayay))].
func (h *FileHeader) StreamHeader() []byte {
	return frame(gvariant.MustEncode(TypeFileHeader, []any{be32(h.UID), be32(h.GID), be32(h.Mode), be32(h.Rdev), h.Target, encodeXattrs(h.Xattrs)}))
}

// ArchiveHeader returns the header of an archive .filez object:
// [u32 BE len][4 zero bytes][(tuuuusa(ayay))].
func (h *FileHeader) ArchiveHeader() []byte {
	return frame(gvariant.MustEncode(TypeFilezHdr, []any{be64(h.Size), be32(h.UID), be32(h.GID), be32(h.Mode), be32(h.Rdev), h.Target, encodeXattrs(h.Xattrs)}))
}

// ParseStreamHeader parses the checksummed header form (no size field).
func ParseStreamHeader(data []byte) (*FileHeader, error) {
	body, err := unframe(data)
	if err != nil {
		return nil, err
	}
	v, err := gvariant.Decode(TypeFileHeader, body)
	if err != nil {
		return nil, corrupt("file header", "%v", err)
	}
	f := v.([]any)
	h := &FileHeader{UID: be32(f[0].(uint32)), GID: be32(f[1].(uint32)), Mode: be32(f[2].(uint32)), Rdev: be32(f[3].(uint32)), Target: f[4].(string)}
	if h.Xattrs, err = decodeXattrs("file header", f[5], false); err != nil {
		return nil, err
	}
	if err := h.Validate(); err != nil {
		return nil, corrupt("file header", "%v", err)
	}
	return h, nil
}

func unframe(data []byte) ([]byte, error) {
	if len(data) < 8 {
		return nil, corrupt("file header", "truncated")
	}
	n := binary.BigEndian.Uint32(data)
	if n == 0 || n > MaxFileHeaderSize || int(n) != len(data)-8 {
		return nil, corrupt("file header", "header length %d does not match %d bytes", n, len(data)-8)
	}
	return data[8:], nil
}

// ReadArchiveHeader reads the header of a .filez stream, leaving r at the
// start of the compressed payload. It also returns the raw header bytes.
func ReadArchiveHeader(r io.Reader) (*FileHeader, error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, corrupt("filez", "reading header: %v", err)
	}
	n := binary.BigEndian.Uint32(pre[:])
	if n == 0 || n > MaxFileHeaderSize {
		return nil, corrupt("filez", "header length %d", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, corrupt("filez", "reading header: %v", err)
	}
	v, err := gvariant.Decode(TypeFilezHdr, body)
	if err != nil {
		return nil, corrupt("filez", "%v", err)
	}
	f := v.([]any)
	h := &FileHeader{Size: be64(f[0].(uint64)), UID: be32(f[1].(uint32)), GID: be32(f[2].(uint32)), Mode: be32(f[3].(uint32)), Rdev: be32(f[4].(uint32)), Target: f[5].(string)}
	if h.Xattrs, err = decodeXattrs("filez", f[6], false); err != nil {
		return nil, err
	}
	if err := h.Validate(); err != nil {
		return nil, corrupt("filez", "%v", err)
	}
	return h, nil
}

// ErrTooLarge is returned when content inflates past its declared size.
var ErrTooLarge = errors.New("content larger than its declared size")

// ContentReader streams the content of a .filez object and hashes it. Read
// returns io.EOF only after exactly Header.Size bytes and a clean end of the
// deflate stream; Verify then compares the checksum.
type ContentReader struct {
	Header *FileHeader
	hasher hash.Hash
	inf    io.ReadCloser
	left   uint64
	done   bool
}

// NewContentReader parses the header of a .filez stream and returns a
// reader of its uncompressed, hashed content.
func NewContentReader(r io.Reader) (*ContentReader, error) {
	br, ok := r.(flate.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 32<<10)
	}
	h, err := ReadArchiveHeader(br)
	if err != nil {
		return nil, err
	}
	cr := &ContentReader{Header: h, hasher: sha256.New(), left: h.Size}
	cr.hasher.Write(h.StreamHeader())
	if h.IsSymlink() {
		// Nothing may follow a symlink's header.
		var one [1]byte
		if n, _ := br.Read(one[:]); n != 0 {
			return nil, corrupt("filez", "payload after a symlink header")
		}
		cr.done = true
		return cr, nil
	}
	cr.inf = flate.NewReader(br)
	return cr, nil
}

func (c *ContentReader) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	if c.left == 0 {
		// Expect the end of the deflate stream; an empty payload is also
		// accepted for size 0.
		var one [1]byte
		n, err := c.inf.Read(one[:])
		if n > 0 {
			return 0, corrupt("filez", "%v", ErrTooLarge)
		}
		if err != nil && err != io.EOF && !(c.Header.Size == 0 && errors.Is(err, io.ErrUnexpectedEOF)) {
			return 0, corrupt("filez", "inflate: %v", err)
		}
		c.done = true
		return 0, io.EOF
	}
	if uint64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.inf.Read(p)
	c.hasher.Write(p[:n])
	c.left -= uint64(n)
	if err == io.EOF && c.left > 0 {
		return n, corrupt("filez", "content ends %d bytes short of its declared size", c.left)
	}
	if err != nil && err != io.EOF {
		return n, corrupt("filez", "inflate: %v", err)
	}
	return n, nil
}

// Sum returns the checksum of everything read so far (the object checksum
// once Read has returned io.EOF).
func (c *ContentReader) Sum() Checksum {
	var s Checksum
	copy(s[:], c.hasher.Sum(nil))
	return s
}

// Verify drains the reader and compares the checksum with want.
func (c *ContentReader) Verify(want Checksum) error {
	if _, err := io.Copy(io.Discard, c); err != nil {
		return err
	}
	if got := c.Sum(); got != want {
		return &ChecksumError{Object: ObjectName(want, ObjFile), Got: got, Want: want}
	}
	return nil
}

// ContentChecksum computes the checksum of a content object from its header
// and content.
func ContentChecksum(h *FileHeader, content io.Reader) (Checksum, error) {
	hs := sha256.New()
	hs.Write(h.StreamHeader())
	if content != nil {
		if _, err := io.Copy(hs, content); err != nil {
			return Checksum{}, err
		}
	}
	var s Checksum
	copy(s[:], hs.Sum(nil))
	return s, nil
}

// WriteArchive writes a .filez object: the archive header, then (for
// regular files) the raw deflate of content at the given level. It returns
// the object checksum, computed over the same bytes it compresses. A level
// of 0 means flate.DefaultCompression.
func WriteArchive(w io.Writer, h *FileHeader, content io.Reader, level int) (Checksum, error) {
	if err := h.Validate(); err != nil {
		return Checksum{}, err
	}
	if _, err := w.Write(h.ArchiveHeader()); err != nil {
		return Checksum{}, err
	}
	hs := sha256.New()
	hs.Write(h.StreamHeader())
	if !h.IsSymlink() {
		if level == 0 {
			level = flate.DefaultCompression
		}
		zw, err := flate.NewWriter(w, level)
		if err != nil {
			return Checksum{}, err
		}
		n, err := io.Copy(io.MultiWriter(zw, hs), content)
		if err != nil {
			return Checksum{}, err
		}
		if uint64(n) != h.Size {
			return Checksum{}, fmt.Errorf("content is %d bytes, header says %d", n, h.Size)
		}
		if err := zw.Close(); err != nil {
			return Checksum{}, err
		}
	}
	var s Checksum
	copy(s[:], hs.Sum(nil))
	return s, nil
}
