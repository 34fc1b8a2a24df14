//! template.yaml and the code agree: table keys, the document's pattern, the
//! configuration the function is given.

use crate::support::{sample_event, template};
use flakefleet::aws::dynamodb::{PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE};
use flakefleet::config::Config;
use flakefleet::domain::model::flakeref::{FLAKEREF_MAX_LEN, FLAKEREF_PATTERN};
use std::cell::RefCell;
use std::collections::BTreeSet;

#[test]
fn table_keys_match_the_store() {
    let t = template();
    let props = &t["Resources"]["ReleasesTable"]["Properties"];
    let key = |kind: &str| {
        props["KeySchema"].as_sequence().unwrap().iter().find(|k| k["KeyType"] == kind).unwrap()["AttributeName"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(key("HASH"), PARTITION_KEY);
    assert_eq!(key("RANGE"), SORT_KEY);
    assert_eq!(props["TimeToLiveSpecification"]["AttributeName"].as_str(), Some(TTL_ATTRIBUTE));
    assert_eq!(props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(), Some(true));
}

#[test]
fn the_document_validates_flakerefs_with_the_same_regex() {
    let t = template();
    let content = &t["Resources"]["ApplyNixosDocument"]["Properties"]["Content"];
    let flakeref = &content["parameters"]["flakeref"];
    assert_eq!(flakeref["allowedPattern"].as_str(), Some(FLAKEREF_PATTERN));
    assert_eq!(flakeref["maxChars"].as_u64(), Some(FLAKEREF_MAX_LEN as u64));
    assert_eq!(flakeref["interpolationType"].as_str(), Some("ENV_VAR"));
    let actions: Vec<&str> = content["parameters"]["action"]["allowedValues"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(actions, ["switch", "boot", "test", "dry-activate", "check"]);

    // The host re-checks with the same pattern. Old agents paste the
    // parameter's text: it lands below the script's final exit only, under
    // the marker the script reads it back from, never in code; the variable
    // wins where an agent sets one.
    let script = content["mainSteps"][0]["inputs"]["runCommand"][0].as_str().unwrap();
    assert!(script.contains(&format!("pattern='{FLAKEREF_PATTERN}'")));
    assert!(script.contains("set -euf -o pipefail"));
    assert!(
        script.ends_with("\nexit 0\n# The parameter text the agent pastes, read by pasted() and never run:\n# flakefleet-parameters\n{{ action }}\n{{ flakeref }}"),
        "the text goes below the final exit, last: {}",
        &script[script.len() - 200..]
    );
    for name in ["flakeref", "action"] {
        assert_eq!(script.matches(&format!("{{{{ {name} }}}}")).count(), 1, "{name} pasted once");
    }
    assert_eq!(script.matches("{{").count(), 2, "no other parameter text");
}

#[test]
fn the_function_gets_exactly_the_configuration_the_code_reads() {
    let t = template();
    let given: BTreeSet<String> = t["Resources"]["FlakefleetFunction"]["Properties"]["Environment"]["Variables"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    // Every variable read in either deployable auth mode (none is for local use only).
    let read = RefCell::new(BTreeSet::new());
    for mode in ["iam", "github-oidc"] {
        Config::from_lookup(|name| {
            read.borrow_mut().insert(name.to_owned());
            match name {
                "FLAKEFLEET_TABLE" | "FLAKEFLEET_DOCUMENT" | "FLAKEFLEET_OIDC_AUDIENCE" => Some("x".into()),
                "FLAKEFLEET_ALLOWED_FLAKES" => Some("AcmeCorp/infra".into()),
                "FLAKEFLEET_OIDC_REPOSITORY_ID" | "FLAKEFLEET_OIDC_REPOSITORY_OWNER_ID" => Some("1".into()),
                "FLAKEFLEET_AUTH" => Some(mode.into()),
                _ => None,
            }
        })
        .unwrap();
    }
    let read = read.into_inner();
    // These keep their defaults in the template: the idempotency window, GitHub's issuer, the warm-up.
    let defaults = [
        "FLAKEFLEET_IDEMPOTENCY_TTL_SECONDS",
        "FLAKEFLEET_OIDC_ISSUER",
        "FLAKEFLEET_OIDC_JWKS_URL",
        "FLAKEFLEET_WARM_CONNECTIONS",
    ];
    let expected: BTreeSet<String> = read.into_iter().filter(|v| !defaults.contains(&v.as_str())).collect();
    assert_eq!(given, expected);
}

/// Every statement the function's role gets: SAM's inline policies and the
/// policy whose condition key names the tag (a JSON string with ${...}).
pub(crate) fn function_statements(t: &serde_norway::Value) -> Vec<serde_norway::Value> {
    let mut statements: Vec<serde_norway::Value> = Vec::new();
    for policy in t["Resources"]["FlakefleetFunction"]["Properties"]["Policies"].as_sequence().unwrap() {
        statements.extend(policy["Statement"].as_sequence().unwrap().iter().cloned());
    }
    let sub = t["Resources"]["SendToFleetInstancesPolicy"]["Properties"]["PolicyDocument"]["Fn::Sub"].as_str().unwrap();
    let document: serde_norway::Value = serde_norway::from_str(sub).unwrap();
    statements.extend(document["Statement"].as_sequence().unwrap().iter().cloned());
    statements
}

pub(crate) fn strings(v: &serde_norway::Value) -> Vec<String> {
    match v {
        serde_norway::Value::String(s) => vec![s.clone()],
        serde_norway::Value::Sequence(items) => items.iter().flat_map(strings).collect(),
        serde_norway::Value::Mapping(m) => m.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn the_function_role_grants_only_what_the_code_uses() {
    let t = template();
    let statements = function_statements(&t);
    let with_action = |action: &str| -> Vec<&serde_norway::Value> {
        statements.iter().filter(|s| strings(&s["Action"]).iter().any(|a| a == action)).collect()
    };
    for s in &statements {
        assert_eq!(s["Effect"].as_str(), Some("Allow"));
        assert!(strings(&s["Action"]).iter().all(|a| !a.contains('*')), "wildcard action: {s:?}");
    }
    // Writes and sends are never on every resource.
    for action in
        ["ssm:SendCommand", "ec2:RunInstances", "ec2:CreateTags", "ec2:DeleteTags", "iam:PassRole", "dynamodb:PutItem"]
    {
        for s in with_action(action) {
            assert_ne!(s["Resource"].as_str(), Some("*"), "{action} on *");
        }
    }
    // SendCommand: the project's document, and instances only with the fleet tag.
    for s in with_action("ssm:SendCommand") {
        let resource = strings(&s["Resource"]).join(" ");
        assert!(
            resource.contains(":document/${ApplyNixosDocument}")
                || (resource.ends_with(":instance/*")
                    && s["Condition"]["StringEquals"]["ssm:resourceTag/${TargetTagKey}"] == "${TargetTagValue}"),
            "{s:?}"
        );
    }
    // RunInstances: instances only with the fleet tag and the fleet's profile, images only from the owner.
    let launches = with_action("ec2:RunInstances");
    let instance = launches.iter().find(|s| strings(&s["Resource"]).join("").ends_with(":instance/*")).unwrap();
    let conditions = &instance["Condition"]["StringEquals"];
    assert_eq!(conditions["aws:RequestTag/flakefleet:fleet"]["Ref"].as_str(), Some("FleetName"));
    assert!(strings(&conditions["ec2:InstanceProfile"])
        .join("")
        .ends_with(":instance-profile${InstanceProfilePath}${InstanceProfileName}"));
    let image = launches.iter().find(|s| strings(&s["Resource"]).join("").ends_with(":image/*")).unwrap();
    assert_eq!(image["Condition"]["StringEquals"]["ec2:Owner"]["Ref"].as_str(), Some("AmiOwner"));
    // CreateTags: at launch, or the release tag on the fleet's instances.
    for s in with_action("ec2:CreateTags") {
        let launch = s["Condition"]["StringEquals"]["ec2:CreateAction"].as_str() == Some("RunInstances");
        let release_tag = s["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"]
            == serde_norway::Value::Sequence(vec!["flakefleet:release".into()]);
        assert!(launch || release_tag, "{s:?}");
    }
    // DeleteTags: only the release tag (forgotten after a failure), only on the fleet's instances.
    let untag = with_action("ec2:DeleteTags");
    assert_eq!(untag.len(), 1);
    assert_eq!(
        untag[0]["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"],
        serde_norway::Value::Sequence(vec!["flakefleet:release".into()])
    );
    assert_eq!(untag[0]["Condition"]["StringEquals"]["aws:ResourceTag/${TargetTagKey}"], "${TargetTagValue}");
    // PassRole: the instance role, to EC2 only.
    let pass = with_action("iam:PassRole");
    assert_eq!(pass.len(), 1);
    assert!(strings(&pass[0]["Resource"]).join("").ends_with(":role${InstanceRolePath}${InstanceRoleName}"));
    assert_eq!(pass[0]["Condition"]["StringEquals"]["iam:PassedToService"].as_str(), Some("ec2.amazonaws.com"));
    // No PutEvents: the notices pipe carries the notices (its own role), and
    // no write beyond the table's items one at a time or in transactions.
    assert!(with_action("events:PutEvents").is_empty());
    assert!(with_action("dynamodb:BatchWriteItem").is_empty());
    let env = &t["Resources"]["FlakefleetFunction"]["Properties"]["Environment"]["Variables"];
    assert!(env.get("FLAKEFLEET_EVENT_BUS").is_none());
    // DynamoDB: the table and nothing else.
    for s in statements.iter().filter(|s| strings(&s["Action"]).iter().any(|a| a.starts_with("dynamodb:"))) {
        assert_eq!(s["Resource"]["Fn::GetAtt"][0].as_str(), Some("ReleasesTable"), "{s:?}");
    }

    let table = &t["Resources"]["ReleasesTable"]["Properties"];
    assert_eq!(table["DeletionProtectionEnabled"].as_bool(), Some(true));
    assert_eq!(table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(), Some(true));
}

#[test]
fn the_github_deploy_role_trusts_one_environment_and_may_only_call_the_url() {
    let t = template();
    let role = &t["Resources"]["GitHubDeployRole"]["Properties"];
    let trust = &role["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(trust["Action"].as_str(), Some("sts:AssumeRoleWithWebIdentity"));
    let condition = &trust["Condition"]["StringEquals"];
    assert_eq!(condition["token.actions.githubusercontent.com:aud"].as_str(), Some("sts.amazonaws.com"));
    let subjects = strings(&condition["token.actions.githubusercontent.com:sub"]);
    assert!(subjects.contains(&"repo:${GitHubRepository}:environment:${GitHubEnvironment}".to_owned()));
    assert!(subjects.contains(&"repository_id:${GitHubRepositoryId}:environment:${GitHubEnvironment}".to_owned()));
    assert!(subjects.iter().all(|s| !s.contains('*') && !s.contains(":ref:")), "{subjects:?}");
    assert_eq!(t["Parameters"]["GitHubEnvironment"]["Default"].as_str(), Some("production"));
    // The stack refuses a deploy role without an environment.
    let rule = &t["Rules"]["GitHubDeployRoleNeedsAnEnvironment"];
    assert_eq!(
        rule["Assertions"][0]["Assert"]["Fn::Not"][0]["Fn::Equals"][0]["Ref"].as_str(),
        Some("GitHubEnvironment")
    );
    let rule = &t["Rules"]["GitHubOidcNeedsAJobPin"];
    let pinned: Vec<&str> = rule["Assertions"][0]["Assert"]["Fn::Not"][0]["Fn::And"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| e["Fn::Equals"][0]["Ref"].as_str().unwrap())
        .collect();
    assert_eq!(pinned, ["OidcEnvironments", "OidcWorkflowRefs"]);

    let allowed = role["Policies"][0]["PolicyDocument"]["Statement"].as_sequence().unwrap();
    assert_eq!(allowed.len(), 2);
    for statement in allowed {
        assert_eq!(statement["Resource"]["Fn::GetAtt"][0].as_str(), Some("FlakefleetFunction"));
        match statement["Action"].as_str().unwrap() {
            "lambda:InvokeFunctionUrl" => {
                assert_eq!(
                    statement["Condition"]["StringEquals"]["lambda:FunctionUrlAuthType"].as_str(),
                    Some("AWS_IAM")
                )
            }
            "lambda:InvokeFunction" => {
                assert_eq!(statement["Condition"]["Bool"]["lambda:InvokedViaFunctionUrl"].as_str(), Some("true"))
            }
            other => panic!("the deploy role may not {other}"),
        }
    }
}

#[test]
fn the_flake_allowlist_is_required_and_reaches_the_function() {
    let t = template();
    let parameter = &t["Parameters"]["AllowedFlakes"];
    assert!(parameter.get("Default").is_none(), "no default: every stack names its flakes");
    let pattern = regex::Regex::new(parameter["AllowedPattern"].as_str().unwrap()).unwrap();
    for ok in ["AcmeCorp/infra", "AcmeCorp/infra,AcmeCorp/edge", "a/b, c/d.e"] {
        assert!(pattern.is_match(ok), "{ok}");
    }
    for bad in ["", " ", "AcmeCorp/*", "AcmeCorp", "*", "AcmeCorp/infra,", "a/b;c"] {
        assert!(!pattern.is_match(bad), "{bad:?}");
        assert!(
            flakefleet::domain::model::flakeref::FlakeAllowlist::parse(bad).is_err() || bad.ends_with(','),
            "{bad:?}"
        );
    }
    let env = &t["Resources"]["FlakefleetFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(env["FLAKEFLEET_ALLOWED_FLAKES"]["Ref"].as_str(), Some("AllowedFlakes"));
}

/// template.yaml after the SAM transform, as CloudFormation sees it: the
/// permissions SAM generates for the schedule and the event rule are there.
pub(crate) fn expanded_template() -> serde_json::Value {
    let root = env!("CARGO_MANIFEST_DIR");
    // Tests expand it side by side: a file each.
    let path =
        std::env::temp_dir().join(format!("flakefleet-expanded-{}-{}.json", std::process::id(), fastrand::u64(..)));
    let status = std::process::Command::new(format!("{root}/.dev/venv/bin/python"))
        .args([&format!("{root}/dev/lint-template.py"), "--expand-to", path.to_str().unwrap()])
        .current_dir(root)
        .status()
        .expect("dev/lint-template.py runs (make test installs .dev/venv)");
    assert!(status.success(), "the SAM transform failed");
    let expanded = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(path);
    expanded
}

fn json_strings(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(items) => items.iter().flat_map(json_strings).collect(),
        _ => Vec::new(),
    }
}

/// Whether an action pattern (`lambda:InvokeFunction`, `lambda:*`, `*`) covers InvokeFunction.
fn covers_invoke_function(action: &str) -> bool {
    let action = action.to_ascii_lowercase();
    ["lambda:invokefunction", "lambda:*", "lambda:invoke*", "lambda:invokef*", "*"].contains(&action.as_str())
}

/// The services whose triggers carry the template's own fixed payload (the
/// schedule's `{"action": "reconcile"}`, SSM status events): direct invokes by design.
const TRIGGER_SERVICES: [&str; 2] = ["scheduler.amazonaws.com", "events.amazonaws.com"];

/// Who may invoke the function directly, which skips the function URL's
/// allowlist: every grant of lambda:InvokeFunction the stack makes, in an
/// identity policy or in the function's resource policy, is conditioned on
/// `lambda:InvokedViaFunctionUrl`, or goes to the stack's own schedule or
/// event rule.
#[test]
fn no_principal_the_stack_creates_may_invoke_the_function_directly() {
    let t = expanded_template();
    let mut grants = 0;
    for (name, resource) in t["Resources"].as_object().unwrap() {
        let props = &resource["Properties"];
        match resource["Type"].as_str().unwrap() {
            "AWS::Lambda::Permission" => {
                if !covers_invoke_function(props["Action"].as_str().unwrap()) {
                    continue;
                }
                grants += 1;
                let via_url = props["InvokedViaFunctionUrl"] == serde_json::json!(true);
                let trigger = TRIGGER_SERVICES.contains(&props["Principal"].as_str().unwrap_or(""))
                    && props["SourceArn"]["Fn::GetAtt"][0].as_str().is_some_and(|r| t["Resources"].get(r).is_some());
                assert!(via_url || trigger, "{name} lets {} invoke the function directly", props["Principal"]);
            }
            "AWS::IAM::Role" | "AWS::IAM::Policy" | "AWS::IAM::RolePolicy" | "AWS::IAM::ManagedPolicy" => {
                let trusted: Vec<String> = props["AssumeRolePolicyDocument"]["Statement"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|s| json_strings(&s["Principal"]["Service"]))
                    .collect();
                let documents: Vec<&serde_json::Value> = match props["Policies"].as_array() {
                    Some(policies) => policies.iter().map(|p| &p["PolicyDocument"]).collect(),
                    None => vec![&props["PolicyDocument"]],
                };
                for document in documents {
                    // A document written as a JSON string inside Fn::Sub.
                    let parsed;
                    let document = match document["Fn::Sub"].as_str() {
                        Some(text) => {
                            parsed = serde_json::from_str::<serde_json::Value>(text).unwrap();
                            &parsed
                        }
                        None => document,
                    };
                    for statement in document["Statement"].as_array().into_iter().flatten() {
                        if !json_strings(&statement["Action"]).iter().any(|a| covers_invoke_function(a)) {
                            continue;
                        }
                        grants += 1;
                        let via_url = statement["Condition"]["Bool"]["lambda:InvokedViaFunctionUrl"] == "true";
                        let trigger =
                            !trusted.is_empty() && trusted.iter().all(|s| TRIGGER_SERVICES.contains(&s.as_str()));
                        assert!(via_url || trigger, "{name} may invoke the function directly: {statement}");
                    }
                }
            }
            _ => {}
        }
    }
    // The public URL's permission, the deploy role's, the schedule's role, the
    // SSM status rule's and the rollback alarms' rule's.
    assert_eq!(grants, 5, "a grant of InvokeFunction went unseen");
}

/// A job of a shipped workflow, as GitHub would describe it in its OIDC token.
struct Job {
    workflow: String,
    name: String,
    environment: Option<String>,
    /// `permissions: id-token: write`: it can mint tokens.
    mints_tokens: bool,
    /// It calls the function URL (the deploy script).
    deploys: bool,
}

fn shipped_jobs() -> Vec<Job> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/.github/workflows");
    let mut jobs = Vec::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let workflow: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        for (name, job) in workflow["jobs"].as_mapping().unwrap() {
            let steps = serde_norway::to_string(&job["steps"]).unwrap();
            jobs.push(Job {
                workflow: path.file_name().unwrap().to_string_lossy().into_owned(),
                name: name.as_str().unwrap().to_owned(),
                environment: job["environment"].as_str().map(|e| environment_by_default(e, &workflow)),
                mints_tokens: job["permissions"]["id-token"].as_str() == Some("write")
                    || (job["permissions"].is_null() && workflow["permissions"]["id-token"].as_str() == Some("write")),
                deploys: steps.contains("/actions/deploy"),
            });
        }
    }
    assert!(
        jobs.iter().any(|j| j.deploys) && jobs.iter().any(|j| j.mints_tokens && !j.deploys),
        "the workflows changed shape"
    );
    jobs
}

/// A job's environment as it runs by default: a literal, or an expression
/// over the workflow's `environment` input, which takes its default.
fn environment_by_default(expression: &str, workflow: &serde_norway::Value) -> String {
    let Some(inner) = expression.trim().strip_prefix("${{").and_then(|e| e.strip_suffix("}}")) else {
        return expression.to_owned();
    };
    let inner = inner.trim();
    if let Some((_, fallback)) = inner.split_once("||") {
        return fallback.trim().trim_matches('\'').to_owned();
    }
    assert_eq!(inner, "inputs.environment", "an environment the test cannot resolve: {expression}");
    let on = &workflow["on"];
    let input = if on["workflow_call"].is_mapping() { &on["workflow_call"] } else { &on["workflow_dispatch"] };
    input["inputs"]["environment"]["default"].as_str().expect("the environment input has a default").to_owned()
}

/// `${Param}` in a Fn::Sub string, from the template's parameter defaults and `given`.
fn substitute(text: &str, t: &serde_norway::Value, given: &[(&str, &str)]) -> String {
    let mut out = text.to_owned();
    for (name, param) in t["Parameters"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        let value = given
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| (*v).to_owned())
            .or_else(|| param["Default"].as_str().map(str::to_owned))
            .unwrap_or_default();
        out = out.replace(&format!("${{{name}}}"), &value);
    }
    out
}

/// With the template's defaults, the deploy role (iam mode) and the token
/// policy (github-oidc mode) trust the subject each shipped job sends if and
/// only if that job deploys: the publishing job, which mints tokens and runs
/// third-party actions, gets neither.
#[test]
fn the_deploy_trust_admits_exactly_the_jobs_that_deploy() {
    let t = template();
    let repo = "acme/fleet";
    let given = [("GitHubRepository", repo)];
    let condition = &t["Resources"]["GitHubDeployRole"]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
        ["Condition"]["StringEquals"];
    // Default: GitHubRepositoryId is empty, so the If takes its second branch.
    let subject = &condition["token.actions.githubusercontent.com:sub"]["Fn::If"];
    assert_eq!(subject[0].as_str(), Some("HasGitHubRepositoryId"));
    assert_eq!(t["Parameters"]["GitHubRepositoryId"]["Default"].as_str(), Some(""));
    let trusted_sub = substitute(subject[2]["Fn::Sub"].as_str().unwrap(), &t, &given);
    let with_id = substitute(subject[1]["Fn::Sub"].as_str().unwrap(), &t, &[("GitHubRepositoryId", "123")]);
    assert_eq!(
        with_id, "repository_id:123:environment:production",
        "GitHub's subject with include_claim_keys [repository_id, context]"
    );

    let default = |name: &str| t["Parameters"][name]["Default"].as_str().unwrap_or("").to_owned();
    let list = |raw: String| -> Vec<String> {
        raw.split(',').map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned).collect()
    };
    let policy = flakefleet::auth::oidc::OidcPolicy {
        issuer: "https://token.actions.githubusercontent.com".into(),
        audience: "flakefleet-prod".into(),
        repository_id: "1".into(),
        repository_owner_id: "2".into(),
        refs: list(default("OidcRefs")),
        environments: list(default("OidcEnvironments")),
        workflow_refs: list(default("OidcWorkflowRefs")),
    };
    let now = flakefleet::domain::model::time::Timestamp::from_millis(1_800_000_000_000);

    for job in shipped_jobs().iter().filter(|j| j.mints_tokens) {
        // GitHub's default subject: the environment when the job declares one, else the ref.
        let sub = match &job.environment {
            Some(env) => format!("repo:{repo}:environment:{env}"),
            None => format!("repo:{repo}:ref:refs/heads/main"),
        };
        let iam_trusts = sub == trusted_sub;
        let claims: flakefleet::auth::oidc::GithubClaims = serde_json::from_value(serde_json::json!({
            "iss": policy.issuer, "aud": policy.audience, "exp": now.secs() + 300, "iat": now.secs(),
            "jti": format!("{}-{}", job.workflow, job.name), "repository_id": "1", "repository_owner_id": "2",
            "repository": repo, "ref": "refs/heads/main", "environment": job.environment,
            "job_workflow_ref": format!("{repo}/.github/workflows/{}@refs/heads/main", job.workflow),
        }))
        .unwrap();
        let oidc_trusts = flakefleet::auth::oidc::check_claims(&claims, &policy, now).is_ok();
        assert_eq!(iam_trusts, job.deploys, "iam: {}/{} sends {sub}; trusted: {trusted_sub}", job.workflow, job.name);
        assert_eq!(oidc_trusts, job.deploys, "github-oidc: {}/{}", job.workflow, job.name);
    }
}

/// Third-party actions run with the job's token: each is pinned to a full
/// commit, with the version it was in a comment (for people and Dependabot).
#[test]
fn workflows_pin_every_action_to_a_commit() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/.github");
    let mut files = Vec::new();
    for dir in ["workflows", "actions"] {
        let mut stack = vec![std::path::PathBuf::from(format!("{root}/{dir}"))];
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                files.push(path);
            }
        }
    }
    let pinned = regex::Regex::new(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40} # \S.*$").unwrap();
    let mut seen = 0;
    for file in files {
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            let Some(uses) = line.trim().trim_start_matches("- ").strip_prefix("uses:") else { continue };
            let uses = uses.trim();
            if uses.starts_with("./") {
                continue;
            }
            seen += 1;
            assert!(pinned.is_match(uses), "{}: {uses:?} is not pinned to a commit with its version", file.display());
        }
    }
    assert!(seen >= 5, "found only {seen} actions");
}

/// Lambda refuses a reservation that would leave the account fewer than 100
/// unreserved executions (new accounts often have 10 in all): the stack
/// reserves none unless asked.
#[test]
fn reserved_concurrency_is_off_unless_asked_for() {
    let t = template();
    let parameter = &t["Parameters"]["ReservedConcurrency"];
    assert_eq!((parameter["Default"].as_i64(), parameter["MinValue"].as_i64()), (Some(0), Some(0)));
    assert!(parameter["Description"].as_str().unwrap().contains("100 unreserved"));
    let condition = serde_json::to_value(&t["Conditions"]["HasReservedConcurrency"]).unwrap();
    assert_eq!(condition, serde_json::json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "ReservedConcurrency"}, 0]}]}));
    let reserved =
        serde_json::to_value(&t["Resources"]["FlakefleetFunction"]["Properties"]["ReservedConcurrentExecutions"]);
    assert_eq!(
        reserved.unwrap(),
        serde_json::json!({"Fn::If": ["HasReservedConcurrency", {"Ref": "ReservedConcurrency"}, {"Ref": "AWS::NoValue"}]})
    );
}

/// IAM ARNs carry the path (`arn:aws:iam::123456789012:role/fleet/Name`), names
/// do not: names with a slash are refused, and paths have parameters of their own.
#[test]
fn iam_names_and_paths_are_given_apart() {
    let t = template();
    for (name, path) in [("InstanceProfileName", "InstanceProfilePath"), ("InstanceRoleName", "InstanceRolePath")] {
        let pattern = regex::Regex::new(t["Parameters"][name]["AllowedPattern"].as_str().unwrap()).unwrap();
        assert!(pattern.is_match("FlakeHubClientMachine"), "{name}");
        assert!(!pattern.is_match("fleet/FlakeHubClientMachine") && !pattern.is_match(""), "{name}");
        let path_pattern = regex::Regex::new(t["Parameters"][path]["AllowedPattern"].as_str().unwrap()).unwrap();
        assert_eq!(t["Parameters"][path]["Default"].as_str(), Some("/"));
        for good in ["/", "/fleet/", "/a/b/"] {
            assert!(path_pattern.is_match(good), "{path} {good}");
        }
        for bad in ["", "fleet/", "/fleet", "//"] {
            assert!(!path_pattern.is_match(bad), "{path} {bad:?}");
        }
    }
}

/// Whether an EventBridge event pattern (literal values in arrays, nested
/// objects) matches an event, with `Ref`s of the pattern given as `refs`.
fn pattern_matches(pattern: &serde_json::Value, event: &serde_json::Value, refs: &[(&str, &str)]) -> bool {
    use serde_json::Value;
    let Value::Object(fields) = pattern else { return false };
    fields.iter().all(|(key, want)| {
        let got = &event[key];
        match want {
            Value::Object(_) => pattern_matches(want, got, refs),
            Value::Array(allowed) => allowed.iter().any(|a| {
                let a = match a.get("Ref").and_then(Value::as_str) {
                    Some(name) => Value::from(refs.iter().find(|(n, _)| *n == name).map_or("?", |(_, v)| *v)),
                    None => a.clone(),
                };
                *got == a
            }),
            _ => false,
        }
    })
}

/// The SSM rule wakes the function once per command (a batch of a wave) when
/// it ends, for this stack's document only: never per instance, never for
/// progress; and what it delivers is a reconcile to the code.
#[test]
fn the_ssm_rule_matches_only_commands_of_this_document_that_ended() {
    let t = template();
    let pattern = serde_json::to_value(
        &t["Resources"]["FlakefleetFunction"]["Properties"]["Events"]["CommandStatus"]["Properties"]["Pattern"],
    )
    .unwrap();
    let sample = crate::support::sample_event("eventbridge-ssm-status.json");
    let document = sample["detail"]["document-name"].as_str().unwrap().to_owned();
    let refs = [("ApplyNixosDocument", document.as_str())];
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut event = sample.clone();
        f(&mut event);
        event
    };
    assert!(pattern_matches(&pattern, &sample, &refs), "the sample: {sample}");
    for status in ["Success", "Failed", "TimedOut", "Cancelled"] {
        assert!(pattern_matches(&pattern, &with(&|e| e["detail"]["status"] = status.into()), &refs), "{status}");
    }
    for status in ["Pending", "InProgress", "Delayed", "Cancelling"] {
        assert!(!pattern_matches(&pattern, &with(&|e| e["detail"]["status"] = status.into()), &refs), "{status}");
    }
    let per_instance = with(&|e| e["detail-type"] = "EC2 Command Invocation Status-change Notification".into());
    assert!(!pattern_matches(&pattern, &per_instance, &refs), "one event per instance is not wanted");
    assert!(!pattern_matches(&pattern, &with(&|e| e["detail"]["document-name"] = "AWS-RunShellScript".into()), &refs));
    let (source, detail_type) = (sample["source"].as_str().unwrap(), sample["detail-type"].as_str().unwrap());
    assert!(flakefleet::entry::event::is_reconcile_trigger(source, detail_type), "the code reconciles on it");
}

/// The rollback alarms: read on `*` (CloudWatch returns composite alarms only
/// to a caller allowed DescribeAlarms on every alarm), and their changes into
/// ALARM invoke the function; both only when alarms are named. The sample
/// event matches the rule as EventBridge would match it.
#[test]
fn rollback_alarms_are_read_by_name_and_their_alarm_state_changes_invoke_the_function() {
    let t = template();
    let policy = &t["Resources"]["DescribeRollbackAlarmsPolicy"];
    assert_eq!(policy["Condition"].as_str(), Some("HasRollbackAlarms"));
    let statement = &policy["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(statement["Action"].as_str(), Some("cloudwatch:DescribeAlarms"));
    assert_eq!(statement["Resource"].as_str(), Some("*"), "composite alarms need DescribeAlarms on *");
    let rule = &t["Resources"]["RollbackAlarmRule"];
    assert_eq!(rule["Condition"].as_str(), Some("HasRollbackAlarms"));
    let pattern = &rule["Properties"]["EventPattern"];
    let event = sample_event("eventbridge-alarm-state-change.json");
    assert_eq!(pattern["source"][0].as_str(), event["source"].as_str());
    assert_eq!(pattern["detail-type"][0].as_str(), event["detail-type"].as_str());
    assert_eq!(pattern["detail"]["state"]["value"][0].as_str(), event["detail"]["state"]["value"].as_str());
    assert_eq!(pattern["detail"]["alarmName"]["Ref"].as_str(), Some("RollbackAlarms"));
    assert!(flakefleet::entry::event::is_reconcile_trigger(
        event["source"].as_str().unwrap(),
        event["detail-type"].as_str().unwrap()
    ));
}

/// The sample rule sends the releases of this fleet that failed, were rolled
/// back or halted it (as the function announces them) to the alarm topic,
/// and nothing else; only when a topic is given.
#[test]
fn the_sample_notice_rule_sends_bad_outcomes_of_this_fleet_to_the_alarm_topic() {
    let t = template();
    let bus = &t["Resources"]["NoticesPipe"]["Properties"]["TargetParameters"]["EventBridgeEventBusParameters"];
    let (source, detail_type) = (bus["Source"].as_str().unwrap(), bus["DetailType"].as_str().unwrap());
    assert_eq!((source, detail_type), ("flakefleet", "Release Status Change"), "as docs/notifications.md says");
    let rule = &t["Resources"]["ReleaseFailedRule"];
    assert_eq!(rule["Condition"].as_str(), Some("HasAlarmTopic"));
    assert_eq!(rule["Properties"]["EventBusName"]["Ref"].as_str(), Some("NoticesBus"), "on the stack's own bus");
    assert_eq!(rule["Properties"]["Targets"][0]["Arn"]["Ref"].as_str(), Some("AlarmTopicArn"));
    let pattern = serde_json::to_value(&rule["Properties"]["EventPattern"]).unwrap();
    for (fleet, status, sent) in [
        ("prod", "failed", true),
        ("prod", "rolled_back", true),
        ("prod", "halted", true),
        ("prod", "succeeded", false),
        ("prod", "in_progress", false),
        ("staging", "failed", false),
    ] {
        let event = serde_json::json!({"source": source, "detail-type": detail_type,
            "detail": {"fleet": fleet, "status": status}});
        assert_eq!(pattern_matches(&pattern, &event, &[("FleetName", "prod")]), sent, "{fleet} {status}");
    }
}

/// The notices bus lets only the notices pipe's role (and NoticePublisherArns)
/// put events: a Deny on every other principal, in the bus's own policy as
/// CloudFormation receives it after the SAM transform. The emulators ignore
/// bus policies, so the policy's text is what is checked.
#[test]
fn only_the_notices_pipe_may_put_notices_on_the_stacks_bus() {
    let t = expanded_template();
    let bus = &t["Resources"]["NoticesBus"];
    assert_eq!(bus["Type"], "AWS::Events::EventBus");
    let statements = bus["Properties"]["Policy"]["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1, "{statements:?}");
    let deny = &statements[0];
    assert_eq!((deny["Effect"].as_str(), deny["Principal"].as_str()), (Some("Deny"), Some("*")), "{deny}");
    assert_eq!(deny["Action"], "events:PutEvents");
    let resource = deny["Resource"]["Fn::Sub"].as_str().unwrap();
    assert!(resource.ends_with(":event-bus/${AWS::StackName}-notices"), "{resource}");
    let allowed = &deny["Condition"]["ArnNotLike"]["aws:PrincipalArn"]["Fn::If"];
    assert_eq!(allowed[0], "HasNoticePublishers");
    let role = serde_json::json!({"Fn::GetAtt": ["NoticesPipeRole", "Arn"]});
    // Without publishers: the role alone. With them: the role, then the parameter's ARNs.
    assert_eq!(allowed[2], serde_json::json!([role.clone()]));
    let joined = &allowed[1]["Fn::Split"][1]["Fn::Join"][1];
    assert_eq!(joined[0], role);
    assert_eq!(joined[1]["Ref"], "NoticePublisherArns");
    // The role the policy admits is the pipe's own: it reads the table's
    // stream, puts on this bus alone and sends to its dead-letter queue.
    let pipe = &t["Resources"]["NoticesPipe"]["Properties"];
    assert_eq!(pipe["RoleArn"]["Fn::GetAtt"][0], "NoticesPipeRole");
    assert_eq!(pipe["Source"], serde_json::json!({"Fn::GetAtt": ["ReleasesTable", "StreamArn"]}));
    assert_eq!(pipe["Target"], serde_json::json!({"Fn::GetAtt": ["NoticesBus", "Arn"]}));
    let role = &t["Resources"]["NoticesPipeRole"]["Properties"];
    assert_eq!(role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"], "pipes.amazonaws.com");
    let granted = role["Policies"][0]["PolicyDocument"]["Statement"].as_array().unwrap();
    let put: Vec<_> = granted.iter().filter(|s| s["Action"] == "events:PutEvents").collect();
    assert_eq!(put.len(), 1);
    assert!(put[0]["Resource"]["Fn::Sub"].as_str().unwrap().ends_with(":event-bus/${AWS::StackName}-notices"));
    let actions: Vec<&str> = granted
        .iter()
        .flat_map(|s| match &s["Action"] {
            serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>(),
            v => v.as_str().into_iter().collect(),
        })
        .collect();
    assert!(actions.iter().all(|a| a.starts_with("dynamodb:") || *a == "events:PutEvents" || *a == "sqs:SendMessage"));
    assert!(actions.iter().filter(|a| a.starts_with("dynamodb:")).all(|a| {
        ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"]
            .contains(a)
    }));
}

/// The host policy the stack ships: exactly the CloudWatch Logs calls the
/// agent makes to upload output (`hosts::the_shipped_host_policy_lets_the_agents_upload_the_whole_output`
/// makes them against it), on the stack's output group only, but
/// DescribeLogGroups, which AWS authorises on the account's log groups.
#[test]
fn the_host_policy_grants_the_agents_output_calls_and_no_more() {
    let t = template();
    let policy = &t["Resources"]["FleetHostPolicy"];
    assert_eq!(policy["Type"].as_str(), Some("AWS::IAM::ManagedPolicy"));
    let mut granted: Vec<(String, String)> = Vec::new();
    for statement in policy["Properties"]["PolicyDocument"]["Statement"].as_sequence().unwrap() {
        assert_eq!(statement["Effect"].as_str(), Some("Allow"));
        let resource = statement["Resource"]["Fn::Sub"].as_str().unwrap().to_owned();
        for action in strings(&statement["Action"]) {
            granted.push((action, resource.clone()));
        }
    }
    granted.sort();
    let group = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${HostOutputLogGroup}:*";
    let any_group = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*";
    let expected: Vec<(String, String)> = [
        ("logs:CreateLogGroup", group),
        ("logs:CreateLogStream", group),
        ("logs:DescribeLogGroups", any_group),
        ("logs:DescribeLogStreams", group),
        ("logs:PutLogEvents", group),
    ]
    .iter()
    .map(|(a, r)| (a.to_string(), r.to_string()))
    .collect();
    assert_eq!(granted, expected);
    assert_eq!(t["Outputs"]["FleetHostPolicyArn"]["Value"]["Ref"].as_str(), Some("FleetHostPolicy"));
}

/// Keys sorted at every level, no spaces: the document content's one text.
fn canonical(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let fields: Vec<String> =
                keys.iter().map(|k| format!("{}:{}", serde_json::Value::from(k.as_str()), canonical(&m[*k]))).collect();
            format!("{{{}}}", fields.join(","))
        }
        serde_json::Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// The apply document keeps one name for life and adds a version on each
/// change (a replacement would rename it mid-rollout: commands in flight
/// lost to the look-up by name, and to the status rule). Its VersionName is
/// derived from its content, so a changed script cannot keep an old name,
/// and the function is given the same one to resolve and send.
#[test]
fn the_document_keeps_its_name_and_versions_by_its_content() {
    let t = template();
    let document = &t["Resources"]["ApplyNixosDocument"]["Properties"];
    assert_eq!(document["Name"]["Fn::Sub"].as_str(), Some("flakefleet-${AWS::StackName}-apply-nixos"));
    assert_eq!(document["UpdateMethod"].as_str(), Some("NewVersion"));
    let content = serde_json::to_value(&document["Content"]).unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical(&content).as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let derived = format!("c{}", &hex[..16]);
    assert_eq!(
        document["VersionName"].as_str(),
        Some(derived.as_str()),
        "the document's content changed: set ApplyNixosDocument's VersionName and FLAKEFLEET_DOCUMENT_VERSION_NAME to {derived}"
    );
    let env = &t["Resources"]["FlakefleetFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(env["FLAKEFLEET_DOCUMENT_VERSION_NAME"].as_str(), Some(derived.as_str()));
    // The role may describe the document (the version's number) as well as send it.
    let statements = function_statements(&t);
    let send = statements.iter().find(|s| strings(&s["Action"]).contains(&"ssm:SendCommand".to_owned())).unwrap();
    assert!(strings(&send["Action"]).contains(&"ssm:DescribeDocument".to_owned()));
}
