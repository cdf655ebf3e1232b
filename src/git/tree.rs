//! Reading and writing trees: a branch's tip, a commit's tree, and an editor whose trees are
//! written into the pack hyperion is writing (see [`crate::git::pack`]).

use gix::ObjectId;

use crate::error::{Error, Result};

/// The commit a ref points at, if it exists.
pub fn read_tip(repo: &gix::Repository, name: &str) -> Result<Option<ObjectId>> {
    crate::git::refs::read(repo, name)
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
/// directories included: a directory on either side is listed before what differs below it,
/// which is listed too. Unchanged subtrees are never read. Walked with a stack of its own,
/// so a deep tree costs no recursion.
pub fn diff(
    repo: &gix::Repository,
    old: Option<ObjectId>,
    new: Option<ObjectId>,
) -> Result<Vec<Change>> {
    use gix::bstr::{BString, ByteVec};
    let entries = |id: Option<ObjectId>| -> Result<Vec<gix::objs::tree::Entry>> {
        let Some(id) = id else {
            return Ok(Vec::new());
        };
        let tree = repo
            .find_tree(id)
            .map_err(|e| Error::object(format!("cannot read tree {id}"), e))?;
        let decoded = tree
            .decode()
            .map_err(|e| Error::object(format!("cannot decode tree {id}"), e))?;
        Ok(decoded.entries.iter().map(|e| (*e).into()).collect())
    };
    let mut out = Vec::new();
    let mut stack: Vec<(Option<ObjectId>, Option<ObjectId>, BString)> =
        vec![(old, new, BString::default())];
    while let Some((old, new, prefix)) = stack.pop() {
        let mut by_name: std::collections::BTreeMap<BString, (Option<Entry>, Option<Entry>)> =
            std::collections::BTreeMap::new();
        for e in entries(old)? {
            by_name.entry(e.filename).or_default().0 = Some((e.mode, e.oid));
        }
        for e in entries(new)? {
            by_name.entry(e.filename).or_default().1 = Some((e.mode, e.oid));
        }
        let mut below = Vec::new();
        for (name, (o, n)) in by_name {
            if o == n {
                continue;
            }
            let mut path = prefix.clone();
            if !path.is_empty() {
                path.push_byte(b'/');
            }
            path.extend_from_slice(&name);
            let tree = |side: Option<Entry>| side.filter(|(m, _)| m.is_tree()).map(|(_, id)| id);
            if tree(o).is_some() || tree(n).is_some() {
                below.push((tree(o), tree(n), path.clone()));
            }
            out.push(Change {
                path,
                old: o,
                new: n,
            });
        }
        // Reversed onto the stack: directories are walked in name order.
        stack.extend(below.into_iter().rev());
    }
    Ok(out)
}
