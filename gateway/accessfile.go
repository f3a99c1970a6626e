package gateway

import (
	"os"
	"sync"
)

// AccessFile is the access log's own file (log.access_file), reopenable so
// logrotate works: after a rename or removal (rotation without
// copytruncate) the batch writer notices on its next check and reopens the
// path; SIGUSR1 reopens at once (Deps.ReopenAccessLog).
type AccessFile struct {
	path string
	mu   sync.Mutex // guards f: Write runs on request goroutines when a batch fills
	f    *os.File
}

// OpenAccessFile opens (creating) path for appending.
func OpenAccessFile(path string) (*AccessFile, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &AccessFile{path: path, f: f}, nil
}

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}

func (a *AccessFile) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Write(p)
}

// Reopen opens the path again and writes there from now on. On error the
// old file is kept.
func (a *AccessFile) Reopen() error {
	f, err := openAppend(a.path)
	if err != nil {
		return err
	}
	a.mu.Lock()
	old := a.f
	a.f = f
	a.mu.Unlock()
	return old.Close()
}

// moved reports whether the path no longer names the open file (renamed
// or removed): two stats, no read.
func (a *AccessFile) moved() bool {
	onDisk, err := os.Stat(a.path)
	if err != nil {
		return true
	}
	a.mu.Lock()
	open, err := a.f.Stat()
	a.mu.Unlock()
	return err != nil || !os.SameFile(onDisk, open)
}

// Close closes the file.
func (a *AccessFile) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Close()
}
