#!/usr/bin/env bash
# The README's main job, in a few minutes on 2 CPU cores:
#   0. transcribe the bundled real recordings (data/samples: LJ Speech, public domain) with the default model
#      (Whisper tiny.en, imported; its decoder joint with whisper-tiny-en-ctc's CTC) and score them; then with whisper-tiny-en-ctc (its encoder, our CTC head)
#   then, on the bundled demo model (the toolkit's own Conformer, trained here):
#   1. synthesize the synthetic recipe's test subset (unseen voices; identical to the full recipe's)
#   2. lhotse manifests
#   3. transcribe a few of its recordings into txt/json/srt/vtt with word timestamps
#   4. build a word 3-gram LM from the corpus's text sources minus every test sentence (about 15 s)
#   5. score every decoder, with and without the LM, on N test utterances spread over every test voice; print
#      the WER / RTF table
#
#   bash recipes/librispeech/demo.sh [--limit N] [--work DIR]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
[ -x "$repo/.venv/bin/asr" ] && export PATH="$repo/.venv/bin:$PATH"
limit=200
work=$repo/data/work
while [ $# -gt 0 ]; do
  case "$1" in
    --limit) limit=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
command -v asr >/dev/null || { echo "demo.sh: 'asr' not found: run 'bash tools/setup.sh' first" >&2; exit 1; }
log() { printf '\033[1m[demo %s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*"; }

corpus=$work/synthetic; manifests=$work/manifests_synthetic; out=$work/demo
log "0/5 the default model on real speech: data/samples -> $out/samples"
asr transcribe "$repo"/data/samples/*.flac --format txt --format srt --output-dir "$out/samples" --no-progress
tail -n +2 "$repo/data/samples/samples.tsv" | while IFS=$'\t' read -r path ref; do
  printf '  %s\n    ref: %s\n    hyp: %s\n' "$path" "$ref" "$(cat "$out/samples/${path%.flac}.txt")"
done
asr eval --refs "$repo/data/samples/samples.tsv" --out-dir "$out/samples/eval" | tail -n 3
log "0/5 the same recordings, Whisper's encoder with the toolkit's streaming CTC head (whisper-tiny-en-ctc): NAR"
asr eval --model whisper-tiny-en-ctc --refs "$repo/data/samples/samples.tsv" --decoder ctc_greedy \
  --out-dir "$out/samples/eval-ctc" | tail -n 1
log "1/5 synthesize the test subset (seed 0, the recipe's plan) into $corpus"
asr data synth --out "$corpus" --hours 16 --speakers-per-voice 4 --seed 0 --subset test --no-progress
log "2/5 manifests in $manifests"
asr data prepare --corpus-dir "$corpus" --out "$manifests"
log "3/5 transcribe 3 recordings -> $out/transcripts"
mapfile -t files < <(find "$corpus/test" -name '*.flac' | sort | head -n 3)
asr transcribe "${files[@]}" --model demo --decoder attention_rescoring --format txt --format json --format srt \
  --format vtt --output-dir "$out/transcripts" --no-progress
for f in "${files[@]}"; do
  id=$(basename "$f" .flac)
  printf '  %s\n    ref: %s\n    hyp: %s\n' "$id" "$(grep "^$id " "$(dirname "$f")"/*.trans.txt | cut -d' ' -f2-)" "$(cat "$out/transcripts/$id.txt")"
done
log "4/5 word 3-gram LM without any test sentence -> $out/lm"
[ -f "$out/lm/lm.arpa" ] || asr lm train default --out "$out/lm" --order 3 --exclude-manifests "$manifests" \
  --exclude-subset test --model demo > /dev/null
log "5/5 every decoder on $limit test utterances spread over the test voices (2 threads)"
asr eval --model demo --manifests "$manifests" --subset test --limit "$limit" --spread --decoder all --lm "$out/lm" --compare-lm \
  --out-dir "$out/eval" --threads 2
log "done: transcripts in $out/transcripts, per-utterance details and the WER-vs-speed plot in $out/eval"
