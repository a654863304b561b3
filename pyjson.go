package hamt

import (
	"errors"
	"math"
	"math/big"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file reads and writes JSON exactly as CPython's json module does (json.loads and
// json.dumps with ensure_ascii=True), for the few metadata documents the sharded store rewrites:
// a root zarr.json stripped of consolidated_metadata (json.dumps defaults), a zarr.json whose shape
// ResizeVariable changes (json.dumps(indent=2)), and the group documents it creates. py-hamt
// writes those bytes, so their CIDs, and so the dataset's root, depend on every detail here:
//
//   - objects keep their keys in document order; a key given twice keeps its first place and its
//     last value (a Python dict built from the pairs);
//   - integers are Python ints (any size), written as decimal; "-0" reads as 0;
//   - a number with a fraction or an exponent is a float, written as repr(float) writes it
//     ("1e+16", "1e-05", "0.0001", "100.0"), and NaN, Infinity and -Infinity are read and written;
//   - strings may hold lone surrogates (from \ud800 escapes), which are written back as escapes;
//     every character outside ' '..'~' is escaped as \uXXXX (lowercase hex, surrogate pairs above
//     U+FFFF), and \" \\ \n \r \t \b \f as such.

// pyJSONKind is the Python type a JSON value decodes to.
type pyJSONKind uint8

const (
	pyNull pyJSONKind = iota
	pyBool
	pyInt
	pyFloat
	pyStr
	pyList
	pyDict
)

// pyJSON is one value of a decoded JSON document, as Python holds it.
type pyJSON struct {
	kind  pyJSONKind
	b     bool
	num   string  // pyInt: the decimal digits, normalized as str(int) writes them
	f     float64 // pyFloat
	s     []rune  // pyStr: code points, lone surrogates included
	items []*pyJSON
	keys  [][]rune // pyDict: keys in order; items holds the values
	// idx is the position of each key of a pyDict of at least pyDictIndexMin keys (nil below):
	// a linear search per key made decoding an object of n keys n²/2 comparisons, and a
	// zarr.json of 40,000 keys (429 KB) took 22 s to read for its chunk key encoding.
	idx map[string]int
}

// pyDictIndexMin is the number of keys from which an object indexes them in a map.
const pyDictIndexMin = 32

// errNotJSON reports bytes that json.loads (after a UTF-8 decode) refuses.
var errNotJSON = errors.New("not a JSON document")

// pyJSONMaxDepth bounds nesting, where CPython would stop with a RecursionError.
const pyJSONMaxDepth = 900

// errJSONTooDeep reports a document nested deeper than pyJSONMaxDepth.
var errJSONTooDeep = errors.New("JSON document nested too deeply")

// decodePyJSON decodes b as CPython's json.loads(b.decode("utf-8")) does: errNotJSON for invalid
// UTF-8 or JSON, errJSONTooDeep for a document nested beyond what Python would read.
func decodePyJSON(b []byte) (*pyJSON, error) {
	if !utf8.Valid(b) {
		return nil, errNotJSON
	}
	d := pyJSONDecoder{s: string(b)}
	d.skipSpace()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos != len(d.s) {
		return nil, errNotJSON
	}
	return v, nil
}

// decodePyJSONObject is py-hamt's _decode_metadata_json: the document when b is UTF-8 JSON
// holding an object, nil otherwise. Bytes that cannot start an object are refused without a
// parse (a chunk is rarely JSON). An error is only a document nested too deeply.
func decodePyJSONObject(b []byte) (*pyJSON, error) {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	if i == len(b) || b[i] != '{' {
		return nil, nil
	}
	v, err := decodePyJSON(b)
	if errors.Is(err, errNotJSON) {
		return nil, nil
	}
	return v, err
}

type pyJSONDecoder struct {
	s   string
	pos int
}

func (d *pyJSONDecoder) skipSpace() {
	for d.pos < len(d.s) {
		switch d.s[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *pyJSONDecoder) value(depth int) (*pyJSON, error) {
	if depth > pyJSONMaxDepth {
		return nil, errJSONTooDeep
	}
	if d.pos >= len(d.s) {
		return nil, errNotJSON
	}
	switch c := d.s[d.pos]; {
	case c == '"':
		d.pos++
		s, err := d.str()
		if err != nil {
			return nil, err
		}
		return &pyJSON{kind: pyStr, s: s}, nil
	case c == '{':
		return d.object(depth)
	case c == '[':
		return d.list(depth)
	case d.lit("null"):
		return &pyJSON{kind: pyNull}, nil
	case d.lit("true"):
		return &pyJSON{kind: pyBool, b: true}, nil
	case d.lit("false"):
		return &pyJSON{kind: pyBool}, nil
	case d.lit("NaN"):
		return &pyJSON{kind: pyFloat, f: math.NaN()}, nil
	case d.lit("Infinity"):
		return &pyJSON{kind: pyFloat, f: math.Inf(1)}, nil
	case d.lit("-Infinity"):
		return &pyJSON{kind: pyFloat, f: math.Inf(-1)}, nil
	case c == '-' || (c >= '0' && c <= '9'):
		return d.number()
	}
	return nil, errNotJSON
}

// lit consumes the literal word when it comes next.
func (d *pyJSONDecoder) lit(word string) bool {
	if strings.HasPrefix(d.s[d.pos:], word) {
		d.pos += len(word)
		return true
	}
	return false
}

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)? ; a fraction or exponent that is
// not followed by digits is not part of the number (and then fails as a stray character).
func (d *pyJSONDecoder) number() (*pyJSON, error) {
	start := d.pos
	if d.s[d.pos] == '-' {
		d.pos++
	}
	digits := func() int {
		n := 0
		for d.pos < len(d.s) && d.s[d.pos] >= '0' && d.s[d.pos] <= '9' {
			d.pos++
			n++
		}
		return n
	}
	if d.pos < len(d.s) && d.s[d.pos] == '0' {
		d.pos++
	} else if digits() == 0 {
		return nil, errNotJSON
	}
	isFloat := false
	if d.pos+1 < len(d.s) && d.s[d.pos] == '.' && d.s[d.pos+1] >= '0' && d.s[d.pos+1] <= '9' {
		d.pos++
		digits()
		isFloat = true
	}
	if d.pos < len(d.s) && (d.s[d.pos] == 'e' || d.s[d.pos] == 'E') {
		save := d.pos
		d.pos++
		if d.pos < len(d.s) && (d.s[d.pos] == '+' || d.s[d.pos] == '-') {
			d.pos++
		}
		if digits() == 0 {
			d.pos = save
		} else {
			isFloat = true
		}
	}
	text := d.s[start:d.pos]
	if !isFloat {
		if text == "-0" {
			text = "0"
		}
		return &pyJSON{kind: pyInt, num: text}, nil
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return nil, errNotJSON
	}
	return &pyJSON{kind: pyFloat, f: f}, nil
}

// str reads a string's contents after its opening quote. Control characters are refused
// (json.loads is strict); \uXXXX escapes of a high then a low surrogate make one code point,
// any other surrogate escape stays a lone surrogate.
func (d *pyJSONDecoder) str() ([]rune, error) {
	var out []rune
	for {
		if d.pos >= len(d.s) {
			return nil, errNotJSON
		}
		c := d.s[d.pos]
		switch {
		case c == '"':
			d.pos++
			return out, nil
		case c < 0x20:
			return nil, errNotJSON
		case c != '\\':
			r, n := utf8.DecodeRuneInString(d.s[d.pos:])
			out = append(out, r)
			d.pos += n
			continue
		}
		d.pos++
		if d.pos >= len(d.s) {
			return nil, errNotJSON
		}
		e := d.s[d.pos]
		d.pos++
		switch e {
		case '"', '\\', '/':
			out = append(out, rune(e))
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return nil, errNotJSON
			}
			// CPython looks for a second escape only when more follows it, and refuses one with bad
			// hex digits even where it would not have paired.
			if r >= 0xd800 && r <= 0xdbff && len(d.s)-d.pos > 6 && strings.HasPrefix(d.s[d.pos:], `\u`) {
				save := d.pos
				d.pos += 2
				lo, ok := d.hex4()
				if !ok {
					return nil, errNotJSON
				}
				if lo >= 0xdc00 && lo <= 0xdfff {
					r = 0x10000 + (r-0xd800)<<10 + (lo - 0xdc00)
				} else {
					d.pos = save
				}
			}
			out = append(out, r)
		default:
			return nil, errNotJSON
		}
	}
}

func (d *pyJSONDecoder) hex4() (rune, bool) {
	if d.pos+4 > len(d.s) {
		return 0, false
	}
	v, err := strconv.ParseUint(d.s[d.pos:d.pos+4], 16, 32)
	if err != nil || strings.ContainsAny(d.s[d.pos:d.pos+4], "+-_") {
		return 0, false
	}
	d.pos += 4
	return rune(v), true
}

func (d *pyJSONDecoder) object(depth int) (*pyJSON, error) {
	d.pos++ // {
	obj := &pyJSON{kind: pyDict}
	d.skipSpace()
	if d.pos < len(d.s) && d.s[d.pos] == '}' {
		d.pos++
		return obj, nil
	}
	for {
		if d.pos >= len(d.s) || d.s[d.pos] != '"' {
			return nil, errNotJSON
		}
		d.pos++
		k, err := d.str()
		if err != nil {
			return nil, err
		}
		d.skipSpace()
		if d.pos >= len(d.s) || d.s[d.pos] != ':' {
			return nil, errNotJSON
		}
		d.pos++
		d.skipSpace()
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		obj.put(k, v)
		d.skipSpace()
		if d.pos >= len(d.s) {
			return nil, errNotJSON
		}
		switch d.s[d.pos] {
		case '}':
			d.pos++
			return obj, nil
		case ',':
			d.pos++
			d.skipSpace()
		default:
			return nil, errNotJSON
		}
	}
}

func (d *pyJSONDecoder) list(depth int) (*pyJSON, error) {
	d.pos++ // [
	l := &pyJSON{kind: pyList}
	d.skipSpace()
	if d.pos < len(d.s) && d.s[d.pos] == ']' {
		d.pos++
		return l, nil
	}
	for {
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		l.items = append(l.items, v)
		d.skipSpace()
		if d.pos >= len(d.s) {
			return nil, errNotJSON
		}
		switch d.s[d.pos] {
		case ']':
			d.pos++
			return l, nil
		case ',':
			d.pos++
			d.skipSpace()
		default:
			return nil, errNotJSON
		}
	}
}

// index returns the position of key in the object, or -1.
func (o *pyJSON) index(key string) int {
	if o == nil || o.kind != pyDict {
		return -1
	}
	if o.idx != nil {
		if i, ok := o.idx[key]; ok {
			return i
		}
		return -1
	}
	for i, k := range o.keys {
		if string(k) == key {
			return i
		}
	}
	return -1
}

// get is dict.get(key): the value, or nil when o is not an object or has no such key.
func (o *pyJSON) get(key string) *pyJSON {
	if i := o.index(key); i >= 0 {
		return o.items[i]
	}
	return nil
}

// put is d[key] = v: a new key goes last, an existing one keeps its place.
func (o *pyJSON) put(key []rune, v *pyJSON) {
	if i := o.index(string(key)); i >= 0 {
		o.items[i] = v
		return
	}
	o.keys = append(o.keys, key)
	o.items = append(o.items, v)
	switch {
	case o.idx != nil:
		o.idx[string(key)] = len(o.keys) - 1
	case len(o.keys) >= pyDictIndexMin:
		o.reindex()
	}
}

// reindex builds idx for an object of at least pyDictIndexMin keys, and drops it below.
func (o *pyJSON) reindex() {
	o.idx = nil
	if len(o.keys) < pyDictIndexMin {
		return
	}
	o.idx = make(map[string]int, len(o.keys))
	for i, k := range o.keys {
		if _, dup := o.idx[string(k)]; !dup {
			o.idx[string(k)] = i
		}
	}
}

// pop removes key from the object and reports whether it was there.
func (o *pyJSON) pop(key string) bool {
	i := o.index(key)
	if i < 0 {
		return false
	}
	o.keys = append(o.keys[:i], o.keys[i+1:]...)
	o.items = append(o.items[:i], o.items[i+1:]...)
	o.reindex()
	return true
}

// isStr reports whether v is the string s.
func (v *pyJSON) isStr(s string) bool { return v != nil && v.kind == pyStr && string(v.s) == s }

// pyJSONInts returns a JSON list of integers for a shape.
func pyJSONInts(ns []int64) *pyJSON {
	l := &pyJSON{kind: pyList}
	for _, n := range ns {
		l.items = append(l.items, &pyJSON{kind: pyInt, num: strconv.FormatInt(n, 10)})
	}
	return l
}

// encodePyJSON writes v as json.dumps(v) does (separators ", " and ": ", ensure_ascii).
func encodePyJSON(v *pyJSON) []byte { return (&pyJSONEncoder{}).value(nil, v, 0) }

// encodePyJSONIndent writes v as json.dumps(v, indent=indent) does (separators "," and ": ").
func encodePyJSONIndent(v *pyJSON, indent int) []byte {
	return (&pyJSONEncoder{indent: strings.Repeat(" ", indent), pretty: true}).value(nil, v, 0)
}

type pyJSONEncoder struct {
	indent string
	pretty bool
}

// newline starts a line at the given nesting level, in indented mode.
func (e *pyJSONEncoder) newline(b []byte, level int) []byte {
	b = append(b, '\n')
	for range level {
		b = append(b, e.indent...)
	}
	return b
}

// separator ends an item that another follows.
func (e *pyJSONEncoder) separator(b []byte, level int) []byte {
	if e.pretty {
		return e.newline(append(b, ','), level)
	}
	return append(b, ", "...)
}

func (e *pyJSONEncoder) value(b []byte, v *pyJSON, level int) []byte {
	switch v.kind {
	case pyNull:
		return append(b, "null"...)
	case pyBool:
		if v.b {
			return append(b, "true"...)
		}
		return append(b, "false"...)
	case pyInt:
		return append(b, v.num...)
	case pyFloat:
		return append(b, pyFloatRepr(v.f)...)
	case pyStr:
		return appendPyJSONString(b, v.s)
	case pyList:
		if len(v.items) == 0 {
			return append(b, "[]"...)
		}
		b = append(b, '[')
		if e.pretty {
			b = e.newline(b, level+1)
		}
		for i, it := range v.items {
			if i > 0 {
				b = e.separator(b, level+1)
			}
			b = e.value(b, it, level+1)
		}
		if e.pretty {
			b = e.newline(b, level)
		}
		return append(b, ']')
	}
	if len(v.items) == 0 {
		return append(b, "{}"...)
	}
	b = append(b, '{')
	if e.pretty {
		b = e.newline(b, level+1)
	}
	for i, it := range v.items {
		if i > 0 {
			b = e.separator(b, level+1)
		}
		b = appendPyJSONString(b, v.keys[i])
		b = append(b, ": "...)
		b = e.value(b, it, level+1)
	}
	if e.pretty {
		b = e.newline(b, level)
	}
	return append(b, '}')
}

// appendPyJSONString writes s quoted as json.dumps does with ensure_ascii=True.
func appendPyJSONString(b []byte, s []rune) []byte {
	const hexDigits = "0123456789abcdef"
	u := func(b []byte, r rune) []byte {
		return append(b, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
	}
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"':
			b = append(b, `\"`...)
		case r == '\\':
			b = append(b, `\\`...)
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\r':
			b = append(b, `\r`...)
		case r == '\t':
			b = append(b, `\t`...)
		case r == '\b':
			b = append(b, `\b`...)
		case r == '\f':
			b = append(b, `\f`...)
		case r >= ' ' && r <= '~':
			b = append(b, byte(r))
		case r >= 0x10000:
			r -= 0x10000
			b = u(u(b, 0xd800|(r>>10)&0x3ff), 0xdc00|r&0x3ff)
		default:
			b = u(b, r)
		}
	}
	return append(b, '"')
}

// pyFloatRepr is repr(f) as json.dumps writes floats: the shortest digits that read back as f,
// in fixed notation for decimal exponents -4 <= e < 16 and in scientific notation otherwise.
func pyFloatRepr(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	case f == 0:
		if math.Signbit(f) {
			return "-0.0"
		}
		return "0.0"
	}
	sign := ""
	if f < 0 {
		sign, f = "-", -f
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX
	mant, exp, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	x, _ := strconv.Atoi(exp)
	decpt := x + 1
	if decpt <= -4 || decpt > 16 {
		m := digits[:1]
		if len(digits) > 1 {
			m += "." + digits[1:]
		}
		es := "+"
		if x < 0 {
			es, x = "-", -x
		}
		xs := strconv.Itoa(x)
		if len(xs) < 2 {
			xs = "0" + xs
		}
		return sign + m + "e" + es + xs
	}
	switch {
	case decpt <= 0:
		return sign + "0." + strings.Repeat("0", -decpt) + digits
	case decpt >= len(digits):
		return sign + digits + strings.Repeat("0", decpt-len(digits)) + ".0"
	}
	return sign + digits[:decpt] + "." + digits[decpt:]
}

// pyIntOf is Python's int(v) for a decoded JSON value: ints as they are, bools as 0 and 1,
// floats truncated, strings parsed as int(str) parses them. ok is false where Python raises
// (None, a list or an object, a non-numeric string, NaN or an infinity); big is true for an
// integer outside int64 (Python's ints have no bound), with n clamped to int64's range.
func pyIntOf(v *pyJSON) (n int64, big, ok bool) {
	switch v.kind {
	case pyInt:
		return pyParseInt(v.num)
	case pyBool:
		if v.b {
			return 1, false, true
		}
		return 0, false, true
	case pyFloat:
		if math.IsNaN(v.f) || math.IsInf(v.f, 0) {
			return 0, false, false
		}
		t := math.Trunc(v.f)
		if t >= -9.223372036854775808e18 && t < 9.223372036854775808e18 {
			return int64(t), false, true
		}
		if t < 0 {
			return math.MinInt64, true, true
		}
		return math.MaxInt64, true, true
	case pyStr:
		return pyParseInt(string(v.s))
	}
	return 0, false, false
}

// pyIterOf is Python's iteration of a decoded JSON value, as tuple(int(d) for d in v) sees it: a
// list's items, a string's characters, an object's keys. ok is false for a value Python cannot
// iterate (None, a number, a bool).
func pyIterOf(v *pyJSON) ([]*pyJSON, bool) {
	switch v.kind {
	case pyList:
		return v.items, true
	case pyStr:
		out := make([]*pyJSON, len(v.s))
		for i, r := range v.s {
			out[i] = &pyJSON{kind: pyStr, s: []rune{r}}
		}
		return out, true
	case pyDict:
		out := make([]*pyJSON, len(v.keys))
		for i, k := range v.keys {
			out[i] = &pyJSON{kind: pyStr, s: k}
		}
		return out, true
	}
	return nil, false
}

// pyParseInt is Python's int(s) for a str: surrounding whitespace, an optional sign, then ASCII
// decimal digits with single underscores between them. (Python also accepts other Unicode
// decimal digits; this does not.) big and the clamping are as pyIntOf says.
func pyParseInt(s string) (n int64, big, ok bool) {
	s = strings.TrimFunc(s, unicode.IsSpace)
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" || s[0] == '_' || s[len(s)-1] == '_' || strings.Contains(s, "__") {
		return 0, false, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' {
			continue
		}
		if c < '0' || c > '9' {
			return 0, false, false
		}
		if v > (math.MaxUint64-9)/10 {
			big = true
			continue
		}
		v = v*10 + uint64(c-'0')
	}
	switch {
	case big || (!neg && v > math.MaxInt64) || (neg && v > 1<<63):
		if neg {
			return math.MinInt64, true, true
		}
		return math.MaxInt64, true, true
	case neg:
		return -int64(v), false, true
	}
	return int64(v), false, true
}

// pyNumEquals is Python's v == n for a decoded JSON value and an int: ints, floats and bools
// compare by value, everything else is unequal.
func pyNumEquals(v *pyJSON, n int64) bool {
	switch v.kind {
	case pyInt:
		x, ok := new(big.Int).SetString(v.num, 10)
		return ok && x.IsInt64() && x.Int64() == n
	case pyBool:
		return (v.b && n == 1) || (!v.b && n == 0)
	case pyFloat:
		// Exact comparison of a float with an int, as Python makes it.
		if math.IsNaN(v.f) || math.IsInf(v.f, 0) || v.f != math.Trunc(v.f) {
			return false
		}
		x, _ := new(big.Float).SetFloat64(v.f).Int(nil)
		return x.IsInt64() && x.Int64() == n
	}
	return false
}
