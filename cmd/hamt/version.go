package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// versionInfo is what hamt version says of the binary, from the build information Go records in
// it (runtime/debug.ReadBuildInfo): the module and its version ("(devel)" for a build from a
// checkout, the tag or pseudo-version for go install ...@version), the version control revision,
// its time and whether the tree had changes (when the build recorded them: go build in a clone
// does, unless -buildvcs=false), and the Go toolchain and platform.
type versionInfo struct {
	Module    string `json:"module"`
	Version   string `json:"version"`
	Revision  string `json:"revision"` // "" when not recorded
	Time      string `json:"time"`     // the revision's commit time (RFC 3339), "" when not recorded
	Modified  bool   `json:"modified"` // the tree had uncommitted changes
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}

// buildVersion reads the binary's build information.
func buildVersion() versionInfo {
	v := versionInfo{Module: "github.com/hamt-go/hamt", Version: "unknown", GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Path != "" {
		v.Module = bi.Main.Path
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		v.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		case "GOOS":
			v.OS = s.Value
		case "GOARCH":
			v.Arch = s.Value
		}
	}
	return v
}

// text is the version as hamt version and hamt --version print it.
func (v versionInfo) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "hamt %s\nmodule    %s\n", v.Version, v.Module)
	if v.Revision != "" {
		modified := ""
		if v.Modified {
			modified = " (modified)"
		}
		fmt.Fprintf(&b, "revision  %s%s\n", v.Revision, modified)
	}
	if v.Time != "" {
		fmt.Fprintf(&b, "time      %s\n", v.Time)
	}
	fmt.Fprintf(&b, "go        %s %s/%s\n", v.GoVersion, v.OS, v.Arch)
	return b.String()
}

func (a *app) versionCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of hamt, its source revision and the Go that built it",
		Long: `Version prints what the binary records of its build: the module's version ("(devel)" when built
from a checkout, the tag for go install github.com/hamt-go/hamt/cmd/hamt@VERSION), the source
revision, its commit time and "(modified)" if the tree had uncommitted changes (when the build
recorded them: go build in a git clone does), and the Go version and platform. hamt --version
prints the same. With --json it writes one JSON object: "module", "version", "revision", "time",
"modified", "go_version", "os", "arch" (revision and time "" when not recorded).`,
		Example: `  hamt version
  hamt version --json | jq -r .revision`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := buildVersion()
			if asJSON {
				return writeJSON(a.stdout, v)
			}
			_, err := fmt.Fprint(a.stdout, v.text())
			return err
		},
	}
	addJSONFlag(cmd, &asJSON, "one JSON object")
	return cmd
}
