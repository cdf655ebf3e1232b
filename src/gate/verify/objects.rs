//! Reading objects for the checks, within bounds, from either side of a push.
//!
//! The checks read objects through [`Objects`]: [`Local`] reads them with gix, in a local
//! repository or, during `pre-receive`, in a view of the push's quarantine (where the pushed
//! objects sit until the hook accepts them) and the repository's objects; [`CatFile`] asks
//! `git cat-file` where there is no such view (a hook run without a quarantine). Every read learns the
//! object's kind and size first, from its header, and reads the content only when both are
//! what the caller expects: a pushed blob of gigabytes (or one that inflates to that) is never
//! inflated, and a tree where a blob belongs is never taken for it.
//!
//! Object ids only are ever sent to `git cat-file`, never a name it would resolve.

use std::io::{BufRead, BufReader, Read as _, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use gix::ObjectId;
use gix::objs::Kind;

use crate::error::{Error, Result};
use crate::gate::verify::Error as Check;

/// The outcome of reading one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// No such object.
    Missing,
    /// The object is of another kind than asked for.
    WrongKind(Kind),
    /// The object is larger than the caller's bound (its size).
    TooLarge(u64),
    Data(Vec<u8>),
}

/// Where the checks read objects from.
pub trait Objects {
    /// Kind and size of `id`, without reading its content; `None` if it does not exist.
    fn header(&mut self, id: ObjectId) -> Result<Option<(Kind, u64)>>;

    /// The content of `id`, which [`Objects::header`] found.
    fn content(&mut self, id: ObjectId) -> Result<Vec<u8>>;

    /// The hash of object ids in this repository.
    fn hash_kind(&self) -> gix::hash::Kind;

    /// `id`'s content if it is a `kind` of at most `max` bytes.
    fn read(&mut self, id: ObjectId, kind: Kind, max: u64) -> Result<Read> {
        Ok(match self.header(id)? {
            None => Read::Missing,
            Some((k, _)) if k != kind => Read::WrongKind(k),
            Some((_, size)) if size > max => Read::TooLarge(size),
            Some(_) => Read::Data(self.content(id)?),
        })
    }
}

/// A `git cat-file` process answering one line of input at a time.
struct Batch {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Batch {
    fn start(git_dir: &Path, mode: &str) -> Result<Batch> {
        // `at` keeps the environment: in `pre-receive`, it points git at the quarantine.
        let mut child = crate::git::command::at(git_dir)
            .args(["cat-file", mode])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::io("could not run git cat-file", e))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        Ok(Batch {
            child,
            stdin,
            stdout,
        })
    }

    /// Ask for `id`; kind and size from the answer's header line, `None` if missing.
    fn ask(&mut self, id: ObjectId) -> Result<Option<(Kind, u64)>> {
        let io = |e| Error::io("git cat-file", e);
        writeln!(self.stdin, "{id}").map_err(io)?;
        self.stdin.flush().map_err(io)?;
        let mut header = String::new();
        // A header line is an id, a kind and a size: a short line.
        (&mut self.stdout)
            .take(256)
            .read_line(&mut header)
            .map_err(io)?;
        let fields: Vec<&str> = header.split_whitespace().collect();
        match fields[..] {
            [_, "missing"] => Ok(None),
            [_, kind, size] => {
                let kind = Kind::from_bytes(kind.as_bytes())
                    .map_err(|_| Error::Git(format!("git cat-file: bad kind in '{header}'")))?;
                let size = size
                    .parse()
                    .map_err(|_| Error::Git(format!("git cat-file: bad size in '{header}'")))?;
                Ok(Some((kind, size)))
            }
            _ => Err(Error::Git(format!(
                "git cat-file answered '{}' for {id}",
                header.trim()
            ))),
        }
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Objects read by `git cat-file` processes (one for headers, one for contents), so that
/// objects still in a push's quarantine are seen.
pub struct CatFile {
    check: Batch,
    contents: Option<Batch>,
    git_dir: std::path::PathBuf,
    hash: gix::hash::Kind,
}

impl CatFile {
    pub fn start(git_dir: &Path, hash: gix::hash::Kind) -> Result<CatFile> {
        Ok(CatFile {
            check: Batch::start(git_dir, "--batch-check")?,
            contents: None,
            git_dir: git_dir.to_owned(),
            hash,
        })
    }
}

impl Objects for CatFile {
    fn header(&mut self, id: ObjectId) -> Result<Option<(Kind, u64)>> {
        self.check.ask(id)
    }

    fn content(&mut self, id: ObjectId) -> Result<Vec<u8>> {
        if self.contents.is_none() {
            self.contents = Some(Batch::start(&self.git_dir, "--batch")?);
        }
        let batch = self.contents.as_mut().expect("started above");
        let Some((_, size)) = batch.ask(id)? else {
            return Err(Error::Git(format!("{id} vanished while it was read")));
        };
        let size = usize::try_from(size).map_err(|_| Error::Git(format!("{id} is too large")))?;
        // The content and the newline after it.
        let mut data = vec![0; size + 1];
        batch
            .stdout
            .read_exact(&mut data)
            .map_err(|e| Error::io("git cat-file", e))?;
        data.pop();
        Ok(data)
    }

    fn hash_kind(&self) -> gix::hash::Kind {
        self.hash
    }
}

/// Objects of a local repository, read with gix.
pub struct Local<'r> {
    repo: &'r gix::Repository,
}

impl<'r> Local<'r> {
    pub fn new(repo: &'r gix::Repository) -> Local<'r> {
        Local { repo }
    }
}

impl Objects for Local<'_> {
    fn header(&mut self, id: ObjectId) -> Result<Option<(Kind, u64)>> {
        Ok(self
            .repo
            .try_find_header(id)
            .map_err(|e| Error::object(format!("could not read {id}"), e))?
            .map(|h| (h.kind(), h.size())))
    }

    fn content(&mut self, id: ObjectId) -> Result<Vec<u8>> {
        let object = self
            .repo
            .find_object(id)
            .map_err(|e| Error::object(format!("could not read {id}"), e))?;
        Ok(object.detach().data)
    }

    fn hash_kind(&self) -> gix::hash::Kind {
        self.repo.object_hash()
    }
}

/// A commit as hyperion writes them, decoded strictly.
#[derive(Debug, Clone)]
pub struct Commit {
    pub id: ObjectId,
    pub tree: ObjectId,
    pub parents: Vec<ObjectId>,
    /// Committer time, in seconds.
    pub time: i64,
    pub message: String,
}

/// Why an object is not what it must be; the check that read it names the code.
pub type Refusal = String;

/// Decode commit `id` (at most `max` bytes). Refused: a missing object or another kind,
/// a larger one, one git's parser rejects, a message that is not UTF-8, and when `strict`,
/// any header hyperion does not write (`encoding`, `gpgsig`, `mergetag`, …).
pub fn commit(
    objects: &mut dyn Objects,
    id: ObjectId,
    max: u64,
    strict: bool,
) -> Result<Commit, Check<Refusal>> {
    let data = match objects.read(id, Kind::Commit, max)? {
        Read::Data(d) => d,
        other => return Err(Check::Refused(refusal(id, "a commit", &other, max))),
    };
    let hash = objects.hash_kind();
    let Ok(c) = gix::objs::CommitRef::from_bytes(&data, hash) else {
        return Err(Check::Refused(format!("{id} is not a well-formed commit")));
    };
    if strict && (c.encoding.is_some() || !c.extra_headers.is_empty()) {
        return Err(Check::Refused(format!(
            "{id} carries a header hyperion does not write (encoding, signature or other)"
        )));
    }
    let Ok(message) = std::str::from_utf8(c.message) else {
        return Err(Check::Refused(format!("{id}'s message is not UTF-8")));
    };
    let time = c.committer().map(|s| s.seconds()).unwrap_or(0);
    let mut parents = Vec::with_capacity(c.parents.len());
    for p in c.parents() {
        parents.push(p);
    }
    Ok(Commit {
        id,
        tree: c.tree(),
        parents,
        time,
        message: message.to_owned(),
    })
}

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub mode: gix::objs::tree::EntryMode,
    pub id: ObjectId,
}

impl Entry {
    /// A regular, non-executable file.
    pub fn is_file(&self) -> bool {
        self.mode == gix::objs::tree::EntryKind::Blob.into()
    }

    pub fn is_tree(&self) -> bool {
        self.mode == gix::objs::tree::EntryKind::Tree.into()
    }
}

/// Decode tree `id` (at most `max` bytes, `max_entries` entries). Refused: a missing object
/// or another kind, a larger one, one that does not parse, a name that is not UTF-8 or
/// appears twice.
pub fn tree(
    objects: &mut dyn Objects,
    id: ObjectId,
    max: u64,
    max_entries: usize,
) -> Result<Vec<Entry>, Check<Refusal>> {
    let data = match objects.read(id, Kind::Tree, max)? {
        Read::Data(d) => d,
        other => return Err(Check::Refused(refusal(id, "a tree", &other, max))),
    };
    let hash = objects.hash_kind();
    let Ok(t) = gix::objs::TreeRef::from_bytes(&data, hash) else {
        return Err(Check::Refused(format!("{id} is not a well-formed tree")));
    };
    if t.entries.len() > max_entries {
        return Err(Check::Refused(format!(
            "tree {id} has {} entries, more than {max_entries}",
            t.entries.len()
        )));
    }
    let mut out: Vec<Entry> = Vec::with_capacity(t.entries.len());
    let mut names = std::collections::HashSet::new();
    for e in &t.entries {
        let Ok(name) = std::str::from_utf8(e.filename) else {
            return Err(Check::Refused(format!(
                "tree {id} holds a name that is not UTF-8"
            )));
        };
        if !names.insert(name) {
            return Err(Check::Refused(format!("tree {id} names '{name}' twice")));
        }
        out.push(Entry {
            name: name.to_owned(),
            mode: e.mode,
            id: e.oid.to_owned(),
        });
    }
    Ok(out)
}

/// The content of blob `id` if it has at most `max` bytes.
pub fn blob(objects: &mut dyn Objects, id: ObjectId, max: u64) -> Result<Vec<u8>, Check<Refusal>> {
    match objects.read(id, Kind::Blob, max)? {
        Read::Data(d) => Ok(d),
        other => Err(Check::Refused(refusal(id, "a file", &other, max))),
    }
}

fn refusal(id: ObjectId, what: &str, read: &Read, max: u64) -> Refusal {
    match read {
        Read::Missing => format!("{id} does not exist"),
        Read::WrongKind(k) => format!("{id} is a {k}, not {what}"),
        Read::TooLarge(size) => format!("{id} has {size} bytes, more than the {max} allowed"),
        Read::Data(_) => unreachable!("not a refusal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> (tempfile::TempDir, gix::Repository) {
        let dir = tempfile::tempdir().expect("temp dir");
        let repo = gix::init_bare(dir.path()).expect("init");
        (dir, repo)
    }

    #[test]
    fn both_readers_see_the_same_headers_and_contents() {
        let (dir, repo) = repo();
        let blob = repo.write_blob(b"hello\n").expect("blob").detach();
        let mut local = Local::new(&repo);
        let mut cat = CatFile::start(dir.path(), repo.object_hash()).expect("cat-file");
        for objects in [&mut local as &mut dyn Objects, &mut cat] {
            assert_eq!(objects.header(blob).expect("header"), Some((Kind::Blob, 6)));
            assert_eq!(
                objects.read(blob, Kind::Blob, 6).expect("read"),
                Read::Data(b"hello\n".to_vec())
            );
            assert_eq!(
                objects.read(blob, Kind::Blob, 5).expect("read"),
                Read::TooLarge(6)
            );
            assert_eq!(
                objects.read(blob, Kind::Tree, 100).expect("read"),
                Read::WrongKind(Kind::Blob)
            );
            let missing =
                ObjectId::from_hex(b"0123456789abcdef0123456789abcdef01234567").expect("hex");
            assert_eq!(
                objects.read(missing, Kind::Blob, 100).expect("read"),
                Read::Missing
            );
        }
    }
}
