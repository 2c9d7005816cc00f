"""S3 refusing a step's credentials, the step having none, or S3 lacking its bucket: one sentence naming
the endpoint, the bucket and what was refused, exit 3 (a retry would be refused again), never the secret,
never a traceback."""

from __future__ import annotations

import pytest

from numtaflow.contracts import JobExit
from tests.conftest import run_job

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("change, expected", [
    ({"AWS_SECRET_ACCESS_KEY": "wrong-secret-value"}, "refused the credentials"),
    ({"NUMTAFLOW_BUCKET": "no-such-bucket"}, "the bucket does not exist"),
    ({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
      "AWS_CONFIG_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"}, "no credentials for S3 at"),
])
def test_a_refused_step_names_endpoint_bucket_and_cause(s3_env, change, expected):
    result = run_job("sample", "manual__refused", change)
    output = result.stdout + result.stderr
    assert result.returncode == JobExit.REFUSED, output[-3000:]
    assert expected in output and s3_env["NUMTAFLOW_S3_ENDPOINT"] in output
    assert "Traceback" not in output and "wrong-secret-value" not in output
    assert s3_env["AWS_SECRET_ACCESS_KEY"] not in output
