# bench/data_common.sh: what bench/data.bench.sh and bench/parquet.bench.sh share, sourced by both
# (not a benchmark itself: bench/run.sh runs only *.bench.sh).
#   data_bench_setup PROGRAM MIB
# makes a temporary folder $tmp (removed on exit), builds the library when $BUILD (default build)
# has none, compiles bench/PROGRAM.c against it into $tmp/PROGRAM, lays out the Llama 3 Instruct
# tokenizer and chat template in $tmp/tok, and generates MIB MiB of chat JSONL in $tmp/chat.jsonl
# (bench/data_gen.py, deterministic).
data_bench_setup() {
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    BUILD=${BUILD:-build}
    [ -f "$BUILD/libftune.a" ] || make -s all
    # the libraries of the Makefile's LDLIBS lines (make variables such as $(MPI_LIBS) left out:
    # they are empty in the default build)
    LIBS=$(sed -n 's/^LDLIBS *+= *//p' Makefile | sed 's/\$([A-Za-z_]*)//g' | tr '\n' ' ')
    ${CC:-gcc} -O2 -std=c11 -D_GNU_SOURCE -fopenmp -Iinclude "bench/$1.c" "$BUILD/libftune.a" $LIBS -o "$tmp/$1"
    # The fixture's tokenizer_config.json has model_max_length 1e30, which jansson cannot hold as an
    # integer; the benchmarks only need the tokenizer and the template.
    mkdir -p "$tmp/tok"
    cp tests/fixtures/tok/llama3-instruct-rev2/tokenizer.json "$tmp/tok/"
    sed 's/"model_max_length": *[0-9]\{20,\}/"model_max_length": 8192/' \
        tests/fixtures/tok/llama3-instruct-rev2/tokenizer_config.json > "$tmp/tok/tokenizer_config.json"
    /usr/bin/python3 bench/data_gen.py "$tmp/chat.jsonl" "$2"
}
