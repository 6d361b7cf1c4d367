#!/usr/bin/env bash
# The GPU benchmark of BUILD_NOTES in one call on an NVIDIA machine (H200), offline: benchmarks/run.py on the
# SmolLM2 shape, then the Llama-2-7B shape, bfloat16, every row (generation, categorisation, IG) in its own
# process under its own `timeout`, the whole inside a time budget (BUDGET_S, default 390 s: under 7 minutes
# with the checks). Installs nothing; stops with one clear line when a package or the GPU is missing.
# Every measure is appended to $OUT/perf_gpu.jsonl as soon as it is done and each stage rewrites its own
# $OUT/<stage>.md after each row, so a timeout keeps what was measured; $OUT/perf_gpu.md is the table of all.
#
#     bash benchmarks/gpu.sh                  # on the GPU machine ($OUT set by it; default ./gpu_out)
#     GPU_SMOKE=1 bash benchmarks/gpu.sh      # the same stages on this CPU, tiny shape, smallest sizes
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-./gpu_out}
SMOKE=${GPU_SMOKE:-0}
mkdir -p "$OUT"
if [ -e "$OUT/perf_gpu.jsonl" ]; then mv "$OUT/perf_gpu.jsonl" "$OUT/perf_gpu.jsonl.$(date +%s)"; fi
exec > >(tee -a "$OUT/gpu.log") 2>&1

echo "== packages (pip list)"
pip list 2>/dev/null | grep -i -E "jax|torch|flax|transformers|optax|orbax"
echo "== nvidia-smi"
if ! nvidia-smi; then
    if [ "$SMOKE" != 1 ]; then echo "STOP: nvidia-smi failed: no NVIDIA GPU visible on this machine"; exit 2; fi
    echo "(smoke run: no GPU, continuing on the CPU)"
fi
echo "== load: $(cat /proc/loadavg), $(nproc) cores"

if [ "$SMOKE" = 1 ]; then
    export JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES=""
    SMALL=tiny BIG=tiny BUDGET_S=${BUDGET_S:-3000} STRETCH=10
    SMALL_SIZES="--examples=2 --languages=3 --min_len=8 --max_len=12 --batch_size=2 --paper_examples=1
        --ig_examples=1 --ig_len=8 --ig_steps=2 --ig_layers=2 --repeats=1
        --gen_prompts=2 --gen_batch=2 --gen_prompt_len=8 --gen_new_tokens=2"
    BIG_SIZES=$SMALL_SIZES COUNT_SIZES="--rows=4 --length=16 --batch_size=2 --repeats=1"
else
    SMALL=smollm2 BIG=llama2_7b BUDGET_S=${BUDGET_S:-390} STRETCH=1
    SMALL_SIZES="--examples=64 --batch_size=16 --paper_examples=4 --ig_examples=2 --ig_len=80 --repeats=3
        --gen_prompts=64 --gen_batch=32 --gen_prompt_len=128 --gen_new_tokens=64"
    BIG_SIZES="--examples=32 --batch_size=8 --paper_examples=2 --ig_examples=1 --ig_len=80 --repeats=2
        --gen_prompts=32 --gen_batch=16 --gen_prompt_len=128 --gen_new_tokens=32"
    COUNT_SIZES="--rows=128 --length=512 --batch_size=16 --repeats=2"
fi

echo "== python packages and devices"
python - "$SMOKE" <<'EOF' || exit 3
import importlib.util, sys
need = ["jax", "jaxlib", "flax", "torch", "transformers", "numpy", "absl", "tqdm", "safetensors", "tokenizers"]
missing = [name for name in need if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"STOP: missing Python packages: {', '.join(missing)} (this script installs nothing; "
             "install them, e.g. pip install -e . where a network is reachable)")
sys.path.insert(0, ".")
import jax, torch  # noqa: E401
import jaxneurons  # noqa: F401  (must import without gguf)
print("jax", jax.__version__, jax.devices(), "| torch", torch.__version__, "cuda", torch.cuda.is_available(),
      "| gguf", "present" if importlib.util.find_spec("gguf") else "absent")
if sys.argv[1] != "1":
    if jax.default_backend() != "gpu":
        sys.exit(f"STOP: JAX sees no GPU (backend {jax.default_backend()}): install jax[cuda12]")
    if not torch.cuda.is_available():
        sys.exit("STOP: PyTorch sees no GPU (torch.cuda.is_available() is False): install a CUDA build of torch")
    print("GPU:", torch.cuda.get_device_name(0))
EOF

stage() {  # stage NAME CAP_S run.py-flags...: one run.py process, its timeout the cap or the budget left
    local name=$1 cap=$2; shift 2
    timed "$name" "$cap" benchmarks/run.py --dtype=bfloat16 --force --json_out="$OUT/perf_gpu.jsonl" \
        --markdown="$OUT/$name.md" "$@"
}

timed() {  # timed NAME CAP_S script flags...: one python process, its timeout the cap or the budget left
    local name=$1 cap=$(( $2 * STRETCH )); shift 2
    local left=$(( BUDGET_S - SECONDS ))
    local limit=$(( cap < left ? cap : left ))
    if (( limit < 20 )); then echo "== $name: SKIPPED (${left}s of the ${BUDGET_S}s budget left)"; return; fi
    echo "== $name: timeout ${limit}s, at ${SECONDS}s, load $(cut -d' ' -f1-3 /proc/loadavg)"
    local start=$SECONDS
    # shellcheck disable=SC2068
    timeout -k 10 "$limit" python "$@" 2>&1 | grep -v -E "^I[0-9]{4} |Unable to initialize backend 'tpu'"
    local rc=${PIPESTATUS[0]}
    case $rc in
        0) echo "== $name: done in $((SECONDS - start))s" ;;
        124|137) echo "== $name: TIMED OUT after $((SECONDS - start))s (rows measured so far are kept)" ;;
        *) echo "== $name: FAILED (exit $rc) after $((SECONDS - start))s" ;;
    esac
}

for row in generation categorisation ig; do
    stage "${SMALL}_$row" 60 --shapes="$SMALL" --rows="$row" $SMALL_SIZES
done
for row in generation categorisation ig; do
    stage "${BIG}_$row" 110 --shapes="$BIG" --rows="$row" $BIG_SIZES
done
# LAPE's counting pass (the activation statistics) against PyTorch act_fn hooks, both shapes
timed activation_stats 60 benchmarks/activation_stats.py --dtype=bfloat16 --force \
    --json_out="$OUT/activation_stats.jsonl" --shapes="$SMALL,$BIG" $COUNT_SIZES

echo "== all rows: $OUT/perf_gpu.md"
if [ -s "$OUT/perf_gpu.jsonl" ]; then
    python benchmarks/report.py "$OUT/perf_gpu.jsonl" "$(( SECONDS / 60 )).$(( SECONDS % 60 * 10 / 60 ))" \
        | tee "$OUT/perf_gpu.md"
else
    echo "no measure finished"
fi
echo "== total ${SECONDS}s"
