package builder

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// Store holds layers, images and the build cache under one data directory.
// It is safe for concurrent use by the goroutines of one process.
type Store struct {
	root string
	log  *slog.Logger

	// gc is held shared by anything that creates layers or records and
	// exclusively by Prune, so a layer that is being made is never
	// collected before the record that refers to it is written.
	gc sync.RWMutex
	// recMu serialises writes of image and cache records.
	recMu sync.Mutex
}

// Layer describes one stored layer.
type Layer struct {
	// ID is the layer's content address (sha256 hex).
	ID string `json:"id"`
	// Size is the bytes its files take (apparent size).
	Size int64 `json:"size"`
	// Created is when the layer was committed.
	Created time.Time `json:"created"`
}

// NewStore opens (creating it if needed) a store under dataDir, which is
// normally the berth data directory. One process (the daemon) owns a data
// directory: opening it removes temporary layers left by a crash.
func NewStore(dataDir string, logger *slog.Logger) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{root: dataDir, log: logger.With("component", "builder")}
	for _, d := range []string{s.layersDir(), s.tmpDir(), s.imagesDir(), s.cacheDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create store directory: %w", err)
		}
	}
	// Leftovers of builds that died with an earlier process.
	if ents, err := os.ReadDir(s.tmpDir()); err == nil {
		for _, e := range ents {
			_ = os.RemoveAll(filepath.Join(s.tmpDir(), e.Name()))
		}
	}
	// Build containers' init runs as the app's unprivileged host UID and
	// must traverse to the layers and to RUN steps' upper directories.
	for _, d := range []string{s.root, s.layersDir(), s.tmpDir()} {
		if err := os.Chmod(d, 0o711); err != nil {
			return nil, fmt.Errorf("chmod store directory: %w", err)
		}
	}
	return s, nil
}

func (s *Store) layersDir() string { return filepath.Join(s.root, "layers") }
func (s *Store) tmpDir() string    { return filepath.Join(s.root, "layers", ".tmp") }
func (s *Store) imagesDir() string { return filepath.Join(s.root, "images") }
func (s *Store) cacheDir() string  { return filepath.Join(s.root, "buildcache") }

var hexIDRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

// LayerDir is the directory holding the unpacked files of layer id; it is
// what the engine mounts as an overlay lower directory.
func (s *Store) LayerDir(id string) string {
	return filepath.Join(s.layersDir(), id, "diff")
}

// HasLayer reports whether layer id is stored.
func (s *Store) HasLayer(id string) bool {
	if !hexIDRe.MatchString(id) {
		return false
	}
	_, err := os.Stat(filepath.Join(s.layersDir(), id, "layer.json"))
	return err == nil
}

// LayerInfo returns the record of layer id.
func (s *Store) LayerInfo(id string) (Layer, error) {
	var l Layer
	if !hexIDRe.MatchString(id) {
		return l, fmt.Errorf("read layer %q: %w", id, ErrLayerNotFound)
	}
	b, err := os.ReadFile(filepath.Join(s.layersDir(), id, "layer.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return l, fmt.Errorf("read layer %s: %w", id, ErrLayerNotFound)
	}
	if err != nil {
		return l, fmt.Errorf("read layer %s: %w", id, err)
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return l, fmt.Errorf("decode layer %s: %w", id, err)
	}
	return l, nil
}

// Layers lists every stored layer.
func (s *Store) Layers() ([]Layer, error) {
	ents, err := os.ReadDir(s.layersDir())
	if err != nil {
		return nil, fmt.Errorf("list layers: %w", err)
	}
	var out []Layer
	for _, e := range ents {
		if !hexIDRe.MatchString(e.Name()) {
			continue
		}
		l, err := s.LayerInfo(e.Name())
		if err != nil {
			continue // half-written by a crashed commit; Prune removes it
		}
		out = append(out, l)
	}
	return out, nil
}

// newTempLayer makes a scratch directory for a layer being built and
// returns it and its diff directory. commitLayer or os.RemoveAll(tmp)
// disposes of it.
func (s *Store) newTempLayer() (tmp, diff string, err error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	tmp = filepath.Join(s.tmpDir(), hex.EncodeToString(b[:]))
	diff = filepath.Join(tmp, "diff")
	if err := os.MkdirAll(diff, 0o755); err != nil {
		return "", "", fmt.Errorf("create temporary layer: %w", err)
	}
	return tmp, diff, nil
}

// commitLayer moves a finished temporary layer into place under its
// content address. When that layer already exists the new copy is
// dropped, so identical content is stored once.
func (s *Store) commitLayer(tmp string) (Layer, error) {
	diff := filepath.Join(tmp, "diff")
	id, size, err := digestTree(diff)
	if err != nil {
		_ = os.RemoveAll(tmp)
		return Layer{}, fmt.Errorf("digest layer: %w", err)
	}
	return s.commitLayerAs(tmp, id, size)
}

func (s *Store) commitLayerAs(tmp, id string, size int64) (Layer, error) {
	l := Layer{ID: id, Size: size, Created: time.Now().UTC()}
	if s.HasLayer(id) {
		_ = os.RemoveAll(tmp)
		return s.LayerInfo(id)
	}
	b, _ := json.Marshal(l)
	if err := os.WriteFile(filepath.Join(tmp, "layer.json"), b, 0o644); err != nil {
		_ = os.RemoveAll(tmp)
		return l, fmt.Errorf("write layer record: %w", err)
	}
	if err := os.Chmod(tmp, 0o711); err != nil {
		_ = os.RemoveAll(tmp)
		return l, fmt.Errorf("chmod layer: %w", err)
	}
	dst := filepath.Join(s.layersDir(), id)
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.RemoveAll(tmp)
		if s.HasLayer(id) { // a concurrent commit of the same content won
			return s.LayerInfo(id)
		}
		return l, fmt.Errorf("commit layer %s: %w", id, err)
	}
	s.log.Debug("layer committed", "layer", id, "size", size)
	return l, nil
}

func (s *Store) imagePath(ref string) string {
	return filepath.Join(s.imagesDir(), url.PathEscape(ref)+".json")
}

// PutImage writes (or replaces) the record of img under img.Ref after
// checking that every layer exists. It fills in ID and Created.
func (s *Store) PutImage(img *Image) error {
	ref, err := NormalizeRef(img.Ref)
	if err != nil {
		return err
	}
	img.Ref = ref
	for _, l := range img.Layers {
		if !s.HasLayer(l) {
			return fmt.Errorf("write image %s: layer %s: %w", ref, l, ErrLayerNotFound)
		}
	}
	img.ID = img.computeID()
	if img.Created.IsZero() {
		img.Created = time.Now().UTC()
	}
	b, err := json.MarshalIndent(img, "", "  ")
	if err != nil {
		return fmt.Errorf("encode image %s: %w", ref, err)
	}
	s.recMu.Lock()
	defer s.recMu.Unlock()
	return writeFileAtomic(s.imagePath(ref), b)
}

// Image returns the image stored under ref (":latest" is implied).
func (s *Store) Image(ref string) (*Image, error) {
	ref, err := NormalizeRef(ref)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.imagePath(ref))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read image %s: %w", ref, ErrImageNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read image %s: %w", ref, err)
	}
	img := new(Image)
	if err := json.Unmarshal(b, img); err != nil {
		return nil, fmt.Errorf("decode image %s: %w", ref, err)
	}
	return img, nil
}

// Images lists every stored image, sorted by ref.
func (s *Store) Images() ([]*Image, error) {
	ents, err := os.ReadDir(s.imagesDir())
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []*Image
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		ref, err := url.PathUnescape(name)
		if err != nil {
			continue
		}
		img, err := s.Image(ref)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ref < out[j].Ref })
	return out, nil
}

// RemoveImage deletes the record of ref. Its layers stay until Prune finds
// them unreferenced.
func (s *Store) RemoveImage(ref string) error {
	ref, err := NormalizeRef(ref)
	if err != nil {
		return err
	}
	s.recMu.Lock()
	defer s.recMu.Unlock()
	err = os.Remove(s.imagePath(ref))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove image %s: %w", ref, ErrImageNotFound)
	}
	if err != nil {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return nil
}

// LayerDirs returns the directories of img's layers, the bottom layer
// first, ready to be stacked as overlay lower directories.
func (s *Store) LayerDirs(img *Image) ([]string, error) {
	dirs := make([]string, 0, len(img.Layers))
	for _, l := range img.Layers {
		if !s.HasLayer(l) {
			return nil, fmt.Errorf("image %s: layer %s: %w", img.Ref, l, ErrLayerNotFound)
		}
		dirs = append(dirs, s.LayerDir(l))
	}
	return dirs, nil
}

// Lookup returns what deploy needs to run the image stored under ref: its
// record (OCI config and Procfile process table) and its layer
// directories, the bottom layer first.
func (s *Store) Lookup(ref string) (*Image, []string, error) {
	img, err := s.Image(ref)
	if err != nil {
		return nil, nil, err
	}
	dirs, err := s.LayerDirs(img)
	if err != nil {
		return nil, nil, err
	}
	return img, dirs, nil
}

// cacheEntry is one build-cache record: the layer a step made.
type cacheEntry struct {
	Layer string    `json:"layer,omitempty"`
	Empty bool      `json:"empty,omitempty"`
	Size  int64     `json:"size"`
	Made  time.Time `json:"made"`
}

func (s *Store) cachePath(key string) string { return filepath.Join(s.cacheDir(), key+".json") }

// cacheGet returns the cache entry for key if it exists and its layer is
// still stored.
func (s *Store) cacheGet(key string) (cacheEntry, bool) {
	var e cacheEntry
	b, err := os.ReadFile(s.cachePath(key))
	if err != nil || json.Unmarshal(b, &e) != nil {
		return e, false
	}
	if !e.Empty && !s.HasLayer(e.Layer) {
		return e, false
	}
	return e, true
}

func (s *Store) cachePut(key string, e cacheEntry) error {
	b, _ := json.Marshal(e)
	s.recMu.Lock()
	defer s.recMu.Unlock()
	return writeFileAtomic(s.cachePath(key), b)
}

// LayerRefs counts, for every stored layer, the images and build-cache
// entries that refer to it. A layer missing from the map has no
// references.
func (s *Store) LayerRefs() (map[string]int, error) {
	refs := map[string]int{}
	imgs, err := s.Images()
	if err != nil {
		return nil, err
	}
	for _, img := range imgs {
		seen := map[string]bool{}
		for _, l := range img.Layers {
			if !seen[l] {
				refs[l]++
				seen[l] = true
			}
		}
	}
	ents, err := os.ReadDir(s.cacheDir())
	if err != nil {
		return nil, fmt.Errorf("list build cache: %w", err)
	}
	for _, e := range ents {
		key, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue
		}
		if ce, ok := s.cacheGet(key); ok && !ce.Empty {
			refs[ce.Layer]++
		}
	}
	return refs, nil
}

// PruneReport says what Prune removed.
type PruneReport struct {
	// Layers are the removed layer IDs.
	Layers []string
	// CacheEntries is how many build-cache entries were dropped.
	CacheEntries int
	// Bytes is the size of the removed layers.
	Bytes int64
}

// Prune removes every layer that no image and no build-cache entry refers
// to. With cache set it first drops build-cache entries whose layers no
// image uses, so intermediate build layers go too (the next build of such
// an app redoes those steps). It waits for running builds to finish.
func (s *Store) Prune(cache bool) (PruneReport, error) {
	s.gc.Lock()
	defer s.gc.Unlock()
	var rep PruneReport
	if cache {
		used := map[string]bool{}
		imgs, err := s.Images()
		if err != nil {
			return rep, err
		}
		for _, img := range imgs {
			for _, l := range img.Layers {
				used[l] = true
			}
		}
		ents, err := os.ReadDir(s.cacheDir())
		if err != nil {
			return rep, fmt.Errorf("list build cache: %w", err)
		}
		for _, e := range ents {
			key, ok := strings.CutSuffix(e.Name(), ".json")
			if !ok {
				continue
			}
			if ce, ok := s.cacheGet(key); ok && (ce.Empty || used[ce.Layer]) {
				continue
			}
			if err := os.Remove(filepath.Join(s.cacheDir(), e.Name())); err != nil {
				return rep, fmt.Errorf("remove cache entry: %w", err)
			}
			rep.CacheEntries++
		}
	}
	refs, err := s.LayerRefs()
	if err != nil {
		return rep, err
	}
	ents, err := os.ReadDir(s.layersDir())
	if err != nil {
		return rep, fmt.Errorf("list layers: %w", err)
	}
	for _, e := range ents {
		id := e.Name()
		if !hexIDRe.MatchString(id) || refs[id] > 0 {
			continue
		}
		l, _ := s.LayerInfo(id)
		if err := os.RemoveAll(filepath.Join(s.layersDir(), id)); err != nil {
			return rep, fmt.Errorf("remove layer %s: %w", id, err)
		}
		rep.Layers = append(rep.Layers, id)
		rep.Bytes += l.Size
	}
	s.log.Info("pruned", "layers", len(rep.Layers), "cache_entries", rep.CacheEntries, "bytes", rep.Bytes)
	return rep, nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("rename %s: %w", filepath.Base(path), err)
	}
	return nil
}
