#!/usr/bin/env bash
# Differential test: `eddy window` against Apache Flink's own WindowOperator.
#
#   scripts/flink-diff/run.sh [SEED] [RANDOM_CASES]
#
# Runs every non-error fixture under fixtures/window/ and RANDOM_CASES
# (default 40) random cases generated from SEED (default 1) through both
# `eddy window` and FlinkWindow.java (Flink 1.20 on a local MiniCluster, one
# JVM), and compares the outputs (flink_diff.py explains the canonical
# form). Exit 1 if any case differs. Not part of `cargo test` (it needs
# Java 17 and Flink's jars, which it installs from PyPI's
# apache-flink-libraries into $EDDY_FLINK_HOME, default
# ~/.cache/eddyline/flink-<version>).
set -euo pipefail

seed="${1:-1}"
random_cases="${2:-40}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
flink_version="1.20.5"
flink_home="${EDDY_FLINK_HOME:-$HOME/.cache/eddyline/flink-$flink_version}"
work="$(mktemp -d "${TMPDIR:-/tmp}/eddy-flink-diff.XXXXXX")"
trap 'rm -rf "$work"' EXIT

command -v java >/dev/null || { echo "flink-diff: java (17) is required" >&2; exit 2; }
command -v javac >/dev/null || { echo "flink-diff: javac (17) is required" >&2; exit 2; }

if [ ! -d "$flink_home/pyflink/lib" ]; then
    echo "flink-diff: installing apache-flink-libraries==$flink_version into $flink_home" >&2
    python3 -m pip install --quiet --no-deps --target "$flink_home" "apache-flink-libraries==$flink_version"
fi
classpath="$flink_home/pyflink/lib/*"

mkdir -p "$work/classes"
if ! javac -nowarn -encoding UTF-8 -cp "$classpath" -d "$work/classes" "$here/FlinkWindow.java" > "$work/javac.log" 2>&1; then
    cat "$work/javac.log" >&2
    exit 2
fi

target_dir="${CARGO_TARGET_DIR:-$root/target}"
(cd "$root" && cargo build --quiet --bin eddy)
eddy="$target_dir/debug/eddy"

mkdir -p "$work/cases"
for fixture in "$root"/fixtures/window/*/; do
    [ -f "$fixture/expected.jsonl" ] || continue   # error cases have no Flink counterpart
    name="fixture-$(basename "$fixture")"
    mkdir -p "$work/cases/$name"
    cp "$fixture/spec.json" "$fixture/events.jsonl" "$work/cases/$name/"
done
python3 "$here/flink_diff.py" generate "$work/cases" "$seed" "$random_cases"

java_args=()
for case in "$work"/cases/*/; do
    "$eddy" window --spec "$case/spec.json" --input "$case/events.jsonl" > "$case/eddy.jsonl"
    java_args+=("$case/spec.json" "$case/events.jsonl" "$case/flink.jsonl")
done
java -Dlog4j2.level=OFF -cp "$classpath:$work/classes" FlinkWindow "${java_args[@]}" 2> "$work/flink.log" || {
    echo "flink-diff: Flink failed:" >&2; tail -n 30 "$work/flink.log" >&2; exit 2;
}

cases=0
failed=0
for case in "$work"/cases/*/; do
    cases=$((cases + 1))
    name="$(basename "$case")"
    if python3 "$here/flink_diff.py" compare "$case/eddy.jsonl" "$case/flink.jsonl" > "$work/diff.txt"; then
        echo "ok   $name ($(wc -l < "$case/eddy.jsonl") outputs)"
    else
        failed=$((failed + 1))
        echo "DIFF $name ($(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])))' "$case/spec.json"))"
        cat "$work/diff.txt"
        keep="$root/target/flink-diff-failures/$name"
        mkdir -p "$keep" && cp "$case"/* "$keep/"
        echo "     kept in $keep"
    fi
done
echo "flink-diff: $((cases - failed)) of $cases cases equal (seed $seed)"
[ "$failed" -eq 0 ]
