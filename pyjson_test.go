package hamt

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// testdata/pyjson/golden.json is what CPython 3.11's json module made of each input
// (testdata/pyjson/gen.py writes it): json.dumps(json.loads(doc)), with and without indent=2, or
// a refusal; and int(s) for strings.
type pyJSONGolden struct {
	Docs []struct {
		In      string `json:"in"`
		Error   bool   `json:"error"`
		Dumps   string `json:"dumps"`
		Indent2 string `json:"dumps_indent2"`
		IsDict  bool   `json:"is_dict"`
	} `json:"docs"`
	Ints []struct {
		In    string `json:"in"`
		Int   string `json:"int"`
		Error bool   `json:"error"`
	} `json:"ints"`
}

func TestPyJSONReadsAndWritesAsCPythonDoes(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "pyjson", "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g pyJSONGolden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	for _, d := range g.Docs {
		v, err := decodePyJSON([]byte(d.In))
		if d.Error {
			if !errors.Is(err, errNotJSON) {
				t.Errorf("%q: Python refuses it, decodePyJSON gave %v", d.In, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", d.In, err)
			continue
		}
		if got := string(encodePyJSON(v)); got != d.Dumps {
			t.Errorf("json.dumps of %q\n got %s\nwant %s", d.In, got, d.Dumps)
		}
		if got := string(encodePyJSONIndent(v, 2)); got != d.Indent2 {
			t.Errorf("json.dumps(indent=2) of %q\n got %s\nwant %s", d.In, got, d.Indent2)
		}
		obj, err := decodePyJSONObject([]byte(d.In))
		if err != nil || (obj != nil) != d.IsDict {
			t.Errorf("decodePyJSONObject(%q) = %v, %v; Python: dict %v", d.In, obj, err, d.IsDict)
		}
	}
	for _, c := range g.Ints {
		n, big, ok := pyParseInt(c.In)
		switch {
		case c.Error && ok:
			t.Errorf("int(%q): Python refuses it, got %d", c.In, n)
		case !c.Error && !ok:
			t.Errorf("int(%q) = %s, refused", c.In, c.Int)
		case !c.Error && !big && strconv.FormatInt(n, 10) != c.Int:
			t.Errorf("int(%q) = %d, want %s", c.In, n, c.Int)
		case !c.Error && big && len(c.Int) < 19:
			t.Errorf("int(%q) is %s, not beyond int64", c.In, c.Int)
		}
	}
}

func TestPyJSONRefusesWhatPythonCannotDecode(t *testing.T) {
	for _, b := range [][]byte{
		[]byte("\xef\xbb\xbf{}"),           // str.decode keeps the BOM, which json.loads refuses
		[]byte("{\"a\":\"\xff\"}"),         // not UTF-8
		[]byte("{\"a\":\"\xed\xa0\x80\"}"), // an encoded surrogate is not UTF-8 either
	} {
		if v, err := decodePyJSONObject(b); v != nil || err != nil {
			t.Errorf("%q decoded as %v, %v", b, v, err)
		}
	}
	deep := []byte("{\"a\":")
	for range pyJSONMaxDepth + 2 {
		deep = append(deep, '[')
	}
	if _, err := decodePyJSONObject(deep); !errors.Is(err, errJSONTooDeep) {
		t.Errorf("a document nested %d deep: %v", pyJSONMaxDepth+2, err)
	}
}

func TestPyJSONKeepsTheFirstPlaceAndLastValueOfARepeatedKey(t *testing.T) {
	v, err := decodePyJSON([]byte(`{"shape":[1],"x":0,"shape":[2]}`))
	if err != nil {
		t.Fatal(err)
	}
	v.put([]rune("shape"), pyJSONInts([]int64{6, 8}))
	if got, want := string(encodePyJSON(v)), `{"shape": [6, 8], "x": 0}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
