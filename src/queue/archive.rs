//! Retention at any scale: finished requests written to a git bundle, and their refs removed
//! by hyperion itself, a few thousand per hold of `packed-refs.lock`
//! ([`crate::git::refs::delete`]). No request id or ref name goes on a command line, so the
//! number of requests is bounded by nothing but disk and time.
//!
//! The order keeps every request somewhere at every instant: the bundle is written and
//! verified first, and a ref is removed only if the bundle holds it at the very tip that is
//! being removed (a compare-and-swap under the ref's lock). A crash before the removal
//! leaves every ref; a crash part-way leaves some refs, and the rest in the verified bundle.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use gix::ObjectId;

use crate::error::{Error, Result};

/// Write a bundle (format v2, as `git bundle create` writes it) of `refs` (full name, tip)
/// and everything they reach: the header lists the refs, then one pack of every object the
/// chains reach ([`crate::queue::lost::reachable`]: a chain is a handful of commits, trees and
/// blobs), each once, each whole. `git bundle create --stdin` compares every ref with every
/// other one, and `git pack-objects` looks every object up again in every pack index (a
/// tenth of a second more per 10,000 chains at 100,000 requests than at 10,000, where the
/// indexes no longer stay in the processor's caches). So the chains are walked a chunk at a
/// time ([`crate::queue::store::chunk`]) and their objects copied into the pack as they are
/// stored, found where the walk found them ([`crate::git::pack::copy_entries`]): hyperion
/// writes every object whole, so nothing is inflated or deflated again. The pack's count and
/// checksum are written once every chunk is in. Written to a temporary file renamed into
/// place once complete.
pub fn bundle_create(
    repo: &gix::Repository,
    bundle: &Path,
    refs: &[(String, ObjectId)],
) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let dir = bundle.parent().unwrap_or(Path::new("."));
    let err = |e: std::io::Error| Error::io(format!("could not write {}", bundle.display()), e);
    let mut tmp = tempfile::Builder::new()
        .prefix("tmp_bundle_")
        .tempfile_in(dir)
        .map_err(err)?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
    out.write_all(b"# v2 git bundle\n").map_err(err)?;
    for (name, tip) in refs {
        writeln!(out, "{tip} {name}").map_err(err)?;
    }
    out.write_all(b"\n").map_err(err)?;
    // The pack's header; its count is written once every part is in.
    let pack_at = out.stream_position().map_err(err)?;
    out.write_all(b"PACK\0\0\0\x02\0\0\0\0").map_err(err)?;
    let mut count: u32 = 0;
    let mut seen = std::collections::HashSet::new();
    let mut pages = crate::git::os::PageBudget;
    let odb = crate::git::pack::locator(repo);
    for chunk in refs.chunks(crate::queue::store::chunk()) {
        let tips = chunk.iter().map(|(_, tip)| *tip);
        let mut objects = crate::queue::lost::reachable(&odb, tips, &mut seen, &mut pages)
            .map_err(|id| Error::Git(format!("cannot archive: object {id} is missing")))?;
        if count == 0 {
            crate::git::os::pause_point("gc.first_chunk_walked");
        }
        count += crate::git::pack::copy_entries(repo, &odb, &mut objects, &mut out, &mut pages)?;
    }
    out.flush().map_err(err)?;
    drop(out);
    let file = tmp.as_file_mut();
    file.seek(SeekFrom::Start(pack_at + 8)).map_err(err)?;
    file.write_all(&count.to_be_bytes()).map_err(err)?;
    file.seek(SeekFrom::Start(pack_at)).map_err(err)?;
    let mut hasher = gix::hash::hasher(gix::hash::Kind::Sha1);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let sum = hasher
        .try_finalize()
        .map_err(|e| Error::Git(format!("could not checksum the archive: {e}")))?;
    file.write_all(sum.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)?;
    tmp.persist(bundle).map_err(|e| err(e.error))?;
    Ok(())
}

/// Read back the refs a bundle holds, each with its tip, from the file as it lies on disk:
/// the header as `git bundle` reads it (`# v2 git bundle`, then `TIP NAME` lines up to an
/// empty line, with no prerequisites: hyperion's bundles are complete), followed by a pack.
/// Read in-process with a buffer: `git bundle verify` and `git bundle list-heads` read a
/// header one byte per system call (8 million of them each for 100,000 refs). The tests run
/// git's own `bundle verify` and the documented restore on what `gc` writes.
pub fn bundle_heads(bundle: &Path) -> Result<HashMap<String, ObjectId>> {
    use std::io::{BufRead, Read};
    let bad = |what: &str| Error::Git(format!("the archive {} {what}", bundle.display()));
    let err = |e: std::io::Error| Error::io(format!("could not read {}", bundle.display()), e);
    let mut file =
        std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(bundle).map_err(err)?);
    let mut line = Vec::with_capacity(128);
    file.read_until(b'\n', &mut line).map_err(err)?;
    if line != b"# v2 git bundle\n" {
        return Err(bad("is not a v2 git bundle"));
    }
    let mut heads = HashMap::new();
    loop {
        line.clear();
        if file.read_until(b'\n', &mut line).map_err(err)? == 0 {
            return Err(bad("ends inside its header"));
        }
        let Some(text) = line.strip_suffix(b"\n") else {
            return Err(bad("ends inside its header"));
        };
        if text.is_empty() {
            break;
        }
        let parsed = text
            .split_at_checked(40)
            .and_then(|(oid, rest)| Some((ObjectId::from_hex(oid).ok()?, rest.strip_prefix(b" ")?)))
            .and_then(|(oid, name)| Some((oid, std::str::from_utf8(name).ok()?)));
        match parsed {
            Some((oid, name)) if name.starts_with("refs/") => {
                heads.insert(name.to_owned(), oid);
            }
            _ => return Err(bad("has a header line that is not `TIP REF`")),
        }
    }
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).map_err(err)?;
    if &magic != b"PACK" {
        return Err(bad("holds no pack after its header"));
    }
    Ok(heads)
}

/// How many refs one [`crate::git::refs::delete`] covers: it holds `packed-refs.lock` for
/// as long, which `git pack-refs` and other deletions wait for (git's own wait is 1 s).
const DELETE_CHUNK: usize = 2048;

/// Remove `refs` (name, expected tip), each only if it still points at its expected tip
/// ([`crate::git::refs::delete`], a few thousand at a time). Returns the names removed, and
/// the error that stopped it part-way, if any.
pub fn delete_refs(
    repo: &gix::Repository,
    refs: &[(String, ObjectId)],
) -> (Vec<String>, Option<Error>) {
    let mut removed = Vec::with_capacity(refs.len());
    let chunk = crate::queue::store::chunk().min(DELETE_CHUNK);
    for (n, chunk) in refs.chunks(chunk).enumerate() {
        if n == 1 {
            crate::git::os::pause_point("gc.chunk_removed");
        }
        let (done, failed) = crate::git::refs::delete(repo, chunk);
        removed.extend(done);
        if let Some(e) = failed {
            tracing::warn!(removed = removed.len(), error = %e, "could not remove archived refs");
            return (removed, Some(e));
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
