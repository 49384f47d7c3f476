"""The configurations every whole-app gate (cdk-nag, cfn-lint) runs over.

Each switches on a part of the app or changes how it is built; the gates must hold
in all of them, not only with the defaults.
"""

# An Object Detection image of one's own, in ECR: the training role may pull it.
OWN_TRAINING_IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/my-detector:2"

CONFIGURATIONS: dict[str, dict[str, str]] = {
    "defaults": {},
    "prod": {"stage": "prod"},
    "everything on": {
        "counting.alerts.emails": '["ops@example.com", "lead@example.com"]',
        "counting.workforce.invite_emails": '["ann@example.com", "bob@example.com"]',
        "counting.workforce.mfa": "required",
        "counting.training.image_uri": OWN_TRAINING_IMAGE,
    },
    "existing workforce": {
        "counting.workforce.existing_user_pool_id": "eu-west-1_AbCdEf123",
        "counting.workforce.existing_app_client_id": "1example23456789abcdefghij",
        "counting.workforce.invite_emails": '["a@example.com"]',
    },
    "no workforce": {"counting.workforce.enabled": "false"},
    "on-demand training": {"counting.training.use_spot": "false"},
    "explicit environment": {"counting.account": "123456789012", "counting.region": "eu-west-1"},
}
