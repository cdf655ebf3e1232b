//! Placeholder until the policy module lands: no checks are defined.
use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Problem, Result};

pub struct CheckDef {
    pub name: String,
    pub run: Vec<String>,
    pub timeout: Duration,
    pub env: BTreeMap<String, String>,
}

pub struct Policy;

impl Policy {
    pub fn at_tree(_repo: &gix::Repository, _tree: Option<gix::ObjectId>) -> Result<Policy> {
        Ok(Policy)
    }

    pub fn resolve_check(&self, name: &str) -> std::result::Result<CheckDef, Problem> {
        Err(Problem::new(
            "check.unknown",
            format!("no check named '{name}'"),
            "",
        ))
    }
}
