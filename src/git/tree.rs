//! Reading and writing trees: a branch's tip, a commit's tree, and an editor whose trees are
//! written into the pack hyperion is writing (see [`crate::git::pack`]).

use gix::ObjectId;

use crate::error::{Error, Result};

/// The commit a ref points at, if it exists.
pub fn read_tip(repo: &gix::Repository, name: &str) -> Result<Option<ObjectId>> {
    crate::git::refs::read(repo, name)
}

/// Whether `commit` is on the first-parent history of `tip`.
pub fn on_first_parent_line(
    repo: &gix::Repository,
    tip: ObjectId,
    commit: ObjectId,
) -> Result<bool> {
    let mut next = Some(tip);
    while let Some(c) = next {
        if c == commit {
            return Ok(true);
        }
        next = repo
            .find_commit(c)
            .map_err(|e| Error::object(format!("cannot read commit {c}"), e))?
            .parent_ids()
            .next()
            .map(|p| p.detach());
    }
    Ok(false)
}

/// The tree of `commit`.
pub fn tree_of(repo: &gix::Repository, commit: ObjectId) -> Result<ObjectId> {
    repo.find_commit(commit)
        .and_then(|c| c.tree_id().map(|t| t.detach()))
        .map_err(|e| Error::object(format!("cannot read the tree of {commit}"), e))
}

/// An editor of the tree `base`, for [`write_tree`].
pub fn edit_tree(repo: &gix::Repository, base: ObjectId) -> Result<gix::objs::tree::Editor<'_>> {
    let root: gix::objs::Tree = repo
        .find_tree(base)
        .and_then(|t| t.decode().map(Into::into))
        .map_err(|e| Error::object(format!("cannot read the tree {base}"), e))?;
    Ok(gix::objs::tree::Editor::new(
        root,
        &repo.objects,
        repo.object_hash(),
    ))
}

/// Write the trees `editor` changed into the repository's object memory, and return the
/// root's id. Unlike gix's own tree editor, this does not look up every entry of every
/// written tree in the object database first (in a directory of 1,000 files, 1,000 lookups
/// through every pack index, the largest cost of a request on a large repository): the
/// entries are what the tree held plus blobs hyperion just wrote, at paths validated when
/// the request was.
pub fn write_tree(
    repo: &gix::Repository,
    editor: &mut gix::objs::tree::Editor<'_>,
) -> Result<ObjectId> {
    let mut buf = Vec::new();
    editor.write(|tree| {
        use gix::objs::WriteTo;
        buf.clear();
        tree.write_to(&mut buf)
            .map_err(|e| Error::object("cannot write a tree", e))?;
        crate::git::pack::write_object(repo, gix::objs::Kind::Tree, &buf)
    })
}

/// The blob a patch's `index` line names (full or abbreviated), if the repository has one.
pub fn find_blob_id(repo: &gix::Repository, hex: &str) -> Option<ObjectId> {
    if hex.bytes().all(|b| b == b'0') {
        return None;
    }
    let id = if hex.len() == 40 {
        ObjectId::from_hex(hex.as_bytes()).ok()?
    } else {
        let prefix = gix::hash::Prefix::from_hex(hex).ok()?;
        repo.objects.lookup_prefix(prefix, None).ok()??.ok()?
    };
    let header = repo.find_header(id).ok()?;
    (header.kind() == gix::object::Kind::Blob).then_some(id)
}

/// An entry of a tree: its mode and the object it names.
pub type Entry = (gix::objs::tree::EntryMode, ObjectId);

/// One path whose entry differs between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// `/`-separated, from the root of the trees.
    pub path: gix::bstr::BString,
    /// The entry in the old tree, `None` if it has nothing there.
    pub old: Option<Entry>,
    /// The entry in the new tree, `None` if it has nothing there.
    pub new: Option<Entry>,
}

impl Change {
    /// The side's entry when it is not a directory.
    pub fn file(side: Option<Entry>) -> Option<Entry> {
        side.filter(|(mode, _)| !mode.is_tree())
    }
}

/// Every path whose entry differs between the trees `old` and `new` (`None`: the empty tree),
/// directories included, in path order (a directory before what differs below it, which is
/// listed too). Unchanged subtrees are never read. A path that is a directory on one side and
/// not on the other is two changes: the one side's entry gone, the other's added. By
/// gix-diff's tree diff (a merge of the two sorted trees, breadth first, without recursion).
pub fn diff(
    repo: &gix::Repository,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
) -> Result<Vec<Change>> {
    use gix::diff::tree::recorder::Change as Recorded;
    let (mut old_buf, mut new_buf) = (Vec::new(), Vec::new());
    let lhs = tree_iter(repo, old, &mut old_buf)?;
    let rhs = tree_iter(repo, new, &mut new_buf)?;
    let mut recorder = gix::diff::tree::Recorder::default();
    gix::diff::tree(
        lhs,
        rhs,
        gix::diff::tree::State::default(),
        &repo.objects,
        &mut recorder,
    )
    .map_err(|e| Error::object("cannot compare two trees", e))?;
    let mut out: Vec<Change> = recorder
        .records
        .into_iter()
        .map(|r| match r {
            Recorded::Addition {
                entry_mode,
                oid,
                path,
                ..
            } => Change {
                path,
                old: None,
                new: Some((entry_mode, oid)),
            },
            Recorded::Deletion {
                entry_mode,
                oid,
                path,
                ..
            } => Change {
                path,
                old: Some((entry_mode, oid)),
                new: None,
            },
            Recorded::Modification {
                previous_entry_mode,
                previous_oid,
                entry_mode,
                oid,
                path,
            } => Change {
                path,
                old: Some((previous_entry_mode, previous_oid)),
                new: Some((entry_mode, oid)),
            },
        })
        .collect();
    // Stable: a path's deletion before its addition.
    out.sort_by(|a, b| {
        a.path
            .cmp(&b.path)
            .then(b.old.is_some().cmp(&a.old.is_some()))
    });
    Ok(out)
}

/// The entries of tree `id` as gix-diff reads them (`None`: the empty tree).
fn tree_iter<'b>(
    repo: &gix::Repository,
    id: Option<ObjectId>,
    buf: &'b mut Vec<u8>,
) -> Result<gix::objs::TreeRefIter<'b>> {
    use gix::objs::FindExt;
    match id {
        None => Ok(gix::objs::TreeRefIter::from_bytes(&[], repo.object_hash())),
        Some(id) => repo
            .objects
            .find_tree_iter(&id, buf)
            .map_err(|e| Error::object(format!("cannot read tree {id}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &std::path::Path, args: &[&str]) -> String {
        let out = crate::git::command::text(dir, args).expect("git succeeds");
        out.trim().to_owned()
    }

    /// Commit the work tree of `dir` as it is; the commit's tree.
    fn tree(dir: &std::path::Path) -> ObjectId {
        git(dir, &["add", "-A"]);
        git(
            dir,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "t",
            ],
        );
        ObjectId::from_hex(git(dir, &["rev-parse", "HEAD^{tree}"]).as_bytes()).expect("hex")
    }

    #[test]
    fn what_differs_in_path_order_and_a_file_that_became_a_directory_twice() {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        git(d, &["init", "-q"]);
        let write = |path: &str, text: &str| {
            let p = d.join(path);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        };
        write("a.txt", "a\n");
        write("d/x", "x\n");
        write("d/y", "y\n");
        write("keep/k", "k\n");
        let one = tree(d);
        write("d/x", "x2\n");
        write("d/z", "z\n");
        std::fs::remove_file(d.join("a.txt")).expect("rm");
        write("a.txt/inner", "i\n");
        let two = tree(d);
        let repo = gix::open(d).expect("open");
        let shown = |changes: Vec<Change>| -> Vec<String> {
            changes
                .into_iter()
                .map(|c| {
                    let side = |e: Option<Entry>| match e {
                        None => "-",
                        Some((m, _)) if m.is_tree() => "dir",
                        Some(_) => "file",
                    };
                    format!("{} {}>{}", c.path, side(c.old), side(c.new))
                })
                .collect()
        };
        assert_eq!(
            shown(diff(&repo, Some(one), Some(two)).expect("diff")),
            [
                "a.txt file>-",
                "a.txt ->dir",
                "a.txt/inner ->file",
                "d dir>dir",
                "d/x file>file",
                "d/z ->file",
            ]
        );
        assert_eq!(
            shown(diff(&repo, None, Some(one)).expect("diff")),
            [
                "a.txt ->file",
                "d ->dir",
                "d/x ->file",
                "d/y ->file",
                "keep ->dir",
                "keep/k ->file"
            ]
        );
        assert!(diff(&repo, Some(two), Some(two)).expect("diff").is_empty());
    }
}
