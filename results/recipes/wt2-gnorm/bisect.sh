#!/bin/bash
# WikiText-2's logged gradient norm at step 0 is ~4e13 (every WT2 log; Shakespeare/SST-2 show 6-12).
# Which setting makes it? Two steps each, side by side; prints step 0 and 1 lines.
# Usage, from the repository root: bash results/recipes/wt2-gnorm/bisect.sh OUTDIR
O=${1:-runs/gnorm}; mkdir -p $O
B="config/wikitext2.py --max_iters=2 --warmup_iters=1 --log_interval=1 --eval_interval=100000 --save_checkpoints=false --overwrite=true"
i=0
# results/recipes/wt2reg: its 'baseline' (dropout 0.3 everywhere) logs 5.9 at step 0, 'awd' and 'txl'
# (word, embedding and output dropout) 3.5e13 and 5.0e13: so one of those three, on the GPU path
for v in "" "--word_dropout=0" "--out_dropout=0" "--embd_dropout=0.3" "--cuda_graph=false" \
         "--compile=false" "--compile=false --cuda_graph=false" "--ema_decay=0"; do
  i=$((i+1)); echo "$i: $v" >> $O/variants.txt
  timeout 120 python train.py $B $v --out_dir=runs/gn$i > $O/gn$i.log 2>&1 &
done
wait
for j in $(seq 1 $i); do echo "== $(sed -n ${j}p $O/variants.txt)"; grep -E "^step +[01]/" $O/gn$j.log; grep -i "error" $O/gn$j.log | head -2; done | tee $O/summary.txt
