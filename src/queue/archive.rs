//! Retention at any scale: finished requests written to a git bundle, and their refs removed
//! in a few ref transactions. No request id or ref name goes on a command line (ref names
//! reach git on stdin), so the number of requests is bounded by nothing but disk and time.
//!
//! The order keeps every request somewhere at every instant: the bundle is written and
//! verified first, and a ref is removed only if the bundle holds it at the very tip that is
//! being removed (a compare-and-swap inside each transaction). A crash before the removal
//! leaves every ref; a crash part-way leaves some refs, and the rest in the verified bundle.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use gix::ObjectId;

use crate::error::{Error, Result};

/// Ref removals per `git update-ref --stdin` transaction. With packed refs each transaction
/// rewrites `packed-refs` once, so a chunk is large; it is bounded so that one request moved
/// meanwhile (which fails its transaction, then retried without it) costs little.
const DELETE_CHUNK: usize = 10_000;

/// The chunk size, which tests make small (`HYPERION_TEST_GC_CHUNK`) to run many
/// transactions over few requests.
fn delete_chunk() -> usize {
    std::env::var("HYPERION_TEST_GC_CHUNK")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(DELETE_CHUNK)
}

/// Write a bundle (format v2, as `git bundle create` writes it) of `refs` (full name, tip)
/// and everything they reach: the header lists the refs, then `git pack-objects`, fed on
/// stdin every object the chains reach ([`crate::queue::lost::reachable`]: a chain is a handful of
/// commits, trees and blobs), writes the pack after it. (`git bundle create --stdin` compares
/// every ref with every other one, and `git pack-objects --revs` fed the tips walks them
/// worse than linearly: minutes at 100,000 refs.) Written to a temporary file renamed into
/// place once complete.
pub fn bundle_create(
    repo: &gix::Repository,
    git_dir: &Path,
    bundle: &Path,
    refs: &[(String, ObjectId)],
) -> Result<()> {
    let dir = bundle.parent().unwrap_or(Path::new("."));
    let err = |e: std::io::Error| Error::io(format!("could not write {}", bundle.display()), e);
    let mut tmp = tempfile::Builder::new()
        .prefix("tmp_bundle_")
        .tempfile_in(dir)
        .map_err(err)?;
    let mut header = Vec::with_capacity(refs.len() * 80 + 20);
    header.extend_from_slice(b"# v2 git bundle\n");
    for (name, tip) in refs {
        writeln!(header, "{tip} {name}").expect("write to memory");
    }
    let objects = crate::queue::lost::reachable(repo, refs.iter().map(|(_, tip)| *tip))
        .map_err(|id| Error::Git(format!("cannot archive: object {id} is missing")))?;
    let mut listed = Vec::with_capacity(objects.len() * 41);
    for id in objects {
        writeln!(listed, "{id}").expect("write to memory");
    }
    header.push(b'\n');
    tmp.write_all(&header)
        .and_then(|()| tmp.flush())
        .map_err(err)?;
    let out = tmp.reopen().map_err(err)?;
    {
        use std::io::Seek;
        let mut out = &out;
        out.seek(std::io::SeekFrom::End(0)).map_err(err)?;
    }
    crate::git::command::run_into(
        git_dir,
        &["pack-objects", "--stdout", "--delta-base-offset", "-q"],
        &listed,
        out,
        "git pack-objects",
    )?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(bundle).map_err(|e| err(e.error))?;
    Ok(())
}

/// Check that a bundle is complete (`git bundle verify`), and read the tip it holds for each
/// ref.
pub fn bundle_heads(git_dir: &Path, bundle: &Path) -> Result<HashMap<String, ObjectId>> {
    let path = bundle.to_string_lossy();
    crate::git::command::run(
        git_dir,
        &["bundle", "verify", "-q", &path],
        b"",
        "git bundle verify",
    )?;
    let listed = crate::git::command::run(
        git_dir,
        &["bundle", "list-heads", &path],
        b"",
        "git bundle list-heads",
    )?;
    let mut heads = HashMap::new();
    for line in String::from_utf8_lossy(&listed).lines() {
        if let Some((oid, name)) = line.split_once(' ')
            && let Ok(oid) = ObjectId::from_hex(oid.as_bytes())
        {
            heads.insert(name.to_owned(), oid);
        }
    }
    Ok(heads)
}

/// Remove `refs` (name, expected tip), each only if it still points at its expected tip, in
/// transactions of at most [`DELETE_CHUNK`]. A transaction is all or nothing: when one fails
/// because a ref moved, the refs of the chunk are read again and the transaction retried
/// without the moved ones (`tip` reads a ref now). Returns the names removed, and the error
/// that stopped it part-way, if any.
pub fn delete_refs(
    git_dir: &Path,
    refs: &[(String, ObjectId)],
    tip: &dyn Fn(&str) -> Result<Option<ObjectId>>,
) -> (Vec<String>, Option<Error>) {
    let mut removed = Vec::with_capacity(refs.len());
    for (n, chunk) in refs.chunks(delete_chunk()).enumerate() {
        if n == 1 {
            crate::git::os::pause_point("gc.chunk_removed");
        }
        let mut chunk: Vec<(String, ObjectId)> = chunk.to_vec();
        let mut tries = 0;
        loop {
            if chunk.is_empty() {
                break;
            }
            let mut input = Vec::with_capacity(chunk.len() * 110 + 32);
            input.extend_from_slice(b"start\n");
            for (name, expected) in &chunk {
                writeln!(input, "delete {name} {expected}").expect("write to memory");
            }
            input.extend_from_slice(b"prepare\ncommit\n");
            match crate::git::command::run(
                git_dir,
                &["update-ref", "--stdin"],
                &input,
                "git update-ref",
            ) {
                Ok(_) => {
                    removed.extend(chunk.into_iter().map(|(name, _)| name));
                    break;
                }
                Err(e) => {
                    tries += 1;
                    let before = chunk.len();
                    let mut kept = Vec::with_capacity(before);
                    for (name, expected) in chunk {
                        match tip(&name) {
                            Ok(t) if t == Some(expected) => kept.push((name, expected)),
                            Ok(_) => {}
                            Err(e) => return (removed, Some(e)),
                        }
                    }
                    chunk = kept;
                    // Nothing moved: the failure is not a race (a lock held by a writer that
                    // died, a broken disk), so stop with what was removed so far.
                    if chunk.len() == before || tries > 3 {
                        tracing::warn!(removed = removed.len(), error = %e, "could not remove archived refs");
                        return (removed, Some(e));
                    }
                }
            }
        }
    }
    (removed, None)
}

/// The list of archived requests, next to the bundles: one `ID BUNDLE` line per request gc
/// removed, appended once its ref is gone. `enqueue` reads it to refuse storing a new chain
/// under an archived id, which would make the archived chain impossible to restore.
const LIST: &str = "archived";

/// Record that `ids` were archived into `bundle` (a file in `dir`).
pub fn record(dir: &Path, bundle: &Path, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let name = bundle
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut text = String::with_capacity(ids.len() * (name.len() + 18));
    for id in ids {
        text.push_str(id);
        text.push(' ');
        text.push_str(&name);
        text.push('\n');
    }
    let path = dir.join(LIST);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| Error::io(format!("could not write {}", path.display()), e))
}

/// The bundle each of `ids` was archived into (the latest, if archived more than once).
pub fn archived(dir: &Path, ids: &[&str]) -> Result<HashMap<String, std::path::PathBuf>> {
    let path = dir.join(LIST);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(Error::io(format!("could not read {}", path.display()), e)),
    };
    let wanted: std::collections::HashSet<&str> = ids.iter().copied().collect();
    let mut found = HashMap::new();
    for line in text.lines() {
        if let Some((id, bundle)) = line.split_once(' ')
            && wanted.contains(id)
        {
            found.insert(id.to_owned(), dir.join(bundle));
        }
    }
    Ok(found)
}
