package acme

import (
	"context"

	"github.com/caddyserver/certmagic"

	"github.com/latchgw/latch/session"
)

// BlobStorage is certmagic's Storage in Redis (tls.acme.storage: redis),
// over session.Blobs: replicas share accounts and certificates, and its
// lock makes one replica at a time obtain or renew a certificate.
func BlobStorage(b *session.Blobs) certmagic.Storage { return blobStorage{b} }

type blobStorage struct{ *session.Blobs }

var _ certmagic.Storage = blobStorage{}

func (s blobStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	info, err := s.Blobs.Stat(ctx, key)
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	return certmagic.KeyInfo{Key: key, Modified: info.Modified, Size: info.Size, IsTerminal: !info.Dir}, nil
}
