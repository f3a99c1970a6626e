package accesslog

import (
	"os"
	"sync"
)

// File is the access log's own file (log.access_file), reopenable so
// logrotate works: after a rename or removal (rotation without
// copytruncate) Log.Run notices on its next check and reopens the path;
// a value on Run's reopen channel (SIGUSR1) reopens at once.
type File struct {
	path string
	mu   sync.Mutex // guards f: Write runs on request goroutines when a batch fills
	f    *os.File
}

// OpenFile opens (creating) path for appending.
func OpenFile(path string) (*File, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &File{path: path, f: f}, nil
}

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}

// Write appends p to the file; safe for concurrent use with Reopen.
func (a *File) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Write(p)
}

// Reopen opens the path again and writes there from now on. On error the
// old file is kept.
func (a *File) Reopen() error {
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
func (a *File) moved() bool {
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
func (a *File) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.f.Close()
}
