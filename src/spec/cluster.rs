//! The internal, validated Cluster: where an ECS cluster lives (its region)
//! and how to reach it (a role to assume). A cluster no Cluster document
//! names is reached with the controller's own credentials and region.

use serde::Serialize;

use crate::spec::diag::Position;

/// A validated Cluster document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// The document's `metadata.name`.
    pub document: String,
    /// The ECS cluster's name, as policies and budgets name it.
    pub name: String,
    pub region: String,
    /// The role to assume, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<AssumedRole>,
    /// Where the cluster's name was written, for conflicts.
    #[serde(skip)]
    pub origin: Position,
}

/// An IAM role assumed through STS, with the external ID its trust policy
/// requires.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AssumedRole {
    pub arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

impl AssumedRole {
    /// The account the role is in (the ARN's fifth field).
    pub fn account(&self) -> &str {
        self.arn.split(':').nth(4).unwrap_or_default()
    }
}

/// How a cluster is reached: everything an SDK client needs besides the
/// controller's own configuration. Clusters with the same location share
/// clients, credentials and ECS's API rate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub region: String,
    pub role: Option<AssumedRole>,
}

impl Cluster {
    pub fn location(&self) -> Location {
        Location {
            region: self.region.clone(),
            role: self.role.clone(),
        }
    }
}

/// Why a region is not one: `None` when it looks like an AWS region
/// (`eu-west-1`, `us-gov-west-1`, `ap-southeast-4`).
pub fn region_problem(region: &str) -> Option<&'static str> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty();
    (!ok).then_some("a region is written like `eu-west-1`")
}

/// Why a role ARN is not one: `None` for `arn:PARTITION:iam::ACCOUNT:role/NAME`.
pub fn role_arn_problem(arn: &str) -> Option<&'static str> {
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = fields[..] else {
        return Some("an IAM role ARN is written `arn:aws:iam::123456789012:role/NAME`");
    };
    if prefix != "arn" || !partition.starts_with("aws") || service != "iam" || !region.is_empty() {
        return Some("an IAM role ARN is written `arn:aws:iam::123456789012:role/NAME`");
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Some("the account is 12 digits");
    }
    match resource.strip_prefix("role/") {
        Some(name) if !name.is_empty() && !name.ends_with('/') => None,
        _ => Some("not a role (expected `role/NAME` after the account)"),
    }
}

/// Why an external ID is not one: STS takes 2 to 1,224 characters of
/// letters, digits and `+=,.@:/-_`.
pub fn external_id_problem(id: &str) -> Option<&'static str> {
    if !(2..=1224).contains(&id.chars().count()) {
        return Some("an external ID has 2 to 1,224 characters");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "+=,.@:/-_".contains(c);
    (!id.chars().all(allowed)).then_some("an external ID has only letters, digits and `+=,.@:/-_`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_role_arns_and_external_ids_are_held_to_aws_forms() {
        for ok in ["eu-west-1", "us-gov-west-1", "ap-southeast-4", "cn-north-1"] {
            assert_eq!(region_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "eu-west",
            "EU-west-1",
            "euwest1",
            "eu--1",
            "europe-west-1",
            "eu-west-1a",
        ] {
            assert!(region_problem(bad).is_some(), "{bad}");
        }
        for ok in [
            "arn:aws:iam::111111111111:role/stevedore",
            "arn:aws-cn:iam::111111111111:role/path/to/stevedore",
        ] {
            assert_eq!(role_arn_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("stevedore", "written"),
            ("arn:aws:iam::1111:role/x", "12 digits"),
            ("arn:aws:iam::111111111111:user/x", "not a role"),
            ("arn:aws:iam::111111111111:role/", "not a role"),
            ("arn:aws:sts::111111111111:role/x", "written"),
            ("arn:aws:iam:eu-west-1:111111111111:role/x", "written"),
            ("arx:aws:iam::111111111111:role/x", "written"),
            ("arn:gcp:iam::111111111111:role/x", "written"),
        ] {
            assert!(role_arn_problem(bad).unwrap().contains(why), "{bad}");
        }
        assert_eq!(external_id_problem("ab"), None);
        assert_eq!(external_id_problem(&"x".repeat(1224)), None);
        assert!(external_id_problem("a").is_some());
        assert!(external_id_problem(&"x".repeat(1225)).is_some());
        assert!(external_id_problem("with space").is_some());
        let role = AssumedRole {
            arn: "arn:aws:iam::111111111111:role/stevedore".into(),
            external_id: None,
        };
        assert_eq!(role.account(), "111111111111");
    }
}
