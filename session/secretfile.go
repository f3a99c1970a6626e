package session

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// LoadOrCreateSecret reads a cookie secret from path, or, when there is no
// such file, creates it with 32 random bytes (hex, 0600) and reports
// created. Replicas sharing the file (a volume) share sessions; when two
// start at once, one file wins and both read it. Surrounding whitespace is
// not part of the secret; it must be at least 16 bytes.
func LoadOrCreateSecret(path string) (secret []byte, created bool, err error) {
	secret, err = os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		created, err = createSecret(path)
		if err == nil {
			secret, err = os.ReadFile(path)
		}
	}
	if err != nil {
		return nil, false, fmt.Errorf("cookie secret file: %w", err)
	}
	if secret = bytes.TrimSpace(secret); len(secret) < 16 {
		return nil, false, fmt.Errorf("cookie secret file %s: want at least 16 bytes, got %d", path, len(secret))
	}
	return secret, created, nil
}

// createSecret writes a new secret beside path and links it into place,
// which fails if another process linked its own first (then that one wins).
func createSecret(path string) (created bool, err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".cookie-secret-*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(RandomSecret()) + "\n")
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	// CreateTemp made it 0600 already.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}
