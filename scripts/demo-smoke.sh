#!/usr/bin/env bash
# Runs the README's first command (`cargo run --all-features --example demo`) the way a newcomer does:
# signs in as a demo user it prints, generates tokens through the token page's API the
# way the page does, calls the demo's API with them, and revokes one; then does the same
# through the command line the demo embeds (`demo tokens …`), and sends the demo's leak
# endpoint a report signed the way GitHub signs one (openssl plays GitHub).
set -euo pipefail
cd "$(dirname "$0")/.."

port="${DEMO_PORT:-3917}"
log="$(mktemp)"
jar="$(mktemp)"
db="$(mktemp -u --suffix=.sqlite3)"
keys="$(mktemp -d)"
cleanup() {
    [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -f "$log" "$jar" "$db" "$db-wal" "$db-shm"
    rm -rf "$keys"
}
trap cleanup EXIT

command -v openssl >/dev/null || { echo "demo smoke: openssl signs the leak reports: apt-get install openssl"; exit 1; }
# Plays GitHub for the leak endpoint: a P-256 key whose public half the demo trusts.
openssl ecparam -name prime256v1 -genkey -noout -out "$keys/github.pem" 2>/dev/null
openssl ec -in "$keys/github.pem" -pubout -out "$keys/github.pub.pem" 2>/dev/null

cargo build --quiet --all-features --example demo
PORT="$port" TOWER_PAT_DEMO_DB="$db" TOWER_PAT_DEMO_SCANNING_KEY="$keys/github.pub.pem" \
    TOWER_PAT_DEMO_SCANNING_KEY_ID=smoke-key \
    cargo run --quiet --all-features --example demo >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 120); do
    grep -q '^Listening on' "$log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "demo smoke: the demo exited"; exit 1; }
    sleep 0.5
done
grep -q '^Listening on' "$log" || { cat "$log"; echo "demo smoke: the demo did not start"; exit 1; }

base="http://127.0.0.1:$port"
page="$base/settings/tokens"
failed=0
check() {
    local want="$1" got="$2" what="$3"
    printf '%s %s %s\n' "$got" "$what" "$( [ "$got" = "$want" ] && echo ok || echo "FAILED (want $want)")"
    [ "$got" = "$want" ] || failed=1
}

# The first demo user the demo printed: "    alice    password: wonderland".
read -r user password < <(grep -E '^    [a-z]+ +password: ' "$log" | head -n 1 | awk '{ print $1, $3 }')
[ -n "${password:-}" ] || { cat "$log"; echo "demo smoke: no demo user printed"; exit 1; }

check 303 "$(curl -s -o /dev/null -w '%{http_code}' -c "$jar" -b "$jar" \
    --data-urlencode "username=$user" --data-urlencode "password=$password" "$base/login")" \
    "sign in as $user"
check 200 "$(curl -s -o /dev/null -w '%{http_code}' -b "$jar" "$page")" "GET the token page"
check 200 "$(curl -s -o /dev/null -w '%{http_code}' -b "$jar" "$page/page.js")" "GET its script"

# What the page sends to generate a token: JSON, from its own origin, with the session.
created=""
generate() {
    local body
    body="$(curl -s -b "$jar" -H "Origin: $base" -H 'Content-Type: application/json' \
        -d "$1" -w '\n%{http_code}' "$page/tokens")"
    check 201 "$(tail -n 1 <<<"$body")" "POST $page/tokens $1"
    created="$(head -n -1 <<<"$body")"
}
plaintext() { sed -nE 's/.*"plaintext":"(pat_[A-Za-z0-9_]+)".*/\1/p' <<<"$created"; }
token_id() { sed -nE 's/.*"token":\{"id":"([0-9a-f]{32})".*/\1/p' <<<"$created"; }

generate '{"name":"smoke: orders","scopes":["orders:read","orders:create"],"expires_in_days":30}'
orders="$(plaintext)"
orders_id="$(token_id)"
generate '{"name":"smoke: status","scopes":["orders:read:status"],"expires_in_days":90}'
status="$(plaintext)"
[ -n "$orders" ] && [ -n "$status" ] && [ -n "$orders_id" ] || { echo "demo smoke: no token in the answers"; exit 1; }

api() {
    local method="$1" path="$2" token="$3"
    if [ -n "$token" ]; then
        curl -s -o /dev/null -w '%{http_code}' -X "$method" -H "Authorization: Bearer $token" "$base$path"
    else
        curl -s -o /dev/null -w '%{http_code}' -X "$method" "$base$path"
    fi
}
check 200 "$(api GET /api/orders "$orders")" "GET /api/orders (orders:read + orders:create)"
check 201 "$(api POST /api/orders "$orders")" "POST /api/orders (orders:create)"
check 403 "$(api GET /api/user "$orders")" "GET /api/user without user:read"
check 200 "$(api GET /api/orders/1001/status "$status")" "GET /api/orders/1001/status (orders:read:status)"
check 403 "$(api GET /api/orders "$status")" "GET /api/orders with orders:read:status only"
check 401 "$(api GET /api/orders pat_made_up)" "GET /api/orders with a made-up token"
check 401 "$(api GET /api/orders '')" "GET /api/orders without a token"
challenge="$(curl -s -o /dev/null -D - -H "Authorization: Bearer $status" "$base/api/orders" | tr -d '\r' | grep -i '^www-authenticate:' || true)"
case "$challenge" in
    *'error="insufficient_scope"'*) echo "    challenge: ${challenge#*: }" ;;
    *) echo "FAILED: no insufficient_scope challenge: $challenge"; failed=1 ;;
esac

# The token page's API takes no token, and no other site's request.
check 403 "$(api GET /settings/tokens/tokens "$orders")" "GET $page/tokens with a token instead of a session"
check 403 "$(curl -s -o /dev/null -w '%{http_code}' -b "$jar" -H 'Origin: http://evil.example' \
    -H 'Content-Type: application/json' -d '{"name":"csrf"}' "$page/tokens")" "POST $page/tokens from another site"
check 415 "$(curl -s -o /dev/null -w '%{http_code}' -b "$jar" -H "Origin: $base" \
    -d 'name=form' "$page/tokens")" "POST $page/tokens as a form"

# Revoked from the page's API: the token stops working at once.
check 204 "$(curl -s -o /dev/null -w '%{http_code}' -b "$jar" -H "Origin: $base" -X DELETE \
    "$page/tokens/$orders_id")" "DELETE $page/tokens/{id}"
check 401 "$(api GET /api/orders "$orders")" "GET /api/orders with the revoked token"
check 200 "$(api GET /api/orders/1001/status "$status")" "GET /api/orders/1001/status with the other token"

# The command line the demo embeds, against the same database as the running server:
# create → use → list → revoke → refused, and the failures an operator meets.
tokens() { TOWER_PAT_DEMO_DB="$db" cargo run --quiet --all-features --example demo -- tokens "$@"; }
cli_token="$(tokens create --user 1 --name 'smoke: cli' --scopes user:read --expires-in 1d)"
case "$cli_token" in
    pat_*) echo "    tokens create: a token, and nothing else on stdout" ;;
    *) echo "FAILED: tokens create printed: $cli_token"; failed=1 ;;
esac
check 200 "$(api GET /api/user "$cli_token")" "GET /api/user with the token from tokens create"
listed="$(tokens list --user 1)"
grep -q 'smoke: cli' <<<"$listed" && ! grep -q "$cli_token" <<<"$listed" &&
    echo "    tokens list: the token, never its secret" ||
    { echo "FAILED: tokens list: $listed"; failed=1; }
cli_id="$(tokens list --user 1 | awk '/smoke: cli/ { print $1 }')"
check "revoked token $cli_id" "$(tokens revoke --user 1 --id "$cli_id")" "(tokens revoke --user 1 --id …)"
check 401 "$(api GET /api/user "$cli_token")" "GET /api/user with the token revoked by the command line"
check 1 "$(tokens create --user 2 --name x --scopes orders:nope 2>/dev/null; echo $?)" "exit status of tokens create with an undefined scope"
check "pruned 0 tokens" "$(tokens prune --older-than 30d)" "(tokens prune --older-than 30d)"

# A leak report signed as GitHub signs one (ECDSA P-256 over the raw body, DER in base64):
# the token it names is revoked, and a report signed by another key revokes nothing.
leaked="$(tokens create --user 2 --name 'smoke: leaked')"
check 200 "$(api GET /api/user "$leaked")" "GET /api/user with a token about to leak"
printf '[{"token":"%s","type":"demo_pat","url":"https://github.com/octo/app/blob/1/.env","source":"content"}]' \
    "$leaked" >"$keys/report.json"
report() {
    curl -s -w '\n%{http_code}' -H 'Content-Type: application/json' \
        -H 'Github-Public-Key-Identifier: smoke-key' \
        -H "Github-Public-Key-Signature: $(openssl dgst -sha256 -sign "$1" "$keys/report.json" | base64 -w0)" \
        --data-binary @"$keys/report.json" "$base/github/secret-scanning"
}
openssl ecparam -name prime256v1 -genkey -noout -out "$keys/stranger.pem" 2>/dev/null
check 403 "$(report "$keys/stranger.pem" | tail -n 1)" "POST /github/secret-scanning signed by another key"
check 200 "$(api GET /api/user "$leaked")" "GET /api/user with that token, still good"
answer="$(report "$keys/github.pem")"
check 200 "$(tail -n 1 <<<"$answer")" "POST /github/secret-scanning signed by the demo's key"
grep -q '"label":"true_positive"' <<<"$answer" && echo "    feedback: true_positive" ||
    { echo "FAILED: feedback: $answer"; failed=1; }
check 401 "$(api GET /api/user "$leaked")" "GET /api/user with the leaked token"

if [ "$failed" -ne 0 ]; then
    echo "demo smoke: FAILED"
    cat "$log"
    exit 1
fi
echo "demo smoke: passed"
