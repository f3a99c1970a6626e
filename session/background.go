package session

import (
	"context"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

// The session layer's background work: batched TTL refreshes and new
// pins, and the replay of re-pins whose answer from the store was lost.

// Run runs the background work until ctx ends: TTL refreshes and session
// counts, replay of pins made while the store was down, and (with a store
// shared by replicas, a Watcher) the invalidations that keep their caches
// coherent.
func (a *Affinity) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { a.runJobs(ctx) })
	wg.Go(func() { a.runReplay(ctx) })
	if w, ok := a.opts.Store.(Watcher); ok {
		wg.Go(func() {
			_ = w.Watch(ctx, a.cache.flush, func(key string) {
				if k, ok := parseStoreKey(key); ok {
					a.cache.delete(k)
				}
			})
		})
	}
	wg.Wait()
	return ctx.Err()
}

func (a *Affinity) runJobs(ctx context.Context) {
	batch := make([]Job, 0, maxBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-a.jobs:
			batch = append(batch[:0], j)
		}
	more: // whatever else is waiting goes in the same round trip
		for len(batch) < maxBatch {
			select {
			case j := <-a.jobs:
				batch = append(batch, j)
			default:
				break more
			}
		}
		a.doJobs(ctx, batch)
	}
}

// doJobs runs a batch of background work: in one round trip when the
// store is a Batcher, else one call at a time. Pins that could not be
// written are kept for replay; refreshes and counts are best effort.
func (a *Affinity) doJobs(ctx context.Context, batch []Job) {
	if b, ok := a.opts.Store.(Batcher); ok {
		err := a.call(ctx, "batch", func(ctx context.Context) error { return b.Batch(ctx, batch) })
		if err != nil {
			for _, j := range batch {
				if j.Pin {
					a.addPending(j.Key, pendingPin{backend: j.Backend, ttl: j.TTL, at: j.At})
				}
			}
		}
		return
	}
	for _, j := range batch {
		switch {
		case j.Pin:
			err := a.call(ctx, "pin", func(ctx context.Context) error {
				_, err := a.opts.Store.SetNX(ctx, j.Key, j.Backend, j.TTL)
				return err
			})
			if err != nil {
				a.addPending(j.Key, pendingPin{backend: j.Backend, ttl: j.TTL, at: j.At})
			}
		case j.Touch:
			_ = a.call(ctx, "touch", func(ctx context.Context) error { return a.opts.Store.Touch(ctx, j.Key, j.TTL) })
		}
	}
}

// runReplay writes the pins kept while the store was down once it is back.
// A new session's pin is written only if absent (SET NX); a re-pin only
// if the session is still on the backend it moved from (compare-and-swap):
// another replica that re-pinned it meanwhile won.
func (a *Affinity) runReplay(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		batch := make(map[string]pendingPin, len(a.pending))
		for k, p := range a.pending {
			batch[k] = p
			if len(batch) == 1000 {
				break
			}
		}
		a.mu.Unlock()
		for key, p := range batch {
			left := p.ttl - a.opts.Now().Sub(p.at)
			if left <= 0 {
				a.dropPending(key, p)
				continue
			}
			cur := p.backend
			err := a.callFor(ctx, a.settleTimeout(), "replay", func(ctx context.Context) error {
				var err error
				if p.repin {
					cur, err = a.swap(ctx, key, p.old, p.backend, left)
				} else {
					cur, err = a.opts.Store.SetNX(ctx, key, p.backend, left)
				}
				return err
			})
			if err != nil {
				break // still down: try again next tick
			}
			k, parsed := parseStoreKey(key)
			switch {
			case cur != p.backend && parsed:
				// Another pin won: forget this replica's view of it.
				a.cache.delete(k)
			case parsed:
				// Ours is stored: count it (and, for a re-pin, no longer
				// on the backend it left).
				j := Job{Key: key, Service: k.service, Backend: cur, ID: k.id, TTL: left}
				if p.repin {
					j.From = p.old
				}
				a.enqueue(j)
			}
			a.dropPending(key, p)
		}
	}
}

func (a *Affinity) addPending(key string, p pendingPin) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.pending[key]; !ok && len(a.pending) >= a.opts.MaxPending {
		return // bounded: the cookie hint still carries this session
	}
	a.pending[key] = p
}

func (a *Affinity) pendingGet(key string) (pendingPin, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.pending) == 0 {
		return pendingPin{}, false
	}
	p, ok := a.pending[key]
	return p, ok
}

// dropPending removes key unless it was replaced meanwhile.
func (a *Affinity) dropPending(key string, p pendingPin) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if cur, ok := a.pending[key]; ok && cur == p {
		delete(a.pending, key)
	}
}

// StoreUp reports whether the store's breaker is closed: false while
// the store is considered unreachable and requests do not wait on it.
func (a *Affinity) StoreUp() bool { return a.br.State() == gobreaker.StateClosed }

// Pending is the number of pins waiting for the store to come back.
func (a *Affinity) Pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pending)
}
