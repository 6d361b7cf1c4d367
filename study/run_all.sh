#!/bin/bash
# Run the study's flagfiles one after another (nice 10), logging wall time to runs/study/times.txt; each run
# replaces its earlier results (--overwrite).
#   bash study/run_all.sh [name ...]   (default: every run of REPRODUCTION.md)
cd "$(dirname "$0")/.." || exit 1
export JAXNEURONS_DATA_DIR=${JAXNEURONS_DATA_DIR:-/work/shared/data}
mkdir -p runs/study
names=${@:-gemma_xnli gemma_mpararel gemma_mzsre_en2all gemma_mzsre_all2en smollm_xnli gemma_xnli_attr align_xnli \
  gemma_mpararel_iv smollm_mpararel smollm_mzsre_en2all smollm_mzsre_all2en smollm_mpararel_attr gemma_xnli_ig \
  smollm_xnli_full}
for name in $names; do
  if [ "$name" = align_xnli ]; then launcher=launchers/align.py; else launcher=launchers/analyze.py; fi
  t0=$(date +%s)
  nice -n 10 python $launcher --flagfile=launchers/configs/study_$name.flags --data_dir=$JAXNEURONS_DATA_DIR \
    --overwrite > runs/study_$name.log 2>&1
  rc=$?
  echo "$name rc=$rc wall_s=$(( $(date +%s) - t0 )) end=$(date +%T)" >> runs/study/times.txt
done
