"""The configurations every whole-app gate (cdk-nag, cfn-lint) runs over.

Each switches on a part of the app or changes how it is built; the gates must hold
in all of them, not only with the defaults.
"""

CONFIGURATIONS: dict[str, dict[str, str]] = {
    "defaults": {},
    "prod": {"stage": "prod"},
    "everything on": {
        "counting.alerts.emails": '["ops@example.com", "lead@example.com"]',
        "counting.workforce.invite_emails": '["ann@example.com", "bob@example.com"]',
        "counting.workforce.mfa": "required",
    },
    "existing workforce": {
        "counting.workforce.existing_user_pool_id": "eu-west-1_AbCdEf123",
        "counting.workforce.existing_app_client_id": "1example23456789abcdefghij",
        "counting.workforce.invite_emails": '["a@example.com"]',
    },
    "no workforce": {"counting.workforce.enabled": "false"},
    "explicit environment": {"counting.account": "123456789012", "counting.region": "eu-west-1"},
}
