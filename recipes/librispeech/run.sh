#!/usr/bin/env bash
# LibriSpeech recipe: the same stages on real LibriSpeech and on the offline synthetic corpus.
#
#   bash recipes/librispeech/run.sh                          synthetic corpus (16 h), all stages 0-5 (about 85 min)
#   bash recipes/librispeech/run.sh --set train.max_minutes=120 --stop-stage 4
#                                                            the bundled demo model (about 2 h 15 min)
#   bash recipes/librispeech/run.sh --data librispeech       real LibriSpeech (downloads; needs a network)
#   bash recipes/librispeech/run.sh --data mixed --real-dir ../shared/speech --init demo --config small_real --alpha 0.7
#                                                            real recordings + classic and neural TTS voices,
#                                                            mixed by --mix weights; fine-tunes the demo model
#   bash recipes/librispeech/run.sh --stage 1 --stop-stage 2 resume / re-run some stages
#
# Stages (each skips work already done, so a killed run resumes where it stopped):
#   0  data      synthesize the corpus, or download LibriSpeech (mixed: also the neural-voice corpora)
#   1  prepare   lhotse manifests (recordings, supervisions, cuts) per subset (mixed: also import the real
#                recordings' TSV as real_train/real_dev/real_test, and write the weighted `mixed` subset)
#   2  stats     global CMVN and the SentencePiece tokenizer from the training subset (skipped with --init:
#                the model's own are kept)
#   3  train     `asr train` (torchrun DDP when --ngpu/--nproc > 1); a killed run resumes from its checkpoint
#   4  export    average the checkpoints with the lowest dev CER and write a self-describing model directory
#   5  decode    every decoder on every test subset: WER, CER, real-time factor -> $exp/RESULTS.md,
#                per-utterance details and a WER-vs-speed plot in $exp/decode
#   6  lm        word 3-gram + lexicon (+ a neural token LM) from text without any dev/test sentence ($exp/lm),
#                weights tuned on dev, every decoder on the test subset with and without it -> $exp/RESULTS.md
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
[ -x "$repo/.venv/bin/asr" ] && export PATH="$repo/.venv/bin:$PATH"

stage=0
stop_stage=6
data=synthetic            # synthetic | librispeech
hours=16                  # synthetic corpus size (the tiny preset's training data)
speakers_per_voice=4      # synthetic speakers (rate x pitch settings) per TTS voice
seed=0
parts="train-clean-100 dev-clean test-clean"   # real LibriSpeech parts to download
work=$repo/data/work      # corpus, manifests, lang (git-ignored)
vocab_size=256           # pieces (unigram/bpe); ignored for char
model_type=char          # char for the tiny synthetic path; unigram 5000 for real LibriSpeech + base
config=tiny               # preset (tiny, base, large) or a YAML file
exp=                      # experiment folder (default: $work/exp_$data_$config)
nproc=1                   # processes for DDP training (torchrun)
device=cpu
average=4                 # checkpoints averaged at export
train_args=()             # extra `asr train --set key=value` overrides
lm_text=                  # LM text (default: the synthetic corpus's sources; LibriSpeech: its training transcripts)
lm_order=3
lm_neural_minutes=10        # training budget of the neural token LM in stage 6 (0: none)
real_dir=                 # --data mixed: folder with manifest.tsv of real recordings (e.g. ../shared/speech)
init=                     # start training from this model directory (or: demo)
alpha=1                   # with --init: export alpha x the run + (1 - alpha) x the init model (WiSE-FT; the demo: 0.7,
                          # chosen on dev with tools/interpolation_sweep.py)
neural_hours="hibari=2.5 kokoro=0.25"  # --data mixed: hours of each neural TTS engine (train only; kokoro runs at
                                       # about 1x real time per core)
# --data mixed: sampling weight per subset (copies per epoch; fractions sample). Chosen a priori, checked on real
# dev (docs/real-speech.md): real sentences dominate, words and wake-word phrases add voices and microphones,
# the classic corpus keeps what the model knew, the neural voices add natural prosody.
mix="real_train_sentence=3 real_train_word=0.5 real_train_phrase=0.3 train=0.35 hibari:train=1 kokoro:train=3"

while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage=$2; shift 2 ;;
    --stop-stage) stop_stage=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --hours) hours=$2; shift 2 ;;
    --speakers-per-voice) speakers_per_voice=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --parts) parts=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --vocab-size) vocab_size=$2; shift 2 ;;
    --model-type) model_type=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --exp) exp=$2; shift 2 ;;
    --nproc) nproc=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --average) average=$2; shift 2 ;;
    --set) train_args+=(--set "$2"); shift 2 ;;
    --lm-text) lm_text=$2; shift 2 ;;
    --lm-order) lm_order=$2; shift 2 ;;
    --lm-neural-minutes) lm_neural_minutes=$2; shift 2 ;;
    --real-dir) real_dir=$2; shift 2 ;;
    --init) init=$2; shift 2 ;;
    --alpha) alpha=$2; shift 2 ;;
    --mix) mix=$2; shift 2 ;;
    --neural-hours) neural_hours=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

case "$data" in
  synthetic) corpus=$work/synthetic; manifests=$work/manifests_synthetic; train_set=train ;;
  librispeech) corpus=$work/librispeech; manifests=$work/manifests_librispeech; train_set=train-clean-100 ;;
  mixed) corpus=$work/synthetic; manifests=$work/manifests_synthetic; train_set=mixed
         [ -f "$real_dir/manifest.tsv" ] || { echo "run.sh: --data mixed needs --real-dir DIR with manifest.tsv" >&2; exit 2; } ;;
  *) echo "run.sh: --data must be synthetic, librispeech or mixed" >&2; exit 2 ;;
esac
if [ "$model_type" = char ]; then lang=$manifests/lang_char; else lang=$manifests/lang_${model_type}${vocab_size}; fi
valid_set=dev; test_set=test
[ "$data" = librispeech ] && valid_set=dev-clean && test_set=test-clean
[ "$data" = mixed ] && valid_set=real_dev && test_set="real_test test"
exp=${exp:-$work/exp_${data}_$(basename "$config" .yaml)}
log() { printf '\033[1m[run.sh %s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*"; }
command -v asr >/dev/null || { echo "run.sh: 'asr' not found: run 'bash tools/setup.sh' first" >&2; exit 1; }

if [ "$stage" -le 0 ] && [ "$stop_stage" -ge 0 ]; then
  if [ "$data" != librispeech ]; then
    log "stage 0: synthesize $hours h into $corpus"
    asr data synth --out "$corpus" --hours "$hours" --seed "$seed" --speakers-per-voice "$speakers_per_voice"
  fi
  if [ "$data" = mixed ]; then
    for eh in $neural_hours; do
      engine=${eh%%=*}; h=${eh#*=}
      n=40; rmax=1.1; s=1; [ "$engine" = kokoro ] && n=2 && rmax=1.0 && s=2   # kokoro: 16 voice mixes x 2 speakers
      log "stage 0: $h h of the neural voice(s) of $engine into $work/neural_$engine (train only)"
      asr data synth --out "$work/neural_$engine" --engine "$engine" --train-only --hours "$h" --speakers-per-voice $n \
        --rate-min 0.75 --rate-max $rmax --augment 0.5 --seed $s --hold-out "$corpus" --no-progress
    done
  elif [ "$data" = librispeech ]; then
    log "stage 0: download LibriSpeech ($parts) into $corpus"
    mkdir -p "$corpus"
    dl=(); for p in $parts; do dl+=(--download "$p"); done
    asr data prepare --corpus-dir "$corpus" --out "$manifests" "${dl[@]}"
  fi
fi

if [ "$stage" -le 1 ] && [ "$stop_stage" -ge 1 ]; then
  log "stage 1: lhotse manifests in $manifests"
  if [ "$data" = librispeech ]; then
    sub=(); for p in $parts; do sub+=(--subset "$p"); done
    asr data prepare --corpus-dir "$corpus" --out "$manifests" "${sub[@]}"
  else
    asr data prepare --corpus-dir "$corpus" --out "$manifests"
  fi
  if [ "$data" = mixed ]; then
    for eh in $neural_hours; do
      engine=${eh%%=*}; asr data prepare --corpus-dir "$work/neural_$engine" --out "$work/manifests_$engine"
    done
    asr data import "$real_dir/manifest.tsv" --out "$manifests" --name real
    parts=(); for p in $mix; do case "$p" in *:*) parts+=("$work/manifests_$p") ;; *) parts+=("$p") ;; esac; done
    log "stage 1: training mix: ${parts[*]}"
    asr data mix "${parts[@]}" --manifests "$manifests" --out mixed
  fi
fi

if [ "$stage" -le 2 ] && [ "$stop_stage" -ge 2 ] && [ -z "$init" ]; then
  log "stage 2: CMVN and tokenizer ($model_type, $vocab_size pieces) in $lang"
  asr data stats --manifests "$manifests" --lang "$lang" --subset "$train_set" --vocab-size "$vocab_size" --model-type "$model_type"
fi
if [ "$stage" -le 3 ] && [ "$stop_stage" -ge 3 ]; then
  log "stage 3: train $config -> $exp ($nproc process(es), $device)"
  init_args=(--lang "$lang"); [ -n "$init" ] && init_args=(--init "$init")  # --init: the model's own tokenizer and CMVN
  [ "$data" = mixed ] && init_args+=(--curve-subset dev)  # forgetting: the synthetic dev curve beside real dev
  args=(train --config "$config" --manifests "$manifests" "${init_args[@]}" --exp "$exp" --train-subset "$train_set"
        --valid-subset "$valid_set" --device "$device" "${train_args[@]}")  # the curve is logged on dev only
  if [ "$nproc" -gt 1 ]; then
    python -m torch.distributed.run --standalone --nproc_per_node "$nproc" -m asr.apps.cli "${args[@]}"
  else
    asr "${args[@]}"
  fi
fi

if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
  log "stage 4: average the $average checkpoints with the lowest dev CER, export $exp/model"
  subs=(); for t in $valid_set $test_set; do subs+=(--subset "$t"); done
  wise=(); [ -n "$init" ] && [ "$alpha" != 1 ] && wise=(--interpolate "$init" --alpha "$alpha")
  asr export-model --exp "$exp" --out "$exp/model" --average "$average" --select best --manifests "$manifests" \
    "${subs[@]}" "${wise[@]}"
fi
if [ "$stage" -le 5 ] && [ "$stop_stage" -ge 5 ]; then
  {
    echo "# Results: $(basename "$exp")"
    echo
    echo "Model: $exp/model. Real-time factor: whole decode (fbank, encoder, search), 2 threads, full context."
  } > "$exp/RESULTS.md.tmp"
  for t in $test_set; do
    log "stage 5: decode $t with every decoder -> $exp/RESULTS.md"
    asr eval --model "$exp/model" --manifests "$manifests" --subset "$t" --decoder all --out-dir "$exp/decode" --threads 2
    { echo; cat "$exp/decode/$t.results.md"; echo
      echo "Per-utterance details: $exp/decode/${t}_DECODER.details.txt; plot: $exp/decode/$t.wer_vs_rtf.png"
    } >> "$exp/RESULTS.md.tmp"
  done
  mv "$exp/RESULTS.md.tmp" "$exp/RESULTS.md"
  cat "$exp/RESULTS.md"
fi
if [ "$stage" -le 6 ] && [ "$stop_stage" -ge 6 ]; then
  if [ -z "$lm_text" ]; then
    if [ "$data" = synthetic ]; then
      lm_text=default
    else
      lm_text=$work/lm_text_$train_set.txt
      python -c "import sys; from asr.data.prepare import load_cuts
with open(sys.argv[3], 'w') as f:
    for c in load_cuts(sys.argv[1], sys.argv[2]): f.write(' '.join(s.text for s in c.supervisions) + '\n')" \
        "$manifests" "$train_set" "$lm_text"
    fi
  fi
  log "stage 6: $lm_order-gram LM from $lm_text (minus $valid_set/$test_set sentences) -> $exp/lm; tune on $valid_set"
  neural=()
  [ "$lm_neural_minutes" = 0 ] || neural=(--neural --neural-minutes "$lm_neural_minutes")
  excl=(); for t in $valid_set $test_set; do excl+=(--exclude-subset "$t"); done
  asr lm train "$lm_text" --out "$exp/lm" --order "$lm_order" --exclude-manifests "$manifests" "${excl[@]}" \
    --model "$exp/model" "${neural[@]}"
  asr lm tune --lm "$exp/lm" --model "$exp/model" --manifests "$manifests" --subset "$valid_set" --limit 200
  sed '/^With the word/,$d' "$exp/RESULTS.md" > "$exp/RESULTS.md.tmp"  # a re-run replaces its own section
  echo "With the word $lm_order-gram (and the neural LM when trained; $exp/lm, weights tuned on $valid_set); METHOD+lm rows use it:" >> "$exp/RESULTS.md.tmp"
  for t in $test_set; do
    asr eval --model "$exp/model" --manifests "$manifests" --subset "$t" --decoder all --lm "$exp/lm" \
      --compare-lm --out-dir "$exp/decode_lm" --threads 2
    { echo; cat "$exp/decode_lm/$t.results.md"; } >> "$exp/RESULTS.md.tmp"
    cat "$exp/decode_lm/$t.results.md"
  done
  mv "$exp/RESULTS.md.tmp" "$exp/RESULTS.md"
fi
log "done (stages $stage-$stop_stage)"
