#!/usr/bin/env bash
# Interop: the Authorization Code examples (auth_code_ureq, auth_code_reqwest) and `tokenctl
# login` against a real OAuth server, panva/oidc-provider on 127.0.0.1 (interop/oidc/README.md).
# Needs node >= 20 and npm (the registry once, for `npm ci`); no network beyond loopback after.
#
#   .ci/interop.sh                    # TOKENCTL=/path/to/tokenctl to use another binary
#
# Every failure says what failed and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

OIDC=interop/oidc
STEP_TIMEOUT=60 # seconds, for each example or login run (timeout(1) kills it after that)
tmp=$(mktemp -d)
pids=()

step() { printf '\n==> %s\n' "$*"; }
fail() {
  printf '\nFAIL: %s\n' "$*" >&2
  exit 1
}
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The last lines a process wrote to `file`, indented, for a failure message.
tail_of() { sed -e 's/^/    /' "$1" | tail -n 15; }

# Prints the first line of `file` matching `pattern` once there is one; fails if process `pid`
# exits first or nothing comes within 30 s.
wait_for_line() {
  local file=$1 pattern=$2 pid=$3 what=$4 line i
  for ((i = 0; i < 300; i++)); do
    line=$(grep -m1 -E "$pattern" "$file" 2>/dev/null || true)
    if [[ -n $line ]]; then
      printf '%s\n' "$line"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      fail "$what exited before printing a line matching /$pattern/; its output:
$(tail_of "$file")"
    fi
    sleep 0.1
  done
  fail "$what printed no line matching /$pattern/ within 30 s"
}

# Waits for process `pid`; fails, with its stderr, unless it exits 0.
expect_success() {
  local pid=$1 what=$2 stderr=$3 rc=0
  wait "$pid" || rc=$?
  if ((rc == 124)); then
    fail "$what timed out after ${STEP_TIMEOUT} s; stderr:
$(tail_of "$stderr")"
  elif ((rc != 0)); then
    fail "$what exited $rc; stderr:
$(tail_of "$stderr")"
  fi
}

# Starts server.mjs (with any VAR=value arguments in its environment) and sets `meta` to its
# JSON line.
start_server() {
  local name=$1
  shift
  env "$@" node "$OIDC/server.mjs" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  local pid=$!
  pids+=("$pid")
  meta=$(wait_for_line "$tmp/$name.out" '^\{' "$pid" "server.mjs ($name)")
}

# A field of the server's JSON line.
field() {
  node -e 'const v = JSON.parse(process.argv[1])[process.argv[2]];
    if (typeof v !== "string" || v === "") process.exit(1);
    process.stdout.write(v);' "$meta" "$1" || fail "server.mjs's JSON line has no \"$1\": $meta"
}

step "npm ci (oidc-provider, pinned in $OIDC/package-lock.json)"
npm ci --prefix "$OIDC" --no-audit --no-fund --loglevel=error >/dev/null ||
  fail "npm ci --prefix $OIDC"

step "the harness's self-test"
node "$OIDC/selftest.mjs" || fail "node $OIDC/selftest.mjs"

step "build the examples"
cargo build -q -p examples --example auth_code_ureq --example auth_code_reqwest ||
  fail "cargo build -p examples"
target_dir=$(cargo metadata --format-version 1 --no-deps |
  node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0, "utf8")).target_directory)') ||
  fail "cargo metadata (for the target directory)"

step "start oidc-provider (standard rules: refresh tokens need offline_access + prompt=consent)"
start_server server
issuer=$(field issuer)
authorize_url=$(field authorization_endpoint)
token_url=$(field token_endpoint)
client_id=$(field client_id)
redirect_uri=$(field redirect_uri) # http://127.0.0.1/callback: any port on it is accepted
api_resource=$(field api_resource)
echo "issuer $issuer, client $client_id"

# Runs example `name` with the server's settings, hands its authorization URL to browser.mjs
# (--print-only: nobody listens on the redirect URI; the example reads it from stdin), feeds the
# redirect back, and checks it got an access token and that the refresh token works.
run_example() {
  local name=$1 redirect=$2 scope=$3 params=$4
  runs=$((${runs:-0} + 1))
  local dir="$tmp/$name-$runs"
  step "$name: scope \"$scope\", parameters \"$params\", redirect URI $redirect"
  mkdir "$dir"
  mkfifo "$dir/stdin"
  AUTHORIZE_URL=$authorize_url TOKEN_URL=$token_url CLIENT_ID=$client_id REDIRECT_URI=$redirect \
    SCOPE=$scope AUTHORIZE_PARAMS=$params ISSUER=$issuer \
    timeout "$STEP_TIMEOUT" "$target_dir/debug/examples/$name" \
    <"$dir/stdin" >"$dir/out" 2>"$dir/err" &
  local pid=$! to_example url location
  pids+=("$pid")
  exec {to_example}>"$dir/stdin"
  url=$(wait_for_line "$dir/out" '^http' "$pid" "$name")
  location=$(node "$OIDC/browser.mjs" --print-only --timeout 20 "$url" 2>"$dir/browser.err") ||
    fail "browser.mjs on $name's authorization URL:
$(tail_of "$dir/browser.err")
  server.mjs stderr:
$(tail_of "$tmp/server.err")"
  printf '%s\n' "$location" >&"$to_example"
  exec {to_example}>&-
  expect_success "$pid" "$name" "$dir/err"
  grep -qE '^ACCESS_TOKEN_OK [1-9][0-9]*$' "$dir/out" ||
    fail "$name printed no ACCESS_TOKEN_OK line; its output:
$(tail_of "$dir/out")"
  if [[ $params == *prompt=consent* ]]; then
    grep -qE '^REFRESH_TOKEN_OK [1-9][0-9]*$' "$dir/out" ||
      fail "$name got no working refresh token (offline_access + prompt=consent were sent); its output:
$(tail_of "$dir/out")"
  else
    # Without prompt=consent the server issues no refresh token (RFC 6749 §5.1 allows it): the
    # access token still comes, and renewing needs the user again.
    grep -qE '^REFRESH_TOKEN_NONE' "$dir/out" ||
      fail "$name: expected no refresh token without prompt=consent; its output:
$(tail_of "$dir/out")"
  fi
  grep -E '^(ACCESS|REFRESH)_TOKEN_' "$dir/out" | sed -e 's/^/  /'
}

# Like the self-test: openid (an opaque access token), and a resource indicator (a JWT for
# urn:interop:api) on a loopback port that was not registered (RFC 8252 §7.3).
run_example auth_code_ureq "$redirect_uri" "openid offline_access" "prompt=consent"
run_example auth_code_reqwest "http://127.0.0.1:49217/callback" "offline_access api:read" \
  "prompt=consent resource=$api_resource"
# The standard rules without prompt=consent: an access token and no refresh token.
run_example auth_code_ureq "http://127.0.0.1:49218/callback" "openid offline_access" ""

step "tokenctl login"
tokenctl=${TOKENCTL:-}
if [[ -z $tokenctl ]]; then
  cargo build -q -p tokenctl || fail "cargo build -p tokenctl"
  tokenctl=$target_dir/debug/tokenctl
fi
"$tokenctl" login --help >/dev/null 2>&1 || fail "$tokenctl login --help"
dir=$tmp/tokenctl
mkdir "$dir"
# The standard server; prompt=consent so that it issues a refresh token too.
timeout "$STEP_TIMEOUT" "$tokenctl" login --no-browser --provider generic \
  --authorize-url "$authorize_url" --token-url "$token_url" --client-id "$client_id" \
  --scope "openid offline_access" --authorize-param prompt=consent --json \
  >"$dir/out" 2>"$dir/err" &
pid=$!
pids+=("$pid")
url=$(wait_for_line "$dir/err" '^http' "$pid" "tokenctl login (on stderr)")
# Default mode: browser.mjs GETs the redirect itself, so tokenctl's loopback listener gets it.
node "$OIDC/browser.mjs" --timeout 20 "$url" >"$dir/browser.out" 2>"$dir/browser.err" ||
  fail "browser.mjs on tokenctl login's authorization URL:
$(tail_of "$dir/browser.err")
server.mjs stderr:
$(tail_of "$tmp/server.err")"
expect_success "$pid" "tokenctl login" "$dir/err"
keys=$(node -e 'const j = JSON.parse(require("fs").readFileSync(0, "utf8"));
  if (j === null || typeof j !== "object") throw new Error("not a JSON object");
  process.stdout.write(Object.keys(j).join(" "));' <"$dir/out" 2>"$dir/json.err") ||
  fail "tokenctl login --json printed no JSON object: $(tail_of "$dir/json.err")"
echo "  tokenctl login exited 0; JSON summary with: $keys"

step "interop: all passed"
