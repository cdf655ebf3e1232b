//! Placeholder until the binary-patch decoder lands.
use crate::error::Problem;
pub struct BinaryHunk;
pub struct BinaryPatch {
    pub forward: BinaryHunk,
}
pub fn parse(_section: &str) -> Result<BinaryPatch, Problem> {
    Err(Problem::new(
        "patch.binary_corrupt",
        "binary patches are not supported yet",
        "",
    ))
}
pub fn apply(_h: &BinaryHunk, _old: &[u8]) -> Result<Vec<u8>, Problem> {
    Err(Problem::new(
        "patch.binary_corrupt",
        "binary patches are not supported yet",
        "",
    ))
}
