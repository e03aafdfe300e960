//! The documented limits of the AWS calls stevedore makes, held against
//! every request the tests' front passes on to moto: moto accepts what AWS
//! rejects (ten services in one DescribeServices, a ListTasks page of 500),
//! so a request past a limit is refused by the front as AWS would refuse it
//! (HTTP 400, ValidationException) and recorded, and a test that made one
//! fails when its moto is dropped.
//!
//! Each limit quotes where botocore (installed with moto) writes it: the
//! member's shape (`min`/`max`) or a phrase of its documentation;
//! `every_limit_is_where_botocore_documents_it` reads botocore to check.

use std::collections::BTreeMap;

/// One documented limit on a request member.
#[derive(Debug)]
pub(crate) struct Limit {
    /// botocore's name for the service.
    service: &'static str,
    operation: &'static str,
    member: &'static str,
    /// The items of a list (or a number's value) must lie in `min..=max`.
    min: usize,
    max: usize,
    /// Where botocore says so: a phrase of the member's (or, with
    /// `operation:`, the operation's) documentation, or `shape` for the
    /// shape's own `min`/`max`.
    documented: &'static str,
}

pub(crate) const LIMITS: &[Limit] = &[
    Limit {
        service: "ecs",
        operation: "DescribeServices",
        member: "services",
        min: 0,
        max: 10,
        documented: "You may specify up to 10 services to describe in a single operation.",
    },
    Limit {
        service: "ecs",
        operation: "DescribeTasks",
        member: "tasks",
        min: 0,
        max: 100,
        documented: "A list of up to 100 task IDs or full ARN entries.",
    },
    Limit {
        service: "ecs",
        operation: "DescribeContainerInstances",
        member: "containerInstances",
        min: 0,
        max: 100,
        documented: "A list of up to 100 container instance IDs or full Amazon Resource Name (ARN) entries.",
    },
    Limit {
        service: "ecs",
        operation: "GetTaskProtection",
        member: "tasks",
        min: 0,
        max: 100,
        documented: "A list of up to 100 task IDs or full ARN entries.",
    },
    Limit {
        service: "ecs",
        operation: "UpdateTaskProtection",
        member: "tasks",
        min: 0,
        max: 10,
        documented: "A list of up to 10 task IDs or full ARN entries.",
    },
    Limit {
        service: "ecs",
        operation: "UpdateTaskProtection",
        member: "expiresInMinutes",
        min: 1,
        max: 2880,
        documented: "You can specify a value from 1 minute to up to 2,880 minutes (48 hours).",
    },
    Limit {
        service: "ecs",
        operation: "ListTasks",
        member: "maxResults",
        min: 1,
        max: 100,
        documented: "This value can be between 1 and 100.",
    },
    Limit {
        service: "ecs",
        operation: "ListServices",
        member: "maxResults",
        min: 1,
        max: 100,
        documented: "This value can be between 1 and 100.",
    },
    Limit {
        service: "ecs",
        operation: "ListContainerInstances",
        member: "maxResults",
        min: 1,
        max: 100,
        documented: "This value can be between 1 and 100.",
    },
    Limit {
        service: "sqs",
        operation: "ReceiveMessage",
        member: "MaxNumberOfMessages",
        min: 1,
        max: 10,
        documented: "Valid values: 1 to 10.",
    },
    Limit {
        service: "sqs",
        operation: "DeleteMessageBatch",
        member: "Entries",
        min: 1,
        max: 10,
        documented: "operation:Deletes up to ten messages from the specified queue.",
    },
    Limit {
        service: "events",
        operation: "PutEvents",
        member: "Entries",
        min: 1,
        max: 10,
        documented: "shape",
    },
    Limit {
        service: "cloudwatch",
        operation: "GetMetricData",
        member: "MetricDataQueries",
        min: 0,
        max: 500,
        documented: "A single GetMetricData call can include as many as 500 MetricDataQuery structures.",
    },
    Limit {
        service: "application-autoscaling",
        operation: "DescribeScalableTargets",
        member: "ResourceIds",
        min: 0,
        max: 50,
        documented: "shape",
    },
    Limit {
        service: "application-autoscaling",
        operation: "DescribeScalableTargets",
        member: "MaxResults",
        min: 1,
        max: 50,
        documented: "This value can be between 1 and 50.",
    },
    Limit {
        service: "sts",
        operation: "AssumeRole",
        member: "RoleSessionName",
        min: 2,
        max: 64,
        documented: "shape",
    },
    Limit {
        service: "sts",
        operation: "AssumeRole",
        member: "ExternalId",
        min: 2,
        max: 1224,
        documented: "shape",
    },
    Limit {
        service: "sts",
        operation: "AssumeRole",
        member: "DurationSeconds",
        min: 900,
        max: 43200,
        documented: "shape",
    },
];

/// Members whose size is their text's length (strings), not their value.
const LENGTHS: [&str; 2] = ["RoleSessionName", "ExternalId"];

/// The size of a request member: a list's items, a number's value, a
/// string's length.
fn size(value: &serde_json::Value) -> Option<usize> {
    match value {
        serde_json::Value::Array(items) => Some(items.len()),
        serde_json::Value::Number(n) => n.as_u64().map(|n| n as usize),
        serde_json::Value::String(s) => Some(s.chars().count()),
        _ => None,
    }
}

/// A form value with its `%XX` escapes (and `+`) decoded.
fn form_decoded(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The limits a request breaks, one line each. `operation` is the
/// operation's name as sent (`DescribeServices`); `body` the request body:
/// JSON for the JSON protocols, a form for the query protocol (CloudWatch).
pub(crate) fn broken(operation: &str, body: &[u8]) -> Vec<String> {
    let limits: Vec<&Limit> = LIMITS
        .iter()
        .filter(|l| l.operation.eq_ignore_ascii_case(operation))
        .collect();
    if limits.is_empty() {
        return vec![];
    }
    let sizes: BTreeMap<&str, usize> = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(json) => limits
            .iter()
            .filter_map(|l| Some((l.member, size(json.get(l.member)?)?)))
            .collect(),
        // The query protocol: `Member.member.N.Field=...`; a list's size is its highest N.
        Err(_) => {
            let form = String::from_utf8_lossy(body);
            limits
                .iter()
                .filter_map(|l| {
                    let prefix = format!("{}.member.", l.member);
                    let items = form
                        .split('&')
                        .filter_map(|pair| pair.strip_prefix(&prefix))
                        .filter_map(|rest| rest.split(['.', '=']).next()?.parse::<usize>().ok())
                        .max();
                    // A scalar member: `Member=value`.
                    let scalar = || {
                        let value = form_decoded(
                            form.split('&')
                                .find_map(|pair| pair.strip_prefix(&format!("{}=", l.member)))?,
                        );
                        if LENGTHS.contains(&l.member) {
                            Some(value.chars().count())
                        } else {
                            value.parse::<usize>().ok()
                        }
                    };
                    Some((l.member, items.or_else(scalar)?))
                })
                .collect()
        }
    };
    limits
        .iter()
        .filter_map(|l| {
            let n = *sizes.get(l.member)?;
            (!(l.min..=l.max).contains(&n)).then(|| {
                format!(
                    "{}.{}: {} is {n}, outside {}..={} ({})",
                    l.service, l.operation, l.member, l.min, l.max, l.documented
                )
            })
        })
        .collect()
}

#[test]
fn every_limit_is_where_botocore_documents_it() {
    let python = crate::repo(".venv/bin/python");
    let wanted: Vec<serde_json::Value> = LIMITS
        .iter()
        .map(|l| serde_json::json!([l.service, l.operation, l.member]))
        .collect();
    // Each member's documentation (tags removed), its shape's min and max,
    // and the operation's documentation.
    let script = r#"
import json, re, sys, botocore.session
session = botocore.session.get_session()
text = lambda html: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html or ""))
out = []
for service, operation, member in json.loads(sys.argv[1]):
    op = session.get_service_model(service).operation_model(operation)
    shape = op.input_shape.members[member]
    out.append({"doc": text(shape.documentation), "op": text(op.documentation),
                "min": shape.metadata.get("min"), "max": shape.metadata.get("max")})
print(json.dumps(out))
"#;
    let output = std::process::Command::new(&python)
        .args(["-c", script, &serde_json::Value::from(wanted).to_string()])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/test.sh", python.display()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let found: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).unwrap();
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    for (limit, docs) in LIMITS.iter().zip(found) {
        match limit.documented {
            "shape" => assert_eq!(
                (docs["min"].as_u64(), docs["max"].as_u64()),
                (
                    Some(limit.min as u64).filter(|m| *m > 0),
                    Some(limit.max as u64)
                ),
                "{limit:?}"
            ),
            phrase => {
                let (text, phrase) = match phrase.strip_prefix("operation:") {
                    Some(p) => (docs["op"].as_str().unwrap(), p),
                    None => (docs["doc"].as_str().unwrap(), phrase),
                };
                assert!(
                    squash(text).contains(phrase),
                    "{limit:?}: botocore says: {text}"
                );
                // The phrase carries the limit's own number.
                let thousands = format!("{},{:03}", limit.max / 1000, limit.max % 1000);
                assert!(
                    phrase.contains(&limit.max.to_string())
                        || (limit.max >= 1000 && phrase.contains(&thousands))
                        || (limit.max == 10 && phrase.contains("up to ten")),
                    "{limit:?}"
                );
            }
        }
    }
}

#[test]
fn a_request_past_a_limit_is_told_apart() {
    assert!(broken("DescribeServices", br#"{"services": ["a","b"]}"#).is_empty());
    let eleven: Vec<String> = (0..11).map(|n| format!("s{n}")).collect();
    let body = serde_json::json!({ "cluster": "c", "services": eleven }).to_string();
    assert_eq!(
        broken("DescribeServices", body.as_bytes()),
        [
            "ecs.DescribeServices: services is 11, outside 0..=10 (You may specify up to 10 services to describe in a single operation.)"
        ]
    );
    assert_eq!(broken("ListTasks", br#"{"maxResults": 0}"#).len(), 1);
    assert!(broken("ListTasks", br#"{"maxResults": 100}"#).is_empty());
    assert_eq!(broken("ListTasks", br#"{"maxResults": 101}"#).len(), 1);
    let form = "Action=GetMetricData&Version=2010-08-01&MetricDataQueries.member.501.Id=q&MetricDataQueries.member.2.Id=r";
    assert_eq!(broken("GetMetricData", form.as_bytes()).len(), 1);
    let form = "Action=GetMetricData&MetricDataQueries.member.500.Id=q";
    assert!(broken("GetMetricData", form.as_bytes()).is_empty());
    assert!(broken("StopTask", b"{}").is_empty());
    // Strings of the query protocol are measured by their length, decoded.
    let form = "Action=AssumeRole&RoleSessionName=stevedore&ExternalId=a%3Ab&DurationSeconds=3600";
    assert!(broken("AssumeRole", form.as_bytes()).is_empty());
    let form = "Action=AssumeRole&RoleSessionName=s&ExternalId=1&DurationSeconds=60";
    assert_eq!(broken("AssumeRole", form.as_bytes()).len(), 3);
    assert_eq!(form_decoded("a%3Ab+c"), "a:b c");
}
