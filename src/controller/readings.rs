//! Readings for scaling policies: which metric each scaled service reads,
//! and reading them all in one batch through the backend (CloudWatch's
//! GetMetricData on AWS, the scenario's load model in the simulator).
//!
//! A metric's dimension values may name the service or cluster they are
//! read for with `{service}` and `{cluster}`, so one policy with a service
//! selector reads each service's own metric.

use std::collections::HashMap;

use crate::backend::{self, Backend, MetricQuery, StatisticName};
use crate::model::{ClusterSnapshot, Millis};
use crate::plan::Index;
use crate::spec::Policy;
use crate::spec::policy::{Metric, Statistic};

fn statistic_name(s: Statistic) -> StatisticName {
    format!("{s:?}")
}

/// Each scaled (policy, service) and the metric it reads.
pub fn queries(
    policies: &[Policy],
    snapshot: &ClusterSnapshot,
) -> Vec<((String, String), MetricQuery)> {
    let index = Index::new(snapshot);
    let mut out = vec![];
    for policy in policies {
        let Some(scaling) = &policy.scaling else {
            continue;
        };
        let Metric::CloudWatch {
            namespace,
            name,
            statistic,
            dimensions,
            period,
        } = &scaling.metric;
        for s in index.services_of(policy) {
            let service = &snapshot.services[s].name;
            let dimensions = dimensions
                .iter()
                .map(|(k, v)| {
                    let v = v
                        .replace("{service}", service)
                        .replace("{cluster}", &snapshot.cluster);
                    (k.clone(), v)
                })
                .collect();
            out.push((
                (policy.name.clone(), service.clone()),
                MetricQuery {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    statistic: statistic_name(*statistic),
                    dimensions,
                    period: period.as_secs().max(1) as u32,
                },
            ));
        }
    }
    out
}

/// Reads the metric of every scaled service at `now`, each distinct metric
/// once. `None` where there is no data point.
pub async fn read<B: Backend>(
    backend: &B,
    policies: &[Policy],
    snapshot: &ClusterSnapshot,
    now: Millis,
) -> backend::Result<HashMap<(String, String), Option<f64>>> {
    let wanted = queries(policies, snapshot);
    if wanted.is_empty() {
        return Ok(HashMap::new());
    }
    let mut distinct: Vec<MetricQuery> = wanted.iter().map(|(_, q)| q.clone()).collect();
    distinct.sort();
    distinct.dedup();
    let values = backend
        .metric_data(&snapshot.cluster, &distinct, now)
        .await?;
    Ok(wanted
        .into_iter()
        .map(|(key, q)| {
            let i = distinct
                .binary_search(&q)
                .expect("every query is in the distinct list");
            (key, values.get(i).copied().flatten())
        })
        .collect())
}
