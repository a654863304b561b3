// zarrita_check.mjs reads testdata/zarr back with zarrita (https://github.com/manzt/zarrita.js),
// an independent Zarr v3 reader, and checks every element against the formulas in main.go.
// cmd/hamt/zarrita_test.go runs it against `hamt serve` of the hierarchy imported in each layout
// (HAMT, and sharded under group 0) when HAMT_ZARRITA_DIR names a directory where zarrita is
// installed, as .ci/run does from package.json and package-lock.json beside this file.
//
// Run it by hand from a scratch directory outside the repository, so no node_modules lands in it:
//
//	mkdir -p /tmp/zarrita-check && cd /tmp/zarrita-check
//	cp /path/to/repo/internal/zarrgen/{package.json,package-lock.json,zarrita_check.mjs} .
//	npm ci
//	node zarrita_check.mjs /path/to/repo/testdata/zarr
//
// To read it over HTTP from the command-line tool instead (zarrita's FetchStore):
//
//	ROOT=$(go run ./cmd/hamt import testdata/zarr | tail -1)
//	go run ./cmd/hamt serve $ROOT --listen 127.0.0.1:8000 &
//	node zarrita_check.mjs http://127.0.0.1:8000/
//
// A sharded dataset (hamt import --layout sharded) keeps its arrays under a group: read it at
// http://127.0.0.1:8000/0/ when it was imported from a directory holding the hierarchy in 0/.
//
// It prints every group's attributes and every array in full, and exits 1 on any mismatch.
// Checked with zarrita 0.7.5 and @zarrita/storage 0.2.0 on Node.js 20.

import * as fs from "node:fs";
import * as path from "node:path";
import FileSystemStore from "@zarrita/storage/fs";
import * as zarr from "zarrita";

const dir = process.argv[2];
if (!dir) {
	console.error("usage: node zarrita_check.mjs DIR/testdata/zarr");
	process.exit(2);
}

// The formulas of main.go, written again here so the two can disagree.
const expected = {
	"surface/temp": { dtype: "float32", shape: [6, 10], at: ([y, x]) => 15 + 0.5 * y - 0.25 * x },
	counts: { dtype: "int64", shape: [20], at: ([t]) => BigInt(t - 7) * 3000000000n + BigInt(t) },
	mask: { dtype: "uint8", shape: [5, 7], at: ([i, j]) => ((7 * i + j) % 3 === 0 ? 1 : 0) },
	sparse: {
		dtype: "float64",
		shape: [4, 6],
		at: ([i, j]) => (i >= 2 && j < 3 ? NaN : 10 * i + j / 8), // chunk (1,0) is missing
	},
	sharded: {
		dtype: "uint16",
		shape: [8, 8],
		at: ([i, j]) => (i >= 2 && i < 4 && j >= 6 ? 0 : 1000 * (8 * i + j + 1)),
	},
};

const same = (a, b) => (typeof a === "number" && Number.isNaN(a) ? Number.isNaN(b) : a === b);

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): zarrita strips the crc32c of a shard
// index without checking it, so check it here.
function crc32c(bytes) {
	let crc = 0xffffffff;
	for (const b of bytes) {
		crc ^= b;
		for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
	}
	return (crc ^ 0xffffffff) >>> 0;
}

function rows(data, shape) {
	if (shape.length === 1) return [Array.from(data, String).join(" ")];
	const out = [];
	for (let i = 0; i < shape[0]; i++) {
		out.push(Array.from(data.slice(i * shape[1], (i + 1) * shape[1]), String).join(" "));
	}
	return out;
}

// A URL reads the hierarchy over HTTP instead, as served by `hamt serve ROOT`.
const remote = /^https?:\/\//.test(dir);
const store = remote ? new zarr.FetchStore(dir) : new FileSystemStore(dir);
const root = zarr.root(store);
let failures = 0;
const fail = (msg) => {
	failures++;
	console.log(`  MISMATCH ${msg}`);
};

for (const g of ["", "surface"]) {
	const group = await zarr.open(g ? root.resolve(g) : root, { kind: "group" });
	console.log(`group /${g}: attributes ${JSON.stringify(group.attrs)}`);
}

for (const [name, want] of Object.entries(expected)) {
	const arr = await zarr.open(root.resolve(name), { kind: "array" });
	const { data, shape } = await zarr.get(arr);
	console.log(
		`array /${name}: ${arr.dtype} shape [${shape}] chunks [${arr.chunks}] fill ${arr.fillValue}`,
	);
	for (const line of rows(data, shape)) console.log(`  ${line}`);
	if (arr.dtype !== want.dtype) fail(`${name}: dtype ${arr.dtype}, want ${want.dtype}`);
	if (String(shape) !== String(want.shape)) fail(`${name}: shape [${shape}], want [${want.shape}]`);
	const cols = shape.length === 2 ? shape[1] : 1;
	for (let k = 0; k < data.length; k++) {
		const idx = shape.length === 2 ? [Math.floor(k / cols), k % cols] : [k];
		const w = want.at(idx);
		if (!same(w, data[k])) fail(`${name}[${idx}] = ${data[k]}, want ${w}`);
	}
}

// The shard index's checksum, and the empty entry of inner chunk (1,1) in shard c/0/1.
for (const key of ["c/0/0", "c/0/1", "c/1/0", "c/1/1"]) {
	const shard = remote
		? Buffer.from(await (await fetch(`${dir.replace(/\/$/, "")}/sharded/${key}`)).arrayBuffer())
		: fs.readFileSync(path.join(dir, "sharded", key));
	const index = shard.subarray(shard.length - 68, shard.length - 4);
	const stored = shard.readUInt32LE(shard.length - 4);
	const ok = crc32c(index) === stored;
	if (!ok) fail(`sharded/${key}: index crc32c ${stored}, computed ${crc32c(index)}`);
	const empty = [];
	for (let e = 0; e < 4; e++) {
		if (index.readBigUInt64LE(16 * e) === 2n ** 64n - 1n) empty.push(e);
	}
	console.log(`shard sharded/${key}: crc32c ok=${ok}, empty inner chunks [${empty}]`);
	const wantEmpty = key === "c/0/1" ? "3" : ""; // inner chunk (1,1) is entry 3 in C order
	if (String(empty) !== wantEmpty) fail(`sharded/${key}: empty inner chunks [${empty}]`);
}

console.log(
	failures === 0 ? "OK: zarrita read every array as generated" : `FAILED: ${failures} mismatches`,
);
process.exit(failures === 0 ? 0 : 1);
