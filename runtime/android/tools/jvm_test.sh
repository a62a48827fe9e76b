#!/usr/bin/env bash
# Compiles runtime/android's plain-Kotlin sources and JUnit 4 tests on the JVM
# (no Gradle/Maven, no Android SDK) and runs the tests.
#
# Usage: runtime/android/tools/jvm_test.sh [--golden DIR] [--compile-only] [JUnit class names...]
#   --golden DIR   passed to the tests as -Dmobilevision.golden=DIR
#   --compile-only compile (main into build/jvm/main, tests into build/jvm/test) and stop
#   class names    default: every compiled top-level class under the test
#                  output whose simple name ends in "Test"
# Main sources under .../dev/mobilevision/runtime/android/ are skipped (they
# need the Android SDK and LiteRT). Exits with JUnit's status.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MODULE="$(cd "$SCRIPT_DIR/.." && pwd)"            # runtime/android
REPO_ROOT="$(cd "$MODULE/../.." && pwd)"
TOOLS="$REPO_ROOT/.tools"
KOTLINC="$TOOLS/kotlinc/bin/kotlinc"
STDLIB="$TOOLS/kotlinc/lib/kotlin-stdlib.jar"
JUNIT_CP="$TOOLS/junit/junit4.jar:$TOOLS/junit/hamcrest.jar"
MAIN_SRC="$MODULE/src/main/kotlin"
TEST_SRC="$MODULE/src/test/kotlin"
ANDROID_ONLY="$MAIN_SRC/dev/mobilevision/runtime/android"
BUILD="$MODULE/build/jvm"
MAIN_OUT="$BUILD/main"
TEST_OUT="$BUILD/test"

die() { echo "jvm_test: $*" >&2; exit 1; }

golden=""
compile_only=0
classes=()
while (($#)); do
  case "$1" in
    --golden)   (($# >= 2)) || die "--golden needs a directory argument"
                golden="$2"; shift 2 ;;
    --golden=*) golden="${1#--golden=}"; shift ;;
    --compile-only) compile_only=1; shift ;;
    -h|--help)  sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --)         shift; classes+=("$@"); break ;;
    -*)         die "unknown option $1 (usage: jvm_test.sh [--golden DIR] [classes...])" ;;
    *)          classes+=("$1"); shift ;;
  esac
done
if [[ -n "$golden" ]]; then
  [[ -d "$golden" ]] || die "--golden $golden is not a directory"
  golden="$(cd "$golden" && pwd)"
fi

"$SCRIPT_DIR/toolchain.sh"

export JAVA_OPTS="-Xmx1g -Xss4m -XX:+UseSerialGC -XX:TieredStopAtLevel=1"

# list_sources DIR [EXCLUDE_DIR] -> sorted, NUL-free list of *.kt files, one per line
list_sources() {
  local dir="$1" excl="${2:-}"
  [[ -d "$dir" ]] || return 0
  if [[ -n "$excl" ]]; then
    find "$dir" -path "$excl" -prune -o -type f -name '*.kt' -print
  else
    find "$dir" -type f -name '*.kt' -print
  fi | LC_ALL=C sort
}

# digest over the file list + contents (+ a tag such as the upstream digest)
digest() {
  local tag="$1"; shift
  {
    echo "$tag"
    if (($#)); then printf '%s\n' "$@"; sha256sum "$@"; fi
  } | sha256sum | cut -d' ' -f1
}

# compile NAME OUT STAMP DIGEST CLASSPATH FILES... : compile into a temp dir, then move into place
compile() {
  local name="$1" out="$2" stamp="$3" dig="$4" cp="$5"; shift 5
  if [[ -f "$stamp" && -d "$out" && "$(cat "$stamp")" == "$dig" ]]; then
    return 0
  fi
  mkdir -p "$BUILD"
  rm -f "$stamp"
  local tmp; tmp="$(mktemp -d "$BUILD/.$name.XXXXXX")"
  local t0=$SECONDS
  local args=(-jvm-target 17 -d "$tmp/out")
  if [[ -n "$cp" ]]; then args+=(-cp "$cp"); fi
  args+=("$@")
  if ! "$KOTLINC" "${args[@]}"; then
    rm -rf "$tmp"
    die "kotlinc failed compiling $name sources (see errors above)"
  fi
  mkdir -p "$tmp/out"   # kotlinc may create nothing for declaration-free files
  rm -rf "$out"
  mv "$tmp/out" "$out"
  rmdir "$tmp"
  printf '%s' "$dig" >"$stamp"
  echo "jvm_test: compiled $name ($# files, $((SECONDS - t0))s)"
}

mapfile -t main_files < <(list_sources "$MAIN_SRC" "$ANDROID_ONLY")
mapfile -t test_files < <(list_sources "$TEST_SRC")
((${#test_files[@]})) || die "no test sources (*.kt) under $TEST_SRC"

main_dig="$(digest main-v1 "${main_files[@]}")"
test_dig="$(digest "test-v1 $main_dig" "${test_files[@]}")"

if ((${#main_files[@]})); then
  compile main "$MAIN_OUT" "$BUILD/main.sha256" "$main_dig" "" "${main_files[@]}"
else
  rm -rf "$MAIN_OUT"; mkdir -p "$MAIN_OUT"; printf '%s' "$main_dig" >"$BUILD/main.sha256"
fi
compile test "$TEST_OUT" "$BUILD/test.sha256" "$test_dig" "$MAIN_OUT:$JUNIT_CP" "${test_files[@]}"
((compile_only)) && exit 0

if ((${#classes[@]} == 0)); then
  mapfile -t classes < <(cd "$TEST_OUT" && find . -type f -name '*Test.class' ! -name '*$*' \
                           | sed -e 's#^\./##' -e 's#\.class$##' -e 's#/#.#g' | LC_ALL=C sort)
  ((${#classes[@]})) || die "no test classes (*Test.class) compiled from $TEST_SRC; name test classes ...Test"
fi

jopts=()
if [[ -n "$golden" ]]; then jopts+=("-Dmobilevision.golden=$golden"); fi
set +e
java "${jopts[@]}" -cp "$TEST_OUT:$MAIN_OUT:$STDLIB:$JUNIT_CP" org.junit.runner.JUnitCore "${classes[@]}"
rc=$?
set -e
exit "$rc"
