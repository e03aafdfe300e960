//! What one reconcile did: the plan and each action's result. Its own
//! module, so what reports it (the status server, the audit events) and
//! what makes it (the controller) do not import each other.

use crate::backend;
use crate::plan::{Action, Plan};

/// What one reconcile did.
#[derive(Debug)]
pub struct Reconciled {
    pub plan: Plan,
    /// Each executable action with its outcome, in order.
    pub executed: Vec<(Action, backend::Result<()>)>,
    /// Why scaling policies' metrics could not be read (they held).
    pub metric_error: Option<String>,
}
