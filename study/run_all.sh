#!/bin/bash
# Run the study's flagfiles (launchers/configs/study_<name>.flags) one after another (nice 10), each replacing
# its earlier results (--overwrite); log wall time to runs/study/times.txt; copy each finished run's small
# results (*.json, flags.txt, report.md, per_example.json extracted from examples.npz, and a deactivation pass's
# per_item_deactivation.json extracted from interventions_state.npz; a LAPE run's ppl.json, lape_neurons.json
# and lape_categories.json) to
# study/results/<name>/, where study/make_tables.py reads them.
#   bash study/run_all.sh [name ...]   (default: every run of REPRODUCTION.md v3, in this order)
#   python study/make_tables.py --write
cd "$(dirname "$0")/.." || exit 1
export JAXNEURONS_DATA_DIR=${JAXNEURONS_DATA_DIR:-../shared/data}
mkdir -p runs/study study/results
names=${@:-gemma_xnli gemma_xnli_cut gemma_mpararel gemma_mpararel_answer smollm_xnli smollm_xnli_cut \
  smollm_mpararel smollm_mpararel_answer gemma_xnli_templates gemma_mpararel_templates smollm_xnli_templates \
  smollm_mpararel_templates gemma_xnli_all gemma_mpararel_all gemma_xnli_13 gemma_xnli_attr smollm_xnli_attr \
  gemma_xnli_ig smollm_xnli_ig gemma_mpararel_iv smollm_mpararel_iv gemma_mpararel_np smollm_mpararel_np \
  alignment_gradients align_xnli gemma_mzsre_en2all gemma_mzsre_all2en smollm_mzsre_en2all smollm_mzsre_all2en \
  lape_gemma}

keep() {  # keep SRC's small results in DST
  mkdir -p "$2"
  for f in "$1"/*.json "$1"/flags.txt "$1"/report.md "$1"/templates.md; do [ -f "$f" ] && cp "$f" "$2"/; done
  [ -f "$1"/examples.npz ] && python study/make_tables.py --extract "$1" "$2" > /dev/null
}

for name in $names; do
  t0=$(date +%s)
  out=runs/study/$name
  if [ "$name" = alignment_gradients ]; then
    mkdir -p $out
    nice -n 10 python study/alignment_gradients.py --output=$out/alignment_gradients.json > runs/study_$name.log 2>&1
  elif [ "$name" = lape_gemma ]; then  # the LAPE issue's run: language neurons, perplexity, their categories
    nice -n 10 python launchers/lape.py --flagfile=launchers/configs/lape_gemma.flags \
      --data_dir="$JAXNEURONS_DATA_DIR" --output_dir=$out --overwrite > runs/study_$name.log 2>&1
  elif [ "$name" = align_xnli ]; then
    nice -n 10 python launchers/align.py --flagfile=launchers/configs/study_$name.flags \
      --data_dir="$JAXNEURONS_DATA_DIR" --overwrite > runs/study_$name.log 2>&1
  else
    nice -n 10 python launchers/analyze.py --flagfile=launchers/configs/study_$name.flags \
      --data_dir="$JAXNEURONS_DATA_DIR" --overwrite --noprogress > runs/study_$name.log 2>&1
  fi
  rc=$?
  echo "$name rc=$rc wall_s=$(( $(date +%s) - t0 )) end=$(date +%T)" >> runs/study/times.txt
  if [ $rc = 0 ]; then
    rm -rf study/results/$name
    keep $out study/results/$name
    for e in $out/eval/*/; do [ -d "$e" ] && keep "$e" study/results/$name/eval/$(basename "$e"); done
    for t in $out/*/; do  # sweeps: a template's sharing run, or an alignment run of a (lambda, seed)
      [ -f "$t/sharing.json" ] || [ -f "$t/alignment.json" ] || continue
      keep "$t" study/results/$name/$(basename "$t")
      for e in $t/eval/*/; do [ -d "$e" ] && keep "$e" study/results/$name/$(basename "$t")/eval/$(basename "$e"); done
    done
    grep "^$name " runs/study/times.txt | tail -1 > study/results/$name/wall_time.txt
  fi
done
