//! The planner: pure and synchronous.
pub mod optimum;
