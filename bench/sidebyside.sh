#!/usr/bin/env bash
# sidebyside.sh — side-by-side speed run of a project checkout against go-hamt-ipld and boxo
# (issue 13), using the shared harness in ../shared/perf (its README.md is the method).
#
# usage: bench/sidebyside.sh [options] CHECKOUT
#   CHECKOUT        path of the project checkout to measure (e.g. /work/wt/core); uncommitted
#                   changes in it are measured too (the commit and a "dirty" flag are recorded)
#   -n N            number of keys (default 1000000; the issue's targets are for 1M and 4M)
#   -r REPS         repetitions (default 3); peers are interleaved, and the peer order is rotated
#                   each rep so that no peer always runs first or last
#   -p PEERS        comma-separated peers (default project,go-hamt-ipld,boxo-unixfs-hamt;
#                   list them with: <builddir>/perf -list)
#   -o PREFIX       output prefix (default ./sidebyside-<UTC date>-n<N>); writes PREFIX.jsonl (raw,
#                   one JSON line per run, with uptime/load at start and end of the run added) and
#                   PREFIX.txt (header, per-run log, tables); refuses to overwrite unless -a
#   -a              append to existing PREFIX.jsonl/.txt (e.g. to add reps or peers later)
#   -P              instead of timing runs: one run of the project with a CPU profile per phase
#                   (W,Rc,Rw,Ic,Iw) and `go tool pprof -top` (top 10 flat, top 15 cumulative in the
#                   library) of each into PREFIX-profiles.txt; the profiles (PHASE.cpu.out) and the
#                   binary are kept in $PROF_DIR for further `go tool pprof`
#   -T              only print the table (and target check) of an existing PREFIX.jsonl; no build/run
#
# environment:
#   PERF_SRC   harness source (default /work/shared/perf; copied, never modified)
#   GOHAMT     go-hamt-ipld v3.4.1 source tree (default $HOME/gohamt). The module proxy does not
#              serve it; get it with the agent `fetch` tool on github:filecoin-project/go-hamt-ipld
#              and: mkdir -p ~/gohamt && git --git-dir=<mirror>/repo archive v3.4.1 | tar -x -C ~/gohamt
#              It is only a replace in the harness's go.mod — never a dependency of the project.
#              If it is missing, go-hamt-ipld peers cannot be run (the script says so and stops).
#   BUILD_DIR  where the harness is copied and built (default /tmp/perf-sidebyside-<checkout name>,
#              one per checkout so helpers measuring different checkouts do not collide)
#   PERF_OVERLAY  optional directory of .go files copied over the harness copy before building (e.g.
#              an adapter_project.go whose Iterate uses a new Map.All instead of Keys + Get; the
#              shared adapter cannot be edited). Recorded in the header; say so when you report numbers.
#   PROF_DIR   where -P keeps profiles and binary (default /tmp/sidebyside-prof-<checkout name>-<UTC time>)
#
# examples (from the repository root):
#   bench/sidebyside.sh -n 1000000 -r 3 -o bench/$(date -u +%F)-sidebyside-1m "$PWD"
#   bench/sidebyside.sh -n 4000000 -r 3 -p project,go-hamt-ipld -o bench/x-4m "$PWD"
#   bench/sidebyside.sh -P -n 1000000 -o bench/x "$PWD"          # profiles per phase
#   bench/sidebyside.sh -T -n 1000000 -o bench/x-1m "$PWD"       # re-print table of x-1m.jsonl
#
# The machine is shared: the load average is recorded before and after every run; compare medians
# from one run, not numbers from different runs. Measured on main (load 2–9 on 2 cores): at 1M a run
# takes 10–90 s per peer (a 3-peer rep ~1.5–3 min); at 4M project 4–5 min, go-hamt-ipld 1–1.5 min,
# boxo 3–6 min. The tables give wall and process-CPU medians; under load, trust CPU-time ratios more.
# Targets checked at the end (issue 13; "met" = median over reps of project/peer in the same rep,
# lower is better):
#   vs go-hamt-ipld (1M and 4M): W ≤0.6, Rc ≤0.8, Rw ≤0.8, Ic ≤2, Iw ≤2, U ≤0.5, peak heap ≤1.0
#   vs boxo-unixfs-hamt (1M):    W ≤0.25, Rc ≤0.42, Rw ≤0.50, Ic ≤0.34, Iw ≤0.24
set -euo pipefail

n=1000000 reps=3 peers=project,go-hamt-ipld,boxo-unixfs-hamt prefix="" append=0 profile=0 tableonly=0
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
while getopts "n:r:p:o:aPTh" opt; do
	case $opt in
	n) n=$OPTARG ;; r) reps=$OPTARG ;; p) peers=$OPTARG ;; o) prefix=$OPTARG ;;
	a) append=1 ;; P) profile=1 ;; T) tableonly=1 ;; *) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || usage
checkout=$(cd "$1" && pwd -P) || { echo "no such checkout: $1" >&2; exit 2; }
[ -f "$checkout/go.mod" ] && grep -q '^module github.com/hamt-go/hamt$' "$checkout/go.mod" ||
	{ echo "$checkout is not a github.com/hamt-go/hamt checkout" >&2; exit 2; }
[[ $n =~ ^[0-9]+$ && $reps =~ ^[0-9]+$ ]] || { echo "-n and -r take numbers" >&2; exit 2; }
: "${prefix:=./sidebyside-$(date -u +%F)-n$n}"
PERF_SRC=${PERF_SRC:-/work/shared/perf}
GOHAMT=${GOHAMT:-$HOME/gohamt}
BUILD_DIR=${BUILD_DIR:-/tmp/perf-sidebyside-$(basename "$checkout")}
PROF_DIR=${PROF_DIR:-/tmp/sidebyside-prof-$(basename "$checkout")-$(date -u +%Y%m%dT%H%M%S)}
jsonl=$prefix.jsonl txt=$prefix.txt
IFS=, read -r -a peerlist <<<"$peers"

# table prints the harness's table (medians, min–max, ratio of medians) and, from the same
# file, the median of per-rep ratios with the issue's targets.
table() {
	local ratios=""
	for p in "${peerlist[@]}"; do [ "$p" = project ] || ratios+="${ratios:+,}project:$p"; done
	echo "wall time (the harness's main numbers):"
	python3 "$BUILD_DIR/scripts/table.py" "$jsonl" --n "$n" --peers "$peers" --ratio "$ratios"
	echo
	echo "process CPU time of the same runs (all threads incl. GC; less sensitive to other load on the machine):"
	python3 "$BUILD_DIR/scripts/table.py" "$jsonl" --n "$n" --peers "$peers" --ratio "$ratios" \
		--fields w_cpu_s,rc_cpu_ns_op,rw_cpu_ns_op,ic_cpu_ns_key,iw_cpu_ns_key,u_cpu_s,uw_cpu_s
	python3 - "$jsonl" "$n" <<'EOF'
import json, sys, statistics
path, n = sys.argv[1], int(sys.argv[2])
runs = [json.loads(l) for l in open(path) if l.strip()]
runs = [r for r in runs if r.get("n") == n and not r.get("error") and not r.get("skipped")]
by = {}
for r in runs:
    by.setdefault(r["peer"], {})[r["rep"]] = r
# (field, label, target vs go-hamt-ipld, target vs boxo at 1M, CPU-time field)
T = [("w_ns_op", "W write+flush ns/key", 0.6, 0.25, "w_cpu_s"), ("rc_ns_op", "Rc cold get ns", 0.8, 0.42, "rc_cpu_ns_op"),
     ("rw_ns_op", "Rw warm get ns", 0.8, 0.50, "rw_cpu_ns_op"), ("ic_ns_key", "Ic iterate cold ns/key", 2.0, 0.34, "ic_cpu_ns_key"),
     ("iw_ns_key", "Iw iterate warm ns/key", 2.0, 0.24, "iw_cpu_ns_key"), ("u_s", "U update 1% + flush s", 0.5, None, "u_cpu_s"),
     ("uw_s", "Uw update 1% warm s", None, None, "uw_cpu_s"), ("w_peak_heap_mib", "peak heap of W MiB", 1.0, None, None)]
def pr_median(f, reps):
    if f is None:
        return None
    per = [by["project"][r][f] / by[peer][r][f] for r in reps if by[peer][r].get(f)]
    return statistics.median(per) if per else None
def cell(x):
    return "—" if x is None else f"{x:.2f}"
def met(x, tgt):
    return "—" if tgt is None or x is None else ("yes" if x <= tgt else "**no**")
if "project" not in by:
    sys.exit(0)
for peer, col in (("go-hamt-ipld", 2), ("boxo-unixfs-hamt", 3)):
    if peer not in by:
        continue
    reps = sorted(set(by["project"]) & set(by[peer]))
    print(f"\nproject / {peer}, N={n}: median over reps {reps} of the per-rep ratio, vs issue 13 target")
    print("| phase | project median | %s median | ratio of medians | median of per-rep ratios | same, CPU time | target | met (wall) | met (CPU) |" % peer)
    print("|---|---|---|---|---|---|---|---|---|")
    for t in T:
        f, label, tgt = t[0], t[1], t[col]
        if col == 3 and n != 1000000:
            tgt = None  # boxo targets are stated for 1M only
        a = statistics.median(by["project"][r][f] for r in by["project"])
        b = statistics.median(by[peer][r][f] for r in by[peer])
        fmt = (lambda x: f"{x:.3f}") if f.endswith("_s") else (lambda x: f"{x:,.0f}")
        pw, pc = pr_median(f, reps), pr_median(t[4], reps)
        if f == "w_peak_heap_mib":
            pc = pw
        print(f"| {label} | {fmt(a)} | {fmt(b)} | {a / b if b else float('nan'):.2f} | {cell(pw)} | {cell(pc)} | "
              f"{'—' if tgt is None else '≤ %.2f' % tgt} | {met(pw, tgt)} | {met(pc, tgt)} |")
if any(p in by for p in ("go-hamt-ipld", "boxo-unixfs-hamt")):
    print("\nmet = median over reps of (project / peer) in the same rep, wall time resp. process CPU time (peak heap: same in both)")
EOF
}

if [ "$tableonly" = 1 ]; then
	[ -f "$jsonl" ] || { echo "no $jsonl" >&2; exit 2; }
	[ -f "$BUILD_DIR/scripts/table.py" ] || BUILD_DIR=$PERF_SRC
	table
	exit 0
fi

# ---- build ------------------------------------------------------------------------------------
tags=""
for p in "${peerlist[@]}"; do
	case $p in go-hamt-ipld*) tags=gohamt ;; esac
done
if [ "$profile" = 1 ] && [ -d "$GOHAMT" ]; then tags=gohamt; fi
if [ "$tags" = gohamt ] && [ ! -f "$GOHAMT/go.mod" ]; then
	echo "go-hamt-ipld requested but $GOHAMT has no go.mod; see GOHAMT in the usage comment (or -p without it)" >&2
	exit 2
fi
echo "# building harness in $BUILD_DIR against $checkout${tags:+ (-tags $tags)}" >&2
if [ -e "$BUILD_DIR" ]; then # only ever remove a previous harness copy
	grep -qs '^module perfcheck$' "$BUILD_DIR/go.mod" || { echo "BUILD_DIR $BUILD_DIR exists and is not a harness copy" >&2; exit 2; }
	rm -rf "$BUILD_DIR"
fi
cp -r "$PERF_SRC" "$BUILD_DIR"
chmod -R u+w "$BUILD_DIR"
if [ -n "${PERF_OVERLAY:-}" ]; then
	echo "# overlay: $(cd "$PERF_OVERLAY" && ls -- *.go | tr '\n' ' ')from $PERF_OVERLAY" >&2
	cp "$PERF_OVERLAY"/*.go "$BUILD_DIR"/
fi
(
	cd "$BUILD_DIR"
	go mod edit -replace="github.com/hamt-go/hamt=$checkout"
	if [ "$tags" = gohamt ]; then
		go mod edit -replace="github.com/filecoin-project/go-hamt-ipld/v3=$GOHAMT" \
			-require=github.com/filecoin-project/go-hamt-ipld/v3@v3.4.1
	else
		rm -f adapter_gohamt.go
	fi
	GOFLAGS=-mod=mod go mod tidy
	go build ${tags:+-tags $tags} -o perf .
) >&2
perf=$BUILD_DIR/perf
for p in "${peerlist[@]}"; do
	"$perf" -list | awk '{print $1}' | grep -qx -- "$p" || { echo "unknown peer $p; known:" >&2; "$perf" -list >&2; exit 2; }
done

commit=$(git -C "$checkout" rev-parse HEAD 2>/dev/null || echo unknown)
# dirty = uncommitted changes to tracked files outside bench/ (what the harness compiles)
dirty=$(git -C "$checkout" status --porcelain --untracked-files=no -- . ':!bench' 2>/dev/null | grep -q . && echo true || echo false)
header() {
	echo "# side-by-side run, bench/sidebyside.sh $*"
	echo "# date $(date -u +%FT%TZ)  host $(hostname)  cores $(nproc)  $(go version)"
	echo "# checkout $checkout  commit $commit  dirty $dirty"
	echo "# harness $PERF_SRC (built in $BUILD_DIR${tags:+, -tags $tags}, go-hamt-ipld from $GOHAMT)"
	if [ -n "${PERF_OVERLAY:-}" ]; then echo "# OVERLAY $PERF_OVERLAY: $(cd "$PERF_OVERLAY" && ls -- *.go | tr '\n' ' ')"; fi
}

# ---- profiles ---------------------------------------------------------------------------------
if [ "$profile" = 1 ]; then
	out=$prefix-profiles.txt
	[ "$append" = 1 ] || [ ! -e "$out" ] || { echo "$out exists (use -a to append)" >&2; exit 2; }
	{
		header "-P -n $n"
		echo "# uptime before: $(uptime)"
		mkdir -p "$PROF_DIR" && cp "$perf" "$PROF_DIR/perf"
		echo "# profiles and binary in $PROF_DIR"
		(cd "$PROF_DIR" && ./perf -peer project -n "$n" -rep 0 -phaseprofile W,Rc,Rw,Ic,Iw -phaseprofile-prefix prof) |
			sed 's/^/# run: /'
		echo "# uptime after:  $(uptime)"
		for ph in W Rc Rw Ic Iw; do
			f=$PROF_DIR/prof.$ph.cpu.out
			echo
			echo "## phase $ph: go tool pprof -top -nodecount=10 perf prof.$ph.cpu.out"
			if [ -f "$f" ]; then
				go tool pprof -top -nodecount=10 "$PROF_DIR/perf" "$f" 2>&1 | sed '/^File:/d; /^Build ID:/d; /^Type:/d; /^Time:/d'
				echo
				echo "## phase $ph, cumulative, library only: go tool pprof -top -cum -nodecount=15 -focus=hamt-go/hamt -show=hamt-go/hamt perf prof.$ph.cpu.out"
				go tool pprof -top -cum -nodecount=15 -focus=hamt-go/hamt -show=hamt-go/hamt "$PROF_DIR/perf" "$f" 2>&1 |
					sed '/^File:/d; /^Build ID:/d; /^Type:/d; /^Time:/d; /^Duration:/d'
			else
				echo "(no profile written)"
			fi
		done
	} | if [ "$append" = 1 ]; then tee -a "$out"; else tee "$out"; fi
	exit 0
fi

# ---- timed runs -------------------------------------------------------------------------------
if [ "$append" != 1 ]; then
	for f in "$jsonl" "$txt"; do [ ! -e "$f" ] || { echo "$f exists (use -a to append, or another -o)" >&2; exit 2; }; done
fi
mkdir -p "$(dirname "$prefix")"
header "-n $n -r $reps -p $peers -o $prefix" >>"$txt"
echo "# uptime at start: $(uptime)" | tee -a "$txt" >&2
k=${#peerlist[@]}
for ((rep = 1; rep <= reps; rep++)); do
	for ((i = 0; i < k; i++)); do
		p=${peerlist[$(((i + rep - 1) % k))]}
		up0=$(uptime)
		t0=$(date +%s)
		line=$("$perf" -peer "$p" -n "$n" -rep "$rep") || echo "# run failed: $p rep $rep (exit $?)" | tee -a "$txt" >&2
		up1=$(uptime)
		[ -n "$line" ] || continue
		# add the load before/after this run, and the checkout, to the raw JSON line
		python3 -c '
import json, sys
r = json.loads(sys.argv[1])
la = lambda u: u.rsplit("load average:", 1)[-1].strip()
r.update(uptime_start=la(sys.argv[2]), uptime_end=la(sys.argv[3]), checkout=sys.argv[4], commit=sys.argv[5], dirty=sys.argv[6] == "true")
print(json.dumps(r, separators=(",", ":")))' "$line" "$up0" "$up1" "$checkout" "$commit" "$dirty" >>"$jsonl"
		printf '# rep %d %-18s %4ds  load before [%s]  after [%s]\n' "$rep" "$p" $(($(date +%s) - t0)) \
			"${up0##*load average: }" "${up1##*load average: }" | tee -a "$txt" >&2
	done
done
echo "# uptime at end: $(uptime)" | tee -a "$txt" >&2
table | tee -a "$txt"
