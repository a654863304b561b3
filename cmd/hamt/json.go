package main

import (
	"encoding/json"
	"io"

	"github.com/spf13/cobra"
)

// addJSONFlag adds --json to cmd: the command then writes JSON to standard output instead of
// text, as what says (one object, or JSON Lines: one object per line).
func addJSONFlag(cmd *cobra.Command, on *bool, what string) {
	cmd.Flags().BoolVar(on, "json", false, "write "+what+" to standard output instead of text")
}

// writeJSON writes v to w as one line of JSON (snake_case fields, CIDs as strings, sizes as
// integers: the types of the command's output structs say so). HTML characters are not escaped:
// the output is for programs, not pages.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
