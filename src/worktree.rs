//! Placeholder until the worktree pool lands.
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub struct Pool {
    _dir: PathBuf,
}
pub struct Slot {
    path: PathBuf,
}
impl Pool {
    pub fn new(common_dir: &Path) -> Pool {
        Pool {
            _dir: common_dir.to_path_buf(),
        }
    }
    pub fn acquire(&self, _repo: &Path) -> Result<Slot> {
        Err(Error::git("worktree pool not built yet"))
    }
}
impl Slot {
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn checkout(&self, _commit: &str) -> Result<()> {
        Ok(())
    }
}
