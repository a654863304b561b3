package hamt

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// kuboChunkSizeLimit is the largest chunk Kubo's chunkers accept: the 2 MiB bitswap block limit
// less 256 bytes for UnixFS framing (boxo's chunk.ChunkSizeLimit).
const kuboChunkSizeLimit = 2<<20 - 256

// checkKuboChunker checks a chunker string as Kubo's add parses it (boxo's chunk.FromString):
// "" or "default", "size-N" (0 < N <= kuboChunkSizeLimit), "rabin", "rabin-AVG",
// "rabin-[min:]MIN-[avg:]AVG-[max:]MAX" (16 <= MIN < AVG < MAX <= the limit), or "buzhash". It is
// checked here, not through boxo's chunker, whose package pulls zap and go-log into every program
// that links the library; cas_kubo_chunker_test.go checks that both agree.
func checkKuboChunker(s string) error {
	if s == "" || s == "default" {
		return nil
	}
	name, _, _ := strings.Cut(s, "-")
	parts := strings.Split(s, "-")
	switch name {
	case "buzhash":
		return nil
	case "size":
		if len(parts) != 2 {
			return errors.New("incorrect chunker string format (expected size-{size})")
		}
		size, err := strconv.Atoi(parts[1])
		switch {
		case err != nil:
			return err
		case size <= 0:
			return errors.New("chunker size must be greater than 0")
		case size > kuboChunkSizeLimit:
			return fmt.Errorf("chunker parameters may not exceed the maximum chunk size of %d", kuboChunkSizeLimit)
		}
		return nil
	case "rabin":
		return checkRabinChunker(parts)
	}
	return fmt.Errorf("unrecognized chunker option: %s", s)
}

// checkRabinChunker checks the parts of a "rabin" chunker string.
func checkRabinChunker(parts []string) error {
	switch len(parts) {
	case 1:
		return nil
	case 2:
		size, err := strconv.Atoi(parts[1])
		if err != nil {
			return err
		}
		if int(float32(size)*1.5) > kuboChunkSizeLimit { // boxo's check, kept as it is
			return fmt.Errorf("chunker parameters may not exceed the maximum chunk size of %d", kuboChunkSizeLimit)
		}
		return nil
	case 4:
		var v [3]int
		for i, label := range []string{"min", "avg", "max"} {
			sub := strings.Split(parts[i+1], ":")
			if len(sub) > 1 && sub[0] != label {
				return fmt.Errorf("rabin chunker: label %q, want %q", sub[0], label)
			}
			n, err := strconv.Atoi(sub[len(sub)-1])
			if err != nil {
				return err
			}
			if i == 0 && n < 16 {
				return errors.New("rabin min must be greater than 16")
			}
			v[i] = n
		}
		switch {
		case v[0] >= v[1]:
			return errors.New("incorrect format: rabin-min must be smaller than rabin-avg")
		case v[1] >= v[2]:
			return errors.New("incorrect format: rabin-avg must be smaller than rabin-max")
		case v[2] > kuboChunkSizeLimit:
			return fmt.Errorf("chunker parameters may not exceed the maximum chunk size of %d", kuboChunkSizeLimit)
		}
		return nil
	}
	return errors.New("incorrect format (expected 'rabin' 'rabin-[avg]' or 'rabin-[min]-[avg]-[max]'")
}
