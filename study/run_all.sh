#!/bin/bash
# Run the study's flagfiles (launchers/configs/study_<name>.flags) one after another (nice 10), each replacing
# its earlier results (--overwrite); log wall time to runs/study/times.txt; copy each finished run's small
# results (*.json, flags.txt, report.md) to study/results/<name>/, where study/make_tables.py reads them.
#   bash study/run_all.sh [name ...]   (default: every run of REPRODUCTION.md, in this order)
#   python study/make_tables.py --write
cd "$(dirname "$0")/.." || exit 1
export JAXNEURONS_DATA_DIR=${JAXNEURONS_DATA_DIR:-../shared/data}
mkdir -p runs/study study/results
names=${@:-gemma_xnli gemma_xnli_cut gemma_mpararel gemma_mpararel_answer smollm_xnli smollm_xnli_cut \
  smollm_mpararel smollm_mpararel_answer gemma_mpararel_iv gemma_xnli_attr gemma_xnli_13 gemma_xnli_all \
  gemma_mpararel_all gemma_mzsre_en2all gemma_mzsre_all2en smollm_mpararel_attr gemma_xnli_ig smollm_mzsre_en2all \
  smollm_mzsre_all2en alignment_gradients}
for name in $names; do
  t0=$(date +%s)
  if [ "$name" = alignment_gradients ]; then
    mkdir -p runs/study/$name
    nice -n 10 python study/alignment_gradients.py --output=runs/study/$name/alignment_gradients.json \
      > runs/study_$name.log 2>&1
  else
    nice -n 10 python launchers/analyze.py --flagfile=launchers/configs/study_$name.flags \
      --data_dir="$JAXNEURONS_DATA_DIR" --overwrite --noprogress > runs/study_$name.log 2>&1
  fi
  rc=$?
  echo "$name rc=$rc wall_s=$(( $(date +%s) - t0 )) end=$(date +%T)" >> runs/study/times.txt
  if [ $rc = 0 ]; then
    rm -rf study/results/$name && mkdir -p study/results/$name
    for f in runs/study/$name/*.json runs/study/$name/flags.txt runs/study/$name/report.md; do
      [ -f "$f" ] && cp "$f" study/results/$name/
    done
    grep "^$name " runs/study/times.txt | tail -1 > study/results/$name/wall_time.txt
    [ -f runs/study/$name/examples.npz ] && python study/make_tables.py --extract runs/study/$name study/results/$name
  fi
done
