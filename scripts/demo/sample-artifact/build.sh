#!/usr/bin/env bash
# Rebuilds demo-payments-1.0.jar, the sample artifact `make run` serves to errcode-scanner, from
# src/ (needs a JDK; `make run` itself only serves the committed jar). Java 8 class files, fixed
# entry dates, so the same JDK gives the same bytes.
set -euo pipefail
cd "$(dirname "$0")"
classes=$(mktemp -d)
trap 'rm -rf "$classes"' EXIT
javac --release 8 -nowarn -d "$classes" $(find src -name '*.java' | sort)
rm -f demo-payments-1.0.jar
jar --create --file demo-payments-1.0.jar --date=2026-01-01T00:00:00Z -C "$classes" .
