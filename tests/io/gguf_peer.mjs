// tests/io/gguf_peer.mjs: llama.cpp (node-llama-cpp's prebuilt CPU binaries) as the peer for
// ftune's GGUF export. Usage: node gguf_peer.mjs MODEL.gguf REQUEST.json OUT_DIR
// REQUEST: {"prompts": [[ids...], ...], "steps": N, "texts": ["...", ...], "threads": T,
//           "kv_type": "F32" | "F16" (llama.cpp's KV cache type; its default is F16)}
// For each prompt: greedy decoding for `steps` tokens; at each step the top-5 (id, logit) and the
// full logits as OUT_DIR/logits_<prompt>_<step>.f32 (little-endian float32, one per vocab id).
// Prints one JSON object: {"n_vocab", "bos", "eos", "add_bos", "chat_template", "tokenized":
// [[ids]] (texts, no special tokens added), "runs": [{"greedy": [...], "top5": [[[id, logit]...]...]}]}.
// Never builds or downloads anything: build "never", skipDownload, CPU only.
import fs from "node:fs";
import path from "node:path";
import {createRequire} from "node:module";

const here = path.dirname(new URL(import.meta.url).pathname);
const require = createRequire(path.join(here, "../../tools/npm-llama/package.json"));
const {getLlama, LlamaLogLevel} = await import(require.resolve("node-llama-cpp"));

const [ggufPath, reqPath, outDir] = process.argv.slice(2);
const req = JSON.parse(fs.readFileSync(reqPath, "utf8"));
const llama = await getLlama({gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true,
                              progressLogs: false, logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: ggufPath, gpuLayers: 0});
const nVocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
const out = {
    n_vocab: nVocab,
    bos: model.tokens.bos,
    eos: model.tokens.eos,
    add_bos: model.tokens.shouldPrependBosToken,
    chat_template: model.fileInfo.metadata.tokenizer.chat_template ?? null,
    tokenized: (req.texts ?? []).map(t => Array.from(model.tokenize(t, false))),
    runs: [],
};
const maxLen = Math.max(...req.prompts.map(p => p.length)) + req.steps + 8;
const context = await model.createContext({contextSize: Math.max(64, maxLen), batchSize: 512,
                                           threads: req.threads ?? 2, sequences: 1, flashAttention: false,
                                           experimentalKvCacheKeyType: req.kv_type ?? "F16",
                                           experimentalKvCacheValueType: req.kv_type ?? "F16"});
const seq = context.getSequence();
for (let p = 0; p < req.prompts.length; p++) {
    await seq.clearHistory();
    let input = req.prompts[p].slice(0, -1).concat([[req.prompts[p].at(-1), {generateNext: {logits: true}}]]);
    const run = {greedy: [], top5: []};
    for (let s = 0; s < req.steps; s++) {
        const res = await seq.controlledEvaluate(input);
        const logits = res[input.length - 1].next.logits;
        const full = new Float32Array(nVocab);
        for (const [id, v] of logits) full[id] = v;
        fs.writeFileSync(path.join(outDir, `logits_${p}_${s}.f32`), Buffer.from(full.buffer));
        const top = [...logits.entries()].slice(0, 5);
        run.top5.push(top);
        run.greedy.push(top[0][0]);
        input = [[top[0][0], {generateNext: {logits: true}}]];
    }
    out.runs.push(run);
}
seq.dispose();
await context.dispose();
await model.dispose();
await llama.dispose();
process.stdout.write(JSON.stringify(out) + "\n");
