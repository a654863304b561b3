package hamt

// A fuzz target for the one part of a client's request the Zarr handler parses by hand beside the
// Range header: If-None-Match. Run it with:
//
//	go test -run XXX -fuzz '^FuzzETagMatch$' -fuzztime 60s .

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// ifNoneMatchList is RFC 9110's #entity-tag list (with etagc widened to any byte but DQUOTE, as
// the handler reads it), empty elements allowed: the judge of FuzzETagMatch, written apart from
// etagMatch's scanner.
var (
	ifNoneMatchList = regexp.MustCompile(`^[ \t,]*((W/)?"[^"]*"[ \t]*,[ \t,]*)*((W/)?"[^"]*"[ \t]*)?$`)
	ifNoneMatchTag  = regexp.MustCompile(`(?:W/)?("[^"]*")`)
)

// FuzzETagMatch: etagMatch never panics; on "*" or a well-formed list it matches exactly when a
// member, weak or strong, is our tag; on a malformed list it never matches unless our tag is
// written out in it.
func FuzzETagMatch(f *testing.F) {
	const etag = `"bafkr4ia"`
	for _, s := range []string{
		"*", " * ", "W/*", etag, "W/" + etag, `"a", ` + etag, `"a",W/` + etag + ` , "b"`, `"a" ` + etag,
		`"a", *`, "", ",", " , ,", "W/", `"`, `""`, `W/""`, `"a",,W/"b",`, `"bafkr4ia`, `x"bafkr4ia"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		got := etagMatch(header, etag)
		switch {
		case strings.Trim(header, " \t") == "*":
			if !got {
				t.Errorf("%q: no match, want one", header)
			}
		case ifNoneMatchList.MatchString(header):
			want := slices.ContainsFunc(ifNoneMatchTag.FindAllStringSubmatch(header, -1), func(m []string) bool { return m[1] == etag })
			if got != want {
				t.Errorf("%q: match %v, want %v", header, got, want)
			}
		case got && !strings.Contains(header, etag):
			t.Errorf("malformed %q matched without naming %s", header, etag)
		}
	})
}
