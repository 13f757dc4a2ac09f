// bench/decode_peer.mjs: llama.cpp's single-stream speed on a GGUF file, through node-llama-cpp's
// prebuilt CPU binaries (never built or downloaded here): time to first token for a prompt of
// PROMPT random token ids (prefill + the first token's logits), then GEN greedy decode steps.
// Usage: node bench/decode_peer.mjs MODEL.gguf PROMPT GEN THREADS   -> one JSON line.
// KV cache F32 and no flash attention, as ftune decodes (fp32 cache, plain attention).
import path from "node:path";
import {createRequire} from "node:module";

const here = path.dirname(new URL(import.meta.url).pathname);
const require = createRequire(path.join(here, "../tools/npm-llama/package.json"));
const {getLlama, LlamaLogLevel} = await import(require.resolve("node-llama-cpp"));

const [gguf, promptArg, genArg, threadsArg] = process.argv.slice(2);
const P = Number(promptArg), G = Number(genArg), threads = Number(threadsArg);
const llama = await getLlama({gpu: false, build: "never", skipDownload: true, usePrebuiltBinaries: true,
                              progressLogs: false, logLevel: LlamaLogLevel.error, maxThreads: threads});
const model = await llama.loadModel({modelPath: gguf, gpuLayers: 0, useMmap: true});
const context = await model.createContext({contextSize: P + G + 16, batchSize: Math.max(512, P), threads,
                                           sequences: 1, flashAttention: false,
                                           experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32"});
const seq = context.getSequence();
const nVocab = model.fileInfo.metadata.tokenizer.ggml.tokens.length;
const prompt = [];
for (let i = 0; i < P; i++) prompt.push(1 + (i * 7919 + 13) % (Math.min(nVocab, 32000) - 1));

// Warm-up (page in the weights, as ftune's load does): one short evaluation, then a fresh sequence.
await seq.controlledEvaluate([[prompt[0], {generateNext: {token: true}}]]);
await seq.clearHistory();

let t0 = performance.now();
const input = prompt.slice(0, -1).concat([[prompt.at(-1), {generateNext: {token: true}}]]);
const res = await seq.controlledEvaluate(input);
let tok = res[input.length - 1].next.token;
const ttft = (performance.now() - t0) / 1000;
t0 = performance.now();
for (let i = 0; i < G; i++) {
    const r = await seq.controlledEvaluate([[tok, {generateNext: {token: true}}]]);
    tok = r[0].next.token;
}
const decode = (performance.now() - t0) / 1000;
console.log(JSON.stringify({ttft_s: ttft, decode_tok_s: G / decode, prompt_tokens: P, gen_tokens: G, threads}));
await context.dispose();
await model.dispose();
await llama.dispose();
