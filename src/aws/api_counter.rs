//! Counting AWS API calls and throttled attempts, per operation, on every
//! client of the process. The SDK's standard retry absorbs a throttle
//! inside one call (backing off and trying again), so the caller never sees
//! it unless every attempt is throttled; yet an operator wants to know that
//! the account's API budget is tight before calls start to fail. An
//! interceptor sees every call and every attempt: [`ApiCounter`] counts
//! each call once, and reads each attempt's response to count those the
//! service refused for its rate, by the same error codes the SDK's retry
//! classifier uses.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_ecs::config::interceptors::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_ecs::config::{ConfigBag, Intercept, RuntimeComponents};

/// The error codes AWS services answer a throttled call with: those of
/// the SDK's `AwsErrorCodeClassifier`, which does not export them in a
/// form an interceptor can use (it matches on each operation's error type).
const THROTTLING_CODES: [&str; 14] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Counts calls and throttled attempts per operation. Cloning shares the
/// counts, so one counter serves every client of a process.
#[derive(Debug, Clone, Default)]
pub struct ApiCounter {
    counts: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    calls: BTreeMap<String, u64>,
    throttles: BTreeMap<String, u64>,
}

impl ApiCounter {
    /// Calls so far, per operation (`DescribeTasks`); a call retried
    /// within the SDK counts once.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        self.lock().calls.clone()
    }

    /// Throttled attempts so far, per operation.
    pub fn throttles(&self) -> BTreeMap<String, u64> {
        self.lock().throttles.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The operation a call is for, from the SDK's own metadata.
fn operation(cfg: &ConfigBag) -> String {
    cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
        .map_or("unknown", |m| m.name())
        .to_owned()
}

impl Intercept for ApiCounter {
    fn name(&self) -> &'static str {
        "ApiCounter"
    }

    // Serialization happens once per call, before the attempts (and the
    // operation's metadata is known by then, unlike at
    // `read_before_execution`).
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        *self.lock().calls.entry(operation(cfg)).or_default() += 1;
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let Some(response) = context.response() else {
            return Ok(()); // no answer at all: a timeout or a dropped connection
        };
        let code = error_code(
            response.headers().get("x-amzn-errortype"),
            response.body().bytes().unwrap_or_default(),
        );
        let throttled = response.status().as_u16() == 429
            || code.is_some_and(|c| THROTTLING_CODES.contains(&c.as_str()));
        if throttled {
            *self.lock().throttles.entry(operation(cfg)).or_default() += 1;
        }
        Ok(())
    }
}

/// An error response's code, as each AWS protocol carries it: the
/// `x-amzn-errortype` header (JSON protocols, possibly followed by `:` and
/// a URL), a JSON body's `__type` or `code` (possibly after a namespace and
/// `#`), or an XML body's `<Code>` (query protocols).
pub fn error_code(header: Option<&str>, body: &[u8]) -> Option<String> {
    let bare = |code: &str| {
        let code = code.split(':').next().unwrap_or(code);
        code.rsplit('#').next().unwrap_or(code).trim().to_owned()
    };
    if let Some(code) = header.filter(|h| !h.is_empty()) {
        return Some(bare(code));
    }
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        return ["__type", "code"]
            .iter()
            .find_map(|k| json[k].as_str())
            .map(bare);
    }
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let end = start + text[start..].find("</Code>")?;
    Some(bare(&text[start..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_is_found_in_each_protocols_place() {
        assert_eq!(
            error_code(Some("ThrottlingException:http://internal.amazon.com/"), b""),
            Some("ThrottlingException".into())
        );
        assert_eq!(
            error_code(
                None,
                br#"{"__type":"com.amazonaws.ecs#ThrottlingException","message":"Rate exceeded"}"#
            ),
            Some("ThrottlingException".into())
        );
        assert_eq!(
            error_code(
                None,
                b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>"
            ),
            Some("Throttling".into())
        );
        assert_eq!(error_code(None, br#"{"services":[]}"#), None);
        assert_eq!(error_code(None, b"<DescribeAlarmsResult/>"), None);
    }
}
