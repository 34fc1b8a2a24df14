//! template.yaml and the code agree: table keys, the document's pattern, the
//! configuration the function is given.

use crate::support::template;
use flakefleet::aws::dynamodb::{PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE};
use flakefleet::config::Config;
use flakefleet::domain::flakeref::{FLAKEREF_MAX_LEN, FLAKEREF_PATTERN};
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
    assert_eq!(actions, ["switch", "boot", "test", "dry-activate"]);

    // The host re-checks with the same pattern, and never pastes the parameter into the script.
    let script = content["mainSteps"][0]["inputs"]["runCommand"][0].as_str().unwrap();
    assert!(script.contains(&format!("pattern='{FLAKEREF_PATTERN}'")));
    assert!(script.contains("set -euf -o pipefail"));
    assert!(!script.contains("{{"), "parameters must arrive as environment variables");
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
fn function_statements(t: &serde_yaml::Value) -> Vec<serde_yaml::Value> {
    let mut statements: Vec<serde_yaml::Value> = Vec::new();
    for policy in t["Resources"]["FlakefleetFunction"]["Properties"]["Policies"].as_sequence().unwrap() {
        statements.extend(policy["Statement"].as_sequence().unwrap().iter().cloned());
    }
    let sub = t["Resources"]["SendToFleetInstancesPolicy"]["Properties"]["PolicyDocument"]["Fn::Sub"].as_str().unwrap();
    let document: serde_yaml::Value = serde_yaml::from_str(sub).unwrap();
    statements.extend(document["Statement"].as_sequence().unwrap().iter().cloned());
    statements
}

fn strings(v: &serde_yaml::Value) -> Vec<String> {
    match v {
        serde_yaml::Value::String(s) => vec![s.clone()],
        serde_yaml::Value::Sequence(items) => items.iter().flat_map(strings).collect(),
        serde_yaml::Value::Mapping(m) => m.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn the_function_role_grants_only_what_the_code_uses() {
    let t = template();
    let statements = function_statements(&t);
    let with_action = |action: &str| -> Vec<&serde_yaml::Value> {
        statements.iter().filter(|s| strings(&s["Action"]).iter().any(|a| a == action)).collect()
    };
    for s in &statements {
        assert_eq!(s["Effect"].as_str(), Some("Allow"));
        assert!(strings(&s["Action"]).iter().all(|a| !a.contains('*')), "wildcard action: {s:?}");
    }
    // Writes and sends are never on every resource.
    for action in ["ssm:SendCommand", "ec2:RunInstances", "ec2:CreateTags", "iam:PassRole", "dynamodb:PutItem"] {
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
    assert!(strings(&conditions["ec2:InstanceProfile"]).join("").ends_with(":instance-profile/${InstanceProfileName}"));
    let image = launches.iter().find(|s| strings(&s["Resource"]).join("").ends_with(":image/*")).unwrap();
    assert_eq!(image["Condition"]["StringEquals"]["ec2:Owner"]["Ref"].as_str(), Some("AmiOwner"));
    // CreateTags: at launch, or the release tag on the fleet's instances.
    for s in with_action("ec2:CreateTags") {
        let launch = s["Condition"]["StringEquals"]["ec2:CreateAction"].as_str() == Some("RunInstances");
        let release_tag = s["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"]
            == serde_yaml::Value::Sequence(vec!["flakefleet:release".into()]);
        assert!(launch || release_tag, "{s:?}");
    }
    // PassRole: the instance role, to EC2 only.
    let pass = with_action("iam:PassRole");
    assert_eq!(pass.len(), 1);
    assert!(strings(&pass[0]["Resource"]).join("").ends_with(":role/${InstanceRoleName}"));
    assert_eq!(pass[0]["Condition"]["StringEquals"]["iam:PassedToService"].as_str(), Some("ec2.amazonaws.com"));
    // DynamoDB: the table and nothing else.
    for s in statements.iter().filter(|s| strings(&s["Action"]).iter().any(|a| a.starts_with("dynamodb:"))) {
        assert_eq!(s["Resource"]["Fn::GetAtt"][0].as_str(), Some("ReleasesTable"), "{s:?}");
    }

    let table = &t["Resources"]["ReleasesTable"]["Properties"];
    assert_eq!(table["DeletionProtectionEnabled"].as_bool(), Some(true));
    assert_eq!(table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(), Some(true));
}

#[test]
fn the_github_deploy_role_trusts_one_repository_and_may_only_call_the_url() {
    let t = template();
    let role = &t["Resources"]["GitHubDeployRole"]["Properties"];
    let trust = &role["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(trust["Action"].as_str(), Some("sts:AssumeRoleWithWebIdentity"));
    let condition = &trust["Condition"]["StringEquals"];
    assert_eq!(condition["token.actions.githubusercontent.com:aud"].as_str(), Some("sts.amazonaws.com"));
    let subjects = strings(&condition["token.actions.githubusercontent.com:sub"]);
    assert!(subjects.contains(&"repo:${GitHubRepository}:environment:${GitHubEnvironment}".to_owned()));
    assert!(subjects.contains(&"repo:${GitHubRepository}:ref:refs/heads/${GitHubBranch}".to_owned()));
    assert!(subjects.iter().all(|s| !s.contains('*')), "{subjects:?}");
    let allowed = &role["Policies"][0]["PolicyDocument"]["Statement"];
    assert_eq!(allowed.as_sequence().unwrap().len(), 1);
    assert_eq!(strings(&allowed[0]["Action"]), ["lambda:InvokeFunctionUrl", "lambda:InvokeFunction"]);
    assert_eq!(allowed[0]["Resource"]["Fn::GetAtt"][0].as_str(), Some("FlakefleetFunction"));
}
