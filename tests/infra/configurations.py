"""The configurations every whole-app gate (cdk-nag, cfn-lint) runs over.

Each switches on a part of the app or changes how it is built; the gates must hold
in all of them, not only with the defaults. Between them they train on every instance
family the algorithm supports (TRAINING_FAMILIES), with and without local NVMe storage.
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
        "counting.training.instance_type": "ml.p2.xlarge",
        "counting.training.max_count_wape": "null",
        "counting.counter.score_threshold": "0.3",
    },
    "existing workforce": {
        "counting.workforce.existing_user_pool_id": "eu-west-1_AbCdEf123",
        "counting.workforce.existing_app_client_id": "1example23456789abcdefghij",
        "counting.workforce.invite_emails": '["a@example.com"]',
    },
    "no workforce": {"counting.workforce.enabled": "false"},
    "on-demand training on ml.g5": {
        "counting.training.use_spot": "false",
        "counting.training.instance_type": "ml.g5.2xlarge",
    },
    "explicit environment, ml.g4dn": {
        "counting.account": "123456789012",
        "counting.region": "eu-west-1",
        "counting.training.instance_type": "ml.g4dn.xlarge",
    },
}

# The training instance family each configuration uses (the default is ml.p3.2xlarge).
TRAINING_FAMILIES = {
    "p3": "defaults",
    "p2": "everything on",
    "g5": "on-demand training on ml.g5",
    "g4dn": "explicit environment, ml.g4dn",
}
