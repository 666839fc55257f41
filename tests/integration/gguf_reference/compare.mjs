// Compares what ridgeline's GGUF reader says about a file (the JSON of `ridgeline_gguf_tool dump`)
// with what Hugging Face's @huggingface/gguf parses from the same file: version, counts, the data
// offset, every metadata key (type, element type, value) and every tensor info (name, shape, ggml
// type, offset). Prints each difference; exits 1 if there is any.
//   node compare.mjs NODE_MODULES FILE.gguf RIDGELINE_DUMP.json
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const [modules, file, dumpFile] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(modules), "noop.js"));
const { gguf } = require("@huggingface/gguf");

const ours = JSON.parse(readFileSync(dumpFile, "utf8"));
const ref = await gguf(path.resolve(file), { typedMetadata: true, allowLocalFile: true });

const problems = [];
const same = (what, a, b) => {
  if (a !== b) problems.push(`${what}: ridgeline ${JSON.stringify(a)}, @huggingface/gguf ${JSON.stringify(b)}`);
};
const INT_TYPES = new Set([0, 1, 2, 3, 4, 5, 10, 11]);
const FLOAT_TYPES = new Set([6, 12]);

// Our value (ints as strings) against theirs (number or bigint) of GGUF value type `type`.
function compareValue(what, type, mine, theirs) {
  if (INT_TYPES.has(type)) return same(what, mine, String(theirs));
  if (FLOAT_TYPES.has(type)) return same(what, mine, theirs);
  if (type === 7 || type === 8) return same(what, mine, theirs);
  if (type === 9) {
    if (!Array.isArray(mine) || !Array.isArray(theirs)) return problems.push(`${what}: not arrays`);
    same(`${what} length`, mine.length, theirs.length);
    for (let i = 0; i < Math.min(mine.length, theirs.length); i++) {
      const m = mine[i], t = theirs[i];
      // Element types of nested arrays are not exposed by the reference: infer from the value.
      const sub = Array.isArray(t) ? 9 : typeof m === "string" && typeof t !== "string" ? 0 : typeof t === "boolean" ? 7 : typeof t === "string" ? 8 : 6;
      compareValue(`${what}[${i}]`, sub, m, t);
    }
    return;
  }
  problems.push(`${what}: unknown type ${type}`);
}

same("version", ours.version, ref.metadata.version);
same("tensor_count", ours.tensor_count, String(ref.metadata.tensor_count));
same("kv_count", ours.kv_count, String(ref.metadata.kv_count));
same("data offset", ours.data_offset, String(ref.tensorDataOffset));
same("alignment", ours.alignment, Number(ref.metadata["general.alignment"] ?? 32));
same("little-endian", true, ref.littleEndian);

const header = new Set(["version", "tensor_count", "kv_count"]);
const theirKeys = Object.keys(ref.typedMetadata).filter((k) => !header.has(k)).sort();
const ourKeys = Object.keys(ours.metadata).sort();
same("metadata keys", ourKeys.join(","), theirKeys.join(","));
for (const key of ourKeys) {
  const m = ours.metadata[key], t = ref.typedMetadata[key];
  if (!t) continue;
  same(`${key} type`, m.type, t.type);
  if (m.type === 9) same(`${key} element type`, m.element_type, t.subType);
  if (m.type === 9 && m.element_type !== 9) {
    same(`${key} length`, m.value.length, t.value.length);
    for (let i = 0; i < Math.min(m.value.length, t.value.length); i++) {
      compareValue(`${key}[${i}]`, m.element_type, m.value[i], t.value[i]);
    }
  } else {
    compareValue(key, m.type, m.value, t.value);
  }
}

same("tensor infos", ours.tensors.length, ref.tensorInfos.length);
for (let i = 0; i < Math.min(ours.tensors.length, ref.tensorInfos.length); i++) {
  const m = ours.tensors[i], t = ref.tensorInfos[i];
  same(`tensor ${i} name`, m.name, t.name);
  same(`tensor ${m.name} dims`, m.dims.join(","), t.shape.map(String).join(","));
  same(`tensor ${m.name} n_dims`, m.dims.length, t.n_dims);
  same(`tensor ${m.name} type`, m.type, t.dtype);
  same(`tensor ${m.name} offset`, m.offset, String(t.offset));
}

if (problems.length) {
  for (const p of problems.slice(0, 40)) console.log(`  ${p}`);
  console.log(`${file}: ${problems.length} differences`);
  process.exit(1);
}
console.log(`${path.basename(file)}: ${ourKeys.length} keys and ${ours.tensors.length} tensor infos agree`);
