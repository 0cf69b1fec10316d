// Package store is the engine's embedded store: leases, allocations, tunnel
// indexes and bindings that must survive a crash. It wraps bbolt, whose
// commits are fsynced before they return, so a caller that stores a promise
// (a lease) before sending the packet that makes it never loses it to kill -9.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrNotFound is returned by Get when the key is absent.
var ErrNotFound = errors.New("not found")

// Store is one bbolt file.
type Store struct {
	db *bolt.DB
}

// Open opens (creating if needed) the store at path. A second process holding
// the file makes Open fail after a short wait instead of hanging.
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("store: create directory for %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("store: open %s (is another fieldcon using it?): %w", path, err)
	}
	return &Store{db: db}, nil
}

// Path is the file's path.
func (s *Store) Path() string { return s.db.Path() }

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// Put stores v as JSON under bucket/key and syncs to disk before returning.
func (s *Store) Put(bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: encode %s/%s: %w", bucket, key, err)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return fmt.Errorf("store: bucket %s: %w", bucket, err)
		}
		return bk.Put([]byte(key), b)
	})
}

// Get loads bucket/key into v; ErrNotFound when absent.
func (s *Store) Get(bucket, key string, v any) error {
	return s.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(bucket))
		if bk == nil {
			return ErrNotFound
		}
		b := bk.Get([]byte(key))
		if b == nil {
			return ErrNotFound
		}
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("store: decode %s/%s: %w", bucket, key, err)
		}
		return nil
	})
}

// Delete removes bucket/key (no error when absent).
func (s *Store) Delete(bucket, key string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(bucket))
		if bk == nil {
			return nil
		}
		return bk.Delete([]byte(key))
	})
}

// ForEach calls fn for every key of bucket with its raw JSON value, in key
// order. Decode with json.Unmarshal.
func (s *Store) ForEach(bucket string, fn func(key string, value []byte) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(bucket))
		if bk == nil {
			return nil
		}
		return bk.ForEach(func(k, v []byte) error { return fn(string(k), v) })
	})
}

// Batch runs fn in one read-write transaction: several puts, one fsync.
func (s *Store) Batch(fn func(tx *Tx) error) error {
	return s.db.Update(func(btx *bolt.Tx) error { return fn(&Tx{btx}) })
}

// Tx is a read-write transaction.
type Tx struct{ tx *bolt.Tx }

// Put stores v as JSON under bucket/key.
func (t *Tx) Put(bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("store: encode %s/%s: %w", bucket, key, err)
	}
	bk, err := t.tx.CreateBucketIfNotExists([]byte(bucket))
	if err != nil {
		return fmt.Errorf("store: bucket %s: %w", bucket, err)
	}
	return bk.Put([]byte(key), b)
}

// Delete removes bucket/key.
func (t *Tx) Delete(bucket, key string) error {
	bk := t.tx.Bucket([]byte(bucket))
	if bk == nil {
		return nil
	}
	return bk.Delete([]byte(key))
}
