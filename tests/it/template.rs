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
    // These keep their defaults in the template: the idempotency window and GitHub's issuer.
    let defaults = ["FLAKEFLEET_IDEMPOTENCY_TTL_SECONDS", "FLAKEFLEET_OIDC_ISSUER", "FLAKEFLEET_OIDC_JWKS_URL"];
    let expected: BTreeSet<String> = read.into_iter().filter(|v| !defaults.contains(&v.as_str())).collect();
    assert_eq!(given, expected);
}
