package hamt

import (
	"crypto/cipher"
	"crypto/rand"
	"fmt"
	"io"

	"golang.org/x/crypto/chacha20poly1305"
)

// EncryptedZarrStore is a ZarrStore whose every value, metadata included, is sealed with
// XChaCha20-Poly1305, byte-compatible with py-hamt's SimpleEncryptedZarrHAMTStore. Keys are not
// encrypted. All of ZarrStore's methods apply, on plaintext: byte ranges select plaintext bytes,
// GetSize gives the plaintext size, and the fs.FS view, the HTTP handler and ExportDir serve
// decrypted values.
//
// A stored value is nonce(24) || tag(16) || ciphertext, with a fresh random nonce per value and
// the store's header as associated data. Any failure to open a value (wrong key, wrong header,
// tampering, truncation) is ErrDecrypt.
type EncryptedZarrStore struct {
	*ZarrStore
}

// NewEncryptedZarrStore returns an encrypted Zarr store on m (which must use the Bytes codec),
// with a 32-byte key and header bytes bound to every value as associated data. Options other than
// WithZarrConcurrency and WithNonceSource are those of NewZarrStore.
func NewEncryptedZarrStore(m *Map[[]byte], key, header []byte, opts ...ZarrOption) (*EncryptedZarrStore, error) {
	if len(key) != chacha20poly1305.KeySize {
		return nil, fmt.Errorf("hamt: encryption key of %d bytes, want %d", len(key), chacha20poly1305.KeySize)
	}
	o, err := buildZarrOptions(opts)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, fmt.Errorf("hamt: %w", err)
	}
	box := &sealBox{aead: aead, header: append([]byte(nil), header...), rand: o.rand}
	if box.rand == nil {
		box.rand = rand.Reader
	}
	s, err := newZarrStore(m, box, o)
	if err != nil {
		return nil, err
	}
	return &EncryptedZarrStore{s}, nil
}

const (
	nonceSize    = chacha20poly1305.NonceSizeX // 24
	tagSize      = chacha20poly1305.Overhead   // 16
	sealOverhead = nonceSize + tagSize
)

// sealBox seals and opens values in py-hamt's layout. It is safe for concurrent use as long as
// rand is (crypto/rand is).
type sealBox struct {
	aead   cipher.AEAD
	header []byte
	rand   io.Reader
}

// seal returns nonce || tag || ciphertext of p.
func (b *sealBox) seal(p []byte) ([]byte, error) {
	out := make([]byte, sealOverhead, sealOverhead+len(p)+tagSize)
	if _, err := io.ReadFull(b.rand, out[:nonceSize]); err != nil {
		return nil, fmt.Errorf("nonce: %w", err)
	}
	// Seal appends ciphertext || tag after the header room; move the tag in front of the ciphertext.
	sealed := b.aead.Seal(out[sealOverhead:sealOverhead], out[:nonceSize], p, b.header)
	copy(out[nonceSize:sealOverhead], sealed[len(p):])
	return out[:sealOverhead+len(p)], nil
}

// open returns the plaintext of a sealed value, or ErrDecrypt.
func (b *sealBox) open(v []byte) ([]byte, error) {
	if len(v) < sealOverhead {
		return nil, fmt.Errorf("%w: value of %d bytes is shorter than its %d-byte header", ErrDecrypt, len(v), sealOverhead)
	}
	ct := make([]byte, 0, len(v)-nonceSize)
	ct = append(append(ct, v[sealOverhead:]...), v[nonceSize:sealOverhead]...)
	p, err := b.aead.Open(ct[:0], v[:nonceSize], ct, b.header)
	if err != nil {
		return nil, fmt.Errorf("%w: wrong key or header, or the value was altered", ErrDecrypt)
	}
	return p, nil
}
