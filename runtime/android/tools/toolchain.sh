#!/usr/bin/env bash
# Installs a JVM-only Kotlin toolchain into <repo root>/.tools/ without Gradle/Maven:
#   .tools/kotlinc/         Kotlin compiler distribution (npm package kotlin-compiler)
#   .tools/junit/junit4.jar JUnit 4 (Debian package junit4)
#   .tools/junit/hamcrest.jar hamcrest (Debian package libhamcrest-java)
# Idempotent: a stamp file makes a rerun a no-op. Each failure prints one line to stderr.
set -euo pipefail

KOTLIN_VERSION="2.4.20"
JUNIT_DEBS="junit4 libhamcrest-java"
MIN_JAVA=17

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../../.." && pwd)"
TOOLS="$REPO_ROOT/.tools"
STAMP="$TOOLS/.toolchain-ok"
STAMP_CONTENT="kotlin-compiler=$KOTLIN_VERSION junit-debs=$JUNIT_DEBS"

die() { echo "toolchain: $*" >&2; exit 1; }

# --- java >= 17 (checked every run; it is cheap and the JDK may change) ---
command -v java >/dev/null 2>&1 \
  || die "java not found; install a JDK >= $MIN_JAVA (e.g. apt-get install openjdk-17-jdk-headless)"
java_ver="$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)"
java_major="${java_ver%%.*}"
[[ "$java_major" == 1 ]] && java_major="$(echo "$java_ver" | cut -d. -f2)"
[[ "$java_major" =~ ^[0-9]+$ ]] \
  || die "could not parse 'java -version' output ('$java_ver'); install a JDK >= $MIN_JAVA"
(( java_major >= MIN_JAVA )) \
  || die "java $java_ver is too old; need >= $MIN_JAVA (put a JDK $MIN_JAVA+ first on PATH)"

# --- fast path ---
installed_ok() {
  [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_CONTENT" \
     && -x "$TOOLS/kotlinc/bin/kotlinc" && -f "$TOOLS/kotlinc/lib/kotlin-stdlib.jar" \
     && -f "$TOOLS/junit/junit4.jar" && -f "$TOOLS/junit/hamcrest.jar" ]]
}
if installed_ok; then exit 0; fi

mkdir -p "$TOOLS" || die "cannot create $TOOLS; check permissions on $REPO_ROOT"
# Serialize concurrent installs (e.g. parallel CI steps sharing a checkout).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$TOOLS/.lock"
  flock 9
  if installed_ok; then exit 0; fi  # another process finished the install meanwhile
fi
rm -f "$STAMP"
T="$(mktemp -d "$TOOLS/.tmp.XXXXXX")" || die "cannot create a temp dir in $TOOLS; check permissions/disk space"
trap 'rm -rf "$T"' EXIT

# --- Kotlin compiler from npm ---
npm_err() {  # the most telling line of npm's stderr
  { grep -E '^npm (error|ERR!)' "$T/npm.err" | grep -vE ' (code|syscall|errno) |complete log|^npm (error|ERR!) *$' \
      || cat "$T/npm.err"; } 2>/dev/null | head -n1
}
install_kotlinc() {
  command -v npm >/dev/null 2>&1 \
    || die "npm not found; install Node.js/npm (needed to fetch kotlin-compiler)"
  mkdir -p "$T/npm" "$T/npm-cache" "$T/npm-logs" "$T/kx"
  (cd "$T/npm" && npm pack "kotlin-compiler@$KOTLIN_VERSION" --loglevel=error \
      --cache "$T/npm-cache" --logs-dir "$T/npm-logs" >"$T/npm.out" 2>"$T/npm.err") \
    || die "npm pack kotlin-compiler@$KOTLIN_VERSION failed ($(npm_err)); check npm registry access/proxy settings"
  local tgz
  tgz="$(find "$T/npm" -maxdepth 1 -name '*.tgz' | head -n1)"
  [[ -n "$tgz" ]] || die "npm pack produced no tarball for kotlin-compiler@$KOTLIN_VERSION; check npm registry access"
  tar -xzf "$tgz" -C "$T/kx" \
    || die "cannot extract $tgz; check disk space in $TOOLS"
  local kc
  kc="$(find "$T/kx" -type f -path '*/bin/kotlinc' | head -n1)"
  [[ -n "$kc" ]] || die "kotlin-compiler@$KOTLIN_VERSION tarball has no bin/kotlinc; the npm package layout changed, update toolchain.sh"
  local home
  home="$(dirname "$(dirname "$kc")")"
  [[ -f "$home/lib/kotlin-stdlib.jar" ]] \
    || die "kotlin-compiler@$KOTLIN_VERSION has no lib/kotlin-stdlib.jar next to bin/kotlinc; update toolchain.sh"
  chmod +x "$home"/bin/*
  "$home/bin/kotlinc" -version >/dev/null 2>&1 \
    || die "the downloaded kotlinc does not run (try '$home/bin/kotlinc -version'); check the java install"
  rm -rf "$TOOLS/kotlinc"
  mv "$home" "$TOOLS/kotlinc" || die "cannot move kotlinc into $TOOLS/kotlinc; check permissions"
}

# --- JUnit 4 + hamcrest from Debian ---
install_junit() {
  { command -v apt-get && command -v dpkg; } >/dev/null 2>&1 \
    || die "apt-get/dpkg not found; this script needs a Debian/Ubuntu host to fetch junit4 and libhamcrest-java"
  local d="$T/debs" me
  me="$(id -un)"
  mkdir -p "$d"
  # shellcheck disable=SC2086
  if ! (cd "$d" && apt-get -q -o APT::Sandbox::User="$me" download $JUNIT_DEBS >"$T/apt.out" 2>&1); then
    # Package lists missing/stale: use private lists (no root needed).
    mkdir -p "$T/lists/partial" "$T/cache/archives/partial"
    local aopts=(-o Dir::State::Lists="$T/lists" -o Dir::Cache="$T/cache" -o APT::Sandbox::User="$me")
    apt-get -q "${aopts[@]}" update >"$T/apt-update.out" 2>&1 \
      || die "apt-get update (private lists) failed ($(grep -m1 -E '^(E|W):' "$T/apt-update.out" || tail -n1 "$T/apt-update.out")); check access to the Debian mirrors"
    rm -f "$d"/*.deb
    # shellcheck disable=SC2086
    (cd "$d" && apt-get -q "${aopts[@]}" download $JUNIT_DEBS >"$T/apt.out" 2>&1) \
      || die "apt-get download $JUNIT_DEBS failed ($(grep -m1 'Failed to fetch' "$T/apt-update.out" || grep -m1 '^E:' "$T/apt.out" || tail -n1 "$T/apt.out")); check access to the Debian mirrors (apt sources/proxy)"
  fi
  local deb
  mkdir -p "$T/debx"
  for deb in "$d"/*.deb; do
    [[ -f "$deb" ]] || die "apt-get download produced no .deb files for $JUNIT_DEBS; check apt sources"
    dpkg -x "$deb" "$T/debx" || die "dpkg -x $(basename "$deb") failed; the download may be corrupt, rerun"
  done
  mkdir -p "$T/junit"
  cp -L "$T/debx/usr/share/java/junit4.jar" "$T/junit/junit4.jar" 2>/dev/null \
    || die "junit4.jar not found in the junit4 .deb (usr/share/java/junit4.jar); update toolchain.sh"
  cp -L "$T/debx/usr/share/java/hamcrest.jar" "$T/junit/hamcrest.jar" 2>/dev/null \
    || die "hamcrest.jar not found in the libhamcrest-java .deb (usr/share/java/hamcrest.jar); update toolchain.sh"
  rm -rf "$TOOLS/junit"
  mv "$T/junit" "$TOOLS/junit" || die "cannot move junit jars into $TOOLS/junit; check permissions"
}

start=$SECONDS
if [[ -x "$TOOLS/kotlinc/bin/kotlinc" && -f "$TOOLS/kotlinc/build.txt" ]] \
   && grep -q "^$KOTLIN_VERSION" "$TOOLS/kotlinc/build.txt" 2>/dev/null; then
  :  # right kotlinc already in place
else
  install_kotlinc
fi
if [[ ! -f "$TOOLS/junit/junit4.jar" || ! -f "$TOOLS/junit/hamcrest.jar" ]]; then
  install_junit
fi

{ printf '%s' "$STAMP_CONTENT" >"$STAMP.tmp" && mv "$STAMP.tmp" "$STAMP"; } \
  || die "cannot write $STAMP; check permissions"
echo "toolchain: installed kotlinc $KOTLIN_VERSION + junit4/hamcrest into $TOOLS ($((SECONDS - start))s)"
