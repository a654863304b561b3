package hamt

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	bolt "go.etcd.io/bbolt"
)

// This file keeps names for roots in a BoltCAS, as git keeps refs: a name points at a root, and
// the roots it pointed at before are kept, newest first, as its history until they are dropped.
// Names and their histories are what garbage collection (gc.go) keeps.
//
// They live in a bucket "names" of the bbolt file, one key per name; its value is a record:
//
//	record  = version(1) entry+          current root first, then the history, newest first
//	entry   = uvarint(set time, Unix ns) uvarint(len(cid)) cid
//
// Each change is one bbolt transaction, fsynced before the method returns, so after a crash a
// name is as it was before the change or after it.

var (
	// ErrNameNotFound: no root has the name (Name, DeleteName, DropHistory, SwapName with an old
	// root). It wraps ErrNotFound.
	ErrNameNotFound = fmt.Errorf("name %w", ErrNotFound)
	// ErrInvalidName: a name breaks the rules ValidName states.
	ErrInvalidName = errors.New("invalid name")
	// ErrNameChanged: SwapName found the name pointing at another root than the one it was told
	// (another writer moved it first).
	ErrNameChanged = errors.New("name points at another root")
)

// boltNamesBucket holds the names of a BoltCAS (see above).
var boltNamesBucket = []byte("names")

// nameRecordVersion is the first byte of a name's record.
const nameRecordVersion = 1

// maxNameLen is the longest name, in bytes.
const maxNameLen = 255

// RootVersion is a root a name pointed at, and when the name was set to it.
type RootVersion struct {
	Root cid.Cid
	Set  time.Time
}

// NamedRoot is a name with its current root and its history.
type NamedRoot struct {
	Name string
	RootVersion
	// History holds the roots the name pointed at before, newest first, until DropHistory.
	History []RootVersion
}

// ValidName checks that name can name a root: 1 to 255 bytes of ASCII letters, digits, '.', '_',
// '-' and '/', beginning with a letter, digit or '_', with no empty, "." or ".." part between
// slashes, and not itself a CID (a command taking ROOT must never mistake one for the other). A
// name breaking a rule is ErrInvalidName.
func ValidName(name string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidName, shortName(name), why) }
	if name == "" {
		return bad("empty")
	}
	if len(name) > maxNameLen {
		return bad(fmt.Sprintf("longer than %d bytes", maxNameLen))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_':
		case c == '.' || c == '-' || c == '/':
			if i == 0 {
				return bad(fmt.Sprintf("begins with %q", c))
			}
		default:
			return bad(fmt.Sprintf("character %q: only letters, digits, '.', '_', '-' and '/'", c))
		}
	}
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '/' {
			continue
		}
		if part := name[start:i]; part == "" || part == "." || part == ".." {
			return bad(fmt.Sprintf("a part %q between slashes", part))
		}
		start = i + 1
	}
	if _, err := cid.Decode(name); err == nil {
		return bad("it reads as a CID")
	}
	return nil
}

// shortName cuts a long name for an error message.
func shortName(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// encodeNameRecord encodes the record of r (see the top of the file).
func encodeNameRecord(r NamedRoot) []byte {
	b := []byte{nameRecordVersion}
	for _, v := range append([]RootVersion{r.RootVersion}, r.History...) {
		b = binary.AppendUvarint(b, uint64(v.Set.UnixNano()))
		id := v.Root.Bytes()
		b = binary.AppendUvarint(b, uint64(len(id)))
		b = append(b, id...)
	}
	return b
}

// decodeNameRecord decodes the record of name, read from the file: a record that is not one is
// ErrCorrupt.
func decodeNameRecord(name string, b []byte) (NamedRoot, error) {
	bad := func(format string, args ...any) (NamedRoot, error) {
		return NamedRoot{}, fmt.Errorf("%w: the record of name %q: %s", ErrCorrupt, shortName(name), fmt.Sprintf(format, args...))
	}
	if len(b) == 0 || b[0] != nameRecordVersion {
		return bad("not a version %d record", nameRecordVersion)
	}
	var versions []RootVersion
	for p := 1; p < len(b); {
		t, n := binary.Uvarint(b[p:])
		if n <= 0 || t > 1<<63-1 {
			return bad("a bad time at byte %d", p)
		}
		p += n
		l, n := binary.Uvarint(b[p:])
		if n <= 0 || l > uint64(len(b)-p-n) {
			return bad("a bad CID length at byte %d", p)
		}
		p += n
		id, err := cid.Cast(b[p : p+int(l)])
		if err != nil {
			return bad("a bad CID at byte %d: %v", p, err)
		}
		p += int(l)
		versions = append(versions, RootVersion{Root: id, Set: time.Unix(0, int64(t)).UTC()})
	}
	if len(versions) == 0 {
		return bad("no root")
	}
	return NamedRoot{Name: name, RootVersion: versions[0], History: versions[1:]}, nil
}

// Name returns the root name points at, when it was set, and the name's history; a name no root
// has is ErrNameNotFound.
func (b *BoltCAS) Name(ctx context.Context, name string) (NamedRoot, error) {
	if err := ValidName(name); err != nil {
		return NamedRoot{}, err
	}
	if err := ctx.Err(); err != nil {
		return NamedRoot{}, fmt.Errorf("bolt name %q: %w", name, err)
	}
	if err := b.enter("name"); err != nil {
		return NamedRoot{}, err
	}
	defer b.leave()
	var r NamedRoot
	var found bool
	err := b.read(func(t boltTx) (err error) {
		r, found, err = t.name(name)
		return err
	})
	if err != nil {
		return NamedRoot{}, fmt.Errorf("bolt store %s: name %q: %w", b.path, name, err)
	}
	if !found {
		return NamedRoot{}, fmt.Errorf("%w: %q", ErrNameNotFound, name)
	}
	return r, nil
}

// Names returns every name with its root and history, sorted by name.
func (b *BoltCAS) Names(ctx context.Context) ([]NamedRoot, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bolt names: %w", err)
	}
	if err := b.enter("names"); err != nil {
		return nil, err
	}
	defer b.leave()
	var out []NamedRoot
	err := b.read(func(t boltTx) error {
		var err error
		out, err = t.names()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bolt store %s: names: %w", b.path, err)
	}
	return out, nil
}

// SetName points name at root, now, keeping the root it pointed at before (if another) in its
// history. The store must hold root's block (ErrNotFound otherwise); what the root reaches is not
// checked here (GC refuses to run while a named root is incomplete). The change is durable when
// SetName returns, and so is every block saved before it was called.
func (b *BoltCAS) SetName(ctx context.Context, name string, root cid.Cid) error {
	return b.changeName(ctx, "set name", name, root, func(NamedRoot, bool) error { return nil })
}

// SwapName points name at root, as SetName does, only if it points at old now (old cid.Undef:
// only if no root has the name): the way to move a name from the root a change started from to
// the root it made, without losing another writer's move, which is ErrNameChanged. A name
// missing when old is defined is ErrNameNotFound.
func (b *BoltCAS) SwapName(ctx context.Context, name string, old, root cid.Cid) error {
	return b.changeName(ctx, "swap name", name, root, func(cur NamedRoot, found bool) error {
		switch {
		case !found && old.Defined():
			return fmt.Errorf("%w: %q", ErrNameNotFound, name)
		case found && !cur.Root.Equals(old):
			return fmt.Errorf("%w: %q points at %s, not %s", ErrNameChanged, name, cur.Root, old)
		}
		return nil
	})
}

// changeName points name at root in one transaction if check, given the name's record, allows.
func (b *BoltCAS) changeName(ctx context.Context, op, name string, root cid.Cid, check func(NamedRoot, bool) error) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if !root.Defined() {
		return fmt.Errorf("%s %q: an undefined root", op, name)
	}
	if ok, err := b.Has(ctx, root); err != nil {
		return fmt.Errorf("%s %q: %w", op, name, err)
	} else if !ok {
		return fmt.Errorf("%s %q: root %s: %w", op, name, root, ErrNotFound)
	}
	// The root may be only buffered (Has sees it): it goes to the file before the name does, so
	// that no crash leaves the name durable and its root not.
	if err := b.Flush(ctx); err != nil {
		return fmt.Errorf("%s %q: %w", op, name, err)
	}
	return b.updateNames(ctx, op, func(t boltTx, names *bolt.Bucket) error {
		cur, found, err := t.nameIn(names, name)
		if err != nil {
			return err
		}
		if err := check(cur, found); err != nil {
			return err
		}
		if found && cur.Root.Equals(root) {
			return nil
		}
		next := NamedRoot{Name: name, RootVersion: RootVersion{Root: root, Set: time.Now().UTC()}}
		if found {
			next.History = append([]RootVersion{cur.RootVersion}, cur.History...)
		}
		return t.put(names, []byte(name), encodeNameRecord(next))
	})
}

// DeleteName removes name and its history: the roots it kept are garbage for the next GC unless
// another name or a root given to GC reaches them. A name no root has is ErrNameNotFound.
func (b *BoltCAS) DeleteName(ctx context.Context, name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	return b.updateNames(ctx, "delete name", func(t boltTx, names *bolt.Bucket) error {
		if _, found, err := t.nameIn(names, name); err != nil {
			return err
		} else if !found {
			return fmt.Errorf("%w: %q", ErrNameNotFound, name)
		}
		return names.Delete([]byte(name)) // its path was checked by nameIn
	})
}

// DropHistory forgets the previous roots of name, keeping its current one, and returns how many
// it forgot. A name no root has is ErrNameNotFound.
func (b *BoltCAS) DropHistory(ctx context.Context, name string) (int, error) {
	if err := ValidName(name); err != nil {
		return 0, err
	}
	dropped := 0
	err := b.updateNames(ctx, "drop history", func(t boltTx, names *bolt.Bucket) error {
		cur, found, err := t.nameIn(names, name)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: %q", ErrNameNotFound, name)
		}
		if dropped = len(cur.History); dropped == 0 {
			return nil
		}
		cur.History = nil
		return t.put(names, []byte(name), encodeNameRecord(cur))
	})
	return dropped, err
}

// updateNames runs fn on the names bucket (made if missing) in a write transaction, committed
// with the commits of blocks kept apart (commitMu), and fsynced when it returns.
func (b *BoltCAS) updateNames(ctx context.Context, op string, fn func(t boltTx, names *bolt.Bucket) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt %s: %w", op, err)
	}
	if err := b.enterWrite(op); err != nil {
		return err
	}
	defer b.leave()
	b.commitMu.Lock()
	defer b.commitMu.Unlock()
	err := b.guard(func() error {
		return b.db.Update(func(tx *bolt.Tx) error {
			t := b.pathTx(tx)
			names, err := t.bucket(boltNamesBucket)
			if err != nil {
				return err
			}
			if names == nil {
				if names, err = tx.CreateBucket(boltNamesBucket); err != nil {
					return err
				}
			}
			return fn(t, names)
		})
	})
	if err != nil {
		return fmt.Errorf("bolt store %s: %s: %w", b.path, op, err)
	}
	return nil
}

// name reads the record of name; found is false when no root has the name.
func (t boltTx) name(name string) (r NamedRoot, found bool, err error) {
	names, err := t.bucket(boltNamesBucket)
	if err != nil || names == nil {
		return NamedRoot{}, false, err
	}
	return t.nameIn(names, name)
}

// nameIn reads the record of name in the names bucket.
func (t boltTx) nameIn(names *bolt.Bucket, name string) (NamedRoot, bool, error) {
	v, err := t.get(names, []byte(name))
	if err != nil || v == nil {
		return NamedRoot{}, false, err
	}
	r, err := decodeNameRecord(name, v)
	return r, err == nil, err
}

// names reads every record, in name order. A cursor goes through every page of the bucket, which
// lookups' path checks do not cover: the bucket's pages are checked whole first.
func (t boltTx) names() ([]NamedRoot, error) {
	if err := t.checkRootKeys(); err != nil {
		return nil, err
	}
	names, err := t.bucket(boltNamesBucket)
	if err != nil || names == nil {
		return nil, err
	}
	if root := uint64(names.Root()); root != 0 {
		if err := t.st.bf.checkPage(root, map[uint64]bool{}, 0); err != nil {
			return nil, t.corrupt(fmt.Errorf("the names bucket: %w", err))
		}
	}
	var out []NamedRoot
	c := names.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			return nil, boltCorruptf("a nested bucket %q among the names", k)
		}
		r, err := decodeNameRecord(string(k), v)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil // in key order, which is name order
}

// checkRootKeys checks that the root bucket holds no bucket but the store's: a damaged byte in
// the key of the names bucket would otherwise make every name look gone (and their roots garbage
// to GC).
func (t boltTx) checkRootKeys() error {
	if err := t.st.bf.checkPage(t.rootPage(), map[uint64]bool{}, 0); err != nil {
		return t.corrupt(fmt.Errorf("the root bucket: %w", err))
	}
	c := t.tx.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		switch string(k) {
		case string(boltBlocksBucket), string(boltMetaBucket), string(boltNamesBucket):
		default:
			return boltCorruptf("a bucket %q beside the store's (a damaged key?)", k)
		}
	}
	return nil
}
