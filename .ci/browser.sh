#!/usr/bin/env bash
# The console in real headless Chromium (Debian's `chromium`) driven by playwright-core from npm,
# every page checked with axe-core (console-tests/console.test.mjs); and passkeys registered and
# used through a CDP virtual authenticator (console-tests/passkeys.test.mjs). Installs what it needs;
# never lets a tool download a browser of its own. SCREENSHOTS=docs/console refreshes the
# screenshots docs/admin.md shows.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [ ! -d console-tests/node_modules/playwright-core ] || [ ! -d console-tests/node_modules/axe-core ]; then
  npm ci --prefix console-tests --no-audit --no-fund --loglevel=error
fi
if [ -z "${BIN:-}" ]; then
  cargo build --locked --bin latchkey
  BIN=target/debug/latchkey
fi
BIN="$BIN" timeout 300 node console-tests/console.test.mjs
BIN="$BIN" timeout 120 node console-tests/passkeys.test.mjs
