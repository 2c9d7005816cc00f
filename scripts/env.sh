# Environment of the embedded deployment; sourced by the Makefile (bash), never printed.
# Secrets come from .local/credentials.env (generated per install, mode 600, git-ignored).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$ROOT/.venv/bin:$PATH"
export SPARK_HOME="$("$ROOT/.venv/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))' 2>/dev/null)"
export PYSPARK_PYTHON="$ROOT/.venv/bin/python"
export PYSPARK_DRIVER_PYTHON="$ROOT/.venv/bin/python"
export SPARK_LOCAL_IP=127.0.0.1
export NUMTAFLOW_STATE_DIR="${NUMTAFLOW_STATE_DIR:-$ROOT/.local}"
export AIRFLOW_HOME="${AIRFLOW_HOME:-$NUMTAFLOW_STATE_DIR/airflow}"
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$ROOT/plugins"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__UNIT_TEST_MODE=False
if [ -z "${AIRFLOW__DATABASE__SQL_ALCHEMY_CONN:-}" ]; then  # the embedded SQLite: wait up to 60 s for its lock
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS=numtaflow.services.SQLITE_CONNECT_ARGS
  export AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC=numtaflow.services.SQLITE_CONNECT_ARGS
fi
export AIRFLOW__LOGGING__LOGGING_LEVEL="${AIRFLOW__LOGGING__LOGGING_LEVEL:-INFO}"
if [ -z "${AIRFLOW_CONN_SPARK_DEFAULT:-}" ]; then  # not a ${...:-default}: the JSON's braces would end it early
  export AIRFLOW_CONN_SPARK_DEFAULT="{\"conn_type\": \"spark\", \"host\": \"${NUMTAFLOW_SPARK_MASTER:-local[*]}\"}"
fi
export GX_ANALYTICS_ENABLED=false
export TF_CPP_MIN_LOG_LEVEL=2
export NUMTAFLOW_SPARK_JARS="${NUMTAFLOW_SPARK_JARS:-$ROOT/.cache/jars}"
if [ -f "$NUMTAFLOW_STATE_DIR/credentials.env" ]; then
  set -a; . "$NUMTAFLOW_STATE_DIR/credentials.env"; set +a
fi
# Airflow UI login (simple auth manager): user admin, password generated per install in this file.
export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin"
export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$NUMTAFLOW_STATE_DIR/airflow-passwords.json"
export AIRFLOW__API__HOST=127.0.0.1
export AIRFLOW__API__PORT="${AIRFLOW__API__PORT:-8080}"
export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$AIRFLOW__API__PORT/execution/"
