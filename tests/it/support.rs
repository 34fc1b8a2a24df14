//! The local AWS as the tests see it: real SDK clients pointed at moto and the
//! SSM simulator (started by `make test` / dev/test.sh), and a fresh table and
//! fleet tag per test so tests can run in parallel.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_ssm::types::Command;
use flakefleet::auth::iam::IamAllowlist;
use flakefleet::auth::Gate;
use flakefleet::aws::{
    CallCounter, CloudWatchAlarms, DynamoReleaseStore, DynamoTokenLedger, Ec2FleetInventory, SsmCommandRunner,
    SsmSettings,
};
use flakefleet::domain::model::flakeref::FlakeAllowlist;
use flakefleet::domain::model::fleet::FleetSettings;
use flakefleet::domain::model::fleet::{FleetSpec, ImageSelector};
use flakefleet::domain::model::ids::{FleetName, TargetTag};
use flakefleet::domain::model::rollout::{Rate, RolloutMode, RolloutPolicy};
use flakefleet::domain::usecases::FleetController;
use flakefleet::AwsFleetController;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub const DOCUMENT: &str = "ApplyNixosDocument";
/// The role that signed events/function-url-deploy.json: the tests' writer.
pub const DEPLOY_ROLE: &str = "arn:aws:iam::123456789012:role/flakefleet-deploy";
/// The demo's instance profile, created in moto's IAM by [`Stack::new`].
pub const PROFILE: &str = "FlakeHubClientMachine";
/// The flakes the tests' fleets may run: GOOD's and NEXT's, and the seed
/// demo's, which events/function-url-deploy.json deploys.
pub const ALLOWED_FLAKES: &str = "AcmeCorp/infra, DeterminateSystems/flakehub-deploy-demo";
pub const GOOD: &str = "AcmeCorp/infra/=0.1.41+rev-1111111#nixosConfigurations.web";
pub const NEXT: &str = "AcmeCorp/infra/=0.1.42+rev-2222222#nixosConfigurations.web";

/// The IAM gate with the sample event's signer as the one writer.
pub fn gate() -> Gate<DynamoTokenLedger> {
    Gate::Iam(IamAllowlist { readers: Vec::new(), writers: IamAllowlist::parse_list(DEPLOY_ROLE).unwrap() })
}

pub fn endpoint(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run the integration tests with `make test`, which starts the local AWS and sets it")
    })
}

pub fn template() -> serde_norway::Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

pub fn sample_event(name: &str) -> Value {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The demo's fleet spec, with capacity left alone.
pub fn default_spec() -> FleetSpec {
    FleetSpec {
        desired_capacity: 0,
        instance_type: "t3a.nano".into(),
        subnets: vec![],
        security_groups: vec![],
        instance_profile: PROFILE.into(),
        image: ImageSelector {
            owner: "535002876703".into(),
            name_pattern: "determinate/nixos/epoch-1/26.05.*".into(),
            architecture: "x86_64".into(),
        },
        root_volume_gib: 16,
    }
}

/// The document settings the tests run with (the template's defaults).
pub fn ssm_settings() -> SsmSettings {
    SsmSettings {
        document: DOCUMENT.into(),
        action: "switch".into(),
        max_concurrency: "50".into(),
        max_errors: "0".into(),
        delivery_timeout_secs: 600,
        output_log_group: Some("/flakefleet/it/hosts".into()),
        document_version_name: None,
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One test's slice of the local AWS.
pub struct Stack {
    pub ssm: aws_sdk_ssm::Client,
    pub ec2: aws_sdk_ec2::Client,
    /// moto's CloudWatch: the rollback alarms.
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// The bus of this test's own that its table's notices pipe carries to
    /// (created by `listen`).
    pub bus: String,
    pub ddb: aws_sdk_dynamodb::Client,
    pub table: String,
    pub tag: TargetTag,
    pub fleet: FleetName,
    pub instances: Vec<String>,
}

impl Stack {
    /// A new table, and `instances` running instances carrying a tag of their own.
    pub async fn new(instances: i32) -> Self {
        let unique = format!("{}-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst), fastrand::u32(..));
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ssm::config::Credentials::new("testing", "testing", None, None, "tests"))
            .endpoint_url(endpoint("FLAKEFLEET_TEST_MOTO_URL"))
            .load()
            .await;
        let ssm_config =
            aws_sdk_ssm::config::Builder::from(&sdk).endpoint_url(endpoint("FLAKEFLEET_TEST_SSM_URL")).build();
        let stack = Self {
            ssm: aws_sdk_ssm::Client::from_conf(ssm_config),
            ec2: aws_sdk_ec2::Client::new(&sdk),
            cloudwatch: aws_sdk_cloudwatch::Client::new(&sdk),
            bus: format!("flakefleet-it-{unique}"),
            ddb: aws_sdk_dynamodb::Client::new(&sdk),
            table: format!("flakefleet-it-{unique}"),
            tag: TargetTag { key: "Name".into(), value: format!("it-{unique}") },
            fleet: FleetName::parse("it").unwrap(),
            instances: Vec::new(),
        };
        stack.create_table_from_template().await;
        let mut stack = stack;
        if instances > 0 {
            stack.instances = stack.launch(instances).await;
        }
        stack
    }

    /// Creates the table exactly as template.yaml declares it: if the code's
    /// keys disagree with the template, every test fails.
    async fn create_table_from_template(&self) {
        let template = template();
        let props = &template["Resources"]["ReleasesTable"]["Properties"];
        let mut create =
            self.ddb.create_table().table_name(&self.table).billing_mode(props["BillingMode"].as_str().unwrap().into());
        for def in props["AttributeDefinitions"].as_sequence().unwrap() {
            create = create.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(def["AttributeName"].as_str().unwrap())
                    .attribute_type(ScalarAttributeType::from(def["AttributeType"].as_str().unwrap()))
                    .build()
                    .unwrap(),
            );
        }
        for key in props["KeySchema"].as_sequence().unwrap() {
            create = create.key_schema(
                KeySchemaElement::builder()
                    .attribute_name(key["AttributeName"].as_str().unwrap())
                    .key_type(KeyType::from(key["KeyType"].as_str().unwrap()))
                    .build()
                    .unwrap(),
            );
        }
        let stream = &props["StreamSpecification"];
        create = create.stream_specification(
            aws_sdk_dynamodb::types::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(stream["StreamViewType"].as_str().unwrap().into())
                .build()
                .unwrap(),
        );
        create.send().await.expect("CreateTable");
        let ttl = &props["TimeToLiveSpecification"];
        self.ddb
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(ttl["AttributeName"].as_str().unwrap())
                    .enabled(ttl["Enabled"].as_bool().unwrap())
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("UpdateTimeToLive");
    }

    pub async fn launch(&self, count: i32) -> Vec<String> {
        let ids = self.launch_unregistered(count).await;
        // These tests need their hosts at once: their agents register now,
        // not after the simulator's registration delay.
        set_agents(&ids, "Online");
        ids
    }

    /// Instances whose SSM agents have not registered yet, as on AWS right
    /// after a launch.
    pub async fn launch_unregistered(&self, count: i32) -> Vec<String> {
        let out = self
            .ec2
            .run_instances()
            .image_id("ami-0f1a7e5eed0000001")
            .instance_type(aws_sdk_ec2::types::InstanceType::T3aNano)
            .min_count(count)
            .max_count(count)
            .tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                    .tags(aws_sdk_ec2::types::Tag::builder().key(&self.tag.key).value(&self.tag.value).build())
                    .build(),
            )
            .send()
            .await
            .expect("RunInstances");
        let mut ids: Vec<String> = out.instances().iter().filter_map(|i| i.instance_id().map(str::to_owned)).collect();
        ids.sort();
        ids
    }

    /// The demo's instance profile in moto's IAM (shared by the tests).
    pub async fn create_instance_profile(&self) {
        self.create_instance_profile_named(PROFILE).await;
    }

    /// Creates an instance profile in moto's IAM with the project's own
    /// script (boto3), which `make test` installs.
    pub async fn create_instance_profile_named(&self, name: &str) {
        fleet_py(&["profile", name]);
    }

    /// An SQS queue that receives every event on this test's bus, where the
    /// template's notices pipe carries this test's table's notices
    /// (dev/fleet.py listen).
    pub fn listen(&self) -> String {
        fleet_py(&["listen", &self.bus, &self.table]).trim().to_owned()
    }

    /// The notices pipe's dead-letter messages since last asked.
    pub fn dead_letters(&self) -> Vec<Value> {
        serde_json::from_str(&fleet_py(&["dead-letters", &self.table])).unwrap()
    }

    /// The events the queue received since last asked, once the pipes have
    /// carried every notice written so far.
    pub fn heard(&self, queue: &str) -> Vec<Value> {
        serde_json::from_str(&fleet_py(&["heard", queue])).unwrap()
    }

    pub fn settings(&self) -> FleetSettings {
        FleetSettings {
            name: self.fleet.clone(),
            target: self.tag.clone(),
            deploy_timeout: Duration::from_secs(600),
            idempotency_ttl: Duration::from_secs(3600),
            // The core loop's shape: one command to the tag, no automatic rollback.
            rollout: RolloutPolicy {
                mode: RolloutMode::AllAtOnce,
                canary: 1,
                wave: Rate::Percent(25),
                failure_threshold: Rate::Count(0),
                unreachable_tolerance: Rate::Count(1),
                auto_rollback: false,
                pause_before_waves: false,
                max_pause: std::time::Duration::from_secs(86_400),
                bake: std::time::Duration::ZERO,
                alarms: Vec::new(),
            },
            spec: default_spec(),
            takeover_after: Duration::ZERO,
            allowed_flakes: FlakeAllowlist::parse(ALLOWED_FLAKES).unwrap(),
            settle_limit: Duration::from_secs(60),
        }
    }

    pub fn controller(&self) -> AwsFleetController {
        self.controller_with(self.settings())
    }

    /// A controller whose clients count their calls in `calls`, as the Lambda's do.
    pub fn counted_controller(&self, calls: &CallCounter) -> AwsFleetController {
        self.counted_controller_with(calls, self.settings())
    }

    /// The same, with other settings.
    pub fn counted_controller_with(&self, calls: &CallCounter, settings: FleetSettings) -> AwsFleetController {
        let ddb = self.ddb.config().to_builder().interceptor(calls.clone()).build();
        let ec2 = self.ec2.config().to_builder().interceptor(calls.clone()).build();
        let ssm = self.ssm.config().to_builder().interceptor(calls.clone()).build();
        let cloudwatch = self.cloudwatch.config().to_builder().interceptor(calls.clone()).build();
        FleetController::new(
            DynamoReleaseStore::new(aws_sdk_dynamodb::Client::from_conf(ddb), &self.table),
            Ec2FleetInventory::new(aws_sdk_ec2::Client::from_conf(ec2)),
            SsmCommandRunner::new(aws_sdk_ssm::Client::from_conf(ssm), ssm_settings()),
            CloudWatchAlarms::new(aws_sdk_cloudwatch::Client::from_conf(cloudwatch)),
            settings,
        )
    }

    pub fn controller_with(&self, settings: FleetSettings) -> AwsFleetController {
        self.controller_storing_inline(settings, flakefleet::aws::dynamodb::INLINE_BODY_BYTES)
    }

    /// A controller that sends the document's version named `version_name`,
    /// as a Lambda with FLAKEFLEET_DOCUMENT_VERSION_NAME does.
    pub fn controller_sending_version(&self, settings: FleetSettings, version_name: &str) -> AwsFleetController {
        let ssm = SsmSettings { document_version_name: Some(version_name.into()), ..ssm_settings() };
        FleetController::new(
            DynamoReleaseStore::new(self.ddb.clone(), &self.table),
            Ec2FleetInventory::new(self.ec2.clone()),
            SsmCommandRunner::new(self.ssm.clone(), ssm),
            CloudWatchAlarms::new(self.cloudwatch.clone()),
            settings,
        )
    }

    /// A controller whose store moves release bodies over `inline_bytes` to part items.
    pub fn controller_storing_inline(&self, settings: FleetSettings, inline_bytes: usize) -> AwsFleetController {
        FleetController::new(
            DynamoReleaseStore::new(self.ddb.clone(), &self.table).with_inline_body_bytes(inline_bytes),
            Ec2FleetInventory::new(self.ec2.clone()),
            SsmCommandRunner::new(self.ssm.clone(), ssm_settings()),
            CloudWatchAlarms::new(self.cloudwatch.clone()),
            settings,
        )
    }

    /// Sends a function URL request through the real handler, built from
    /// events/function-url-deploy.json. Answers with the status and JSON body.
    pub async fn http(
        &self,
        controller: &AwsFleetController,
        method: &str,
        path_and_query: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let mut event = sample_event("function-url-deploy.json");
        event["rawPath"] = path.into();
        event["rawQueryString"] = query.into();
        event["requestContext"]["http"]["method"] = method.into();
        event["requestContext"]["http"]["path"] = path.into();
        let params: serde_json::Map<String, Value> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (k.to_owned(), Value::from(v))
            })
            .collect();
        event["queryStringParameters"] = Value::Object(params);
        event["body"] = body.map_or(Value::Null, Value::from);
        self.raw_http(controller, event).await
    }

    pub async fn raw_http(&self, controller: &AwsFleetController, event: Value) -> (u16, Value) {
        let response = flakefleet::entry::handle(controller, &gate(), event, "it")
            .await
            .expect("function URL requests always get a response");
        let status = response["statusCode"].as_u64().unwrap() as u16;
        assert_eq!(response["headers"]["content-type"], "application/json");
        let body = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        (status, body)
    }

    pub async fn deploy(&self, controller: &AwsFleetController, flakeref: &str) -> Value {
        let (status, body) =
            self.http(controller, "POST", "/releases", Some(&json!({ "flakeref": flakeref }).to_string())).await;
        assert_eq!(status, 202, "{body}");
        body["release"].clone()
    }

    /// Runs the reconcile as the EventBridge schedule would, until the release
    /// holding the fleet is final.
    pub async fn settle(&self, controller: &AwsFleetController) -> Value {
        let event = sample_event("eventbridge-scheduled.json");
        for _ in 0..50 {
            let answer = flakefleet::entry::handle(controller, &gate(), event.clone(), "it").await.expect("reconcile");
            let outcome = answer["reconcile"]["outcome"].as_str().unwrap().to_owned();
            if outcome == "finished" || outcome == "idle" {
                return answer["reconcile"].clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the release did not settle");
    }

    /// Every command the simulator received for this test's fleet.
    pub async fn commands(&self) -> Vec<Command> {
        let mut commands = Vec::new();
        let mut pages = self.ssm.list_commands().into_paginator().send();
        while let Some(page) = pages.next().await {
            for c in page.expect("ListCommands").commands() {
                let ours = c.targets().iter().any(|t| t.values().contains(&self.tag.value))
                    || c.instance_ids().iter().any(|i| self.instances.contains(i));
                if ours {
                    commands.push(c.clone());
                }
            }
        }
        commands
    }

    /// Every item in this test's table.
    pub async fn item_count(&self) -> usize {
        self.sort_keys().await.len()
    }

    /// The sort key of every item in this test's table.
    pub async fn sort_keys(&self) -> Vec<String> {
        let out = self.ddb.scan().table_name(&self.table).send().await.expect("Scan");
        out.items().iter().filter_map(|i| i.get("sk").and_then(|v| v.as_s().ok()).cloned()).collect()
    }

    /// Twenty deploys of different flakerefs at once, polled together on one
    /// task so their SDK calls interleave for real; answers each (status, body).
    pub async fn twenty_concurrent_deploys(&self, controller: &AwsFleetController) -> Vec<(u16, Value)> {
        let requests = (0..20).map(|n| {
            let body = json!({"flakeref": format!("AcmeCorp/infra/=0.2.{n}#nixosConfigurations.web")}).to_string();
            async move { self.http(controller, "POST", "/releases", Some(&body)).await }
        });
        futures::future::join_all(requests).await
    }

    /// Scripts the simulator: `rule` as in dev/README.md.
    pub fn script(&self, rule: Value) {
        script_simulator(rule);
    }
}

/// Runs dev/fleet.py against the local AWS; answers what it printed.
pub fn fleet_py(args: &[&str]) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(format!("{root}/.dev/venv/bin/python"))
        .arg(format!("{root}/dev/fleet.py"))
        .args(args)
        .current_dir(root)
        .env("AWS_ENDPOINT_URL", endpoint("FLAKEFLEET_TEST_MOTO_URL"))
        .env("AWS_ENDPOINT_URL_SSM", endpoint("FLAKEFLEET_TEST_SSM_URL"))
        .output()
        .expect("dev/fleet.py runs (make test installs .dev/venv)");
    assert!(out.status.success(), "dev/fleet.py {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Adds an outcome rule to the SSM simulator (see dev/README.md).
pub fn script_simulator(rule: Value) {
    let answer = post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/outcomes", &json!({ "rules": [rule] }));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Makes these instances fake hosts of the SSM simulator, which run the apply
/// document's own script (`host` as `POST /_sim/hosts` takes it, dev/README.md).
pub fn fake_hosts(instance_ids: &[String], host: Value) {
    let mut body = host;
    body["instance_ids"] = json!(instance_ids);
    let answer = post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/hosts", &body);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Registers these instances' agents Online at `version`: from 3.3.2746.0 on
/// an agent sets `SSM_<name>`, before it only pastes the parameter text.
pub fn agent_version(instance_ids: &[String], version: &str) {
    let body = json!({"instance_ids": instance_ids, "ping_status": "Online", "agent_version": version});
    let answer = post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/agents", &body);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Sets the SSM simulator's managed-node status of these instances
/// (`Online`, `ConnectionLost`, `Inactive` or `NotRegistered`).
pub fn set_agents(instance_ids: &[String], ping_status: &str) {
    let body = json!({ "instance_ids": instance_ids, "ping_status": ping_status });
    let answer = post_control("FLAKEFLEET_TEST_SSM_URL", "/_sim/agents", &body);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Scripts the moto wrapper's strictness (`/_strict/faults` or `/_strict/pages`,
/// see dev/README.md); rules are scoped to one test's table or tag.
pub fn script_moto(path: &str, rule: Value) {
    let answer = post_control("FLAKEFLEET_TEST_MOTO_URL", path, &rule);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// GETs a local emulator's control endpoint; answers its JSON body.
pub fn get_control(url_var: &str, path: &str) -> Value {
    let url = endpoint(url_var);
    let addr = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or_default()).unwrap()
}

/// POSTs a JSON body to a local emulator's control endpoint; answers the raw HTTP answer.
pub fn post_control(url_var: &str, path: &str, body: &Value) -> String {
    let url = endpoint(url_var);
    let addr = url.trim_start_matches("http://");
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// Serves HTTP/1.1 on `listener` (one request per connection, bodies ignored):
/// `answer` gets each request's head and returns the status and a JSON body.
/// For what the tests stand in for outside AWS: an OIDC issuer, a GitHub runner.
pub fn serve_http(listener: tokio::net::TcpListener, mut answer: impl FnMut(&str) -> (u16, String) + Send + 'static) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let (status, body) = answer(&String::from_utf8_lossy(&head));
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
}

/// The instance ids in a `GET /fleet` answer (`{"fleet": {"instances": [...]}}`).
pub fn fleet_instance_ids(fleet: &Value) -> Vec<String> {
    let instances = fleet["fleet"]["instances"].as_array().unwrap_or_else(|| panic!("no instances in {fleet}"));
    instances.iter().map(|i| i["instance_id"].as_str().unwrap().to_owned()).collect()
}

/// Asserts that each answer is a valid `body` (a name under `x-responses`
/// in docs/api/schema.json), checked by the contract's own validator
/// (dev/validate_api.py, the `jsonschema` package), not by the types that
/// wrote it.
pub fn assert_valid(body: &str, answers: &[&Value]) {
    use std::io::Write;
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = std::process::Command::new(format!("{root}/.dev/venv/bin/python"))
        .arg(format!("{root}/dev/validate_api.py"))
        .arg(body)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("dev/validate_api.py runs (make test installs .dev/venv)");
    let lines: String = answers.iter().map(|a| format!("{a}\n")).collect();
    child.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
