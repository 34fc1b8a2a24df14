//! AWS's limits a stack deploy would fail on, over the template as
//! CloudFormation receives it (after the SAM transform) with every
//! parameter at its largest allowed value: a parameter's value (4,096
//! bytes), each rule's `EventPattern` (4,096 characters, EventBridge), each
//! role's inline policies together (10,240 characters, IAM), and the
//! notices bus's policy (10,240). The intrinsic functions the template uses
//! are evaluated here; a resource's name or ARN stands in at a generous length.

use flakefleet::config::fleet::{alarm_rule_pattern, EVENT_PATTERN_MAX};
use serde_json::{json, Map, Value};

/// CloudFormation's limit on one parameter's value, in bytes.
const PARAMETER_MAX: usize = 4096;
/// IAM's limit on a role's inline policies together, in characters (whitespace not counted).
const ROLE_INLINE_POLICIES_MAX: usize = 10_240;
/// EventBridge's limit on an event bus's resource policy, in characters.
const BUS_POLICY_MAX: usize = 10_240;

/// The rollback alarms the function accepts at their largest: 255-character
/// names, as many as fit the alarm rule's pattern.
fn largest_alarm_names() -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    loop {
        let next = format!("{:0>3}{}", names.len(), "a".repeat(252));
        let mut more = names.clone();
        more.push(next);
        if alarm_rule_pattern(&more).len() > EVENT_PATTERN_MAX {
            return names;
        }
        names = more;
    }
}

/// Every parameter at the largest value its constraints allow (or its
/// default, where its size cannot grow a policy or a pattern).
fn largest_parameters(t: &Value) -> Map<String, Value> {
    let arn = |n: usize| {
        let head = "arn:aws:iam::123456789012:role/";
        format!("{head}{}", "r".repeat(n - head.len()))
    };
    let publishers = (0..9).map(|_| arn(226)).collect::<Vec<_>>().join(",");
    let path = format!("/{}/", "p".repeat(510));
    let mut largest: Map<String, Value> = [
        ("FleetName", json!("f".repeat(32))),
        ("TargetTagKey", json!("k".repeat(128))),
        ("TargetTagValue", json!("v".repeat(256))),
        ("InstanceProfileName", json!("i".repeat(128))),
        ("InstanceProfilePath", json!(path)),
        ("InstanceRoleName", json!("r".repeat(64))),
        ("InstanceRolePath", json!(path)),
        ("AmiOwner", json!("123456789012")),
        ("AlarmTopicArn", json!(format!("arn:aws:sns:ap-southeast-5:123456789012:{}", "t".repeat(214)))),
        ("NoticePublisherArns", json!(publishers)),
        ("RollbackAlarms", json!(largest_alarm_names())),
        ("GitHubRepository", json!(format!("{}/{}", "o".repeat(39), "r".repeat(100)))),
        ("GitHubEnvironment", json!("e".repeat(255))),
        ("GitHubRepositoryId", json!("9".repeat(20))),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (name, spec) in t["Parameters"].as_object().unwrap() {
        if largest.contains_key(name) {
            if let Some(max) = spec["MaxLength"].as_u64() {
                assert!(largest[name].as_str().unwrap().len() as u64 <= max, "{name} over its MaxLength");
            }
            continue;
        }
        let default = spec.get("Default").cloned().unwrap_or(json!(""));
        let value = match (spec["Type"].as_str(), default) {
            (Some("CommaDelimitedList"), Value::String(s)) => {
                json!(s.split(',').filter(|p| !p.is_empty()).collect::<Vec<_>>())
            }
            (_, Value::Number(n)) => json!(n.to_string()),
            (_, other) => other,
        };
        largest.insert(name.clone(), value);
    }
    largest
}

/// The template with its parameters given: intrinsic functions evaluated.
struct Given<'a> {
    template: &'a Value,
    parameters: Map<String, Value>,
}

impl Given<'_> {
    fn reference(&self, name: &str) -> Value {
        match name {
            "AWS::Partition" => json!("aws-us-gov"),
            "AWS::Region" => json!("ap-southeast-5"),
            "AWS::AccountId" => json!("123456789012"),
            "AWS::StackName" => json!("s".repeat(128)),
            "AWS::URLSuffix" => json!("amazonaws.com.cn"),
            "AWS::NoValue" => Value::Null,
            _ => match self.parameters.get(name) {
                Some(value) => value.clone(),
                // A resource's name: 128 characters, told apart by its logical id.
                None => json!(format!("{name}{}", "n".repeat(128usize.saturating_sub(name.len())))),
            },
        }
    }

    fn attribute(&self, resource: &str) -> Value {
        json!(format!("arn:aws-us-gov:service:ap-southeast-5:123456789012:{resource}/{}", "a".repeat(128)))
    }

    fn text(&self, v: &Value) -> String {
        match self.eval(v) {
            Value::String(s) => s,
            other => panic!("not a string: {other}"),
        }
    }

    fn sub(&self, arg: &Value) -> String {
        let (text, vars) = match arg {
            Value::String(s) => (s.clone(), Map::new()),
            Value::Array(parts) => (parts[0].as_str().unwrap().to_owned(), parts[1].as_object().unwrap().clone()),
            other => panic!("Fn::Sub of {other}"),
        };
        let var = regex::Regex::new(r"\$\{(!?)([^}]+)\}").unwrap();
        var.replace_all(&text, |c: &regex::Captures| {
            let name = &c[2];
            if &c[1] == "!" {
                return format!("${{{name}}}");
            }
            if let Some(value) = vars.get(name) {
                return self.text(value);
            }
            match name.split_once('.') {
                Some((resource, _)) if !name.starts_with("AWS::") => self.attribute(resource).as_str().unwrap().into(),
                _ => match self.reference(name) {
                    Value::String(s) => s,
                    Value::Array(items) => items.iter().map(|i| i.as_str().unwrap()).collect::<Vec<_>>().join(","),
                    other => panic!("${{{name}}} is {other}"),
                },
            }
        })
        .into_owned()
    }

    fn condition(&self, name: &str) -> bool {
        self.truth(&self.template["Conditions"][name])
    }

    fn truth(&self, v: &Value) -> bool {
        let (op, arg) = v.as_object().unwrap().iter().next().unwrap();
        match op.as_str() {
            "Condition" => self.condition(arg.as_str().unwrap()),
            "Fn::Not" => !self.truth(&arg[0]),
            "Fn::And" => arg.as_array().unwrap().iter().all(|c| self.truth(c)),
            "Fn::Or" => arg.as_array().unwrap().iter().any(|c| self.truth(c)),
            "Fn::Equals" => {
                let text = |v: Value| match v {
                    Value::Number(n) => n.to_string(),
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                text(self.eval(&arg[0])) == text(self.eval(&arg[1]))
            }
            other => panic!("condition {other}"),
        }
    }

    fn eval(&self, v: &Value) -> Value {
        match v {
            Value::Object(m)
                if m.len() == 1 && m.keys().next().is_some_and(|k| k == "Ref" || k.starts_with("Fn::")) =>
            {
                let (op, arg) = m.iter().next().unwrap();
                match op.as_str() {
                    "Ref" => self.reference(arg.as_str().unwrap()),
                    "Fn::GetAtt" => self.attribute(arg[0].as_str().unwrap()),
                    "Fn::Sub" => json!(self.sub(arg)),
                    "Fn::Join" => {
                        let separator = arg[0].as_str().unwrap();
                        let items = self.eval(&arg[1]);
                        let parts: Vec<String> = items.as_array().unwrap().iter().map(|i| self.text(i)).collect();
                        json!(parts.join(separator))
                    }
                    "Fn::Split" => {
                        let separator = arg[0].as_str().unwrap();
                        json!(self.text(&arg[1]).split(separator).collect::<Vec<_>>())
                    }
                    "Fn::Select" => {
                        let index: usize = self.text(&arg[0]).parse().unwrap();
                        self.eval(&arg[1])[index].clone()
                    }
                    "Fn::If" => match self.condition(arg[0].as_str().unwrap()) {
                        true => self.eval(&arg[1]),
                        false => self.eval(&arg[2]),
                    },
                    other => panic!("{other} is not evaluated here"),
                }
            }
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.clone(), self.eval(v))).filter(|(_, v)| !v.is_null()).collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(|i| self.eval(i)).filter(|v| !v.is_null()).collect()),
            other => other.clone(),
        }
    }

    /// The resources CloudFormation creates with these parameters.
    fn resources(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.template["Resources"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, r)| r["Condition"].as_str().is_none_or(|c| self.condition(c)))
    }
}

#[test]
fn the_stack_fits_aws_limits_with_its_largest_parameters() {
    let t = crate::template::expanded_template();
    let given = Given { template: &t, parameters: largest_parameters(&t) };
    for (name, value) in &given.parameters {
        let size = match value {
            Value::Array(items) => items.iter().map(|i| i.as_str().unwrap().len() + 1).sum::<usize>(),
            other => other.as_str().map_or(0, str::len),
        };
        assert!(size <= PARAMETER_MAX, "parameter {name} is {size} bytes; CloudFormation takes {PARAMETER_MAX}");
    }
    for flag in ["HasRollbackAlarms", "HasAlarmTopic", "HasNoticePublishers", "CreateGitHubDeployRole"] {
        assert!(given.condition(flag), "{flag}: every optional part is created at the largest");
    }
    // Each rule's pattern; the alarm rule's is the one the configuration measures.
    let mut patterns = 0;
    for (name, rule) in given.resources().filter(|(_, r)| r["Type"] == "AWS::Events::Rule") {
        let Some(pattern) = rule["Properties"].get("EventPattern") else { continue };
        let pattern = given.eval(pattern);
        let size = pattern.to_string().len();
        assert!(
            size <= EVENT_PATTERN_MAX,
            "{name}'s EventPattern is {size} characters; EventBridge takes {EVENT_PATTERN_MAX}"
        );
        if name == "RollbackAlarmRule" {
            let names: Vec<String> = serde_json::from_value(given.parameters["RollbackAlarms"].clone()).unwrap();
            let measured: Value = serde_json::from_str(&alarm_rule_pattern(&names)).unwrap();
            assert_eq!(pattern, measured, "the configuration measures the template's own pattern");
        }
        patterns += 1;
    }
    // The SSM status rule, the alarm rule and the failed-release rule.
    assert_eq!(patterns, 3, "found {patterns} rule patterns");
    // Each role's inline policies together.
    let roles: Vec<(&String, &Value)> = given.resources().filter(|(_, r)| r["Type"] == "AWS::IAM::Role").collect();
    assert!(roles.len() >= 2, "the function's role and the deploy role");
    for (name, role) in roles {
        let own = given.eval(&role["Properties"]["Policies"]);
        let mut size: usize =
            own.as_array().map_or(0, |p| p.iter().map(|p| p["PolicyDocument"].to_string().len()).sum());
        let me = given.reference(name);
        for (_, policy) in given.resources().filter(|(_, r)| r["Type"] == "AWS::IAM::RolePolicy") {
            let attached = given.eval(&policy["Properties"]["RoleName"]);
            if attached == me {
                let document = given.eval(&policy["Properties"]["PolicyDocument"]);
                let document = match document {
                    Value::String(text) => serde_json::from_str::<Value>(&text).unwrap(),
                    other => other,
                };
                size += document.to_string().len();
            }
        }
        assert!(
            size <= ROLE_INLINE_POLICIES_MAX,
            "{name}'s inline policies are {size} characters; IAM takes {ROLE_INLINE_POLICIES_MAX}"
        );
    }
    let bus = given.eval(&t["Resources"]["NoticesBus"]["Properties"]["Policy"]).to_string().len();
    assert!(bus <= BUS_POLICY_MAX, "the notices bus's policy is {bus} characters");
}
