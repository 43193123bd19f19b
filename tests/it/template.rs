//! The template's security and durability properties, asserted by reading template.yaml, so a
//! later change cannot quietly widen a permission or drop a safeguard.

use std::collections::BTreeSet;

use local_stack::template::{read_template, template_path};
use serde_yaml_ng::Value;

fn template() -> Value {
    read_template(&template_path()).expect("template")
}

fn resource<'a>(template: &'a Value, id: &str) -> &'a Value {
    template
        .get("Resources")
        .and_then(|r| r.get(id))
        .unwrap_or_else(|| panic!("no resource {id}"))
}

fn props<'a>(template: &'a Value, id: &str) -> &'a Value {
    resource(template, id)
        .get("Properties")
        .unwrap_or_else(|| panic!("{id} has no Properties"))
}

/// A value as text; CloudFormation tags (`!GetAtt X.Arn`) become `!GetAtt X.Arn`.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Tagged(tagged) => format!("{} {}", tagged.tag, text(&tagged.value)),
        Value::Sequence(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => format!("{other:?}"),
    }
}

fn list(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Sequence(items)) => items.iter().map(text).collect(),
        Some(other) => vec![text(other)],
        None => vec![],
    }
}

/// Every IAM statement in every role and policy: (resource id, statement).
fn iam_statements(template: &Value) -> Vec<(String, Value)> {
    let mut out = vec![];
    for (id, resource) in template
        .get("Resources")
        .and_then(Value::as_mapping)
        .expect("resources")
    {
        let id = text(id);
        let kind = resource.get("Type").map(text).unwrap_or_default();
        let documents: Vec<&Value> = match kind.as_str() {
            "AWS::IAM::Role" => resource
                .get("Properties")
                .and_then(|p| p.get("Policies"))
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("PolicyDocument"))
                .collect(),
            "AWS::IAM::Policy" => resource
                .get("Properties")
                .and_then(|p| p.get("PolicyDocument"))
                .into_iter()
                .collect(),
            _ => vec![],
        };
        for document in documents {
            for statement in document
                .get("Statement")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                // `!If [condition, statement, !Ref AWS::NoValue]`: the statement, when made.
                let statement = match statement {
                    Value::Tagged(tagged) if tagged.tag == "If" => {
                        match tagged.value.as_sequence().and_then(|s| s.get(1)) {
                            Some(inner) => inner,
                            None => continue,
                        }
                    }
                    other => other,
                };
                out.push((id.clone(), statement.clone()));
            }
        }
    }
    out
}

fn actions_of(template: &Value, role: &str) -> BTreeSet<String> {
    let mut actions = BTreeSet::new();
    for (id, statement) in iam_statements(template) {
        let attached = id == role
            || (resource(template, &id).get("Type").map(text).as_deref()
                == Some("AWS::IAM::Policy")
                && list(props(template, &id).get("Roles")).contains(&format!("!Ref {role}")));
        if attached {
            actions.extend(list(statement.get("Action")));
        }
    }
    actions
}

/// The key attributes of a global secondary index of the orders table.
fn index_keys(template: &Value, name: &str) -> Vec<String> {
    props(template, "OrdersTable")
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_sequence)
        .expect("indexes")
        .iter()
        .find(|i| i.get("IndexName").map(text).as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no index {name}"))
        .get("KeySchema")
        .and_then(Value::as_sequence)
        .expect("keys")
        .iter()
        .filter_map(|k| k.get("AttributeName").map(text))
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn each_function_has_exactly_the_actions_it_uses() {
    let template = template();
    let table = [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    ];
    let logs = ["logs:CreateLogStream", "logs:PutLogEvents"];
    // kms:Decrypt opens the sealed key when local signing is on (SealedAppPrivateKey).
    let signing = ["kms:Sign", "kms:GetPublicKey", "kms:Decrypt"];
    // Certificate mode: the open platform's files, read at start.
    let certificates = ["s3:GetObject"];
    let mut create: Vec<&str> = [&table[..], &logs[..], &signing[..], &certificates[..]].concat();
    // BatchGetItem: a create's list entries and signals, and the paid history of a payment
    // applied (every function that applies one).
    create.extend(["dynamodb:Query", "dynamodb:BatchGetItem"]);
    assert_eq!(actions_of(&template, "CreatePaymentRole"), set(&create));
    assert_eq!(
        actions_of(&template, "RefundRole"),
        set(&[&table[..], &logs[..], &signing[..], &certificates[..]].concat())
    );
    let mut subscriptions = [&table[..], &logs[..], &signing[..], &certificates[..]].concat();
    subscriptions.push("dynamodb:BatchGetItem");
    assert_eq!(
        actions_of(&template, "SubscriptionsRole"),
        set(&subscriptions),
        "subscriptions signs the agreement page and the unsign; it never queries"
    );
    let mut notify: Vec<&str> = [&table[..], &logs[..], &certificates[..]].concat();
    notify.extend(["dynamodb:Query", "dynamodb:BatchGetItem"]);
    assert_eq!(
        actions_of(&template, "NotifyRole"),
        set(&notify),
        "notify never signs"
    );
    assert_eq!(actions_of(&template, "SweeperRole"), set(&create));
    let mut reconcile = create.clone();
    reconcile.push("s3:PutObject");
    // With Antom's reports: the SFTP key's parameter, and the network interfaces of a function
    // in a VPC (under HasAntomReports: the_fixed_egress_exists_only_with_antoms_reports).
    reconcile.extend([
        "ssm:GetParameter",
        "ec2:CreateNetworkInterface",
        "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses",
        "ec2:UnassignPrivateIpAddresses",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
    ]);
    assert_eq!(actions_of(&template, "ReconcileRole"), set(&reconcile));
    assert_eq!(
        actions_of(&template, "PublisherRole"),
        set(&[
            "dynamodb:DescribeStream",
            "dynamodb:GetRecords",
            "dynamodb:GetShardIterator",
            "dynamodb:ListStreams",
            "events:PutEvents",
            "sqs:SendMessage",
            "logs:CreateLogStream",
            "logs:PutLogEvents"
        ]),
        "the publisher reads the stream, never the table, and cannot sign"
    );
    assert_eq!(
        actions_of(&template, "RiskSignalsRole"),
        set(&[
            "dynamodb:DescribeStream",
            "dynamodb:GetRecords",
            "dynamodb:GetShardIterator",
            "dynamodb:ListStreams",
            "dynamodb:GetItem",
            "dynamodb:UpdateItem",
            "logs:CreateLogStream",
            "logs:PutLogEvents"
        ]),
        "the signals function reads the stream and orders, writes signal items, cannot sign"
    );
    assert_eq!(
        actions_of(&template, "WebhookRole"),
        set(&["events:InvokeApiDestination"])
    );
}

#[test]
fn events_come_from_the_table_stream_and_the_webhook_is_authenticated() {
    let template = template();
    let table = props(&template, "OrdersTable");
    assert_eq!(
        table
            .get("StreamSpecification")
            .and_then(|s| s.get("StreamViewType"))
            .map(text)
            .as_deref(),
        Some("NEW_AND_OLD_IMAGES"),
        "the publisher compares the item before and after"
    );
    let source = props(&template, "PublisherFunction")
        .get("Events")
        .and_then(|e| e.get("Changes"))
        .expect("stream event");
    assert_eq!(source.get("Type").map(text).as_deref(), Some("DynamoDB"));
    let p = source.get("Properties").expect("properties");
    assert_eq!(
        p.get("Stream").map(text).as_deref(),
        Some("!GetAtt OrdersTable.StreamArn")
    );
    assert_eq!(
        list(p.get("FunctionResponseTypes")),
        ["ReportBatchItemFailures"],
        "a failed record is retried, the ones before it are not lost"
    );
    assert_eq!(
        p.get("BisectBatchOnFunctionError").map(text).as_deref(),
        Some("true")
    );
    assert_eq!(
        p.get("DestinationConfig")
            .and_then(|d| d.get("OnFailure"))
            .and_then(|d| d.get("Destination"))
            .map(text)
            .as_deref(),
        Some("!GetAtt PublisherFailuresQueue.Arn")
    );
    // The filter lets through exactly the items the publisher makes events of.
    use local_stack::events_path::{SortKeyFilter, template_filter};
    assert_eq!(
        template_filter().expect("filter"),
        [
            SortKeyFilter::Exactly("ORDER".into()),
            SortKeyFilter::Exactly("SUB".into()),
            SortKeyFilter::Exactly("SUMMARY".into()),
            SortKeyFilter::Exactly("STATE".into()),
            SortKeyFilter::Prefix("REFUND#".into())
        ]
    );
    // The webhook: HTTPS only, an API key header on every call, EventBridge's retries and a
    // dead-letter queue; all of it only when a URL is given.
    let url = template
        .get("Parameters")
        .and_then(|p| p.get("WebhookUrl"))
        .expect("WebhookUrl");
    assert_eq!(
        url.get("AllowedPattern").map(text).as_deref(),
        Some("^$|^https://[^ ]+$")
    );
    let key = template
        .get("Parameters")
        .and_then(|p| p.get("WebhookApiKey"))
        .expect("WebhookApiKey");
    assert_eq!(key.get("NoEcho").map(text).as_deref(), Some("true"));
    for id in [
        "WebhookConnection",
        "WebhookDestination",
        "WebhookRule",
        "WebhookRole",
        "WebhookFailuresQueue",
        "WebhookFailuresQueuePolicy",
        "WebhookUndeliveredAlarm",
    ] {
        assert_eq!(
            resource(&template, id)
                .get("Condition")
                .map(text)
                .as_deref(),
            Some("HasWebhook"),
            "{id}"
        );
    }
    let connection = props(&template, "WebhookConnection");
    assert_eq!(
        connection.get("AuthorizationType").map(text).as_deref(),
        Some("API_KEY")
    );
    let target = props(&template, "WebhookRule")
        .get("Targets")
        .and_then(|t| t.get(0))
        .expect("target");
    assert_eq!(
        target.get("Arn").map(text).as_deref(),
        Some("!GetAtt WebhookDestination.Arn")
    );
    assert!(target.get("RetryPolicy").is_some() && target.get("DeadLetterConfig").is_some());
    assert_eq!(
        props(&template, "PublisherFunction")
            .get("Environment")
            .and_then(|e| e.get("Variables"))
            .and_then(|v| v.get("EVENT_BUS_NAME"))
            .map(text)
            .as_deref(),
        Some("!Ref GatewayEventBus")
    );
}

#[test]
fn reconciliation_runs_daily_at_10_30_china_time_and_keeps_reports_private_and_180_days() {
    let template = template();
    let function = props(&template, "ReconcileFunction");
    let daily = function
        .get("Events")
        .and_then(|e| e.get("Daily"))
        .expect("a daily event");
    assert_eq!(daily.get("Type").map(text).as_deref(), Some("ScheduleV2"));
    let p = daily.get("Properties").expect("properties");
    assert_eq!(
        p.get("ScheduleExpression").map(text).as_deref(),
        Some("cron(30 10 * * ? *)")
    );
    assert_eq!(
        p.get("ScheduleExpressionTimezone").map(text).as_deref(),
        Some("Asia/Shanghai")
    );
    let variables = function
        .get("Environment")
        .and_then(|e| e.get("Variables"))
        .expect("variables");
    assert_eq!(
        variables.get("RECONCILE_BUCKET").map(text).as_deref(),
        Some("!Ref ReconcileReportsBucket")
    );
    let bucket = props(&template, "ReconcileReportsBucket");
    let block = bucket
        .get("PublicAccessBlockConfiguration")
        .expect("public access block");
    for setting in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(
            block.get(setting).and_then(Value::as_bool),
            Some(true),
            "{setting}"
        );
    }
    let encryption = bucket
        .get("BucketEncryption")
        .and_then(|e| e.get("ServerSideEncryptionConfiguration"))
        .and_then(Value::as_sequence)
        .and_then(|rules| rules.first())
        .and_then(|rule| rule.get("ServerSideEncryptionByDefault"))
        .and_then(|d| d.get("SSEAlgorithm"))
        .map(text);
    assert!(
        matches!(encryption.as_deref(), Some("AES256" | "aws:kms")),
        "{encryption:?}"
    );
    let rules = bucket
        .get("LifecycleConfiguration")
        .and_then(|l| l.get("Rules"))
        .and_then(Value::as_sequence)
        .expect("lifecycle");
    for rule in rules {
        for days in [
            rule.get("ExpirationInDays"),
            rule.get("NoncurrentVersionExpiration")
                .and_then(|n| n.get("NoncurrentDays")),
        ]
        .into_iter()
        .flatten()
        {
            let days: u64 = text(days).parse().expect("days");
            assert!(days >= 180, "reports kept {days} days");
        }
    }
    assert_eq!(
        resource(&template, "ReconcileReportsBucket")
            .get("DeletionPolicy")
            .map(text)
            .as_deref(),
        Some("Retain")
    );
    assert_eq!(index_keys(&template, "DayIndexV2"), ["day_key", "day_sk"]);
    // The index the code reads projects what the reconciliation compares.
    let v2 = props(&template, "OrdersTable")
        .get("GlobalSecondaryIndexes")
        .and_then(Value::as_sequence)
        .and_then(|all| {
            all.iter()
                .find(|i| i.get("IndexName").map(text).as_deref() == Some(store::DAY_INDEX))
        })
        .and_then(|i| i.get("Projection"))
        .and_then(|p| p.get("NonKeyAttributes"))
        .map(|a| list(Some(a)))
        .expect("the day index's projection");
    for attribute in [
        "status",
        "paid_fen",
        "amount_fen",
        "trade_no",
        "currency",
        "settlement",
    ] {
        assert!(v2.iter().any(|a| a == attribute), "{attribute}: {v2:?}");
    }
    // Only the reconcile role reads the day index; it writes reports under one prefix only.
    let statements = iam_statements(&template);
    for (role, statement) in &statements {
        let resources = list(statement.get("Resource"));
        if resources.iter().any(|r| r.contains("/index/DayIndex")) {
            assert_eq!(role, "ReconcileRole");
        }
        if role == "CertificatesPolicy" {
            // Certificate mode: reading the open platform's files, nothing else.
            assert_eq!(list(statement.get("Action")), ["s3:GetObject"]);
            continue;
        }
        if list(statement.get("Action"))
            .iter()
            .any(|a| a.starts_with("s3:"))
        {
            assert_eq!(role, "ReconcileRole");
            assert_eq!(
                resources,
                ["!Sub ${ReconcileReportsBucket.Arn}/reconciliation/*"]
            );
        }
    }
}

#[test]
fn the_sweeper_runs_on_a_schedule_over_a_sparse_due_index() {
    let template = template();
    assert_eq!(
        index_keys(&template, "DueIndex"),
        ["due_shard", "due_at_ms"]
    );
    let sweeper = props(&template, "SweeperFunction");
    let schedule = sweeper
        .get("Events")
        .and_then(|e| e.get("Schedule"))
        .expect("schedule");
    assert_eq!(schedule.get("Type").map(text).as_deref(), Some("Schedule"));
    assert_eq!(
        schedule
            .get("Properties")
            .and_then(|p| p.get("Schedule"))
            .map(text)
            .as_deref(),
        Some("!Ref SweepSchedule")
    );
    // One run at a time; the conditional claims make overlap safe, this makes it rare.
    assert_eq!(
        sweeper
            .get("ReservedConcurrentExecutions")
            .map(text)
            .as_deref(),
        Some("1")
    );
    // The sweeper reads the index, and only the index: no Scan anywhere.
    let statements = iam_statements(&template);
    assert!(
        statements
            .iter()
            .all(|(_, s)| !list(s.get("Action")).iter().any(|a| a == "dynamodb:Scan"))
    );
    assert!(statements.iter().any(|(role, s)| role == "SweeperRole"
        && text(s.get("Resource").expect("resource")).contains("/index/DueIndex")));
}

#[test]
fn no_wildcards_and_no_broad_policy_templates() {
    let template = template();
    for (id, statement) in iam_statements(&template) {
        let actions = list(statement.get("Action"));
        assert!(
            actions.iter().all(|a| !a.contains('*')),
            "{id}: wildcard action in {actions:?}"
        );
        let resources = list(statement.get("Resource"));
        // Describing network interfaces and subnets (Lambda in a VPC) has no resource level.
        let describe_only = actions
            .iter()
            .all(|a| a == "ec2:DescribeNetworkInterfaces" || a == "ec2:DescribeSubnets");
        assert!(
            !resources.is_empty() && (describe_only || resources.iter().all(|r| r != "*")),
            "{id}: Resource * for {actions:?}"
        );
        assert_eq!(statement.get("Effect").map(text).as_deref(), Some("Allow"));
        for action in &actions {
            let resource = &resources[0];
            let owners: &[&str] = match action.split(':').next() {
                Some("dynamodb") => &[
                    "!GetAtt OrdersTable.Arn",
                    "!GetAtt OrdersTable.StreamArn",
                    "!Sub ${OrdersTable.Arn}/index/DueIndex",
                    "!Sub ${OrdersTable.Arn}/index/DayIndexV2",
                ],
                Some("s3") => &[
                    "!Sub ${ReconcileReportsBucket.Arn}/reconciliation/*",
                    "!Sub arn:${AWS::Partition}:s3:::${AlipayCertBucket}/alipay/*",
                ],
                Some("kms") => &[
                    "!GetAtt AppSigningKey.Arn",
                    "!GetAtt AppSigningKeyB.Arn",
                    "!GetAtt SecondaryAppSigningKey.Arn",
                    "!GetAtt AntomSigningKey.Arn",
                    "!GetAtt AppKeySealingKey.Arn",
                ],
                Some("events") => &[
                    "!GetAtt GatewayEventBus.Arn",
                    "!GetAtt WebhookDestination.Arn",
                ],
                Some("sqs") => &["!GetAtt PublisherFailuresQueue.Arn"],
                _ => continue,
            };
            assert!(
                owners.contains(&resource.as_str()),
                "{id}: {action} on {resource}"
            );
        }
    }
    for (_, resource) in template
        .get("Resources")
        .and_then(Value::as_mapping)
        .expect("resources")
    {
        if resource.get("Type").map(text).as_deref() == Some("AWS::Serverless::Function") {
            let p = resource.get("Properties").expect("properties");
            assert!(
                p.get("Policies").is_none(),
                "functions use their explicit roles, no SAM policy templates"
            );
            assert!(p.get("Role").is_some());
        }
    }
    let raw = std::fs::read_to_string(template_path()).expect("template");
    for forbidden in [
        "DynamoDBCrudPolicy",
        "AWSLambdaBasicExecutionRole",
        "AdministratorAccess",
        "PowerUser",
    ] {
        assert!(!raw.contains(forbidden), "{forbidden} in template.yaml");
    }
}

#[test]
fn only_the_payment_functions_may_sign_and_only_with_rsa2() {
    let template = template();
    for key in ["AppSigningKey", "AppSigningKeyB", "SecondaryAppSigningKey"] {
        only_these_may_sign_with(
            &template,
            key,
            &[
                "!GetAtt CreatePaymentRole.Arn",
                "!GetAtt RefundRole.Arn",
                "!GetAtt SubscriptionsRole.Arn",
                "!GetAtt SweeperRole.Arn",
                "!GetAtt ReconcileRole.Arn",
            ],
        );
    }
}

fn only_these_may_sign_with(template: &Value, key: &str, expected: &[&str]) {
    let key = props(template, key);
    assert_eq!(key.get("KeySpec").map(text).as_deref(), Some("RSA_2048"));
    assert_eq!(
        key.get("KeyUsage").map(text).as_deref(),
        Some("SIGN_VERIFY")
    );
    let statements = key
        .get("KeyPolicy")
        .and_then(|p| p.get("Statement"))
        .and_then(Value::as_sequence)
        .expect("policy");
    let mut signers = BTreeSet::new();
    for statement in statements {
        let actions = list(statement.get("Action"));
        let principals = list(statement.get("Principal").and_then(|p| p.get("AWS")));
        assert!(
            !actions.iter().any(|a| a == "kms:*"),
            "kms:* in the key policy"
        );
        let may_sign = actions.iter().any(|a| a == "kms:Sign" || a == "kms:Sign*");
        if may_sign {
            signers.extend(principals.clone());
            let condition = statement
                .get("Condition")
                .and_then(|c| c.get("StringEquals"))
                .and_then(|c| c.get("kms:SigningAlgorithm"));
            assert_eq!(
                condition.map(text).as_deref(),
                Some("RSASSA_PKCS1_V1_5_SHA_256")
            );
        }
        if principals.iter().any(|p| p.contains(":root")) {
            assert!(
                !actions.iter().any(|a| a.starts_with("kms:Sign")
                    || a.starts_with("kms:Encrypt")
                    || a.starts_with("kms:Decrypt")),
                "the account administers, it does not sign: {actions:?}"
            );
            assert!(
                actions.iter().any(|a| a == "kms:Get*"),
                "the deployer can read the public key"
            );
            // A grant would hand signing to anyone the account trusts.
            assert!(
                !actions
                    .iter()
                    .any(|a| a == "kms:Create*" || a == "kms:CreateGrant"),
                "{actions:?}"
            );
        }
    }
    assert_eq!(signers, set(expected));
}

/// The Antom channel exists only with `AntomClientId`: its key, alias, signing policy, alarm
/// and outputs under `HasAntom` (its reports' schedules under `HasAntomReports`); only the
/// functions that call Antom (create-payment, refund, the sweeper, and reconcile for its
/// inquiries) may sign with its key, and only they are given it.
#[test]
fn an_antom_channel_and_its_key_exist_only_when_configured() {
    let template = template();
    let raw = |value: &Value| serde_yaml_ng::to_string(value).expect("yaml");
    let mut conditional = BTreeSet::new();
    for (id, resource) in template
        .get("Resources")
        .and_then(Value::as_mapping)
        .expect("resources")
    {
        let id = text(id);
        if id.starts_with("Antom") {
            let condition = resource.get("Condition").map(text);
            assert!(
                matches!(condition.as_deref(), Some("HasAntom" | "HasAntomReports")),
                "{id}: {condition:?}"
            );
            conditional.insert(id.clone());
        }
        let environment = resource
            .get("Properties")
            .and_then(|p| p.get("Environment"))
            .map(raw)
            .unwrap_or_default();
        let calls_antom = matches!(
            id.as_str(),
            "CreatePaymentFunction" | "RefundFunction" | "SweeperFunction" | "ReconcileFunction"
        );
        assert_eq!(
            environment.contains("ANTOM_KMS_KEY_ID"),
            calls_antom,
            "{id}: only the functions that call Antom hold its key"
        );
        if calls_antom {
            assert!(environment.contains("HasAntom"), "{id}: {environment}");
            // Only the ones that start payments and refunds say where Antom notifies.
            assert_eq!(
                environment.contains("notify/antom"),
                id != "ReconcileFunction",
                "{id}: ANTOM_NOTIFY_URL"
            );
        }
    }
    assert_eq!(
        conditional,
        set(&[
            "AntomChannelOpenAlarm",
            "AntomReconcileSchedule",
            "AntomReconcileScheduleRole",
            "AntomSettlementSchedule",
            "AntomSigningKey",
            "AntomSigningKeyAlias",
            "AntomSigningPolicy",
        ])
    );
    only_these_may_sign_with(
        &template,
        "AntomSigningKey",
        &[
            "!GetAtt CreatePaymentRole.Arn",
            "!GetAtt RefundRole.Arn",
            "!GetAtt SweeperRole.Arn",
            "!GetAtt ReconcileRole.Arn",
        ],
    );
    let policy = props(&template, "AntomSigningPolicy");
    assert_eq!(
        list(policy.get("Roles")),
        [
            "!Ref CreatePaymentRole",
            "!Ref RefundRole",
            "!Ref SweeperRole",
            "!Ref ReconcileRole"
        ]
    );
    let globals = template
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .and_then(|f| f.get("Environment"))
        .and_then(|e| e.get("Variables"))
        .expect("globals");
    for variable in [
        "ANTOM_CLIENT_ID",
        "ANTOM_PUBLIC_KEY",
        "ANTOM_GATEWAY_URL",
        "ANTOM_CURRENCIES",
        "ANTOM_SETTLEMENT_CURRENCY",
        "ANTOM_REDIRECT_URL",
    ] {
        assert!(globals.get(variable).is_some(), "{variable}");
    }
    assert!(raw(globals.get("ANTOM_CLIENT_ID").expect("client id")).contains("HasAntom"));
    let alarm = props(&template, "AntomChannelOpenAlarm");
    assert!(raw(alarm.get("Dimensions").expect("dimensions")).contains("antom"));
    let outputs = template.get("Outputs").expect("outputs");
    for output in ["AntomPublicKeyCommand", "AntomNotifyUrl"] {
        assert_eq!(
            outputs
                .get(output)
                .and_then(|o| o.get("Condition"))
                .map(text)
                .as_deref(),
            Some("HasAntom"),
            "{output}"
        );
    }
}

#[test]
fn the_table_is_durable_encrypted_and_expires_audit_events() {
    let template = template();
    let table = resource(&template, "OrdersTable");
    assert_eq!(
        table.get("DeletionPolicy").map(text).as_deref(),
        Some("Retain")
    );
    let p = props(&template, "OrdersTable");
    assert_eq!(
        p.get("BillingMode").map(text).as_deref(),
        Some("PAY_PER_REQUEST")
    );
    assert_eq!(
        p.get("DeletionProtectionEnabled").map(text).as_deref(),
        Some("true")
    );
    let pitr = p
        .get("PointInTimeRecoverySpecification")
        .and_then(|s| s.get("PointInTimeRecoveryEnabled"));
    assert_eq!(pitr.map(text).as_deref(), Some("true"));
    let sse = p.get("SSESpecification").expect("sse");
    assert_eq!(
        (
            sse.get("SSEEnabled").map(text).as_deref(),
            sse.get("SSEType").map(text).as_deref()
        ),
        (Some("true"), Some("KMS"))
    );
    let ttl = p.get("TimeToLiveSpecification").expect("ttl");
    assert_eq!(
        (
            ttl.get("AttributeName").map(text).as_deref(),
            ttl.get("Enabled").map(text).as_deref()
        ),
        (Some("expires_at"), Some("true"))
    );
    assert_eq!(
        resource(&template, "AppSigningKey")
            .get("DeletionPolicy")
            .map(text)
            .as_deref(),
        Some("Retain")
    );
}

#[test]
fn functions_run_on_graviton_with_logs_kept_180_days_or_more() {
    let template = template();
    let globals = template
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .expect("globals");
    assert_eq!(
        globals.get("Runtime").map(text).as_deref(),
        Some("provided.al2023")
    );
    assert_eq!(list(globals.get("Architectures")), ["arm64"]);
    let retention = template
        .get("Parameters")
        .and_then(|p| p.get("LogRetentionDays"))
        .expect("retention");
    let allowed: Vec<u64> = list(retention.get("AllowedValues"))
        .iter()
        .filter_map(|v| v.parse().ok())
        .collect();
    assert!(
        !allowed.is_empty() && allowed.iter().all(|days| *days >= 180),
        "{allowed:?}"
    );
    for (function, logs) in [
        ("CreatePaymentFunction", "CreatePaymentLogs"),
        ("RefundFunction", "RefundLogs"),
        ("SubscriptionsFunction", "SubscriptionsLogs"),
        ("NotifyFunction", "NotifyLogs"),
        ("SweeperFunction", "SweeperLogs"),
        ("ReconcileFunction", "ReconcileLogs"),
        ("PublisherFunction", "PublisherLogs"),
        ("RiskSignalsFunction", "RiskSignalsLogs"),
    ] {
        let f = resource(&template, function);
        assert_eq!(
            f.get("Metadata")
                .and_then(|m| m.get("BuildMethod"))
                .map(text)
                .as_deref(),
            Some("rust-cargolambda")
        );
        let logging = props(&template, function)
            .get("LoggingConfig")
            .expect("logging");
        assert_eq!(logging.get("LogFormat").map(text).as_deref(), Some("JSON"));
        assert_eq!(
            logging.get("LogGroup").map(text),
            Some(format!("!Ref {logs}"))
        );
        assert_eq!(
            props(&template, logs)
                .get("RetentionInDays")
                .map(text)
                .as_deref(),
            Some("!Ref LogRetentionDays")
        );
        let timeout: u64 = props(&template, function)
            .get("Timeout")
            .map(text)
            .and_then(|t| t.parse().ok())
            .expect("timeout");
        let limit = if function == "SweeperFunction" || function == "ReconcileFunction" {
            900
        } else {
            30
        };
        assert!(
            (5..=limit).contains(&timeout),
            "{function} timeout {timeout}"
        );
    }
}

#[test]
fn the_api_requires_auth_and_only_notify_is_public() {
    let template = template();
    let api = props(&template, "MerchantApi");
    let auth = api.get("Auth").expect("auth");
    assert_eq!(
        auth.get("DefaultAuthorizer").map(text).as_deref(),
        Some("!If UseJwt,MerchantJwt,AWS_IAM")
    );
    assert!(
        api.get("DefaultRouteSettings")
            .and_then(|s| s.get("ThrottlingRateLimit"))
            .is_some()
    );
    assert!(
        api.get("AccessLogSettings")
            .and_then(|s| s.get("DestinationArn"))
            .is_some()
    );
    let mut public = vec![];
    for (id, resource) in template
        .get("Resources")
        .and_then(Value::as_mapping)
        .expect("resources")
    {
        if let Some(url) = resource
            .get("Properties")
            .and_then(|p| p.get("FunctionUrlConfig"))
        {
            assert_eq!(url.get("AuthType").map(text).as_deref(), Some("NONE"));
            public.push(text(id));
        }
        for (_, event) in resource
            .get("Properties")
            .and_then(|p| p.get("Events"))
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
        {
            let auth = event.get("Properties").and_then(|p| p.get("Auth"));
            assert!(
                auth.is_none(),
                "{}: no route overrides the default authorizer",
                text(id)
            );
        }
    }
    assert_eq!(public, ["NotifyFunction"]);
    let outputs = template.get("Outputs").expect("outputs");
    for output in ["ApiUrl", "NotifyUrl", "AppSigningKeyId", "PublicKeyCommand"] {
        assert!(outputs.get(output).is_some(), "output {output}");
    }
}

#[test]
fn alarms_cover_errors_throttles_forgeries_and_refund_failures() {
    let template = template();
    let mut alarms = vec![];
    for (id, resource) in template
        .get("Resources")
        .and_then(Value::as_mapping)
        .expect("resources")
    {
        if resource.get("Type").map(text).as_deref() == Some("AWS::CloudWatch::Alarm") {
            let actions = list(
                resource
                    .get("Properties")
                    .and_then(|p| p.get("AlarmActions")),
            );
            assert_eq!(actions, ["!Ref AlarmTopicArn"], "{}", text(id));
            alarms.push(text(id));
        }
    }
    alarms.sort();
    assert_eq!(
        alarms,
        [
            "AgreementsStoppedAlarm",
            "AntomChannelOpenAlarm",
            "CreatePaymentErrorsAlarm",
            "DueWorkAgeAlarm",
            "EventsDelayedAlarm",
            "EventsUndeliveredAlarm",
            "ForgedNotificationsAlarm",
            "NotifyErrorsAlarm",
            "PrimaryChannelOpenAlarm",
            "PublisherErrorsAlarm",
            "ReconcileErrorsAlarm",
            "ReconciliationDiscrepanciesAlarm",
            "ReconciliationMissingAlarm",
            "RefundDiscrepanciesAlarm",
            "RefundErrorsAlarm",
            "RefundProblemsAlarm",
            "RiskRefusalsAlarm",
            "RiskRulesRejectedAlarm",
            "RiskSignalsErrorsAlarm",
            "SecondaryChannelOpenAlarm",
            "SubscriptionPeriodsUnpaidAlarm",
            "SubscriptionsErrorsAlarm",
            "SweeperErrorsAlarm",
            "SweeperSecurityAlarm",
            "ThrottlesAlarm",
            "WebhookUndeliveredAlarm"
        ]
    );
}

#[test]
fn key_or_certificate_mode_and_the_rotation_key_are_parameters() {
    let template = template();
    let raw = |value: &Value| serde_yaml_ng::to_string(value).expect("yaml");
    let globals = template
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .and_then(|f| f.get("Environment"))
        .and_then(|e| e.get("Variables"))
        .expect("globals");
    // Each mode's variables are set only in that mode (the configuration refuses both).
    for (variable, object) in [
        ("ALIPAY_APP_CERT", "alipay/primary/appCertPublicKey.crt"),
        ("ALIPAY_CERT", "alipay/primary/alipayCertPublicKey_RSA2.crt"),
        ("ALIPAY_ROOT_CERT", "alipay/primary/alipayRootCert.crt"),
        (
            "STANDBY_ALIPAY_APP_CERT",
            "alipay/primary/standbyAppCertPublicKey.crt",
        ),
        (
            "SECONDARY_ALIPAY_APP_CERT",
            "alipay/secondary/appCertPublicKey.crt",
        ),
    ] {
        let value = raw(globals.get(variable).expect(variable));
        assert!(
            value.contains("CertificateMode") && value.contains(object),
            "{variable}: {value}"
        );
    }
    for variable in ["ALIPAY_PUBLIC_KEY", "SECONDARY_ALIPAY_PUBLIC_KEY"] {
        let value = raw(globals.get(variable).expect(variable));
        assert!(
            value.contains("CertificateMode") && value.contains("AWS::NoValue"),
            "{variable}: {value}"
        );
    }
    // Key B exists only for a rotation; the signing functions know both keys then, one as the
    // standby.
    for id in ["AppSigningKeyB", "AppSigningKeyBAlias", "SigningPolicyB"] {
        assert_eq!(
            resource(&template, id)
                .get("Condition")
                .map(text)
                .as_deref(),
            Some("HasKeyB"),
            "{id}"
        );
    }
    assert_eq!(
        resource(&template, "CertificatesPolicy")
            .get("Condition")
            .map(text)
            .as_deref(),
        Some("CertificateMode")
    );
    for function in [
        "CreatePaymentFunction",
        "RefundFunction",
        "SubscriptionsFunction",
        "SweeperFunction",
        "ReconcileFunction",
    ] {
        let variables = props(&template, function)
            .get("Environment")
            .and_then(|e| e.get("Variables"))
            .expect("variables");
        let main = raw(variables.get("KMS_KEY_ID").expect("KMS_KEY_ID"));
        let standby = raw(variables.get("STANDBY_KMS_KEY_ID").expect("standby"));
        assert!(
            main.contains("SignWithB") && main.contains("AppSigningKeyB"),
            "{main}"
        );
        assert!(standby.contains("HasKeyB"), "{standby}");
    }
    for function in ["NotifyFunction", "PublisherFunction"] {
        let variables = props(&template, function)
            .get("Environment")
            .and_then(|e| e.get("Variables"));
        assert!(
            variables.is_none_or(|v| v.get("STANDBY_KMS_KEY_ID").is_none()),
            "{function} never signs"
        );
    }
}

#[test]
fn a_second_channel_and_its_key_exist_only_when_configured() {
    let template = template();
    let resources = template
        .get("Resources")
        .and_then(Value::as_mapping)
        .expect("resources");
    let raw = |value: &Value| serde_yaml_ng::to_string(value).expect("yaml");
    // Everything that names the second key exists only with a second channel.
    let mut conditional = BTreeSet::new();
    for (id, resource) in resources {
        let id = text(id);
        let condition = resource.get("Condition").map(text);
        if id.starts_with("Secondary") {
            assert_eq!(condition.as_deref(), Some("HasSecondary"), "{id}");
            conditional.insert(id.clone());
        }
        let environment = resource
            .get("Properties")
            .and_then(|p| p.get("Environment"))
            .map(raw)
            .unwrap_or_default();
        if environment.contains("SecondaryAppSigningKey") {
            assert!(
                environment.contains("!If") && environment.contains("HasSecondary"),
                "{id}: {environment}"
            );
        }
    }
    assert_eq!(
        conditional,
        set(&[
            "SecondaryAppSigningKey",
            "SecondaryAppSigningKeyAlias",
            "SecondaryChannelOpenAlarm",
            "SecondaryReconcileSchedule",
            "SecondaryReconcileScheduleRole",
            "SecondarySigningPolicy",
        ])
    );
    // Every function that signs knows the second key when there is one.
    for function in [
        "CreatePaymentFunction",
        "RefundFunction",
        "SubscriptionsFunction",
        "SweeperFunction",
        "ReconcileFunction",
    ] {
        let variables = props(&template, function)
            .get("Environment")
            .and_then(|e| e.get("Variables"))
            .expect("variables");
        assert!(
            variables.get("SECONDARY_KMS_KEY_ID").is_some(),
            "{function}"
        );
    }
    // The second channel's reconciliation runs on its own schedule with its channel named.
    let schedule = props(&template, "SecondaryReconcileSchedule");
    let input = schedule
        .get("Target")
        .and_then(|t| t.get("Input"))
        .map(text)
        .expect("input");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&input).expect("json"),
        serde_json::json!({"channel": "secondary"})
    );
    // The breaker's settings and the second channel reach every function.
    let globals = template
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .and_then(|f| f.get("Environment"))
        .and_then(|e| e.get("Variables"))
        .expect("globals");
    for variable in [
        "SECONDARY_ALIPAY_APP_ID",
        "SECONDARY_ALIPAY_PUBLIC_KEY",
        "SECONDARY_ALIPAY_SELLER_ID",
        "BREAKER_FAILURE_PERCENT",
        "BREAKER_MIN_CALLS",
        "BREAKER_WINDOW_SECONDS",
        "BREAKER_COOL_DOWN_SECONDS",
        "BREAKER_TRIAL_CALLS",
    ] {
        assert!(globals.get(variable).is_some(), "{variable}");
    }
    // An opening alarms, per channel.
    for (alarm, channel) in [
        ("PrimaryChannelOpenAlarm", "primary"),
        ("SecondaryChannelOpenAlarm", "secondary"),
    ] {
        let p = props(&template, alarm);
        assert_eq!(
            p.get("MetricName").map(text).as_deref(),
            Some("ChannelOpened")
        );
        assert!(raw(p.get("Dimensions").expect("dimensions")).contains(channel));
    }
}

#[test]
fn local_signing_is_opt_in_and_only_the_payment_functions_open_the_sealed_key() {
    let template = template();
    let raw = |value: &Value| serde_yaml_ng::to_string(value).expect("yaml");
    let parameters = template.get("Parameters").expect("parameters");
    assert_eq!(
        parameters["SealedAppPrivateKey"]["Default"].as_str(),
        Some(""),
        "KMS Sign stays the default"
    );
    assert_eq!(parameters["SealingKey"]["Default"].as_str(), Some("none"));
    // The sealing key: symmetric, rotated, and opened (Decrypt) by the payment roles only, and
    // only for a ciphertext sealed as an Alipay application key.
    let key = resource(&template, "AppKeySealingKey");
    assert_eq!(
        key.get("Condition").map(text).as_deref(),
        Some("HasSealingKey")
    );
    let properties = props(&template, "AppKeySealingKey");
    assert_eq!(properties["KeySpec"].as_str(), Some("SYMMETRIC_DEFAULT"));
    assert_eq!(properties["EnableKeyRotation"].as_bool(), Some(true));
    let statements = properties["KeyPolicy"]["Statement"]
        .as_sequence()
        .expect("statements");
    for statement in statements {
        let actions = list(statement.get("Action"));
        let principal = raw(&statement["Principal"]);
        if actions.iter().any(|a| a == "kms:Decrypt" || a == "kms:*") {
            assert!(
                !principal.contains(":root"),
                "the account may not open: {principal}"
            );
            assert_eq!(
                statement["Condition"]["StringEquals"]["kms:EncryptionContext:purpose"].as_str(),
                Some("alipay-app-private-key")
            );
            for role in [
                "CreatePaymentRole",
                "RefundRole",
                "SubscriptionsRole",
                "SweeperRole",
                "ReconcileRole",
            ] {
                assert!(principal.contains(role), "{role}: {principal}");
            }
            assert!(!principal.contains("NotifyRole"), "notify never signs");
        }
    }
    let policy = resource(&template, "SealedKeyPolicy");
    assert_eq!(
        policy.get("Condition").map(text).as_deref(),
        Some("SignLocally")
    );
    let policy = raw(policy);
    assert!(
        policy.contains("kms:Decrypt") && policy.contains("alipay-app-private-key"),
        "{policy}"
    );
    assert!(!policy.contains("NotifyRole"), "{policy}");
    // Sealed set: the functions get the ciphertext and the sealing key, and no KMS_KEY_ID.
    for function in [
        "CreatePaymentFunction",
        "RefundFunction",
        "SubscriptionsFunction",
        "SweeperFunction",
        "ReconcileFunction",
    ] {
        let variables = props(&template, function)["Environment"]["Variables"].clone();
        let main = raw(&variables["KMS_KEY_ID"]);
        assert!(
            main.contains("SignLocally") && main.contains("AWS::NoValue"),
            "{function}: {main}"
        );
        for name in ["APP_PRIVATE_KEY_SEALED", "APP_KEY_SEALING_KMS_KEY_ID"] {
            let value = raw(&variables[name]);
            assert!(value.contains("SignLocally"), "{function} {name}: {value}");
        }
    }
}

/// The refund discrepancy alarm watches the metric the functions emit: the sweeper's run line
/// carries `RefundDiscrepancies` without dimensions, the alarm's metric.
#[test]
fn the_refund_discrepancy_alarm_watches_what_the_sweeper_emits() {
    let template = template();
    let alarm = template
        .get("Resources")
        .and_then(|r| r.get("RefundDiscrepanciesAlarm"))
        .and_then(|a| a.get("Properties"))
        .expect("RefundDiscrepanciesAlarm");
    let text = |key: &str| alarm.get(key).and_then(Value::as_str).map(str::to_owned);
    assert_eq!(text("Namespace").as_deref(), Some("AlipayGateway"));
    assert_eq!(text("MetricName").as_deref(), Some("RefundDiscrepancies"));
    assert!(
        alarm.get("Dimensions").is_none(),
        "the metric has no dimension"
    );
    let report = gateway::sweep::SweepReport {
        refunds_unproven: 2,
        ..gateway::sweep::SweepReport::default()
    };
    let line: serde_json::Value =
        serde_json::from_str(&report.emf_line("sweeper")).expect("EMF JSON");
    let directive = line["_aws"]["CloudWatchMetrics"]
        .as_array()
        .expect("directives")
        .iter()
        .find(|d| d["Metrics"][0]["Name"] == "RefundDiscrepancies")
        .expect("a RefundDiscrepancies directive")
        .clone();
    assert_eq!(directive["Namespace"], "AlipayGateway");
    assert_eq!(directive["Dimensions"], serde_json::json!([[]]));
    assert_eq!(line["RefundDiscrepancies"], 2);
}

#[test]
fn the_subscription_settings_are_parameters_every_function_reads() {
    let template = template();
    let variables = template
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .and_then(|f| f.get("Environment"))
        .and_then(|e| e.get("Variables"))
        .expect("global variables");
    let parameters = template.get("Parameters").expect("parameters");
    // Each variable is its parameter; with the parameters' defaults the configuration reads
    // them as the defaults the code documents.
    let mut vars = std::collections::HashMap::from([
        ("ORDERS_TABLE".to_owned(), "t".to_owned()),
        ("ALIPAY_APP_ID".to_owned(), "2021000000000001".to_owned()),
        ("ALIPAY_SELLER_ID".to_owned(), "2088000000000001".to_owned()),
        (
            "ALIPAY_PUBLIC_KEY".to_owned(),
            std::fs::read_to_string(
                gateway_tests::support::fixtures().join("keys/alipay_public_key.pem"),
            )
            .expect("key"),
        ),
    ]);
    for (variable, parameter) in [
        ("ALIPAY_AGREEMENT_PRODUCT_CODE", "AgreementProductCode"),
        ("ALIPAY_AGREEMENT_SIGN_SCENE", "AgreementSignScene"),
        (
            "SECONDARY_ALIPAY_AGREEMENT_PRODUCT_CODE",
            "AgreementProductCode",
        ),
        (
            "SECONDARY_ALIPAY_AGREEMENT_SIGN_SCENE",
            "AgreementSignScene",
        ),
        ("SUBSCRIPTION_LEAD_DAYS", "SubscriptionLeadDays"),
        ("SUBSCRIPTION_RETRIES", "SubscriptionRetries"),
        (
            "SUBSCRIPTION_RETRY_SPACING_DAYS",
            "SubscriptionRetrySpacingDays",
        ),
        ("SUBSCRIPTION_CHARGE_HOUR", "SubscriptionChargeHour"),
    ] {
        assert_eq!(
            variables.get(variable).map(text).as_deref(),
            Some(format!("!Ref {parameter}").as_str()),
            "{variable}"
        );
        let default = parameters
            .get(parameter)
            .and_then(|p| p.get("Default"))
            .map(text)
            .expect("a default");
        vars.insert(variable.to_owned(), default);
    }
    let config = gateway::config::Config::from_map(&vars).expect("the defaults configure");
    assert_eq!(config.dunning, domain::subscriptions::Dunning::default());
    assert_eq!(
        config.primary().agreement_product_code,
        "GENERAL_WITHHOLDING"
    );
    assert_eq!(
        config.primary().agreement_sign_scene,
        "INDUSTRY|DIGITAL_MEDIA"
    );
    // A schedule that does not fit in the window is refused at start.
    vars.insert("SUBSCRIPTION_LEAD_DAYS".into(), "1".into());
    assert!(gateway::config::Config::from_map(&vars).is_err());
}

/// Antom's reports need a fixed egress address, and only they do: the VPC, its subnets, the NAT
/// gateway and its Elastic IP, the endpoints and the security group exist only under
/// `HasAntomReports` (an Antom channel with `AntomSftpUser`), and the reconcile function is in
/// the VPC, may read the SFTP key's parameter and make network interfaces only then.
#[test]
fn the_fixed_egress_exists_only_with_antoms_reports() {
    let template = template();
    let raw = |value: &Value| serde_yaml_ng::to_string(value).expect("yaml");
    let conditions = template.get("Conditions").expect("conditions");
    let reports = raw(conditions.get("HasAntomReports").expect("HasAntomReports"));
    assert!(
        reports.contains("HasAntom") && reports.contains("AntomSftpUser"),
        "{reports}"
    );
    let mut egress = BTreeSet::new();
    for (id, resource) in template
        .get("Resources")
        .and_then(Value::as_mapping)
        .expect("resources")
    {
        let id = text(id);
        let kind = resource.get("Type").map(text).unwrap_or_default();
        if kind.starts_with("AWS::EC2::") {
            assert_eq!(
                resource.get("Condition").map(text).as_deref(),
                Some("HasAntomReports"),
                "{id}: no network is made without Antom's reports"
            );
            egress.insert(kind);
        }
    }
    for kind in [
        "AWS::EC2::VPC",
        "AWS::EC2::NatGateway",
        "AWS::EC2::EIP",
        "AWS::EC2::InternetGateway",
        "AWS::EC2::SecurityGroup",
        "AWS::EC2::VPCEndpoint",
    ] {
        assert!(egress.contains(kind), "{kind}");
    }
    let function = props(&template, "ReconcileFunction");
    let vpc = raw(function.get("VpcConfig").expect("VpcConfig"));
    assert!(
        vpc.contains("HasAntomReports") && vpc.contains("AWS::NoValue"),
        "{vpc}"
    );
    let role = raw(props(&template, "ReconcileRole"));
    for sid in ["AntomSftpKey", "VpcNetworkInterfaces", "VpcDescribe"] {
        let at = role
            .find(&format!("Sid: {sid}"))
            .unwrap_or_else(|| panic!("{sid}"));
        let before = &role[..at];
        assert!(
            before.rfind("HasAntomReports") > before.rfind("Sid:"),
            "{sid} is under HasAntomReports: {role}"
        );
    }
    // The SFTP key's name is a parameter, never the key; the host key is pinned by parameter.
    let environment = raw(function.get("Environment").expect("environment"));
    for variable in [
        "ANTOM_SFTP_USER",
        "ANTOM_SFTP_HOST_KEY",
        "ANTOM_SFTP_KEY_PARAMETER",
        "ANTOM_REPORTS_ROOT",
    ] {
        assert!(environment.contains(variable), "{variable}");
    }
    let outputs = template.get("Outputs").expect("outputs");
    assert_eq!(
        outputs
            .get("AntomSftpEgressIp")
            .and_then(|o| o.get("Condition"))
            .map(text)
            .as_deref(),
        Some("HasAntomReports")
    );
}
