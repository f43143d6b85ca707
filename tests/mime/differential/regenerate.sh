#!/bin/sh
# Regenerates expected.json: compiles TwinReference.java against Debian's JavaMail 1.6.5
# (apt-get install libmail-java; Java 17+ with javac) and records its output for every
# CPython email test message and every crafted case in cases.py. Run from anywhere.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
for jar in /usr/share/java/javax.mail.jar /usr/share/java/javax.activation.jar; do
    [ -f "$jar" ] || { echo "missing $jar: apt-get install libmail-java" >&2; exit 1; }
done
cd "$root"
# Compare (including the public vectors) first, then record.
.venv/bin/python "$here/harness.py" --vectors
.venv/bin/python "$here/harness.py" --record
