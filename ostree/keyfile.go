package ostree

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"
)

// MaxKeyFileSize bounds keyfiles read from remotes (config, metadata,
// .flatpakrepo).
const MaxKeyFileSize = 1 << 20

// KeyFile is a GLib keyfile: groups of key=value lines, as used by the
// repository config, Flatpak metadata and .flatpakrepo files. Group and key
// order are preserved; comments are not.
type KeyFile struct {
	groups []*kfGroup
}

type kfGroup struct {
	name string
	keys []string
	vals map[string]string // raw (escaped) values
}

// ParseKeyFile parses GLib keyfile syntax.
func ParseKeyFile(r io.Reader) (*KeyFile, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxKeyFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxKeyFileSize {
		return nil, fmt.Errorf("keyfile larger than %d bytes", MaxKeyFileSize)
	}
	kf := &KeyFile{}
	var cur *kfGroup
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), MaxKeyFileSize)
	line := 0
	for sc.Scan() {
		line++
		l := strings.TrimRight(sc.Text(), "\r")
		t := strings.TrimSpace(l)
		switch {
		case t == "" || t[0] == '#':
			continue
		case t[0] == '[':
			if !strings.HasSuffix(t, "]") || len(t) < 3 {
				return nil, fmt.Errorf("keyfile line %d: malformed group header", line)
			}
			name := t[1 : len(t)-1]
			if strings.ContainsAny(name, "[]") {
				return nil, fmt.Errorf("keyfile line %d: malformed group name", line)
			}
			if cur = kf.group(name); cur == nil {
				cur = kf.addGroup(name)
			}
		default:
			if cur == nil {
				return nil, fmt.Errorf("keyfile line %d: key outside any group", line)
			}
			k, v, ok := strings.Cut(l, "=")
			if !ok {
				return nil, fmt.Errorf("keyfile line %d: expected key=value", line)
			}
			k = strings.TrimSpace(k)
			if k == "" {
				return nil, fmt.Errorf("keyfile line %d: empty key", line)
			}
			cur.set(k, strings.TrimLeft(v, " \t"))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return kf, nil
}

// NewKeyFile returns an empty keyfile.
func NewKeyFile() *KeyFile { return &KeyFile{} }

func (kf *KeyFile) group(name string) *kfGroup {
	for _, g := range kf.groups {
		if g.name == name {
			return g
		}
	}
	return nil
}

func (kf *KeyFile) addGroup(name string) *kfGroup {
	g := &kfGroup{name: name, vals: map[string]string{}}
	kf.groups = append(kf.groups, g)
	return g
}

func (g *kfGroup) set(k, raw string) {
	if _, ok := g.vals[k]; !ok {
		g.keys = append(g.keys, k)
	}
	g.vals[k] = raw
}

// Groups returns the group names in file order.
func (kf *KeyFile) Groups() []string {
	out := make([]string, len(kf.groups))
	for i, g := range kf.groups {
		out[i] = g.name
	}
	return out
}

// HasGroup reports whether the group exists.
func (kf *KeyFile) HasGroup(group string) bool { return kf.group(group) != nil }

// Keys returns the keys of a group in file order.
func (kf *KeyFile) Keys(group string) []string {
	if g := kf.group(group); g != nil {
		return append([]string(nil), g.keys...)
	}
	return nil
}

// String returns the unescaped value of group.key.
func (kf *KeyFile) String(group, key string) (string, bool) {
	g := kf.group(group)
	if g == nil {
		return "", false
	}
	raw, ok := g.vals[key]
	if !ok {
		return "", false
	}
	return unescapeValue(raw, false)[0], true
}

// StringDefault returns String or def when the key is absent.
func (kf *KeyFile) StringDefault(group, key, def string) string {
	if v, ok := kf.String(group, key); ok {
		return v
	}
	return def
}

// Bool returns a boolean value ("true"/"false", also "1"/"0").
func (kf *KeyFile) Bool(group, key string, def bool) (bool, error) {
	v, ok := kf.String(group, key)
	if !ok {
		return def, nil
	}
	switch strings.TrimSpace(v) {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	}
	return def, fmt.Errorf("keyfile [%s] %s: %q is not a boolean", group, key, v)
}

// List returns a ';'-separated list value.
func (kf *KeyFile) List(group, key string) []string {
	g := kf.group(group)
	if g == nil {
		return nil
	}
	raw, ok := g.vals[key]
	if !ok {
		return nil
	}
	return unescapeValue(raw, true)
}

// Set stores an unescaped string value, creating the group if needed.
func (kf *KeyFile) Set(group, key, value string) {
	g := kf.group(group)
	if g == nil {
		g = kf.addGroup(group)
	}
	g.set(key, escapeValue(value, false))
}

// SetList stores a list value, each item terminated by ';'.
func (kf *KeyFile) SetList(group, key string, items []string) {
	var b strings.Builder
	for _, it := range items {
		b.WriteString(escapeValue(it, true))
		b.WriteByte(';')
	}
	g := kf.group(group)
	if g == nil {
		g = kf.addGroup(group)
	}
	g.set(key, b.String())
}

// Delete removes a key.
func (kf *KeyFile) Delete(group, key string) {
	g := kf.group(group)
	if g == nil {
		return
	}
	if _, ok := g.vals[key]; !ok {
		return
	}
	delete(g.vals, key)
	for i, k := range g.keys {
		if k == key {
			g.keys = append(g.keys[:i], g.keys[i+1:]...)
			break
		}
	}
}

// RemoveGroup removes a group and its keys.
func (kf *KeyFile) RemoveGroup(group string) bool {
	for i, g := range kf.groups {
		if g.name == group {
			kf.groups = append(kf.groups[:i], kf.groups[i+1:]...)
			return true
		}
	}
	return false
}

// Marshal writes the keyfile in GLib syntax.
func (kf *KeyFile) Marshal() []byte {
	var b bytes.Buffer
	for i, g := range kf.groups {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "[%s]\n", g.name)
		for _, k := range g.keys {
			fmt.Fprintf(&b, "%s=%s\n", k, g.vals[k])
		}
	}
	return b.Bytes()
}

func escapeValue(s string, inList bool) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == ' ' && i == 0:
			b.WriteString(`\s`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == ';' && inList:
			b.WriteString(`\;`)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// unescapeValue decodes escapes; with list it splits on unescaped ';' and
// drops one trailing empty item.
func unescapeValue(raw string, list bool) []string {
	var items []string
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == '\\' && i+1 < len(raw) {
			i++
			switch raw[i] {
			case 's':
				b.WriteByte(' ')
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '\\':
				b.WriteByte('\\')
			case ';':
				if list {
					b.WriteByte(';')
				} else {
					b.WriteString(`\;`)
				}
			default:
				b.WriteByte('\\')
				b.WriteByte(raw[i])
			}
			continue
		}
		if c == ';' && list {
			items = append(items, b.String())
			b.Reset()
			continue
		}
		b.WriteByte(c)
	}
	if !list || b.Len() > 0 {
		items = append(items, b.String())
	}
	if !list && len(items) == 0 {
		items = []string{""}
	}
	return items
}
