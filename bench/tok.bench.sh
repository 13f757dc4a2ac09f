#!/bin/sh
# bench/tok.bench.sh: tokenizer encoding speed, ftune against Hugging Face `tokenizers` (npm
# tokenizers@0.23.2, the Rust library) in the same run, on a generated mixed corpus (>= 20 MB)
# with the Llama 3 tokenizer. Single-threaded for both (RAYON_NUM_THREADS=1 for the peer), then
# ftune's parallel batch encoder over all cores. Prints MB/s (wall clock, and per CPU second,
# which is steadier on a shared machine) and the ratios. TOK_BENCH_MB sets the corpus size.
set -e
cd "$(dirname "$0")/.."
MB=${TOK_BENCH_MB:-24}
M=tests/fixtures/tok/llama3-instruct-rev2
[ -d tools/npm/node_modules/tokenizers ] || (cd tools/npm && npm install --no-audit --no-fund --silent)
[ -x build/ftune ] || make -s build/ftune
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
node bench/tok_corpus.js "$tmp/corpus.jsonl" "$MB"
ft=$(./build/ftune tokenize --model $M --jsonl --file "$tmp/corpus.jsonl" --stats --threads 1)
th=$(nproc)
ftp=$(./build/ftune tokenize --model $M --jsonl --file "$tmp/corpus.jsonl" --stats --threads "$th")
peer=$(RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false node bench/tok_peer.js $M/tokenizer.json "$tmp/corpus.jsonl")
echo "ftune  1 thread : $ft"
echo "ftune  $th threads: $ftp"
echo "tokenizers (Rust via npm), 1 thread: $peer"
FT="$ft" FTP="$ftp" PEER="$peer" node -e '
const a = JSON.parse(process.env.FT), p = JSON.parse(process.env.FTP), b = JSON.parse(process.env.PEER);
if (a.tokens !== b.tokens) { console.log(`token counts differ: ftune ${a.tokens}, tokenizers ${b.tokens}`); process.exit(1); }
const f = (x) => x.toFixed(2);
console.log(`llama3 encode, ${f(a.bytes / 1e6)} MB, ${a.tokens} tokens (identical counts)`);
console.log(`  ftune      ${f(a.mb_per_s)} MB/s (${f(a.mb_per_cpu_s)} MB/cpu-s)`);
console.log(`  tokenizers ${f(b.mb_per_s)} MB/s (${f(b.mb_per_cpu_s)} MB/cpu-s)`);
console.log(`  ratio      ${f(a.mb_per_s / b.mb_per_s)}x wall, ${f(a.mb_per_cpu_s / b.mb_per_cpu_s)}x cpu (target >= 1.5x)`);
console.log(`  ftune parallel, ${p.threads} threads: ${f(p.mb_per_s)} MB/s (${f(p.mb_per_s / a.mb_per_s)}x its single thread)`);
'
